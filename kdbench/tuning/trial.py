"""One tuning trial, as a worker runs it: train a student with the trial's hyperparameters (over the
suite's fixed ones, `Cell.hparams`) on each tuning seed and return the mean of the best validation NDCG@10 and the epochs it trained. The test
split is never scored here (`fit` validates on the validation split only, and nothing else is
evaluated).

Pruning runs in the worker against a private in-memory copy of the study's finished trials, with
the same Optuna pruner the study uses, on the first seed's best-so-far validation NDCG@10 per epoch;
the driver alone writes the study's storage (the successive-halving rungs the trial reached come
back in `TrialOutcome.rungs`, so later trials compete against them). A trial spends the epochs it
trains, over all its seeds; one that reaches `epoch_allowance` (what is left of the study's budget)
is stopped there and counts as pruned. A trial given a `resume_key` keeps its progress as it trains
(`tuning.resume`), so a worker killed mid-trial costs only the epochs since the last validation.
Every epoch is a progress line (`kdbench.progress`: the tune bar's postfix), since the bar itself
counts a trial's epochs only when it ends, tens of minutes apart on a real catalogue.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kdbench import progress
from kdbench.errors import KdbenchError
from kdbench.training.loop import fit
from kdbench.run.work import CellTask, build_student_run, prepare_worker
from kdbench.tuning.resume import TrialProgress, trial_folder

TRAINING_KNOBS = ("learning_rate", "weight_decay")
MEDIAN, HALVING = "median", "successive-halving"
RUNG_PREFIX = "completed_rung_"  # Optuna's SuccessiveHalvingPruner keeps each rung's value under this key


@dataclass(frozen=True)
class PrunerSettings:
    """How a trial is stopped early, on the first tuning seed's best-so-far validation NDCG@10.

    `successive-halving` (the default; Optuna's SuccessiveHalvingPruner, asynchronous successive
    halving, Li et al., MLSys 2020): at epochs first_rung x reduction_factor^r a trial goes on only
    if its value is in the best 1/reduction_factor of the values every trial had at that rung, so
    most trials stop at their first rungs and a budget in epochs buys many of them. `median`
    (Optuna's MedianPruner, the suites' pruner before epoch budgets): stop a trial below the median
    of the finished trials at the same epoch, after `startup_trials` trials and `warmup_epochs`."""

    kind: str = HALVING
    first_rung: int = 10  # successive halving: epochs of the first rung
    reduction_factor: int = 3
    startup_trials: int = 4  # median
    warmup_epochs: int = 10  # median

    def __post_init__(self) -> None:
        if self.kind not in (HALVING, MEDIAN):
            raise KdbenchError(f"unknown pruner kind '{self.kind}': valid: {HALVING}, {MEDIAN}")
        if min(self.first_rung, self.startup_trials + 1, self.warmup_epochs + 1) < 1 or self.reduction_factor < 2:
            raise KdbenchError("pruner: first_rung >= 1, reduction_factor >= 2, startup_trials and "
                               "warmup_epochs >= 0")

    def build(self):
        import optuna

        if self.kind == MEDIAN:
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=self.first_rung,
                                                      reduction_factor=self.reduction_factor)

    def not_before(self, epochs: int) -> "PrunerSettings":
        """These settings with no pruning decision before `epochs` (a pairing's min_epochs)."""
        if self.kind == MEDIAN:
            return replace(self, warmup_epochs=max(self.warmup_epochs, epochs))
        return replace(self, first_rung=max(self.first_rung, epochs))

    def describe(self) -> dict[str, Any]:
        """The settings of this kind (a study's identity and summary)."""
        if self.kind == MEDIAN:
            return {"kind": MEDIAN, "startup_trials": self.startup_trials, "warmup_epochs": self.warmup_epochs}
        return {"kind": HALVING, "first_rung": self.first_rung, "reduction_factor": self.reduction_factor}


@dataclass(frozen=True)
class TrialTask:
    """A student cell with the trial's parameters, the seeds to average, and the study's finished trials."""

    base: CellTask  # cell: the strategy, pairing and training settings; teacher artifact included
    params: dict[str, Any]  # strategy hyperparameters and training knobs the trial trains with
    seeds: tuple[int, ...]
    pruner: PrunerSettings
    finished_trials: tuple = field(default=(), repr=False)  # optuna FrozenTrials of the study
    epoch_allowance: int | None = None  # epochs the trial may train over all seeds (None: no limit)
    prunable: bool = True  # False for the published defaults: they are always trained to the end
    resume_key: str | None = None  # names the progress a killed trial kept (`tuning.resume`); None: none kept


@dataclass
class TrialOutcome:
    value: float | None  # mean best validation NDCG@10 over the seeds; None if pruned or failed
    curve: list[tuple[int, float]]  # (epoch, best validation NDCG@10 so far) of the first seed
    pruned: bool = False
    error: str | None = None
    seconds: float = 0.0
    epochs: int = 0  # epochs trained, all seeds together
    out_of_budget: bool = False  # stopped by the study's epoch budget, not by the pruner
    rungs: dict[str, float] = field(default_factory=dict)  # successive-halving rungs reached


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strategy hyperparameters, training knobs) of a trial's parameters."""
    strategy = {k: v for k, v in params.items() if k not in TRAINING_KNOBS}
    training = {k: v for k, v in params.items() if k in TRAINING_KNOBS}
    return strategy, training


