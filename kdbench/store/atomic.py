"""Atomic file writes: a temp file in the destination folder, flushed to disk, then os.replace.

A reader (or a resumed suite) therefore sees either the old file or the complete new one, never a
half-written one, even if the process is killed mid-write. A write that fails (disk full, a
read-only folder, a path through a file) removes its temp file and raises `WriteFailed`, one line
naming the file; the previous version stays as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from kdbench.errors import KdbenchError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


UMASK = _umask()  # this process's umask, read once
_PLAIN_FILE_MODE = 0o666 & ~UMASK  # the mode `open(path, "w")` would give a new file


class WriteFailed(KdbenchError):
    """A file could not be written; nothing partial was left in its place."""

    def __init__(self, path: str | os.PathLike, exc: OSError):
        self.path = Path(path)
        super().__init__(f"could not write {path}: {exc.strerror or exc}; "
                         f"its previous version (if any) is unchanged")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Several files as one: a temp path per file; only when every one was written are they all
    renamed into place (a rename needs no space), so a failed write leaves the whole previous set."""
    targets = [Path(path) for path in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            temps.append(Path(tmp))
        yield list(temps)
        for tmp in temps:
            flush(tmp)
            os.chmod(tmp, _PLAIN_FILE_MODE)  # mkstemp makes 0600; a result file is as readable as any other
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    except OSError as exc:
        _remove(temps)
        raise WriteFailed(_failed_target(exc, temps, targets), exc) from None
    except BaseException:
        _remove(temps)
        raise


def _remove(temps: list[Path]) -> None:
    for tmp in temps:
        tmp.unlink(missing_ok=True)


def _failed_target(exc: OSError, temps: list[Path], targets: list[Path]) -> Path:
    """The file whose write failed: the one the error names, else the first still to be written."""
    named = {str(tmp): target for tmp, target in zip(temps, targets)}
    for name in (exc.filename, exc.filename2):
        if name is not None and str(name) in named:
            return named[str(name)]
        if name is not None and str(name) in map(str, targets):
            return Path(name)
    return targets[len(temps)] if len(temps) < len(targets) else targets[0]


def flush(path: Path) -> None:
    """Force the temp file's bytes to disk before the rename makes it visible."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    write_text(path, dumps(payload))


def dumps(payload: Any) -> str:
    """The JSON text kdbench stores: sorted keys, indented, a final newline."""
    return json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
