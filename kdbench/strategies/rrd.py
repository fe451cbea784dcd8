"""RRD, Relaxed Ranking Distillation (Kang, Hwang, Kweon & Yu, "DE-RRD: A Knowledge Distillation
Framework for Recommender System", CIKM 2020; reference code SeongKu-Kang/DE-RRD_CIKM20,
`Utils/loss.py` and `Utils/dataset.py::implicit_CF_dataset_URRD.URRD_sampling`), and its top-K
variant `rrd-topk` (the same authors' later recommendation, README of that repository and
Kang et al., "Distillation from Heterogeneous Models for Top-K Recommendation", WWW 2023).

Per user u, with the teacher's top-`top_n` list of items u has not interacted with in training:

    interesting pi_1..pi_K:  K ranks drawn WITHOUT replacement with p(r) ~ exp(-r / T), r = 1..top_n,
                             sorted by teacher rank (rrd-topk: the teacher's top K, no sampling)
    uninteresting Unint:     L items drawn uniformly without replacement from the items that are
                             neither training items of u nor in the teacher's top-`top_n`
    RRD_u = -sum_k [ s_{pi_k} - log( sum_{l >= k} exp(s_{pi_l}) + sum_{j in Unint} exp(s_j) ) ]

on the student's raw scores s (a Plackett-Luce likelihood of the interesting items' order, with
every uninteresting item ranked below all of them, their own order left free). Both sets are
redrawn for every user at the start of every epoch, as in the reference.

Batch loss: RRD is applied to the batch's unique users, as in the reference, and summed over
them; the sum is divided by the batch size B (rows of the batch):

    L_KD = (1 / B) * sum_{u in unique users of the batch} RRD_u

Defaults (DE-RRD code, `main_URRD.py`): K=40, L=40, T=10, top_n=500 (hard-coded there),
weight = 0.001. How the weight carries over: the reference minimises, per batch of B rows,
    J_ref = sum_rows BPR_row + lambda * sum_{u in U_b} RRD_u,           lambda = 0.001,
i.e. a SUM of the base BPR loss, while kdbench's trainer minimises
    J = (1 / B) * sum_rows BPR_row + weight * L_KD       (RecBole's BPR loss is the MEAN)
      = (1 / B) * [ sum_rows BPR_row + weight * sum_{u in U_b} RRD_u ].
With weight = lambda, J = J_ref / B: the same objective up to a constant factor that Adam is
invariant to, for any batch size and dataset, so weight = 0.001 unchanged. (Had L_KD been the
mean over the batch's users instead, the equivalent weight would be lambda * |U_b| / B, which
depends on the data: |U_b| / B = 0.34 on ml-100k with B = 2048, i.e. weight 0.00034 there.)
At initialisation (all scores near 0) RRD_u = sum_{m=1..40} log(m + 40) = 163, so weight * L_KD
is 0.001 * 163 * 0.34 = 0.055 against BPR's log 2 = 0.69 on ml-100k. The DE-RRD defaults are
preferred to woriazzc/KDs' (K=100, L=200, lambda 0.1 / 0.005, whose base loss reduction differs)
as the authors' own setting.

Deviations from the reference code, each leaving the distribution or the value unchanged:
- Interesting ranks: the reference calls torch.multinomial(exp(-r/T), K, replacement=False),
  which torch computes as the top-K of p_r / E_r with E_r ~ Exp(1) (an exponential race). We
  run the same race in log space, top-K of (-r/T - log E_r), so that a small T cannot underflow
  exp(-r/T) to 0 (which makes multinomial fail). Same distribution.
- Uninteresting items: the reference calls torch.multinomial on a dense users x items 0/1 mask.
  We draw by rejection (`_sampling.sample_allowed`, distinct): the same uniform distribution over
  L-subsets, in memory O(nnz + users * top_n) instead of users x items.
- The loss is the reference's exp().cumsum().log() with the log-sum-exp shift (row maximum) and
  float64 sums: the same value, without overflow for large scores (woriazzc/KDs clamps scores
  at 80 instead, which changes the loss).
- The pool size `top_n` is a hyperparameter (the reference hard-codes 500; KDs calls it mxK).
- Item 0 (RecBole's padding) is never drawn; a user with fewer than top_n + L unseen items is
  an error at prepare() (the reference's multinomial fails on such a user too).
"""

from __future__ import annotations

import numpy as np
import torch

from kdbench.errors import KdbenchError
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies._sampling import ItemExclusions, sample_allowed
from kdbench.search_space import CatalogueShare, IntRange, LogUniform
from kdbench.strategies.base import DistillationContext, DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import MAX_CELLS, teacher_top_n


def rrd_loss(interesting: torch.Tensor, uninteresting: torch.Tensor) -> torch.Tensor:
    """Per-user RRD loss (B,) from student scores of interesting (B, K), in teacher order, and
    uninteresting (B, L) items: -sum_k [s_k - log(sum_{l>=k} e^{s_l} + sum_j e^{s_j})].

    The log-sum-exp trick: scores are shifted by their row's maximum, exponentiated and summed
    from the bottom of the list in float64, so nothing overflows and a sum underflows only if
    all its terms lie more than ~700 below the row's maximum (then it is clamped, not -inf).
    Same value as torch.logcumsumexp / logaddexp, about 7x faster on CPU.
    """
    shift = interesting.detach().amax(dim=1, keepdim=True)
    if uninteresting.shape[1]:
        shift = torch.maximum(shift, uninteresting.detach().amax(dim=1, keepdim=True))
    suffix = (interesting - shift).double().exp().flip(1).cumsum(dim=1).flip(1)
    rest = (uninteresting - shift).double().exp().sum(dim=1, keepdim=True)
    below = (suffix + rest).clamp_min(torch.finfo(torch.float64).tiny).log().to(interesting.dtype) + shift
    return (below - interesting).sum(dim=1)


