"""The uniform sampler outside per-user exclusions (kdbench/strategies/_sampling.py): its edge cases.
Its distribution is tested in test_rrd.py (and through RRD and RD in their tests)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kdbench.strategies._sampling import ItemExclusions, first_occurrences, sample_allowed


def exclusions(extra: bool = True) -> ItemExclusions:
    # 3 users, items 1..11 (0 is padding). User 0 trained on {2, 5}, user 1 on {3}, user 2 on
    # nothing; extra lists {7}, {4}, {11}.
    history = sp.csr_matrix((np.ones(3), ([0, 0, 1], [2, 5, 3])), shape=(3, 12))
    return ItemExclusions(history, extra=torch.tensor([[7], [4], [11]]) if extra else None)


def draw(excluded, users, n, distinct=False, **kwargs) -> torch.Tensor:
    return sample_allowed(excluded, torch.tensor(users), n, torch.Generator().manual_seed(0), distinct=distinct, **kwargs)


def test_allowed_counts_are_the_real_items_outside_the_exclusions():
    assert exclusions().allowed_counts().tolist() == [8, 9, 10]
    assert exclusions(extra=False).allowed_counts().tolist() == [9, 10, 11]  # user 2: every real item


def test_contains_finds_every_excluded_pair_and_nothing_else():
    excluded = exclusions()
    users = torch.tensor([0, 1, 2])
    items = torch.arange(12).expand(3, 12)
    found = excluded.contains(users, items)
    expected = torch.zeros(3, 12, dtype=torch.bool)
    expected[0, [2, 5, 7]] = expected[1, [3, 4]] = expected[2, 11] = True  # (2, 11): the largest key
    assert torch.equal(found, expected)


def test_contains_with_no_exclusions_or_one():
    history = sp.csr_matrix((2, 5))
    empty = ItemExclusions(history).contains(torch.tensor([0, 1]), torch.tensor([[1, 2], [3, 4]]))
    assert empty.dtype == torch.bool and empty.shape == (2, 2) and not empty.any()
    single = ItemExclusions(sp.csr_matrix(([1.0], ([1], [3])), shape=(2, 5)))
    assert single.contains(torch.tensor([0, 1]), torch.tensor([[3, 4], [3, 4]])).tolist() == [[False, False], [True, False]]


def test_the_default_draws_with_replacement():
    rows = sample_allowed(exclusions(), torch.zeros(200, dtype=torch.long), 6, torch.Generator().manual_seed(1))
    ordered = rows.sort(dim=1).values
    assert (ordered[:, 1:] == ordered[:, :-1]).any()  # 6 draws of 8 items: repeats are near certain


@pytest.mark.parametrize("users", [[0], [2, 1, 0]])
@pytest.mark.parametrize("n", [1, 3])
def test_few_users_or_one_item_each_are_drawn(users, n):
    rows = draw(exclusions(), users, n)
    assert rows.shape == (len(users), n)
    assert not exclusions().contains(torch.tensor(users), rows).any() and (rows > 0).all()


def test_no_users_or_no_items_give_empty_draws():
    assert draw(exclusions(), [], 3).shape == (0, 3)
    assert draw(exclusions(), [0, 1], 0).shape == (2, 0)


def test_distinct_draws_may_take_every_allowed_item_but_not_more():
    rows = draw(exclusions(), [0] * 50, 8, distinct=True)
    assert all(sorted(row) == [1, 3, 4, 6, 8, 9, 10, 11] for row in rows.tolist())
    with pytest.raises(ValueError, match="only 8 allowed items to draw 9 from"):
        draw(exclusions(), [0, 1], 9, distinct=True)


def test_draws_with_replacement_need_one_allowed_item_only():
    history = sp.csr_matrix((np.ones(10), ([0] * 10, list(range(2, 12)))), shape=(1, 12))  # only item 1 left
    assert (draw(ItemExclusions(history), [0, 0], 20) == 1).all()
    with pytest.raises(ValueError, match="only 0 allowed items"):
        draw(ItemExclusions(sp.csr_matrix((np.ones(11), ([0] * 11, list(range(1, 12)))), shape=(1, 12))), [0], 1)


def test_rows_short_of_draws_are_redrawn_and_chunks_cover_every_user():
    # 30 users with every item allowed and 3 with 2 of 200: the first round's width, sized for
    # the 10% scarcest, leaves the scarce rows short, and they are redrawn; 16 users a chunk
    rows, cols = [], []
    for user in (30, 31, 32):
        rows += [user] * 197
        cols += list(range(3, 200))
    excluded = ItemExclusions(sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(33, 200)))
    drawn = draw(excluded, list(range(33)), 2, distinct=True, max_cells=8 * 4 * 40)
    assert drawn.shape == (33, 2) and (drawn > 0).all()
    assert all(sorted(row) == [1, 2] for row in drawn[30:].tolist())
    assert not excluded.contains(torch.arange(33), drawn).any()


def test_first_occurrences_marks_the_earliest_position_of_each_value():
    rows = torch.randint(0, 4, (50, 200), generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([[value not in row[:position] for position, value in enumerate(row)] for row in rows.tolist()])
    assert torch.equal(first_occurrences(rows), expected)
