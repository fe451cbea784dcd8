"""Inference with compressed embedding tables, as `kdbench cost` times it: the kernels a deployment
of the compression baselines (issue 28) would run, on the tables it would store.

- CSR (`prune`): both tables stored as CSR (float32 values, int32 column indices and row pointers).
  A batch's user rows are gathered from the user CSR into dense rows, the scores are
  `torch.sparse.mm(item_csr, users.T)` (sparse x dense, one pass over the kept item entries), then
  top-K. Sparse kernels read an index per value and cannot use the dense GEMM's blocking, so a
  pruned table is slower per stored weight than a dense one: `cost` measures by how much.
- int8 and 4-bit (`quant`, `ptq`): per-row codes and float32 scales. Scores are
  `torch._int_mm(user_codes, item_codes.T)` (int8 x int8 -> int32, the CPU's integer GEMM), times
  the two rows' scales; 4-bit codes are stored two per byte and unpacked to int8 at every call
  (the unpacking is part of the time, as torch has no 4-bit CPU GEMM).

The tables are those the model scores with (`BackboneAdapter.representation_tables`: for LightGCN
the propagated ones a deployment caches), so a compressed target is named after its model shape
and format (`compressed_name`), e.g. `BPR:64 int8`, `BPR:64 CSR@BPR:5` (pruned to BPR:5's bytes).
"""

from __future__ import annotations

from typing import Callable

import torch

from kdbench.strategies._compression import (csr_bytes, dequantise_rows, kept_entries, magnitude_mask,
                                             pack_codes, quantise_rows, unpack_codes)

CSR, INT8, INT4 = "CSR", "int8", "int4"


def is_compressed_shape(model: str) -> bool:
    """Whether a run record's model names a compressed format (`compressed_name`), not a dense shape."""
    return any(part.split("@")[0] in (CSR, INT8, INT4) for part in str(model).split()[1:])


def compressed_name(spec: str, kind: str, budget_spec: str | None = None) -> str:
    """The cost files' and the run records' name of a compressed shape: `BPR:64 int8`,
    `BPR:64 CSR@BPR:5` (pruned to the dense size of BPR:5)."""
    return f"{spec} {kind}" + (f"@{budget_spec}" if budget_spec else "")


def _csr(table: torch.Tensor, keep: int) -> torch.Tensor:
    kept = table * magnitude_mask(table, keep)
    csr = kept.to_sparse_csr()
    return torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32),
                                   csr.values(), csr.shape)


class CSRScorer:
    """Top-K from CSR user and item tables, pruned by magnitude to `budget_bytes` in all."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, budget_bytes: int, k: int):
        keep = kept_entries([tuple(users.shape), tuple(items.shape)], budget_bytes)
        self.users, self.items = _csr(users, keep[0]), _csr(items, keep[1])
        self.dim, self.k = users.shape[1], k
        self.size_bytes = csr_bytes(users.shape[0], keep[0]) + csr_bytes(items.shape[0], keep[1])

    def user_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dense rows of the user CSR: each user's stored (column, value) pairs scattered."""
        crow = self.users.crow_indices().to(torch.int64)
        starts, lengths = crow[ids], crow[ids + 1] - crow[ids]
        rows = torch.repeat_interleave(torch.arange(len(ids)), lengths)
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        positions = torch.repeat_interleave(starts, lengths) + offsets
        dense = torch.zeros(len(ids), self.dim)
        dense[rows, self.users.col_indices()[positions].to(torch.int64)] = self.users.values()[positions]
        return dense

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        scores = torch.sparse.mm(self.items, self.user_rows(ids).T).T
        return torch.topk(scores, self.k, dim=1).indices


class IntScorer:
    """Top-K from per-row quantised tables, scored with the integer GEMM (`torch._int_mm`)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, bits: int, k: int):
        self.bits, self.k, self.dim = bits, k, users.shape[1]
        user_codes, self.user_scales = quantise_rows(users, bits)
        item_codes, self.item_scales = quantise_rows(items, bits)
        self.user_packed, self.item_packed = pack_codes(user_codes, bits), pack_codes(item_codes.contiguous(), bits)
        self.item_codes_t = item_codes.T.contiguous() if bits == 8 else None
        self.size_bytes = sum(t.numel() for t in (self.user_packed, self.item_packed)) + 4 * (
            len(self.user_scales) + len(self.item_scales))

    def item_codes(self) -> torch.Tensor:
        return self.item_codes_t if self.item_codes_t is not None else \
            unpack_codes(self.item_packed, self.bits, self.dim).T.contiguous()

    def user_codes(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.user_packed[ids]
        return rows.view(torch.int8) if self.bits == 8 else unpack_codes(rows, self.bits, self.dim)

    @torch.no_grad()
    def scores(self, ids: torch.Tensor) -> torch.Tensor:
        products = torch._int_mm(self.user_codes(ids), self.item_codes()).float()
        return products * self.user_scales[ids].unsqueeze(1) * self.item_scales.unsqueeze(0)

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.topk(self.scores(ids), self.k, dim=1).indices


def dequantised_scores(users: torch.Tensor, items: torch.Tensor, bits: int) -> torch.Tensor:
    """What `IntScorer` scores, computed in float32 (the runs' dequantised scoring): for tests."""
    return dequantise_rows(*quantise_rows(users, bits)) @ dequantise_rows(*quantise_rows(items, bits)).T


def compressed_scorer(kind: str, users: torch.Tensor, items: torch.Tensor, k: int,
                      budget_bytes: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The scorer of `kind` (CSR, int8, int4) over the score tables `users`, `items`."""
    if kind == CSR:
        return CSRScorer(users, items, int(budget_bytes), k)
    return IntScorer(users, items, 8 if kind == INT8 else 4, k)


def cell_targets(cell) -> list[tuple[str, str, str | None]]:
    """The compressed shapes a cell deploys, (spec, kind, budget spec): `prune`/`prune-ft` the
    teacher in CSR at the student's bytes, `quant` the teacher in int8/int4, `ptq` (alone or as a
    composite's part) the student in int8/int4; [] for any other cell."""
    from kdbench.strategies import STRATEGIES
    from kdbench.strategies.prune import Prune
    from kdbench.strategies.quant import PostTrainingQuant, Quant

    if cell.is_teacher:
        return []
    parts = cell.strategy.split("+")
    hparams = STRATEGIES.get(cell.strategy).resolve_hparams(dict(cell.hparams))
    found = []
    for part in parts:
        kind, prefix = STRATEGIES.get(part), f"{part}." if len(parts) > 1 else ""
        if issubclass(kind, Prune):
            found.append((str(cell.teacher), CSR, str(cell.student)))
        elif issubclass(kind, (Quant, PostTrainingQuant)):
            spec = cell.teacher if issubclass(kind, Quant) else cell.student
            found.append((str(spec), f"int{hparams[prefix + 'bits']}", None))
    return found
