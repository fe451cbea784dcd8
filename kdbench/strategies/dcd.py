"""DCD, Dual Correction Distillation (Lee & Kim, "Dual Correction Strategy for Ranking Distillation
in Top-N Recommender System", CIKM 2021); reference code woriazzc/KDs (commit a3a7a64,
`modeling/KD/cf/baseline.py`:399-479, class `DCD`; the same class is woriazzc/RCEKD (771322a)
`modeling/KD/baseline.py`:455-536, which produced RCE-KD's published DCD row). The defaults are
the reference's; kdbench's earlier choices remain as options (below).

User side. Per user u, with pi_u = the teacher's top-`top_n` items u has not interacted with in
training (teacher rank r_T(i) = 0..top_n-1; reference `get_topk_dict`, :410-418) and r_S(i) the
student's current 0-based rank of item i among ALL items, the user's training items included
(reference :427-430, two argsorts of the full score matrix):

    under-estimated  U_u: K distinct items of pi_u drawn without replacement with
                          p(i) ~ max(tanh(max((r_S(i) - r_T(i)) / T, 0)), 1e-5)
    over-estimated   O_u: K distinct items of pi_u drawn likewise with r_T(i) - r_S(i)
                          (reference :431-440, torch.multinomial, the lists kept in draw order)
    DCD_u = RRD's list-wise loss with U_u, in draw order, as the ranked list and O_u below it:
          = -sum_k [ s_{U_k} - log( sum_{l >= k} exp(s_{U_l}) + sum_{j in O_u} exp(s_j) ) ]

on the student's raw scores s (`rrd.rrd_loss`; reference `relaxed_ranking_loss`, :442-453, whose
flipped cumulative sums give the same sum over k): the items the student ranks too low are pushed
up above those it ranks too high. Both lists are redrawn at the start of every epoch from the
student's ranks at that moment (reference `do_something_in_each_epoch`). Batch loss, with U_b the
batch's distinct users (reference `get_loss`, :460-479, user side only), I_b its distinct
positive items and B its number of rows:

    L_KD = (1 / B) * [ sum_{u in U_b} DCD_u + item_weight * sum_{i in I_b} DCD_i ]

Defaults (woriazzc/KDs and woriazzc/RCEKD `configs/citeulike/bpr/dcd.yaml`): K=100, T=10,
top_n=500 (mxK), weight=0.01, item_weight=0 (the reference's user side only), teacher_order=False
(draw order), rank_unobserved=False (rank over all items). Loss scale: the reference sums DCD over
the batch's distinct users and its BPR base loss over the B rows; kdbench's base loss is the batch
mean and this loss divides the same sum by B, so both terms are the reference's / B and lambda
carries over unchanged: weight = 0.01 (exactly RRD's derivation, rrd.py).

Options (kdbench's earlier defaults, kept because each has a case; none is the published DCD):
- item_weight > 0: the paper's second correction, absent from the reference code: the same with
  users and items swapped (per item, the teacher's top-`top_n` users who did not interact with it,
  the student's rank of each, K under- and K over-estimated users, DCD_i on s(u, i)), its sum
  weighted by item_weight and divided by B alike.
- teacher_order=True: U_u sorted by teacher rank before the loss, so that the target is the
  teacher's ranking; draw order is a random order biased towards large discrepancies.
- rank_unobserved=True: r_S among the user's unobserved items, as r_T is. Over all items, r_S
  also counts the training items the student ranks above i, about all of them once it has learnt
  its training data: every discrepancy grows by about the user's number of training items, so
  more pool items look under-estimated (tanh saturates) and fewer over-estimated.

Deviations from the reference code, none changing the distribution or the value:
- Sampling is the exponential race in log space (`_sampling.race_without_replacement`), the same
  distribution as multinomial without replacement, in draw order; ranks are counted with binary
  searches (`knowledge.count_higher`) instead of two full argsorts, and only up to top_n + 20 T,
  beyond which tanh is 1.0 in float32 and the weights are the same as with the exact rank; the
  loss is RRD's overflow-safe form (the reference clamps scores at 80, which changes it above).
- The student's ranks are computed in eval mode (no dropout) and item 0 / user 0 (RecBole's
  padding) are never ranked or drawn. A user (item) with fewer than K unobserved items (users)
  in its pool is an error at prepare(); the reference's multinomial fails on it too.

Cost on CiteULike-t's shape (BPR:400 -> BPR:20, batch 2048, one CPU thread; benchmarks/
test_training_epoch.py): the student's full ranking of every user each epoch (as the reference
computes it) and 2K = 200 scored entries per distinct user of a batch.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.backbones import BackboneAdapter
from kdbench.errors import KdbenchError
from kdbench.search_space import CatalogueShare, IntRange, LogUniform
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies._sampling import race_without_replacement
from kdbench.strategies.base import DistillationContext, DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import scoring_mode, teacher_top_n, top_users, unseen_ranks, unseen_user_ranks
from kdbench.strategies.rrd import rrd_loss

MIN_PROBABILITY = 1e-5  # the reference's floor on every pool item's sampling weight
# tanh(x) is 1.0 in float32 for x >= 20 (1 - tanh(20) ~ 1e-17): a student rank beyond
# top_n + 20 T gives the same weights as the exact rank, so ranks are counted only up to there.
SATURATION = 20


def discrepancy_log_weights(student_ranks: torch.Tensor, limits: torch.Tensor, temperature: float,
                            under: bool) -> torch.Tensor:
    """log max(tanh(max(d / T, 0)), 1e-5) per pool position, d = r_S - r_T (under-estimated) or
    r_T - r_S (over-estimated), r_T = the position; -inf beyond each row's `limits`: (R, P)."""
    positions = torch.arange(student_ranks.shape[1])
    gap = (student_ranks - positions) if under else (positions - student_ranks)
    log_weights = gap.float().div_(temperature).clamp_(min=0).tanh_().clamp_(min=MIN_PROBABILITY).log_()
    return log_weights.masked_fill_(positions >= limits.view(-1, 1), -torch.inf)


