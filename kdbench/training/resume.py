"""Resuming an interrupted training run at its last validated epoch, bit for bit.

A run killed mid-training (a working session that ends, a signal) would start again at epoch 1.
`EpochCheckpoint` keeps, after each validation, everything the next epoch reads: the model's and
the optimiser's state, the best weights so far, the early-stopping counters and the validation
curve, the training loader's, numpy's, torch's and Python's random generators, and the strategy's
own state: its parameters and buffers (`state_dict`), its random generators, every attribute it
reassigned since `prepare` (per-epoch samples and lists, annealed temperatures, counters), and the
teacher copy a strategy trains further (BD), and the state of the run's companions (a teacher's
trajectory recorder: the top-K lists recorded so far). Caches
`prepare` built and never reassigns (the teacher's lists and embeddings, graphs) are built again by
the resumed process's own `prepare`, as they were the first time. `fit`, given the same checkpoint,
continues at the next epoch as if it had never stopped (tests/test_resume_epochs.py: every
strategy, N epochs straight against k epochs, then new objects resumed for the rest).

The file holds plain containers of tensors and numbers (`torch.save`, loaded with
`weights_only=True`: it can never run code) and is replaced atomically. A strategy attribute of
another kind that changes during training (none of the registered strategies has one), or a state
over `MAX_BYTES`, leaves the run without checkpoints: it trains as before, from epoch 1 if killed.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.store import atomic

MAX_BYTES = 1 << 30  # a larger state is not written: the run keeps no checkpoint
_MODULE_FIELDS = frozenset(vars(nn.Module()))  # nn.Module's own bookkeeping, covered by state_dict
_NOT_STATE = frozenset({"context", "hparams"})  # given at construction, the same on resume


def run_key(what: Any) -> str:
    """The key of a resumable run (a cell, a tuning trial): SHA-256 of the canonical JSON of everything
    that determines what it computes, so a run made otherwise never takes another's kept state."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


class Unresumable(Exception):
    """The run's state cannot be kept in a checkpoint (an attribute kind, or its size)."""


class EpochCheckpoint:
    """The checkpoint file of one training run; `key` names the run (a file of another is ignored)."""

    def __init__(self, path: str | Path, key: str, companions: dict[str, Any] | None = None,
                 every_seconds: float = 0.0):
        self.path = Path(path)
        self.key = key
        self.every_seconds = every_seconds  # at most one write in this time (the first always written)
        self._written_at: float | None = None
        # objects beside the run whose state is the run's too (`state_dict` / `load_state_dict` of
        # plain tensors, lists and numbers): a teacher's trajectory recorder
        self.companions = dict(companions or {})
        self.disabled: str | None = None  # why this run keeps no checkpoint
        self._prepared: dict[str, int] = {}
        self._peeked: dict[str, Any] | None = None  # read by `peek`, handed to the next `load`

    def mark_prepared(self, strategy: nn.Module | None) -> None:
        """Remember the strategy's attributes as `prepare` left them (what is reassigned later is state)."""
        self._prepared = {name: id(value) for name, value in vars(strategy).items()} if strategy is not None else {}

    def peek(self) -> dict[str, Any] | None:
        """`load`, kept for the next `load` (the run's own in `fit`): a caller that reads the kept epoch
        before training (a tuning trial's counters and pruner) does not read the file twice."""
        self._peeked = self.load()
        return self._peeked

    def load(self) -> dict[str, Any] | None:
        """The stored state of this run, or None (no file, another run's, or unreadable: removed)."""
        if self._peeked is not None:
            state, self._peeked = self._peeked, None
            return state
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a truncated or foreign file: start from epoch 1
            self.discard()
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            self.discard()
            return None
        return state

    def save(self, loop: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
             loader_generator: torch.Generator, strategy: nn.Module | None) -> None:
        """Write the state after an epoch (`loop`: the training loop's counters, curve and best weights)."""
        if self.disabled or (self._written_at is not None
                             and time.monotonic() - self._written_at < self.every_seconds):
            return
        try:
            state = {
                "key": self.key, "loop": loop, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": {"loader": loader_generator.get_state(), "torch": torch.get_rng_state(),
                        "numpy": _encode(np.random.get_state()), "python": _encode(random.getstate())},
                "strategy": None if strategy is None else _strategy_state(strategy, self._prepared),
                "companions": {name: companion.state_dict() for name, companion in self.companions.items()},
            }
            if _nbytes(state) > MAX_BYTES:
                raise Unresumable(f"its state exceeds {MAX_BYTES >> 20} MiB")
        except Unresumable as exc:
            self.disabled = str(exc)
            self.discard()
            return
        with atomic.atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        self._written_at = time.monotonic()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            loader_generator: torch.Generator, strategy: nn.Module | None,
            companions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put a loaded checkpoint back; returns the training loop's counters, curve and best weights."""
    model.load_state_dict(state["model"])
    for name, companion in (companions or {}).items():
        companion.load_state_dict(state["companions"][name])
    optimizer.load_state_dict(state["optimizer"])
    loader_generator.set_state(state["rng"]["loader"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(_decode(state["rng"]["numpy"]))
    random.setstate(_decode(state["rng"]["python"]))
    if strategy is not None and state["strategy"] is not None:
        saved = state["strategy"]
        strategy.load_state_dict(saved["module"])
        if saved["teacher"] is not None:
            strategy.context.teacher.model.load_state_dict(saved["teacher"])
        for name, generator_state in saved["generators"].items():
            getattr(strategy, name).set_state(generator_state)
        for name, value in saved["attributes"].items():
            setattr(strategy, name, _decode(value))
    return state["loop"]


def _strategy_state(strategy: nn.Module, prepared: dict[str, int]) -> dict[str, Any]:
    generators, attributes = {}, {}
    for name, value in vars(strategy).items():
        if name in _MODULE_FIELDS or name in _NOT_STATE:
            continue
        if isinstance(value, torch.Generator):
            generators[name] = value.get_state()
        elif prepared.get(name) != id(value):  # reassigned since prepare (or new): per-epoch state
            try:
                attributes[name] = _encode(value)
            except Unresumable as exc:
                raise Unresumable(f"strategy attribute '{name}' changes during training and {exc}") from None
    teacher = getattr(getattr(strategy, "context", None), "teacher", None)
    trained_teacher = (teacher.model.state_dict() if getattr(strategy, "updates_teacher", False) and teacher is not None
                       else None)  # BD trains its teacher copy further: its weights are state too
    return {"module": strategy.state_dict(), "generators": generators, "attributes": attributes,
            "teacher": trained_teacher}


def _encode(value: Any) -> Any:
    """A value as plain containers of tensors and numbers; tagged where its kind must come back."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise Unresumable(f"is an array of {value.dtype}, which a checkpoint does not hold")
        return {"kind": "ndarray", "dtype": value.dtype.str, "value": torch.from_numpy(value.astype(np.int64)
                if value.dtype.kind == "u" else value.copy())}
    if isinstance(value, np.generic):
        return {"kind": "npscalar", "value": _encode(np.asarray(value))}
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "items": [_encode(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"kind": "dict", "items": {k: _encode(v) for k, v in value.items()}}
    raise Unresumable(f"is a {type(value).__name__}, which a checkpoint does not hold")


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    kind = value["kind"]
    if kind == "ndarray":
        return value["value"].numpy().astype(np.dtype(value["dtype"]))
    if kind == "npscalar":
        return _decode(value["value"])[()]
    if kind in ("list", "tuple"):
        items = [_decode(item) for item in value["items"]]
        return items if kind == "list" else tuple(items)
    return {k: _decode(v) for k, v in value["items"].items()}


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0
