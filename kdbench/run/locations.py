"""Absolute folders in stored run records: finding them (`verify`) and dropping them (`verify
--drop-locations`).

A record names its data by dataset name and `data_fingerprint`; the folder it was read from on the
machine that ran it says nothing about the run and leaks that machine's layout into a committed
file. New records of catalogue datasets never hold one (`data.location.recorded_data_path`).
Older ones can: `drop_locations` rewrites exactly the fields `recorded_data_path` would have left
out (`config.data_path` of a catalogue dataset). The identity comparison ignores location fields
(`record.LOCATION_FIELDS`), so a rewritten record stays current and reads back as the same cell; only
its file's bytes change, on that one line. A dataset outside the catalogue keeps its folder (the
only way to find the user's own data again): verify names it, and a relative `--data-path` avoids it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from kdbench.store import atomic
from kdbench.data.location import recorded_data_path
from kdbench.run.record import RunStore
from kdbench.store.reading import DamagedFile

_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")  # POSIX, home, Windows drive, UNC
_NESTED = frozenset({dict, list, str})  # what JSON parses to that may hold a path


def absolute_fields(record: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted field, value) of every string in the record that is an absolute folder or file path
    as a whole (not text that mentions one, such as an error message)."""
    if isinstance(record, dict):
        for key, value in record.items():
            yield from absolute_fields(value, f"{prefix}{key}.")
    elif isinstance(record, list):
        if _NESTED.isdisjoint(map(type, record)):
            return  # numbers only (a per-user list: ~10^4 values, checked in C)
        for index, value in enumerate(record):
            if isinstance(value, (dict, list, str)):
                yield from absolute_fields(value, f"{prefix}{index}.")
    elif isinstance(record, str) and _ABSOLUTE.match(record) and "\n" not in record:
        yield prefix.rstrip("."), record


def droppable(record: dict[str, Any]) -> bool:
    """Whether the record's `config.data_path` is a location `recorded_data_path` leaves out."""
    config = record.get("config")
    if not isinstance(config, dict) or config.get("data_path") is None:
        return False
    return recorded_data_path(str(record.get("dataset")), config["data_path"]) != config["data_path"]


def drop_locations(roots: list[Path]) -> list[Path]:
    """Rewrite, atomically, every run record under `roots` (each a folder holding `runs/`) whose
    `config.data_path` is a droppable location, with that field as a new record stores it (null).
    Returns the files rewritten. A damaged file is left alone (verify reports it)."""
    rewritten = []
    for root in roots:
        store = RunStore(root)
        for path in store.files():
            try:
                record = store.load(path)
            except DamagedFile:  # verify names it; nothing to migrate here
                continue
            if droppable(record):
                record["config"]["data_path"] = recorded_data_path(record["dataset"], record["config"]["data_path"])
                atomic.write_json(path, record)
                rewritten.append(path)
    return rewritten
