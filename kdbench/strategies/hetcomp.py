"""HetComp: distillation from an ensemble of heterogeneous teachers through their training trajectories.

Kang, Kweon, Lee, Lee & Yu, "Distillation from Heterogeneous Models for Top-K Recommendation",
WWW 2023 (reference code SeongKu-Kang/HetComp_WWW23).

Ensemble: the pairing's teacher and the other teachers `teachers` names ('+'-separated; the
pairing's own teacher, if named, is not repeated). The default, BPR:64+LightGCN:64, gives the
default suite's BPR:64 and LightGCN:64 pairings each a BPR + LightGCN ensemble; the other teachers
are trained and cached as the pairing's teacher is, with its training settings and seed.

Knowledge. Each teacher x brings its trajectory (`kdbench.training.trajectory`): its top-K unobserved items
at epochs of its training. Of those, `checkpoints` lists per teacher, easy to hard: `checkpoints - 1` recorded epochs evenly
spaced from the first, then the converged (best) teacher's. Each user u follows, per teacher, its
own checkpoint v_x(u), all starting at the first. The ensemble's list of u is the top K of
    I(u, i) = sum_x exp(-r_x(u, i) / T)    (r: 0-based rank of i in x's list at v_x(u), absent: 0)
and its observed list the top K // 10 of the same sum over the teachers' rankings of u's training items.

Dynamic knowledge construction (DKC), every `p` epochs from epoch `warmup` on: with
d_x(u, c) = 1 - NDCG@50 of the student's top-50 against x's checkpoint-c top-50 (gain
2^exp(-t/10) - 1 at the student's rank t), the first call stores D = d_x(u, v + 1); later, u moves
to v + 1 when D / d_x(u, v + 1) > alpha * 0.995^(epoch // p) (the student caught up) or < 1, and
then D = d_x(u, v + 2). The next checkpoint is the last one's at most.

Adaptive knowledge transfer: with s the student's scores (clamped to [-40, 40]), P the observed
list, Q the ensemble list and Z_A = sum of e^s over u's unobserved items outside A,
- while any teacher's mean checkpoint is below its last (by more than 0.005): the overall ranking
      L = - sum_{j in P + Q} [s_j - log(e^s_j + Z_Q)]        (every listed item above the rest);
- then, half as heavily (the reference's 0.005 against 0.01), Plackett-Luce over the orders
      L = PL(P; Z_Q[:K/2]) + (PL(Q[:K/2]; Z_Q[:K/2]) + PL(Q[:K/10]; Z_Q[:K/10])) / 2,
      PL(l; Z) = - sum_t [s_l_t - log(sum_{t' >= t} e^s_l_t' + Z)].
Both are averaged over the batch's distinct users.

Defaults, from the reference's main.py: weight 0.01 (its KD factor), K = 100, 4 checkpoints per
teacher, alpha = 1.05, p = 10, warmup 10 (its first DKC at epoch 10); T = 10, the temperature of its
DKC gain (the ensemble's own is not published). The search space: weight log-uniform [1e-4, 1],
alpha [1, 1.2], p [5, 20], T log-uniform [1, 100]. On ml-100k (BPR:32 + LightGCN:32 -> BPR:4,
40-epoch cap, p = warmup = 5) DKC moved the users to the last checkpoints within about 20 epochs.

Deviations from the reference: the student keeps its own base loss (the reference trains on the KD
loss alone) and the loss is averaged over users (the reference sums them); checkpoints are evenly
spaced recorded epochs (every 5, `kdbench.training.trajectory`) up to the teacher's best, not hand-picked;
the ensemble weighs teachers equally (the reference's per-user importance of each teacher is
precomputed offline and not published); the student's negatives are RecBole's, without the
reference's exclusion of hidden positives; DKC distances are not rounded to 4 digits; DKC runs at
the start of epoch e + 1 for the reference's end of epoch e; kdbench's early stopping is held
until the list-wise phase (`holds_early_stopping`), as a curriculum stopped on a mid-curriculum
plateau is not the method's model (on ml-100k, BPR:64 -> BPR:5, patience 10 stopped a run at epoch
42 with the users at checkpoint 2.8 of 3 and test NDCG@10 0.174 against scratch's 0.24). General backbones only: the trajectories
are per-user top-K lists over the users' training histories, which the sequential protocol's
queries do not have.

Cost: Z_A needs the student's score of every unobserved item for every batch user. For a
dot-product student (BPR, LightGCN, NGCF) Z is formed block by block of users (`_exp_sum.py`), the
same value without autograd's (users x items) tables; other students take the dense path. On
CiteULike-t's shape (BPR:400 -> BPR:20, batch 2048, one thread, beside two other single-thread jobs)
an epoch of the first phase fell from 55-66 s (dense, 250-310x scratch's) to 12 s (55x): what is
left is the method's own arithmetic, three (users x items x d) products per batch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from kdbench.errors import KdbenchError
from kdbench.search_space import IntRange, LogUniform, Uniform
from kdbench.strategies._exp_sum import unobserved_exp_sum
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import scoring_mode, teacher_top_n

TRAJECTORY_K = 100  # the recorded lists' length (kdbench.training.trajectory.K)
DKC_K = 50  # the NDCG cut-off of DKC's distance
DECAY = 0.995  # DKC's threshold decay per p epochs
CLAMP = 40.0
CHUNK = 1024  # users per block of the ensemble's and DKC's pairwise comparisons


def ensemble_top(lists: list[torch.Tensor], k: int, temperature: float) -> torch.Tensor:
    """The top k of I(u, i) = sum over lists of exp(-rank / T) per row (lists (U, L) of item ids,
    0 = padding, never chosen): (U, k) ids, 0 where a row has fewer than k items. Ties: the earlier
    list and rank first."""
    ids = torch.cat(lists, dim=1)
    weights = torch.cat([torch.exp(-torch.arange(part.shape[1], dtype=torch.float32) / temperature)
                         for part in lists]).expand(len(ids), -1)
    out = torch.zeros((len(ids), k), dtype=torch.long)
    for start in range(0, len(ids), CHUNK):
        block, w = ids[start : start + CHUNK], weights[start : start + CHUNK]
        same = block.unsqueeze(2) == block.unsqueeze(1)  # (B, M, M)
        total = (same * w.unsqueeze(1)).sum(2)
        repeated = same.tril(-1).any(2)  # an earlier entry holds the same item
        total = total.masked_fill(repeated | (block == 0), -torch.inf)
        values, order = total.sort(dim=1, descending=True, stable=True)
        chosen = block.gather(1, order[:, :k]).masked_fill(torch.isinf(values[:, :k]), 0)
        out[start : start + CHUNK, : chosen.shape[1]] = chosen
    return out


def ndcg_distance(student_top: torch.Tensor, teacher_top: torch.Tensor) -> torch.Tensor:
    """1 - NDCG of each row's student list against the teacher's set, gain 2^exp(-t/10) - 1 at the
    student's rank t (the reference's `get_NDCG_u`): (U,)."""
    k = student_top.shape[1]
    t = torch.arange(k, dtype=torch.float64)
    gain = (2 ** torch.exp(-t / 10) - 1) / torch.log2(t + 2)
    hits = torch.cat([(s.unsqueeze(2) == q.unsqueeze(1)).any(2) for s, q in
                      zip(student_top.split(CHUNK), teacher_top.split(CHUNK))])
    return 1 - (hits.double() * gain).sum(1) / gain.sum()


def dkc_update(v: torch.Tensor, last: torch.Tensor, final: torch.Tensor, distance, threshold: float,
               first: bool) -> None:
    """One DKC step, in place: v (X, U) each user's checkpoint per teacher, last (X, U) the stored
    distance D, final (X,) each teacher's last checkpoint, distance(x, c) (U,) the student's
    distance to teacher x's checkpoint c (U,). See the module docstring."""
    for x in range(len(v)):
        ahead = distance(x, (v[x] + 1).clamp(max=int(final[x])))
        if first:
            last[x] = ahead
            continue
        ratio = last[x] / ahead.clamp(min=1e-12)
        move = (v[x] < final[x]) & ((ratio > threshold) | (ratio < 1))
        v[x] += move.long()
        if move.any():
            last[x] = torch.where(move, distance(x, (v[x] + 1).clamp(max=int(final[x]))), last[x])


