"""The teacher cache: every teacher a set of cells needs, from the cache or trained once each.

A teacher's key hashes what determines it (`record.teacher_identity`: the split's fingerprint, the
protocol, its spec and size, seed and training settings; `checkpoints.cache_key`). Only the driver
writes the cache: workers return the weights. A damaged entry is moved aside and the teacher
trained again (`heal=False` stops instead). A teacher file (`--teacher file:PATH`) is never trained
or cached: it is handed to the students as an empty artifact, which the worker replaces by the file
(`work.build_student_run`). Processes sharing the cache claim a teacher before training it
(`run.claims`), so each teacher is trained once; the others wait and load it. A teacher of an
ensemble strategy (HetComp) also brings its training trajectory (`kdbench.training.trajectory`), a file
beside its weights: a teacher cached without one is trained again (same seed) to record it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from kdbench.store import atomic
from kdbench.run.cells import Cell
from kdbench.store.checkpoints import (
    DamagedCheckpoint, cache_key, clear_partial, load_checkpoint, quarantine, save_checkpoint,
)
from kdbench.errors import KdbenchError
from kdbench.executors import Executor
from kdbench.families import BackboneSpec
from kdbench.run.record import teacher_identity
from kdbench.strategies import STRATEGIES
from kdbench.training.teacher_file import is_file_teacher
from kdbench.training.trajectory import file_name as trajectory_file
from kdbench.training.trajectory import from_bytes
from kdbench.run import claims
from kdbench.run.claims import Claim, try_claim
from kdbench.run.work import CellTask, TeacherArtifact, run_task


def needs_teacher(cell: Cell) -> bool:
    """Whether a cell learns from its pairing's teacher (a teacher row is that teacher). A cell whose
    strategy learns from none (scratch) still gets it by default, for its record's `teacher_test`."""
    return cell.is_teacher or STRATEGIES.get(cell.strategy).needs_teacher


def learns_from_trajectories(cell: Cell) -> bool:
    """Whether a cell's strategy distils its teachers' training trajectories (an ensemble: HetComp)."""
    return not cell.is_teacher and STRATEGIES.get(cell.strategy).needs_trajectories


