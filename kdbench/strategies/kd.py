"""KD: Hinton-style knowledge distillation, softmax cross-entropy over a per-user candidate set.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS DL Workshop 2015,
as applied to top-K recommendation by woriazzc/KDs (`modeling/KD/cf/baseline.py`, class `KD`).
"""

from __future__ import annotations

import scipy.sparse as sp
import torch

from kdbench.backbones import BackboneAdapter, reset_inference_cache
from kdbench.search_space import IntRange, LogUniform
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import scores_of_lists, teacher_top_n


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float,
            counts: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of CE(softmax(t / tau), softmax(s / tau)) = -sum_j p_t,j log p_s,j; (R, K) -> ().

    `counts` (R,) weights each row as that many identical batch rows (a batch's distinct users).
    """
    soft_labels = torch.softmax(teacher_logits / tau, dim=-1)
    log_probs = torch.log_softmax(student_logits / tau, dim=-1)
    per_row = -(soft_labels * log_probs).sum(dim=-1)
    if counts is None:
        return per_row.mean()
    return (per_row * counts).sum() / counts.sum()


@torch.no_grad()
def student_top_k(student: BackboneAdapter, n_users: int, n_items: int, k: int) -> torch.Tensor:
    """Each user's top-k items by the student's current scores, over every real item: (n_users, k).

    Training items stay eligible (as in woriazzc/KDs); only RecBole's padding item 0 is excluded.
    The student is scored in eval mode, and any full-sort cache it builds is dropped afterwards.
    """
    model = student.model
    was_training = model.training
    model.eval()
    try:
        nothing_seen = sp.csr_matrix((n_users, n_items), dtype="float32")
        return teacher_top_n(student, nothing_seen, k)
    finally:
        reset_inference_cache(model)
        model.train(was_training)


@register_strategy("kd", family="response", paper="Hinton et al., Distilling the Knowledge in a Neural Network, 2015",
                   backbones=("general", "sequential"))
class KD(DistillationStrategy):
    """L_KD = mean over batch rows of CE(softmax(t_u,C / tau), softmax(s_u,C / tau)).

    C is the user's candidate set: the student's current top-K items, re-picked for all users at
    the start of every epoch (woriazzc/KDs `kd_guide: student`); the teacher's logits on them are
    computed once per epoch (frozen teacher, no forward pass per batch). A batch row's loss
    depends only on its user, so each distinct user of the batch is scored once and weighted by
    its number of rows: the same value as the row mean, with fewer student scores. Works for any
    backbone: only `score` / `full_scores` are used.

    Defaults (woriazzc/KDs `configs/citeulike/bpr/kd.yaml`): K=50, tau=1, weight=1. Their LightGCN
    setting is tau=10, weight=5.

    Loss scale: KDs sums the CE over the batch rows (`reduction='sum'`) and its BPR base loss also
    sums over the rows (`-logsigmoid(pos - neg).mean(1).sum()`); kdbench's base loss (RecBole
    BPRLoss) is the mean over the rows, and this loss is the mean too. Both terms are KDs' divided
    by the batch size B, so `L_base + lambda * L_KD` is KDs' total / B and the published lambda
    carries over unchanged: weight = 1.

    Deviations from KDs: training items are eligible candidates exactly as there, but the padding
    item 0 (a RecBole artefact) is not; the student picks its candidates in eval mode, so backbones
    with dropout pick deterministically. As in KDs, the CE is not multiplied by tau^2 (Hinton's
    gradient-scale correction); with the BPR default tau=1 the two agree.
    """

    defaults = {"weight": 1.0, "K": 50, "tau": 1.0}
    # KDs uses tau 1 / weight 1 (BPR) and tau 10 / weight 5 (LightGCN): both inside the ranges.
    search_space = {"weight": LogUniform(1e-2, 1e2), "K": IntRange(10, 200, log=True), "tau": LogUniform(0.1, 20.0)}
    must_be_positive = ("K", "tau")

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        self.candidates: torch.Tensor | None = None  # (n_users, K) item ids, re-picked each epoch
        self.teacher_logits: torch.Tensor | None = None  # (n_users, K) teacher scores on them


    def on_epoch_start(self, epoch: int) -> None:
        ctx = self.context
        candidates = student_top_k(ctx.student, ctx.n_users, ctx.n_items, self.hparams["K"])
        self.teacher_logits = scores_of_lists(ctx.teacher, candidates).to(ctx.device)
        self.candidates = candidates.to(ctx.device)

    def loss(self, batch) -> torch.Tensor:
        if self.candidates is None:
            raise RuntimeError("KD.loss called before on_epoch_start: no candidate items yet")
        # The loss of a batch row depends only on its user: score each distinct user once.
        users, counts = torch.unique(self.batch_users(batch), return_counts=True)
        student_logits = list_scores(self.context.student, users, self.candidates[users])
        return kd_loss(student_logits, self.teacher_logits[users], self.hparams["tau"], counts)
