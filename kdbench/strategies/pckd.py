"""PCKD: Preference-Consistent Knowledge Distillation, DE's feature distillation plus a regulariser
that keeps the projector from changing the student's preference order.

Zhu & Zhang, "Preference-Consistent Knowledge Distillation for Recommender System", IEEE TKDE 2025
(arXiv 2311.04549); reference code woriazzc/KDs `modeling/KD/cf/playground.py`, class `CPD`
(a subclass of its `DE`), config `configs/citeulike/bpr/cpd.yaml`.
"""

from __future__ import annotations

import numpy as np
import torch

from kdbench.errors import KdbenchError
from kdbench.search_space import CatalogueShare, IntRange, LogUniform
from kdbench.strategies._sampling import race_without_replacement
from kdbench.strategies.base import register_strategy
from kdbench.strategies.de import DE, ExpertBank, gate_weights, gumbel_noise, mix_experts
from kdbench.strategies.knowledge import teacher_top_n


def preference_consistency(pre: torch.Tensor, post: torch.Tensor, tau: float) -> torch.Tensor:
    """Per row, CE(softmax(pre / tau), softmax(post / tau)) = -sum_q p_q log softmax(post / tau)_q,
    p = softmax(pre / tau): the student's own scores `pre` (R, Q) are the target of the projected
    scores `post` (R, Q). -> (R,)."""
    target = torch.softmax(pre / tau, dim=-1)
    return -(target * torch.log_softmax(post / tau, dim=-1)).sum(dim=-1)


def rank_log_weights(pool_size: int, temperature: float) -> torch.Tensor:
    """log p(r) = -r / T for the 1-based ranks r of the teacher's list (unnormalised): (P,)."""
    return -torch.arange(1, pool_size + 1, dtype=torch.float32) / temperature


@register_strategy("pckd", family="feature",
                   paper="Zhu & Zhang, Preference-Consistent Knowledge Distillation for Recommender System, TKDE 2025")
