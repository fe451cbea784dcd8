"""The cheaper epochs of the feature and topology strategies (issue 34, item 2) compute what the
code before them computed: on a fixed batch, the same loss value (rtol 1e-6) and the same gradients
for the student and the strategy's own modules. Each reference below re-implements the code as it
was before the change (DE / PCKD: the einsum expert mix; FTD: the Gram form on concatenated rows,
normalised per batch; FitNet-MLP: `MLPProjector` with F.dropout), from the same random draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _helpers_response_feature import ready
from kdbench.strategies.de import ExpertBank, gate_weights, gumbel_noise, mix_experts
from kdbench.strategies.pckd import preference_consistency


def reference_mix(bank: ExpertBank, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """ExpertBank.mix as written: einsum first layers, alpha-weighted, one flattened second-layer matmul."""
    hidden = torch.relu(torch.einsum("nd,mdh->nmh", x, bank.w1) + bank.b1)
    return (hidden * alpha.unsqueeze(-1)).flatten(1) @ bank.w2.flatten(0, 1) + alpha @ bank.b2


def reference_entity_losses(strategy, ids, student_table, teacher_table, experts, selection):
    teacher_repr = teacher_table[ids]
    gate_logits = selection(teacher_repr)
    gumbel = gumbel_noise(tuple(gate_logits.shape), strategy.generator)
    alpha = gate_weights(gate_logits, strategy.temperature, gumbel)
    return (teacher_repr - reference_mix(experts, student_table[ids], alpha)).pow(2).sum(dim=-1)


def reference_de(strategy, batch) -> torch.Tensor:
    """DE.loss before the change."""
    ctx = strategy.context
    users = batch[ctx.uid_field]
    groups = [batch[field].unique() for field in (ctx.iid_field, ctx.neg_iid_field) if field in batch.interaction]
    items = torch.cat(groups)
    item_weights = torch.cat([torch.full((len(g),), 1 / len(groups)) for g in groups])
    student_users, student_items = ctx.student.representation_tables()
    user_loss = reference_entity_losses(strategy, users.unique(), student_users, strategy.teacher_users,
                                        strategy.user_experts, strategy.user_selection).sum()
    item_loss = (reference_entity_losses(strategy, items, student_items, strategy.teacher_items,
                                         strategy.item_experts, strategy.item_selection) * item_weights).sum()
    return (user_loss + item_loss) / len(users)


def reference_pckd(strategy, batch) -> torch.Tensor:
    """PCKD.loss before the change: DE's term plus the preference-consistency regulariser."""
    de_term = reference_de(strategy, batch)
    users, counts = torch.unique(batch[strategy.context.uid_field], return_counts=True)
    item_ids, slots = torch.unique(strategy.sampled[users], return_inverse=True)
    student_users, student_items = strategy.context.student.representation_tables()
    s_users, s_items = student_users[users].detach(), student_items[item_ids].detach()
    pre = torch.einsum("ud,uqd->uq", s_users, s_items[slots])

    def project(ids, student_table, teacher_table, experts, selection):
        gate_logits = selection(teacher_table[ids])
        alpha = gate_weights(gate_logits, strategy.temperature,
                             gumbel_noise(tuple(gate_logits.shape), strategy.generator))
        return reference_mix(experts, student_table[ids].detach(), alpha)

    p_users = project(users, student_users, strategy.teacher_users, strategy.user_experts, strategy.user_selection)
    p_items = project(item_ids, student_items, strategy.teacher_items, strategy.item_experts, strategy.item_selection)
    post = torch.einsum("ud,uqd->uq", p_users, p_items[slots])
    regulariser = (preference_consistency(pre, post, strategy.hparams["tau_ce"]) * counts).sum()
    return de_term + strategy.hparams["alpha"] * regulariser / len(batch)


def reference_ftd(strategy, batch) -> torch.Tensor:
    """FTD.loss before the change: raw teacher rows, concatenated and normalised per batch in float64."""
    ctx = strategy.context
    users, items = batch[ctx.uid_field].unique(), strategy.batch_items(batch).unique()
    student_users, student_items = ctx.student.representation_tables()
    teacher_users, teacher_items = ctx.teacher.representation_tables()
    student = torch.cat([student_users[users], student_items[items]])
    teacher = torch.cat([teacher_users[users], teacher_items[items]]).detach()
    a = F.normalize(student.double(), dim=1)
    b = F.normalize(teacher.double(), dim=1)
    total = (a.T @ a).pow(2).sum() - 2 * (a.T @ b).pow(2).sum() + (b.T @ b).pow(2).sum()
    return total.to(student.dtype) / len(batch)


