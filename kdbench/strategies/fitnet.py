"""FitNet: hint regression of the student's representations onto the teacher's through a projector,
linear (`fitnet`) or an MLP with dropout (`fitnet-mlp`, woriazzc/KDs' own setting).

Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, as applied to recommenders by
woriazzc/KDs (`modeling/KD/cf/baseline.py`, class `Fit`; its projector is `modeling/KD/utils`
`Projector`, which `MLPProjector` here re-implements and freqd.py reuses).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.search_space import LogUniform, Uniform
from kdbench.strategies.base import DistillationStrategy, register_strategy
from kdbench.strategies.knowledge import teacher_representations


class MLPProjector(nn.Module):
    """The mean of M MLPs, each Dropout -> Linear(d_in, h) -> ReLU -> Dropout -> Linear(h, d_out)
    (woriazzc/KDs `Projector` with `fullExpert`s, norm off); the M experts run as batched matmuls,
    each with its own dropout masks as there. Linear layers initialised as nn.Linear's."""

    def __init__(self, d_in: int, d_out: int, d_hidden: int, dropout: float = 0.0, n_experts: int = 1):
        super().__init__()
        self.dropout = dropout
        self.w1 = nn.Parameter(torch.empty(n_experts, d_in, d_hidden))
        self.b1 = nn.Parameter(torch.empty(n_experts, 1, d_hidden))
        self.w2 = nn.Parameter(torch.empty(n_experts, d_hidden, d_out))
        self.b2 = nn.Parameter(torch.empty(n_experts, 1, d_out))
        for fan_in, params in ((d_in, (self.w1, self.b1)), (d_hidden, (self.w2, self.b2))):
            for p in params:
                nn.init.uniform_(p, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_out)."""
        x = x.unsqueeze(0).expand(self.w1.shape[0], -1, -1)  # (M, n, d_in): one copy per expert
        hidden = torch.relu(torch.baddbmm(self.b1, F.dropout(x, self.dropout, self.training), self.w1))
        out = torch.baddbmm(self.b2, F.dropout(hidden, self.dropout, self.training), self.w2)
        return out.mean(dim=0)


class _DroppedHiddenLayers(torch.autograd.Function):
    """baddbmm(b2, keep * relu(baddbmm(b1, x, W1)) * s, W2) for (M, n, d_in) x, keep a Bernoulli mask
    (or None) and s = 1 / (1 - p), with a hand-written backward: relu, mask and scale are applied in
    place on one (M, n, h) tensor, which the backward also takes the relu's support from
    (its entries are > 0 exactly where the unit is kept and active). F.dropout's maths and masks.
    Backward, g = dL/dout, a the dropped hidden units: dW2 = a'g, db2 = sum_n g, da = g W2',
    dpre = s da where a > 0, dW1 = x' dpre, db1 = sum_n dpre, dx = dpre W1'."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, keep, scale):  # noqa: D102 (see the class docstring)
        dropped = torch.baddbmm(b1, x, w1).clamp_min_(0)
        if keep is not None:
            dropped.mul_(keep).mul_(scale)
        ctx.save_for_backward(x, w1, w2, dropped, scale)
        ctx.scaled = keep is not None
        return torch.baddbmm(b2, dropped, w2)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, w1, w2, dropped, scale = ctx.saved_tensors
        grad_w2 = dropped.transpose(1, 2) @ grad
        grad_b2 = grad.sum(dim=1, keepdim=True)
        grad_pre = torch.ops.aten.threshold_backward(grad @ w2.transpose(1, 2), dropped, 0.0)
        if ctx.scaled:
            grad_pre.mul_(scale)
        grad_w1 = x.transpose(1, 2) @ grad_pre
        grad_b1 = grad_pre.sum(dim=1, keepdim=True)
        return grad_pre @ w1.transpose(1, 2), grad_w1, grad_b1, grad_w2, grad_b2, None, None


