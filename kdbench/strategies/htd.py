"""HTD, Hierarchical Topology Distillation (Kang, Hwang, Kweon & Yu, "Topology Distillation for
Recommender System", KDD 2021; reference code SeongKu-Kang/Topology_Distillation_KDD21,
`model.py::HTD` and `run.py::run_HTD`, re-implemented in woriazzc/KDs `baseline.py`, class `HTD`).

A small student cannot hold the teacher's whole similarity structure (FTD, ftd.py); HTD splits it.
The teacher's representations are assigned to K user groups and K item groups by learnt selection
nets; the student learns the topology inside each group and between the groups' prototypes:

    group (hard)   z_e = argmax v(t_e)            v = Linear(d_t, K) + softmax, per entity type
    GA (learns v)  sum_e || t_e - sum_k alpha_ek f_k(s_e) ||^2,
                   alpha_e = softmax((log v(t_e) + g) / T), g ~ Gumbel(0, 1), T annealed,
                   f_k an MLP [d_s, (d_s + d_t) / 2, d_t] per group (the DE experts, de.py)
    TD             sum_g sum_{e, f in g, cos(t_e, t_f) > 0} (cos(s_e, s_f) - cos(t_e, t_f))^2  (entity level)
                 + sum_{g present} sum_e (cos(P^s_g, s_e) - cos(P^t_g, t_e))^2     (group level)
                   P^s_g / P^t_g = the mean student / teacher representation of group g's members
                   in the batch (no gradient through the prototypes)
    HTD = alpha * TD + (1 - alpha) * GA

over E_b = the batch's distinct users and distinct (positive and negative) items, the entity level
over ordered pairs (e = f included, which adds 0). The selection
nets and experts are submodules of the strategy (training-only, never counted in the student).
T(epoch) = T_start * (T_end / T_start) ** ((epoch - 1) / anneal_epochs), floored at T_end (run_HTD's
T_annealing from 1 to 1e-10). Batch loss: L_KD = HTD / B, B the batch's rows.

Entity level, the positive-pair filter (`positive_pairs` = 1, the default): only the within-group
pairs whose TEACHER cosine is > 0 count, as in the reference code, which multiplies the teacher's
similarity matrix by the group mask and keeps the entries > 0 (SeongKu-Kang/Topology_Distillation_KDD21
`model.py` lines 233-239, `get_TD_loss2`, and lines 199-205 for 'first'; woriazzc/KDs
`modeling/KD/cf/baseline.py` lines 628-634): a pair the teacher sees as dissimilar (cos <= 0) is
not distilled. The paper's formula sums over every within-group pair; `positive_pairs` = 0 does
that (kdbench's HTD before this filter), computed from d x d Gram matrices per group (ftd.py).
With the filter the sum is taken literally, group by group in row blocks of `PAIR_CELLS` pairs:
O(sum_g |g|^2 d_s), against O(|E_b| K d_s d_t) for the Gram form; the filter cannot be written
with Gram matrices because the mask depends on each pair.

Defaults (reference notebook `Guide to using topology distillation.ipynb`: HTD(K=30,
choice='second'), lmbda_TD = 0.001, alpha = 0.5, max_epoch = 100): weight=0.001, K=30, alpha=0.5,
T_start=1, T_end=1e-10, anneal_epochs=100, positive_pairs=1. woriazzc/KDs: alpha 0.9 (CiteULike,
Yelp) or 0.5 (Gowalla), 30 groups. Loss scale: the reference sums its BPR base loss over the B rows
and adds lmbda * HTD; kdbench's base loss is the row mean and this loss HTD / B: weight = lmbda = 0.001.

Deviations from the reference code:
- Only the reference's default group-level design ('second': prototypes against entities) is
  implemented; 'first' (prototypes against prototypes) is not.
- The Gumbel noise comes from the run's seeded generator; log(v + 1e-10) is log_softmax of the
  selection logits (de.py's `gate_weights`); the K experts' mix is de.py's `mix_experts`, the same
  function as K separate MLPs: while the gates are soft, every expert in two batched matmuls with a
  hand-written backward; once the annealed softmax has underflowed to exact zeros (a hard
  selection), only each entity's selected experts (a zero gate adds exactly 0, and passes none of
  the gate's gradient).
- The schedule is indexed like de.py's: T = T_start in the first epoch (as run_HTD).

Cost: GA evaluates K MLPs of about (d_s + d_t) / 2 * d_t multiply-adds per distinct batch entity,
like DE with K experts: the method's own cost, which dominates a CPU step (see DE's docstring).
Measured on ml-100k (BPR:64 -> BPR:5, batch 2048, one CPU thread): 35 ms per step against scratch's
1 ms, about 10x a scratch epoch with K=30 (DE with 30 experts costs the same); K=5: 11 ms, 3.6x.
The topology terms themselves cost about FTD's (1.5x) in the Gram form (positive_pairs = 0); the
filtered literal sum made a whole HTD step (loss and backward, BPR:64 -> BPR:5, batch 2048, one
thread) about 1.2x slower than the Gram form, measured interleaved on a shared 2-core machine.
On CiteULike-t's shape (BPR:400 -> BPR:20, K=30) GA is about 85% of a step: the K experts'
(d_s + d_t) / 2 x d_t second layers, forward and backward, on every distinct batch entity, an
epoch about 300x scratch's; the method's own cost (see DE), which no exact rewrite removes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import KdbenchError
from kdbench.search_space import IntRange, LogUniform, Uniform
from kdbench.strategies.base import register_strategy
from kdbench.strategies.de import ExpertBank, annealed_temperature, gate_weights, gumbel_noise, mix_experts
from kdbench.strategies.ftd import FTD, grouped_topology_loss
from kdbench.strategies.knowledge import teacher_representations


PAIR_CELLS = 2**22  # entity pairs per block of the filtered entity-level sum (3 float tables of this size)


def positive_pair_loss(student: torch.Tensor, teacher: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """sum_g sum_{e, f in g, cos(t_e, t_f) > 0} (cos(s_e, s_f) - cos(t_e, t_f))^2 over ordered pairs.

    Group by group, in blocks of rows of at most `PAIR_CELLS` pairs; the teacher side carries no
    gradient. The dropped pairs are zeroed in place rather than selected (no gather, no scatter in
    the backward pass). (n, d_s), (n, d_t), (n,) -> ()."""
    a = F.normalize(student, dim=1)
    with torch.no_grad():
        b = F.normalize(teacher, dim=1)
    order = torch.argsort(groups, stable=True)
    counts = torch.unique_consecutive(groups[order], return_counts=True)[1].tolist()
    total = student.new_zeros(())
    for members in torch.split(order, counts):
        step = max(1, PAIR_CELLS // len(members))
        for start in range(0, len(members), step):
            rows = members[start:start + step]
            teacher_sim = b[rows] @ b[members].T
            gap = (a[rows] @ a[members].T - teacher_sim).where(teacher_sim > 0, 0.0)  # a dropped pair adds 0
            total = total + gap.pow(2).sum()
    return total


def prototype_loss(student: torch.Tensor, teacher: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """sum_{g present} sum_e (cos(P^s_g, s_e) - cos(P^t_g, t_e))^2, prototypes = group means (detached)."""
    present, members = groups.unique(return_inverse=True)
    with torch.no_grad():
        share = F.one_hot(members, len(present)).T.to(student.dtype)
        share = share / share.sum(dim=1, keepdim=True)
        proto_s, proto_t = share @ student, share @ teacher
        teacher_sim = F.normalize(proto_t, dim=1) @ F.normalize(teacher, dim=1).T
    student_sim = F.normalize(proto_s, dim=1) @ F.normalize(student, dim=1).T
    return (student_sim - teacher_sim).pow(2).sum()


@register_strategy("htd", family="topology",
                   paper="Kang et al., Topology Distillation for Recommender System, KDD 2021")
class HTD(FTD):
    """Hierarchical Topology Distillation; see the module docstring for the loss, defaults and weight."""

    defaults = {"weight": 0.001, "K": 30, "alpha": 0.5, "T_start": 1.0, "T_end": 1e-10, "anneal_epochs": 100,
                "positive_pairs": 1}
    must_be_positive = ("K", "T_start", "T_end", "anneal_epochs")
    search_space = {"weight": LogUniform(1e-5, 1e-1), "K": IntRange(2, 50, log=True), "alpha": Uniform(0.1, 0.9),
                    "anneal_epochs": IntRange(5, 500, log=True)}

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        k = self.hparams["K"]
        student_user_dim, student_item_dim = context.student.representation_dims()
        teacher_user_dim, teacher_item_dim = context.teacher.representation_dims()
        # f_k: [d_s, (d_s + d_t) // 2, d_t], as the reference (also when d_s == d_t, unlike DE)
        self.user_experts = ExpertBank(k, student_user_dim, (student_user_dim + teacher_user_dim) // 2,
                                       teacher_user_dim)
        self.item_experts = ExpertBank(k, student_item_dim, (student_item_dim + teacher_item_dim) // 2,
                                       teacher_item_dim)
        self.user_selection = nn.Linear(teacher_user_dim, k)
        self.item_selection = nn.Linear(teacher_item_dim, k)
        self.to(context.device)
        self.generator = context.generator(offset=6)
        self.temperature = self.hparams["T_start"]
        if self.hparams["positive_pairs"] not in (0, 1):
            raise KdbenchError(f"hyperparameter 'positive_pairs' of strategy '{self.name}' must be 0 or 1, "
                               f"got {self.hparams['positive_pairs']}")

    def prepare(self) -> None:
        """The teacher's tables as they are (its groups and experts read them unnormalised)."""
        self.teacher_users, self.teacher_items = teacher_representations(self.context.teacher, self.context.device)

    def batch_entities(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The distinct users U and items I (positive and negative) of the batch, and the
        student's and teacher's representations of U then I: (|U| + |I|, d_s), (|U| + |I|, d_t)."""
        if self.teacher_users is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before loss()")
        users = self.batch_users(batch).unique()
        items = self.batch_items(batch).unique()
        student_users, student_items = self.context.student.representation_tables()
        student = torch.cat([student_users[users], student_items[items]])
        teacher = torch.cat([self.teacher_users[users], self.teacher_items[items]])
        return users, items, student, teacher

    def on_epoch_start(self, epoch: int) -> None:
        h = self.hparams
        self.temperature = annealed_temperature(epoch, h["T_start"], h["T_end"], h["anneal_epochs"])

    def assignment_loss(self, student: torch.Tensor, teacher: torch.Tensor, experts: ExpertBank,
                        selection: nn.Linear) -> torch.Tensor:
        """GA: sum_e ||t_e - sum_k alpha_ek f_k(s_e)||^2 with Gumbel-softmax alpha (trains the selection net)."""
        logits = selection(teacher)
        gumbel = gumbel_noise(tuple(logits.shape), self.generator).to(logits.device)
        alpha = gate_weights(logits, self.temperature, gumbel)
        return (teacher - mix_experts(experts, student, alpha)).pow(2).sum()

    def loss(self, batch) -> torch.Tensor:
        users, items, student, teacher = self.batch_entities(batch)
        n_users, k = len(users), self.hparams["K"]
        with torch.no_grad():  # hard groups: users in 0..K-1, items in K..2K-1
            groups = torch.cat([self.user_selection(teacher[:n_users]).argmax(dim=1),
                                self.item_selection(teacher[n_users:]).argmax(dim=1) + k])
        entity = (positive_pair_loss(student, teacher, groups) if self.hparams["positive_pairs"]
                  else grouped_topology_loss(student, teacher, groups, 2 * k))
        td = entity + prototype_loss(student, teacher, groups)
        ga = (self.assignment_loss(student[:n_users], teacher[:n_users], self.user_experts, self.user_selection)
              + self.assignment_loss(student[n_users:], teacher[n_users:], self.item_experts, self.item_selection))
        alpha = self.hparams["alpha"]
        return (alpha * td + (1 - alpha) * ga) / self.batch_users(batch).numel()
