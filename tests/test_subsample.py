"""Less training data (kdbench.run.subsample): the per-user share, its rounding, determinism, and that
validation and test stay the full split's; the cell identity of a share (record.data_share_identity)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from kdbench.run.cells import Cell, cell_from_record
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.record import base_record, identity, teacher_identity
from kdbench.run.subsample import check_share, kept_per_user, subsample_rows, subsample_training


def test_kept_per_user_rounds_half_up_and_keeps_at_least_one():
    n = np.array([0, 1, 2, 3, 4, 5, 6, 10, 100])
    # 0.25 n + 1/2, floored: 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0, 25.5 -> at least 1
    assert kept_per_user(n, 0.25).tolist() == [0, 1, 1, 1, 1, 1, 2, 3, 25]
    # 0.5 n: 0.5 -> 1 (half up), 1, 1.5 -> 2, 2, 2.5 -> 3, 3, 5, 50
    assert kept_per_user(n, 0.5).tolist() == [0, 1, 1, 2, 2, 3, 3, 5, 50]
    assert kept_per_user(n, 1.0).tolist() == n.tolist()
    assert kept_per_user(np.array([100]), 0.29).tolist() == [29]  # 0.29 * 100 = 28.999999999999996 in floats


def _toy(seed: int = 0, n_users: int = 40):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(1, n_users + 1):
        n = int(rng.integers(1, 30))
        users += [user] * n
        items += rng.choice(np.arange(1, 200), n, replace=False).tolist()
    order = rng.permutation(len(users))  # rows in no particular order, as a split gives them
    return np.array(users)[order], np.array(items)[order]


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_each_user_keeps_its_share_of_its_own_rows(share):
    users, items = _toy()
    rows = subsample_rows(users, items, share, seed=3)
    assert np.all(np.diff(rows) > 0)  # ascending, no repeats
    full = np.bincount(users)
    kept = np.bincount(users[rows], minlength=len(full))
    assert kept.tolist() == kept_per_user(full, share).tolist()
    assert (kept[full > 0] >= 1).all()


def test_the_draw_is_deterministic_depends_on_the_seed_not_on_row_order():
    users, items = _toy()
    pairs = lambda u, i, rows: sorted(zip(u[rows].tolist(), i[rows].tolist()))  # noqa: E731
    first = subsample_rows(users, items, 0.5, seed=1)
    assert np.array_equal(first, subsample_rows(users, items, 0.5, seed=1))
    assert pairs(users, items, first) != pairs(users, items, subsample_rows(users, items, 0.5, seed=2))
    shuffled = np.random.default_rng(9).permutation(len(users))
    again = subsample_rows(users[shuffled], items[shuffled], 0.5, seed=1)
    assert pairs(users, items, first) == pairs(users[shuffled], items[shuffled], again)


def test_uniform_draw_keeps_each_interaction_with_the_share():
    users = np.repeat(np.arange(1, 5), 4)  # 4 users with 4 interactions each: 2 kept at 0.5
    items = np.tile(np.arange(1, 5), 4)
    hits = np.zeros(len(users))
    for seed in range(400):
        hits[subsample_rows(users, items, 0.5, seed)] += 1
    assert np.allclose(hits / 400, 0.5, atol=0.1)


@pytest.mark.parametrize("share", [0, -0.5, 1.5, float("nan")])
def test_shares_outside_zero_one_are_refused(share):
    with pytest.raises(KdbenchError, match=r"in \(0, 1\]"):
        check_share(share)


def test_subsampled_split_keeps_validation_and_test(ml100k):
    half = subsample_training(ml100k, 0.5, seed=0)
    assert subsample_training(ml100k, 1.0, seed=0) is ml100k
    assert half.valid is ml100k.valid and half.test is ml100k.test  # the same loaders: same users, positives, masks
    full_counts = np.diff(ml100k.history.indptr)
    kept_counts = np.diff(half.history.indptr)
    assert kept_counts.tolist() == kept_per_user(full_counts, 0.5).tolist()
    # every kept interaction is a training interaction of the full split
    assert (half.history.multiply(ml100k.history) != half.history).nnz == 0
    assert len(half.train.dataset) == half.history.nnz
    assert half.fingerprint != ml100k.fingerprint
    assert half.fingerprint == subsample_training(ml100k, 0.5, seed=0).fingerprint
    assert half.fingerprint != subsample_training(ml100k, 0.5, seed=1).fingerprint
    # the training loader yields only kept (user, item) pairs
    batch = next(iter(half.train))
    users, items = batch[half.uid_field].numpy(), batch[half.iid_field].numpy()
    assert all(half.history[int(u), int(i)] == 1 for u, i in zip(users, items))


def _cell(**fields) -> Cell:
    return Cell("ml-100k", BackboneSpec.parse("BPR:8"), BackboneSpec.parse("BPR:4"), "kd", 0, **fields)


def test_the_whole_split_adds_nothing_to_the_identity():
    cell = _cell()
    assert "data_share" not in identity(cell, "cpu")
    assert "data_share" not in teacher_identity(cell, "abc")
    assert identity(cell, "cpu") == identity(_cell(data_share=1.0, subsample_seed=5), "cpu")


def test_a_share_is_in_the_identity_and_survives_a_record():
    cell = _cell(data_share=0.25, subsample_seed=7)
    assert identity(cell, "cpu")["data_share"] == {"share": 0.25, "seed": 7}
    assert teacher_identity(cell, "abc")["data_share"] == {"share": 0.25, "seed": 7}
    assert teacher_identity(cell.teacher_cell(), "abc") == teacher_identity(cell, "abc")
    assert identity(cell, "cpu") != identity(replace(cell, subsample_seed=8), "cpu")
    record = json.loads(json.dumps(base_record(cell, "cpu")))
    rebuilt = cell_from_record(record)
    assert (rebuilt.data_share, rebuilt.subsample_seed) == (0.25, 7)
    assert cell_from_record(json.loads(json.dumps(base_record(_cell(), "cpu")))).data_share == 1.0
