"""FreqD: the co-interaction graph, the filtered rows, edge dropout, the loss and its gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import chisquare

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from kdbench.strategies.freqd import (
    FreqD,
    SparseRows,
    co_interaction_graph,
    dropped_rows,
    filtered_rows,
    freq_distance,
)


def toy_history() -> sp.csr_matrix:
    # users 0..3 x items 0..4; user 0 is empty (padding)
    dense = np.array([[0, 0, 0, 0, 0],
                      [0, 1, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [0, 0, 0, 1, 1]], dtype=np.float32)
    return sp.csr_matrix(dense)


def test_co_interaction_graph_matches_hand_computed():
    # users' common items: (1,2) = 2, (2,3) = 1, (1,3) = 0. K = 1: 1 -> 2, 2 -> 1, 3 -> 2; user 0: none.
    graph = co_interaction_graph(toy_history(), 1).toarray()
    a = np.zeros((4, 4))
    a[1, 2] = a[2, 1] = 1.0  # mutual: (1 + 1) / 2
    a[2, 3] = a[3, 2] = 0.5  # one way: (1 + 0) / 2
    degree = a.sum(1)
    degree[degree == 0] = 1
    expected = a / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]
    assert graph == pytest.approx(expected)


def test_item_graph_never_links_an_item_to_itself_or_to_strangers():
    graph = co_interaction_graph(toy_history().T.tocsr(), 3).toarray()
    assert (np.diag(graph) == 0).all()
    co = (toy_history().T @ toy_history()).toarray()
    assert ((graph > 0) <= (co > 0)).all()  # only items with users in common


def dense_filter(graph: sp.csr_matrix, alpha: float) -> torch.Tensor:
    return torch.from_numpy(alpha * graph.toarray() + (1 - alpha) * np.eye(graph.shape[0])).float()


def test_filtered_rows_equal_the_dense_filter_without_dropout():
    graph = co_interaction_graph(sp.random(30, 40, density=0.2, random_state=0, format="csr"), 4)
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(30, 6, generator=gen), torch.randn(30, 6, generator=gen)
    ids = torch.tensor([3, 7, 8, 21])
    filtered_t, filtered_s = filtered_rows(ids, SparseRows(graph, torch.device("cpu")),
                                           lambda e: (teacher[e], student[e]), 0.3, 1.0, gen)
    h = dense_filter(graph, 0.3)
    assert torch.allclose(filtered_t, (h @ teacher)[ids], atol=1e-6)
    assert torch.allclose(filtered_s, (h @ student)[ids], atol=1e-6)


def test_edge_dropout_keeps_each_edge_with_keep_prob_and_is_unbiased():
    graph = co_interaction_graph(sp.random(40, 50, density=0.3, random_state=1, format="csr"), 6)
    dense = torch.from_numpy(graph.toarray()).float()
    draws = 400
    ids = torch.arange(40).repeat(draws)  # every row 400 times: 400 independent masks in one call
    rows = SparseRows(graph, torch.device("cpu"))
    row, column, value = dropped_rows(ids, rows, 0.25, torch.Generator().manual_seed(2))
    kept, total = len(value), draws * int((dense > 0).sum())
    assert chisquare([kept, total - kept], [0.25 * total, 0.75 * total]).pvalue > 0.001
    assert torch.allclose(value, dense[ids[row], column] / 0.25)  # kept edges rescaled by 1 / keep_prob
    mean = torch.zeros(40, 40).index_put_((ids[row], column), value, accumulate=True) / draws
    assert torch.allclose(mean, dense, atol=0.08)  # E[drop(A)] = A


def test_freq_distance_matches_hand_computed():
    teacher, student = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert freq_distance(teacher, student, True).item() == pytest.approx((1 - 1 / math.sqrt(2)) + 2)
    assert freq_distance(teacher, student, False).item() == pytest.approx(1 + 9)


def test_loss_equals_the_dense_formula(ml100k, first_batch):
    # no dropout anywhere (keep_prob 1, dropout 0): L = [sum_U l + (sum_P l + sum_N l) / 2] / B
    context, strategy = ready(ml100k, "freqd", keep_prob=1.0, dropout=0.0, alpha=0.4, K=3)
    user_graph = co_interaction_graph(context.history, 3)
    item_graph = co_interaction_graph(context.history.T.tocsr(), 3)
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()

    def side(ids, graph, projector, student, teacher):
        h = dense_filter(graph, 0.4)
        t = (h @ teacher)[ids]
        s = (h @ projector(student))[ids]
        return (1 - torch.nn.functional.cosine_similarity(t, s, dim=1)).sum()

    users = first_batch[context.uid_field]
    expected = side(users.unique(), user_graph, strategy.user_projector, student_users, teacher_users)
    for field in (context.iid_field, context.neg_iid_field):
        expected = expected + side(first_batch[field].unique(), item_graph, strategy.item_projector,
                                   student_items, teacher_items) / 2
    assert strategy.loss(first_batch).item() == pytest.approx((expected / len(users)).item(), rel=1e-4)


def test_gradient_reaches_student_and_projectors_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "freqd")
    assert strategy.family == "feature" and strategy.weight == pytest.approx(0.5)
    check_gradients(context, strategy, first_batch)


def test_projectors_are_five_experts_of_teacher_width(ml100k):
    _, strategy = ready(ml100k, "freqd", teacher="BPR:32", student="BPR:8")
    assert strategy.user_projector.w1.shape == (5, 8, 32) and strategy.user_projector.w2.shape == (5, 32, 32)


def test_projectors_are_not_counted_in_the_student(ml100k, first_batch):
    check_not_counted(ml100k, "freqd", first_batch)


def test_rejects_unknown_and_negative_hparams(ml100k):
    numeric = {k: v for k, v in FreqD.defaults.items() if not isinstance(v, bool)}  # a bool cannot be negative
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FreqD, "defaults", numeric)
        check_rejects_bad_hparams(ml100k, "freqd", FreqD.must_be_positive)
    assert FreqD.resolve_hparams({"normalize": "false"})["normalize"] is False


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "freqd", student=student, normalize=False)
    check_integration(strategy, first_batch)
