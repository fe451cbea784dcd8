"""Search spaces: what the tuner may try for a hyperparameter, declared beside a strategy's defaults.

    class RRD(DistillationStrategy):
        defaults = {"weight": 0.001, "K": 40, ...}
        search_space = {"weight": LogUniform(1e-5, 1e-1), "K": IntRange(5, 100, log=True), ...}

A distribution turns into one Optuna `trial.suggest_*` call. Sizes that the papers give in items
(a top-N pool, a candidate count) are declared as a share of the catalogue with `CatalogueShare`,
so the same declaration makes sense for ml-100k's 1,682 items and CiteULike's 25,181.
Every student, whatever its strategy, also tunes `SHARED_TRAINING_SPACE` (learning rate, weight
decay) within the same trial budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from kdbench.errors import KdbenchError


class Trial(Protocol):  # the part of optuna.trial.Trial a distribution uses
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class LogUniform:
    """A float drawn log-uniformly from [low, high] (weights, temperatures, learning rates)."""

    low: float
    high: float

    def suggest(self, trial: Trial, name: str, n_items: int) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def describe(self, n_items: int | None = None) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float

    def suggest(self, trial: Trial, name: str, n_items: int) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def describe(self, n_items: int | None = None) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class IntRange:
    """An integer from [low, high], log-uniform when `log` (counts spanning decades)."""

    low: int
    high: int
    log: bool = False

    def suggest(self, trial: Trial, name: str, n_items: int) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def describe(self, n_items: int | None = None) -> str:
        return f"int{' log' if self.log else ''} [{self.low}, {self.high}]"


@dataclass(frozen=True)
class CatalogueShare:
    """An item count drawn log-uniformly from [low_share, high_share] x n_items, clamped to
    [min_items, max_items] (a top-N pool must hold at least the items sampled from it)."""

    low_share: float
    high_share: float
    min_items: int = 1
    max_items: int | None = None

    def bounds(self, n_items: int) -> tuple[int, int]:
        cap = max(1, min(self.max_items or n_items, n_items - 1))
        low = min(cap, max(self.min_items, math.ceil(self.low_share * n_items)))
        high = min(cap, max(low, math.floor(self.high_share * n_items)))
        return low, high

    def suggest(self, trial: Trial, name: str, n_items: int) -> int:
        low, high = self.bounds(n_items)
        return trial.suggest_int(name, low, high, log=True)

    def describe(self, n_items: int | None = None) -> str:
        text = f"{self.low_share:g}-{self.high_share:g} of the catalogue (log)"
        if n_items:
            low, high = self.bounds(n_items)
            text += f" = [{low}, {high}] items"
        return text


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]

    def suggest(self, trial: Trial, name: str, n_items: int) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def describe(self, n_items: int | None = None) -> str:
        return "one of " + ", ".join(map(str, self.choices))


Distribution = LogUniform | Uniform | IntRange | CatalogueShare | Categorical

# Tuned for every student, scratch included: Adam's step size around the suite's 0.005 and an L2
# penalty from negligible to strong (RecBole's BPR/LightGCN have no other regulariser by default).
SHARED_TRAINING_SPACE: dict[str, Distribution] = {
    "learning_rate": LogUniform(1e-3, 3e-2),
    "weight_decay": LogUniform(1e-9, 1e-4),
}


def recordable(distribution: Distribution, value: Any, n_items: int) -> Any:
    """`value` as Optuna can record it for `distribution` (the published defaults, tuning's first
    trial, may lie outside a space). Out of range is fine; what a log scale cannot hold (a value
    <= 0, such as a weight decay of 0) is recorded as the range's lower bound, and a value that is
    not among a categorical's choices as its first choice. The trial trains with `value` itself;
    only the sampler's picture of it is approximate."""
    if isinstance(distribution, Categorical):
        return value if value in distribution.choices else distribution.choices[0]
    if isinstance(distribution, CatalogueShare):
        return value if value > 0 else distribution.bounds(n_items)[0]
    if isinstance(distribution, LogUniform) or getattr(distribution, "log", False):
        return value if value > 0 else distribution.low
    return value


def weight_space(default_weight: float) -> LogUniform:
    """For a strategy that declares no space of its own: its weight over 4 decades around the default."""
    centre = default_weight if default_weight > 0 else 1.0
    return LogUniform(centre / 100, centre * 100)


def check_space(strategy: str, defaults: dict[str, Any], space: dict[str, Distribution]) -> None:
    """A search space may only name the strategy's own hyperparameters."""
    unknown = set(space) - set(defaults)
    if unknown:
        raise KdbenchError(
            f"search space of strategy '{strategy}' names unknown hyperparameters {sorted(unknown)}; "
            f"valid: {sorted(defaults)}"
        )
