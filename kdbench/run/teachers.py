"""The teacher cache: every teacher a set of cells needs, from the cache or trained once each.

A teacher's key hashes what determines it (`record.teacher_identity`: the split's fingerprint, the
protocol, its spec and size, seed and training settings; `checkpoints.cache_key`). Only the driver
writes the cache: workers return the weights. A damaged entry is moved aside and the teacher
trained again (`heal=False` stops instead). A teacher file (`--teacher file:PATH`) is never trained
or cached: it is handed to the students as an empty artifact, which the worker replaces by the file
(`work.build_student_run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from kdbench.cells import Cell
from kdbench.checkpoints import DamagedCheckpoint, cache_key, load_checkpoint, quarantine, save_checkpoint
from kdbench.errors import KdbenchError
from kdbench.executors import Executor
from kdbench.record import teacher_identity
from kdbench.teacher_file import is_file_teacher
from kdbench.work import CellTask, TeacherArtifact, run_task


class TeacherCache:
    def __init__(self, cache_dir: Path, fingerprint: Callable[[Cell], str], heal: bool = True,
                 log: Callable[[str], None] = lambda message: None):
        self.cache_dir = cache_dir
        self.fingerprint = fingerprint  # of the cell's split
        self.heal = heal
        self.log = log
        self.sources: dict[str, str] = {}  # teacher key -> where it came from in this run

    def key(self, cell: Cell, data=None) -> str:
        return cache_key(teacher_identity(cell, data.fingerprint if data is not None else self.fingerprint(cell)))

    def folder(self, key: str) -> Path:
        return self.cache_dir / "teachers" / key

    def provide(self, cells: Iterable[Cell], executor: Executor, task: Callable[[Cell, str], CellTask]
                ) -> dict[str, TeacherArtifact | Exception]:
        """Stage 1: every teacher these cells need by key, from the cache or trained on `executor`
        (`task(teacher cell, key)`), in parallel; a teacher that failed is its exception."""
        needed: dict[str, Cell] = {}
        for cell in cells:
            needed.setdefault(self.key(cell), cell.teacher_cell())
        artifacts: dict[str, TeacherArtifact | Exception] = {}
        to_train = []
        for key, teacher_cell in list(needed.items()):
            if is_file_teacher(teacher_cell.teacher):  # read, never trained (checked: Runner.check_teacher_files)
                artifacts[key] = TeacherArtifact(key, b"", {"test": {}})
                self.sources[key] = f"read from the teacher file {teacher_cell.teacher.path}"
                del needed[key]
        for key, teacher_cell in needed.items():
            cached = self.cached(key)
            if cached is not None:
                artifacts[key] = TeacherArtifact.from_state(key, *cached)
                self.sources[key] = f"loaded from the cache ({self.folder(key)})"
            else:
                to_train.append((key, teacher_cell))
                self.sources.setdefault(key, "trained now")
        for _, cell in to_train:
            self.log(f"training teacher {cell.teacher} on {cell.dataset} (seed {cell.teacher_seed})")
        for index, result in executor.map_unordered(run_task, [task(cell, key) for key, cell in to_train]):
            key, _ = to_train[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception) or result.teacher is None:
                artifacts[key] = result if isinstance(result, Exception) else RuntimeError(result.record.get("error"))
                continue
            save_checkpoint(self.folder(key), result.teacher.state_dict(), result.teacher.meta)
            artifacts[key] = result.teacher
        return artifacts

    def cached(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The cached (state, meta) of a teacher, or None; a damaged entry is moved aside (and the
        teacher retrained) or, without `heal`, stops the run."""
        folder = self.folder(key)
        try:
            return load_checkpoint(folder)
        except DamagedCheckpoint as damaged:
            if not self.heal:
                raise KdbenchError(f"{damaged}; delete it or run without --strict-cache to train the "
                                   f"teacher again") from None
            moved = quarantine(folder)
            self.log(f"{damaged}; moved it to {moved} and training the teacher again")
            self.sources[key] = f"trained now (the cache entry was damaged: {damaged.reason}; moved to {moved})"
            return None