class _Stopped(Exception):
    def __init__(self, out_of_budget: bool):
        super().__init__()
        self.out_of_budget = out_of_budget


def mirror_study(pruner: Any, finished: tuple) -> Any:
    """An in-memory study holding the finished trials' learning curves and rungs, for the pruner.

    The trials enter without their parameters: a pruner reads only intermediate values and rungs,
    and Optuna's add_trial rejects a parameter outside its distribution, which the published
    defaults (the first trial) may be (DE's anneal over 1,000 epochs against a space up to 500;
    CD's N = 3,000 on a catalogue whose space ends below it)."""
    import copy

    import optuna

    mirror = optuna.create_study(direction="maximize", pruner=pruner.build())
    curves = []
    for trial in finished:
        curve = copy.copy(trial)
        curve.params, curve.distributions = {}, {}
        curves.append(curve)
    mirror.add_trials(curves)
    return mirror


def run_trial(task: TrialTask) -> TrialOutcome:
    """Train the trial's seeds in turn; with `task.resume_key`, continue a trial killed before
    (`tuning.resume`): finished seeds are taken as they ended, the seed being trained continues at
    its last validated epoch, and the pruner is shown the first seed's kept curve again, so the
    resumed trial ends as the uninterrupted one would have (value, curve, epochs, rungs)."""
    import optuna

    prepare_worker(task.base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the mirror study's own log lines
    start = time.perf_counter()
    kept = TrialProgress(trial_folder(task.base.work_dir, task.resume_key), task.resume_key) if task.resume_key else None
    if kept is not None and kept.outcome is not None:  # it ended, and was killed before the study recorded it
        return TrialOutcome(**{**kept.outcome, "curve": [tuple(point) for point in kept.outcome["curve"]]})
    strategy_params, training = split_params(task.params)
    mirror = mirror_study(task.pruner, task.finished_trials)
    mirror_trial = mirror.ask()
    values: list[float] = []
    curve: list[tuple[int, float]] = []
    spent = 0
    earlier_seconds = 0.0  # trained before a kill

    def outcome(value: float | None = None, **fields) -> TrialOutcome:
        rungs = {k: v for k, v in mirror.trials[-1].system_attrs.items() if k.startswith(RUNG_PREFIX)}
        ended = TrialOutcome(value, curve, seconds=earlier_seconds + time.perf_counter() - start, epochs=spent,
                             rungs=rungs, **fields)
        if kept is not None:
            kept.ended(asdict(ended))
        return ended

    def show(epoch: int, valid: float) -> None:
        """The first seed's best so far, to the pruner."""
        best = max(valid, curve[-1][1]) if curve else valid
        curve.append((epoch, best))
        mirror_trial.report(best, epoch)
        if mirror_trial.should_prune() and task.prunable:  # asked anyway: it records the rungs
            raise _Stopped(out_of_budget=False)

    try:
        for position, seed in enumerate(task.seeds):
            if kept is not None and position < len(kept.seeds):  # finished before a kill
                done = kept.seeds[position]
                values.append(done["value"])
                spent += int(done["epochs"])
                earlier_seconds += done["seconds"]
                for epoch, best in kept.curve if position == 0 else ():
                    show(epoch, best)
                continue
            seed_start, seed_spent, seed_seconds = time.perf_counter(), spent, 0.0
            checkpoint = kept.seed_checkpoint(position) if kept is not None else None
            if checkpoint is not None and (stored := checkpoint.peek()) is not None:  # the epochs it kept
                loop = stored["loop"]
                spent += int(loop["epoch"])
                seed_seconds = float(loop["train_seconds"]) + float(loop["eval_seconds"])
                earlier_seconds += seed_seconds
                for epoch, valid in loop["curve"] if position == 0 else ():
                    show(int(epoch), float(valid))
            cell = replace(task.base.cell, seed=seed, train=replace(task.base.cell.train, **training))
            data, student, strategy, _ = build_student_run(replace(task.base, cell=cell), strategy_params)

            def on_epoch(epoch: int, valid: float | None, first=position == 0, seed=seed) -> None:
                nonlocal spent
                spent += 1
                progress.report(f"{cell.pairing} {cell.label} trial: seed {seed} epoch {epoch}/{cell.train.max_epochs}"
                                + (f", valid NDCG@10 {valid:.4f}" if valid is not None else ""))
                if first and valid is not None:
                    show(epoch, valid)
                if task.epoch_allowance is not None and spent >= task.epoch_allowance:
                    raise _Stopped(out_of_budget=True)

            result = fit(student, data, cell.train, strategy=strategy, seed=seed, on_epoch=on_epoch,
                         checkpoint=checkpoint)
            values.append(result.best_valid)
            if kept is not None:
                kept.seed_done(result.best_valid, spent - seed_spent,
                               seed_seconds + time.perf_counter() - seed_start, curve)
    except _Stopped as stop:
        return outcome(pruned=True, out_of_budget=stop.out_of_budget)
    except KdbenchError as exc:  # a drawn combination the strategy refuses (e.g. a pool too large)
        return outcome(error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a diverged or crashed trial fails; the study goes on
        return outcome(error=f"{type(exc).__name__}: {exc}")
    value = sum(values) / len(values)
    return outcome(value if math.isfinite(value) else None)
