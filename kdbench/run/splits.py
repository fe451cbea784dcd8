"""The split each cell reads, loaded once per driver: its fingerprint (part of a record's identity
and of the teacher cache key) and its number of items (the tuner's catalogue-share ranges); a cell on a share of its
training split (`kdbench.run.subsample`) has the subsample's fingerprint."""

from __future__ import annotations

from pathlib import Path

from kdbench.cells import Cell
from kdbench.families import load_data
from kdbench.run.subsample import subsample_training


class Splits:
    def __init__(self, device: str, work_dir: str | Path):
        self.device = device
        self.work_dir = work_dir
        self._loaded: dict[tuple, tuple[str, int]] = {}

    def _split(self, cell: Cell) -> tuple[str, int]:
        key = (cell.dataset, cell.data_path, cell.split_seed, cell.protocol, cell.data_share, cell.subsample_seed)
        if key not in self._loaded:
            data = load_data(cell.dataset, cell.data_path, model=cell.teacher.model, split_seed=cell.split_seed,
                             device=self.device, work_dir=self.work_dir, protocol=cell.protocol)
            data = subsample_training(data, cell.data_share, cell.subsample_seed)  # the whole split at 1.0
            self._loaded[key] = (data.fingerprint, data.n_items)
        return self._loaded[key]

    def fingerprint(self, cell: Cell) -> str:
        return self._split(cell)[0]

    def n_items(self, cell: Cell) -> int:
        return self._split(cell)[1]
