"""The driver: plans cells, runs the teacher stage then the student stage on an executor, and alone
writes result files and the teacher cache.

- every teacher a set of cells needs is trained once (or loaded from the cache, `checkpoints`),
  before the students that need it, never twice by two workers;
- each cell's result is written atomically as its own JSON file, with its log beside it; a
  finished cell whose stored identity equals the cell's is skipped (`force=True` redoes it), so an
  interrupted suite resumes where it stopped;
- a cell that raises (or whose loss turns NaN, or whose worker died) is recorded as failed with its
  error, and the suite goes on;
- a damaged stored result stops the run before anything trains (with --force it is redone), and a
  damaged teacher cache entry is moved aside and the teacher trained again (`heal_cache=False`
  stops instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from kdbench.cells import TEACHER, Cell
from kdbench.checkpoints import DamagedCheckpoint, cache_key, load_checkpoint, quarantine, save_checkpoint
from kdbench.data import check_dataset, dataset_size
from kdbench.errors import KdbenchError
from kdbench.executors import Executor, SerialExecutor
from kdbench.families import check_pairing, get_protocol, load_data
from kdbench.memory import check_memory
from kdbench.record import RunRecord, RunStore, base_record, failed_record, is_current, teacher_identity
from kdbench.stored import DamagedFile
from kdbench.strategies import STRATEGIES
from kdbench.work import CellOutcome, CellTask, TeacherArtifact, run_task

__all__ = ["TEACHER", "Cell", "Runner", "run_cells", "validate_cells"]


def validate_cells(cells: Iterable[Cell], device: str = "cpu") -> list[Cell]:
    """Fail early, before anything trains, on a bad dataset, strategy, hyperparameter, or a size
    that cannot fit in the device's memory."""
    cells = list(cells)
    checked_datasets = set()
    for cell in cells:
        get_protocol(cell.protocol)
        if (cell.dataset, cell.data_path) not in checked_datasets:
            check_dataset(cell.dataset, cell.data_path)
            checked_datasets.add((cell.dataset, cell.data_path))
        family = check_pairing(cell.teacher, cell.student, cell.strategy, cell.protocol, dict(cell.hparams))
        if cell.strategy != TEACHER:
            strategy = STRATEGIES.get(cell.strategy)
            strategy.resolve_hparams(dict(cell.hparams))
            for spec in (cell.teacher, cell.student) if strategy.needs_representations else ():
                family.check_representations(spec.model, cell.strategy)
    check_memory(cells, lambda cell: dataset_size(cell.dataset, cell.data_path), device)
    return cells