def _suffix_log(exp_list: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """log(sum_{t' >= t} e_t' + rest) per position, clamped as the reference (>= 1e-5)."""
    return torch.log(torch.clamp(exp_list.flip(1).cumsum(1).flip(1) + rest, min=1e-5))


def plackett_luce(s: torch.Tensor, valid: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """PL(l; Z) per row: - sum over valid t of [s_t - log(sum_{valid t' >= t} e^s_t' + Z)]."""
    return -((s - _suffix_log(s.exp() * valid, rest)) * valid).sum(1)


def hetcomp_loss(scores: torch.Tensor, unobserved: torch.Tensor, pos: torch.Tensor, top: torch.Tensor,
                 final: bool) -> torch.Tensor:
    """The per-user HetComp loss (module docstring), averaged: scores (B, N) the student's,
    unobserved (B, N) bool, pos (B, P) observed ids (0: none), top (B, K) ensemble ids."""
    s = scores.clamp(-CLAMP, CLAMP)
    total = (s.exp() * unobserved).sum(1, keepdim=True)
    return listed_loss(total, s.gather(1, pos), (pos != 0).float(), s.gather(1, top), final)


def listed_loss(total: torch.Tensor, s_pos: torch.Tensor, valid: torch.Tensor, s_top: torch.Tensor,
                final: bool) -> torch.Tensor:
    """hetcomp_loss from Z = total (B, 1), the sum of e^s over each user's unobserved items, and the
    clamped scores of the observed list s_pos (B, P; valid: 1 where listed) and of the ensemble's s_top (B, K)."""
    if not final:
        rest = total - s_top.exp().sum(1, keepdim=True)
        listed = torch.cat([s_pos, s_top], 1)
        mask = torch.cat([valid, torch.ones_like(s_top)], 1)
        return -((listed - torch.log(torch.clamp(rest + listed.exp(), min=1e-5))) * mask).sum(1).mean()
    half, sub = s_top[:, : max(1, s_top.shape[1] // 2)], s_top[:, : max(1, s_top.shape[1] // 10)]
    rest_half = total - half.exp().sum(1, keepdim=True)
    rest_sub = total - sub.exp().sum(1, keepdim=True)
    ones = torch.ones_like
    loss = plackett_luce(s_pos, valid, rest_half) + (plackett_luce(half, ones(half), rest_half)
                                                     + plackett_luce(sub, ones(sub), rest_sub)) / 2
    return 0.5 * loss.mean()


def select_checkpoints(trajectory: dict[str, torch.Tensor], n: int, k: int) -> torch.Tensor:
    """At most n of a trajectory's lists, easy to hard: n - 1 recorded epochs evenly spaced from the
    first, then the best weights' list: (c, n_users, k) long, 1 <= c <= n."""
    recorded = len(trajectory["top"]) - 1
    picks = np.unique(np.round(np.linspace(0, recorded - 1, n - 1)).astype(int)) if recorded and n > 1 else []
    return torch.stack([trajectory["top"][int(i)] for i in picks] + [trajectory["top"][-1]])[:, :, :k].long()


@register_strategy("hetcomp", family="ranking", paper="Kang et al., HetComp, WWW 2023", backbones=("general",))
class HetComp(DistillationStrategy):
    """Easy-to-hard ranking knowledge of a heterogeneous ensemble's trajectories; see the module docstring."""

    defaults = {"weight": 0.01, "teachers": "BPR:64+LightGCN:64", "K": 100, "checkpoints": 4, "T": 10.0,
                "alpha": 1.05, "p": 10, "warmup": 10}
    search_space = {"weight": LogUniform(1e-4, 1.0), "alpha": Uniform(1.0, 1.2), "p": IntRange(5, 20),
                    "T": LogUniform(1.0, 100.0)}
    must_be_positive = ("K", "checkpoints", "T", "alpha", "p")
    needs_trajectories = True

    @classmethod
    def resolve_hparams(cls, given: dict[str, Any]) -> dict[str, Any]:
        """As the base's, `teachers` aside: the other teachers' backbone specs joined by '+' (read
        as text; `run.validation` parses them before anything trains)."""
        given = dict(given)
        teachers = given.pop("teachers", cls.defaults["teachers"])
        names = [part.strip() for part in str(teachers).split("+")]
        if not all(names):
            raise KdbenchError(f"hyperparameter 'teachers' of strategy '{cls.name}' must name one or more "
                               f"backbones joined by '+' (e.g. LightGCN:64), got '{teachers}'")
        return super().resolve_hparams(given) | {"teachers": "+".join(names)}

    @classmethod
    def ensemble_teachers(cls, hparams: dict[str, Any]) -> tuple[str, ...]:
        return tuple(hparams["teachers"].split("+"))

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], n_users: int, n_items: int) -> None:
        """The K-item lists are cut from the recorded top-100 (of the n_items - 1 real items); K // 10
        is the observed list's length."""
        limit = min(TRAJECTORY_K, n_items - 1)
        if not 10 <= hparams["K"] <= limit:
            raise KdbenchError(f"hyperparameter 'K' of strategy '{cls.name}' must be in [10, {limit}] (the "
                               f"teachers' recorded top-{TRAJECTORY_K} on {n_items} items), got {hparams['K']}")

    @classmethod
    def knowledge_bytes(cls, hparams: dict[str, Any], n_users: int, n_items: int, teacher_dim: int) -> int:
        """The selected checkpoints' lists of every teacher (int64)."""
        teachers = 1 + len(cls.ensemble_teachers(hparams))
        return teachers * hparams["checkpoints"] * n_users * min(hparams["K"], n_items) * 8

    def prepare(self) -> None:
        trajectories = self.context.trajectories
        if not trajectories:
            raise KdbenchError(f"strategy '{self.name}' learns from its teachers' trajectories: run it through "
                               "the runner (`kdbench run`/`tune`), which records them")
        k = self.hparams["K"]
        self.lists = [select_checkpoints(t, self.hparams["checkpoints"], k) for t in trajectories]
        self.final = torch.tensor([len(lists) - 1 for lists in self.lists])
        self.v = torch.zeros((len(self.lists), self.context.n_users), dtype=torch.long)
        self.last = torch.ones((len(self.lists), self.context.n_users), dtype=torch.float64)
        self.dkc_calls = 0
        self.observed = ensemble_top([t["observed"] for t in trajectories], max(1, k // 10), self.hparams["T"])
        self.top = self.ensemble_lists()
        self.listwise = self.final_phase()

    def final_phase(self) -> bool:
        """Every teacher's mean checkpoint (over real users) within 0.005 of its last one: the
        reference's switch to the list-wise loss (its mean rounded to 2 digits)."""
        return bool((self.v[:, 1:].double().mean(1) >= self.final.double() - 0.005).all())

    def holds_early_stopping(self) -> bool:
        """Until the final (list-wise) phase: the student learns the teachers' easier, earlier
        rankings first, and its validation score while it does says nothing about the method's model."""
        return not self.listwise

    def ensemble_lists(self) -> torch.Tensor:
        users = torch.arange(self.context.n_users)
        current = [lists[self.v[x], users] for x, lists in enumerate(self.lists)]
        return ensemble_top(current, self.hparams["K"], self.hparams["T"])

    def on_epoch_start(self, epoch: int) -> None:
        """DKC after every p-th completed epoch from `warmup` on, until the last checkpoints."""
        done, p = epoch - 1, self.hparams["p"]
        if done < self.hparams["warmup"] or done % p or self.listwise:
            return
        k = min(DKC_K, self.hparams["K"])
        with scoring_mode(self.context.student) as student:
            student_top = teacher_top_n(student, self.context.history, k)
        users = torch.arange(self.context.n_users)

        def distance(x: int, checkpoint: torch.Tensor) -> torch.Tensor:
            return ndcg_distance(student_top, self.lists[x][checkpoint, users, :k])

        threshold = self.hparams["alpha"] * DECAY ** (done // p)
        dkc_update(self.v, self.last, self.final, distance, threshold, first=self.dkc_calls == 0)
        self.dkc_calls += 1
        self.top = self.ensemble_lists()
        self.listwise = self.final_phase()
        means = ", ".join(f"{value:.2f}/{int(last)}" for value, last in zip(self.v[:, 1:].double().mean(1), self.final))
        logging.getLogger("kdbench").info("hetcomp DKC after epoch %d: mean checkpoint per teacher %s%s", done,
                                          means, " (list-wise from now on)" if self.listwise else "")

    def loss(self, batch) -> torch.Tensor:
        users = torch.unique(self.batch_users(batch))
        rows = users.cpu()
        student = self.context.student
        pos, top = self.observed[rows].to(users.device), self.top[rows].to(users.device)
        if student.card.dot_product:  # Z block by block (_exp_sum.py): the same value, no (B, N) tables
            user_table, item_table = student.representation_tables()
            total = unobserved_exp_sum(user_table[users], item_table, self.context.history, rows.numpy(), CLAMP)
            listed = list_scores(student, users, torch.cat([pos, top], 1)).clamp(-CLAMP, CLAMP)
            s_pos, s_top = listed.split([pos.shape[1], top.shape[1]], 1)
            return listed_loss(total.unsqueeze(1), s_pos, (pos != 0).float(), s_top, self.listwise)
        scores = student.full_scores(users)
        unobserved = torch.from_numpy(self.context.history[rows.numpy()].toarray() == 0)
        unobserved[:, 0] = False  # RecBole's padding item
        return hetcomp_loss(scores, unobserved.to(scores.device), pos, top, self.listwise)