class FusedMLPProjector(MLPProjector):
    """MLPProjector (the same parameters, maths and dropout masks, drawn from torch's global
    generator in the same order and shapes as F.dropout draws them: the input's, then the hidden
    layer's), its hidden layer computed by _DroppedHiddenLayers: the (M, n, h) hidden units, the
    bulk of the projector's memory traffic, are written once and never copied."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_out)."""
        experts, p = self.w1.shape[0], self.dropout
        x = x.unsqueeze(0).expand(experts, -1, -1)  # (M, n, d_in): one copy per expert
        if not self.training or p == 0:
            keep, scale = None, torch.ones(())
        else:
            scale = torch.ones((), dtype=x.dtype, device=x.device).div_(1 - p) if p < 1 else x.new_zeros(())
            x = x * self._mask(x.shape, p, x).mul_(scale)
            keep = self._mask((experts, x.shape[1], self.w1.shape[2]), p, x)
        return _DroppedHiddenLayers.apply(x, self.w1, self.b1, self.w2, self.b2, keep, scale).mean(dim=0)

    @staticmethod
    def _mask(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
        """F.dropout's Bernoulli(1 - p) keep-mask of 0s and 1s in `like`'s dtype (the same draws;
        none for p = 1, where F.dropout draws none either)."""
        if p >= 1:
            return like.new_zeros(shape)
        return like.new_empty(shape).bernoulli_(1 - p)


def hint_loss(projected: torch.Tensor, target: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
    """sum_e c_e ||P(s_e) - t_e||^2 over entities e; (n, d_t), (n, d_t), optional (n,) -> ()."""
    per_entity = (projected - target).pow(2).sum(dim=-1)
    return per_entity.sum() if counts is None else (per_entity * counts).sum()


@register_strategy("fitnet", family="feature", paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015",
                   backbones=("general", "sequential"))
class FitNet(DistillationStrategy):
    """L_Fit = mean over batch rows of ||P_u(e_s,u) - e_t,u||^2 + 1/2 sum_{i in {pos,neg}} ||P_i(e_s,i) - e_t,i||^2.

    e_s / e_t are the student's / teacher's representations (`BackboneAdapter.representation_tables`)
    of the batch's users and positive and negative items. P_u and P_i are separate learned linear
    projectors d_s -> d_t without bias (KDs `Fit` with `fit_linear: True, fit_bias: False`);
    they are submodules of the strategy, optimised with the student and never deployed or counted.
    The frozen teacher's tables are computed once in prepare(). Each distinct user / item of the
    batch is projected once and weighted by how often the batch holds it (the same sum).

    Defaults: weight=0.05, KDs `configs/citeulike/bpr/fit.yaml` (the only FitNet lambda published
    for recommenders in the references; KDs tuned it for its MLP projector).

    Loss scale: KDs sums the squared error over B users and B items per batch and its BPR base loss
    over the B rows; here each batch row contributes one user term and the average of its item
    terms, averaged over the rows, i.e. (B user terms + B item terms) / B, the same count KDs sums,
    divided by B like kdbench's mean base loss. KDs' lambda therefore carries over: weight = 0.05.

    Deviations from KDs `Fit`: the projector is linear (KDs' CiteULike config uses a 1-expert MLP
    projector with dropout, which `fitnet-mlp` implements; the linear hint regressor is the classic
    FitNet and has no extra hyperparameters); the regressed users and items are the batch's own
    (KDs draws B random users and items per batch), so that the hint follows the training
    distribution and costs no extra sampling.
    """

    defaults = {"weight": 0.05}
    search_space = {"weight": LogUniform(1e-4, 1e1)}
    needs_representations = True

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        student_user_dim, student_item_dim = context.student.representation_dims()
        teacher_user_dim, teacher_item_dim = context.teacher.representation_dims()
        self.user_projector = nn.Linear(student_user_dim, teacher_user_dim, bias=False).to(context.device)
        self.item_projector = nn.Linear(student_item_dim, teacher_item_dim, bias=False).to(context.device)
        self.teacher_users: torch.Tensor | None = None
        self.teacher_items: torch.Tensor | None = None

    def prepare(self) -> None:
        self.teacher_users, self.teacher_items = teacher_representations(self.context.teacher, self.context.device)

    def loss(self, batch) -> torch.Tensor:
        if self.teacher_users is None:
            raise RuntimeError("FitNet.loss called before prepare(): no teacher representations")
        ctx = self.context
        users = self.batch_users(batch)
        groups = [batch[field] for field in (ctx.iid_field, ctx.neg_iid_field) if field in batch.interaction]
        # Each distinct user / item once, weighted by how often the batch holds it: the same sum.
        user_ids, user_counts = torch.unique(users, return_counts=True)
        item_ids, item_counts = torch.unique(torch.cat(groups), return_counts=True)
        student_users, student_items = ctx.student.representation_tables()
        user_term = hint_loss(self.user_projector(student_users[user_ids]), self.teacher_users[user_ids], user_counts)
        item_term = hint_loss(self.item_projector(student_items[item_ids]), self.teacher_items[item_ids], item_counts)
        return (user_term + item_term / len(groups)) / len(users)


@register_strategy("fitnet-mlp", family="feature",
                   paper="Romero et al., FitNets, ICLR 2015, with woriazzc/KDs' MLP projector",
                   backbones=("general", "sequential"))
class FitNetMLP(FitNet):
    """FitNet with woriazzc/KDs' MLP projector: P = Dropout -> Linear(d_s, h) -> ReLU -> Dropout ->
    Linear(h, d_t), h = int(hidden_ratio * d_t), separate for users and items (`MLPProjector`, one
    expert). The loss, the regressed entities and the loss scale are `fitnet`'s (see FitNet).

    Defaults: KDs `configs/citeulike/bpr/fit.yaml` exactly (`fit_linear: False`, `num_experts: 1`,
    `hidden_dim_ratio: 5.0`, `dropout_rate: 0.2`, lambda 0.05): weight=0.05, hidden_ratio=5,
    dropout=0.2; the weight is the one KDs tuned for this projector. Dropout is active while the
    student trains (the strategy's modules are in training mode) and its masks come from torch's
    global generator, which the trainer seeds. Deviation from KDs `Fit`: as in `fitnet`, the
    batch's users and items are regressed, not B random ones.

    Cost, measured on ml-100k (BPR:64 -> BPR:5, batch 2048, one CPU thread): 12.7 ms per step
    against scratch's 1 ms, about 4x a scratch epoch (linear `fitnet`: 1.35x): the hidden layer of
    5 d_t = 320 units on every distinct user and item of the batch, KDs' own projector. Nothing
    here depends on the teacher alone but its tables (computed once, in prepare()): the projector
    is trained. The projectors are `FusedMLPProjector`s (MLPProjector's maths and dropout masks,
    its hidden layer written once, in place); what is left is the method's own work, three
    (n, h) x (h, d_t) matmuls and the hidden layer's dropout masks (n x h Bernoulli draws, kept
    draw for draw so that a seeded run gives the same masks).
    """

    defaults = {"weight": 0.05, "hidden_ratio": 5.0, "dropout": 0.2}
    must_be_positive = ("hidden_ratio",)
    search_space = {"weight": LogUniform(1e-4, 1e1), "hidden_ratio": LogUniform(0.5, 10.0),
                    "dropout": Uniform(0.0, 0.5)}

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        # the linear projectors FitNet built are replaced (FitNet's own code stays as it was, so
        # its stored results keep their code version)
        student_user_dim, student_item_dim = context.student.representation_dims()
        teacher_user_dim, teacher_item_dim = context.teacher.representation_dims()
        self.user_projector = self.projector(student_user_dim, teacher_user_dim).to(context.device)
        self.item_projector = self.projector(student_item_dim, teacher_item_dim).to(context.device)

    def projector(self, d_in: int, d_out: int) -> nn.Module:
        hidden = max(1, int(self.hparams["hidden_ratio"] * d_out))  # KDs: int(output_dim * ratio)
        return FusedMLPProjector(d_in, d_out, hidden, dropout=self.hparams["dropout"])
