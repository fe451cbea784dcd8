"""A suite's `tuning:` block: the budget (in training epochs, the same for every strategy of a
pairing; the teachers' studies may have their own) and how it is spent (tuning seeds, TPE start-up
trials, the pruner)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kdbench.errors import KdbenchError, choices
from kdbench.tuning.trial import HALVING, MEDIAN, PrunerSettings

TUNING_KEYS = {"epochs", "trials", "seeds", "sampler_seed", "startup_trials", "pruner", "teacher", "teacher_epochs"}
PRUNER_KEYS = {MEDIAN: {"kind", "startup_trials", "warmup_epochs"}, HALVING: {"kind", "first_rung", "reduction_factor"}}


@dataclass(frozen=True)
class TuningSettings:
    """A suite's `tuning:` block: the budget and how it is spent."""

    epochs: int | None = 600  # per study: training epochs, all trials and seeds; the same for every strategy
    trials: int | None = None  # the budget in trials instead (suites written before epoch budgets)
    seeds: tuple[int, ...] = (100, 101)  # disjoint from the evaluation seeds; the objective is their mean
    sampler_seed: int = 0
    startup_trials: int = 5  # TPE draws at random before it models the trials
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    teacher: bool = False  # each pairing's teacher gets its own study first (`teacher_tuning`); not in `as_dict`
    teacher_epochs: int | None = None  # the teacher studies' budget (None: `epochs`); not a competitor's

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None, trials: int | None = None,
                  epochs: int | None = None) -> "TuningSettings":
        """The block's settings; `trials` or `epochs` (command-line flags) replace its budget."""
        if not isinstance(spec or {}, dict) or not isinstance((spec or {}).get("pruner") or {}, dict):
            raise KdbenchError("the suite's 'tuning' block and its 'pruner' must be mappings")
        spec = dict(spec or {})
        unknown = set(spec) - TUNING_KEYS
        if unknown:
            raise KdbenchError(f"unknown tuning keys {choices(unknown)}; valid: {choices(TUNING_KEYS)}")
        if trials is not None or epochs is not None:
            spec = {**{k: v for k, v in spec.items() if k not in ("trials", "epochs")},
                    **({"trials": trials} if trials is not None else {"epochs": epochs})}
        if "trials" in spec and "epochs" in spec:
            raise KdbenchError("the tuning budget is 'epochs' or 'trials', not both")
        try:
            settings = cls(
                epochs=None if "trials" in spec else int(spec.get("epochs", cls.epochs)),
                trials=int(spec["trials"]) if "trials" in spec else None,
                seeds=tuple(int(s) for s in spec.get("seeds", cls.seeds)),
                sampler_seed=int(spec.get("sampler_seed", cls.sampler_seed)),
                startup_trials=int(spec.get("startup_trials", cls.startup_trials)),
                pruner=_pruner(dict(spec.get("pruner") or {})),
                teacher=_flag(spec.get("teacher", False), "tuning: teacher"),
                teacher_epochs=int(spec["teacher_epochs"]) if "teacher_epochs" in spec else None,
            )
        except (TypeError, ValueError) as exc:
            raise KdbenchError(f"bad tuning setting: {exc}") from None
        if settings.budget < 1 or not settings.seeds or (settings.teacher_epochs is not None and settings.teacher_epochs < 1):
            raise KdbenchError("tuning needs a budget (epochs or trials) >= 1 and at least one seed")
        return settings

    def for_teachers(self) -> "TuningSettings":
        """The teacher studies' settings: `teacher_epochs` as their budget where given (epochs only)."""
        if self.teacher_epochs is None or self.trials is not None:
            return self
        return replace(self, epochs=self.teacher_epochs)

    @property
    def unit(self) -> str:
        return "trials" if self.trials is not None else "epochs"

    @property
    def budget(self) -> int:
        return self.trials if self.trials is not None else self.epochs

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "unit": self.unit, "seeds": list(self.seeds), "sampler_seed": self.sampler_seed,
                "startup_trials": self.startup_trials, "pruner": self.pruner.describe(), "defaults_first": True}


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise KdbenchError(f"{what} must be true or false, got {value!r}")
    return value


def _pruner(spec: dict[str, Any]) -> PrunerSettings:
    """A `pruner:` block. Without `kind`, a block of the median pruner's keys alone (suites written
    before successive halving) keeps the median pruner."""
    kind = spec.get("kind", MEDIAN if spec and set(spec) <= PRUNER_KEYS[MEDIAN] else HALVING)
    if kind not in PRUNER_KEYS:
        raise KdbenchError(f"unknown pruner kind '{kind}': valid: {choices(PRUNER_KEYS)}")
    if set(spec) - PRUNER_KEYS[kind]:
        raise KdbenchError(f"unknown pruner keys {choices(set(spec) - PRUNER_KEYS[kind])} for the {kind} "
                           f"pruner; valid: {choices(PRUNER_KEYS[kind])}")
    return PrunerSettings(kind=kind, **{k: int(v) for k, v in spec.items() if k != "kind"})