def loss_and_grads(context, strategy, compute):
    """compute()'s value and the gradients it gives every student and strategy parameter."""
    params = [p for p in context.student.model.parameters() if p.requires_grad] + list(strategy.parameters())
    for p in params:
        p.grad = None
    with context.student.one_forward_per_step():
        loss = compute()
    loss.backward()
    return loss.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


def assert_same(context, strategy, reference, batch, replay=()):
    """The strategy's loss and gradients equal the reference's, both from the same draws of the
    generators in `replay` (their states are rewound between the two)."""
    states = [generator.get_state() for generator in replay]
    loss, grads = loss_and_grads(context, strategy, lambda: strategy.loss(batch))
    for generator, state in zip(replay, states):
        generator.set_state(state)
    expected, expected_grads = loss_and_grads(context, strategy, lambda: reference(strategy, batch))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert any(g.abs().sum() > 0 for g in grads)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()) + 1e-12)


@pytest.mark.parametrize("n_entities,density", [(9, 1.0), (9, 0.5), (40, 0.1), (5, 0.0)])
def test_mix_experts_equals_the_einsum_mix_in_value_and_gradients(n_entities, density):
    torch.manual_seed(0)
    bank = ExpertBank(6, 4, 5, 3)
    x = torch.randn(n_entities, 4, requires_grad=True)
    logits = torch.randn(n_entities, 6)
    keep = torch.rand(n_entities, 6) < density
    keep[:, 0] |= density > 0  # every entity keeps an expert unless all weights are zero
    alpha = torch.softmax(logits.masked_fill(~keep, -torch.inf), dim=1).nan_to_num(0.0).requires_grad_(True)
    target = torch.randn(n_entities, 3)
    results = []
    for mix in (mix_experts, reference_mix):
        for p in (x, alpha, *bank.parameters()):
            p.grad = None
        loss = (target - mix(bank, x, alpha)).pow(2).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in (x, *bank.parameters())],
                        alpha.grad[alpha.detach() != 0]))
    (loss, grads, alpha_grad), (want, want_grads, want_alpha_grad) = results
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=0)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the weights' gradient where alpha != 0 (elsewhere the softmax's Jacobian zeroes it; see below)
    torch.testing.assert_close(alpha_grad, want_alpha_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epoch,anneal_epochs", [(300, 1000), (1, 1000), (40, 5)])
def test_de_loss_and_gradients_are_unchanged(ml100k, first_batch, epoch, anneal_epochs):
    # T = 1e-3 (soft), T = 1 (first epoch), T = 1e-10 (a hard one-hot selection: the per-expert path)
    context, strategy = ready(ml100k, "de", num_experts=4, anneal_epochs=anneal_epochs)
    strategy.on_epoch_start(epoch)
    assert_same(context, strategy, reference_de, first_batch, replay=(strategy.generator,))


def test_de_hard_selection_takes_the_per_expert_path_and_keeps_the_gate_gradient(ml100k, first_batch):
    context, strategy = ready(ml100k, "de", num_experts=4, anneal_epochs=5)
    strategy.on_epoch_start(40)
    logits = strategy.item_selection(strategy.teacher_items[:50])
    alpha = gate_weights(logits, strategy.temperature, gumbel_noise(tuple(logits.shape), strategy.generator))
    assert ((alpha != 0).sum(dim=1) == 1).all()  # exact zeros: the regime the per-expert path serves
    assert_same(context, strategy, reference_de, first_batch, replay=(strategy.generator,))


@pytest.mark.parametrize("epoch", [300, 1])
def test_pckd_loss_and_gradients_are_unchanged(ml100k, first_batch, epoch):
    context, strategy = ready(ml100k, "pckd", num_experts=3, mxK=20)
    strategy.on_epoch_start(epoch)
    assert_same(context, strategy, reference_pckd, first_batch, replay=(strategy.generator,))


def test_ftd_loss_and_gradients_are_unchanged(ml100k, first_batch):
    context, strategy = ready(ml100k, "ftd")
    assert_same(context, strategy, reference_ftd, first_batch)


def test_ftd_teacher_tables_are_normalised_once_in_prepare(ml100k):
    context, strategy = ready(ml100k, "ftd")
    users, items = context.teacher.representation_tables()
    assert strategy.teacher_users.dtype == torch.float64
    torch.testing.assert_close(strategy.teacher_items, F.normalize(items.double(), dim=1), rtol=0, atol=0)
    torch.testing.assert_close(strategy.teacher_users, F.normalize(users.double(), dim=1), rtol=0, atol=0)


def reference_mlp_projector(projector, x: torch.Tensor) -> torch.Tensor:
    """MLPProjector.forward as written: F.dropout on the input and on the hidden layer, mean over experts."""
    x = x.unsqueeze(0).expand(projector.w1.shape[0], -1, -1)
    hidden = torch.relu(torch.baddbmm(projector.b1, F.dropout(x, projector.dropout, projector.training), projector.w1))
    out = torch.baddbmm(projector.b2, F.dropout(hidden, projector.dropout, projector.training), projector.w2)
    return out.mean(dim=0)


def reference_fitnet_mlp(strategy, batch) -> torch.Tensor:
    """FitNet.loss with the projectors as written (the same order of dropout draws: users, then items)."""
    ctx = strategy.context
    users = batch[ctx.uid_field]
    groups = [batch[field] for field in (ctx.iid_field, ctx.neg_iid_field) if field in batch.interaction]
    user_ids, user_counts = torch.unique(users, return_counts=True)
    item_ids, item_counts = torch.unique(torch.cat(groups), return_counts=True)
    student_users, student_items = ctx.student.representation_tables()
    user_term = ((reference_mlp_projector(strategy.user_projector, student_users[user_ids])
                  - strategy.teacher_users[user_ids]).pow(2).sum(dim=-1) * user_counts).sum()
    item_term = ((reference_mlp_projector(strategy.item_projector, student_items[item_ids])
                  - strategy.teacher_items[item_ids]).pow(2).sum(dim=-1) * item_counts).sum()
    return (user_term + item_term / len(groups)) / len(users)


@pytest.mark.parametrize("dropout,training", [(0.2, True), (0.45, True), (0.0, True), (0.2, False)])
def test_fitnet_mlp_loss_and_gradients_are_unchanged_with_the_same_dropout_masks(ml100k, first_batch, dropout,
                                                                                 training):
    context, strategy = ready(ml100k, "fitnet-mlp", dropout=dropout)
    strategy.train(training)
    assert_same(context, strategy, reference_fitnet_mlp, first_batch, replay=(torch.default_generator,))


def test_fused_mlp_projector_equals_mlp_projector_with_several_experts():
    from kdbench.strategies.fitnet import FusedMLPProjector, MLPProjector

    torch.manual_seed(0)
    fused = FusedMLPProjector(4, 6, 10, dropout=0.3, n_experts=3)
    plain = MLPProjector(4, 6, 10, dropout=0.3, n_experts=3)
    plain.load_state_dict(fused.state_dict())
    x, target = torch.randn(9, 4, requires_grad=True), torch.randn(9, 6)
    results = []
    for forward in (fused, plain):
        torch.manual_seed(1)  # the same dropout masks
        for p in (x, *forward.parameters()):
            p.grad = None
        loss = (forward(x) - target).pow(2).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in (x, *forward.parameters())]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=0)
    for got, want in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 7, 40])
