"""BD, Bidirectional Distillation: teacher and student trained together, each distilling into the other.

Kweon, Kang & Yu, "Bidirectional Distillation for Top-K Recommender System", WWW 2021; reference
code WonbinKweon/BD_WWW2021, notebook `BD_WWW2021_CDAE_CiteULike.ipynb` (CDAE on CiteULike).

The loss. For a batch of B training rows (u, i, j) the strategy returns

    L_BD = lambda_student * (1/B) sum_rows sum_{k in K^S_row} BCE(sig(s_uk), sig(t_uk / tau))
         + L_base^T(batch)
         + lambda_teacher * (1/B) sum_rows sum_{k in K^T_row} BCE(sig(t_uk), sig(s_uk / tau))

with BCE(p, q) = -[q log p + (1 - q) log(1 - p)], s and t the student's and the teacher's scores,
the pseudo-label q = sig(the other model's score / tau) a constant (detached), and L_base^T the
teacher's own RecBole loss (`calculate_loss`) on the same batch. The trainer adds the student's
own loss, so one backward pass of

    L = [L_base^S + lambda_student * KD^S] + [L_base^T + lambda_teacher * KD^T]

sends the first bracket to the student's parameters only and the second to the teacher's only.
The runner gives BD a private trainable copy of the cached teacher (`updates_teacher`), and the
trainer optimises both parameter sets with one Adam; Adam's state and update are per parameter,
so that one step is exactly the reference's two Adam steps (one optimiser per model, the same
learning rate) on the two brackets. The reference also computes both models' outputs before
either steps, as here. BD's own `weight` is fixed at 1, not a hyperparameter: it would scale the
teacher's own loss with the KD terms; lambda_student and lambda_teacher weight the KD terms.

Rank discrepancy-aware sampling. rank_M(u, k) is model M's rank of item k among the items u has
not interacted with in training (1 = top); d(u, k) = rank_S(u, k) - rank_T(u, k) is positive when
the teacher ranks k higher than the student does. For every training row, n_kd KD items are drawn
with replacement for each model:

    student:  p_S(k | u) ~ tanh(max(eps_student * d(u, k), 0))
    teacher:  p_T(k | u) ~ exp(eps_teacher * (rank_T(u, k) - rank_S(u, k))) = exp(-eps_teacher * d(u, k))

The student learns the items the teacher ranks much higher than the student does, and the
teacher the items the student ranks much higher than the teacher does: the paper's description.
tanh saturates, so the student spreads its draws over every item with a clear positive gap; exp
grows without bound, so the teacher's draws concentrate on the largest gaps, the few items where
the smaller model is far more confident than the teacher. The ranks are recomputed from both
models (eval mode, no gradient) every `update_every` epochs, at epochs 1, 1 + update_every, ...;
in between the two distributions stay fixed and every row gets fresh draws.

Paper and reference code disagree on the direction. The notebook ranks with an ascending
`argsort`, so its rank value is HIGH for HIGH scores (the top item holds the largest value), and
its teacher weights exp(eps * (asc_T - asc_S)), its student weights tanh(max(eps * (asc_S - asc_T),
0)). In rank-1-is-top terms asc_T - asc_S = rank_S - rank_T: the notebook's teacher draws the
items IT ranks above the student, and its student the items IT ranks above the teacher, the
opposite of the paper on both sides. The notebook's own comments on the two differences name the
paper's reading (the first is "what the teacher did poorly", the second "what the student did
poorly"), so we take the flip for a side effect of the ascending sort and follow the paper.

Defaults (the notebook's BD stage): lambda_student = lambda_teacher = 0.5; tau = 2 (the notebook's
training temperature for both pseudo-labels; its rank pass uses 10, which does not change a
ranking); eps_student = eps_teacher = 1e-4 (`eps_tanh`, `eps`); n_kd = 5 (`num_neg`: 5 KD items
per training interaction and model); update_every = 10. kdbench's method notes give tau = 5 for
BD; the authors' own run uses 2, which we keep.

Loss scale. The notebook sums every loss over its batch of users and their items: per user the
CF loss (pointwise BCE on the user's positives and num_neg sampled negatives per positive) plus
lambda times the BCE summed over num_neg KD items per positive. Per training interaction that is
[CF terms of one positive] + lambda * [n_kd KD terms]. kdbench's base loss is the mean over the
batch's rows, one interaction each, and KD^S, KD^T above are the row means of the n_kd-item sums:
the same balance per interaction, times the constant 1/B, which Adam ignores. So lambda = 0.5
carries over. The CF term itself does not: CDAE's six log-loss terms per interaction (one
positive, five negatives) against BPR's one pairwise term, so at equal lambda the KD terms weigh
about 6x more against the CF loss here than in the notebook (at initialisation: 0.5 * 5 * log 2
= 1.73 against BPR's log 2 = 0.69; the notebook's CF has 6 log 2 = 4.16). lambda = 0.5 / 6 = 0.08
would match that count; we keep the published 0.5, and the search space spans both.

Deviations from the reference code:
- Backbones: CDAE outputs a probability per item; here the prediction is sig(score) of any RecBole
  general recommender, and each model's CF loss is its own RecBole loss on kdbench's batch (BPR's
  pairwise loss for BPR and LightGCN). The teacher's loss is computed on the student's batch, so
  both must take the same input type (pairwise or pointwise); BD refuses other pairs.
- KD items are drawn per training row, n_kd per (u, i) row; the notebook draws num_neg *
  |positives of u| per user of its user batch. Each user gets the same number of KD items per epoch
  either way. A repeated draw counts once per draw; the notebook's 0/1 item mask counts a repeated
  item once per user and batch, which caps a heavy user's KD items at its distinct draws.
- Training items are never KD items (weight 0). In the notebook they sit at the bottom of both
  rankings with small discrepancies, so its teacher's exp weights (about 1) draw them like any
  average item, pulling the teacher's scores on the user's own positives toward the student's.
  Ranking among the unobserved items instead of the whole catalogue leaves every unobserved item's
  discrepancy as it is (both models rank the same training items below all others there).
- The student starts from scratch, as every kdbench student does; the notebook first trains both
  models separately (1,000 epochs each) and starts BD from the two. In the first update period the
  teacher therefore learns from a barely trained student (pseudo-labels near 0.5 on items that
  student ranks high); lambda_teacher is tunable.
- The teacher keeps learning with the student's learning rate and weight decay (the notebook: the
  same learning rate for both, no weight decay in the BD stage) for as long as the student trains;
  early stopping and the kept weights follow the student's validation NDCG@10 only. The
  co-trained teacher is the worker's private copy, discarded after the run: the cached teacher is
  never written, and the record's `teacher_test` is the cached teacher's.
- Sampling mechanics: at the first epoch of each update period the ranks are computed in user
  chunks (`RANK_CELLS` scores at a time, never a users x items table) and the whole period's draws
  are made at once, n_kd * |training items of u| * update_every per user and model, then handed
  out in order to the user's rows as batches come (a per-user cursor): fresh i.i.d. draws from the
  period's distribution for every row, as the notebook's multinomial per batch. Memory: 4 bytes
  per draw, O(n_kd * update_every * training interactions) per model.
- A user whose student ranking equals the teacher's on every unobserved item has no positive
  discrepancy; the student's draws then fall back to uniform over its unobserved items (the limit
  of any floor on the weights). It takes identical rankings and does not happen in practice.
- eps is in absolute rank units, as in the notebook. On CiteULike (25k items) eps * d reaches 2.5:
  tanh saturates and the exp weights span e^-2.5 .. e^2.5. On ml-100k (1,682 items) it reaches only
  0.17: the student's weights are then nearly linear in the discrepancy and the teacher's nearly
  uniform over its unobserved items. The search space reaches eps = 0.1 for small catalogues. The
  exp weights are computed shifted by the row's maximum exponent, so a large eps cannot overflow.

Cost: every step also runs the teacher's forward and backward passes (the larger model) and scores
n_kd KD items per row with each model (each model's scores on the other's items, pseudo-labels
only, without a graph), and every update_every epochs both models score and rank the whole
catalogue for every user and the period's items are drawn. Measured on ml-100k, BPR:64 -> BPR:5,
batch 2048, one thread, CPU time: a scratch epoch 0.20 s, a BD epoch 0.50 s (2.5x), a rank pass
and its draws about 1.0 s (8M draws), so 3.0x scratch per 10-epoch period.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from kdbench.backbones import BackboneAdapter, reset_inference_cache
from kdbench.errors import KdbenchError
from kdbench.search_space import IntRange, LogUniform
from kdbench.strategies.base import DistillationContext, DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import mask_seen, user_chunks

# Scores per chunk of the rank pass: two score tables, two rank tables, two weight tables and the
# sampler's cumulative table, about 70 bytes per cell, so about 70 MiB per chunk.
RANK_CELLS = 2**20


def soft_label_bce(logits: torch.Tensor, pseudo_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over rows of sum_k BCE(sig(x_k), sig(y_k / tau)) with y the other model's scores,
    taken as constants: (R, K) -> ()."""
    labels = torch.sigmoid(pseudo_logits.detach() / tau)
    per_item = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits))
    return per_item.sum(dim=1).mean()


def descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """(R, N) scores -> (R, N) ranks, 1 = highest score in its row (ties in item order). Items set
    to -inf rank below all others, so the others hold ranks 1..(their count)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def discrepancy_weights(rank_student: torch.Tensor, rank_teacher: torch.Tensor, allowed: torch.Tensor,
                        eps_student: float, eps_teacher: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised sampling weights (float64, 0 outside `allowed`) of the student's and the
    teacher's KD items: tanh(max(eps_S * (rank_S - rank_T), 0)) and exp(eps_T * (rank_T - rank_S)),
    the latter divided by its row's largest allowed value. A student row with no positive weight
    (identical rankings) is uniform over its allowed items."""
    gap = (rank_student - rank_teacher).double()  # > 0: the teacher ranks the item higher
    student = torch.tanh((eps_student * gap).clamp_min(0)).where(allowed, 0.0)
    exponent = (-eps_teacher * gap).where(allowed, -torch.inf)
    teacher = (exponent - exponent.amax(dim=1, keepdim=True)).exp().where(allowed, 0.0)
    flat = student.sum(dim=1, keepdim=True) == 0
    student = torch.where(flat, allowed.double(), student)
    return student, teacher


def draw_rows(weights: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """counts[r] column indices drawn i.i.d. with p ~ weights[r], for every row r, concatenated by
    row: (R, N) float64 weights (CPU, every row with a positive entry), (R,) counts -> (sum,) long.

    Inverse CDF over all rows at once: row r's normalised cumulative weights, shifted by r, form one
    increasing sequence, and a uniform u in [0, 1) for row r is looked up at r + u. An entry is
    picked iff its cumulative weight is the first to exceed r + u, so a zero-weight entry never is.
    """
    n_rows, width = weights.shape
    cumulative = weights.cumsum(dim=1)
    cumulative /= cumulative[:, -1:].clone()
    cumulative += torch.arange(n_rows, dtype=torch.float64).unsqueeze(1)
    rows = torch.repeat_interleave(torch.arange(n_rows), counts)
    targets = rows.double() + torch.rand(len(rows), generator=generator, dtype=torch.float64)
    picked = torch.searchsorted(cumulative.view(-1), targets, right=True)
    # r + u rounds up to r + 1 at worst: keep such a draw on the row's last positive entry.
    last = width - 1 - (weights > 0).flip(1).to(torch.int8).argmax(dim=1)
    return torch.minimum(picked - rows * width, last[rows])


@torch.no_grad()
def rank_discrepancy_draws(student: BackboneAdapter, teacher: BackboneAdapter, history: sp.csr_matrix,
                           counts: torch.Tensor, eps_student: float, eps_teacher: float,
                           generator: torch.Generator,
                           max_cells: int = RANK_CELLS) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' KD items for every user: counts[u] draws each, user by user: ((sum,), (sum,)) int32.

    Scores, ranks and weights are computed `max_cells` scores at a time over consecutive users.
    Both models are scored in eval mode; their modes and full-sort caches are restored afterwards.
    """
    models = (student.model, teacher.model)
    modes = [model.training for model in models]
    n_users, n_items = history.shape
    device = next(student.model.parameters()).device
    student_items, teacher_items = [], []
    try:
        for model in models:
            model.eval()
            reset_inference_cache(model)
        for start, stop in user_chunks(n_users, n_items, max_cells):
            users = torch.arange(start, stop, device=device)
            scores_s = mask_seen(student.full_scores(users).float().clone(), history, start)
            scores_t = mask_seen(teacher.full_scores(users).float().clone(), history, start)
            allowed = torch.isfinite(scores_s)
            weights_s, weights_t = discrepancy_weights(descending_ranks(scores_s), descending_ranks(scores_t),
                                                       allowed, eps_student, eps_teacher)
            chunk_counts = counts[start:stop]
            needs = chunk_counts > 0  # users with no training rows draw nothing
            for weights, out in ((weights_s, student_items), (weights_t, teacher_items)):
                drawn = draw_rows(weights[needs.to(device)].cpu(), chunk_counts[needs], generator)
                out.append(drawn.to(torch.int32))
    finally:
        for model, mode in zip(models, modes):
            reset_inference_cache(model)
            model.train(mode)
    return torch.cat(student_items), torch.cat(teacher_items)


@register_strategy(
    "bd", family="response",
    paper="Kweon, Kang & Yu, Bidirectional Distillation for Top-K Recommender System, WWW 2021",
)
class BD(DistillationStrategy):
    """Bidirectional Distillation; see the module docstring for the loss, sampling, defaults and
    the deviations from the reference code."""

    defaults = {"lambda_student": 0.5, "lambda_teacher": 0.5, "tau": 2.0, "eps_student": 1e-4,
                "eps_teacher": 1e-4, "n_kd": 5, "update_every": 10}
    must_be_positive = ("tau", "n_kd", "update_every")
    # The lambdas span the published 0.5 and its CF-term-count match 0.08 (module docstring); eps
    # from nearly flat weights on any catalogue to sharp ones on ml-100k's; update_every is a cost
    # knob, left out.
    search_space = {"lambda_student": LogUniform(1e-2, 5.0), "lambda_teacher": LogUniform(1e-2, 5.0),
                    "tau": LogUniform(0.5, 10.0), "eps_student": LogUniform(1e-5, 1e-1),
                    "eps_teacher": LogUniform(1e-5, 1e-1), "n_kd": IntRange(1, 20, log=True)}
    updates_teacher = True

    def __init__(self, context: DistillationContext, **hparams):
        super().__init__(context, **hparams)
        teacher, student = context.teacher.model, context.student.model
        if not any(p.requires_grad for p in teacher.parameters()):
            raise KdbenchError(
                f"strategy '{self.name}' trains the teacher further and needs a trainable copy of it "
                "(the runner gives one to strategies with updates_teacher); this teacher is frozen"
            )
        kinds = [getattr(type(model), "input_type", None) for model in (teacher, student)]
        if kinds[0] != kinds[1]:
            raise KdbenchError(
                f"strategy '{self.name}' trains the teacher on the student's batches: teacher "
                f"{type(teacher).__name__} and student {type(student).__name__} need the same input type, "
                f"got {kinds[0]} and {kinds[1]}"
            )
        self._generator = context.generator(offset=3)
        self._offsets: torch.Tensor | None = None  # (n_users + 1,) where each user's draws start
        self.cursor: torch.Tensor | None = None  # (n_users,) draws of the period handed out so far
        self.student_items: torch.Tensor | None = None  # this period's draws, user by user, int32
        self.teacher_items: torch.Tensor | None = None

    @property
    def weight(self) -> float:
        return 1.0

    def draws_per_user(self) -> torch.Tensor:
        """(n_users,) KD items a user needs per model and update period: n_kd per training row."""
        h = self.hparams
        rows = torch.from_numpy(np.diff(self.context.history.indptr).astype(np.int64))
        return rows * h["n_kd"] * h["update_every"]

    def prepare(self) -> None:
        ctx = self.context
        unseen = (ctx.n_items - 1) - np.diff(ctx.history.indptr)
        has_rows = np.diff(ctx.history.indptr) > 0
        if (unseen[has_rows] < 1).any():
            user = int(np.flatnonzero(has_rows & (unseen < 1))[0])
            raise KdbenchError(
                f"strategy '{self.name}': user {user} has no item outside its training items to distil on"
            )
        counts = self.draws_per_user()
        self._offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(ctx.device)

    def on_epoch_start(self, epoch: int) -> None:
        if self._offsets is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before training")
        if self.student_items is None or (epoch - 1) % self.hparams["update_every"] == 0:
            self.resample()

    def resample(self) -> None:
        """Recompute both rankings and draw the update period's KD items; restart the cursors."""
        ctx, h = self.context, self.hparams
        student_items, teacher_items = rank_discrepancy_draws(
            ctx.student, ctx.teacher, ctx.history, self.draws_per_user(), h["eps_student"], h["eps_teacher"],
            self._generator,
        )
        self.student_items, self.teacher_items = student_items.to(ctx.device), teacher_items.to(ctx.device)
        self.cursor = torch.zeros(ctx.n_users, dtype=torch.long, device=ctx.device)

    def next_items(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next n_kd draws of each row's user, (B, n_kd) for the student and the teacher; a
        user's rows take consecutive draws, and its cursor moves past them (wrapping round)."""
        n_kd = self.hparams["n_kd"]
        order = torch.sort(users, stable=True).indices
        ordered = users[order]
        index = torch.arange(len(users), device=users.device)
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[1:] = ordered[1:] != ordered[:-1]
        run_start = torch.where(first, index, 0).cummax(dim=0).values
        occurrence = torch.empty_like(index).scatter_(0, order, index - run_start)  # earlier rows of the user
        start, length = self._offsets[users], (self._offsets[users + 1] - self._offsets[users]).clamp_min(1)
        steps = self.cursor[users] + occurrence * n_kd
        offsets = (steps.unsqueeze(1) + torch.arange(n_kd, device=users.device)) % length.unsqueeze(1)
        positions = start.unsqueeze(1) + offsets
        self.cursor.index_add_(0, users, torch.full_like(users, n_kd))
        self.cursor.remainder_((self._offsets[1:] - self._offsets[:-1]).clamp_min(1))
        return self.student_items[positions].long(), self.teacher_items[positions].long()

    def loss(self, batch) -> torch.Tensor:
        if self.student_items is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() and on_epoch_start() before loss()")
        ctx, h = self.context, self.hparams
        users = self.batch_users(batch)
        student_items, teacher_items = self.next_items(users)
        # Each model's scores on its own KD items carry gradients; on the other's, they are
        # pseudo-labels only, scored without a graph (after the graph-carrying call, so that a
        # whole-graph backbone's memoised propagation keeps its graph).
        with ctx.teacher.one_forward_per_step():
            teacher_base = ctx.teacher.model.calculate_loss(batch)
            teacher_base = sum(teacher_base) if isinstance(teacher_base, tuple) else teacher_base
            teacher_own = ctx.teacher.score(users, teacher_items)
            with torch.no_grad():
                teacher_labels = ctx.teacher.score(users, student_items)
        student_own = ctx.student.score(users, student_items)
        with torch.no_grad():
            student_labels = ctx.student.score(users, teacher_items)
        kd_student = soft_label_bce(student_own, teacher_labels, h["tau"])
        kd_teacher = soft_label_bce(teacher_own, student_labels, h["tau"])
        return h["lambda_student"] * kd_student + teacher_base + h["lambda_teacher"] * kd_teacher
