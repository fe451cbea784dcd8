"""BD (Bidirectional Distillation: teacher and student trained together, rank-discrepancy sampling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from _helpers_ranking import training_items
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies.bd import descending_ranks, draw_rows, soft_label_bce
from kdbench.training.loop import TrainSettings, make_optimizer


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(label: float, logit: float) -> float:
    return -(label * math.log(sigmoid(logit)) + (1 - label) * math.log(1 - sigmoid(logit)))


def bd_context(data, teacher: str = "BPR:32", student: str = "BPR:8", seed: int = 0):
    """A context whose teacher is a trainable copy, as the runner builds it for BD."""
    context = make_context(data, teacher, student, seed)
    context.teacher.model.train()
    for p in context.teacher.model.parameters():
        p.requires_grad_(True)
    return context


def ready(data, seed: int = 0, **hparams):
    context = bd_context(data, seed=seed)
    strategy = STRATEGIES.get("bd")(context, **hparams)
    strategy.prepare()
    strategy.on_epoch_start(1)
    return context, strategy


def bpr_scores(model, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """BPR's score u . i, written out (independent of kdbench's adapter): users (B,), items (B, M)."""
    return (model.user_embedding.weight[users].unsqueeze(1) * model.item_embedding.weight[items]).sum(-1)


def bpr_loss(model, batch, context) -> torch.Tensor:
    """RecBole's BPR loss, written out: mean of -log(1e-10 + sig(pos - neg))."""
    users = batch[context.uid_field]
    pos = bpr_scores(model, users, batch[context.iid_field].unsqueeze(1))[:, 0]
    neg = bpr_scores(model, users, batch[context.neg_iid_field].unsqueeze(1))[:, 0]
    return -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()


def peek_items(strategy, users):
    """The items strategy.loss would use for `users` next, leaving its cursor where it was."""
    saved = strategy.cursor.clone()
    items = strategy.next_items(users)
    strategy.cursor = saved
    return items


def unobserved_ranks(scores: np.ndarray, seen: set[int]) -> dict[int, int]:
    """{item: rank} among the items outside `seen` and the padding item, 1 = highest score."""
    items = [k for k in range(1, len(scores)) if k not in seen]
    ordered = sorted(items, key=lambda k: -scores[k])
    return {item: position + 1 for position, item in enumerate(ordered)}


def merged_chisquare(observed: np.ndarray, p: np.ndarray) -> float:
    """p-value of the chi-square test of counts `observed` against probabilities `p`, with bins
    merged (smallest expectations together) until each expects at least 5."""
    expected = p / p.sum() * observed.sum()
    order = np.argsort(-expected, kind="stable")
    groups, current = [], []
    for index in order:
        current.append(index)
        if expected[current].sum() >= 5:
            groups.append(current)
            current = []
    if current:
        groups[-1] += current
    obs = np.array([observed[g].sum() for g in groups])
    exp = np.array([expected[g].sum() for g in groups])
    assert len(groups) >= 3 and exp.min() >= 5
    return chisquare(obs, exp).pvalue


# -- the loss ----------------------------------------------------------------------------------
def test_soft_label_bce_matches_hand_computed():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    others = torch.tensor([[2.0, 0.0], [-2.0, 6.0]])
    row1 = bce(sigmoid(1.0), 0.5) + bce(0.5, -1.0)  # pseudo-label sig(2 / 2), sig(0 / 2)
    row2 = bce(sigmoid(-1.0), 2.0) + bce(sigmoid(3.0), 0.0)
    assert soft_label_bce(logits, others, 2.0).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_soft_label_bce_treats_the_pseudo_labels_as_constants():
    logits, others = torch.tensor([[0.3, -0.2]], requires_grad=True), torch.tensor([[1.0, 2.0]], requires_grad=True)
    soft_label_bce(logits, others, 2.0).backward()
    assert others.grad is None
    expected = torch.sigmoid(logits.detach()) - torch.sigmoid(others.detach() / 2.0)  # d BCE / d logit
    assert torch.allclose(logits.grad, expected)


