"""kdbench: a benchmark suite for knowledge distillation in recommender systems, on RecBole."""

__version__ = "0.1.0"

from kdbench import compat as _compat  # noqa: E402  (before any kdbench module imports RecBole)

_compat.install()
