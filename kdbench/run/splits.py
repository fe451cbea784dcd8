"""The split each cell reads, loaded once per driver: its fingerprint (part of a record's identity
and of the teacher cache key) and its number of items (the tuner's catalogue-share ranges); a cell on a share of its
training split (`kdbench.run.subsample`) has the subsample's fingerprint."""

from __future__ import annotations

from pathlib import Path

from kdbench.run.cells import Cell
from kdbench.families import family_of, load_data
from kdbench.run.subsample import subsample_training
from kdbench.training.teacher_file import check_against_split, is_file_teacher, read_teacher_file


class Splits:
    def __init__(self, device: str, work_dir: str | Path):
        self.device = device
        self.work_dir = work_dir
        self._loaded: dict[tuple, tuple[str, int]] = {}

    def _split(self, cell: Cell) -> tuple[str, int]:
        key = (cell.dataset, cell.data_path, cell.split_seed, cell.protocol, cell.data_share, cell.subsample_seed)
        if key not in self._loaded:
            model = cell.student.model if is_file_teacher(cell.teacher) else cell.teacher.model
            data = load_data(cell.dataset, cell.data_path, model=model, split_seed=cell.split_seed,
                             device=self.device, work_dir=self.work_dir, protocol=cell.protocol)
            data = subsample_training(data, cell.data_share, cell.subsample_seed)  # the whole split at 1.0
            self._loaded[key] = (data.fingerprint, data.n_items)
        return self._loaded[key]

    def check_teacher_file(self, cell: Cell) -> None:
        """Read the cell's teacher file and check it against the cell's split (one line if not)."""
        data = load_data(cell.dataset, cell.data_path, model=cell.student.model, split_seed=cell.split_seed,
                         device=self.device, work_dir=self.work_dir, protocol=cell.protocol)
        rows = len(data.queries) if data.queries is not None else data.n_users
        check_against_split(read_teacher_file(cell.teacher.path), cell.dataset, family_of(cell.student).name,
                            rows, data.n_items, data.fingerprint, data.history, cell.protocol, cell.split_seed)

    def fingerprint(self, cell: Cell) -> str:
        return self._split(cell)[0]

    def n_items(self, cell: Cell) -> int:
        return self._split(cell)[1]
