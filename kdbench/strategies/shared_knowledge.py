"""Teacher knowledge shared by the runs of one process: the tuning trials of a study (and the seeds
of a cell) that distil from the same frozen teacher compute its top-N lists once, not once per trial.

What the frozen teacher gives (its top-N unseen items per user, its top-N users per item) depends
only on the teacher, the training split and the list's size, never on a trial's other
hyperparameters, learning rate or seed. `shared_knowledge(kind)` wraps such a function
`f(adapter, history, *args)`: when `adapter.model` is a teacher registered with `share_teacher`
(the frozen teachers `work.load_teacher` caches per artifact), the result is kept under (teacher
key and weights digest, kind, the split's fingerprint, the query table's fingerprint for a sequential adapter, args)
and later calls get a copy of it (a caller may write its copy). Any other model (a student, a
teacher a strategy trains further) is computed every time. At most `MAX_BYTES` are kept, least
recently used first out.

The wrapper is a decorator defined outside `kdbench.strategies`, so it is not part of a strategy's
code version (`strategies/_code.py` hashes definitions without their decorators and follows names
into the strategy modules only): it changes when the work is done, not what is computed, and
stored identities stay as they were.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter, OrderedDict
from typing import Any, Callable
from weakref import WeakKeyDictionary

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

MAX_BYTES = 2**30  # kept knowledge per process
_TEACHERS: "WeakKeyDictionary[nn.Module, str]" = WeakKeyDictionary()
_KEPT: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
COMPUTED: Counter = Counter()  # computations of shared knowledge per kind (registered teachers only)


def share_teacher(model: nn.Module, key: str) -> None:
    """Mark `model` as a frozen teacher whose knowledge may be shared under `key` (its artifact key
    and device) and the digest of its weights, taken now: two models share knowledge only when their
    weights are the same bytes, whatever their keys say."""
    state = model.state_dict()
    _TEACHERS[model] = f"{key}:{_digest(*(state[name] for name in sorted(state)))}"


def clear() -> None:
    """Forget every kept result and every registered teacher."""
    _KEPT.clear()
    _TEACHERS.clear()
    COMPUTED.clear()


def _digest(*arrays: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for array in arrays:
        data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        h.update(str((data.dtype, data.shape)).encode())
        h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()


def _history_digest(history: sp.spmatrix) -> str:
    csr = history.tocsr()
    return _digest(np.asarray(csr.shape), csr.indptr, csr.indices)


def _queries_digest(adapter: Any) -> str | None:
    queries = getattr(adapter, "queries", None)
    return None if queries is None else _digest(queries.items, queries.lengths)


def shared_knowledge(kind: str) -> Callable:
    """Decorator: share `f(adapter, history, *args, **kwargs)`'s tensor result across the runs of a
    process when `adapter` is a registered frozen teacher (module docstring)."""
    def decorate(compute: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        @functools.wraps(compute)
        def shared(adapter, history, *args, **kwargs) -> torch.Tensor:
            model = getattr(adapter, "model", None)
            teacher = _TEACHERS.get(model) if isinstance(model, nn.Module) else None
            if teacher is None:
                return compute(adapter, history, *args, **kwargs)
            key = (teacher, kind, type(adapter).__name__, _history_digest(history), _queries_digest(adapter),
                   args, tuple(sorted(kwargs.items())))
            if key in _KEPT:
                _KEPT.move_to_end(key)
                return _KEPT[key].clone()
            result = compute(adapter, history, *args, **kwargs)
            COMPUTED[kind] += 1
            _keep(key, result)
            return result
        return shared
    return decorate


def _keep(key: tuple, result: torch.Tensor) -> None:
    size = result.element_size() * result.nelement()
    if size > MAX_BYTES:
        return
    _KEPT[key] = result.clone()
    while sum(t.element_size() * t.nelement() for t in _KEPT.values()) > MAX_BYTES:
        _KEPT.popitem(last=False)