def test_loss_on_a_tiny_case_matches_hand_computed(ml100k):
    """One row, one KD item per model, models and KD items set by hand: every term by hand."""
    context = bd_context(ml100k, "BPR:2", "BPR:2")
    strategy = STRATEGIES.get("bd")(context, n_kd=1, tau=2.0, lambda_student=0.5, lambda_teacher=0.25, kd_negatives=0)
    strategy.prepare()
    strategy.on_epoch_start(1)
    user, pos, neg, student_item, teacher_item = 1, 10, 20, 30, 40
    strategy.student_items.fill_(student_item)
    strategy.teacher_items.fill_(teacher_item)
    hand = {  # model: (user vector, {item: item vector})
        context.student.model: ([0.5, 1.0], {student_item: [1.0, 0.0], teacher_item: [0.0, 1.0]}),
        context.teacher.model: ([1.0, 1.0], {student_item: [2.0, 0.0], teacher_item: [0.0, -1.0],
                                             pos: [2.0, 0.0], neg: [1.0, 0.0]}),
    }
    with torch.no_grad():
        for model, (user_vector, items) in hand.items():
            model.user_embedding.weight[user] = torch.tensor(user_vector)
            for item, vector in items.items():
                model.item_embedding.weight[item] = torch.tensor(vector)
    # student: s(student_item) = 0.5, s(teacher_item) = 1; teacher: t(student_item) = 2,
    # t(teacher_item) = -1, t(pos) = 2, t(neg) = 1
    with context.student.one_forward_per_step():
        loss = strategy.loss(_batch(ml100k, [user], [pos], [neg]))
    teacher_base = -math.log(1e-10 + sigmoid(2.0 - 1.0))
    kd_student = bce(sigmoid(2.0 / 2), 0.5)  # on the student's item: own score 0.5, label from the teacher's 2
    kd_teacher = bce(sigmoid(1.0 / 2), -1.0)  # on the teacher's item: own score -1, label from the student's 1
    assert loss.item() == pytest.approx(0.5 * kd_student + teacher_base + 0.25 * kd_teacher, rel=1e-6)


def _batch(data, users, pos, neg):
    from recbole.data.interaction import Interaction

    return Interaction({data.uid_field: torch.tensor(users), data.iid_field: torch.tensor(pos),
                        data.neg_iid_field: torch.tensor(neg)})


