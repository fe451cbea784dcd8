"""KD over the full catalogue: Hinton-style softmax distillation on every item's score.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS DL Workshop 2015, in
the form sequential-recommender distillation uses (the teacher's next-item distribution over the
whole catalogue, softened with a temperature): per query q (a batch row's user or prediction point)

    L_KD = mean over batch rows of CE(softmax(t_q / tau), softmax(s_q / tau)) = -sum_i p_t,q,i log p_s,q,i

with t_q, s_q the teacher's and student's scores of every real item (RecBole's padding item 0 left
out). The teacher is scored on the batch's queries at every step (frozen, no gradient): nothing is
stored per query, so memory is O(batch x items) whatever the number of queries. Each distinct
query of a batch is scored once and weighted by its number of rows (`kd.kd_loss`'s counts).
Defaults: tau=1, weight=1 (the CE is on the same scale as the students' own full-catalogue
cross-entropy loss, RecBole's `loss_type: CE`).
"""

from __future__ import annotations

import torch

from kdbench.search_space import LogUniform
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.kd import kd_loss


@register_strategy("kd-full", family="response",
                   paper="Hinton et al., Distilling the Knowledge in a Neural Network, 2015 (full catalogue)",
                   backbones=("sequential",))
class FullCatalogueKD(DistillationStrategy):
    """Softmax KD over every item for the batch's queries; see the module docstring."""

    defaults = {"weight": 1.0, "tau": 1.0}
    search_space = {"weight": LogUniform(1e-2, 1e2), "tau": LogUniform(0.1, 20.0)}
    must_be_positive = ("tau",)

    def loss(self, batch) -> torch.Tensor:
        queries, counts = torch.unique(self.batch_users(batch), return_counts=True)
        with torch.no_grad():
            teacher_logits = self.context.teacher.full_scores(queries)[:, 1:].float()
        student_logits = self.context.student.full_scores(queries)[:, 1:]
        return kd_loss(student_logits, teacher_logits, self.hparams["tau"], counts)
