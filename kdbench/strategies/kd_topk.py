"""KD over the teacher's top-K: Hinton-style distillation whose candidate set is the teacher's own
top-K list, so that the teacher is needed only on its list (a teacher file holds no more).

woriazzc/KDs calls this choice of candidates `kd_guide: teacher` (`modeling/KD/cf/baseline.py`,
class `KD`); kdbench's `kd` is its `kd_guide: student` default.
"""

from __future__ import annotations

import torch

from kdbench.search_space import IntRange, LogUniform
from kdbench.strategies._list_scores import list_scores
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.kd import kd_loss
from kdbench.strategies.knowledge import scores_of_lists, teacher_top_n


@register_strategy("kd-topk", family="response", variant_of="kd",
                   paper="Hinton et al., 2015, on the teacher's top-K (woriazzc/KDs kd_guide: teacher)",
                   backbones=("general", "sequential"), file_teacher="K")
class KDTopK(DistillationStrategy):
    """L_KD = mean over batch rows of CE(softmax(t_u,C / tau), softmax(s_u,C / tau)), C = the teacher's
    top-K items among those u has not interacted with in training, fixed for the run (computed once
    in `prepare`, with the teacher's scores on them).

    Defaults and loss scale as `kd` (K=50, tau=1, weight=1; see kd.py). Deviation from KDs'
    teacher-guided variant: the candidates exclude the user's training items, as the teacher top-N
    lists of every kdbench strategy do (and as a teacher file's lists must).
    """

    defaults = {"weight": 1.0, "K": 50, "tau": 1.0}
    search_space = {"weight": LogUniform(1e-2, 1e2), "K": IntRange(10, 200, log=True), "tau": LogUniform(0.1, 20.0)}
    must_be_positive = ("K", "tau")

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        self.candidates: torch.Tensor | None = None  # (n_users, K) the teacher's top-K
        self.teacher_logits: torch.Tensor | None = None  # (n_users, K) its scores on them

    def prepare(self) -> None:
        ctx = self.context
        candidates = teacher_top_n(ctx.teacher, ctx.history, self.hparams["K"])
        self.teacher_logits = scores_of_lists(ctx.teacher, candidates).to(ctx.device)
        self.candidates = candidates.to(ctx.device)

    def loss(self, batch) -> torch.Tensor:
        if self.candidates is None:
            raise RuntimeError("kd-topk: call prepare() before loss()")
        users, counts = torch.unique(self.batch_users(batch), return_counts=True)
        student_logits = list_scores(self.context.student, users, self.candidates[users])
        return kd_loss(student_logits, self.teacher_logits[users], self.hparams["tau"], counts)