class PCKD(DE):
    """L_PCKD = (1/B) [ DE_sum + alpha * sum_{b in batch rows} R_{u_b} ],

    DE_sum the Distillation Experts term over the batch's distinct users, positive and negative
    items (DE's, see de.py: L_DE = DE_sum / B), and the preference-consistency regulariser

        R_u = CE( softmax(<s_u, s_q>_q / tau_ce), softmax(<P_u(s_u), P_i(s_q)>_q / tau_ce) ),

    over the Q items q drawn for user u this epoch: P_u / P_i the DE projectors (experts mixed by
    the Gumbel-softmax selection of the teacher's representation, fresh noise), s the student's
    representations DETACHED. The regulariser therefore trains only the projectors (experts and
    selection nets): it makes the projected student rank the items as the student itself does,
    so that what DE fits to the teacher is the student's own preference order. The Q items are
    drawn per user each epoch without replacement from the teacher's top mxK (training items
    masked), rank r (1-based) with p ~ exp(-r / T): the "rank" sampling guided by the teacher.

    Defaults: woriazzc/KDs `configs/citeulike/bpr/cpd.yaml` (teacher BPR, student BPR):
    weight = 0.05 (line 6, lmbda), alpha = 0.1 (:12), num_experts = 30 (:10), T_end = 1e-10 (:8),
    T_start = 1 (end_T * anneal_size, :8-9), anneal_epochs = 1000 (its epochs, :2; KDs anneals over
    the whole run as DE does), sample type "rank" (:13) guided by the teacher (:15) with T = 10 (:18)
    and mxK = 100 (:19), list-wise regulariser (:14) with Q = 5 (:22) and tau_ce = 0.1 (:23).

    Loss scale: KDs sums its BPR over the B batch rows, DE over the distinct entities and the
    regulariser over the B rows, and weights the sum DE + alpha * reg by lmbda; here both are
    divided by B like kdbench's mean base loss, so lmbda and alpha carry over unchanged.

    Deviations from KDs `CPD`:
    - the teacher's top mxK excludes the user's training items (kdbench's convention for teacher
      lists; KDs ranks every item and leaves the masking as a TODO);
    - R is computed once per distinct user of the batch and weighted by how many rows hold it (the
      same sum), and each distinct user / item gets one Gumbel draw per step (KDs draws per row /
      per occurrence): the same expectation, less work;
    - DE's deviations (seeded Gumbel noise, log_softmax, KDs' temperature indexing): see DE;
      the projections use DE's `mix_experts` (its hand-written backward, and only the selected
      experts once the selection is hard: the same values, see DE);
    - only KDs' default branch is implemented (rank sampling guided by the teacher, list-wise
      regulariser); its "pair" regulariser and uniform / batch / student-guided sampling are not.
    """

    defaults = {**DE.defaults, "weight": 0.05, "alpha": 0.1, "Q": 5, "tau_ce": 0.1, "T": 10.0, "mxK": 100}
    must_be_positive = (*DE.must_be_positive, "Q", "tau_ce", "T", "mxK")
    search_space = {"weight": LogUniform(1e-4, 1.0), "anneal_epochs": IntRange(5, 500, log=True),
                    "alpha": LogUniform(1e-3, 10.0), "tau_ce": LogUniform(0.01, 1.0),
                    "mxK": CatalogueShare(0.02, 0.3, min_items=50)}

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        h = self.hparams
        if h["mxK"] < h["Q"]:
            raise KdbenchError(f"strategy '{self.name}': mxK ({h['mxK']}) must be >= Q ({h['Q']}): "
                               "the Q items are drawn from the teacher's top mxK")
        self._pool: torch.Tensor | None = None  # (n_users, mxK) teacher's top list, CPU
        self._sample_generator = context.generator(offset=3)
        self.sampled: torch.Tensor | None = None  # (n_users, Q) this epoch's items, on context.device

    def prepare(self) -> None:
        super().prepare()
        ctx, h = self.context, self.hparams
        unseen = (ctx.n_items - 1) - np.diff(ctx.history.indptr)
        if unseen.min() < h["mxK"]:
            user = int(np.argmin(unseen))
            raise KdbenchError(f"strategy '{self.name}' needs mxK = {h['mxK']} items outside each user's "
                               f"training items; user {user} has only {int(unseen[user])}: lower mxK")
        self._pool = teacher_top_n(ctx.teacher, ctx.history, h["mxK"])

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if self._pool is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before training")
        h = self.hparams
        log_weights = rank_log_weights(self._pool.shape[1], h["T"]).expand(len(self._pool), -1)
        ranks = race_without_replacement(log_weights, h["Q"], self._sample_generator)
        self.sampled = self._pool.gather(1, ranks).to(self.context.device)

    def project(self, ids: torch.Tensor, student_table: torch.Tensor, teacher_table: torch.Tensor,
                experts: ExpertBank, selection: torch.nn.Module) -> torch.Tensor:
        """P(s_e) = sum_m alpha_m E_m(s_e) for each id, the student's representation detached: (n,) -> (n, d_t)."""
        gate_logits = selection(teacher_table[ids])
        gumbel = gumbel_noise(tuple(gate_logits.shape), self.generator).to(gate_logits.device)
        alpha = gate_weights(gate_logits, self.temperature, gumbel)
        return mix_experts(experts, student_table[ids].detach(), alpha)

    def regulariser(self, batch) -> torch.Tensor:
        """sum over batch rows of R_u (see the class docstring)."""
        if self.sampled is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() and on_epoch_start() before loss()")
        users, counts = torch.unique(self.batch_users(batch), return_counts=True)
        items = self.sampled[users]  # (U, Q)
        item_ids, slots = torch.unique(items, return_inverse=True)
        student_users, student_items = self.context.student.representation_tables()
        s_users, s_items = student_users[users].detach(), student_items[item_ids].detach()
        pre = torch.einsum("ud,uqd->uq", s_users, s_items[slots])
        p_users = self.project(users, student_users, self.teacher_users, self.user_experts, self.user_selection)
        p_items = self.project(item_ids, student_items, self.teacher_items, self.item_experts, self.item_selection)
        post = torch.einsum("ud,uqd->uq", p_users, p_items[slots])
        return (preference_consistency(pre, post, self.hparams["tau_ce"]) * counts).sum()

    def loss(self, batch) -> torch.Tensor:
        de_term = super().loss(batch)  # DE_sum / B
        if self.hparams["alpha"] == 0:
            return de_term
        return de_term + self.hparams["alpha"] * self.regulariser(batch) / self.batch_users(batch).numel()
