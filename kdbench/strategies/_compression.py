"""The maths of the compression baselines: truncated SVD of a factorised score matrix, magnitude
pruning to a byte budget in CSR, per-row symmetric quantisation, and the bytes of each format.

Every function is pure (tensors in, tensors out); the strategies (`svd.py`, `prune.py`,
`quant.py`) apply them to a model's embedding tables.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from kdbench.backbones import DEPLOYED, reset_inference_cache
from kdbench.strategies.base import DistillationStrategy

FLOAT32_BYTES, INDEX_BYTES = 4, 4  # CSR: float32 values, int32 column indices and row pointers


# -- SVD --------------------------------------------------------------------------------------------
@torch.no_grad()
def truncated_factors(users: torch.Tensor, items: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q), P (n_u x rank), Q (n_i x rank), with P Q^T the best rank-`rank` approximation (in
    Frobenius and spectral norm, Eckart-Young) of S = U I^T, U (n_u x D), I (n_i x D).

    Never forms S: U = Q_u R_u and I = Q_i R_i (thin QR), so S = Q_u (R_u R_i^T) Q_i^T and the
    singular triplets of S are those of the D x D core M = R_u R_i^T = A diag(s) B^T carried by Q_u,
    Q_i. P = Q_u A_r diag(sqrt(s_r)), Q = Q_i B_r diag(sqrt(s_r)) splits each singular value between
    the two sides. Computed in float64; returned as float32. A rank above D is padded with zero
    columns (the product is then S exactly)."""
    q_u, r_u = torch.linalg.qr(users.double())
    q_i, r_i = torch.linalg.qr(items.double())
    left, values, right_t = torch.linalg.svd(r_u @ r_i.T)
    kept = min(rank, values.numel())
    root = values[:kept].sqrt()
    p = q_u @ (left[:, :kept] * root)
    q = q_i @ (right_t[:kept].T * root)
    if rank > kept:
        p = torch.cat([p, p.new_zeros(p.shape[0], rank - kept)], dim=1)
        q = torch.cat([q, q.new_zeros(q.shape[0], rank - kept)], dim=1)
    return p.float(), q.float()


# -- pruning ----------------------------------------------------------------------------------------
def csr_bytes(rows: int, nnz: int) -> int:
    """Bytes of a rows x cols CSR matrix: nnz float32 values + nnz int32 column indices + (rows + 1)
    int32 row pointers."""
    return nnz * (FLOAT32_BYTES + INDEX_BYTES) + (rows + 1) * INDEX_BYTES


