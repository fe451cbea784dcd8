"""DE (Distillation Experts: Gumbel-selected expert MLPs map student to teacher representations)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import kstest

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from conftest import make_context
from kdbench.strategies.de import DE, ExpertBank, annealed_temperature, de_loss, expert_dims, gate_weights, gumbel_noise


def test_de_loss_matches_hand_computed():
    # gate logits (0, ln 2), no Gumbel noise, T = 1: alpha = softmax(log(1/3, 2/3)) = (1/3, 2/3)
    gate_logits = torch.tensor([[0.0, math.log(2.0)]])
    alpha = gate_weights(gate_logits, 1.0, torch.zeros(1, 2))
    assert alpha.tolist()[0] == pytest.approx([1 / 3, 2 / 3])
    experts = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # E_1(s) = (1, 0), E_2(s) = (0, 3)
    teacher = torch.tensor([[1.0, 1.0]])
    # mixture (1/3, 2); error (1 - 1/3)^2 + (1 - 2)^2 = 4/9 + 1
    assert de_loss(teacher, experts, alpha).item() == pytest.approx(4 / 9 + 1)


def test_gumbel_noise_and_temperature_act_as_in_gumbel_softmax():
    gate_logits = torch.tensor([[0.0, math.log(2.0)]])
    # T = 0.5 squares the odds: alpha proportional to (1/3)^2, (2/3)^2 = (1/5, 4/5)
    assert gate_weights(gate_logits, 0.5, torch.zeros(1, 2)).tolist()[0] == pytest.approx([0.2, 0.8])
    # noise g adds to the log-probabilities: g = (ln 4, 0) makes it (4/3, 2/3) -> (2/3, 1/3)
    noise = torch.tensor([[math.log(4.0), 0.0]])
    assert gate_weights(gate_logits, 1.0, noise).tolist()[0] == pytest.approx([2 / 3, 1 / 3])
    # T -> 1e-10: a hard one-hot selection of the noisy argmax
    assert gate_weights(gate_logits, 1e-10, noise).tolist()[0] == [1.0, 0.0]


def test_de_loss_is_one_value_per_entity():
    teacher = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    experts = torch.tensor([[[1.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 1.0]]])
    alpha = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert de_loss(teacher, experts, alpha).tolist() == pytest.approx([1.0, 1.0])  # (0^2 + 1^2), (0^2 + 1^2)


def test_gumbel_noise_is_standard_gumbel():
    noise = gumbel_noise((20_000,), torch.Generator().manual_seed(0)).double().numpy()
    assert kstest(noise, "gumbel_r").pvalue > 1e-3
    assert noise.std() > 1.0  # spread, not clamped to a constant


def test_expert_parameters_start_uniform_within_one_over_sqrt_fan_in():
    torch.manual_seed(0)
    bank = ExpertBank(4, 16, 9, 5)
    for fan_in, params in ((16, (bank.w1, bank.b1)), (9, (bank.w2, bank.b2))):
        bound = 1 / math.sqrt(fan_in)
        for p in params:
            assert p.abs().max() <= bound and p.min() < -bound / 2 and p.max() > bound / 2


def test_single_expert_needs_no_gate():
    assert gate_weights(torch.tensor([[5.0], [-1.0]]), 1e-10, torch.zeros(2, 1)).tolist() == [[1.0], [1.0]]


def test_expert_bank_mix_equals_the_explicit_per_expert_sum():
    torch.manual_seed(0)
    bank = ExpertBank(5, 4, 6, 3)
    x, alpha = torch.randn(7, 4), torch.softmax(torch.randn(7, 5), dim=1)
    explicit = torch.einsum("nm,nmd->nd", alpha, bank(x))
    assert torch.allclose(bank.mix(x, alpha), explicit, atol=1e-6)
    # expert m alone is the MLP Linear -> ReLU -> Linear
    single = torch.relu(x @ bank.w1[2] + bank.b1[2]) @ bank.w2[2] + bank.b2[2]
    assert torch.allclose(bank(x)[:, 2], single, atol=1e-6)


def test_expert_dims_follow_the_reference():
    assert expert_dims(20, 200) == (20, 110, 200)
    assert expert_dims(8, 8) == (8, 4, 8)  # self-distillation
    assert all(isinstance(d, int) for d in expert_dims(8, 8))
    assert expert_dims(1, 1) == (1, 1, 1)  # never an empty hidden layer


def test_temperature_anneals_from_start_to_end():
    assert annealed_temperature(1, 1.0, 1e-10, 1000) == 1.0
    assert annealed_temperature(501, 1.0, 1e-10, 1000) == pytest.approx(1e-5)
    assert annealed_temperature(1001, 1.0, 1e-10, 1000) == pytest.approx(1e-10)
    assert annealed_temperature(5000, 1.0, 1e-10, 1000) == 1e-10
    # another start: 2 -> 0.5 over 10 epochs, geometric
    assert [annealed_temperature(e, 2.0, 0.5, 10) for e in (1, 6, 11, 12)] == pytest.approx([2.0, 1.0, 0.5, 0.5])


def test_on_epoch_start_sets_the_temperature(ml100k):
    _, strategy = ready(ml100k, "de", anneal_epochs=10)
    assert strategy.temperature == 1.0
    strategy.on_epoch_start(6)
    assert strategy.temperature == pytest.approx(1e-5)


def test_loss_is_the_reference_sum_over_distinct_entities_divided_by_batch_rows(ml100k, first_batch):
    context, strategy = ready(ml100k, "de", num_experts=4)
    strategy.on_epoch_start(300)  # T well inside (T_end, 1)
    state = strategy.generator.get_state()
    loss = strategy.loss(first_batch)
    strategy.generator.set_state(state)  # replay the same Gumbel draws, in the same order

    from kdbench.strategies.de import gumbel_noise

    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()

    def reference(ids, student, teacher, experts, selection):
        logits = selection(teacher[ids])
        alpha = gate_weights(logits, strategy.temperature, gumbel_noise(tuple(logits.shape), strategy.generator))
        return de_loss(teacher[ids], experts(student[ids]), alpha).sum()

    pos, neg = first_batch[context.iid_field].unique(), first_batch[context.neg_iid_field].unique()
    users = reference(first_batch[context.uid_field].unique(), student_users, teacher_users,
                      strategy.user_experts, strategy.user_selection)
    items = reference(torch.cat([pos, neg]), student_items, teacher_items,
                      strategy.item_experts, strategy.item_selection)
    # pos and neg are gated in one call, as in the strategy, so the replayed draws line up;
    # each group weighs 1/2, so that a batch row carries one user term and one item term
    expected = (users + 0.5 * items) / len(first_batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_gradient_reaches_student_experts_and_gates_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "de", num_experts=3)
    check_gradients(context, strategy, first_batch)


def test_experts_and_gates_are_not_counted_in_the_student(ml100k, first_batch):
    check_not_counted(ml100k, "de", first_batch)


def test_rejects_unknown_negative_and_zero_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "de", must_be_positive=("num_experts", "T_start", "T_end", "anneal_epochs"))


@pytest.mark.parametrize("student,experts", [("BPR:8", 30), ("BPR:8", 1), ("LightGCN:8", 5)])
def test_integration(ml100k, first_batch, student, experts):
    _, strategy = ready(ml100k, "de", student=student, num_experts=experts)
    check_integration(strategy, first_batch)


def test_loss_before_prepare_is_an_error(ml100k, first_batch):
    with pytest.raises(RuntimeError, match="called before prepare"):
        DE(make_context(ml100k)).loss(first_batch)
