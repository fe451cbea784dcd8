"""The finished runs of a results folder: which cells are done with their identity, which stored
runs must not be replaced, and writing new records.

A stored run counts as a cell's when it is finished and current (`record.is_current`: the same
`config`, locations aside, and the same data fingerprint); then the cell is skipped, so an
interrupted suite resumes where it stopped (`force` redoes it). A finished run made with other settings
or code is never replaced unless asked: `force` redoes every cell, `replace_stale` only those (a
regeneration after a code change that resumes instead of starting over). A damaged stored file stops
the run before anything trains; with `force` it is overwritten. A cell being run is claimed by a
`.seed<k>.claim` file beside its result (`run.claims`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from kdbench.run.cells import Cell
from kdbench.errors import KdbenchError
from kdbench.run.record import RunRecord, RunStore, failed_record, is_current
from kdbench.run import claims
from kdbench.store.reading import DamagedFile


class StoredRuns:
    def __init__(self, store: RunStore, device: str, force: bool, fingerprint: Callable[[Cell], str],
                 replace_stale: bool = False):
        self.store = store
        self.device = device
        self.force = force
        self.replace_stale = replace_stale
        self.fingerprint = fingerprint  # of the cell's split (loaded on demand)

    def lookup(self, cell: Cell) -> tuple[RunRecord | None, bool]:
        """(finished record at the cell's address or None, whether it was made with the cell's identity).

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
        return self.lookup(cell)[1]

    def check_no_overwrite(self, cells: Iterable[Cell]) -> list[Cell]:
        """Refuse, before anything trains, to replace a finished run made with other settings (unless
        `force`); with `replace_stale`, return the cells whose stored runs will be replaced."""
        if self.force:
            return []
        stale = []
        for cell in cells:
            record, same = self.lookup(cell)
            if record is not None and not same:
                if not self.replace_stale:
                    raise KdbenchError(
                        f"{self.store.file(cell.address)} holds a finished run with other settings; pass --force "
                        f"to replace it (`--replace-stale` replaces only such runs, keeping current ones) "
                        f"or choose another --results-dir"
                    )
                stale.append(cell)
        return stale

    def claim_path(self, cell: Cell) -> Path:
        """The claim of a cell being run (`run.claims`): `.seed<k>.claim` beside its result."""
        path = self.store.file(cell.address)
        return path.with_name(f".{path.stem}{claims.SUFFIX}")

    def stored_at(self, cell: Cell) -> float:
        """When the cell's result file was last written (0 if there is none)."""
        try:
            return self.store.file(cell.address).stat().st_mtime
        except OSError:
            return 0.0

    def clear_partial_writes(self) -> int:
        """Remove the temp files of killed writes, sparing those of a cell another live process holds
        (its `.seed<k>.json.<random>.tmp` and `.seed<k>.log.<random>.tmp` beside `.seed<k>.claim`)."""
        def in_use(tmp: Path) -> bool:
            stem = tmp.name[1:].split(".", 1)[0]
            return claims.held(tmp.with_name(f".{stem}{claims.SUFFIX}"))

        return self.store.clear_partial_writes(in_use)

    def write(self, cell: Cell, record: RunRecord, log: str = "") -> RunRecord:
        """Store a cell's record and log; a finished run gets its split's fingerprint (its identity)."""
        if record.get("status") == "ok":
            record["data_fingerprint"] = self.fingerprint(cell)  # loaded already, for the teacher key
        self.store.put(cell.address, record, log)
        return record

    def write_failed(self, cell: Cell, error: str) -> RunRecord:
        return self.write(cell, failed_record(cell, self.device, error), log=f"cell failed: {error}\n")
