"""Teacher checkpoints: plain state dicts plus JSON metadata, keyed by what determines the teacher.

A checkpoint can never run code: weights are saved as a bare `state_dict` and loaded with
`torch.load(..., weights_only=True)`; everything else lives in a JSON file beside them.

An entry is written as one unit: both files go into a temporary folder beside the entry, which is
then renamed into place (a folder rename is atomic), so a reader sees a whole entry or none, never
weights without their metadata or the weights of one writer with the checksum of another. The
layout inside the entry is the one entries always had, so older entries load as they are.

A damaged checkpoint heals: the metadata holds the SHA-256 of the weights file, and an entry whose
weights do not match it, do not load as a state dict, or whose metadata is unreadable raises
`DamagedCheckpoint`; the runner then moves the entry aside (`quarantine`) and trains the teacher
again, instead of every student of the pairing failing on it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch

from kdbench import __version__
from kdbench.store import atomic

WEIGHTS = "weights.pt"
META = "meta.json"
CHECKSUM = "weights_sha256"  # in meta.json; not part of the teacher's record
DAMAGED = ".damaged"  # where damaged entries are moved, beside the entries
PARTIAL = ".tmp"  # suffix of an entry's temporary folder while it is written


class DamagedCheckpoint(Exception):
    """A cache entry that is there but cannot be trusted; `reason` says why."""

    def __init__(self, folder: Path, reason: str):
        self.folder = folder
        self.reason = reason
        super().__init__(f"teacher cache entry {folder} is damaged: {reason}")


def cache_key(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of everything that determines a model (plus kdbench's version).

    Any changed field (dataset split, model, size, seed, a hyperparameter, the version) changes
    the key, so a stale teacher is never reused.
    """
    canonical = json.dumps({**fields, "kdbench_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(folder: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write the weights and the metadata (with the weights' checksum) into a temporary folder, then
    rename it onto `folder` in one step (`_place`)."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=PARTIAL, dir=folder.parent))
        torch.save(tensors, tmp / WEIGHTS)
        (tmp / META).write_text(atomic.dumps({**meta, CHECKSUM: file_digest(tmp / WEIGHTS)}), encoding="utf-8")
        for name in (WEIGHTS, META):
            atomic.flush(tmp / name)
        os.chmod(tmp, 0o777 & ~atomic.UMASK)  # mkdtemp makes 0700; an entry is as readable as any folder
        _place(tmp, folder)
    except OSError as exc:
        raise atomic.WriteFailed(folder, exc) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _place(tmp: Path, folder: Path) -> None:
    """Rename the written folder `tmp` onto `folder`; an entry already there (complete, or the
    leftover of an old-layout write cut off between its two renames) is first renamed aside and then
    deleted, so a reader finds the old entry, no entry, or the new one, never a mixture."""
    asides: list[Path] = []
    try:
        for _ in range(8):
            try:
                os.rename(tmp, folder)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            aside = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old{PARTIAL}")
            try:
                os.rename(folder, aside)
                asides.append(aside)
            except FileNotFoundError:  # another writer moved it first
                pass
        os.rename(tmp, folder)
    finally:
        for aside in asides:
            shutil.rmtree(aside, ignore_errors=True)


def clear_partial(folder: str | Path) -> int:
    """Remove the temporary folders that writes of `folder`'s entry left when killed (call it while
    no other process writes that entry, e.g. holding its claim)."""
    folder = Path(folder)
    partial = list(folder.parent.glob(f".{folder.name}.*{PARTIAL}")) if folder.parent.is_dir() else []
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return len(partial)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state_dict, meta) of a complete checkpoint, None if there is none, `DamagedCheckpoint` if
    there is one that cannot be trusted. Entries written before checksums existed are accepted
    when their weights load as a state dict. An entry replaced by another writer while it was read
    (its folder is another one afterwards) is read again, not taken for damaged."""
    folder = Path(folder)
    for _ in range(8):
        before = _identity(folder)
        try:
            return _load(folder)
        except DamagedCheckpoint:
            if before is not None and _identity(folder) == before:
                raise
    return _load(folder)


def _identity(folder: Path) -> tuple[int, int, int] | None:
    """Which folder is at `folder` now (a replaced entry is a new folder, with a new change time)."""
    try:
        stat = folder.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_ctime_ns


def _load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    if not (folder / META).exists():
        return None
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        raise DamagedCheckpoint(folder, f"{META} or {WEIGHTS} is missing or not a file")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpoint(folder, f"{META} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpoint(folder, f"{META} does not hold a JSON object")
    try:
        weights = (folder / WEIGHTS).read_bytes()  # read once: the bytes checked are the bytes loaded
    except OSError as exc:
        raise DamagedCheckpoint(folder, f"{WEIGHTS} is unreadable ({exc.strerror or exc})") from None
    expected = meta.pop(CHECKSUM, None)
    if expected is not None and hashlib.sha256(weights).hexdigest() != expected:
        raise DamagedCheckpoint(folder, f"{WEIGHTS} does not match the checksum in {META}")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, foreign pickle refused by weights_only ...
        raise DamagedCheckpoint(folder, f"{WEIGHTS} does not load ({type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DamagedCheckpoint(folder, f"{WEIGHTS} is not a state dict of tensors")
    return state, meta


def quarantine(folder: str | Path) -> Path:
    """Move a damaged entry to `<cache>/teachers/.damaged/<key>.<n>` (kept for inspection, never
    loaded again); returns where it went."""
    folder = Path(folder)
    target_dir = folder.parent / DAMAGED
    target_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while (target_dir / f"{folder.name}.{n}").exists():
        n += 1
    target = target_dir / f"{folder.name}.{n}"
    folder.rename(target)
    return target
