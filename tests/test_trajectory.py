"""Teacher trajectories: each user's training items ranked by the teacher, the snapshot format,
and the loader's refusal of anything that is not a trajectory."""

from __future__ import annotations

import pytest
import torch

from kdbench.training.trajectory import from_bytes, observed_order, snapshot, to_bytes
from tests.conftest import make_context


def test_observed_order_ranks_each_users_training_items_by_the_teachers_scores(ml100k):
    context = make_context(ml100k)
    order = observed_order(context.teacher, context.history, 10)
    assert order.shape == (ml100k.n_users, 10)
    with torch.no_grad():
        scores = context.teacher.full_scores(torch.arange(1, 30)).float()
    for user in range(1, 30):
        items = torch.from_numpy(context.history[user].indices).long()
        items = items[items != 0]
        expected = items[scores[user - 1, items].argsort(descending=True)][:10]
        assert order[user, : len(expected)].tolist() == expected.tolist()
        assert (order[user, len(expected):] == 0).all()  # padding where a user has fewer than 10


def test_a_snapshot_round_trips_and_garbage_is_refused(ml100k):
    context = make_context(ml100k)
    trajectory = snapshot(context.teacher, context.history, copies=3, k=20)
    assert trajectory["top"].shape == (3, ml100k.n_users, 20) and torch.equal(trajectory["top"][0], trajectory["top"][2])
    loaded = from_bytes(to_bytes(trajectory))
    assert all(torch.equal(loaded[key], trajectory[key]) for key in trajectory)
    for bad in (b"not a file", to_bytes({"top": trajectory["top"]}),
                to_bytes({**trajectory, "epochs": torch.arange(2)})):
        with pytest.raises(ValueError, match="not a trajectory"):
            from_bytes(bad)
