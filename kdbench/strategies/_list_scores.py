"""The student's scores on per-row item lists (a batch's users times each user's list of the epoch),
as sparse products instead of gathered embedding rows.

The list-wise strategies (RRD, DCD, RCE-KD, KD, RD, UnKD) score, on every batch, each distinct
user against the M items of its list for the epoch: B x M dot products of dimension d. Gathering
the B x M item rows and multiplying them (BackboneAdapter.score) writes a B x M x d tensor
forward and another backward, and the backward scatters it row by row into the item table: with
CiteULike's 1,700 distinct users and M = 300 that is 10^7 floats moved three times per batch, 10x
the cost of the base loss's whole step. Here a batch's lists are a sparse pattern A_b (B rows of
M entries; a repeated item is two entries), and for dot-product backbones on the CPU

    forward    s = (U_b I^T) sampled at A_b's entries     (torch.sparse.sampled_addmm)
    backward   dL/dU_b = G I                              (torch's CSR product)
               dL/dI = G^T U_b                            (scipy's product by the transpose)

with G the sparse matrix of dL/ds on A_b's pattern: the same values and gradients (up to float
rounding of the sums; repeated entries' gradients add, as autograd's do), and no B x M x d
tensor. Other backbones (and devices) keep BackboneAdapter.score.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.backbones import DOT_PRODUCT, BackboneAdapter


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": sampled_addmm is all that is used
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class _ListScores(torch.autograd.Function):
    """s[b, j] = <row_table[rows[b]], col_table[columns[b, j]]>, differentiable in both tables."""

    @staticmethod
    def forward(ctx, row_table, col_table, rows, columns):
        n_rows, width = columns.shape
        crow = torch.arange(0, n_rows * width + 1, width)
        col = columns.reshape(-1)
        row_vectors = row_table.index_select(0, rows)
        pattern = _csr(crow, col, torch.zeros(len(col), dtype=row_table.dtype), (n_rows, col_table.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = torch.sparse.sampled_addmm(pattern, row_vectors, col_table.t(), beta=0.0).values()
        ctx.save_for_backward(row_table, col_table, rows, crow, col, row_vectors)
        return values.view(n_rows, width)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        row_table, col_table, rows, crow, col, row_vectors = ctx.saved_tensors
        grad = grad.detach().contiguous().view(-1)
        grad_rows = grad_cols = None
        if ctx.needs_input_grad[0]:  # G U: torch's (MKL's) CSR product
            grad_rows = torch.zeros_like(row_table)
            grad_rows.index_add_(0, rows, _csr(crow, col, grad, (len(rows), col_table.shape[0])) @ col_table.detach())
        if ctx.needs_input_grad[1]:  # G^T I: scipy's product by the transpose, which needs no transposed copy
            g = sp.csr_matrix((grad.numpy(), col.to(torch.int32).numpy(), crow.to(torch.int32).numpy()),
                              shape=(len(rows), col_table.shape[0]))
            grad_cols = torch.from_numpy(np.asarray(g.T @ row_vectors.detach().numpy()))
        return grad_rows, grad_cols, None, None


def list_scores(adapter: BackboneAdapter, rows: torch.Tensor, columns: torch.Tensor,
                by_item: bool = False) -> torch.Tensor:
    """Scores (B, M) of users `rows` (B,) for items `columns` (B, M) (by_item: of items `rows` by
    users `columns`); differentiable. The same values as adapter.score(rows, columns)."""
    if adapter.name in DOT_PRODUCT:
        users, items = adapter.representation_tables()
        row_table, col_table = (items, users) if by_item else (users, items)
        if row_table.device.type == "cpu" and row_table.dtype in (torch.float32, torch.float64):
            return _ListScores.apply(row_table, col_table, rows.long(), columns.long())
    if not by_item:
        return adapter.score(rows, columns)
    flat = adapter.score(columns.reshape(-1), rows.repeat_interleave(columns.shape[1]).unsqueeze(1))
    return flat.view(columns.shape)
