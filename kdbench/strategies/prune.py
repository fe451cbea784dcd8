"""Magnitude pruning of the teacher's embedding tables to the student's size in bytes.

Han et al., "Learning both Weights and Connections for Efficient Neural Networks", NIPS 2015, as
benchmarked for recommenders by Tran et al., "A Thorough Performance Benchmarking on Lightweight
Embedding-based Recommender Systems", TOIS 2025 (chenxing1999/recsys-benchmark, `src/utils.py`
`prune`, `scripts/*/run_mag_prune.py`): each embedding table keeps its largest-magnitude entries,
every table at the same sparsity, one shot after training, no fine-tuning.

Budget: the student's dense float32 size in bytes (4 per parameter). The pruned teacher is stored
as CSR per table (float32 values, int32 column indices, int32 row pointers: `csr_bytes`), other
parameters dense; it keeps as many entries as fit the budget (less than one entry, 8 bytes, below
it). Deviations from the reference: the sparsity follows from the byte budget, not a given ratio;
entries are ranked by |w| (the reference ranks by w^2, the same order); the reference's later
per-row minimum of kept entries (searched on validation) is not used. `prune-ft` additionally
fine-tunes the kept weights with the mask fixed (the pruned entries' gradients are zeroed, so Adam
never moves them), on the student's own loss.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.backbones import model_size_bytes
from kdbench.errors import KdbenchError
from kdbench.strategies._compression import (DeploysCompressedTeacher, annotate, csr_bytes, embedding_weights,
                                             frozen_copy, kept_entries, magnitude_mask, other_bytes)
from kdbench.strategies.base import register_strategy

KERNEL = "CSR item table, torch.sparse.mm"


@torch.no_grad()
def prune_model(model: nn.Module, budget_bytes: int) -> list[torch.Tensor]:
    """Zero all but the largest-magnitude entries of `model`'s embedding tables so that they fit
    `budget_bytes` in CSR; annotate the size; return the masks (one per table)."""
    tables = embedding_weights(model)
    n_other, dense = other_bytes(model, tables)
    keep = kept_entries([tuple(t.shape) for t in tables], budget_bytes, dense)
    masks = [magnitude_mask(weight, k) for weight, k in zip(tables, keep)]
    for weight, mask in zip(tables, masks):
        weight.mul_(mask)
    size = dense + sum(csr_bytes(t.shape[0], k) for t, k in zip(tables, keep))
    annotate(model, sum(keep) + n_other, size, "CSR float32 values + int32 indices", KERNEL)
    return masks


@register_strategy("prune", family="compression",
                   paper="Han et al., NIPS 2015; magnitude pruning as in Tran et al., TOIS 2025 "
                         "(chenxing1999/recsys-benchmark)",
                   backbones=("general",))
class Prune(DeploysCompressedTeacher):
    """The teacher, its embedding tables pruned by magnitude to the student's bytes; 0 epochs.
    See the module docstring."""

    defaults = {"weight": 0.0}
    search_space = {}
    needs_representations = True  # it prunes the teacher's embedding tables

    def prepare(self) -> None:
        budget = model_size_bytes(self.context.student.model)
        model = frozen_copy(self.context.teacher.model, trainable=self.trains)
        try:
            masks = prune_model(model, budget)
        except ValueError as error:
            raise KdbenchError(f"strategy '{self.name}': {error}") from None
        if self.trains:
            for weight, mask in zip(embedding_weights(model), masks):
                weight.register_hook(lambda grad, mask=mask: grad * mask)
        self._deployed = [model]


@register_strategy("prune-ft", family="compression",
                   paper="Han et al., NIPS 2015 (prune, then fine-tune the kept weights with the mask fixed)",
                   backbones=("general",))
class PruneFineTuned(Prune):
    """`prune`, then the kept weights trained on the student's own loss with the mask fixed."""

    trains = True
