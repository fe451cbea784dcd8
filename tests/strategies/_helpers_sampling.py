"""Distribution tests of what a strategy samples, drawn through the strategy itself.

A sampler can be right and the strategy still call it with the wrong numbers (a temperature
scaled at the call site, a hyperparameter swapped for its default). So each sampling strategy is
built with non-default hyperparameters on `fixed_context()`, a small catalogue whose teacher and
student score every item with a fixed table (each user's ranking of its unobserved items is
known exactly), its `prepare()` runs once and its `on_epoch_start()` for many epochs, and the
sampled items, turned into teacher ranks (`teacher_ranks`) or positions among the items allowed
to be drawn (`allowed_positions`), are compared with the distribution the strategy's docstring
states for those hyperparameters (`assert_follows`: Pearson's chi-square, cells merged until
each expects at least 5 draws).

To cover a new sampling strategy: build it on `fixed_context()`, collect its samples with
`over_epochs()`, write its stated distribution with `exp_rank_pmf` / `best_of_two` /
`successive_draws` / `as_sets` (or a new helper beside them), and call `assert_follows()`.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Callable, Hashable, Iterable, Iterator, Mapping

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import chi2, chisquare
from torch import nn

from kdbench.backbones import BackboneAdapter
from kdbench.strategies.base import DistillationContext, DistillationStrategy

UID, IID, NEG_IID = "user_id", "item_id", "neg_item_id"


class ScoreTable(nn.Module):
    """A backbone whose score of (user, item) is a fixed table entry: RecBole's predict /
    full_sort_predict interface, nothing trained."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.float(), requires_grad=False)
        self.n_items = table.shape[1]

    def predict(self, interaction) -> torch.Tensor:
        return self.table[interaction[UID], interaction[IID]]

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return self.table[interaction[UID]].reshape(-1)


def fixed_context(n_users: int = 31, n_items: int = 41, training_counts: tuple[int, ...] = (4, 8, 25),
                  seed: int = 0) -> DistillationContext:
    """Users 1..n_users-1 (0 is RecBole's padding user, with no history), items 1..n_items-1.

    User u has training_counts[(u - 1) % len] training items, so the users fall into groups of
    unequal unobserved counts (a heavy user's top-N list can run out of unobserved items). Each
    user's teacher and student scores are independent random permutations of 0..n_items-1:
    distinct, so every ranking is strict.
    """
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(1, n_users):
        count = training_counts[(user - 1) % len(training_counts)]
        rows += [user] * count
        cols += rng.choice(np.arange(1, n_items), size=count, replace=False).tolist()
    history = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))

    def table() -> torch.Tensor:
        return torch.from_numpy(np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float32))

    return DistillationContext(
        teacher=BackboneAdapter(ScoreTable(table()), UID, IID),
        student=BackboneAdapter(ScoreTable(table()), UID, IID),
        n_users=n_users, n_items=n_items, history=history,
        uid_field=UID, iid_field=IID, neg_iid_field=NEG_IID, device=torch.device("cpu"), seed=seed,
    )


def allowed_mask(context: DistillationContext, also_excluded: torch.Tensor | None = None) -> np.ndarray:
    """(n_users, n_items) bool: real items outside each user's training items (and outside the
    user's row of `also_excluded`, an (n_users, M) tensor of item ids, if given)."""
    mask = np.ones((context.n_users, context.n_items), dtype=bool)
    mask[:, 0] = False
    mask[context.history.toarray() > 0] = False
    if also_excluded is not None:
        np.put_along_axis(mask, also_excluded.numpy(), False, axis=1)
    return mask


def teacher_ranks(context: DistillationContext) -> np.ndarray:
    """(n_users, n_items) each item's 0-based rank by teacher score among the user's unobserved
    real items; -1 for padding and training items. Computed from the table, not by kdbench."""
    scores = context.teacher.model.table.numpy()
    allowed = allowed_mask(context)
    ranks = np.full(scores.shape, -1)
    for user in range(context.n_users):
        items = np.flatnonzero(allowed[user])
        ranks[user, items[np.argsort(-scores[user, items])]] = np.arange(len(items))
    return ranks