def test_gram_square_sum_is_the_squared_frobenius_norm_of_the_summed_gram(dim):
    from kdbench.strategies.ftd import gram_square_sum

    torch.manual_seed(dim)
    first, second = torch.randn(13, dim, dtype=torch.float64), torch.randn(5, dim, dtype=torch.float64)
    expected = (first.T @ first + second.T @ second).pow(2).sum()
    torch.testing.assert_close(gram_square_sum(first, second), expected, rtol=1e-12, atol=0)
    # by hand: one column, rows (1, 2) and (3): G = 1 + 4 + 9 = 14, ||G||^2 = 196
    assert gram_square_sum(torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0]])).item() == 196.0


@pytest.mark.parametrize("temperature", [1.0, 0.05, 1e-3])
def test_negligible_gate_weights_are_zero_and_change_neither_mix_nor_gradients(temperature):
    torch.manual_seed(1)
    bank = ExpertBank(30, 4, 8, 6)
    x = torch.randn(200, 4, requires_grad=True)
    gate = torch.nn.Linear(6, 30)
    teacher = torch.randn(200, 6)
    gumbel = gumbel_noise((200, 30), torch.Generator().manual_seed(0))

    def raw_weights():
        return torch.softmax((torch.log_softmax(gate(teacher), dim=-1) + gumbel) / temperature, dim=-1)

    raw, cut = raw_weights().detach(), gate_weights(gate(teacher), temperature, gumbel).detach()
    small = raw < 2.0**-46
    assert torch.equal(cut[small], torch.zeros(int(small.sum()))) and torch.equal(cut[~small], raw[~small])
    if temperature < 0.1:
        assert small.any()  # the cut does bite where the selection is nearly hard
    results = []
    # mix_experts on the cut weights against every expert on the raw ones, gradients into the gate too
    for mix in (lambda: mix_experts(bank, x, gate_weights(gate(teacher), temperature, gumbel)),
                lambda: reference_mix(bank, x, raw_weights())):
        for p in (x, *bank.parameters(), *gate.parameters()):
            p.grad = None
        loss = (teacher - mix()).pow(2).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in (x, *bank.parameters(), *gate.parameters())]))
    (loss, grads), (want, want_grads) = results
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=0)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()) + 1e-12)
