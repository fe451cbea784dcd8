"""Teacher checkpoints: plain state dicts plus JSON metadata, keyed by what determines the teacher.

A checkpoint can never run code: weights are saved as a bare `state_dict` and loaded with
`torch.load(..., weights_only=True)`; everything else lives in a JSON file beside them.

A damaged checkpoint heals: the metadata holds the SHA-256 of the weights file, and an entry whose
weights do not match it, do not load as a state dict, or whose metadata is unreadable raises
`DamagedCheckpoint`; the runner then moves the entry aside (`quarantine`) and trains the teacher
again, instead of every student of the pairing failing on it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from kdbench import __version__, atomic

WEIGHTS = "weights.pt"
META = "meta.json"
CHECKSUM = "weights_sha256"  # in meta.json; not part of the teacher's record
DAMAGED = ".damaged"  # where damaged entries are moved, beside the entries


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
    """Write weights then metadata (with the weights' checksum) atomically; the metadata file
    marks the checkpoint complete."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    with atomic.atomic_path(folder / WEIGHTS) as tmp:
        torch.save(tensors, tmp)
    atomic.write_json(folder / META, {**meta, CHECKSUM: file_digest(folder / WEIGHTS)})


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state_dict, meta) of a complete checkpoint, None if there is none, `DamagedCheckpoint` if
    there is one that cannot be trusted. Entries written before checksums existed are accepted
    when their weights load as a state dict."""
    folder = Path(folder)
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
    expected = meta.pop(CHECKSUM, None)
    if expected is not None and file_digest(folder / WEIGHTS) != expected:
        raise DamagedCheckpoint(folder, f"{WEIGHTS} does not match the checksum in {META}")
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
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
