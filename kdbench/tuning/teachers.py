"""Tuned teachers (suite option `tuning: {teacher: true}`; default off, today's fixed teachers).

Each pairing's teacher gets its own Optuna study, `<results>/tuning/<dataset>/<pairing>/teacher.db`
(`.json` beside it), with the student studies' mechanics (`kdbench.tuning`: the same budget in
epochs, tuning seeds, sampler, pruner, the suite's teacher settings as trial 0), on validation
only. It tunes the teacher's learning rate and weight decay (`SHARED_TRAINING_SPACE`); its size is
the suite's choice (a size sweep's), not tuned. A trial trains the teacher model as a student
trained without distillation (`scratch` on the teacher's backbone, with the teacher's training
settings), so the objective is the teacher's own best validation NDCG@10; like scratch's study it
needs no teacher, so the suite's untuned teacher is never trained.

The chosen values replace the teacher's learning rate and weight decay in every cell of the
pairing (`with_tuned_teachers`), defaults and tuned rows alike, before the student studies and the
runs: they enter the teacher's cache key (`record.teacher_identity` hashes the teacher's training
settings) only then, so a suite that does not tune its teachers keeps its teacher keys byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from kdbench.run.cells import TEACHER, Cell
from kdbench.errors import KdbenchError
from kdbench.run.runner import Runner
from kdbench.tuning.trial import TrialOutcome
from kdbench.tuning.best import BEST_FIELDS, read_summary
from kdbench.tuning.settings import TuningSettings
from kdbench.tuning.studies import Study, check_study_storages, check_tuning_seeds, run_studies, study_cells

SCRATCH = "scratch"
TUNE_FIRST = "run `python -m kdbench tune` on the suite first"


def trainee(cell: Cell) -> Cell:
    """The cell a teacher trial trains: the teacher's backbone and training settings, no distillation."""
    settings = cell.teacher_settings
    return replace(cell, strategy=SCRATCH, student=cell.teacher, train=settings, teacher_train=settings, hparams=())


@dataclass
class TeacherStudy(Study):
    """A pairing's teacher study: stored beside the pairing's student studies as `teacher`."""

    pairing_name: str = ""

    @property
    def pairing(self) -> str:
        return self.pairing_name

    @property
    def label(self) -> str:
        return TEACHER

    def identity(self, settings: TuningSettings) -> dict[str, Any]:
        return {**super().identity(settings), "tunes": TEACHER, "teacher": str(self.cell.teacher)}


def teacher_study(cell: Cell, root: str | Path, n_items: int = 0, fingerprint: str | None = None) -> TeacherStudy:
    return TeacherStudy(trainee(cell), n_items, Path(root), fingerprint, pairing_name=cell.pairing)


def tune_teachers(runner: Runner, cells: list[Cell], settings: TuningSettings, force: bool = False,
                  on_trial: Callable[[Study, TrialOutcome], None] | None = None,
                  on_open: Callable[[Study, int], None] | None = None) -> list[dict[str, Any]]:
    """One study per pairing of `cells` for its teacher, run to its budget; their summaries
    (on_trial, on_open: as `tune`'s)."""
    check_tuning_seeds(settings, cells)
    pairings = {(c.dataset, c.protocol, c.pairing): c for c in study_cells(cells)}
    studies = [teacher_study(cell, runner.results_dir, runner.n_items(cell), runner.fingerprint(cell))
               for cell in pairings.values()]
    check_study_storages(studies, force)
    return run_studies(runner, studies, settings, force, on_trial, on_open)


def tuned_teacher(cell: Cell, results_dir: str | Path) -> dict[str, Any]:
    """The finished teacher study of `cell`'s pairing (its summary), or KdbenchError saying why not."""
    study = teacher_study(cell, results_dir)
    if not study.best_path.exists():
        raise KdbenchError(f"the suite tunes its teachers (tuning: teacher: true) but {study.name} has no "
                           f"study yet: {TUNE_FIRST}")
    best = read_summary(study.best_path, BEST_FIELDS)
    if not best["finished"] or best["best_trial"] is None:
        raise KdbenchError(f"teacher study {study.name} is unfinished or has no complete trial: {TUNE_FIRST}")
    if best["identity"].get("teacher_train") != json.loads(json.dumps(cell.teacher_settings.as_dict(), default=str)):
        raise KdbenchError(f"teacher study {study.name} was made with other teacher settings: {TUNE_FIRST}")
    return best


def with_tuned_teachers(cells: list[Cell], results_dir: str | Path, studied: list[Cell] | None = None) -> list[Cell]:
    """`cells` with their pairing's tuned teacher learning rate and weight decay (`tuned_teacher`).
    A pairing without a study of its own (a size sweep's: sweeps are not tuned) takes the study of a
    pairing in `studied` with the same dataset, protocol and teacher, so the sweep keeps one teacher."""
    by_teacher = {(c.dataset, c.protocol, str(c.teacher)): c for c in reversed(studied or [])}
    own = {(c.dataset, c.protocol, c.pairing) for c in studied or cells}
    found: dict[tuple, dict[str, Any]] = {}
    out = []
    for cell in cells:
        key = (cell.dataset, cell.protocol, cell.pairing)
        source = cell if key in own else by_teacher.get((cell.dataset, cell.protocol, str(cell.teacher)), cell)
        source_key = (source.dataset, source.protocol, source.pairing)
        if source_key not in found:
            found[source_key] = tuned_teacher(source, results_dir)
        tuned = replace(cell.teacher_settings, **found[source_key]["best_training"])
        out.append(replace(cell, teacher_train=tuned, **({"train": tuned} if cell.is_teacher else {})))
    return out
