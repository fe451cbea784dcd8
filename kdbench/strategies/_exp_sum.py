"""The partition sum of a softmax over a user's unobserved items, without the (users x items) score table.

    Z_u = sum_{i unobserved by u, i != 0} exp(clamp(<p_u, q_i>, -c, c))

for a dot-product student (scores p_u . q_i), as HetComp's losses need it (hetcomp.py). Autograd
over the dense form keeps several (B, n_items) tables per batch (scores, clamp, exp, mask, and their
gradients): on CiteULike-t's 25,181 items that is memory traffic, not arithmetic. Here the scores are
formed block by block of users, reduced at once, and formed again in the backward pass:

    dZ_u / dp_u = sum_i w_ui q_i,   dZ_u / dq_i = w_ui p_u,   w_ui = exp(s_ui) [unobserved] [|s_ui| <= c]

(the clamp passes no gradient outside [-c, c], as torch.clamp's), so every (block, n_items) table
stays in cache; the cost is one more score matmul, the cheap part.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

BLOCK = 128  # users per block: a (BLOCK, n_items) float table, 13 MB on CiteULike-t


def _masked_exp(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, clamp: float) -> torch.Tensor:
    """exp(clamp(scores)) with the padding item and the observed (rows, cols) entries set to 0, in place."""
    weights = scores.clamp_(-clamp, clamp).exp_()
    weights[:, 0] = 0
    weights[rows, cols] = 0
    return weights


class UnobservedExpSum(torch.autograd.Function):
    """Z (B,) from user representations (B, d), item representations (N, d) and each user's observed
    items as CSR rows (indptr (B + 1,), indices): see the module docstring."""

    @staticmethod
    def forward(ctx, users, items, indptr, indices, clamp):  # noqa: D102 (see the class docstring)
        ctx.save_for_backward(users, items, indptr, indices)
        ctx.clamp = clamp
        total = users.new_empty(len(users))
        for block, rows, cols in _blocks(indptr, indices, len(users)):
            total[block] = _masked_exp(users[block] @ items.T, rows, cols, clamp).sum(1)
        return total

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        users, items, indptr, indices = ctx.saved_tensors
        grad_users, grad_items = torch.zeros_like(users), torch.zeros_like(items)
        for block, rows, cols in _blocks(indptr, indices, len(users)):
            scores = users[block] @ items.T
            inside = (scores >= -ctx.clamp) & (scores <= ctx.clamp)
            weights = _masked_exp(scores, rows, cols, ctx.clamp).mul_(inside).mul_(grad[block].unsqueeze(1))
            grad_users[block] = weights @ items
            grad_items.addmm_(weights.T, users[block])
        return grad_users, grad_items, None, None, None


def _blocks(indptr: torch.Tensor, indices: torch.Tensor, n: int):
    """(the block's rows as a slice, block-local row ids, item ids) of the observed entries, block by block."""
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        lo, hi = int(indptr[start]), int(indptr[stop])
        counts = indptr[start + 1: stop + 1] - indptr[start:stop]
        rows = torch.repeat_interleave(torch.arange(stop - start, device=indices.device), counts)
        yield slice(start, stop), rows, indices[lo:hi]


def unobserved_exp_sum(users: torch.Tensor, items: torch.Tensor, history: sp.csr_matrix, user_ids: np.ndarray,
                       clamp: float) -> torch.Tensor:
    """Z_u for the users `user_ids` (rows of `history`, users x items) with representations `users`
    (B, d), items (N, d): (B,), differentiable in both."""
    observed = history[user_ids]
    observed.eliminate_zeros()  # as `toarray() == 0`: a stored zero is unobserved
    indptr = torch.from_numpy(observed.indptr.astype(np.int64)).to(users.device)
    indices = torch.from_numpy(observed.indices.astype(np.int64)).to(users.device)
    return UnobservedExpSum.apply(users, items, indptr, indices, clamp)
