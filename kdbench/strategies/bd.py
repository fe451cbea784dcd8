"""BD, Bidirectional Distillation: teacher and student trained together, each distilling into the other.

Kweon, Kang & Yu, "Bidirectional Distillation for Top-K Recommender System", WWW 2021; reference
code WonbinKweon/BD_WWW2021, notebooks `BD_WWW2021_BPR_CiteULike.ipynb` (BPR-MF, the defaults here;
"BPR nb:N" below is line N of the .ipynb file) and `BD_WWW2021_CDAE_CiteULike.ipynb` (CDAE, "CDAE nb:N").

The loss. For a batch of B training rows (u, i, j) the strategy returns

    L_BD = lambda_student * KD^S + CF^T + lambda_teacher * KD^T  [+ CF^S - L_base^S(batch)]
    KD^M = (1/B) sum_rows sum_{k in K^M_row} BCE(sig(m_uk), sig(o_uk / tau))
    CF^M = (1/B) sum_rows sum_{k in K^M_row} loss_M(u, i, k)          (kd_negatives = 1)

with BCE(p, q) = -[q log p + (1 - q) log(1 - p)], m the model's and o the other model's scores,
the pseudo-label q = sig(o / tau) a constant (detached), K^M_row the row's n_kd KD items of model M
and loss_M model M's own RecBole loss (BPR's -log sig(m_ui - m_uk)) with the KD item k as the
negative: the BPR notebook's KD item doubles as the CF negative (BPR nb:130-145, 488-504: T's CF
and KD terms both on j_T, S's on j_S). The trainer adds the student's own loss L_base^S on the
loader's uniform negatives; the bracket swaps it for CF^S, so one backward pass of

    L = [CF^S + lambda_student * KD^S] + [CF^T + lambda_teacher * KD^T]

sends the first bracket to the student's parameters only and the second to the teacher's only
(L_base^S - L_base^S cancels up to float rounding). With kd_negatives = 0 (the CDAE notebook's
scheme: its CF negatives are uniform, CDAE nb:174-178) both CF terms are the models' losses on the
loader's negatives and the bracket is absent. The runner gives BD a private trainable copy of the
cached teacher (`updates_teacher`), and the trainer optimises both parameter sets with one Adam;
Adam's state and update are per parameter, so that one step is exactly the reference's two Adam
steps (one optimiser per model, the same learning rate) on the two brackets. The reference also
computes both models' outputs before either steps, as here. BD's own `weight` is fixed at 1, not a
hyperparameter: it would scale the teacher's own loss with the KD terms; lambda_student and
lambda_teacher weight the KD terms.

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
models (eval mode, no gradient) every `update_every` epochs, at BD's first epoch and every
update_every epochs after it (BPR nb:439); in between the two distributions stay fixed and every
row gets fresh draws.

Paper and reference code disagree on the direction. Both notebooks rank with an ascending
`argsort` (BPR nb:454-464, CDAE nb:480-493), so their rank value is HIGH for HIGH scores (the top
item holds the largest value), and their teacher weights exp(eps * (asc_T - asc_S)), their student
weights tanh(max(eps * (asc_S - asc_T), 0)) (BPR nb:470-474). In rank-1-is-top terms asc_T - asc_S
= rank_S - rank_T: the notebooks' teacher draws the items IT ranks above the student, and their
student the items IT ranks above the teacher, the opposite of the paper on both sides. The CDAE
notebook's comments on the two differences name the paper's reading (CDAE nb:495-496: the first is
"what the teacher did poorly", the second "what the student did poorly"), so we take the flip for a
side effect of the ascending sort and follow the paper. With kd_negatives the direction also
decides what the negatives are: here the student's BPR negatives are items the teacher ranks
above the student (the KD term lifts them toward sig(t / tau), the CF term keeps them below the
positive); in the notebook's direction they would be items the student itself over-ranks.

Defaults (the BPR notebook's BD stage, BPR nb:401-418): lambda_student = lambda_teacher = 0.5
(`lamb_S`, `lamb_T`); tau = 5 (`temp_T`, `temp_S`); eps_student = 1e-2 (`eps_t`, on the student's
tanh weights) and eps_teacher = 1e-4 (`eps`, on the teacher's exp weights); n_kd = 1 (`neg_KD`);
update_every = 10 (`update`); kd_negatives = 1; warmup_epochs = 0 (see pre-training below). The
CDAE notebook's stage (CDAE nb:427-442) is tau = 2, eps = 1e-4 for both, n_kd = 5 and uniform CF
negatives: kd_negatives 0, n_kd 5, tau 2, eps_student 1e-4 reproduce it (kdbench's BD defaults
before the BPR notebook's).

Loss scale. The BPR notebook sums every loss over its batch of 128 rows: per row one BPR term on
the KD item and lambda times one BCE term (BPR nb:495-504). kdbench's losses are row means: the
same balance per row, times the constant 1/B, which Adam ignores, so lambda = 0.5 carries over
exactly (the same CF term, one pairwise loss per row and KD item).

Pre-training. The BPR notebook trains both models alone first (teacher 50-d, 1,000 epochs, weight
decay 1e-3; student 5-d, 1,000 epochs, no weight decay; BPR nb:231-232, 262-266, 328-332) and
then runs BD for 100 epochs from the two (BPR nb:414). kdbench's teacher is always pre-trained
(the cached teacher). The student's pre-training is the option warmup_epochs = W: in epochs 1..W
the strategy adds nothing (the student trains as scratch, the teacher copy rests: no gradient, so
Adam leaves it alone), and BD starts at epoch W + 1 with a rank pass. It is one run with the
student's early stopping throughout, not the notebook's fixed 1,000 + 100 epochs: choose W below
the epoch at which scratch's validation NDCG@10 peaks on the pairing (or the run stops before BD
starts); the default 0 starts both from the first epoch, the student from scratch.

Deviations from the reference code:
- Backbones: the notebooks' BPR-MF / CDAE; here the prediction is sig(score) of any RecBole
  general recommender, and each model's CF loss is its own RecBole loss on kdbench's batch (BPR's
  pairwise loss for BPR and LightGCN; LightGCN's embedding penalty then counts each KD negative,
  n_kd times per row as every other term). The teacher's loss is computed on the student's batch,
  so both must take the same input type (pairwise or pointwise); BD refuses other pairs, and
  kd_negatives = 1 needs pairwise models (the KD item replaces the batch's negative).
- KD items are drawn per training row, n_kd per (u, i) row, as the BPR notebook (one multinomial
  draw per row and model, BPR nb:130-145); the CDAE notebook draws num_neg * |positives of u| per
  user of its user batch and counts a repeated item once (its 0/1 item mask).
- Training items are never KD items (weight 0), so never KD negatives. In the notebooks the rank
  pass multiplies the training items' scores by 0 (BPR nb:454), which puts them in the middle of
  both rankings with small discrepancies: they are drawn like average items, as KD items and, in
  the BPR notebook, as CF negatives (false negatives). Ranking among the unobserved items instead
  of the whole catalogue leaves every unobserved item's discrepancy as it is.
- The teacher keeps learning with the student's learning rate and weight decay (the BPR notebook:
  the same learning rate 1e-3 for both, no weight decay in the BD stage, batch 128) for as long as
  the student trains; early stopping and the kept weights follow the student's validation NDCG@10
  only. The co-trained teacher is the worker's private copy, discarded after the run: the cached
  teacher is never written, and the record's `teacher_test` is the cached teacher's.
- Sampling mechanics: at the first epoch of each update period the ranks are computed in user
  chunks (`RANK_CELLS` scores at a time, never a users x items table; each row's stable descending
  order taken from a sort of distinct integer keys, `descending_ranks`) and the whole period's draws
  are made at once, n_kd * |training items of u| * update_every per user and model, then handed
  out in order to the user's rows as batches come (a per-user cursor): fresh i.i.d. draws from the
  period's distribution for every row, as the notebook's multinomial per batch. Memory: 4 bytes
  per draw, O(n_kd * update_every * training interactions) per model.
- A user whose student ranking equals the teacher's on every unobserved item has no positive
  discrepancy; the student's draws then fall back to uniform over its unobserved items (the limit
  of any floor on the weights). It takes identical rankings and does not happen in practice.
- eps is in absolute rank units, as in the notebooks. On CiteULike (25k items) eps_student * d
  reaches 250 and eps_teacher * d 2.5: the student's tanh weights are then 1 for nearly every item
  with a gap of 100 ranks or more, and the teacher's exp weights span e^-2.5 .. e^2.5. On ml-100k
  (1,682 items) eps_student * d reaches 17 (still saturating beyond a gap of about 100) and
  eps_teacher * d only 0.17: the teacher's weights are then nearly uniform over its unobserved
  items. The exp weights are computed shifted by the row's maximum exponent, so a large eps
  cannot overflow.

Cost: every step also runs the teacher's forward and backward passes (the larger model), scores
n_kd KD items per row with each model (each model's scores on the other's items, pseudo-labels
only, without a graph) and, with kd_negatives, computes the student's own loss twice more (on its
KD negatives and the swapped-out loader's); every update_every epochs both models score and rank
the whole catalogue for every user and the period's items are drawn. Measured on ml-100k, BPR:64
-> BPR:5, batch 2048, one thread, CPU time, the three interleaved on a shared 2-core machine
(medians of 3): a scratch epoch 0.05 s; a BD epoch with the defaults 0.40 s and its rank pass and
draws 0.52 s; with the CDAE notebook's settings (n_kd 5, uniform negatives) 0.54 s and 1.34 s.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import InputType

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
    to -inf rank below all others, so the others hold ranks 1..(their count).

    The order is that of a stable descending sort. On the CPU it is computed as an ascending sort of
    distinct int64 keys, (order-reversing integer image of the float score) * 2^32 + item: the keys
    are distinct, so any sort gives that one order, and NumPy's vectorised integer sort takes a
    fraction of torch's stable float sort on a catalogue row (the rank pass's dearest part)."""
    if scores.device.type != "cpu" or scores.dtype != torch.float32 or bool(torch.isnan(scores).any()):
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    else:
        order = torch.from_numpy(np.sort(descending_keys(scores).numpy(), axis=1) & 0xFFFFFFFF)
    positions = torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def descending_keys(scores: torch.Tensor) -> torch.Tensor:
    """(R, N) float32 without NaN -> (R, N) int64 keys, ascending in (-score, item). A float's bits
    read as int32 b order the non-negative floats; a negative float's magnitude bits are flipped
    (b ^ 0x7FFFFFFF) so that it orders below them and by value; ~ reverses the order. -0.0 is made
    +0.0 first, as the float sort ties them."""
    bits = (scores + 0.0).view(torch.int32)
    ascending = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    items = torch.arange(scores.shape[1], dtype=torch.int64)
    return (torch.bitwise_not(ascending).to(torch.int64) << 32) | items


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

    defaults = {"lambda_student": 0.5, "lambda_teacher": 0.5, "tau": 5.0, "eps_student": 1e-2,
                "eps_teacher": 1e-4, "n_kd": 1, "update_every": 10, "kd_negatives": 1, "warmup_epochs": 0}
    must_be_positive = ("tau", "n_kd", "update_every")
    switches = ("kd_negatives",)  # 0 or 1
    # The lambdas span the published 0.5 and more than a decade either side; eps from nearly flat
    # weights on any catalogue to sharp ones on ml-100k's; update_every is a cost knob, and
    # kd_negatives / warmup_epochs choose the protocol (the notebooks'), all three left out.
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
        for key in self.switches:
            if self.hparams[key] not in (0, 1):
                raise KdbenchError(f"hyperparameter '{key}' of strategy '{self.name}' must be 0 or 1, "
                                   f"got {self.hparams[key]}")
        if self.hparams["kd_negatives"] and kinds[0] in (InputType.POINTWISE, InputType.LISTWISE):
            raise KdbenchError(
                f"strategy '{self.name}' with kd_negatives 1 makes the KD items the models' negatives, which "
                f"needs pairwise models; {type(student).__name__} is {kinds[1]}: set kd_negatives: 0"
            )
        self._generator = context.generator(offset=3)
        self._first_period = 1 + self.hparams["warmup_epochs"]  # the epoch BD starts at
        self.distilling: bool | None = None  # set at each epoch start; False during the warm-up epochs
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
        self.distilling = epoch >= self._first_period
        if not self.distilling:
            return
        if self.student_items is None or (epoch - self._first_period) % self.hparams["update_every"] == 0:
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

    def loss(self, batch) -> torch.Tensor | None:
        if self.distilling is False:
            return None  # warm-up: the student trains alone, the teacher copy rests
        if self.student_items is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() and on_epoch_start() before loss()")
        ctx, h = self.context, self.hparams
        users = self.batch_users(batch)
        student_items, teacher_items = self.next_items(users)
        # Each model's scores on its own KD items carry gradients; on the other's, they are
        # pseudo-labels only, scored without a graph (after the graph-carrying call, so that a
        # whole-graph backbone's memoised propagation keeps its graph).
        with ctx.teacher.one_forward_per_step():
            teacher_base = self.cf_loss(ctx.teacher.model, batch, teacher_items)
            teacher_own = ctx.teacher.score(users, teacher_items)
            with torch.no_grad():
                teacher_labels = ctx.teacher.score(users, student_items)
        student_own = ctx.student.score(users, student_items)
        with torch.no_grad():
            student_labels = ctx.student.score(users, teacher_items)
        kd_student = soft_label_bce(student_own, teacher_labels, h["tau"])
        kd_teacher = soft_label_bce(teacher_own, student_labels, h["tau"])
        total = h["lambda_student"] * kd_student + teacher_base + h["lambda_teacher"] * kd_teacher
        if h["kd_negatives"]:  # swap the trainer's student loss on the loader's negatives for its KD items'
            total = total + self.cf_loss(ctx.student.model, batch, student_items) - model_loss(ctx.student.model, batch)
        return total

    def cf_loss(self, model: torch.nn.Module, batch, kd_items: torch.Tensor) -> torch.Tensor:
        """The model's own loss: on the loader's negatives, or with kd_negatives on its n_kd KD items
        per row, (1/B) sum_rows sum_k loss(u, i, j_k) (each row repeated, the negative replaced)."""
        if not self.hparams["kd_negatives"]:
            return model_loss(model, batch)
        n_kd = kd_items.shape[1]
        rows = batch.repeat_interleave(n_kd) if n_kd > 1 else Interaction(dict(batch.interaction))
        rows[self.context.neg_iid_field] = kd_items.reshape(-1)
        return n_kd * model_loss(model, rows)


def model_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """A RecBole model's training loss on a batch (a tuple of terms summed)."""
    loss = model.calculate_loss(batch)
    return sum(loss) if isinstance(loss, tuple) else loss
