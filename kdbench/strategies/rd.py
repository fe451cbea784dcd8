"""RD, Ranking Distillation (Tang & Wang, "Ranking Distillation: Learning Compact Ranking Models
With High Performance for Recommender System", KDD 2018; reference code graytowne/rank_distill,
`distill_caser.py` and `losses.py::weighted_sigmoid_log_loss`).

The teacher's top-K items pi_1..pi_K of user u (among items u has not interacted with in
training) are extra positives for the student, weighted by position:

    RD_u = -sum_{r=1..K} w_r log sigmoid(s_{u, pi_r})
    static (position) weight  w^a_r = exp(-r / lambda_pos) / sum_{r'=1..K} exp(-r' / lambda_pos)
    dynamic weight            w^b_r = tanh(max(mu * (rank_S(pi_r) - (r - 1)), 0))
    w_r = w^a_r                       for epochs <= dynamic_start_epoch (or dynamic = false)
    w_r = w^a_r * w^b_r               afterwards: a product, NOT renormalised (reference default)

rank_S(pi_r) estimates the student's 0-based rank of pi_r among the catalogue from
`dynamic_samples` items drawn uniformly, with replacement, from u's non-training items:
rank_S = floor((n_items - 1) * #{samples scored above pi_r} / dynamic_samples), with n_items - 1
real items (RecBole's padding item excluded), as in the reference. The samples are redrawn every
epoch; the weights carry no gradient.

Batch loss: the reference applies RD to every training instance and takes the mean over the
batch. Here the teacher's list depends on the user only, so RD is evaluated once per unique
user of the batch and weighted by how many rows of the batch that user has:

    L_KD = (1 / B) * sum_{rows} RD_{u_row} = (1 / B) * sum_{u unique} count_u * RD_u

which equals applying it row by row, at the cost of scoring each user's list once.

Defaults (reference `distill_caser.py`): K=10, lambda_pos=1, mu=0.1, dynamic_samples=100,
dynamic_start_epoch=10, weight=1.0.
- weight: the reference's `teach_alpha` = 1 multiplies the RD term inside a per-instance loss
  that is then AVERAGED over the batch, exactly like RecBole's mean BPR loss plus weight * L_KD
  above, so the value carries over unchanged. (The reference's own loss per instance is Caser's
  pointwise loss over 1 target and 3 negatives, not BPR; that difference is the backbone's, not
  rescaled here.)
- K=10 (the reference and the paper), not the K=30 of re-implementations (woriazzc/KDs): with
  lambda_pos=1, ranks 11..30 carry (e^-10 - e^-30) / (1 - e^-30) = 4.5e-5 of the static weight
  mass (and no more once multiplied by dynamic weights <= 1, without renormalisation), so K=30
  would rescale ranks 1..10 by 1 - 4.5e-5 and add terms of total weight 4.5e-5: a negligible
  change, for three times the items scored per user and step. (With a larger lambda_pos, K
  matters and should be raised with it.)

Deviations from the reference code:
- General (not sequential) recommendation: one teacher top-K per user, computed once in
  prepare(), instead of one per training sequence; likewise the rank-estimation samples are
  drawn per user per epoch instead of per training instance per epoch (same distribution).
- The teacher's top-K excludes all the user's training items (kdbench's convention for every
  strategy); the reference excludes only the instance's target items.
- woriazzc/KDs renormalises w^a * w^b to sum 1 and adds 1 to the estimated rank; we follow the
  original code (`_weight_renormalize = False`, 0-based ranks), set `dynamic` to false for the
  static weights only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kdbench.errors import KdbenchError
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies._sampling import ItemExclusions, sample_allowed
from kdbench.search_space import IntRange, LogUniform
from kdbench.strategies.base import DistillationContext, DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import teacher_top_n


def rd_position_weights(k: int, lambda_pos: float) -> torch.Tensor:
    """(k,) static weights exp(-r / lambda_pos) for r = 1..k, normalised to sum 1."""
    return torch.softmax(-torch.arange(1, k + 1, dtype=torch.float32) / lambda_pos, dim=0)


def rd_dynamic_weights(
    candidate_scores: torch.Tensor, sample_scores: torch.Tensor, n_real_items: int, mu: float
) -> torch.Tensor:
    """(B, K) weights tanh(max(mu * (rank_S - r), 0)) for the teacher's list in order (r = 0..K-1).

    candidate_scores (B, K): student scores of the teacher's top-K; sample_scores (B, S): student
    scores of S random non-training items; rank_S = floor(n_real_items * fraction of samples
    scored strictly above the candidate).
    """
    above = (sample_scores.unsqueeze(1) > candidate_scores.unsqueeze(2)).float().mean(dim=2)
    student_rank = torch.floor(n_real_items * above)
    position = torch.arange(candidate_scores.shape[1], device=candidate_scores.device)
    return torch.tanh((mu * (student_rank - position)).clamp(min=0))


def rd_loss(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-user RD loss (B,): -sum_r w_r log sigmoid(s_r); weights (K,) or (B, K)."""
    return -(weights * F.logsigmoid(scores)).sum(dim=1)


