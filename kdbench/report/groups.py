"""Light and heavy users: each strategy's change over scratch on the users with the fewest and the
most training interactions, with the main column's paired statistics on that subset of users.

The groups are defined once per dataset (its split) from the training split: the test users'
training-interaction counts that every run since issue 27 records (`test_users.train_interactions`).
With q1 the 25th and q3 the 75th percentile of those counts over the dataset's test users (each an
observed count: numpy's `lower` and `higher` methods), a user is *light* if its count <= q1, *heavy*
if its count >= q3 and it is not light, *middle* otherwise. Ties at a boundary stay together, in
the outer group, so a group can hold more than a quarter of the users. Runs without the counts
(older records) get no group columns.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.report.stats import PairedRuns

LIGHT, MIDDLE, HEAVY = "light", "middle", "heavy"
GROUPS = (LIGHT, HEAVY)  # the groups the leaderboard reports


def group_columns(group: str) -> tuple[str, ...]:
    """A group's leaderboard columns: relative change vs scratch (%), its 95% interval, the mixed
    model's p (not Holm-corrected), the secondary Wilcoxon p over users, the users tested."""
    return (f"{PRIMARY_METRIC}_vs_scratch_{group}_pct", f"rel_change_ci_low_{group}",
            f"rel_change_ci_high_{group}", f"p_value_mixed_{group}", f"p_value_vs_scratch_{group}",
            f"n_users_{group}")


GROUP_COLUMNS = tuple(column for group in GROUPS for column in group_columns(group))
GROUP_HEADERS = ("light vs scratch", "heavy vs scratch")  # the Markdown column pair

GROUPS_LEGEND = """- light / heavy vs scratch: the change of mean NDCG@10 against scratch's, in %, and its 95%
  interval (same model as p, not corrected for the several comparisons), on the light users only and
  on the heavy users only. Light: the test users whose training interactions are at most the 25th
  percentile of the test users' counts (an observed count); heavy: at least the 75th percentile; ties
  at a boundary stay in the outer group, so a group can exceed a quarter. Defined once per dataset from
  its training split. Light users are the closest a static split gets to new users. Empty for runs
  that do not record their test users' training interactions (before issue 27).
"""


def user_groups(counts: pd.Series) -> pd.Series:
    """Each user's group (`light`, `middle`, `heavy`) from its training interactions, indexed like
    `counts` (module docstring: quartile boundaries and ties)."""
    values = counts.to_numpy(dtype=float)
    labels = np.full(len(values), MIDDLE, dtype=object)
    if len(values):
        q1 = np.quantile(values, 0.25, method="lower")
        q3 = np.quantile(values, 0.75, method="higher")
        labels[values >= q3] = HEAVY
        labels[values <= q1] = LIGHT
    return pd.Series(labels, index=counts.index, name="group")


def dataset_groups(runs: pd.DataFrame) -> pd.Series | None:
    """The group of every test user of one dataset's runs (the first count stored per user id), or
    None when no run holds the counts."""
    stored = [counts for counts in runs.get("train_interactions", []) if counts is not None]
    if not stored:
        return None
    counts = pd.concat(stored)
    return user_groups(counts[~counts.index.duplicated()].sort_index())


def group_tests(paired: PairedRuns, groups: pd.Series | None,
                user_tests: Callable[[np.ndarray, np.ndarray], dict[str, Any]]) -> dict[str, Any]:
    """A strategy's group columns: `user_tests` (the main column's per-user tests) on the columns of
    each group's users in the paired seeds x users matrices (`stats.pair_runs`); the change is that
    of the mean over those seeds and users. NaN without groups; NaN (0 users) where a paired run
    lacks its per-user values or its users' counts."""
    out: dict[str, Any] = {column: math.nan for column in GROUP_COLUMNS}
    if groups is None:
        return out
    counts = [*paired.mine["train_interactions"], *paired.base["train_interactions"]]
    if paired.x is None or any(values is None for values in counts):
        return out | {group_columns(group)[-1]: 0 for group in GROUPS}
    labels = groups.reindex(paired.x.columns).to_numpy()  # each scored user's group
    x, y = paired.x.to_numpy(float), paired.y.to_numpy(float)
    for group in GROUPS:
        change, low, high, p_mixed, p_users, n_users = group_columns(group)
        scored = labels == group
        group_x, group_y = x[:, scored], y[:, scored]
        tests = user_tests(group_x, group_y)
        out |= {low: tests["rel_change_ci_low"], high: tests["rel_change_ci_high"],
                p_mixed: tests["p_value_mixed"], p_users: tests["p_value_vs_scratch"],
                n_users: tests["n_users_tested"], change: _relative_change(group_x, group_y)}
    return out


def _relative_change(x: np.ndarray, y: np.ndarray) -> float:
    """100 x (mean - scratch's mean) / scratch's mean of paired seeds x users matrices."""
    if not x.size or y.mean() == 0:
        return math.nan
    return float((x.mean() - y.mean()) / y.mean() * 100)
