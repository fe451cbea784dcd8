"""DLLM2Rec: importance-aware ranking distillation plus collaborative embedding distillation.

Cui et al., "Distillation Matters: Empowering Sequential Recommenders to Match the Performance of
Large Language Models", RecSys 2024; reference code
istarryn/DLLM2Rec (`main.py`). The teacher (an LLM recommender there) is read as its per-query
top-K lists, their confidences and its item embeddings: a teacher file (`kdbench.training.teacher_file`)
or any kdbench teacher, read through the same knowledge functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import KdbenchError
from kdbench.search_space import IntRange, LogUniform, Uniform
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies._sampling import ItemExclusions, sample_allowed
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import scores_of_lists, scoring_mode, teacher_top_n, top_n_of_users

COMMON_FLOOR = 1e-8  # the reference's weight of a teacher item outside the student's top-K


def importance_weights(teacher_scores: torch.Tensor, in_student_top: torch.Tensor, gamma_position: float,
                       gamma_confidence: float, gamma_consistency: float, rank_temp: float) -> torch.Tensor:
    """w (B, K): the normalised mix of the three importance weights of the teacher's list.

    position    w_p,k = exp(-k / lambda) / sum_j exp(-j / lambda), k = 1..K (rank in the teacher's list)
    confidence  w_c,k = softmax_k(t_k), t the teacher's scores (the reference's exp(-d_k) normalised,
                with d the LLM's distance to the generated item: t = -d)
    consistency w_s,k = 1 if the item is in the student's current top-K, else 1e-8 (not normalised)
    w = g_p w_p + g_c w_c + g_s w_s, then divided by its row sum.
    """
    k = teacher_scores.shape[1]
    position = torch.softmax(-torch.arange(1, k + 1, dtype=teacher_scores.dtype, device=teacher_scores.device)
                             / rank_temp, dim=0).expand_as(teacher_scores)
    confidence = torch.softmax(teacher_scores, dim=1)
    consistency = in_student_top.to(teacher_scores.dtype) + COMMON_FLOOR
    mixed = gamma_position * position + gamma_confidence * confidence + gamma_consistency * consistency
    return mixed / mixed.sum(dim=1, keepdim=True)


def ranking_loss(candidate_scores: torch.Tensor, negative_scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_rank = mean_b sum_k w_bk [-log sigma(s_b,c_k) - log sigma(-s_b,neg_b)]: (B, K), (B,), (B, K) -> ()."""
    per_item = F.softplus(-candidate_scores) + F.softplus(negative_scores).unsqueeze(1)
    return (weights * per_item).sum(dim=1).mean()


def embedding_loss(student_items: torch.Tensor, projected_teacher: torch.Tensor) -> torch.Tensor:
    """L_ed = mean over items of ||e_s,i - P z_t,i||^2: (N, d), (N, d) -> ()."""
    return (student_items - projected_teacher).pow(2).sum(dim=1).mean()


@register_strategy(
    "dllm2rec", family="ranking",
    paper="Cui et al., Distillation Matters: Empowering Sequential Recommenders to Match the Performance "
          "of Large Language Models (DLLM2Rec), RecSys 2024",
    backbones=("general", "sequential"), file_teacher="K",
)
class DLLM2Rec(DistillationStrategy):
    """L = L_rank + ed_weight * L_ed; the trainer adds weight * L to the student's base loss.

    Importance-aware ranking distillation (`importance_weights`, `ranking_loss`): each batch row's
    teacher top-K items are positives of a binary cross-entropy against one negative drawn for the
    row (uniformly among the items outside its history), weighted by the mix of rank position,
    teacher confidence and teacher-student consistency (the student's current top-K over the
    catalogue, scored for the batch's rows without gradients). Collaborative embedding
    distillation (`embedding_loss`): the student's item embeddings of the batch's items (its own
    and the candidates) regress a trainable linear map P of the teacher's item embeddings.

    Defaults (reference `main.py` arguments): K = candidate_topk = 10, weight = lam = 0.8,
    gamma_position 0.3, gamma_confidence 0.5, gamma_consistency 0.1, lambda (rank_temp) = 1,
    ed_weight 0.2. Loss scale: the reference adds lam * sum_k mean_b(w_bk BCE_bk) to a base loss that
    is a batch mean, as kdbench's is, and L_rank is that same sum of means, so lam carries over as
    the weight unchanged. ed_weight = 0 turns the embedding term off (needed for a teacher without
    item embeddings: a file exported with --no-embeddings, or a model without representations).

    Deviations from the reference:
    - Collaborative embedding distillation there adds ed_weight * Linear(z_i) to the student's
      input item embeddings, in training and at inference, so the deployed student keeps the LLM's
      4096-d table and the projection. kdbench deploys the student alone, so the same signal is
      distilled instead: the student's item embeddings regress P z_i (P training-only).
    - The negative's BCE term is -log(1 - sigma(s_neg)); the reference writes log(sigmoid(1 - s_neg)).
    - The reference's DROS term (a robust base loss of its backbones, weight alpha) is not part of
      the distillation and is left out; the student keeps kdbench's base loss.
    - The negative is drawn outside the row's history (the reference also excludes the target).
    - The student's top-K for the consistency weight is scored in eval mode (no dropout); the
      reference takes it from the training forward pass.
    - The confidence weight is a softmax of the teacher's scores (higher = better); the reference's
      confidence file holds BIGRec's distances (lower = better), whose exp(-d) is the same softmax.
    """

    defaults = {"weight": 0.8, "K": 10, "gamma_position": 0.3, "gamma_confidence": 0.5,
                "gamma_consistency": 0.1, "rank_temp": 1.0, "ed_weight": 0.2}
    search_space = {"weight": LogUniform(0.05, 5.0), "K": IntRange(5, 50, log=True),
                    "gamma_position": Uniform(0.0, 1.0), "gamma_confidence": Uniform(0.0, 1.0),
                    "gamma_consistency": Uniform(0.0, 1.0), "ed_weight": LogUniform(0.01, 1.0)}
    must_be_positive = ("K", "rank_temp")

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        h = self.hparams
        if h["gamma_position"] + h["gamma_confidence"] + h["gamma_consistency"] <= 0:
            raise KdbenchError(f"strategy '{self.name}': the three gamma weights must not all be 0")
        self.candidates: torch.Tensor | None = None  # (n_users, K) the teacher's top-K
        self.teacher_scores: torch.Tensor | None = None  # (n_users, K)
        self.teacher_items: torch.Tensor | None = None  # (n_items, d_t) or None
        self.projector: nn.Module | None = None
        self._excluded: ItemExclusions | None = None
        self._generator: torch.Generator | None = None
        if h["ed_weight"] > 0:
            self.teacher_items = self._teacher_item_embeddings()
            student_dim = context.student.representation_dims()[1]
            self.projector = nn.Linear(self.teacher_items.shape[1], student_dim)

    def _teacher_item_embeddings(self) -> torch.Tensor:
        """The teacher's item embeddings (a file's, or the model's item representations), frozen."""
        ctx = self.context
        ctx.student.require_representations(self.name)
        reader = getattr(ctx.teacher, "item_embeddings", None)
        if reader is not None:
            items = reader()
        else:
            items = ctx.teacher.representation_tables()[1] if ctx.teacher.has_representations else None
        if items is None:
            raise KdbenchError(f"strategy '{self.name}' with ed_weight > 0 needs the teacher's item embeddings, "
                               "which this teacher lacks: pass --hp ed_weight=0")
        return items.detach().float().clone().to(ctx.device)

    def prepare(self) -> None:
        ctx = self.context
        candidates = teacher_top_n(ctx.teacher, ctx.history, self.hparams["K"])
        self.teacher_scores = scores_of_lists(ctx.teacher, candidates).to(ctx.device)
        self.candidates = candidates.to(ctx.device)
        self._excluded = ItemExclusions(ctx.history)
        self._generator = ctx.generator()

    def student_top(self, users: torch.Tensor) -> torch.Tensor:
        """(B, K) the student's current top-K items of the rows `users` over every real item, scored in
        eval mode without gradients (`knowledge.scoring_mode`)."""
        with scoring_mode(self.context.student) as student:
            return top_n_of_users(student, users, self.hparams["K"])

    def loss(self, batch) -> torch.Tensor:
        if self.candidates is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before loss()")
        h, student = self.hparams, self.context.student
        users = self.batch_users(batch)
        candidates = self.candidates[users]
        negatives = sample_allowed(self._excluded, users, 1, self._generator).to(candidates.device)
        scores = list_scores(student, users, torch.cat([candidates, negatives], dim=1))
        distinct, row_of = torch.unique(users, return_inverse=True)  # a user's top-K once per batch
        in_top = (candidates.unsqueeze(2) == self.student_top(distinct)[row_of].unsqueeze(1)).any(dim=2)
        weights = importance_weights(self.teacher_scores[users], in_top, h["gamma_position"],
                                     h["gamma_confidence"], h["gamma_consistency"], h["rank_temp"])
        total = ranking_loss(scores[:, :-1], scores[:, -1], weights)
        if self.projector is not None:
            items = torch.unique(torch.cat([self.batch_items(batch), candidates.reshape(-1)]))
            student_items = student.representation_tables()[1][items]
            total = total + h["ed_weight"] * embedding_loss(student_items, self.projector(self.teacher_items[items]))
        return total