def sample_interesting_ranks(
    n_rows: int, pool_size: int, k: int, temperature: float, generator: torch.Generator,
    max_cells: int = MAX_CELLS,
) -> torch.Tensor:
    """(n_rows, k) distinct 0-based ranks per row, ascending; rank r (1-based) drawn with
    p ~ exp(-r / T), without replacement (the exponential race, in log space)."""
    log_weight = -torch.arange(1, pool_size + 1, dtype=torch.float32) / temperature
    out = torch.empty((n_rows, k), dtype=torch.long)
    rows = max(1, max_cells // pool_size)
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        # keys = log p_r - log E_r with E_r = -log U_r ~ Exp(1): the race's winners, in place.
        keys = torch.rand((stop - start, pool_size), generator=generator).log_().neg_().log_()
        keys.neg_().add_(log_weight)
        out[start:stop] = keys.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    return out


@register_strategy(
    "rrd", family="ranking",
    paper="Kang et al., DE-RRD: A Knowledge Distillation Framework for Recommender System, CIKM 2020",
    backbones=("general", "sequential"), file_teacher="top_n",
)
class RRD(DistillationStrategy):
    """Relaxed Ranking Distillation; see the module docstring for the loss, defaults and weight."""

    defaults = {"weight": 0.001, "K": 40, "L": 40, "T": 10.0, "top_n": 500}
    must_be_positive = ("K", "T")
    # The pool is a share of the catalogue (the reference's 500 is 2% of CiteULike, 30% of ml-100k),
    # never smaller than the largest K; the weight spans the per-row vs per-distinct-user gap.
    search_space = {"weight": LogUniform(1e-4, 1.0), "K": IntRange(5, 100, log=True), "L": IntRange(5, 100, log=True),
                    "T": LogUniform(1.0, 100.0), "top_n": CatalogueShare(0.02, 0.5, min_items=100)}

    def __init__(self, context: DistillationContext, **hparams):
        super().__init__(context, **hparams)
        h = self.hparams
        if h["top_n"] < h["K"]:
            raise KdbenchError(
                f"strategy '{self.name}': top_n ({h['top_n']}) must be >= K ({h['K']}): "
                "the interesting items come from the teacher's top_n"
            )
        self._pool: torch.Tensor | None = None  # (n_users, top_n) teacher's list, CPU
        self._excluded: ItemExclusions | None = None  # training items + teacher's top_n
        self._generator: torch.Generator | None = None
        self.interesting: torch.Tensor | None = None  # (n_users, K), CPU, this epoch's
        self.uninteresting: torch.Tensor | None = None  # (n_users, L), CPU, this epoch's
        self._items: torch.Tensor | None = None  # both side by side on context.device

    def prepare(self) -> None:
        ctx, h = self.context, self.hparams
        unseen = (ctx.n_items - 1) - np.diff(ctx.history.indptr)
        needed = h["top_n"] + h["L"]
        if unseen.min() < needed:
            user = int(np.argmin(unseen))
            raise KdbenchError(
                f"strategy '{self.name}' needs top_n + L = {needed} items outside each user's training "
                f"items; user {user} has only {int(unseen[user])}: lower top_n or L"
            )
        self._pool = teacher_top_n(ctx.teacher, ctx.history, h["top_n"])
        self._excluded = ItemExclusions(ctx.history, extra=self._pool)
        self._generator = ctx.generator()

    def on_epoch_start(self, epoch: int) -> None:
        if self._pool is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before training")
        users = torch.arange(self.context.n_users)
        interesting = self.sample_interesting()
        uninteresting = sample_allowed(self._excluded, users, self.hparams["L"], self._generator, distinct=True)
        self.interesting, self.uninteresting = interesting, uninteresting
        self._items = torch.cat([interesting, uninteresting], dim=1).to(self.context.device)

    def sample_interesting(self) -> torch.Tensor:
        """(n_users, K) item ids, in teacher order: K ranks drawn from the teacher's top_n."""
        h = self.hparams
        ranks = sample_interesting_ranks(len(self._pool), self._pool.shape[1], h["K"], h["T"], self._generator)
        return self._pool.gather(1, ranks)

    def loss(self, batch) -> torch.Tensor:
        if self._items is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() and on_epoch_start() before loss()")
        batch_users = self.batch_users(batch)
        users = batch_users.unique()
        scores = list_scores(self.context.student, users, self._items[users])
        k = self.hparams["K"]
        return rrd_loss(scores[:, :k], scores[:, k:]).sum() / batch_users.numel()


@register_strategy(
    "rrd-topk", family="ranking",
    paper="RRD with the teacher's top-K as interesting items (Kang et al., WWW 2023; DE-RRD_CIKM20 README)",
    backbones=("general", "sequential"), file_teacher="top_n",
)
class RRDTopK(RRD):
    """RRD whose interesting items are the teacher's top K themselves, with no rank sampling.

    The DE-RRD authors later found the rank sampling unnecessary and taking the top K directly
    better (DE-RRD_CIKM20 README, "Update"; WWW 2023). Everything else is RRD's: the same loss,
    uninteresting items redrawn each epoch outside the teacher's top_n, the same defaults and
    weight derivation (module docstring); T is unused here.
    """

    search_space = {k: v for k, v in RRD.search_space.items() if k != "T"}

    def sample_interesting(self) -> torch.Tensor:
        return self._pool[:, : self.hparams["K"]].clone()
