"""Teacher knowledge computed once per run, in bounded-memory chunks.

Never a dense users x items matrix of the whole catalogue: users are scored `chunk` at a time,
with `chunk * n_items` floats bounded by `max_cells` (64 MiB of float32 by default).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.backbones import BackboneAdapter

MAX_CELLS = 2**24


def user_chunks(n_users: int, n_items: int, max_cells: int = MAX_CELLS):
    """Consecutive user-id ranges whose score blocks stay under max_cells floats."""
    chunk = max(1, max_cells // max(n_items, 1))
    for start in range(0, n_users, chunk):
        yield start, min(start + chunk, n_users)


def mask_seen(scores: torch.Tensor, history: sp.csr_matrix, start: int) -> torch.Tensor:
    """Set the padding item and the users' training items to -inf, in place."""
    scores[:, 0] = -torch.inf
    block = history[start : start + scores.shape[0]].tocoo()
    if block.nnz:
        rows = torch.from_numpy(block.row.astype(np.int64)).to(scores.device)
        cols = torch.from_numpy(block.col.astype(np.int64)).to(scores.device)
        scores[rows, cols] = -torch.inf
    return scores


@torch.no_grad()
def teacher_top_n(
    teacher: BackboneAdapter, history: sp.csr_matrix, n: int, max_cells: int = MAX_CELLS
) -> torch.Tensor:
    """Each user's teacher top-n among items NOT interacted with in training: (n_users, n) ids.

    Row 0 (RecBole's padding user) is filled like any other and never used.
    """
    n_users, n_items = history.shape
    n = min(n, n_items - 1)
    device = next(teacher.model.parameters()).device
    out = torch.empty((n_users, n), dtype=torch.long)
    for start, stop in user_chunks(n_users, n_items, max_cells):
        users = torch.arange(start, stop, device=device)
        scores = mask_seen(teacher.full_scores(users).float().clone(), history, start)
        out[start:stop] = torch.topk(scores, n, dim=1).indices.cpu()
    return out


@torch.no_grad()
def teacher_representations(
    teacher: BackboneAdapter, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen teacher's user and item representation tables (constant during distillation),
    copied (to `device` if given)."""
    users, items = teacher.representation_tables()
    return users.detach().clone().to(device), items.detach().clone().to(device)


@torch.no_grad()
def scores_of_lists(adapter: BackboneAdapter, items: torch.Tensor, max_cells: int = 2**18) -> torch.Tensor:
    """Each user's scores for its own item list: row u of `items` (n_users, M) -> (n_users, M).

    Chunked over users (`max_cells` user-item pairs at a time: dot-product backbones gather a
    d-dimensional row per pair); whole-graph backbones propagate once for all chunks.
    """
    device = next(adapter.model.parameters()).device
    n_users, width = items.shape
    out = torch.empty((n_users, width), dtype=torch.float32, device=device)
    with adapter.one_forward_per_step():
        for start, stop in user_chunks(n_users, width, max_cells):
            users = torch.arange(start, stop, device=device)
            out[start:stop] = adapter.score(users, items[start:stop].to(device)).float()
    return out
