"""A teacher's training trajectory: its top-K lists at several epochs of its training (HetComp).

Recorded while the teacher trains (`TrajectoryRecorder`, an `on_epoch` hook of `loop.fit`): every
`EVERY` epochs, each user's top-`K` unobserved items by the teacher's current weights; after
training, the same list by the best (restored) weights, and each user's training items ranked by
those weights (the first `OBSERVED`). Scoring runs in eval mode without gradients and draws no
random numbers, so the teacher trains exactly as it would without the hook.

A trajectory is plain tensors (`torch.save`, loaded with weights_only=True), stored beside its
teacher's cache entry under a name that holds the recording schedule (`file_name`), so the teacher's
cache key is unchanged; a teacher cached without one is trained again with the same seed.
"""

from __future__ import annotations

import hashlib
import io
from typing import Callable

import scipy.sparse as sp
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter
from kdbench.strategies.knowledge import score_blocks, scoring_mode, teacher_top_n, top_k

EVERY = 5  # epochs between recorded lists
K = 100  # items per recorded list (HetComp's K; capped at the catalogue's unobserved items)
OBSERVED = 10  # training items ranked per user (HetComp's K // 10 observed items)
FORMAT = 1


def file_name(every: int = EVERY, k: int = K) -> str:
    """The trajectory's file in its teacher's cache folder: the schedule is part of the name."""
    return f"trajectory-v{FORMAT}-e{every}-k{k}.pt"


@torch.no_grad()
def observed_order(adapter: BackboneAdapter, history: sp.csr_matrix, n: int) -> torch.Tensor:
    """Each user's training items, highest score first, the first n: (n_users, n) ids, 0 (the
    padding item) where a user has fewer than n."""
    n_users, n_items = history.shape
    out = torch.zeros((n_users, n), dtype=torch.long)
    for start, stop, scores in score_blocks(adapter, n_users, n_items):
        seen = torch.from_numpy(history[start:stop].toarray() > 0).to(scores.device)
        seen[:, 0] = False
        scores = scores.masked_fill(~seen, -torch.inf)
        values, ids = top_k(scores, min(n, n_items))
        ids = ids.masked_fill(torch.isinf(values), 0).cpu()
        out[start:stop, : ids.shape[1]] = ids
    return out


class TrajectoryRecorder:
    """`on_epoch` hook recording a model's top-K lists every `every` epochs (see the module doc)."""

    def __init__(self, model: nn.Module, uid_field: str, iid_field: str, history: sp.csr_matrix,
                 then: Callable[[int, float | None], None] | None = None, every: int = EVERY, k: int = K):
        self.adapter = BackboneAdapter(model, uid_field, iid_field)
        self.history, self.then, self.every, self.k = history, then, every, k
        self.epochs: list[int] = []
        self.lists: list[torch.Tensor] = []

    def __call__(self, epoch: int, valid: float | None) -> None:
        if epoch % self.every == 0:
            with scoring_mode(self.adapter):
                self.lists.append(teacher_top_n(self.adapter, self.history, self.k).to(torch.int32))
            self.epochs.append(epoch)
        if self.then is not None:
            self.then(epoch, valid)

    def state_dict(self) -> dict[str, object]:
        """The lists recorded so far (a resumed teacher's run continues its trajectory: `training.resume`)."""
        return {"epochs": list(self.epochs), "lists": list(self.lists)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.epochs, self.lists = [int(epoch) for epoch in state["epochs"]], list(state["lists"])

    def finish(self, best_epoch: int) -> dict[str, torch.Tensor]:
        """The trajectory, once the best weights are restored in the model: recorded lists of the
        epochs up to `best_epoch`, then the best weights' list (`best_epoch`) and observed order."""
        kept = [i for i, epoch in enumerate(self.epochs) if epoch < best_epoch]
        with scoring_mode(self.adapter):
            final = teacher_top_n(self.adapter, self.history, self.k).to(torch.int32)
            observed = observed_order(self.adapter, self.history, OBSERVED)
        return {
            "epochs": torch.tensor([self.epochs[i] for i in kept] + [best_epoch], dtype=torch.long),
            "top": torch.stack([self.lists[i] for i in kept] + [final]),
            "observed": observed,
        }


def to_bytes(trajectory: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({key: value.detach().cpu() for key, value in trajectory.items()}, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """A trajectory from `to_bytes`' output; ValueError if it is not one."""
    try:
        trajectory = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated file, foreign pickle refused by weights_only
        raise ValueError(f"not a trajectory ({type(exc).__name__})") from None
    if not isinstance(trajectory, dict) or set(trajectory) != {"epochs", "top", "observed"}:
        raise ValueError("not a trajectory (wrong fields)")
    top = trajectory["top"]
    if top.dim() != 3 or len(trajectory["epochs"]) != len(top) or len(top) < 1:
        raise ValueError("not a trajectory (inconsistent shapes)")
    return trajectory


def content_digest(trajectory: dict[str, torch.Tensor]) -> str:
    """A digest of a trajectory's lists, by content: two recordings that hold the same epochs and
    lists have the same digest, whatever bytes `torch.save` wrote. A tuning study whose strategy
    learns from trajectories keeps it in its identity: a teacher cache rebuilt with lists recorded
    otherwise is then a change of settings, not a silent one."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(trajectory):
        tensor = trajectory[name].contiguous()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def snapshot(adapter: BackboneAdapter, history: sp.csr_matrix, copies: int = 1, k: int = K) -> dict[str, torch.Tensor]:
    """A trajectory of `copies` identical lists from a model's current weights: for benchmarks and
    tests of an ensemble strategy, where no training was recorded."""
    with scoring_mode(adapter):
        top = teacher_top_n(adapter, history, k).to(torch.int32)
        observed = observed_order(adapter, history, OBSERVED)
    return {"epochs": torch.arange(copies), "top": top.expand(copies, -1, -1).clone(), "observed": observed}