def test_loss_equals_independent_computation_on_a_batch(ml100k, first_batch):
    context, strategy = ready(ml100k, tau=3.0, lambda_student=0.7, lambda_teacher=0.2, n_kd=4, kd_negatives=0)
    users = first_batch[context.uid_field]
    student_items, teacher_items = peek_items(strategy, users)
    student, teacher = context.student.model, context.teacher.model

    def soft_bce(own, other):
        labels = torch.sigmoid(other.detach() / 3.0)
        per_item = -(labels * torch.log(torch.sigmoid(own)) + (1 - labels) * torch.log(1 - torch.sigmoid(own)))
        return per_item.sum(1).mean()

    expected = (0.7 * soft_bce(bpr_scores(student, users, student_items), bpr_scores(teacher, users, student_items))
                + bpr_loss(teacher, first_batch, context)
                + 0.2 * soft_bce(bpr_scores(teacher, users, teacher_items), bpr_scores(student, users, teacher_items)))
    with context.student.one_forward_per_step():
        loss = strategy.loss(first_batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- gradients -----------------------------------------------------------------------------------
def test_gradients_reach_the_student_and_the_teacher_copy_and_nothing_else(ml100k, first_batch):
    context, strategy = ready(ml100k, lambda_student=0.7, lambda_teacher=0.2, tau=2.0, kd_negatives=0)
    users = first_batch[context.uid_field]
    student, teacher = context.student.model, context.teacher.model
    student_items, teacher_items = peek_items(strategy, users)
    with context.student.one_forward_per_step():
        strategy.loss(first_batch).backward()
    named = [*student.named_parameters(prefix="s"), *teacher.named_parameters(prefix="t")]
    got = {name: p.grad.clone() for name, p in named}
    assert all(g.abs().sum() > 0 for g in got.values())
    assert list(strategy.parameters()) == [] and all(m is not teacher for m in strategy.modules())
    # Each model's gradient is that of its own terms alone: the other model's scores are constants.
    for p in [*student.parameters(), *teacher.parameters()]:
        p.grad = None
    labels_s = torch.sigmoid(bpr_scores(teacher, users, student_items).detach() / 2.0)
    own_s = bpr_scores(student, users, student_items)
    kd_student = F.binary_cross_entropy_with_logits(own_s, labels_s, reduction="none").sum(1).mean()
    (0.7 * kd_student).backward()
    labels_t = torch.sigmoid(bpr_scores(student, users, teacher_items).detach() / 2.0)
    own_t = bpr_scores(teacher, users, teacher_items)
    kd_teacher = F.binary_cross_entropy_with_logits(own_t, labels_t, reduction="none").sum(1).mean()
    (bpr_loss(teacher, first_batch, context) + 0.2 * kd_teacher).backward()
    for name, p in named:
        assert torch.allclose(got[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_one_optimiser_steps_the_student_and_the_teacher_copy(ml100k):
    context, strategy = ready(ml100k)
    optimizer = make_optimizer(context.student.model, TrainSettings(), strategy)
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    expected = [*context.student.model.parameters(), *context.teacher.model.parameters()]
    assert params == {id(p) for p in expected} and len(params) == len(expected)


def test_a_frozen_teacher_is_refused(ml100k):
    with pytest.raises(KdbenchError, match="trainable copy"):
        STRATEGIES.get("bd")(make_context(ml100k))


def test_a_teacher_of_another_input_type_is_refused(ml100k):
    with pytest.raises(KdbenchError, match="same input type"):
        STRATEGIES.get("bd")(bd_context(ml100k, teacher="NeuMF:8"))


def test_weight_is_fixed_at_one_and_not_a_hyperparameter(ml100k):
    _, strategy = ready(ml100k)
    assert strategy.weight == 1.0
    with pytest.raises(KdbenchError, match="unknown hyperparameter 'weight'"):
        STRATEGIES.get("bd").resolve_hparams({"weight": 2})


def test_rejects_unknown_negative_and_zero_hparams(ml100k):
    cls = STRATEGIES.get("bd")
    context = bd_context(ml100k)
    with pytest.raises(KdbenchError, match="unknown hyperparameter 'no_such_knob'"):
        cls(context, no_such_knob=1)
    for key in cls.defaults:
        with pytest.raises(KdbenchError, match=f"'{key}'.*>= 0"):
            cls(context, **{key: -1})
    for key in ("tau", "n_kd", "update_every"):
        with pytest.raises(KdbenchError, match=f"'{key}'.*> 0"):
            cls.resolve_hparams({key: 0})


# -- sampling ------------------------------------------------------------------------------------
def _expected_distributions(context, user: int, eps_student: float, eps_teacher: float):
    """(items, p_student, p_teacher) for `user`, from both models' scores, ranked independently."""
    users = torch.tensor([user])
    with torch.no_grad():
        s = context.student.full_scores(users)[0].numpy()
        t = context.teacher.full_scores(users)[0].numpy()
    seen = training_items(context.history, user)
    rank_s, rank_t = unobserved_ranks(s, seen), unobserved_ranks(t, seen)
    items = sorted(rank_s)
    gap = np.array([rank_s[k] - rank_t[k] for k in items], dtype=float)  # > 0: the teacher ranks k higher
    p_student = np.tanh(np.maximum(eps_student * gap, 0))
    p_teacher = np.exp(eps_teacher * -gap)
    return np.array(items), p_student / p_student.sum(), p_teacher / p_teacher.sum(), gap


@pytest.mark.parametrize("user", [3, 17, 41])
def test_draws_through_the_strategy_follow_the_rank_discrepancy_distributions(toy, user):
    eps_student, eps_teacher = 0.05, 0.1
    context = bd_context(toy, teacher="BPR:16", student="BPR:4", seed=user)
    strategy = STRATEGIES.get("bd")(context, eps_student=eps_student, eps_teacher=eps_teacher, n_kd=20,
                                    update_every=60)
    strategy.prepare()
    strategy.on_epoch_start(1)
    period = int(strategy.draws_per_user()[user]) // 20  # rows of `user` in a whole update period
    student_items, teacher_items = strategy.next_items(torch.full((period,), user))
    items, p_student, p_teacher, gap = _expected_distributions(context, user, eps_student, eps_teacher)
    for drawn, p in ((student_items, p_student), (teacher_items, p_teacher)):
        counts = np.bincount(drawn.reshape(-1).numpy(), minlength=toy.n_items)
        assert counts.sum() == period * 20 >= 15_000
        assert counts[np.setdiff1d(np.arange(toy.n_items), items)].sum() == 0  # no training item, no padding
        observed = counts[items]
        assert observed[p == 0].sum() == 0
        assert merged_chisquare(observed[p > 0], p[p > 0]) > 1e-3
        assert merged_chisquare(observed, np.full(len(items), 1.0 / len(items))) < 1e-6  # not uniform
    # the direction: the student draws only items the teacher ranks higher than the student does,
    # and the teacher's most drawn item is one the student ranks highest above the teacher
    assert (gap[np.isin(items, student_items.unique().numpy())] > 0).all()
    teacher_counts = np.bincount(teacher_items.reshape(-1).numpy(), minlength=toy.n_items)[items]
    assert gap[np.argmax(teacher_counts)] <= np.quantile(gap, 0.1)


def test_draw_rows_follows_the_weights_and_never_draws_zero_weights():
    weights = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0], [2.0, 0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 1e-300]],
                           dtype=torch.float64)
    drawn = draw_rows(weights, torch.tensor([40_000, 20_000, 5]), torch.Generator().manual_seed(0))
    first, second, third = drawn[:40_000], drawn[40_000:60_000], drawn[60_000:]
    assert set(first.tolist()) == {1, 3} and set(second.tolist()) == {0, 4} and third.tolist() == [4] * 5
    assert chisquare(np.bincount(first.numpy())[[1, 3]], [10_000, 30_000]).pvalue > 1e-3
    assert chisquare(np.bincount(second.numpy())[[0, 4]]).pvalue > 1e-3


