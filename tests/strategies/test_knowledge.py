"""Teacher knowledge in bounded chunks (kdbench/strategies/knowledge.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from _helpers_sampling import fixed_context, teacher_top
from kdbench.strategies.knowledge import (mask_seen, score_blocks, scoring_mode, teacher_top_n, top_k, top_n_of_users,
                                         user_chunks)
from tests.conftest import make_context


def test_user_chunks_cover_every_user_once_within_the_cell_budget():
    assert list(user_chunks(5, 10, max_cells=20)) == [(0, 2), (2, 4), (4, 5)]
    assert list(user_chunks(3, 100, max_cells=10)) == [(0, 1), (1, 2), (2, 3)]  # at least one user
    assert list(user_chunks(9, 1, max_cells=4)) == [(0, 4), (4, 8), (8, 9)]
    assert list(user_chunks(3, 0, max_cells=2)) == [(0, 2), (2, 3)]  # an empty catalogue counts as 1 item


def test_mask_seen_masks_padding_and_the_blocks_own_users_training_items():
    # 6 users x 3 items; the block holds users 2..5 (more users than items)
    history = sp.csr_matrix((np.ones(4), ([2, 3, 5, 0], [1, 2, 1, 2])), shape=(6, 3))
    scores = mask_seen(torch.zeros(4, 3), history, start=2)
    expected = torch.zeros(4, 3)
    expected[:, 0] = -torch.inf
    expected[0, 1] = expected[1, 2] = expected[3, 1] = -torch.inf
    assert torch.equal(scores, expected)


def test_teacher_top_n_in_chunks_equals_the_whole_ranking():
    context = fixed_context()
    chunked = teacher_top_n(context.teacher, context.history, 10, max_cells=3 * context.n_items)
    assert torch.equal(chunked, teacher_top(context, 10))


@pytest.mark.parametrize("n, k", [(1000, 5), (1000, 40), (997, 10), (1000, 100), (1000, 300), (64, 64)])
def test_top_k_equals_torch_topk_also_with_masked_entries(n, k):
    generator = torch.Generator().manual_seed(n + k)
    scores = torch.randn(30, n, generator=generator)
    scores[torch.rand(30, n, generator=generator) < 0.3] = -torch.inf  # masked, as training items are
    scores[0, k // 2 :] = -torch.inf  # a row with fewer finite entries than k
    values, indices = top_k(scores, k)
    expected = torch.topk(scores, k, dim=1)
    assert torch.equal(values, expected.values)
    assert torch.equal(scores.gather(1, indices), values)
    assert all(len(set(row.tolist())) == k for row in indices)
    finite = torch.isfinite(expected.values)
    assert torch.equal(indices[finite], expected.indices[finite])  # continuous scores: no ties to break


def test_score_blocks_give_the_full_scores_of_every_user(bpr_context):
    n_users, n_items = bpr_context.n_users, bpr_context.n_items
    blocks = list(score_blocks(bpr_context.teacher, n_users, n_items, max_cells=50 * n_items))
    assert [start for start, _, _ in blocks] == list(range(0, n_users, 50))
    with torch.no_grad():
        expected = bpr_context.teacher.full_scores(torch.arange(n_users))
    assert torch.allclose(torch.cat([scores for _, _, scores in blocks]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["BPR:8", "LightGCN:8", "NeuMF:8"])
def test_top_n_of_users_is_the_top_n_of_the_full_scores_without_the_padding_item(ml100k, model):
    context = make_context(ml100k, student=model)
    users = torch.tensor([5, 1, 5, 900, 77])  # any order, repeats allowed
    with scoring_mode(context.student) as student:
        got = top_n_of_users(student, users, 10, max_cells=2 * ml100k.n_items)  # blocks of 2 users
        scores = student.full_scores(users).detach().clone()
    scores[:, 0] = -torch.inf
    want = scores.topk(10, dim=1)
    assert got.shape == (5, 10) and not (got == 0).any()
    torch.testing.assert_close(scores.gather(1, got), want.values)
    assert torch.equal(got, want.indices)