def item_side_scores(adapter: BackboneAdapter, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    """Scores of items (B,) by each of their users (B, M) -> (B, M); differentiable
    (`_list_scores.list_scores` with the roles of users and items swapped)."""
    return list_scores(adapter, items, users, by_item=True)


@register_strategy(
    "dcd", family="ranking",
    paper="Lee & Kim, Dual Correction Strategy for Ranking Distillation in Top-N Recommender System, CIKM 2021",
    backbones=("general", "sequential"),
)
class DCD(DistillationStrategy):
    """Dual Correction Distillation; see the module docstring for the loss, defaults and weight."""

    defaults = {"weight": 0.01, "K": 100, "T": 10.0, "top_n": 500, "item_weight": 0.0, "teacher_order": False,
                "rank_unobserved": False}
    must_be_positive = ("K", "T", "top_n")
    # The pool as a share of the catalogue (the reference's 500 is 2% of CiteULike, 30% of ml-100k).
    # The item side is an option, not a knob: the published DCD (item_weight 0) is what is tuned.
    search_space = {"weight": LogUniform(1e-4, 1.0), "K": IntRange(10, 200, log=True), "T": LogUniform(1.0, 100.0),
                    "top_n": CatalogueShare(0.05, 0.5, min_items=200)}

    def __init__(self, context: DistillationContext, **hparams):
        super().__init__(context, **hparams)
        h = self.hparams
        if h["top_n"] < h["K"]:
            raise KdbenchError(f"strategy '{self.name}': top_n ({h['top_n']}) must be >= K ({h['K']})")
        self._generator = context.generator(offset=3)
        self.item_pool: torch.Tensor | None = None  # (n_users, P) teacher's top unobserved items
        self.item_limits: torch.Tensor | None = None  # (n_users,) positions of the pool that are unobserved
        self.user_pool: torch.Tensor | None = None  # (n_items, P') teacher's top users per item
        self.user_limits: torch.Tensor | None = None
        self.user_lists: torch.Tensor | None = None  # (n_users, 2K): K under- then K over-estimated items
        self.item_lists: torch.Tensor | None = None  # (n_items, 2K): the same in users, item side

    @property
    def item_side(self) -> bool:
        return self.hparams["item_weight"] > 0

    def prepare(self) -> None:
        ctx, h = self.context, self.hparams
        self.item_pool = teacher_top_n(ctx.teacher, ctx.history, h["top_n"])
        unobserved = (ctx.n_items - 1) - np.diff(ctx.history.indptr)
        self.item_limits = self._limits(unobserved, self.item_pool.shape[1], "user", "unobserved items")
        if self.item_side:
            self.user_pool = top_users(ctx.teacher, ctx.history, h["top_n"])
            non_users = (ctx.n_users - 1) - np.bincount(ctx.history.indices, minlength=ctx.n_items)
            self.user_limits = self._limits(non_users, self.user_pool.shape[1], "item",
                                            "users who did not interact with it")

    def _limits(self, available: np.ndarray, pool: int, entity: str, what: str) -> torch.Tensor:
        """Per row, how many pool positions hold eligible entries (row 0, RecBole's padding, gets
        the whole pool and is never used); an error if a real row has fewer than K."""
        k = self.hparams["K"]
        worst = int(np.argmin(available[1:])) + 1
        if available[worst] < k:
            hint = " or set item_weight=0 (user side only)" if entity == "item" else ""
            raise KdbenchError(f"strategy '{self.name}' needs K = {k} {what} per {entity}; {entity} {worst} "
                               f"has only {int(available[worst])}: lower K{hint}")
        limits = torch.from_numpy(np.minimum(available, pool)).long()
        limits[0] = pool
        return limits

    def on_epoch_start(self, epoch: int) -> None:
        if self.item_pool is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before training")
        ctx, h = self.context, self.hparams
        cap = h["top_n"] + int(np.ceil(SATURATION * h["T"]))
        # r_S over every item (the reference's), or over the unobserved ones (rank_unobserved)
        seen = ctx.history if h["rank_unobserved"] else sp.csr_matrix(ctx.history.shape, dtype=np.float32)
        with scoring_mode(ctx.student):
            item_ranks = unseen_ranks(ctx.student, seen, self.item_pool, cap=cap)
            user_ranks = unseen_user_ranks(ctx.student, seen, self.user_pool, cap=cap) if self.item_side else None
        self.user_lists = self.sample_lists(self.item_pool, item_ranks, self.item_limits).to(ctx.device)
        if self.item_side:
            self.item_lists = self.sample_lists(self.user_pool, user_ranks, self.user_limits).to(ctx.device)

    def sample_lists(self, pool: torch.Tensor, student_ranks: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
        """(R, 2K): per row, K under-estimated entries of `pool` (in draw order; in teacher order with
        teacher_order) then K over-estimated ones (in draw order), drawn by rank discrepancy."""
        h = self.hparams
        under = race_without_replacement(discrepancy_log_weights(student_ranks, limits, h["T"], True),
                                         h["K"], self._generator)
        over = race_without_replacement(discrepancy_log_weights(student_ranks, limits, h["T"], False),
                                        h["K"], self._generator)
        if h["teacher_order"]:
            under = under.sort(dim=1).values
        return pool.gather(1, torch.cat([under, over], dim=1))

    def loss(self, batch) -> torch.Tensor:
        if self.user_lists is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() and on_epoch_start() before loss()")
        ctx, k = self.context, self.hparams["K"]
        batch_users = self.batch_users(batch)
        users = batch_users.unique()
        scores = list_scores(ctx.student, users, self.user_lists[users])
        total = rrd_loss(scores[:, :k], scores[:, k:]).sum()
        if self.item_side:
            items = batch[ctx.iid_field].unique()
            scores = item_side_scores(ctx.student, items, self.item_lists[items])
            total = total + self.hparams["item_weight"] * rrd_loss(scores[:, :k], scores[:, k:]).sum()
        return total / batch_users.numel()
