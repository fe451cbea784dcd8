"""Teacher checkpoints: plain state dicts plus JSON metadata, keyed by what determines the teacher.

A checkpoint can never run code: weights are saved as a bare `state_dict` and loaded with
`torch.load(..., weights_only=True)`; everything else lives in a JSON file beside them.
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


def cache_key(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of everything that determines a model (plus kdbench's version).

    Any changed field (dataset split, model, size, seed, a hyperparameter, the version) changes
    the key, so a stale teacher is never reused.
    """
    canonical = json.dumps({**fields, "kdbench_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def save_checkpoint(folder: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write weights then metadata atomically; the metadata file marks the checkpoint complete."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    with atomic.atomic_path(folder / WEIGHTS) as tmp:
        torch.save(tensors, tmp)
    atomic.write_json(folder / META, meta)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state_dict, meta) of a complete checkpoint, or None if there is none."""
    folder = Path(folder)
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        return None
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    meta = json.loads((folder / META).read_text())
    return state, meta
