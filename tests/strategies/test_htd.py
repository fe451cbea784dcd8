"""HTD: group assignment, entity- and group-level topology, the GA term, annealing and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from kdbench.strategies.ftd import topology_loss
import kdbench.strategies.htd as htd_module
from kdbench.errors import KdbenchError
from kdbench.strategies.htd import HTD, positive_pair_loss, prototype_loss


def test_prototype_loss_matches_hand_computed():
    # two groups: {0, 1} and {2}; prototypes = member means
    student = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    groups = torch.tensor([4, 4, 9])
    cos = lambda a, b: F.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0).item()  # noqa: E731
    proto_s, proto_t = [[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]
    expected = sum((cos(proto_s[g], student[e].tolist()) - cos(proto_t[g], teacher[e].tolist())) ** 2
                   for g in range(2) for e in range(3))
    assert prototype_loss(student, teacher, groups).item() == pytest.approx(expected, rel=1e-6)


def test_prototypes_carry_no_gradient():
    student = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    teacher = torch.randn(3, 4)
    prototype_loss(student, teacher, torch.tensor([0, 0, 1])).backward()
    # d/ds of sum_g sum_e (cos(P_g, s_e) - c)^2 with P fixed: compare with P detached by hand
    reference = student.detach().clone().requires_grad_(True)
    protos = torch.stack([student[:2].mean(0), student[2]]).detach()
    teacher_sim = F.normalize(torch.stack([teacher[:2].mean(0), teacher[2]]), dim=1) @ F.normalize(teacher, dim=1).T
    ((F.normalize(protos, dim=1) @ F.normalize(reference, dim=1).T - teacher_sim) ** 2).sum().backward()
    assert torch.allclose(student.grad, reference.grad, atol=1e-6)


def test_loss_matches_the_written_out_formula(ml100k, first_batch):
    context, strategy = ready(ml100k, "htd", K=6, alpha=0.3, positive_pairs=0)
    k = 6
    users = first_batch[context.uid_field]
    u_ids = users.unique()
    i_ids = torch.cat([first_batch[context.iid_field], first_batch[context.neg_iid_field]]).unique()
    su, si = context.student.representation_tables()
    tu, ti = strategy.teacher_users, strategy.teacher_items
    state = strategy.generator.get_state()
    loss = strategy.loss(first_batch)
    strategy.generator.set_state(state)  # the same Gumbel noise, users first then items
    with torch.no_grad():
        groups = torch.cat([strategy.user_selection(tu[u_ids]).argmax(1),
                            strategy.item_selection(ti[i_ids]).argmax(1) + k])
    student, teacher = torch.cat([su[u_ids], si[i_ids]]).double(), torch.cat([tu[u_ids], ti[i_ids]]).double()
    entity = topology_loss(student, teacher, mask=groups.unsqueeze(0) == groups.unsqueeze(1))
    group = prototype_loss(student, teacher, groups)

    def ga(s, t, experts, selection):
        logits = selection(t)
        uniform = torch.rand(logits.shape, generator=strategy.generator).clamp_(1e-10, 1 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform))
        alpha = torch.softmax((torch.log(torch.softmax(logits, 1) + 1e-10) + gumbel) / strategy.temperature, 1)
        outputs = [torch.relu(s @ experts.w1[m] + experts.b1[m]) @ experts.w2[m] + experts.b2[m] for m in range(k)]
        mixed = sum(alpha[:, m : m + 1] * outputs[m] for m in range(k))
        return ((t - mixed) ** 2).sum()

    ga_total = ga(su[u_ids], tu[u_ids], strategy.user_experts, strategy.user_selection) + ga(
        si[i_ids], ti[i_ids], strategy.item_experts, strategy.item_selection)
    expected = (0.3 * (entity + group) + 0.7 * ga_total) / len(users)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_users_and_items_never_share_a_group(ml100k, first_batch):
    context, strategy = ready(ml100k, "htd", K=4)
    with torch.no_grad():
        users = strategy.user_selection(strategy.teacher_users).argmax(1)
        items = strategy.item_selection(strategy.teacher_items).argmax(1) + 4
    assert users.max() < 4 and items.min() >= 4


def test_temperature_anneals_from_one_towards_zero(ml100k):
    _, strategy = ready(ml100k, "htd", anneal_epochs=10)
    assert strategy.temperature == pytest.approx(1.0)
    strategy.on_epoch_start(6)
    assert strategy.temperature == pytest.approx(1e-5)
    strategy.on_epoch_start(50)
    assert strategy.temperature == pytest.approx(1e-10)


def test_gradient_reaches_student_experts_and_selection_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "htd", K=5)
    assert strategy.family == "topology" and strategy.weight == pytest.approx(0.001)
    check_gradients(context, strategy, first_batch)


def test_training_only_modules_are_not_counted(ml100k, first_batch):
    check_not_counted(ml100k, "htd", first_batch, K=5)


def test_rejects_bad_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "htd", HTD.must_be_positive)


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "htd", student=student, K=5)
    check_integration(strategy, first_batch)


# -- the positive-pair filter of the reference (positive_pairs = 1, the default) ----------------------
# Group A = entities 0, 1, 2; group B = entity 3. Teacher cosines in A: (0, 1) 1/sqrt(2) (kept),
# (0, 2) -1/sqrt(2) and (1, 2) exactly 0 (both dropped); the diagonal (1, kept) adds 0. Student
# cosines: (0, 1) 0, (0, 2) 1/sqrt(2), (1, 2) 1/sqrt(2). Filtered: 2 ordered pairs x (0 - 1/sqrt(2))^2
# = 1. Every pair: 1 + 2 x (1/sqrt(2) + 1/sqrt(2))^2 + 2 x (1/sqrt(2) - 0)^2 = 1 + 4 + 1 = 6.
HAND_STUDENT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.5]])
HAND_TEACHER = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
HAND_GROUPS = torch.tensor([7, 7, 7, 2])


def test_positive_pair_loss_matches_hand_computed():
    assert positive_pair_loss(HAND_STUDENT, HAND_TEACHER, HAND_GROUPS).item() == pytest.approx(1.0, rel=1e-6)
    every_pair = topology_loss(HAND_STUDENT, HAND_TEACHER, mask=HAND_GROUPS.unsqueeze(0) == HAND_GROUPS.unsqueeze(1))
    assert every_pair.item() == pytest.approx(6.0, rel=1e-6)


def test_positive_pair_loss_is_the_masked_literal_sum_in_any_block_size(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(40, 3, generator=generator), torch.randn(40, 5, generator=generator)
    groups = torch.randint(0, 4, (40,), generator=generator)
    b = F.normalize(teacher, dim=1)
    mask = (groups.unsqueeze(0) == groups.unsqueeze(1)) & (b @ b.T > 0)
    expected = topology_loss(student, teacher, mask=mask).item()
    assert positive_pair_loss(student, teacher, groups).item() == pytest.approx(expected, rel=1e-5)
    monkeypatch.setattr(htd_module, "PAIR_CELLS", 7)  # a few rows per block
    assert positive_pair_loss(student, teacher, groups).item() == pytest.approx(expected, rel=1e-5)


def test_default_loss_filters_pairs_as_the_reference(ml100k, first_batch):
    context, strategy = ready(ml100k, "htd", K=6, alpha=0.3)
    assert strategy.hparams["positive_pairs"] == 1
    users = first_batch[context.uid_field]
    u_ids = users.unique()
    i_ids = torch.cat([first_batch[context.iid_field], first_batch[context.neg_iid_field]]).unique()
    su, si = context.student.representation_tables()
    tu, ti = strategy.teacher_users, strategy.teacher_items
    state = strategy.generator.get_state()
    filtered = strategy.loss(first_batch)
    strategy.generator.set_state(state)
    strategy.hparams["positive_pairs"] = 0
    every_pair = strategy.loss(first_batch)
    with torch.no_grad():
        groups = torch.cat([strategy.user_selection(tu[u_ids]).argmax(1), strategy.item_selection(ti[i_ids]).argmax(1) + 6])
    student, teacher = torch.cat([su[u_ids], si[i_ids]]).double(), torch.cat([tu[u_ids], ti[i_ids]]).double()
    b = F.normalize(teacher, dim=1)
    same = groups.unsqueeze(0) == groups.unsqueeze(1)
    dropped = topology_loss(student, teacher, mask=same & (b @ b.T <= 0))  # what the filter leaves out
    assert dropped.item() > 0
    assert (every_pair - filtered).item() == pytest.approx(0.3 * dropped.item() / len(users), rel=1e-4)


def test_positive_pairs_must_be_a_switch(ml100k):
    with pytest.raises(KdbenchError, match="'positive_pairs'.*0 or 1"):
        ready(ml100k, "htd", positive_pairs=2)
