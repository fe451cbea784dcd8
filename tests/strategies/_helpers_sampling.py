"""Chi-square goodness of fit with bins merged until each expects at least 5 draws."""

from __future__ import annotations

import numpy as np
from scipy.stats import chisquare


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
