"""VkD: feature distillation through an orthogonal projector onto standardised teacher features.

Miles, Elezi & Deng, "VkD: Improving Knowledge Distillation using Orthogonal Projections", CVPR 2024
(arXiv 2403.06213); applied to recommenders by woriazzc/KDs (`modeling/KD/cf/baseline.py`, class
`VkD`, config `configs/citeulike/bpr/vkd.yaml`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from kdbench.search_space import LogUniform
from kdbench.strategies.base import register_strategy
from kdbench.strategies.fitnet import FitNet

BATCH_NORM_EPS = 1e-5  # nn.BatchNorm1d's default


def orthogonal_projector(d_in: int, d_out: int) -> nn.Module:
    """Linear d_in -> d_out without bias whose weight W (d_out, d_in) stays on the Stiefel manifold
    (orthonormal columns when d_in <= d_out, W'W = I; orthonormal rows otherwise), through torch's
    `orthogonal` parametrisation: the optimiser moves an unconstrained parameter, W is its image."""
    return orthogonal(nn.Linear(d_in, d_out, bias=False))


@torch.no_grad()
def standardise(table: torch.Tensor, eps: float = BATCH_NORM_EPS) -> torch.Tensor:
    """(t - mu) / sqrt(var + eps) per dimension, mu and the (biased) var over the table's real rows
    (row 0, RecBole's padding entity, is left out of the statistics and standardised like the rest)."""
    rows = table[1:] if len(table) > 1 else table
    mean, var = rows.mean(dim=0), rows.var(dim=0, unbiased=False)
    return (table - mean) / torch.sqrt(var + eps)


@register_strategy("vkd", family="feature",
                   paper="Miles, Elezi & Deng, VkD: Improving Knowledge Distillation using Orthogonal Projections, CVPR 2024")
class VkD(FitNet):
    """L_VkD = mean over batch rows of ||W_u e_s,u - N(e_t,u)||^2 + 1/2 sum_{i in {pos,neg}} ||W_i e_s,i - N(e_t,i)||^2.

    The two components VkD derives: (1) the projector W is orthogonal (W'W = I for d_s <= d_t), so
    it can only rotate the student's features into the teacher's space and never rescale or
    distort them; (2) the teacher's features go through the task's normalisation N, for
    discriminative tasks a standardisation (zero mean, unit variance per dimension, BatchNorm
    without affine parameters). Separate projectors for users and items; they are training-only.
    Everything else (regressed entities, counts, loss scale) is `fitnet`'s (see FitNet).

    For a dot-product student, <W s_u, W s_i> = s_u' W'W s_i = <s_u, s_i>: the orthogonal
    projection leaves every student score unchanged, so what the student matches in the teacher's
    space is its own preference order (the inconsistency PCKD regularises a free projector against
    cannot arise).

    Defaults. The paper prescribes the orthogonal projector and teacher standardisation (its loss
    weights are for ImageNet / COCO objectives and do not carry over). weight = 5e-4 from woriazzc/KDs
    `configs/citeulike/bpr/vkd.yaml:6` (lmbda; KDs sums the squared error over B users and B items
    and its BPR over B rows, both / B here, so the value carries over as for fitnet).

    Deviations:
    - N standardises with the statistics of the teacher's whole user (item) table, computed once in
      prepare(); the paper standardises with the batch's statistics. The teacher is frozen, so the
      table's statistics are the population values that the batch statistics estimate (BatchNorm's
      running statistics) and the target of an entity does not depend on its batch.
    - woriazzc/KDs' `VkD` only centres the teacher features with the batch mean
      (`vkd.yaml:8-9`: `vkd_norm: False`, `vkd_center: True`); here they are standardised, as the
      paper prescribes. Its weight was tuned for that centring; `tune` searches 1e-5 .. 1.
    - the regressed users and items are the batch's own (KDs draws B random ones), as in fitnet.

    Cost: fitnet's plus the parametrisation (a Householder product of d_s reflections of size d_t)
    once per projector per step: negligible against the batch.
    """

    defaults = {"weight": 5e-4}
    search_space = {"weight": LogUniform(1e-5, 1.0)}

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        student_user_dim, student_item_dim = context.student.representation_dims()
        teacher_user_dim, teacher_item_dim = context.teacher.representation_dims()
        self.user_projector = orthogonal_projector(student_user_dim, teacher_user_dim).to(context.device)
        self.item_projector = orthogonal_projector(student_item_dim, teacher_item_dim).to(context.device)

    def prepare(self) -> None:
        super().prepare()
        self.teacher_users = standardise(self.teacher_users)
        self.teacher_items = standardise(self.teacher_items)
