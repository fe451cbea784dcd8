"""`tune`: every strategy of a suite, scratch included, with the same Optuna budget on validation
data (`kdbench.tuning`); the studies resume where they stopped, and the tuning summary is rewritten."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kdbench import progress
from kdbench.run.cells import TEACHER
from kdbench.commands.execution import Execution, progress_note, resolve_protocols, resolve_strategies
from kdbench.errors import KdbenchError
from kdbench.store.paths import check_folder
from kdbench.report.tuning_summary import read_meta, record_invocation, write_tuning_report
from kdbench.run.runner import Runner, validate_cells
from kdbench.run.suites import expand, load_suite
from kdbench.tuning.teachers import tune_teachers, with_tuned_teachers
from kdbench.tuning import TuningSettings, check_storages, study_cells, tune


def tune_suite(results_dir: str | Path, execution: Execution, suite_file: str | None = None, quick: bool = False,
               strategies: list[str] | None = None, protocols: list[str] | None = None,
               pairings: list[str] | None = None, trials: int | None = None,
               command: str | None = None, budget_epochs: int | None = None,
               datasets: list[str] | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Tune the suite's studies (only `strategies`, `pairings` and `datasets` if given; a budget of `trials` or of
    `budget_epochs` training epochs per study, default the suite's `tuning:` block): (their
    summaries, the tuning report's files). `command` is recorded in tuning/meta.json with the wall
    time and the trials this call ran."""
    started = time.time()
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    suite = load_suite(suite_file, quick=quick)
    cells = validate_cells(expand(suite, resolve_strategies(strategies), resolve_protocols(protocols), sweeps=False,
                                  datasets_only=datasets), execution.device)
    if pairings:
        known = sorted({cell.pairing for cell in cells})
        unknown = [p for p in pairings if p not in known]
        if unknown:
            raise KdbenchError(f"unknown pairing '{unknown[0]}' for suite '{suite.name}': valid: {', '.join(known)}")
        cells = [cell for cell in cells if cell.pairing in pairings]
    settings = TuningSettings.from_spec(suite.spec.get("tuning"), trials, budget_epochs)
    runs_dir = Path(results_dir) / "quick" if quick else Path(results_dir)
    check_folder(runs_dir, "--results-dir")
    read_meta(runs_dir)  # a damaged invocation log or storage stops here, before anything runs
    check_storages(cells, runs_dir, execution.force)
    runner = Runner(runs_dir, execution.cache_dir, execution.device, log=progress_note, plugins=execution.plugins,
                    heal_cache=execution.heal_cache)
    n_studies = len(study_cells(cells))
    n_teachers = len({(c.dataset, c.protocol, c.pairing) for c in study_cells(cells)}) if settings.teacher else 0
    teachers = settings.for_teachers()
    runner.executor = execution.executor_for(n_studies + n_teachers)
    ran = 0
    completed = False
    try:
        # the bar counts a trial's epochs when it ends; meanwhile each epoch of a trial (`tuning.trial`)
        # or of a training teacher shows beside the count
        with tqdm(total=n_studies * settings.budget + n_teachers * teachers.budget, desc="kdbench tune",
                  unit=settings.unit[:-1], dynamic_ncols=True) as bar, progress.sink(bar.set_postfix_str):
            def advance(study, outcome) -> None:
                nonlocal ran
                ran += 1
                state = "pruned" if outcome.pruned else "failed" if outcome.error else f"{outcome.value:.4f}"
                bar.set_postfix_str(f"{study.pairing} {study.label}: {state}")
                bar.update(1 if settings.trials is not None else max(outcome.epochs, 1))

            def resumed(study, used: int) -> None:  # what earlier runs spent: the bar starts there
                done = min(used, (teachers if study.label == TEACHER else settings).budget)  # not this run's speed
                bar.n += done
                bar.initial += done
                bar.last_print_n = bar.n
                bar.refresh()

            summaries = []
            if settings.teacher:  # the teachers first: the student studies distil from the tuned ones
                summaries += tune_teachers(runner, cells, teachers, force=execution.force, on_trial=advance,
                                           on_open=resumed)
                cells = with_tuned_teachers(cells, runs_dir)
            summaries += tune(runner, cells, settings, force=execution.force, on_trial=advance, on_open=resumed)
            completed = True
    finally:
        runner.executor.close()
        if ran:
            record_invocation(runs_dir, command, time.time() - started, ran)
            if not completed:  # interrupted or failed: the summary still shows what the studies spent,
                with contextlib.suppress(Exception):  # and never replaces the error that ended the run
                    write_tuning_report(runs_dir)
    return summaries, write_tuning_report(runs_dir)
