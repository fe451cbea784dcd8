"""Teacher knowledge computed once per run, in bounded-memory chunks.

Never a dense users x items matrix of the whole catalogue: users are scored `chunk` at a time,
with `chunk * n_items` floats bounded by `max_cells`. A full-catalogue pass (top lists, ranks)
scores blocks of SCORE_CELLS (8 MiB of float32), which stay in the CPU's cache while they are
masked and searched: with 64 MiB blocks the same pass took 8x longer, most of it in writing and
re-reading memory. Dot-product backbones are scored from their representation tables, read once
per pass (one propagation for graph backbones).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.backbones import DOT_PRODUCT, BackboneAdapter, reset_inference_cache
from kdbench.strategies.shared_knowledge import shared_knowledge
from kdbench.strategies._list_scores import list_scores

MAX_CELLS = 2**24
SCORE_CELLS = 2**21


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
def score_blocks(adapter: BackboneAdapter, n_users: int, n_items: int, max_cells: int = SCORE_CELLS,
                 users: torch.Tensor | None = None):
    """(start, stop, scores of users start..stop-1 for every item): fresh float32 blocks the
    caller may write, each of at most `max_cells` floats. Given `users` (n_users ids), the block
    start..stop holds the scores of users[start:stop] instead."""
    tables = None
    if adapter.name in DOT_PRODUCT:
        user_table, item_table = (table.float() for table in adapter.representation_tables())
        tables = (user_table, item_table.T.contiguous())
    device = next(adapter.model.parameters()).device
    for start, stop in user_chunks(n_users, n_items, max_cells):
        if tables is not None:
            rows = tables[0][start:stop] if users is None else tables[0][users[start:stop]]
            yield start, stop, rows @ tables[1]
        else:
            ids = torch.arange(start, stop, device=device) if users is None else users[start:stop]
            yield start, stop, adapter.full_scores(ids).float().clone()


def _block_count(n: int, k: int) -> int:
    """How many strided blocks `top_candidates` cuts a row of n into for its top k (1: none)."""
    blocks = 1 << max(0, min(5, int(np.log2(max(n / (6 * max(k, 1)), 1)))))
    return blocks if blocks >= 4 else 1


def top_candidates(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, columns) (R, C), C <= k * b + b: per row, a set of entries that holds the row's k
    highest (with any ties at the k-th value), found without a selection over the whole row.

    The first b * w columns (w = n // b) are cut into w strided blocks of b entries (block c: the
    columns c, w + c, 2w + c, ...), whose maxima one pass computes: each of the k highest entries
    of those columns lies in a block whose maximum is at least the k-th value, and fewer than k + 1
    blocks can have such a maximum, so the k blocks of highest maximum hold them all. Those k * b
    entries and the n - b * w < b columns left over are the candidates. With b = 1: the row.
    """
    n_rows, n = scores.shape
    blocks = _block_count(n, k)
    if blocks == 1:
        return scores, torch.arange(n, device=scores.device).expand(n_rows, n)
    width = n // blocks
    strided = scores.as_strided((n_rows, blocks, width), (scores.stride(0), width, 1))
    best = strided.amax(dim=1).topk(k, dim=1, sorted=False).indices  # (R, k) block ids
    values = strided.gather(2, best.unsqueeze(1).expand(-1, blocks, -1)).view(n_rows, -1)
    columns = (torch.arange(blocks, device=scores.device).view(1, blocks, 1) * width + best.unsqueeze(1))
    columns = columns.view(n_rows, -1)
    if blocks * width < n:  # the leftover columns are candidates too
        values = torch.cat([values, scores[:, blocks * width :]], dim=1)
        tail = torch.arange(blocks * width, n, device=scores.device).expand(n_rows, -1)
        columns = torch.cat([columns, tail], dim=1)
    return values, columns


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(scores, k, dim=1) (values, indices; sorted), searched among `top_candidates`
    (faster for k well below the row): the same values; the same indices too, except that among
    exactly tied scores either may be taken (torch.topk's choice among ties is not specified)."""
    if _block_count(scores.shape[1], k) == 1:
        top = torch.topk(scores, k, dim=1)
        return top.values, top.indices
    values, columns = top_candidates(scores.contiguous(), k)
    top = values.topk(k, dim=1)
    return top.values, columns.gather(1, top.indices)


@shared_knowledge("teacher_top_n")  # a frozen teacher's lists: once per process (kdbench.strategies.shared_knowledge)
@torch.no_grad()
def teacher_top_n(
    teacher: BackboneAdapter, history: sp.csr_matrix, n: int, max_cells: int = SCORE_CELLS
) -> torch.Tensor:
    """Each user's teacher top-n among items NOT interacted with in training: (n_users, n) ids.

    Row 0 (RecBole's padding user) is filled like any other and never used.
    """
    n_users, n_items = history.shape
    n = min(n, n_items - 1)
    out = torch.empty((n_users, n), dtype=torch.long)
    for start, stop, scores in score_blocks(teacher, n_users, n_items, max_cells):
        out[start:stop] = top_k(mask_seen(scores, history, start), n)[1].cpu()
    return out


@torch.no_grad()
def top_n_of_users(adapter: BackboneAdapter, users: torch.Tensor, n: int, max_cells: int = SCORE_CELLS) -> torch.Tensor:
    """Each listed user's top n over every real item (the padding item excluded, training items not):
    (len(users), n) ids, scored by `adapter` as it stands (callers choose its mode).

    Block by block of users, so that each (block, n_items) score table is scored, masked and
    searched while in cache; `top_k` as for every list (ties: either)."""
    out = torch.empty((len(users), n), dtype=torch.long, device=users.device)
    for start, stop, scores in score_blocks(adapter, len(users), adapter.model.n_items, max_cells, users):
        scores[:, 0] = -torch.inf
        out[start:stop] = top_k(scores, n)[1]
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

    Chunked over users (`max_cells` user-item pairs at a time); whole-graph backbones propagate
    once for all chunks; dot-product backbones take `list_scores`' sparse product (no
    d-dimensional row gathered per pair).
    """
    device = next(adapter.model.parameters()).device
    n_users, width = items.shape
    out = torch.empty((n_users, width), dtype=torch.float32, device=device)
    with adapter.one_forward_per_step():
        for start, stop in user_chunks(n_users, width, max_cells):
            users = torch.arange(start, stop, device=device)
            out[start:stop] = list_scores(adapter, users, items[start:stop].to(device)).float()
    return out


@contextmanager
def scoring_mode(adapter: BackboneAdapter) -> Iterator[BackboneAdapter]:
    """Score a model that is training (the student) in eval mode, without gradients, and drop any
    full-sort cache it builds (LightGCN's restore_user_e), then restore its mode."""
    model = adapter.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield adapter
    finally:
        reset_inference_cache(model)
        model.train(was_training)


def count_higher(scores: torch.Tensor, pool_scores: torch.Tensor, cap: int | None = None) -> torch.Tensor:
    """Per row, how many entries of `scores` (R, n) are strictly greater than each of `pool_scores`
    (R, P): (R, P) long, or min(that count, cap). -inf entries never count.

    Without comparing every pair. With a cap small against the row (cap + 1 <= n / 8): only the
    row's cap + 1 highest entries can count, so they are selected (topk) and the pool placed among
    them by binary search. Otherwise (the result then clamped to the cap): the pool is
    sorted, each score placed among it (b_j = #pool < s_j), and s_j > q_k for the k-th smallest pool
    score q_k exactly when b_j >= k + 1 (ties included), so a histogram of b and its suffix sums give
    every count: O(n log P) per row instead of O(n P).
    """
    if cap is not None and 8 * (cap + 1) <= scores.shape[1]:
        top = top_k(scores, cap + 1)[0].flip(1)  # ascending
        higher = (cap + 1) - torch.searchsorted(top, pool_scores.contiguous(), right=True)
        return higher.clamp_(max=cap)
    ordered, order = pool_scores.sort(dim=1)
    below = torch.searchsorted(ordered, scores.contiguous())  # (R, n): pool scores < each score
    histogram = torch.zeros((len(scores), ordered.shape[1] + 1), dtype=torch.long, device=scores.device)
    histogram.scatter_add_(1, below, torch.ones_like(below))
    at_least = histogram.flip(1).cumsum(dim=1).flip(1)  # at_least[m] = #{j: b_j >= m}
    counts = torch.empty_like(order).scatter_(1, order, at_least[:, 1:])
    return counts if cap is None else counts.clamp_(max=cap)


@torch.no_grad()
def unseen_ranks(
    adapter: BackboneAdapter, history: sp.csr_matrix, pool: torch.Tensor, max_cells: int = SCORE_CELLS,
    cap: int | None = None,
) -> torch.Tensor:
    """Each user's 0-based rank, by `adapter`'s scores, of each item of its list `pool` (n_users, P)
    among the items it has NOT interacted with in training: (n_users, P) long, CPU; ranks above
    `cap` are reported as cap (cheaper: see `count_higher`).

    rank = how many of the user's unobserved items score strictly higher (training items and the
    padding item are left out, as they are out of a teacher top-N list). Chunked over users.
    """
    n_users, n_items = history.shape
    out = torch.empty(pool.shape, dtype=torch.long)
    for start, stop, scores in score_blocks(adapter, n_users, n_items, max_cells):
        scores = mask_seen(scores, history, start)
        pool_scores = scores.gather(1, pool[start:stop].to(scores.device))
        out[start:stop] = count_higher(scores, pool_scores, cap).cpu()
    return out


def _item_columns(adapter: BackboneAdapter, history: sp.csr_matrix, start: int, stop: int) -> torch.Tensor:
    """Scores of users start..stop-1 for every item, training pairs and padding user 0 at -inf,
    transposed: (n_items, stop - start)."""
    device = next(adapter.model.parameters()).device
    users = torch.arange(start, stop, device=device)
    scores = mask_seen(adapter.full_scores(users).float().clone(), history, start)
    if start == 0:
        scores[0] = -torch.inf  # RecBole's padding user
    return scores.T


def _item_blocks(adapter: BackboneAdapter, history: sp.csr_matrix, max_cells: int):
    """For dot-product backbones: (start, stop, scores of every user for items start..stop-1), each
    block (stop - start, n_users) with training pairs and padding user 0 at -inf; `max_cells` bounds
    a block. The representation tables are read once (one propagation for graph backbones)."""
    n_users, n_items = history.shape
    users, items = (table.float() for table in adapter.representation_tables())
    by_item = history.T.tocsr()
    chunk = max(1, max_cells // max(n_users, 1))
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        yield start, stop, mask_seen(items[start:stop] @ users.T, by_item, start)


@shared_knowledge("top_users")
@torch.no_grad()
def top_users(adapter: BackboneAdapter, history: sp.csr_matrix, n: int, max_cells: int = SCORE_CELLS) -> torch.Tensor:
    """Each item's top-n users by `adapter`'s scores among the users who did NOT interact with it in
    training: (n_items, n) user ids, CPU (the item-side counterpart of `teacher_top_n`).

    Dot-product backbones are scored a block of items at a time against all users. Others, scored
    only user by user (`full_scores`), are scored in user chunks whose best n per item are merged
    chunk by chunk, in memory O(n_items * (n + chunk)). Row 0 (padding item) is filled like any
    other and never used; an item with fewer than n eligible users ends its row with ineligible
    ones (callers keep a limit).
    """
    n_users, n_items = history.shape
    n = min(n, n_users - 1)
    if adapter.name in DOT_PRODUCT:
        out = torch.empty((n_items, n), dtype=torch.long)
        for start, stop, block in _item_blocks(adapter, history, max_cells):
            out[start:stop] = top_k(block, n)[1].cpu()
        return out
    best_scores = torch.empty((n_items, 0))
    best_users = torch.empty((n_items, 0), dtype=torch.long)
    for start, stop in user_chunks(n_users, n_items, max(max_cells // 2, n_items)):
        columns = _item_columns(adapter, history, start, stop).cpu()
        scores = torch.cat([best_scores, columns], dim=1)
        users = torch.cat([best_users, torch.arange(start, stop).expand(n_items, -1)], dim=1)
        keep = torch.topk(scores, min(n, scores.shape[1]), dim=1)
        best_scores, best_users = keep.values, users.gather(1, keep.indices)
    return best_users


@torch.no_grad()
def unseen_user_ranks(
    adapter: BackboneAdapter, history: sp.csr_matrix, pool: torch.Tensor, max_cells: int = SCORE_CELLS,
    cap: int | None = None,
) -> torch.Tensor:
    """Each item's 0-based rank, by `adapter`'s scores, of each user of its list `pool` (n_items, P)
    among the users who did NOT interact with it in training (padding user excluded): (n_items, P);
    ranks above `cap` are reported as cap.

    Dot-product backbones: one pass over blocks of items scored against all users, as
    `unseen_ranks`. Others: two passes over user chunks; the first reads the pool users' scores,
    the second counts, per item, the eligible users scored strictly higher (`count_higher`'s
    histogram, accumulated over the chunks); one pass when a single chunk holds every user.
    """
    n_users, n_items = history.shape
    if adapter.name in DOT_PRODUCT:
        out = torch.empty(pool.shape, dtype=torch.long)
        for start, stop, block in _item_blocks(adapter, history, max_cells):
            pool_scores = block.gather(1, pool[start:stop].to(block.device))
            out[start:stop] = count_higher(block, pool_scores, cap).cpu()
        return out
    chunks = list(user_chunks(n_users, n_items, max_cells))
    pool_scores = torch.full(pool.shape, -torch.inf)
    kept = None
    for start, stop in chunks:
        columns = _item_columns(adapter, history, start, stop).cpu()
        inside = (pool >= start) & (pool < stop)
        rows, slots = inside.nonzero(as_tuple=True)
        pool_scores[rows, slots] = columns[rows, pool[rows, slots] - start]
        kept = columns if len(chunks) == 1 else None
    ordered, order = pool_scores.sort(dim=1)
    histogram = torch.zeros((n_items, pool.shape[1] + 1), dtype=torch.long)
    for start, stop in chunks:
        columns = kept if kept is not None else _item_columns(adapter, history, start, stop).cpu()
        below = torch.searchsorted(ordered, columns.contiguous())
        histogram.scatter_add_(1, below, torch.ones_like(below))
    at_least = histogram.flip(1).cumsum(dim=1).flip(1)
    counts = torch.empty_like(order).scatter_(1, order, at_least[:, 1:])
    return counts if cap is None else counts.clamp_(max=cap)
