"""The driver: plans cells, runs the teacher stage then the student stage on an executor, and alone
writes result files and the teacher cache (its parts, one job each, are in `kdbench.run`).

- every teacher a set of cells needs is trained once (or loaded from the cache, `run.teachers`),
  before the students that need it, never twice by two workers;
- each cell's result is written atomically as its own JSON file, with its log beside it; a
  finished cell whose stored identity equals the cell's is skipped (`force=True` redoes it), so an
  interrupted suite resumes where it stopped (`run.stored_runs`);
- two processes sharing the folders claim each cell and teacher before computing it
  (`run.claims`): a teacher is trained once and loaded by the other, a cell claimed elsewhere is
  skipped and its result reused once stored (or the cell taken over if its process died);
- a cell that raises (or whose loss turns NaN, or whose worker died) is recorded as failed with its
  error, and the suite goes on;
- a cell not finished here but finished with the same identity in one of `reuse_from`'s results
  folders (the same cells kept elsewhere: `sweep-data`'s 100% share and the run store) is copied
  here with its log instead of run again;
- a damaged stored result stops the run before anything trains (with --force it is redone), and a
  damaged teacher cache entry is moved aside and the teacher trained again (`heal_cache=False`
  stops instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kdbench import progress
from kdbench.run.cells import TEACHER, Cell
from kdbench.errors import KdbenchError
from kdbench.executors import Executor, SerialExecutor
from kdbench.run.record import RunRecord, RunStore, base_record
from kdbench.run import claims
from kdbench.run.claims import Claim, try_claim
from kdbench.run.splits import Splits
from kdbench.run.stored_runs import StoredRuns
from kdbench.run.teachers import TeacherCache, needs_teacher
from kdbench.run.validation import validate_cells
from kdbench.training.teacher_file import is_file_teacher
from kdbench.run.work import CellTask, TeacherArtifact, run_task
from kdbench.store.reading import DamagedFile

__all__ = ["TEACHER", "Cell", "Runner", "run_cells", "validate_cells"]

OnRecord = Callable[[Cell, RunRecord], None]


@dataclass
class Runner:
    """Runs cells through an executor, sharing cached teachers between them."""

    results_dir: str | Path = "results"
    cache_dir: str | Path = ".kdbench_cache"
    device: str = "cpu"
    force: bool = False
    replace_stale: bool = False  # replace stored runs made with other settings or code, keep current ones
    log: Callable[[str], None] = lambda message: None
    executor: Executor | None = None
    plugins: tuple[str, ...] = ()
    heal_cache: bool = True  # a damaged teacher cache entry is moved aside and retrained (else: error)
    reuse_from: tuple[str | Path, ...] = ()  # other results folders whose current runs of a cell are copied here
    # train the pairing's teacher for cells that learn from none too, for their records' `teacher_test`;
    # a size sweep does not (its reference is its largest size, and its nominal teacher would be that
    # model trained once more)
    nominal_teachers: bool = True

    def __post_init__(self) -> None:
        self.store = RunStore(self.results_dir)
        self.cache_dir = Path(self.cache_dir)
        self.executor = self.executor or SerialExecutor()
        self.executed = 0  # cells this Runner actually ran (not found finished)
        self.reused = 0  # cells found finished with the same identity (not run again)
        self.written: list[RunRecord] = []  # the records this Runner wrote, finished or failed
        self.splits = Splits(self.device, self.cache_dir)
        self.stored = StoredRuns(self.store, self.device, self.force, self.splits.fingerprint, self.replace_stale)
        self.stored.clear_partial_writes()
        self.cache = TeacherCache(self.cache_dir, self.splits.fingerprint, self.heal_cache, self.log)
        self.elsewhere = [StoredRuns(RunStore(folder), self.device, False, self.splits.fingerprint)
                          for folder in self.reuse_from if Path(folder).resolve() != Path(self.results_dir).resolve()]

    # -- what the parts answer (the tuner and the CLI ask them through the runner) -----------------
    def is_done(self, cell: Cell) -> bool:
        return self.stored.is_done(cell)

    def check_no_overwrite(self, cells: Iterable[Cell]) -> None:
        stale = self.stored.check_no_overwrite(cells)
        if stale:
            self.log(f"replacing {len(stale)} stored run(s) made with other settings or code "
                     f"(--replace-stale), e.g. {self.store.file(stale[0].address)}")

    def check_teacher_files(self, cells: Iterable[Cell]) -> None:
        """Each teacher file these cells read, checked against its cell's split (one line if not)."""
        checked = set()
        for cell in cells:
            if is_file_teacher(cell.teacher) and (cell.teacher, cell.dataset, cell.protocol) not in checked:
                self.splits.check_teacher_file(cell)
                checked.add((cell.teacher, cell.dataset, cell.protocol))

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
        """Run every cell not finished with the same identity; returns the records in cell order.

        The teachers come first (each trained once, `teachers`); then the cells, each claimed
        (`run.claims`) only when a worker is free to start it, so that a second process on the same
        folder runs the others and no worker waits for a batch's slowest cell. A cell another
        process holds is skipped and looked at again after the pass: its stored result is taken
        once it appears, or, if that process died, this one claims and runs it."""
        records: list[RunRecord | None] = [None] * len(cells)
        notify = on_record or (lambda cell, record: None)
        started = time.time()
        todo = [index for index, cell in enumerate(cells) if not self._reuse(cells, index, records, notify)]
        if not todo:
            return records
        artifacts = self.teachers(cells[i] for i in todo if self._gets_teacher(cells[i]))
        told = False
        while todo:
            left: list[int] = []
            claimed = self._run_pass(cells, todo, artifacts, records, notify, started, left)
            todo = left
            if todo and not claimed:
                if not told:
                    self.log(f"{len(todo)} cell(s) are being run by another process "
                             f"({claims.owner(self.stored.claim_path(cells[todo[0]]))}...); waiting for them")
                    told = True
                time.sleep(claims.POLL_SECONDS)
        return records

    def _gets_teacher(self, cell: Cell) -> bool:
        """Whether the cell is handed its pairing's teacher: always, or (without `nominal_teachers`)
        only if it learns from it, so that a record's `teacher_test` never depends on its neighbours."""
        return self.nominal_teachers or needs_teacher(cell)

    def _reuse(self, cells: list[Cell], index: int, records: list[RunRecord | None], notify: OnRecord,
               since: float | None = None) -> bool:
        """Take the cell's stored result if it is finished with the cell's identity (with `force`:
        only one stored since `since`, by another process of the same folder)."""
        cell = cells[index]
        record, same = self.stored.lookup(cell)
        if not same and not self.force:
            record, same = self._copy_from_elsewhere(cell)
        if not same or (self.force and (since is None or self.stored.stored_at(cell) < since)):
            return False
        records[index] = record
        self.reused += 1
        notify(cell, record)
        return True

    def _copy_from_elsewhere(self, cell: Cell) -> tuple[RunRecord | None, bool]:
        """The cell's finished, current run in a `reuse_from` folder, written here with its log (the
        record unchanged: the same identity, split fingerprint and figures); (None, False) if none.
        A damaged file there counts as none: this folder's own runs are what this command checks."""
        for other in self.elsewhere:
            try:
                record, same = other.lookup(cell)
            except DamagedFile:
                continue
            if same:
                log = other.store.file(cell.address).with_suffix(".log")
                self.store.put(cell.address, record, log.read_text() if log.exists() else "")
                return record, True
        return None, False

    def _run_pass(self, cells: list[Cell], todo: list[int], artifacts: dict[str, TeacherArtifact | Exception],
                  records: list[RunRecord | None], notify: OnRecord, started: float, left: list[int]) -> int:
        """One pass over `todo`: each student cell claimed as the executor asks for its next task
        (`_claimed_tasks`), its record written as it arrives; the cells held elsewhere go to `left`.
        Returns how many cells this pass claimed."""
        held: dict[int, Claim] = {}
        dispatched: list[int] = []  # cell index of each task handed to the executor, in order
        executed_before = self.executed  # counts the cells claimed (`_claimed_tasks`)
        tasks = self._claimed_tasks(cells, todo, artifacts, records, notify, started, left, held, dispatched)
        try:
            for position, result in self.executor.map_unordered(run_task, tasks):
                index = dispatched[position]
                cell = cells[index]
                if isinstance(result, KdbenchError):
                    raise result
                if isinstance(result, Exception):
                    records[index] = self.stored.write_failed(cell, f"{type(result).__name__}: {result}")
                else:
                    records[index] = self.stored.write(cell, result.record, result.log)
                self._written(index, cell, records, notify, held)
        finally:
            tasks.close()
            for claim in held.values():
                claim.release()
        return self.executed - executed_before

    def _claimed_tasks(self, cells: list[Cell], todo: list[int], artifacts: dict[str, TeacherArtifact | Exception],
                       records: list[RunRecord | None], notify: OnRecord, started: float, left: list[int],
                       held: dict[int, Claim], dispatched: list[int]) -> Iterator[CellTask]:
        """The student tasks of `todo`, each claimed when the executor pulls it. Teacher rows and cells
        whose teacher failed are written here at once; a cell stored meanwhile by another process is
        taken, not claimed; a cell held elsewhere goes to `left`."""
        for index in todo:
            cell = cells[index]
            claim = try_claim(self.stored.claim_path(cell))
            if claim is None:
                left.append(index)
                continue
            if self._reuse(cells, index, records, notify, started):  # stored between look and claim
                claim.release()
                continue
            held[index] = claim
            self.executed += 1
            artifact = artifacts[self.teacher_key(cell)] if self._gets_teacher(cell) else None
            ensemble = self.ensemble(cell, artifacts)
            failed = artifact if isinstance(artifact, Exception) else ensemble
            if isinstance(failed, Exception):
                records[index] = self.stored.write_failed(
                    cell, f"teacher failed: {type(failed).__name__}: {failed}")
            elif cell.is_teacher:
                record = artifact.meta | base_record(cell, self.device) | {"status": "ok"}
                records[index] = self.stored.write(cell, record)
            else:
                dispatched.append(index)
                yield self._task(cell, artifact, ensemble=ensemble)
                continue
            self._written(index, cell, records, notify, held)

    def _written(self, index: int, cell: Cell, records: list[RunRecord | None], notify: OnRecord,
                 held: dict[int, Claim]) -> None:
        """A record is stored: count it, release its claim, tell the caller."""
        self.written.append(records[index])
        held.pop(index).release()
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

        # a training teacher's epochs and validation NDCG@10 (`work.epoch_logger`) show beside the count
        with progress.sink(bar.set_postfix_str):
            return runner.run_all(cells, on_record=advance)