def test_descending_ranks_put_masked_items_last():
    ranks = descending_ranks(torch.tensor([[0.5, -torch.inf, 2.0, 1.0]]))
    assert ranks.tolist() == [[3, 4, 1, 2]]


def test_rows_of_one_user_take_consecutive_draws_and_a_period_hands_each_out_once(toy):
    context, strategy = ready(toy, n_kd=3, update_every=2)
    user = 5
    start, stop = int(strategy._offsets[user]), int(strategy._offsets[user + 1])
    pool = strategy.student_items[start:stop].long()
    rows = (stop - start) // 3
    first, _ = strategy.next_items(torch.tensor([user, 9, user]))
    assert torch.equal(first[[0, 2]].reshape(-1), pool[:6])
    rest, _ = strategy.next_items(torch.full((rows - 2,), user))
    assert torch.equal(torch.cat([first[[0, 2]].reshape(-1), rest.reshape(-1)]), pool)
    again, _ = strategy.next_items(torch.tensor([user]))  # past the period's draws: round again
    assert torch.equal(again[0], pool[:3])


def test_ranks_are_recomputed_every_update_every_epochs_and_reproducible_by_seed(toy):
    context, strategy = ready(toy, seed=2, update_every=3)
    first = strategy.student_items.clone()
    for epoch in (2, 3):
        strategy.on_epoch_start(epoch)
        assert torch.equal(strategy.student_items, first)
    strategy.on_epoch_start(4)
    assert not torch.equal(strategy.student_items, first)
    _, again = ready(toy, seed=2, update_every=3)
    assert torch.equal(again.student_items, first)
    _, other_seed = ready(toy, seed=3, update_every=3)
    assert not torch.equal(other_seed.student_items, first)