@dataclass
class Runner:
    """Runs cells through an executor, sharing cached teachers between them."""

    results_dir: str | Path = "results"
    cache_dir: str | Path = ".kdbench_cache"
    device: str = "cpu"
    force: bool = False
    log: Callable[[str], None] = lambda message: None
    executor: Executor | None = None
    plugins: tuple[str, ...] = ()
    heal_cache: bool = True  # a damaged teacher cache entry is moved aside and retrained (else: error)

    def __post_init__(self) -> None:
        self.store = RunStore(self.results_dir)
        self.store.clear_partial_writes()
        self.cache_dir = Path(self.cache_dir)
        self.executor = self.executor or SerialExecutor()
        self.executed = 0  # cells this Runner actually ran (not found finished)
        self._fingerprints: dict[tuple, tuple[str, int]] = {}
        self.teacher_sources: dict[str, str] = {}  # teacher key -> where it came from in this run

    # -- identity and storage -------------------------------------------------------------------
    def _stored(self, cell: Cell) -> tuple[dict[str, Any] | None, bool]:
        """(finished record at this cell's path or None, whether it was made with this cell's identity).

        A damaged file counts as no result when forced (it is overwritten) and stops the run otherwise."""
        try:
            record = self.store.find(cell.address)
        except DamagedFile:
            if self.force:
                return None, False
            raise
        if record is None or record.get("status") != "ok":
            return None, False
        return record, is_current(record, cell, self.device, lambda: self.fingerprint(cell))

    def is_done(self, cell: Cell) -> bool:
        return self._stored(cell)[1]

    def check_no_overwrite(self, cells: Iterable[Cell]) -> None:
        """Refuse, before anything trains, to replace a finished run made with other settings."""
        if self.force:
            return
        for cell in cells:
            record, same = self._stored(cell)
            if record is not None and not same:
                path = self.store.file(cell.address)
                raise KdbenchError(
                    f"{path} holds a finished run with other settings; pass --force to replace it "
                    f"or choose another --results-dir"
                )

    def _write(self, cell: Cell, outcome: CellOutcome) -> RunRecord:
        if outcome.record.get("status") == "ok":
            outcome.record["data_fingerprint"] = self.fingerprint(cell)  # loaded already, for the teacher key
        self.store.put(cell.address, outcome.record, outcome.log)
        return outcome.record

    # -- teachers -------------------------------------------------------------------------------
    def _dataset(self, cell: Cell) -> tuple[str, int]:
        """(fingerprint, number of items) of `cell`'s split, loaded once per driver."""
        key = (cell.dataset, cell.data_path, cell.split_seed, cell.protocol)
        if key not in self._fingerprints:
            data = load_data(cell.dataset, cell.data_path, model=cell.teacher.model,
                             split_seed=cell.split_seed, device=self.device, work_dir=self.cache_dir,
                             protocol=cell.protocol)
            self._fingerprints[key] = (data.fingerprint, data.n_items)
        return self._fingerprints[key]

    def fingerprint(self, cell: Cell) -> str:
        return self._dataset(cell)[0]

    def n_items(self, cell: Cell) -> int:
        return self._dataset(cell)[1]

    def teacher_key(self, cell: Cell, data=None) -> str:
        return cache_key(teacher_identity(cell, data.fingerprint if data is not None else self.fingerprint(cell)))

    def _teacher_folder(self, key: str) -> Path:
        return self.cache_dir / "teachers" / key

    def teachers(self, cells: Iterable[Cell]) -> dict[str, TeacherArtifact | Exception]:
        """Stage 1: every teacher these cells need, from the cache or trained once each (in parallel)."""
        needed: dict[str, Cell] = {}
        for cell in cells:
            needed.setdefault(self.teacher_key(cell), cell.teacher_cell())
        artifacts: dict[str, TeacherArtifact | Exception] = {}
        to_train = []
        for key, teacher_cell in needed.items():
            cached = self._cached_teacher(key)
            if cached is not None:
                artifacts[key] = TeacherArtifact.from_state(key, *cached)
                self.teacher_sources[key] = f"loaded from the cache ({self._teacher_folder(key)})"
            else:
                to_train.append((key, teacher_cell))
                self.teacher_sources.setdefault(key, "trained now")
        tasks = [self._task(cell, teacher_key=key) for key, cell in to_train]
        for cell in (cell for _, cell in to_train):
            self.log(f"training teacher {cell.teacher} on {cell.dataset} (seed {cell.teacher_seed})")
        for index, result in self.executor.map_unordered(run_task, tasks):
            key, _ = to_train[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception) or result.teacher is None:
                error = result if isinstance(result, Exception) else RuntimeError(result.record.get("error"))
                artifacts[key] = error
                continue
            save_checkpoint(self._teacher_folder(key), result.teacher.state_dict(), result.teacher.meta)
            artifacts[key] = result.teacher
        return artifacts

    def _cached_teacher(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The cached (state, meta) of a teacher, or None; a damaged entry is moved aside (and the
        teacher retrained) or, without `heal_cache`, stops the run."""
        folder = self._teacher_folder(key)
        try:
            return load_checkpoint(folder)
        except DamagedCheckpoint as damaged:
            if not self.heal_cache:
                raise KdbenchError(f"{damaged}; delete it or run without --strict-cache to train the "
                                   f"teacher again") from None
            moved = quarantine(folder)
            self.log(f"{damaged}; moved it to {moved} and training the teacher again")
            self.teacher_sources[key] = f"trained now (the cache entry was damaged: {damaged.reason}; moved to {moved})"
            return None

    # -- cells ----------------------------------------------------------------------------------
    def _task(self, cell: Cell, teacher: TeacherArtifact | None = None, teacher_key: str = "") -> CellTask:
        return CellTask(cell, self.device, str(self.cache_dir), self.plugins, teacher, teacher_key)

    def run_all(self, cells: list[Cell], on_record: Callable[[Cell, RunRecord], None] | None = None
                ) -> list[RunRecord]:
        """Run every cell not finished with the same identity; returns the records in cell order."""
        records: list[RunRecord | None] = [None] * len(cells)
        todo: list[int] = []
        for index, cell in enumerate(cells):
            record, same = self._stored(cell)
            if same and not self.force:
                records[index] = record
                if on_record:
                    on_record(cell, record)
            else:
                todo.append(index)
        if not todo:
            return records
        self.executed += len(todo)
        artifacts = self.teachers(cells[i] for i in todo)
        tasks, task_cells = [], []
        for index in todo:
            cell = cells[index]
            artifact = artifacts[self.teacher_key(cell)]
            if isinstance(artifact, Exception):
                records[index] = self._failed(cell, f"teacher failed: {type(artifact).__name__}: {artifact}")
                if on_record:
                    on_record(cell, records[index])
                continue
            if cell.is_teacher:
                records[index] = self._write(cell, CellOutcome(artifact.meta | base_record(cell, self.device)
                                                               | {"status": "ok"}))
                if on_record:
                    on_record(cell, records[index])
                continue
            tasks.append(self._task(cell, artifact))
            task_cells.append(index)
        for position, result in self.executor.map_unordered(run_task, tasks):
            index = task_cells[position]
            cell = cells[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception):
                records[index] = self._failed(cell, f"{type(result).__name__}: {result}")
            else:
                records[index] = self._write(cell, result)
            if on_record:
                on_record(cell, records[index])
        return records

    def _failed(self, cell: Cell, error: str) -> RunRecord:
        return self._write(cell, CellOutcome(failed_record(cell, self.device, error), log=f"cell failed: {error}\n"))

    def run(self, cell: Cell) -> RunRecord:
        """Run one cell (unless finished with the same identity and not forced); returns its record."""
        return self.run_all([cell])[0]


def run_cells(runner: Runner, cells: list[Cell]) -> list[RunRecord]:
    """Run every cell with one progress bar (and ETA) counting cells across all workers."""
    from tqdm import tqdm

    with tqdm(total=len(cells), desc="kdbench", unit="cell", dynamic_ncols=True) as bar:
        def advance(cell: Cell, record: RunRecord) -> None:
            bar.set_postfix_str(f"{cell.dataset} {cell.pairing} {cell.label} s{cell.seed}")
            bar.update(1)

        return runner.run_all(cells, on_record=advance)
