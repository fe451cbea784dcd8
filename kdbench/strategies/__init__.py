"""Distillation strategies: importing this package registers the built-in ones.

One file per method; `base.py` holds the interface and the registry, `knowledge.py` the teacher
knowledge (top-N lists, representation tables) computed once per run.
"""

from kdbench.strategies import scratch  # noqa: F401  (registers)
from kdbench.strategies.base import STRATEGIES, DistillationContext, DistillationStrategy, register_strategy

__all__ = ["STRATEGIES", "DistillationContext", "DistillationStrategy", "register_strategy"]
