"""Beyond accuracy: RecBole's ItemCoverage, AveragePopularity, TailPercentage and GiniIndex of the
test users' top-K lists, and the test users' training-interaction counts (the user groups).

The formulas are RecBole 1.2.1's (`recbole.evaluator.metrics`), computed vectorised on the top-K item
ids the evaluation already has; RecBole's own classes loop in Python over every (user, rank), and its
TailPercentage looks each item up in a list of the tail items (minutes on CiteULike's catalogue).
tests/test_beyond.py checks that both give the same values. With `n` the catalogue size RecBole uses
(`item_num`, the padding item included), `R(u)` a user's top K and `phi(i)` item i's training
interactions:

- ItemCoverage@K = |union of R(u)| / n.
- AveragePopularity@K = mean over users of (1/K) sum_{i in R(u)} phi(i).
- TailPercentage@K = mean over users of the share of R(u) in the tail T. T (RecBole's `tail_ratio`
  < 1): of the items with at least one training interaction, sorted by (phi, item id), the first
  floor(TAIL_RATIO x their number): the least popular 80%, ties broken by the smaller id.
- GiniIndex@K = sum_j (2 j - n - 1) P_(j) / (n x |U| K), P_(1) <= ... <= P_(n) the times each item
  appears in the lists (never-recommended items count 0).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import numpy as np

BEYOND_K = 10  # the beyond-accuracy metrics' list length
TAIL_RATIO = 0.8  # the tail: the least popular 80% of the items with training interactions
BEYOND_METRICS = tuple(f"{name}@{BEYOND_K}" for name in
                       ("itemcoverage", "averagepopularity", "tailpercentage", "giniindex"))


def item_counts(counter: Mapping[int, int], n_items: int) -> np.ndarray:
    """A RecBole item counter ({item id: training interactions}) as an array over ids 0..n-1."""
    counts = np.zeros(n_items, dtype=np.int64)
    if counter:
        ids = np.fromiter(counter.keys(), dtype=np.int64, count=len(counter))
        counts[ids] = np.fromiter(counter.values(), dtype=np.int64, count=len(counter))
    return counts


def tail_items(counts: np.ndarray, ratio: float = TAIL_RATIO) -> np.ndarray:
    """A boolean mask of the tail items (module docstring): RecBole's `tail_ratio` < 1 rule."""
    seen = np.flatnonzero(counts > 0)
    order = seen[np.lexsort((seen, counts[seen]))]  # by count, then by id
    mask = np.zeros(len(counts), dtype=bool)
    if len(seen):
        mask[order[:max(int(len(seen) * ratio), 1)]] = True
    return mask


def beyond_accuracy(topk_items: np.ndarray, counts: np.ndarray, k: int = BEYOND_K,
                    ratio: float = TAIL_RATIO) -> dict[str, float]:
    """The four metrics at `k` of users x (>= k) top-ranked item ids, `counts` the training
    interactions per item id (its length is the catalogue size n, as RecBole's `item_num`)."""
    items = np.asarray(topk_items, dtype=np.int64)[:, :k]
    n_items = len(counts)
    if items.size == 0:
        return {name: float("nan") for name in BEYOND_METRICS}
    appearances = np.bincount(items.ravel(), minlength=n_items)
    ranks = np.arange(1, n_items + 1)
    gini = float(np.sum((2 * ranks - n_items - 1) * np.sort(appearances)) / items.size / n_items)
    return {
        f"itemcoverage@{k}": float(np.count_nonzero(appearances) / n_items),
        f"averagepopularity@{k}": float(counts[items].mean()),
        f"tailpercentage@{k}": float(tail_items(counts, ratio)[items].mean()),
        f"giniindex@{k}": gini,
    }


def user_train_counts(counter: Counter | Mapping[int, int], user_ids: np.ndarray) -> list[int]:
    """Each listed user's training interactions (RecBole's `user_counter`), in the given order."""
    return [int(counter.get(int(user), 0)) for user in user_ids]
