"""PCKD (DE plus the preference-consistency regulariser on the projectors, woriazzc/KDs `CPD`)."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from _helpers_sampling import assert_follows, exp_rank_pmf, over_epochs, successive_draws
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies.de import DE
from kdbench.strategies.knowledge import teacher_top_n
from kdbench.strategies.pckd import PCKD, preference_consistency


def test_preference_consistency_matches_hand_computed():
    # target softmax(0, ln 3) = (1/4, 3/4)
    pre = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    post = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # row 1: log softmax(0, 0) = ln 1/2 both: CE = ln 2
    # row 2: log softmax(ln 3, 0) = (ln 3/4, ln 1/4): CE = -(1/4 ln 3/4 + 3/4 ln 1/4)
    expected = [math.log(2.0), -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))]
    assert preference_consistency(pre, post, 1.0).tolist() == pytest.approx(expected)
    # tau divides both sides: the same scores scaled by tau give the same values
    assert preference_consistency(pre * 0.1, post * 0.1, 0.1).tolist() == pytest.approx(expected)
    # consistent projected scores (post = pre) leave only the target's entropy
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert preference_consistency(pre[:1], pre[:1], 1.0).item() == pytest.approx(entropy)


def test_defaults_are_kds_citeulike_bpr_config():
    cls = STRATEGIES.get("pckd")
    assert cls is PCKD and cls.family == "feature" and cls.variant_of is None
    assert cls.defaults == {"weight": 0.05, "num_experts": 30, "T_start": 1.0, "T_end": 1e-10, "anneal_epochs": 1000,
                            "alpha": 0.1, "Q": 5, "tau_ce": 0.1, "T": 10.0, "mxK": 100}
    assert set(cls.tuning_space()) == {"weight", "anneal_epochs", "alpha", "tau_ce", "mxK"}


def test_without_the_regulariser_it_is_de(ml100k, first_batch):
    """alpha = 0: the same experts, selection nets and Gumbel noise as DE built on the same seed."""
    _, pckd = ready(ml100k, "pckd", alpha=0)
    _, de = ready(ml100k, "de")
    assert pckd.loss(first_batch).item() == pytest.approx(de.loss(first_batch).item(), rel=1e-6)


def expert(bank, x):
    """The single expert of a bank, written out."""
    return torch.relu(x @ bank.w1[0] + bank.b1[0]) @ bank.w2[0] + bank.b2[0]


def test_loss_matches_hand_computed_with_one_expert(ml100k, first_batch):
    """One expert: no Gumbel selection, so every term is deterministic and written out here."""
    context, strategy = ready(ml100k, "pckd", num_experts=1, alpha=0.3, tau_ce=0.5, Q=3)
    users = first_batch[context.uid_field]
    pos, neg = first_batch[context.iid_field], first_batch[context.neg_iid_field]
    s_users, s_items = context.student.representation_tables()
    t_users, t_items = context.teacher.representation_tables()

    def de_sum(bank, student, teacher, ids):
        ids = ids.unique()
        return (teacher[ids] - expert(bank, student[ids])).pow(2).sum()

    de_part = de_sum(strategy.user_experts, s_users, t_users, users) + 0.5 * (
        de_sum(strategy.item_experts, s_items, t_items, pos) + de_sum(strategy.item_experts, s_items, t_items, neg))
    reg = 0.0
    for u in users.tolist():  # every batch row, repeats included
        q = strategy.sampled[u]
        pre = s_items[q] @ s_users[u]
        post = expert(strategy.item_experts, s_items[q]) @ expert(strategy.user_experts, s_users[u : u + 1])[0]
        p = torch.softmax(pre / 0.5, dim=0)
        reg += -(p * torch.log_softmax(post / 0.5, dim=0)).sum().item()
    expected = (de_part.item() + 0.3 * reg) / len(users)
    assert strategy.loss(first_batch).item() == pytest.approx(expected, rel=1e-5)


def test_regulariser_trains_the_projectors_only(ml100k, first_batch):
    context, strategy = ready(ml100k, "pckd", num_experts=4)
    strategy.regulariser(first_batch).backward()
    assert all(p.grad is None for p in context.student.model.parameters())
    for bank in (strategy.user_experts, strategy.item_experts):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bank.parameters())
    for selection in (strategy.user_selection, strategy.item_selection):
        assert selection.weight.grad.abs().sum() > 0


def test_gradient_reaches_student_and_projectors_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "pckd", num_experts=4)
    check_gradients(context, strategy, first_batch)


def test_items_are_drawn_from_the_teachers_unseen_top_list_in_rank_order(ml100k):
    """Q = 2 ordered draws without replacement from the top mxK = 20 with p(r) ~ exp(-r / 5)."""
    context, strategy = ready(ml100k, "pckd", num_experts=1, Q=2, mxK=20, T=5.0)
    pool = teacher_top_n(context.teacher, context.history, 20)
    assert torch.equal(strategy._pool, pool)
    drawn = over_epochs(strategy, range(2, 7), lambda s: s.sampled)  # (E, n_users, 2)
    positions = (pool.unsqueeze(0).unsqueeze(2) == drawn.unsqueeze(3)).float().argmax(-1)  # (E, n_users, 2)
    assert (pool.unsqueeze(0).unsqueeze(2) == drawn.unsqueeze(3)).any(-1).all()  # every item in the user's pool
    assert (positions[..., 0] != positions[..., 1]).all()
    history = context.history
    for u in range(1, context.n_users, 97):
        seen = set(history[u].indices.tolist())
        assert not seen & set(drawn[:, u].reshape(-1).tolist())
    trials = [tuple(row) for row in positions[:, 1:].reshape(-1, 2).tolist()]  # user 0 is padding
    assert_follows({0: trials}, {0: successive_draws(exp_rank_pmf(20, 5.0), 2)})


def test_sampling_follows_the_runs_seed_and_changes_each_epoch(ml100k):
    _, first = ready(ml100k, "pckd", num_experts=1, seed=3)
    torch.manual_seed(123)  # the global generator must not matter
    _, again = ready(ml100k, "pckd", num_experts=1, seed=3)
    assert torch.equal(first.sampled, again.sampled)
    before = first.sampled.clone()
    first.on_epoch_start(2)
    assert not torch.equal(before, first.sampled)


def test_projectors_are_not_counted_in_the_student(ml100k, first_batch):
    check_not_counted(ml100k, "pckd", first_batch, num_experts=2)


def test_rejects_bad_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "pckd", must_be_positive=("num_experts", "Q", "tau_ce", "T", "mxK"))
    with pytest.raises(KdbenchError, match=r"mxK \(3\) must be >= Q \(5\)"):
        PCKD(make_context(ml100k), mxK=3)
    strategy = PCKD(make_context(ml100k), mxK=1600)  # more than a heavy user's unseen items
    with pytest.raises(KdbenchError, match="needs mxK = 1600 items outside each user's training items"):
        strategy.prepare()


def test_backbone_without_representations_fails_early(ml100k):
    with pytest.raises(KdbenchError, match="strategy 'pckd' needs user/item representations"):
        PCKD(make_context(ml100k, teacher="ENMF:8"))


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "pckd", student=student, num_experts=4)
    check_integration(strategy, first_batch)


def test_loss_before_epoch_start_is_an_error(ml100k, first_batch):
    strategy = PCKD(make_context(ml100k))
    with pytest.raises(RuntimeError):
        strategy.loss(first_batch)
    strategy.prepare()
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        strategy.loss(first_batch)


def test_is_a_de_subclass_with_its_own_code_version():
    assert issubclass(PCKD, DE) and PCKD.code_version() != DE.code_version()
