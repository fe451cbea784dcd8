"""Teacher knowledge in bounded chunks (kdbench/strategies/knowledge.py)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from _helpers_sampling import fixed_context, teacher_top
from kdbench.strategies.knowledge import mask_seen, teacher_top_n, user_chunks


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