def ensemble_cells(cell: Cell) -> list[Cell]:
    """The cells whose teachers form a student cell's ensemble (the cell itself first, then one per
    other teacher its strategy's `ensemble_teachers` names; the pairing's own teacher, if named, is
    not repeated), for a strategy that `needs_trajectories`; [] otherwise. The other teachers train
    as the pairing's does: same settings, seed and split."""
    if not learns_from_trajectories(cell):
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

    def claim_path(self, key: str) -> Path:
        """The claim of a teacher being trained (`run.claims`), beside its entry."""
        return self.cache_dir / "teachers" / f".{key}{claims.SUFFIX}"

    def provide(self, cells: Iterable[Cell], executor: Executor, task: Callable[[Cell, str], CellTask]
                ) -> dict[str, TeacherArtifact | Exception]:
        """Stage 1: every teacher these cells need by key, from the cache or trained on `executor`
        (`task(teacher cell, key)`), in parallel; a teacher that failed is its exception.

        A teacher another process is training (it holds the claim) is waited for, then loaded from
        the cache; if that process died or its teacher failed, this one claims and trains it. The
        teachers of an ensemble strategy's cells come with their trajectories."""
        pending: dict[str, Cell] = {}
        trajectories: dict[str, TeacherArtifact | None] = {}  # keys wanted with one -> cached weights kept
        for cell in cells:
            pending.setdefault(self.key(cell), cell.teacher_cell())
            for member in ensemble_cells(cell):
                pending.setdefault(self.key(member), member.teacher_cell())
                trajectories[self.key(member)] = None
        artifacts: dict[str, TeacherArtifact | Exception] = {}
        for key, teacher_cell in list(pending.items()):
            if is_file_teacher(teacher_cell.teacher):  # read, never trained (checked: Runner.check_teacher_files)
                artifacts[key] = TeacherArtifact(key, b"", {"test": {}})
                self.sources[key] = f"read from the teacher file {teacher_cell.teacher.path}"
                del pending[key]
        told: set[str] = set()
        while pending:
            mine: dict[str, Claim] = {}
            for key in list(pending):
                if self._load(key, artifacts, trajectories):
                    del pending[key]
                elif (claim := try_claim(self.claim_path(key))) is None:
                    if key not in told:
                        self.log(f"waiting for teacher {pending[key].teacher} on {pending[key].dataset}: "
                                 f"{claims.owner(self.claim_path(key))} is training it")
                        told.add(key)
                elif self._load(key, artifacts, trajectories):  # finished between the look and the claim
                    claim.release()
                    del pending[key]
                else:
                    mine[key] = claim
            try:
                self._train({key: pending.pop(key) for key in mine}, executor, task, artifacts, trajectories)
            finally:
                for claim in mine.values():
                    claim.release()
            if pending and not mine:
                time.sleep(claims.POLL_SECONDS)
        return artifacts

    def _load(self, key: str, artifacts: dict[str, TeacherArtifact | Exception],
              trajectories: dict[str, TeacherArtifact | None]) -> bool:
        """Put the cached teacher `key` in `artifacts`, if the cache holds it (with its trajectory,
        if `trajectories` names it: cached weights without one are kept there, to train again)."""
        cached = self.cached(key)
        if cached is None:
            return False
        recorded = self.cached_trajectory(key) if key in trajectories else b""
        if key in trajectories and not recorded:
            trajectories[key] = TeacherArtifact.from_state(key, *cached)
            self.sources[key] = "trained again for its trajectory"
            return False
        artifacts[key] = TeacherArtifact.from_state(key, *cached, recorded)
        self.sources[key] = f"loaded from the cache ({self.folder(key)})"
        return True

    def _train(self, to_train: dict[str, Cell], executor: Executor, task: Callable[[Cell, str], CellTask],
               artifacts: dict[str, TeacherArtifact | Exception],
               trajectories: dict[str, TeacherArtifact | None]) -> None:
        """Train the claimed teachers in parallel and write each to the cache as it finishes."""
        for key, cell in to_train.items():
            clear_partial(self.folder(key))  # a killed writer's leftovers: this process holds the claim
            self.sources.setdefault(key, "trained now")
            self.log(f"training teacher {cell.teacher} on {cell.dataset} (seed {cell.teacher_seed})"
                     + (" to record its trajectory" if key in trajectories else ""))
        keys = list(to_train)
        tasks = [replace(task(to_train[key], key), trajectory=key in trajectories) for key in keys]
        for index, result in executor.map_unordered(run_task, tasks):
            key = keys[index]
            if isinstance(result, KdbenchError):
                raise result
            if isinstance(result, Exception) or result.teacher is None:
                artifacts[key] = result if isinstance(result, Exception) else RuntimeError(result.record.get("error"))
                continue
            artifacts[key] = self._store(key, result.teacher, trajectories.get(key))

    def _store(self, key: str, trained: TeacherArtifact, kept: TeacherArtifact | None) -> TeacherArtifact:
        """Write a trained teacher's cache entry, then its trajectory: its weights, unless `kept` (the
        entry was cached already: only the trajectory is new, attached to the cached weights)."""
        if kept is None:
            save_checkpoint(self.folder(key), trained.state_dict(), trained.meta)  # replaces the folder
        if trained.trajectory:
            with atomic.atomic_path(self.folder(key) / trajectory_file()) as tmp:
                tmp.write_bytes(trained.trajectory)
        return trained if kept is None else replace(kept, trajectory=trained.trajectory)

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
            try:
                moved = quarantine(folder)
            except FileNotFoundError:  # another process moved it aside first
                return None
            self.log(f"{damaged}; moved it to {moved} and training the teacher again")
            self.sources[key] = f"trained now (the cache entry was damaged: {damaged.reason}; moved to {moved})"
            return None
