"""The teacher cache: every teacher a set of cells needs, from the cache or trained once each.

A teacher's key hashes what determines it (`record.teacher_identity`: the split's fingerprint, the
protocol, its spec and size, seed and training settings; `checkpoints.cache_key`). Only the driver
writes the cache: workers return the weights. A damaged entry is moved aside and the teacher
trained again (`heal=False` stops instead). A teacher of an ensemble strategy (HetComp) also
brings its training trajectory (`kdbench.trajectory`), a file beside its weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from kdbench import atomic
from kdbench.cells import Cell
from kdbench.checkpoints import DamagedCheckpoint, cache_key, load_checkpoint, quarantine, save_checkpoint
from kdbench.errors import KdbenchError
from kdbench.executors import Executor
from kdbench.families import BackboneSpec
from kdbench.record import teacher_identity
from kdbench.strategies import STRATEGIES
from kdbench.trajectory import file_name as trajectory_file
from kdbench.trajectory import from_bytes
from kdbench.work import CellTask, TeacherArtifact, run_task


def ensemble_cells(cell: Cell) -> list[Cell]:
    """The cells whose teachers form a student cell's ensemble (the cell itself first, then one per
    other teacher its strategy's `ensemble_teachers` names; the pairing's own teacher, if named, is
    not repeated), for a strategy that `needs_trajectories`; [] otherwise. The other teachers train
    as the pairing's does: same settings, seed and split."""
    if cell.is_teacher or not STRATEGIES.get(cell.strategy).needs_trajectories:
        return []
    strategy = STRATEGIES.get(cell.strategy)
    named = strategy.ensemble_teachers(strategy.resolve_hparams(dict(cell.hparams)))
    specs = [BackboneSpec.parse(spec) for spec in named]
    return [cell] + [replace(cell, teacher=spec) for spec in specs if spec != cell.teacher]


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
        (`task(teacher cell, key)`), in parallel; a teacher that failed is its exception. The
        teachers of an ensemble strategy's cells come with their trajectories: a cached teacher
        without one is trained again (same seed) to record it, and only the trajectory is saved."""
        needed: dict[str, Cell] = {}
        with_trajectory: set[str] = set()
        for cell in cells:
            needed.setdefault(self.key(cell), cell.teacher_cell())
            for member in ensemble_cells(cell):
                needed.setdefault(self.key(member), member.teacher_cell())
                with_trajectory.add(self.key(member))
        artifacts: dict[str, TeacherArtifact | Exception] = {}
        kept: dict[str, TeacherArtifact] = {}  # cached weights, trained again for the trajectory alone
        to_train = []
        for key, teacher_cell in needed.items():
            cached = self.cached(key)
            trajectory = self.cached_trajectory(key) if cached is not None and key in with_trajectory else b""
            if cached is not None and (trajectory or key not in with_trajectory):
                artifacts[key] = TeacherArtifact.from_state(key, *cached, trajectory)
                self.sources[key] = f"loaded from the cache ({self.folder(key)})"
                continue
            if cached is not None:
                kept[key] = TeacherArtifact.from_state(key, *cached)
                self.sources[key] = "trained again for its trajectory"
            to_train.append((key, teacher_cell))
            self.sources.setdefault(key, "trained now")
        for key, cell in to_train:
            self.log(f"training teacher {cell.teacher} on {cell.dataset} (seed {cell.teacher_seed})"
                     + (" to record its trajectory" if key in with_trajectory else ""))
        tasks = [replace(task(cell, key), trajectory=key in with_trajectory) for key, cell in to_train]
        for index, result in executor.map_unordered(run_task, tasks):
            key, _ = to_train[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception) or result.teacher is None:
                artifacts[key] = result if isinstance(result, Exception) else RuntimeError(result.record.get("error"))
                continue
            artifacts[key] = self._store(key, result.teacher, kept.get(key))
        return artifacts

    def _store(self, key: str, trained: TeacherArtifact, kept: TeacherArtifact | None) -> TeacherArtifact:
        """Write a trained teacher's cache entry (and trajectory): its weights, unless `kept` (the
        entry was already cached: only the trajectory is new, attached to the cached weights)."""
        if trained.trajectory:
            with atomic.atomic_path(self.folder(key) / trajectory_file()) as tmp:
                tmp.write_bytes(trained.trajectory)
        if kept is not None:
            return replace(kept, trajectory=trained.trajectory)
        save_checkpoint(self.folder(key), trained.state_dict(), trained.meta)
        return trained

    def cached_trajectory(self, key: str) -> bytes:
        """The cached trajectory of a teacher, or b"" (none, or one that does not load: recorded
        again)."""
        path = self.folder(key) / trajectory_file()
        if not path.is_file():
            return b""
        data = path.read_bytes()
        try:
            from_bytes(data)
        except ValueError as exc:
            self.log(f"trajectory {path} is damaged ({exc}); training the teacher again to record it")
            return b""
        return data

    def ensemble(self, cell: Cell, artifacts: dict[str, TeacherArtifact | Exception]
                 ) -> tuple[TeacherArtifact, ...] | Exception:
        """The artifacts (with trajectories) of a cell's ensemble, the pairing's teacher first; ()
        for a strategy without one; the first failed teacher's exception if one failed."""
        members = [artifacts[self.key(member)] for member in ensemble_cells(cell)]
        failed = [member for member in members if isinstance(member, Exception)]
        return failed[0] if failed else tuple(members)

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
