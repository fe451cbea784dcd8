"""Paths a user names on the command line, checked before anything runs.

A folder flag (`--results-dir`, `--cache-dir`) must name a folder, or a path not there yet whose
nearest existing parent is a writable folder; a file argument must name a readable file. Each
problem is one line naming the flag and the path, instead of a NotADirectoryError from deep inside
a write.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench.errors import KdbenchError


def check_folder(path: str | Path, flag: str) -> Path:
    """`path` as a folder kdbench may create and write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise KdbenchError(f"{flag} '{path}' exists and is not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise KdbenchError(f"{flag} '{path}' cannot be created: '{existing}' is a file, not a folder")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise KdbenchError(f"{flag} '{path}' is not writable (no write permission on '{existing}')")
    return path


def check_file(path: str | Path, what: str) -> Path:
    """`path` as an existing, readable regular file."""
    path = Path(path)
    if not path.exists():
        raise KdbenchError(f"{what} '{path}' does not exist")
    if not path.is_file():
        raise KdbenchError(f"{what} '{path}' is not a file")
    if not os.access(path, os.R_OK):
        raise KdbenchError(f"{what} '{path}' is not readable (permission denied)")
    return path