def test_the_rank_pass_restores_modes_and_leaves_no_gradient(toy):
    context = bd_context(toy, teacher="LightGCN:8", student="LightGCN:4")
    strategy = STRATEGIES.get("bd")(context)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert context.teacher.model.training and context.student.model.training
    assert all(p.grad is None for p in [*context.teacher.model.parameters(), *context.student.model.parameters()])
    assert context.teacher.model.restore_user_e is None and context.student.model.restore_user_e is None
    batch = next(iter(toy.train))
    with context.student.one_forward_per_step():
        loss = strategy.loss(batch)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for p in context.teacher.model.parameters())


def test_a_composite_with_bd_trains_the_teacher_further_too():
    assert STRATEGIES.get("bd+cd").updates_teacher and not STRATEGIES.get("cd+rrd").updates_teacher


# -- the BPR notebook's defaults: tau 5, eps 1e-2 / 1e-4, one KD item that is also the negative -------
def test_defaults_are_the_bpr_notebooks():
    defaults = STRATEGIES.get("bd").defaults
    assert defaults == {"lambda_student": 0.5, "lambda_teacher": 0.5, "tau": 5.0, "eps_student": 1e-2,
                        "eps_teacher": 1e-4, "n_kd": 1, "update_every": 10, "kd_negatives": 1, "warmup_epochs": 0}


def _hand_models(context, user, items):
    """Set each model's user vector and item vectors: items = {model: (user vector, {item: vector})}."""
    with torch.no_grad():
        for model, (user_vector, vectors) in items.items():
            model.user_embedding.weight[user] = torch.tensor(user_vector)
            for item, vector in vectors.items():
                model.item_embedding.weight[item] = torch.tensor(vector)


def test_loss_with_the_published_defaults_matches_hand_computed(ml100k):
    """One row; the KD items double as the negatives; the trainer's student loss on the loader's
    negative is swapped out, so base + BD is the notebook's two objectives, summed."""
    from kdbench.training.loop import _base_loss

    context = bd_context(ml100k, "BPR:2", "BPR:2")
    strategy = STRATEGIES.get("bd")(context)
    strategy.prepare()
    strategy.on_epoch_start(1)
    user, pos, neg, student_item, teacher_item = 1, 10, 20, 30, 40
    strategy.student_items.fill_(student_item)
    strategy.teacher_items.fill_(teacher_item)
    _hand_models(context, user, {
        context.student.model: ([0.5, 1.0], {student_item: [1.0, 0.0], teacher_item: [0.0, 1.0],
                                             pos: [1.0, 1.0], neg: [-2.0, 0.0]}),
        context.teacher.model: ([1.0, 1.0], {student_item: [2.0, 0.0], teacher_item: [0.0, -1.0],
                                             pos: [2.0, 0.0], neg: [1.0, 0.0]}),
    })
    # student: s(j_S) = 0.5, s(j_T) = 1, s(pos) = 1.5, s(neg) = -1; teacher: t(j_S) = 2, t(j_T) = -1, t(pos) = 2
    bpr = lambda margin: -math.log(1e-10 + sigmoid(margin))  # noqa: E731  RecBole's BPRLoss on one row
    student_objective = bpr(1.5 - 0.5) + 0.5 * bce(sigmoid(2.0 / 5), 0.5)  # negative j_S; label sig(t / 5)
    teacher_objective = bpr(2.0 - (-1.0)) + 0.5 * bce(sigmoid(1.0 / 5), -1.0)  # negative j_T; label sig(s / 5)
    batch = _batch(ml100k, [user], [pos], [neg])
    with context.student.one_forward_per_step():
        loss = strategy.loss(batch)
        base = _base_loss(context.student.model, batch)
    assert loss.item() == pytest.approx(student_objective + teacher_objective - bpr(1.5 - (-1.0)), rel=1e-6)
    assert (base + loss).item() == pytest.approx(student_objective + teacher_objective, rel=1e-6)


