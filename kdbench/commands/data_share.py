"""`sweep-data`: the teacher, scratch and distilled students of one pairing trained on 25%, 50% and 100%
of each user's training interactions (validation and test fixed), written as
results/data_share_DATASET_PAIRING.md/.csv/.png (`kdbench.report.data_share`, `kdbench.run.subsample`).

The students: scratch and `strategies`, or, by default, the three strategies of the pairing whose
finished tuning studies reached the best validation NDCG@10 (chosen on validation, never on test),
each with its tuned hyperparameters (`variant` tuned) or its published defaults. Training settings:
the suite's for a pairing the suite holds (the teacher's tuned learning rate and weight decay where the
suite tunes its teachers: every share's teacher is trained as the leaderboard's), else TrainSettings'
defaults; `epochs` / `patience` override both teacher's and students'. Each share's cells resume like
`run`; the 100% share's are the run store's own, copied from or to `results/runs/` (`Runner.reuse_from`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kdbench.run.cells import Cell
from kdbench.commands.execution import Execution, execute_cells, progress_note
from kdbench.data.loading import check_dataset
from kdbench.report.data_share import DEFAULT_SHARES, share_cells, share_root, share_text, write_data_share
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec, default_protocol, family_of
from kdbench.store.paths import check_folder
from kdbench.run.record import DEFAULTS, SCRATCH, TEACHER, TUNED
from kdbench.report import load_tuning
from kdbench.report.tuning_summary import BEST_VALUE
from kdbench.report.values import is_compression
from kdbench.strategies import STRATEGIES
from kdbench.store.reading import read_mapping
from kdbench.run.subsample import check_share
from kdbench.run.suites import expand, load_suite
from kdbench.tuning import Study, TuningSettings, tuned_cells
from kdbench.tuning.teachers import with_tuned_teachers

TOP = 3  # strategies chosen from the tuning studies when none are named


def run_data_share(results_dir: str | Path, execution: Execution, dataset: str, teacher: str, student: str,
                   shares: list[float] | tuple[float, ...] = DEFAULT_SHARES, seeds: list[int] | tuple[int, ...] = (0, 1, 2),
                   strategies: list[str] | None = None, variant: str = TUNED, subsample_seed: int = 0,
                   suite_file: str | None = None, epochs: int | None = None, patience: int | None = None,
                   data_path: str | None = None, command: str = "") -> tuple[list[Path], list[dict[str, Any]]]:
    """Every share x (teacher row, scratch, strategies) x seed, each reused unless `execution.force`;
    then the table and the curve: (the files written, every cell's record)."""
    teacher_spec, student_spec = BackboneSpec.parse(teacher), BackboneSpec.parse(student)
    if family_of(teacher_spec).name != "general":
        raise KdbenchError(f"sweep-data subsamples users' training interactions: general recommenders only, "
                           f"not {teacher_spec.model}")
    shares = sorted({check_share(share) for share in shares})
    if not shares or not seeds:
        raise KdbenchError("sweep-data needs at least one share (--shares) and one seed (--seeds)")
    check_dataset(dataset, data_path)
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    template, fixed = _template(dataset, teacher_spec, student_spec, suite_file, data_path, epochs, patience,
                                results_dir)
    finished = {} if strategies else _finished_studies(template, results_dir, fixed)
    names = strategies or _top_tuned(finished, template)
    students = _students(template, [SCRATCH] + [n for n in names if n != SCRATCH], seeds, variant, results_dir,
                         fixed)
    teacher_row = replace(template, strategy=TEACHER, seed=template.teacher_seed)
    records: dict[float, list[dict[str, Any]]] = {}
    for share, cells in share_cells(students, teacher_row, shares, subsample_seed).items():
        progress_note(f"{share_text(share * 100)}% of the training data: {len(cells)} cells")
        # the whole split's cells are the run store's own: a tuned row `run` made is copied, not retrained
        _, records[share] = execute_cells(cells, share_root(results_dir, share), execution, check_stored=False,
                                          reuse_from=(Path(results_dir),) if share == 1.0 else ())
    intro = _intro(command, template, students, shares, seeds, subsample_seed, variant, sorted(finished))
    paths = write_data_share(records, dataset, template.pairing, intro, results_dir)
    return paths, [record for found in records.values() for record in found]


def _template(dataset: str, teacher: BackboneSpec, student: BackboneSpec, suite_file: str | None,
              data_path: str | None, epochs: int | None, patience: int | None,
              results_dir: str | Path = "results") -> tuple[Cell, dict[str, tuple]]:
    """A scratch cell of the pairing with the suite's settings where the suite has the pairing (its
    tuned teacher's learning rate and weight decay where the suite tunes its teachers, as `run` gives
    the leaderboard's rows: every share trains the teacher as the leaderboard's was), and the suite's
    fixed hyperparameters per strategy (`hparams: {de: {num_experts: 5}}`), which tuning kept."""
    suite = load_suite(suite_file)
    found = [cell for cell in expand(suite, sweeps=False)
             if cell.dataset == dataset and cell.teacher == teacher and cell.student == student
             and cell.protocol == default_protocol(teacher) and not cell.is_teacher]
    if found and TuningSettings.from_spec(suite.spec.get("tuning")).teacher:
        found = with_tuned_teachers(found, results_dir)
    cell = (replace(found[0], strategy=SCRATCH, hparams=(), variant=DEFAULTS) if found
            else Cell(dataset, teacher, student, SCRATCH, 0, protocol=default_protocol(teacher)))
    if data_path is not None:
        cell = replace(cell, data_path=data_path)
    knobs = {k: v for k, v in (("max_epochs", epochs), ("patience", patience)) if v is not None}
    if knobs:
        cell = replace(cell, train=replace(cell.train, **knobs), teacher_train=replace(cell.teacher_settings, **knobs))
    return cell, {c.strategy: c.hparams for c in found if c.variant == DEFAULTS}


def _top_tuned(best: dict[str, float], template: Cell) -> list[str]:
    """The TOP strategies (scratch aside) whose finished, current tuning study of this pairing reached
    the best validation NDCG@10 (`best`: `_finished_studies`)."""
    if len(best) < TOP:
        raise KdbenchError(f"{template.dataset} {template.pairing}: {len(best)} finished tuning studies besides "
                           f"scratch, {TOP} needed to choose the top {TOP}; run `python -m kdbench tune` or name "
                           f"the strategies with --strategy")
    return sorted(best, key=lambda name: (-best[name], name))[:TOP]


def _finished_studies(template: Cell, results_dir: str | Path, fixed: dict[str, tuple] | None = None
                      ) -> dict[str, float]:
    """Distillation strategy (scratch and the compression baselines aside) -> best validation NDCG@10
    of its finished, current tuning study of this pairing."""
    studies = load_tuning(results_dir)
    here = studies[(studies["dataset"] == template.dataset) & (studies["pairing"] == template.pairing)]
    # the distillation strategies: a compression baseline's study (svd-ft, prune-ft) is not a candidate
    names = [name for name in here["strategy"] if name not in (SCRATCH, TEACHER)]
    candidates = [replace(template, strategy=name, hparams=(fixed or {}).get(name, ()))
                  for name in names if not is_compression(STRATEGIES.get(name).family)]
    usable = tuned_cells(candidates, results_dir, warn=lambda _: None)
    return {cell.strategy: float(read_mapping(Study(cell, 0, Path(results_dir)).best_path)[BEST_VALUE])
            for cell in usable}


def _students(template: Cell, names: list[str], seeds: list[int], variant: str, results_dir: str | Path,
              fixed: dict[str, tuple]) -> list[Cell]:
    """Every strategy at every seed, with its tuned hyperparameters (`variant` tuned) or defaults (and
    the suite's fixed ones either way)."""
    base = [replace(template, strategy=name, hparams=fixed.get(name, ())) for name in names]
    if variant == TUNED:
        tuned = tuned_cells(base, results_dir, warn=lambda _: None)
        missing = sorted(set(names) - {cell.strategy for cell in tuned})
        if missing:
            raise KdbenchError(f"{template.dataset} {template.pairing}: no finished, current tuning study for "
                               f"{', '.join(missing)}; run `python -m kdbench tune` or pass --variant defaults")
        base = tuned
    return [replace(cell, seed=seed) for seed in seeds for cell in base]


def _intro(command: str, template: Cell, students: list[Cell], shares: list[float], seeds: list[int],
           subsample_seed: int, variant: str, considered: list[str]) -> str:
    """The page's header: the command, the settings, the subsample rule and how to read the table.
    `considered`: the strategies whose finished studies the top ones were chosen from (none: named)."""
    train, teacher_train = template.train, template.teacher_settings
    names = list(dict.fromkeys(cell.strategy for cell in students))
    how = (f"scratch and the {TOP} strategies whose tuning studies reached the best validation NDCG@10 "
           f"(chosen among the {len(considered)} finished studies of this pairing: {', '.join(considered)})"
           if considered else "scratch and the strategies named")
    tuned = (" (tuned rows: each strategy's own tuned learning rate and weight decay instead)"
             if variant == TUNED else "")
    return "\n".join([
        f"Command: `{command}`" if command else "",
        "",
        f"Students: {', '.join(names)}: {how}, {'tuned hyperparameters' if variant == TUNED else 'published defaults'}; "
        f"seeds {', '.join(map(str, seeds))}; teacher seed {template.teacher_seed}. Teacher and students are "
        f"trained on each share (the teacher too: it sees the same subsample). Training: students lr "
        f"{train.learning_rate:.3g}{tuned}, batch {train.batch_size}, patience {train.patience}, max epochs "
        f"{train.max_epochs}; teacher lr {teacher_train.learning_rate:.3g}, weight decay "
        f"{teacher_train.weight_decay:.3g}, batch {teacher_train.batch_size}, patience {teacher_train.patience}, "
        f"max epochs {teacher_train.max_epochs}; protocol {template.protocol}.",
        "",
        f"Shares: {', '.join(share_text(s * 100) + '%' for s in shares)} of each user's training interactions: "
        f"a user with n keeps max(1, round-half-up(share x n)) of them, drawn uniformly with subsample seed "
        f"{subsample_seed}. Validation and test are the full split's (same users, positives and masked "
        f"items at every share). Each cell: test NDCG@10 mean ± sample sd over seeds, in brackets the change "
        f"of the mean over scratch's at the same share. The curve: data_share_*.png.",
    ]).lstrip("\n")
