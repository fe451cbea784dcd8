"""The baseline: the student trained from scratch on its own loss, no distillation."""

from __future__ import annotations

from kdbench.strategies.base import DistillationStrategy, register_strategy


@register_strategy("scratch", family="baseline", paper="no distillation (student's own loss only)",
                   backbones=("*",))
class Scratch(DistillationStrategy):
    """L = L_base. The reference every KD strategy is compared against."""

    defaults = {"weight": 0.0}
    search_space = {}  # the tuner still tunes the shared training knobs, with the same trial budget
    needs_teacher = False

    def loss(self, batch) -> None:
        return None