@register_strategy("rd", family="ranking", paper="Tang & Wang, Ranking Distillation, KDD 2018", file_teacher="K")
class RD(DistillationStrategy):
    """Ranking Distillation; see the module docstring for the loss, defaults and weight."""

    defaults = {
        "weight": 1.0,
        "K": 10,
        "lambda_pos": 1.0,
        "dynamic": True,
        "mu": 0.1,
        "dynamic_samples": 100,
        "dynamic_start_epoch": 10,
    }
    must_be_positive = ("K", "dynamic_samples", "lambda_pos")
    search_space = {"weight": LogUniform(1e-2, 1e1), "K": IntRange(5, 50, log=True), "mu": LogUniform(1e-2, 1.0)}

    def __init__(self, context: DistillationContext, **hparams):
        super().__init__(context, **hparams)
        h = self.hparams
        self.position_weights = rd_position_weights(h["K"], h["lambda_pos"]).to(context.device)
        self._top: torch.Tensor | None = None  # (n_users, K) on context.device
        self._samples: torch.Tensor | None = None  # (n_users, dynamic_samples) while dynamic
        self._excluded: ItemExclusions | None = None  # training items
        self._generator: torch.Generator | None = None
        self.epoch = 0

    def prepare(self) -> None:
        ctx, k = self.context, self.hparams["K"]
        self._excluded = ItemExclusions(ctx.history)
        unseen = self._excluded.allowed_counts()
        if unseen.min() < k:
            user = int(np.argmin(unseen))
            raise KdbenchError(
                f"strategy '{self.name}' needs K = {k} items outside each user's training items; "
                f"user {user} has only {int(unseen[user])}: lower K"
            )
        self._top = teacher_top_n(ctx.teacher, ctx.history, k).to(ctx.device)
        self._generator = ctx.generator()

    @property
    def dynamic_active(self) -> bool:
        return self.hparams["dynamic"] and self.epoch > self.hparams["dynamic_start_epoch"]

    def on_epoch_start(self, epoch: int) -> None:
        if self._top is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before training")
        self.epoch = epoch
        self._samples = None
        if self.dynamic_active:
            users = torch.arange(self.context.n_users)
            samples = sample_allowed(self._excluded, users, self.hparams["dynamic_samples"], self._generator)
            self._samples = samples.to(self.context.device)

    def loss(self, batch) -> torch.Tensor:
        if self._top is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before loss()")
        batch_users = self.batch_users(batch)
        users, counts = batch_users.unique(return_counts=True)
        scores = list_scores(self.context.student, users, self._top[users])
        weights = self.position_weights
        if self._samples is not None:
            with torch.no_grad():  # the weights carry no gradient: score the samples without a graph
                sample_scores = list_scores(self.context.student, users, self._samples[users])
                dynamic = rd_dynamic_weights(scores, sample_scores, self.context.n_items - 1, self.hparams["mu"])
            weights = weights * dynamic
        per_user = rd_loss(scores, weights)
        return (counts * per_user).sum() / batch_users.numel()
