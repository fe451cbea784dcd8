"""`run`: train (or load the cached) teacher and the students of a single run or of a whole suite,
writing one record per cell; a suite's run also writes its leaderboard."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from kdbench.run.cells import Cell
from kdbench.commands.execution import (
    Execution, execute_cells, failed_records, progress_note, resolve_protocols, resolve_strategies,
)
from kdbench.data.offline import set_aside_missing
from kdbench.families import BackboneSpec, default_protocol
from kdbench.store.paths import check_folder
from kdbench.report import write_reports
from kdbench.report.data_share import share_root
from kdbench.run.runner import Runner
from kdbench.run.suites import expand, load_suite
from kdbench.training.teacher_file import PREFIX as TEACHER_FILE, parse_teacher
from kdbench.training.loop import TrainSettings
from kdbench.tuning.teachers import with_tuned_teachers
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
              command: str | None = None, strict: bool = False, datasets: list[str] | None = None) -> RunOutcome:
    """A suite (`suite_file`, default the default suite; its reduced version with `quick`, under
    RESULTS_DIR/quick; only `datasets` of it if given), its tuned rows where tuning finished, then its
    leaderboard (of every stored run). `command` is the invocation recorded in the leaderboard's
    header, with the wall time, when any cell ran. A catalogue dataset not fetched yet is named (with
    the command that fetches it) and set aside; `strict` stops instead."""
    started = time.time()
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    suite = load_suite(suite_file, quick=quick)
    cells = set_aside_missing(expand(suite, resolve_strategies(strategies), resolve_protocols(protocols),
                                     datasets_only=datasets), strict, progress_note)
    runs_dir = Path(results_dir) / "quick" if quick else Path(results_dir)
    # size sweeps are not tuned: only the suite's own pairings get tuned rows
    untuned = set_aside_missing(expand(suite, resolve_strategies(strategies), resolve_protocols(protocols), sweeps=False,
                                       datasets_only=datasets), note=lambda _: None)
    if TuningSettings.from_spec(suite.spec.get("tuning")).teacher:  # every row distils from the tuned teacher
        cells, untuned = with_tuned_teachers(cells, runs_dir, untuned), with_tuned_teachers(untuned, runs_dir)
    # a quick run is never tuned (`tune --quick` aside): no "not tuned" line per strategy
    cells += tuned_cells(untuned, runs_dir, warn=progress_note, quiet_untuned=quick)
    # `sweep-data`'s 100% share holds plain cells too (a pairing's tuned top three): copied, not retrained
    runner, records = execute_cells(cells, runs_dir, execution, check_stored=True,
                                    reuse_from=() if quick else (share_root(results_dir, 1.0),))
    # an invocation that found every cell finished keeps the header of the one that ran them
    ran = runner.executed > 0
    outputs = write_reports(runs_dir, Path(results_dir), quick=quick, command=command if ran else None,
                            wall_seconds=time.time() - started if ran else None)
    return RunOutcome(runner, cells, records, outputs)


# A single run's default pairing (`run --teacher/--student`): the README's first example and the
# pairing its cached teachers and reproducibility figures are keyed to; the leaderboard's is the
# default suite's first pairing, with the suite's settings (kept apart: see `leaderboard_note`).
SINGLE_DATASET, SINGLE_TEACHER, SINGLE_STUDENT = "ml-100k", "BPR:200", "BPR:20"
_FLAGS = {"learning_rate": "lr", "max_epochs": "epochs", "batch_size": "batch-size", "patience": "patience",
          "eval_every": "eval-every"}


def leaderboard_note(dataset: str, teacher: str, student: str, train: TrainSettings,
                     teacher_train: TrainSettings) -> str | None:
    """One line when a single run's numbers are not comparable with the leaderboard's although they
    look it: its pairing is the single run's default or one of the default suite's, on a dataset of
    the suite, and its settings differ from the suite's; it names the flags that give the suite's.
    (The defaults themselves stay: changing them would change what the documented `run` computes.)"""
    if teacher.startswith(TEACHER_FILE):
        return None  # a teacher file is no pairing of the leaderboard's
    suite_cells = [cell for cell in expand(load_suite(None), ["scratch"], sweeps=False) if cell.dataset == dataset]
    pairing = f"{BackboneSpec.parse(teacher)}->{BackboneSpec.parse(student)}"
    same = next((cell for cell in suite_cells if cell.pairing == pairing), None)
    if same is None and (pairing != f"{SINGLE_TEACHER}->{SINGLE_STUDENT}" or not suite_cells):
        return None  # a pairing of the user's own choosing: nothing to compare with
    target = same or suite_cells[0]
    flags = ([] if same else [f"--teacher {target.teacher}", f"--student {target.student}"]) + [
        f"--{prefix}{flag} {getattr(wanted, field):g}"
        for prefix, wanted, given in (("", target.train, train), ("teacher-", target.teacher_settings, teacher_train))
        for field, flag in _FLAGS.items() if getattr(wanted, field) != getattr(given, field)]
    unflagged = sorted(field for field in ("weight_decay", "min_epochs", "init_std")
                       if getattr(target.train, field) != getattr(train, field)
                       or getattr(target.teacher_settings, field) != getattr(teacher_train, field))
    if not flags and not unflagged:
        return None
    how = (f"run with {' '.join(flags)}" if not unflagged else
           f"run `python -m kdbench run --all --strategy NAME` (its {', '.join(unflagged)} has no flag)")
    return (f"note: these settings ({pairing}, student lr {train.learning_rate:g}, max epochs {train.max_epochs}) "
            f"are not the leaderboard's ({target.pairing}, student lr {target.train.learning_rate:g}, max epochs "
            f"{target.train.max_epochs}), so the numbers are not comparable with it; for its settings {how}")

