"""One tuning trial, as a worker runs it: train a student with the trial's hyperparameters and
return its validation NDCG@10 curve. The test split is never scored here (`fit` validates on the
validation split only, and nothing else is evaluated).

Pruning runs in the worker against a private in-memory copy of the study's finished trials, with
the same Optuna pruner the study uses; the driver alone writes the study's storage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.train import fit
from kdbench.work import CellTask, build_student_run, prepare_worker

TRAINING_KNOBS = ("learning_rate", "weight_decay")


@dataclass(frozen=True)
class PrunerSettings:
    """Optuna's MedianPruner: stop a trial whose best validation NDCG@10 so far is below the median of
    the finished trials at the same epoch, after `startup_trials` trials and `warmup_epochs` epochs."""

    startup_trials: int = 4
    warmup_epochs: int = 10

    def build(self):
        import optuna

        return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs)


@dataclass(frozen=True)
class TrialTask:
    """A student cell with the trial's parameters, the seeds to average, and the study's finished trials."""

    base: CellTask  # cell: the strategy, pairing and training settings; teacher artifact included
    params: dict[str, Any]  # strategy hyperparameters and training knobs, as the sampler drew them
    seeds: tuple[int, ...]
    pruner: PrunerSettings
    finished_trials: tuple = field(default=(), repr=False)  # optuna FrozenTrials of the study


@dataclass
class TrialOutcome:
    value: float | None  # mean best validation NDCG@10 over the seeds; None if pruned or failed
    curve: list[tuple[int, float]]  # (epoch, validation NDCG@10) of the first seed
    pruned: bool = False
    error: str | None = None
    seconds: float = 0.0
    epochs: int = 0


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strategy hyperparameters, training knobs) of a trial's parameters."""
    strategy = {k: v for k, v in params.items() if k not in TRAINING_KNOBS}
    training = {k: v for k, v in params.items() if k in TRAINING_KNOBS}
    return strategy, training


class _Pruned(Exception):
    pass


def run_trial(task: TrialTask) -> TrialOutcome:
    import optuna

    prepare_worker(task.base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the mirror study's own log lines
    start = time.perf_counter()
    strategy_params, training = split_params(task.params)
    mirror = optuna.create_study(direction="maximize", pruner=task.pruner.build())
    mirror.add_trials(list(task.finished_trials))
    mirror_trial = mirror.ask()
    values, curve, epochs = [], [], 0
    try:
        for position, seed in enumerate(task.seeds):
            cell = replace(task.base.cell, seed=seed, train=replace(task.base.cell.train, **training))
            data, student, strategy, _ = build_student_run(replace(task.base, cell=cell), strategy_params)

            def on_epoch(epoch: int, valid: float | None, first=position == 0) -> None:
                if valid is None or not first:
                    return
                curve.append((epoch, valid))
                mirror_trial.report(valid, epoch)
                if mirror_trial.should_prune():
                    raise _Pruned

            result = fit(student, data, cell.train, strategy=strategy, seed=seed, on_epoch=on_epoch)
            epochs += result.epochs_run
            values.append(result.best_valid)
    except _Pruned:
        return TrialOutcome(None, curve, pruned=True, seconds=time.perf_counter() - start,
                            epochs=epochs + (curve[-1][0] if curve else 0))
    except KdbenchError as exc:  # a drawn combination the strategy refuses (e.g. a pool too large)
        return TrialOutcome(None, curve, error=str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a diverged or crashed trial fails; the study goes on
        return TrialOutcome(None, curve, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    value = sum(values) / len(values)
    return TrialOutcome(value if math.isfinite(value) else None, curve, seconds=time.perf_counter() - start,
                        epochs=epochs)