def teacher_top(context: DistillationContext, n: int) -> torch.Tensor:
    """(n_users, n) each user's n best unobserved items by teacher score, best first."""
    ranks = teacher_ranks(context)
    return torch.from_numpy(np.argsort(np.where(ranks < 0, ranks.shape[1], ranks), axis=1)[:, :n])


def unobserved_counts(context: DistillationContext) -> np.ndarray:
    return allowed_mask(context).sum(axis=1)


def allowed_positions(allowed: np.ndarray) -> np.ndarray:
    """(n_users, n_items) each allowed item's position among its user's allowed items (in item-id
    order), -1 elsewhere: uniform sampling from the allowed items makes the position uniform."""
    return np.where(allowed, np.cumsum(allowed, axis=1) - 1, -1)


def lookup(table: np.ndarray, items: torch.Tensor) -> np.ndarray:
    """table (n_users, n_items), items (E, n_users, M) or (n_users, M) -> table[user, item]."""
    items = items.numpy()
    users = np.arange(table.shape[0]).reshape(-1, 1)
    return table[users, items] if items.ndim == 2 else table[users[None], items]


def over_epochs(strategy: DistillationStrategy, epochs: Iterable[int],
                take: Callable[[DistillationStrategy], torch.Tensor]) -> torch.Tensor:
    """on_epoch_start(e) for each epoch (prepare() already run), on one thread; `take` reads
    what the strategy sampled: -> (n_epochs, n_users, M) on the CPU."""
    drawn = []
    with one_thread():
        for epoch in epochs:
            strategy.on_epoch_start(epoch)
            drawn.append(take(strategy).detach().cpu().clone())
    return torch.stack(drawn)


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread meanwhile: the tensors of these tests are tiny, and on a machine that
    other jobs keep busy each parallel region would wait for a descheduled thread (epochs 100x
    slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- stated distributions --------------------------------------------------------------------
def exp_rank_pmf(n: int, scale: float) -> np.ndarray:
    """p(r) ~ exp(-r / scale) for ranks r = 1..n (index r - 1)."""
    weights = np.exp(-np.arange(1, n + 1) / scale)
    return weights / weights.sum()


def best_of_two(pmf: np.ndarray) -> np.ndarray:
    """pmf of min(R1, R2) for R1, R2 i.i.d. with `pmf` (the better-ranked of two draws)."""
    at_least = np.cumsum(pmf[::-1])[::-1]  # P(R >= r)
    above = np.append(at_least[1:], 0.0)  # P(R > r)
    return at_least**2 - above**2


def successive_draws(pmf: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """Ordered k-tuples of distinct indices: each next one drawn from `pmf` restricted to the
    indices not yet drawn (the distribution of the first k distinct values of an i.i.d. sequence,
    and of sampling without replacement in proportion to `pmf`)."""
    out: dict[tuple[int, ...], float] = {}

    def extend(prefix: tuple[int, ...], prob: float, left: float) -> None:
        if len(prefix) == k:
            out[prefix] = prob
            return
        for index, p in enumerate(pmf):
            if p > 0 and index not in prefix:
                extend(prefix + (index,), prob * p / left, left - p)

    extend((), 1.0, float(pmf.sum()))
    return out


def as_sets(ordered: Mapping[tuple[int, ...], float]) -> dict[tuple[int, ...], float]:
    """Ordered tuples' probabilities summed over their sets (cells: sorted tuples)."""
    sets: dict[tuple[int, ...], float] = Counter()
    for cells, prob in ordered.items():
        sets[tuple(sorted(cells))] += prob
    return dict(sets)


def as_cells(pmf: np.ndarray) -> dict[int, float]:
    return {index: float(p) for index, p in enumerate(pmf)}


# -- the test --------------------------------------------------------------------------------
def merged_bins(expected: Mapping[Hashable, float], min_expected: float) -> list[list[Hashable]]:
    """Cells in decreasing order of expectation (rank order for a decreasing pmf), merged into
    bins that each expect at least `min_expected`; a short remainder joins the last bin."""
    bins: list[list[Hashable]] = []
    current: list[Hashable] = []
    total = 0.0
    for cell in sorted(expected, key=lambda c: -expected[c]):
        current.append(cell)
        total += expected[cell]
        if total >= min_expected:
            bins.append(current)
            current, total = [], 0.0
    if current:
        if bins:
            bins[-1] += current
        else:
            bins.append(current)
    return bins


def assert_follows(samples: Mapping[Hashable, Iterable[Hashable]], pmfs: Mapping[Hashable, Mapping[Hashable, float]],
                   alpha: float = 1e-3, min_expected: float = 5.0) -> float:
    """Pearson's chi-square of samples against stated pmfs, summed over independent groups.

    samples[g]: group g's draws (cells), one per independent trial; pmfs[g]: the stated pmf over
    cells for group g (e.g. users with the same number of unobserved items). Cells are merged per
    group until each bin expects at least `min_expected`. Fails if a draw falls on a cell of
    probability 0, or if the p-value is below `alpha`. Returns the p-value.
    """
    statistic, dof = 0.0, 0
    for group, draws in samples.items():
        counts = Counter(draws)
        pmf = {cell: p for cell, p in pmfs[group].items() if p > 0}
        assert abs(sum(pmf.values()) - 1) < 1e-9, f"group {group}: the stated pmf does not sum to 1"
        impossible = set(counts) - set(pmf)
        assert not impossible, f"group {group}: drawn cells the stated distribution never gives: {sorted(impossible)[:5]}"
        n = sum(counts.values())
        bins = merged_bins({cell: n * p for cell, p in pmf.items()}, min_expected)
        for cells in bins:
            observed, expected = sum(counts[c] for c in cells), n * sum(pmf[c] for c in cells)
            statistic += (observed - expected) ** 2 / expected
        dof += len(bins) - 1
    assert dof > 0, "nothing to test: every group's draws fall in a single bin"
    p_value = float(chi2.sf(statistic, dof))
    assert p_value > alpha, f"chi-square {statistic:.1f} on {dof} degrees of freedom: p = {p_value:.3g}"
    return p_value


def by_group(values: np.ndarray, groups: np.ndarray, each_entry: bool = False) -> dict[int, list]:
    """values (E, n_users, M) -> {group: cells}, one cell per trial of the group's users.

    groups (n_users,): each user's group key, -1 to leave the user out (the padding user 0). A
    trial is a row (its M values as a tuple, or the value alone if M is 1), or with `each_entry`
    every value on its own (for i.i.d. draws).
    """
    out: dict[int, list] = {}
    for group in sorted(set(groups.tolist()) - {-1}):
        rows = values[:, groups == group].reshape(-1, values.shape[2])
        if each_entry or rows.shape[1] == 1:
            out[group] = rows.reshape(-1).tolist()
        else:
            out[group] = [tuple(row) for row in rows.tolist()]
    return out


def user_groups(context: DistillationContext, key: np.ndarray) -> np.ndarray:
    """(n_users,) group keys: `key` per user, -1 for the padding user 0."""
    groups = np.asarray(key).copy()
    groups[0] = -1
    return groups


def merged_chisquare_pvalue(observed, expected, min_expected: float = 5.0) -> float:
    """p-value of the chi-square test of `observed` counts against `expected` counts (same total),
    after merging bins, smallest expectations first, into groups that each expect >= min_expected
    (a short remainder joins the last group)."""
    observed, expected = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    order = np.argsort(expected, kind="stable")
    groups_obs, groups_exp = [], []
    acc_obs = acc_exp = 0.0
    for i in order:
        acc_obs += observed[i]
        acc_exp += expected[i]
        if acc_exp >= min_expected:
            groups_obs.append(acc_obs)
            groups_exp.append(acc_exp)
            acc_obs = acc_exp = 0.0
    if acc_exp > 0 or acc_obs > 0:
        groups_obs[-1] += acc_obs
        groups_exp[-1] += acc_exp
    assert len(groups_exp) >= 2 and min(groups_exp) >= min_expected
    return float(chisquare(groups_obs, np.asarray(groups_exp) * sum(groups_obs) / sum(groups_exp)).pvalue)
