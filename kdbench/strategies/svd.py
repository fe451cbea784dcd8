"""SVD: the student as the best rank-d approximation of the teacher's score matrix; `svd-ft` then
trains it with the student's own loss.

Eckart & Young, "The approximation of one matrix by another of lower rank", Psychometrika 1936:
the truncated SVD S_d = sum_{k<=d} s_k a_k b_k^T minimises ||S - X|| over rank-d X. Here S = U I^T
is the teacher's user x item score matrix, U and I its representation tables (for LightGCN and
NGCF the propagated ones, their scoring rule), never formed (`truncated_factors`).

The student is a plain MF (BPR) of d dimensions whose tables are the two factors, so its scores
are S_d exactly: a compression baseline with no training. Only dot-product teachers (S is U I^T)
and BPR students (the score is the dot product of the tables themselves) are exact, so only they
are accepted: a LightGCN student would propagate the factors again, which is no longer S_d; a
LightGCN teacher's SVD is therefore distilled into a BPR student (pairing LightGCN:64->BPR:d).
"""

from __future__ import annotations

import torch

from kdbench.backbones import model_card
from kdbench.errors import KdbenchError
from kdbench.strategies._compression import truncated_factors
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import teacher_representations

STUDENT_MODELS = ("BPR",)  # students whose score is the dot product of their own embedding tables


@register_strategy("svd", family="compression",
                   paper="Eckart & Young, Psychometrika 1936 (truncated SVD of the teacher's score matrix)",
                   backbones=("general",))
class SVD(DistillationStrategy):
    """Student tables = the rank-d factors of the teacher's scores, d the student's dimension;
    0 training epochs. See the module docstring."""

    defaults = {"weight": 0.0}
    search_space = {}
    trains = False
    needs_representations = True

    @classmethod
    def check_models(cls, teacher: str, student: str) -> None:
        if not model_card(teacher).dot_product:
            raise KdbenchError(f"strategy '{cls.name}' needs a teacher whose score is the dot product of its "
                               f"representations (the score matrix U I^T), not {teacher}")
        if student not in STUDENT_MODELS:
            raise KdbenchError(f"strategy '{cls.name}' needs a student scored by the dot product of its own tables "
                               f"({', '.join(STUDENT_MODELS)}), not {student}: a propagating student would not "
                               "score the rank-d approximation")

    @torch.no_grad()
    def prepare(self) -> None:
        ctx = self.context
        self.check_models(ctx.teacher.name, ctx.student.name)
        users, items = teacher_representations(ctx.teacher)
        student_users, student_items = ctx.student.representation_tables()
        p, q = truncated_factors(users, items, student_users.shape[1])
        student_users.copy_(p.to(student_users.device))
        student_items.copy_(q.to(student_items.device))

    def loss(self, batch) -> None:
        return None


@register_strategy("svd-ft", family="compression",
                   paper="Eckart & Young, Psychometrika 1936, then fine-tuned on the student's own loss",
                   backbones=("general",))
class SVDFineTuned(SVD):
    """`svd`'s initialisation, then trained as `scratch` (the student's own loss, early stopping on
    validation NDCG@10): the teacher's knowledge enters only through the starting point."""

    trains = True
