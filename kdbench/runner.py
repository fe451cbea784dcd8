"""The driver: plans cells, runs the teacher stage then the student stage on an executor, and alone
writes result files and the teacher cache (its parts, one job each, are in `kdbench.run`).

- every teacher a set of cells needs is trained once (or loaded from the cache, `run.teachers`),
  before the students that need it, never twice by two workers;
- each cell's result is written atomically as its own JSON file, with its log beside it; a
  finished cell whose stored identity equals the cell's is skipped (`force=True` redoes it), so an
  interrupted suite resumes where it stopped (`run.stored_runs`);
- a cell that raises (or whose loss turns NaN, or whose worker died) is recorded as failed with its
  error, and the suite goes on;
- a damaged stored result stops the run before anything trains (with --force it is redone), and a
  damaged teacher cache entry is moved aside and the teacher trained again (`heal_cache=False`
  stops instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from kdbench.cells import TEACHER, Cell
from kdbench.errors import KdbenchError
from kdbench.executors import Executor, SerialExecutor
from kdbench.record import RunRecord, RunStore, base_record
from kdbench.run.splits import Splits
from kdbench.run.stored_runs import StoredRuns
from kdbench.run.teachers import TeacherCache
from kdbench.run.validation import validate_cells
from kdbench.work import CellTask, TeacherArtifact, run_task

__all__ = ["TEACHER", "Cell", "Runner", "run_cells", "validate_cells"]

OnRecord = Callable[[Cell, RunRecord], None]


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
        self.splits = Splits(self.device, self.cache_dir)
        self.stored = StoredRuns(self.store, self.device, self.force, self.splits.fingerprint)
        self.cache = TeacherCache(self.cache_dir, self.splits.fingerprint, self.heal_cache, self.log)

    # -- what the parts answer (the tuner and the CLI ask them through the runner) -----------------
    def is_done(self, cell: Cell) -> bool:
        return self.stored.is_done(cell)

    def check_no_overwrite(self, cells: Iterable[Cell]) -> None:
        self.stored.check_no_overwrite(cells)

    def fingerprint(self, cell: Cell) -> str:
        return self.splits.fingerprint(cell)

    def n_items(self, cell: Cell) -> int:
        return self.splits.n_items(cell)

    def teacher_key(self, cell: Cell, data=None) -> str:
        return self.cache.key(cell, data)

    @property
    def teacher_sources(self) -> dict[str, str]:
        """Teacher key -> where it came from in this run."""
        return self.cache.sources

    def teachers(self, cells: Iterable[Cell]) -> dict[str, TeacherArtifact | Exception]:
        """Stage 1: every teacher these cells need, from the cache or trained once each (in parallel)."""
        return self.cache.provide(cells, self.executor, lambda cell, key: self._task(cell, teacher_key=key))

    # -- scheduling -------------------------------------------------------------------------------
    def ensemble(self, cell: Cell, artifacts: dict[str, TeacherArtifact | Exception]
                 ) -> tuple[TeacherArtifact, ...] | Exception:
        """A student cell's ensemble of teachers with their trajectories (`TeacherCache.ensemble`)."""
        return self.cache.ensemble(cell, artifacts)

    def _task(self, cell: Cell, teacher: TeacherArtifact | None = None, teacher_key: str = "",
              ensemble: tuple[TeacherArtifact, ...] = ()) -> CellTask:
        return CellTask(cell, self.device, str(self.cache_dir), self.plugins, teacher, teacher_key,
                        ensemble=ensemble)

    def run_all(self, cells: list[Cell], on_record: OnRecord | None = None) -> list[RunRecord]:
        """Run every cell not finished with the same identity; returns the records in cell order."""
        records: list[RunRecord | None] = [None] * len(cells)
        notify = on_record or (lambda cell, record: None)
        todo: list[int] = []
        for index, cell in enumerate(cells):
            record, same = self.stored.lookup(cell)
            if same and not self.force:
                records[index] = record
                notify(cell, record)
            else:
                todo.append(index)
        if not todo:
            return records
        self.executed += len(todo)
        artifacts = self.teachers(cells[i] for i in todo)
        students = []
        for index in todo:
            cell = cells[index]
            artifact = artifacts[self.teacher_key(cell)]
            ensemble = self.ensemble(cell, artifacts)
            failed = artifact if isinstance(artifact, Exception) else ensemble
            if isinstance(failed, Exception):
                records[index] = self.stored.write_failed(
                    cell, f"teacher failed: {type(failed).__name__}: {failed}")
            elif cell.is_teacher:
                record = artifact.meta | base_record(cell, self.device) | {"status": "ok"}
                records[index] = self.stored.write(cell, record)
            else:
                students.append((index, artifact, ensemble))
                continue
            notify(cell, records[index])
        self._run_students(cells, students, records, notify)
        return records

    def _run_students(self, cells: list[Cell], students: list[tuple[int, TeacherArtifact, tuple]],
                      records: list[RunRecord | None], notify: OnRecord) -> None:
        """Stage 2: the student cells (by index, with their teacher and ensemble), in parallel; each
        record is written as it arrives."""
        tasks = [self._task(cells[index], artifact, ensemble=ensemble) for index, artifact, ensemble in students]
        for position, result in self.executor.map_unordered(run_task, tasks):
            index = students[position][0]
            cell = cells[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception):
                records[index] = self.stored.write_failed(cell, f"{type(result).__name__}: {result}")
            else:
                records[index] = self.stored.write(cell, result.record, result.log)
            notify(cell, records[index])

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
