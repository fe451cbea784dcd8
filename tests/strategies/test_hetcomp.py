"""HetComp: its losses against hand-computed values, the ensemble, DKC's switching rule, and the
gradient path, on toy inputs and a random-teacher ml-100k context."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.errors import KdbenchError
from kdbench.strategies.hetcomp import (HetComp, dkc_update, ensemble_top, hetcomp_loss, ndcg_distance,
                                        select_checkpoints)
from tests.conftest import make_context

E = math.exp


def _log_term(s, rest):
    return s - math.log(E(s) + rest)


def test_overall_loss_matches_hand_computation():
    # items 0 (padding) .. 4; item 1 observed; the ensemble's top: 2, 3; every other unobserved: 4
    s = [0.0, 1.0, 2.0, 0.5, -1.0]
    unobserved = torch.tensor([[False, False, True, True, True]])
    loss = hetcomp_loss(torch.tensor([s]), unobserved, torch.tensor([[1]]), torch.tensor([[2, 3]]), final=False)
    rest = E(-1.0)  # e^s over unobserved items outside the top
    expected = -sum(_log_term(s[j], rest) for j in (1, 2, 3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    padded = hetcomp_loss(torch.tensor([s]), unobserved, torch.tensor([[1, 0]]), torch.tensor([[2, 3]]), final=False)
    assert padded.item() == pytest.approx(expected, rel=1e-6)  # 0 in the observed list is no item


def test_listwise_loss_matches_hand_computation():
    # items 1, 2 observed (ensemble order 2, 1); top 3, 4, 5, 6 (K = 4: half 3, 4; tenth 3)
    s = [0.0, 0.3, -0.2, 1.5, 0.7, -0.4, 0.1]
    unobserved = torch.tensor([[False, False, False, True, True, True, True]])
    loss = hetcomp_loss(torch.tensor([s]), unobserved, torch.tensor([[2, 1]]), torch.tensor([[3, 4, 5, 6]]),
                        final=True)
    rest_half = E(s[5]) + E(s[6])
    rest_sub = E(s[4]) + E(s[5]) + E(s[6])
    pos = -(s[2] - math.log(E(s[2]) + E(s[1]) + rest_half) + s[1] - math.log(E(s[1]) + rest_half))
    half = -(s[3] - math.log(E(s[3]) + E(s[4]) + rest_half) + s[4] - math.log(E(s[4]) + rest_half))
    sub = -(s[3] - math.log(E(s[3]) + rest_sub))
    assert loss.item() == pytest.approx(0.5 * (pos + (half + sub) / 2), rel=1e-6)


def test_loss_averages_users_and_clamps_scores():
    s = torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 100.0, 0.0, 0.0]])
    unobserved = torch.tensor([[False, False, True, True, True]] * 2)
    pos, top = torch.tensor([[1], [1]]), torch.tensor([[2, 3], [2, 3]])
    both = hetcomp_loss(s, unobserved, pos, top, final=False)
    first = hetcomp_loss(s[:1], unobserved[:1], pos[:1], top[:1], final=False)
    clamped = hetcomp_loss(s[1:].clamp(max=40), unobserved[1:], pos[1:], top[1:], final=False)
    assert torch.isfinite(both)
    assert both.item() == pytest.approx((first.item() + clamped.item()) / 2, rel=1e-6)


def test_ensemble_sums_rank_importance_over_teachers():
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[7, 8, 0]])  # 0: padding, never chosen
    # I(7) = e^-2 + 1 > I(5) = 1 > I(6) = I(8) = e^-1 (tie: the earlier teacher's first)
    assert ensemble_top([a, b], 4, temperature=1.0).tolist() == [[7, 5, 6, 8]]
    assert ensemble_top([a, b], 5, temperature=1.0).tolist() == [[7, 5, 6, 8, 0]]
    assert ensemble_top([a], 2, temperature=1.0).tolist() == [[5, 6]]


def test_ndcg_distance():
    teacher = torch.tensor([[1, 2], [1, 2], [1, 2]])
    student = torch.tensor([[2, 1], [3, 4], [1, 9]])
    gain1 = (2 ** E(-0.1) - 1) / math.log2(3)  # rank 0's gain is (2^1 - 1) / log2(2) = 1
    assert ndcg_distance(student, teacher).tolist() == pytest.approx([0.0, 1.0, 1 - 1 / (1 + gain1)])


def test_dkc_moves_a_user_once_the_student_caught_up():
    # one teacher, 3 checkpoints (final 2), users 0..3; table[c][u]: the student's distance to checkpoint c
    table = torch.tensor([[0.9] * 4, [0.5, 0.5, 0.5, 0.5], [0.8, 0.8, 0.8, 0.8]], dtype=torch.float64)
    v = torch.tensor([[0, 0, 0, 2]])
    last = torch.ones((1, 4), dtype=torch.float64)
    final = torch.tensor([2])

    def distance(x, checkpoint):
        return table[checkpoint, torch.arange(4)]

    dkc_update(v, last, final, distance, threshold=1.05, first=True)
    assert v.tolist() == [[0, 0, 0, 2]]  # the first call only measures
    assert last.tolist() == [[0.5, 0.5, 0.5, 0.8]]
    table[1] = torch.tensor([0.4, 0.49, 0.6, 0.1], dtype=torch.float64)
    dkc_update(v, last, final, distance, threshold=1.05, first=False)
    # user 0: 0.5 / 0.4 = 1.25 > 1.05 moves; user 1: 1.02 stays; user 2: 0.83 < 1 moves; user 3 is at the end
    assert v.tolist() == [[1, 0, 1, 2]]
    assert last.tolist() == [[0.8, 0.5, 0.8, 0.8]]  # moved users now measure to checkpoint 2
    table[2] = torch.tensor([0.7, 0.7, 0.8, 0.8], dtype=torch.float64)
    dkc_update(v, last, final, distance, threshold=1.05, first=False)
    assert v.tolist() == [[2, 0, 1, 2]]  # user 0: 0.8 / 0.7 = 1.14; user 2: ratio 1 stays


def _trajectory(n_users: int, n_items: int, recorded: int, seed: int, k: int = 100) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lists = [torch.rand((n_users, n_items - 1), generator=generator).argsort(1)[:, :k] + 1
             for _ in range(recorded + 1)]
    observed = torch.rand((n_users, n_items - 1), generator=generator).argsort(1)[:, :10] + 1
    return {"epochs": torch.arange(1, recorded + 2) * 5, "top": torch.stack(lists).int(), "observed": observed}


def test_select_checkpoints_spreads_over_the_recorded_epochs():
    trajectory = _trajectory(3, 20, recorded=5, seed=0, k=10)
    picked = select_checkpoints(trajectory, 4, 6)
    assert picked.shape == (4, 3, 6) and picked.dtype == torch.long
    for position, index in enumerate([0, 2, 4, 5]):
        assert torch.equal(picked[position], trajectory["top"][index, :, :6].long())
    assert len(select_checkpoints(_trajectory(3, 20, recorded=1, seed=0, k=10), 4, 6)) == 2
    assert len(select_checkpoints(_trajectory(3, 20, recorded=0, seed=0, k=10), 4, 6)) == 1


def test_gradient_reaches_the_student_only(ml100k, first_batch):
    context = make_context(ml100k)
    context.trajectories = (_trajectory(ml100k.n_users, ml100k.n_items, 4, seed=1),
                            _trajectory(ml100k.n_users, ml100k.n_items, 2, seed=2))
    strategy = HetComp(context, K=20, warmup=0, p=1)
    strategy.prepare()
    assert strategy.final.tolist() == [3, 2] and not strategy.listwise
    strategy.loss(first_batch).backward()
    student = list(context.student.model.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student)
    assert all(p.grad is None for p in context.teacher.model.parameters())
    strategy.on_epoch_start(1)  # the first DKC: measures only
    assert strategy.dkc_calls == 1 and strategy.v.sum() == 0
    for epoch in range(2, 12):
        strategy.on_epoch_start(epoch)
    assert strategy.v.max() <= 3 and (strategy.v[1] <= 2).all()
    assert strategy.top.shape == (ml100k.n_users, 20)


def test_hyperparameters_are_checked():
    assert HetComp.resolve_hparams({"teachers": " LightGCN:8 + NeuMF:8"})["teachers"] == "LightGCN:8+NeuMF:8"
    assert HetComp.ensemble_teachers(HetComp.resolve_hparams({})) == ("BPR:64", "LightGCN:64")
    with pytest.raises(KdbenchError, match="teachers"):
        HetComp.resolve_hparams({"teachers": "LightGCN:8+"})
    with pytest.raises(KdbenchError, match="'K'"):
        HetComp.check_hparams(HetComp.resolve_hparams({"K": 101}), 100, 1000)
    with pytest.raises(KdbenchError, match="'K'"):
        HetComp.check_hparams(HetComp.resolve_hparams({"K": 50}), 100, 40)