def test_with_kd_negatives_each_model_steps_as_the_notebooks_objective(ml100k, first_batch):
    """Gradients of the trainer's student loss + BD equal the notebook's: each model's BPR loss on
    its n_kd KD items as negatives (summed over them) plus lambda x its KD term."""
    from kdbench.training.loop import _base_loss

    context, strategy = ready(ml100k, n_kd=2, lambda_student=0.7, lambda_teacher=0.2)
    users, pos = first_batch[context.uid_field], first_batch[context.iid_field]
    student, teacher = context.student.model, context.teacher.model
    student_items, teacher_items = peek_items(strategy, users)
    with context.student.one_forward_per_step():
        (_base_loss(student, first_batch) + strategy.loss(first_batch)).backward()
    named = [*student.named_parameters(prefix="s"), *teacher.named_parameters(prefix="t")]
    got = {name: p.grad.clone() for name, p in named}
    for p in [*student.parameters(), *teacher.parameters()]:
        p.grad = None

    def objective(own, other, kd_items, lam):
        positive = bpr_scores(own, users, pos.unsqueeze(1))
        negatives = bpr_scores(own, users, kd_items)
        cf = -torch.log(1e-10 + torch.sigmoid(positive - negatives)).sum(1).mean()
        labels = torch.sigmoid(bpr_scores(other, users, kd_items).detach() / 5.0)
        kd = F.binary_cross_entropy_with_logits(negatives, labels, reduction="none").sum(1).mean()
        return cf + lam * kd

    (objective(student, teacher, student_items, 0.7) + objective(teacher, student, teacher_items, 0.2)).backward()
    for name, p in named:
        assert torch.allclose(got[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_kd_negatives_needs_pairwise_models_and_is_a_switch(toy):
    with pytest.raises(KdbenchError, match="kd_negatives.*pairwise"):
        STRATEGIES.get("bd")(bd_context(toy, teacher="NeuMF:8", student="NeuMF:4"))
    STRATEGIES.get("bd")(bd_context(toy, teacher="NeuMF:8", student="NeuMF:4"), kd_negatives=0)
    with pytest.raises(KdbenchError, match="'kd_negatives'.*0 or 1"):
        STRATEGIES.get("bd")(bd_context(toy), kd_negatives=2)


# -- pre-training (warmup_epochs): the student trains alone first, then BD starts ----------------------
def test_warmup_epochs_leave_the_student_alone_then_start_the_periods(toy):
    context = bd_context(toy, seed=1)
    strategy = STRATEGIES.get("bd")(context, warmup_epochs=3, update_every=2)
    strategy.prepare()
    batch = next(iter(toy.train))
    for epoch in (1, 2, 3):
        strategy.on_epoch_start(epoch)
        assert strategy.loss(batch) is None and strategy.student_items is None
    strategy.on_epoch_start(4)  # BD's first epoch: ranks and draws, as epoch 1 without warm-up
    first = strategy.student_items.clone()
    with context.student.one_forward_per_step():
        assert math.isfinite(strategy.loss(batch).item())
    strategy.on_epoch_start(5)
    assert torch.equal(strategy.student_items, first)
    strategy.on_epoch_start(6)  # next period: 4 + update_every
    assert not torch.equal(strategy.student_items, first)