def kept_entries(shapes: list[tuple[int, int]], budget_bytes: int, dense_bytes: int = 0) -> list[int]:
    """How many entries each table keeps so that all tables in CSR (plus `dense_bytes` of other,
    unpruned parameters) fill `budget_bytes` as far as whole entries allow: the largest total nnz
    with total bytes <= budget (so less than one entry, 8 bytes, below it), shared between the tables
    in proportion to their sizes (the same sparsity everywhere, chenxing1999/recsys-benchmark's
    per-table magnitude pruning), the remainder going to the largest tables first."""
    fixed = dense_bytes + sum(csr_bytes(rows, 0) for rows, _ in shapes)
    total = min((budget_bytes - fixed) // (FLOAT32_BYTES + INDEX_BYTES), sum(r * c for r, c in shapes))
    if total < 1:
        raise ValueError(f"a budget of {budget_bytes} bytes cannot hold the CSR row pointers ({fixed} bytes) "
                         "and one kept weight")
    sizes = [rows * cols for rows, cols in shapes]
    keep = [total * size // sum(sizes) for size in sizes]
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if sum(keep) == total:
            break
        keep[index] += min(total - sum(keep), sizes[index] - keep[index])
    return keep


def magnitude_mask(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """A boolean mask of `weight`'s `keep` largest-magnitude entries (ties broken by topk)."""
    mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    if keep > 0:
        mask[weight.detach().abs().flatten().topk(keep).indices] = True
    return mask.view_as(weight)


# -- quantisation -----------------------------------------------------------------------------------
def code_limit(bits: int) -> int:
    """The largest code of symmetric signed `bits`-bit quantisation: 2^(b-1) - 1 (127 for int8, 7
    for 4 bits; -2^(b-1) is left unused so that the range is symmetric)."""
    return 2 ** (bits - 1) - 1


@torch.no_grad()
def quantise_rows(table: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8, scales float32 (rows,)): per row, scale = max|row| / (2^(b-1) - 1) and
    code = round(x / scale), so |x - code * scale| <= scale / 2. An all-zero row gets scale 0 and
    codes 0 (dequantised exactly)."""
    limit = code_limit(bits)
    scales = table.detach().float().abs().amax(dim=1) / limit
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(table.detach().float() / safe.unsqueeze(1)).clamp_(-limit, limit).to(torch.int8)
    return codes, scales


def dequantise_rows(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """codes * scale, row by row (float32)."""
    return codes.float() * scales.unsqueeze(1)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """The codes as the bytes a deployment stores: int8 as is; 4-bit codes two per byte (offset by
    8 into 0..15, low nibble first, a row of odd length padded with one nibble)."""
    if bits == 8:
        return codes.view(torch.uint8)
    if bits != 4:
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    nibbles = (codes.to(torch.int16) + 8).to(torch.uint8)
    if nibbles.shape[1] % 2:
        nibbles = torch.cat([nibbles, nibbles.new_full((nibbles.shape[0], 1), 8)], dim=1)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def unpack_codes(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """The int8 codes `pack_codes` packed (`cols` per row)."""
    if bits == 8:
        return packed.view(torch.int8)
    low, high = (packed & 0x0F).to(torch.int16) - 8, (packed >> 4).to(torch.int16) - 8
    return torch.stack([low, high], dim=2).flatten(1)[:, :cols].to(torch.int8)


def quantised_bytes(rows: int, cols: int, bits: int) -> int:
    """Bytes of a rows x cols table quantised per row: ceil(cols * bits / 8) bytes of packed codes
    and one float32 scale per row."""
    return rows * (math.ceil(cols * bits / 8) + FLOAT32_BYTES)


# -- on a model -------------------------------------------------------------------------------------
def embedding_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the model's embedding tables (the tables compression acts on)."""
    return [module.weight for module in model.modules() if isinstance(module, nn.Embedding)]


def other_bytes(model: nn.Module, tables: list[nn.Parameter]) -> tuple[int, int]:
    """(parameters, bytes) of what is not an embedding table (MLP weights, buffers): kept dense."""
    kept = {id(t) for t in tables}
    others = [p for p in model.parameters() if id(p) not in kept]
    tensors = others + list(model.buffers())
    return sum(p.numel() for p in others), sum(t.numel() * t.element_size() for t in tensors)


def frozen_copy(model: nn.Module, trainable: bool = False) -> nn.Module:
    """A private copy of `model` (the shared frozen teacher is never written), gradients on if
    `trainable`, without any full-sort cache (LightGCN's restore_user_e). Sparse tensors the model
    holds as plain attributes (LightGCN's CSR adjacency, which `copy.deepcopy` cannot copy: a CSR
    tensor has no storage) are constants of the graph, shared by the copy, never written."""
    shared = {id(value): value for module in model.modules() for value in vars(module).values()
              if isinstance(value, torch.Tensor) and value.layout != torch.strided}
    copied = copy.deepcopy(model, memo=shared)
    reset_inference_cache(copied)
    for parameter in copied.parameters():
        parameter.requires_grad_(trainable)
    return copied.train(trainable)


def annotate(model: nn.Module, params: int, size_bytes: int, fmt: str, kernel: str) -> nn.Module:
    """Record the deployed format's size on the model (`backbones.DEPLOYED`)."""
    setattr(model, DEPLOYED, {"params": int(params), "size_bytes": int(size_bytes), "format": fmt, "kernel": kernel})
    return model


@torch.no_grad()
def quantise_model(model: nn.Module, bits: int) -> nn.Module:
    """Replace each embedding table of `model` by its per-row `bits`-bit quantisation, dequantised
    (scores are then those of the deployed integer codes), and annotate the packed size."""
    tables = embedding_weights(model)
    n_other, size = other_bytes(model, tables)
    for weight in tables:
        codes, scales = quantise_rows(weight, bits)
        weight.copy_(dequantise_rows(codes, scales))
        size += quantised_bytes(*weight.shape, bits)
    return annotate(model, sum(t.numel() for t in tables) + n_other, size, f"int{bits} per-row",
                    "int8 codes, torch._int_mm" if bits == 8 else "4-bit codes unpacked to int8, torch._int_mm")


class DeploysCompressedTeacher(DistillationStrategy):
    """Base of the strategies that deploy a compressed copy of the teacher in the student's place
    (`prune`, `quant`): no distillation loss, 0 epochs unless a subclass fine-tunes the copy.
    `prepare` puts the copy in `_deployed`, a list so that it is no submodule of the strategy."""

    trains = False
    replaces_student = True

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        self._deployed: list[nn.Module] = []

    def model_to_train(self, student: nn.Module) -> nn.Module:
        return self._deployed[0]

    def loss(self, batch) -> None:
        return None
