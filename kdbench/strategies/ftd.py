"""FTD, Full Topology Distillation (Kang, Hwang, Kweon & Yu, "Topology Distillation for Recommender
System", KDD 2021; reference code SeongKu-Kang/Topology_Distillation_KDD21, `model.py::FTD` and
`run.py::run_FTD`). Its hierarchical variant HTD is in htd.py and reuses this file's loss.

The batch's entities, its distinct users and distinct (positive and negative) items together, form
a graph whose edge weights are cosine similarities of their representations; the student's graph
is fitted to the teacher's:

    FTD = sum_{e, f in E_b} ( cos(s_e, s_f) - cos(t_e, t_f) )^2            (all ordered pairs)

with s / t the student's / teacher's representations (`BackboneAdapter.representation_tables`).
No projector: cosine similarities compare across dimensions. The teacher's tables are computed
once in prepare(). Batch loss: L_KD = FTD / B, B the batch's rows.

Computed without the |E_b| x |E_b| matrices: with A, B the row-normalised student and teacher
representations, sum_{ef} (a_e.a_f - b_e.b_f)^2 = ||A'A||^2 - 2 ||A'B||^2 + ||B'B||^2 (Frobenius
norms of d x d matrices), O(|E_b| d_s d_t) instead of O(|E_b|^2), evaluated in float64 so that
the cancellation between the three terms costs no precision. `topology_loss` is the literal
pairwise form, which the tests check it against.

Defaults (reference notebook `Guide to using topology distillation.ipynb`, shared by FTD and HTD):
weight = lmbda_TD = 0.001. Loss scale: the reference sums its BPR base loss over the B rows
(`Base_model.get_loss`) and adds lmbda * FTD; kdbench's base loss is the row mean and this loss is
FTD / B, both the reference's / B, so lmbda carries over unchanged: weight = 0.001.

Deviations: none in the value (cos of a zero vector, undefined there, is taken as 0 here).

Computed once (`FTD.prepare`): the frozen teacher's tables, L2-normalised in float64.
Per batch: the student's rows normalised, A'A, A'B and the teacher's B'B, each the sum of its user
and item parts (no concatenated copies). ||B'B||^2, 3/4 |E_b| d_t^2 float64 multiply-adds from the
symmetric product's blocks (0.7 G for CiteULike-t's ~5,600 entities a batch, d_t = 400), is most of
what is left: it depends on which
entities the batch holds, so it cannot be cached, and in float32 the cancellation between the
three terms would cost the loss its precision.

Cost, measured on ml-100k (BPR:64 -> BPR:5, batch 2048, one CPU thread): 2.7 ms per step against
scratch's 0.8 ms, about 1.5x a scratch epoch (the |E_b| x |E_b| form would cost about 2,200^2
similarities per step), before the teacher's normalisation moved to prepare().
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.search_space import LogUniform
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import teacher_representations


def topology_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The literal form: sum over entity pairs (optionally where `mask` (n, n) is true) of the
    squared difference of cosine similarities; (n, d_s), (n, d_t) -> (). O(n^2): for tests."""
    a, b = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
    diff = (a @ a.T - b @ b.T).pow(2)
    return diff.sum() if mask is None else diff[mask].sum()


def grouped_topology_loss(student: torch.Tensor, teacher: torch.Tensor, groups: torch.Tensor | None = None,
                          n_groups: int = 1) -> torch.Tensor:
    """sum_g sum_{e, f in group g} (cos(s_e, s_f) - cos(t_e, t_f))^2, via d x d Gram matrices per group.

    groups (n,) in [0, n_groups), or None for one group (FTD). Float64 inside; returns the input dtype.
    """
    a = F.normalize(student.double(), dim=1)
    with torch.no_grad():
        b = F.normalize(teacher.double(), dim=1)
    if groups is None:
        aa, ab = a.T @ a, a.T @ b
        with torch.no_grad():
            bb = (b.T @ b).pow(2).sum()
    else:
        onehot = F.one_hot(groups, n_groups).to(a.dtype)  # (n, G)
        spread = (onehot.unsqueeze(2) * a.unsqueeze(1)).reshape(len(a), -1)  # (n, G * d_s): a_e in its group's block
        aa, ab = spread.T @ a, spread.T @ b  # stacked A_g'A_g (G d_s, d_s) and A_g'B_g (G d_s, d_t)
        with torch.no_grad():
            bb = sum((b[groups == g].T @ b[groups == g]).pow(2).sum() for g in groups.unique().tolist())
    return (aa.pow(2).sum() - 2 * ab.pow(2).sum() + bb).to(student.dtype)


def split_topology_loss(student_users: torch.Tensor, student_items: torch.Tensor, teacher_users: torch.Tensor,
                        teacher_items: torch.Tensor) -> torch.Tensor:
    """grouped_topology_loss(cat(student_users, student_items), cat(teacher_users, teacher_items)), one
    group, with the teacher's rows already L2-normalised in float64: ||A'A||^2 - 2 ||A'B||^2 + ||B'B||^2,
    every d x d Gram matrix the sum of its user and item parts (no concatenated copy of the rows)."""
    a_users = F.normalize(student_users.double(), dim=1)
    a_items = F.normalize(student_items.double(), dim=1)
    aa = a_users.T @ a_users + a_items.T @ a_items
    ab = a_users.T @ teacher_users + a_items.T @ teacher_items
    with torch.no_grad():
        bb = gram_square_sum(teacher_users, teacher_items)
    return (aa.pow(2).sum() - 2 * ab.pow(2).sum() + bb).to(student_users.dtype)


def gram_square_sum(*parts: torch.Tensor) -> torch.Tensor:
    """||G||_F^2 of the symmetric G = sum_p P_p' P_p, from its two diagonal column blocks and one
    off-diagonal block (counted twice): 3/4 of the multiply-adds of the whole d x d product."""
    half = parts[0].shape[1] // 2
    if half == 0:
        return sum(p.T @ p for p in parts).pow(2).sum()
    left, right = slice(0, half), slice(half, None)

    def block(rows: slice, cols: slice) -> torch.Tensor:
        return sum(p[:, rows].T @ p[:, cols] for p in parts)

    return block(left, left).pow(2).sum() + block(right, right).pow(2).sum() + 2 * block(left, right).pow(2).sum()


@register_strategy("ftd", family="topology",
                   paper="Kang et al., Topology Distillation for Recommender System, KDD 2021 (full)")
class FTD(DistillationStrategy):
    """Full Topology Distillation; see the module docstring for the loss, defaults and weight.

    What only the frozen teacher gives is computed once in prepare(): its tables L2-normalised in
    float64 (the same values as normalising the batch's rows in every batch that holds them).
    """

    defaults = {"weight": 0.001}
    search_space = {"weight": LogUniform(1e-5, 1e-1)}
    needs_representations = True

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        self.teacher_users: torch.Tensor | None = None
        self.teacher_items: torch.Tensor | None = None

    def prepare(self) -> None:
        users, items = teacher_representations(self.context.teacher, self.context.device)
        self.teacher_users, self.teacher_items = (F.normalize(table.double(), dim=1) for table in (users, items))

    def loss(self, batch) -> torch.Tensor:
        if self.teacher_users is None:
            raise RuntimeError(f"strategy '{self.name}': call prepare() before loss()")
        users = self.batch_users(batch).unique()
        items = self.batch_items(batch).unique()
        student_users, student_items = self.context.student.representation_tables()
        return split_topology_loss(student_users[users], student_items[items], self.teacher_users[users],
                                   self.teacher_items[items]) / self.batch_users(batch).numel()
