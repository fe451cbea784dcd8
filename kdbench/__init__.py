"""kdbench: a benchmark suite for knowledge distillation in recommender systems, on RecBole."""

__version__ = "0.1.0"
