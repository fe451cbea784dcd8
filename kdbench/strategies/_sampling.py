"""Uniform sampling of items outside per-user exclusion sets, without a users x items matrix.

Used by the ranking strategies: RRD's uninteresting items (distinct; outside the user's training
items and the teacher's top list) and RD's items for estimating the student's rank (outside the
training items, with replacement). An exclusion set is the sorted array of keys
`user * n_items + item` (memory O(excluded pairs)); membership is a binary search. Sampling is
rejection: draw uniformly from the catalogue, drop excluded items (and repeats, when `distinct`),
keep the first `n` survivors in draw order; a row short of `n` is redrawn with twice the draws.
The first `n` survivors of i.i.d. uniform draws are exactly a uniform sample of the allowed set
(without replacement when repeats are dropped), and redrawing a short row does not bias it: the
event "enough survivors" is symmetric in the allowed items.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.strategies.knowledge import MAX_CELLS


class ItemExclusions:
    """Each user's excluded items: training interactions plus, optionally, a list per user."""

    def __init__(self, history: sp.csr_matrix, extra: torch.Tensor | None = None):
        """extra: (n_users, P) further item ids per user (e.g. the teacher's top list), or None."""
        coo = history.tocoo()
        self.n_users, self.n_items = history.shape
        keys = [coo.row.astype(np.int64) * self.n_items + coo.col.astype(np.int64)]
        if extra is not None:
            rows = np.repeat(np.arange(self.n_users, dtype=np.int64), extra.shape[1])
            keys.append(rows * self.n_items + extra.reshape(-1).cpu().numpy().astype(np.int64))
        merged = np.unique(np.concatenate(keys))  # sorted, repeats dropped
        self.keys = torch.from_numpy(merged)
        self.counts = np.bincount(merged // self.n_items, minlength=self.n_users)

    def allowed_counts(self) -> np.ndarray:
        """Per user, how many real items (padding item 0 aside) are not excluded."""
        return (self.n_items - 1) - self.counts

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (N,), items (N, M) -> bool (N, M): whether each item is excluded for its user."""
        if self.keys.numel() == 0:
            return torch.zeros(items.shape, dtype=torch.bool)
        query = users.unsqueeze(1) * self.n_items + items
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == query


def first_occurrences(values: torch.Tensor) -> torch.Tensor:
    """values (N, M) -> bool (N, M): True where a value appears for the first time in its row."""
    ordered, order = values.sort(dim=1, stable=True)  # equal values keep draw order
    first_sorted = torch.ones_like(ordered, dtype=torch.bool)
    first_sorted[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return torch.empty_like(first_sorted).scatter_(1, order, first_sorted)


def sample_allowed(
    excluded: ItemExclusions,
    users: torch.Tensor,
    n: int,
    generator: torch.Generator,
    distinct: bool = False,
    max_cells: int = MAX_CELLS,
) -> torch.Tensor:
    """(N, n) long, CPU: n items per user drawn uniformly from the items not excluded for the user.

    distinct: without replacement. Item 0 (RecBole's padding) is never drawn. Raises ValueError
    when a user has too few allowed items (callers check this with a clearer message first).
    """
    users = users.cpu()
    out = torch.empty((len(users), n), dtype=torch.long)
    if n == 0 or len(users) == 0:
        return out
    allowed = excluded.allowed_counts()[users.numpy()]
    if allowed.min() < (n if distinct else 1):
        raise ValueError(f"a user has only {allowed.min()} allowed items to draw {n} from")
    # Enough draws for n survivors at most users' acceptance rate (the 10% scarcest set it);
    # the rows left short are redrawn, few and wider each time.
    draws = int(math.ceil(1.2 * n * (excluded.n_items - 1) / np.quantile(allowed, 0.1))) + 16
    rows = max(1, max_cells // (4 * draws))
    for start in range(0, len(users), rows):
        pending = torch.arange(start, min(start + rows, len(users)))
        width = draws
        while len(pending):
            candidates = torch.randint(1, excluded.n_items, (len(pending), width), generator=generator)
            keep = ~excluded.contains(users[pending], candidates)
            if distinct:
                keep &= first_occurrences(candidates)
            taken = keep.cumsum(dim=1)
            done = taken[:, -1] >= n
            out[pending[done]] = candidates[done][keep[done] & (taken[done] <= n)].view(-1, n)
            pending = pending[~done]  # rare: short rows are redrawn with twice the draws
            width *= 2
    return out


def race_without_replacement(
    log_weights: torch.Tensor, k: int, generator: torch.Generator, max_cells: int = MAX_CELLS
) -> torch.Tensor:
    """(R, k) long, CPU: k distinct column indices per row of `log_weights` (R, P), drawn without
    replacement with probabilities proportional to exp(log_weights), in draw order.

    The exponential race (Efraimidis & Spirakis): the k largest keys log w_p - log E_p, E_p ~ Exp(1),
    taken in decreasing key order, are distributed as k successive draws without replacement
    (the same distribution torch.multinomial(w, k, replacement=False) samples from). Working in
    log space, weights need not be normalised and a tiny weight cannot underflow to 0. Columns with
    log weight -inf are never drawn while a row has k columns of finite weight.
    """
    log_weights = log_weights.detach().cpu().float()
    n_rows, width = log_weights.shape
    out = torch.empty((n_rows, k), dtype=torch.long)
    rows = max(1, max_cells // max(width, 1))
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        keys = torch.rand((stop - start, width), generator=generator).log_().neg_().log_()  # log E
        keys.neg_().add_(log_weights[start:stop])
        out[start:stop] = keys.topk(k, dim=1, sorted=True).indices
    return out


def truncated_rank_draws(
    cdf: torch.Tensor, limits: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """(R, *shape) long: i.i.d. 0-based ranks per row r, drawn with the unnormalised cumulative
    weights `cdf` (P,) (float64) truncated to the row's first `limits[r]` ranks (inverse CDF)."""
    limits = limits.clamp(min=1, max=len(cdf)).long()
    mass = cdf[limits - 1].view(-1, *([1] * len(shape)))
    uniform = torch.rand((len(limits), *shape), generator=generator, dtype=torch.float64)
    ranks = torch.searchsorted(cdf, (uniform * mass).reshape(len(limits), -1), right=True).view_as(uniform)
    return torch.minimum(ranks, (limits - 1).view(-1, *([1] * len(shape))))  # round-off at the top edge
