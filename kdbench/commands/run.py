"""`run`: train (or load the cached) teacher and the students of a single run or of a whole suite,
writing one record per cell; a suite's run also writes its leaderboard."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from kdbench.cells import Cell
from kdbench.commands.execution import (
    Execution, execute_cells, failed_records, progress_note, resolve_protocols, resolve_strategies,
)
from kdbench.datasets.offline import set_aside_missing
from kdbench.families import BackboneSpec, default_protocol
from kdbench.paths import check_folder
from kdbench.report import write_reports
from kdbench.runner import Runner
from kdbench.suites import expand, load_suite
from kdbench.teacher_file import parse_teacher
from kdbench.train import TrainSettings
from kdbench.teacher_tuning import with_tuned_teachers
from kdbench.tuning import TuningSettings, tuned_cells


@dataclass
class RunOutcome:
    """What a `run` did: its cells, their records (in cell order), and the files a suite's run wrote."""

    runner: Runner
    cells: list[Cell]
    records: list[dict]
    outputs: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return failed_records(self.records)


def run_single(results_dir: str | Path, execution: Execution, dataset: str, teacher: str, student: str,
               strategies: list[str] | None = None, seeds: list[int] | None = None,
               hparams: Sequence[tuple[str, str]] = (), train: TrainSettings = TrainSettings(),
               teacher_train: TrainSettings = TrainSettings(), data_path: str | None = None,
               protocols: list[str] | None = None) -> RunOutcome:
    """Every (protocol, seed, strategy) cell of one pairing: `strategies` (default scratch; ['all']
    for every method), `seeds` (default [0]), `protocols` (default: the family's), `hparams` the
    strategy overrides as (KEY, VALUE) text; `train` is the student's settings, `teacher_train` the
    teacher's (each model has its own, so a short student run never caches a short teacher)."""
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    teacher_spec, student_spec = parse_teacher(teacher), BackboneSpec.parse(student)
    cells = [
        Cell(dataset, teacher_spec, student_spec, name, seed, tuple(sorted(dict(hparams).items())),
             train=train, teacher_train=teacher_train, data_path=data_path, protocol=protocol)
        for protocol in (resolve_protocols(protocols) or [default_protocol(teacher_spec)])
        for seed in (seeds or [0])
        for name in (resolve_strategies(strategies) or ["scratch"])
    ]
    runner, records = execute_cells(cells, Path(results_dir), execution, check_stored=False)
    return RunOutcome(runner, cells, records)


def run_suite(results_dir: str | Path, execution: Execution, suite_file: str | None = None, quick: bool = False,
              strategies: list[str] | None = None, protocols: list[str] | None = None,
              command: str | None = None, strict: bool = False) -> RunOutcome:
    """A suite (`suite_file`, default the default suite; its reduced version with `quick`, under
    RESULTS_DIR/quick), its tuned rows where tuning finished, then its leaderboard. `command` is the
    invocation recorded in the leaderboard's header, with the wall time, when any cell ran. A
    catalogue dataset not fetched yet is named (with the command that fetches it) and set aside;
    `strict` stops instead."""
    started = time.time()
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    suite = load_suite(suite_file, quick=quick)
    cells = set_aside_missing(expand(suite, resolve_strategies(strategies), resolve_protocols(protocols)), strict,
                              progress_note)
    runs_dir = Path(results_dir) / "quick" if quick else Path(results_dir)
    # size sweeps are not tuned: only the suite's own pairings get tuned rows
    untuned = set_aside_missing(expand(suite, resolve_strategies(strategies), resolve_protocols(protocols), sweeps=False),
                                note=lambda _: None)
    if TuningSettings.from_spec(suite.spec.get("tuning")).teacher:  # every row distils from the tuned teacher
        cells, untuned = with_tuned_teachers(cells, runs_dir, untuned), with_tuned_teachers(untuned, runs_dir)
    cells += tuned_cells(untuned, runs_dir, warn=progress_note)
    runner, records = execute_cells(cells, runs_dir, execution, check_stored=True)
    # an invocation that found every cell finished keeps the header of the one that ran them
    ran = runner.executed > 0
    outputs = write_reports(runs_dir, Path(results_dir), quick=quick, command=command if ran else None,
                            wall_seconds=time.time() - started if ran else None)
    return RunOutcome(runner, cells, records, outputs)
