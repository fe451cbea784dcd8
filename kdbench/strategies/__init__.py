"""Distillation strategies: importing this package registers every built-in one.

One file per method, named after it (`rrd.py` is where RRD samples its items); `base.py` holds
the interface and the registry, `knowledge.py` the teacher knowledge (top-N lists, representation
tables) computed once per run.
"""

import importlib
import pkgutil

from kdbench.strategies.base import STRATEGIES, DistillationContext, DistillationStrategy, register_strategy, strategy_code

_SUPPORT_MODULES = {"base", "knowledge"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "DistillationContext", "DistillationStrategy", "register_strategy", "strategy_code"]
