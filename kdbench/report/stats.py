"""Significance, effect intervals and detectable effects of a strategy against scratch.

Input: two seeds x users matrices of per-user NDCG@10, the strategy's and scratch's, paired by seed
(the seed-s run of both: same split, same initialisation seed) and by user id. The primary test is a
linear mixed model with crossed random effects on their difference, in closed form because the
design is balanced (every run scores every test user):

    d[s, u] = strategy[s, u] - scratch[s, u] = mu + b_s + a_u + e_su,
    b_s ~ (0, var_seed)   the seed-s training draw (seed-to-seed noise),
    a_u ~ (0, var_user)   what user u gains in every seed,
    e_su ~ (0, var_residual).

The mean difference has variance var_seed / S + var_user / U + var_residual / (S U). The two-way
ANOVA mean squares estimate it without bias as (MS_seed + MS_user - MS_resid) / (S U) (expected
mean squares: MS_seed = var_residual + U var_seed, MS_user = var_residual + S var_user,
MS_resid = var_residual), and mean / sqrt(variance) is referred to Student's t on Satterthwaite's
degrees of freedom. With no user variance this is the paired t-test over seeds; with no seed
variance, a t-test over users. When the estimate is not positive (both components estimated
below zero) both are taken as zero: variance MS_resid / (S U).

Why not the alternatives: a test over users of seed-averaged values ignores var_seed, a t-test
over seed means ignores var_user, and a two-level bootstrap over 5 seeds under-covers (its seed
resampling has variance (S - 1) / S of the sample's and normal, not t_4, quantiles). On simulated
null data (5 seeds, 200 users) they gave up to 55%, 22% and 13% false positives at alpha 0.05,
this test 4.8-5.4% (README, Statistics; tests/test_stats.py checks it).

Seed-bounded variant (`seed_bound=True`, the report's primary test). Satterthwaite's degrees of
freedom come from the estimated components, and var_seed has only S - 1 of them: with 3 seeds
MS_seed falls below MS_resid about one time in ten while var_seed is real (chi^2_2 / 2 < 0.12 has
probability 0.11), the seed part then vanishes from the estimate, the degrees of freedom jump from
about S - 1 to about U - 1 and the test runs on users alone (p = 1e-21 on 3 seeds). On simulated
null data with 3 seeds and a realistic seed share the unbounded test rejects 8% at alpha 0.05 and
3.5% at 0.01 (tests/test_stats.py). The bound treats the seeds as the unit of replication:

    variance = max((MS_seed + MS_user - MS_resid) / (S U), MS_seed / (S U)),  df = S - 1.

MS_seed / (S U) is the variance estimate of the paired t-test over the seeds' mean differences,
so no p-value is ever below that test's (the user part can only add to it), and S - 1 is the
degrees of freedom of the seed stratum, the only one that can estimate var_seed. The test stays
valid whatever var_seed is: t = Z / sqrt(lambda W + 1 - lambda), W ~ chi^2_{S-1} / (S - 1), lambda
the seed share of the variance, has tails no heavier than t_{S-1} (lambda = 1), so the size is at
most alpha: alpha when the seeds carry the variance, 0.1-2% at alpha 0.05 in the simulations where
users carry part of it. The price is power where users carry much of it: t_{S-1} quantiles (2.78
with 5 seeds, 4.30 with 3) instead of about 1.97. With S - 1 degrees of freedom the seed share
cannot be bounded away from 1 (its 99% upper limit is 13x its estimate with 5 seeds), so that is
what S seeds allow; more seeds buy it back.

Tables (the ranking among strategies). `top_group`: the leader (highest mean) against every other
strategy with the seed-bounded test, Holm-adjusted over those m - 1 comparisons; a strategy is in
the top group unless it is significantly below the leader. `rank_intervals`: a two-level bootstrap
of every strategy's rank (seeds drawn with replacement, then users, the same draws for every
strategy because seed s and user u are paired across strategies); descriptive only: with 3-5 seeds
the seed level has 10-126 distinct resamples and, like any percentile bootstrap over so few
units, it under-covers, so the top group, not the interval, decides.

Everything but the rank bootstrap is closed form, so the results are deterministic; the bootstrap
draws from a fixed-seed generator (numpy's PCG64), so the report stays byte-identical. The
functions take arrays whose last two axes are seeds x users and broadcast over leading axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
from scipy import stats

RANK_BOOTSTRAP_DRAWS, RANK_BOOTSTRAP_SEED, RANK_BOOTSTRAP_CHUNK = 2000, 0, 250


def paired_matrices(strategy: Mapping[Any, pd.Series], scratch: Mapping[Any, pd.Series]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeds x users matrices of the seeds both have and the users every one of those runs scored.

    Each mapping is seed -> per-user values indexed by user id; rows are aligned by seed and columns
    by user id (never by position), both sorted.
    """
    seeds = sorted(set(strategy) & set(scratch))
    if not seeds:
        empty = pd.DataFrame(dtype=float)
        return empty, empty
    series = [strategy[s] for s in seeds] + [scratch[s] for s in seeds]
    users = series[0].index
    if users.is_monotonic_increasing and users.is_unique and all(values.index.equals(users) for values in series):
        # the usual case (every run of a table scored the same test users, stored in id order): the
        # same matrices without aligning each Series by its index (~1,000 calls a report)
        table = np.stack([values.to_numpy(float) for values in series])  # (2 S, U)
        scored = ~np.isnan(table).any(axis=0)
        users = users[scored]
        return (pd.DataFrame(table[: len(seeds), scored], index=seeds, columns=users),
                pd.DataFrame(table[len(seeds):, scored], index=seeds, columns=users))
    mine = pd.DataFrame({s: strategy[s] for s in seeds}).T
    base = pd.DataFrame({s: scratch[s] for s in seeds}).T
    users = mine.columns[mine.notna().all()].intersection(base.columns[base.notna().all()])
    users = users.sort_values()
    return mine.loc[seeds, users].astype(float), base.loc[seeds, users].astype(float)


@dataclass(frozen=True)
class PairedRuns:
    """A strategy's runs and scratch's on the seeds both have, each indexed by seed (sorted), and
    their seeds x users matrices of the per-user values (`paired_matrices`; None where a run lacks
    them). Built once per leaderboard row: its tests, overall and by user group, all read it."""

    seeds: list
    mine: pd.DataFrame
    base: pd.DataFrame
    x: pd.DataFrame | None
    y: pd.DataFrame | None


def pair_runs(runs: pd.DataFrame, scratch: pd.DataFrame) -> PairedRuns:
    """`runs` and `scratch` (one row a run, with `seed` and `per_user`) paired by seed."""
    seeds = sorted(set(runs["seed"]) & set(scratch["seed"]))
    mine, base = runs.set_index("seed").loc[seeds], scratch.set_index("seed").loc[seeds]
    x = y = None
    if seeds and all(values is not None for values in [*mine["per_user"], *base["per_user"]]):
        x, y = paired_matrices(dict(zip(seeds, mine["per_user"])), dict(zip(seeds, base["per_user"])))
    return PairedRuns(seeds, mine, base, x, y)


@dataclass(frozen=True)
class MeanVariance:
    """The estimated variance of a matrix's grand mean under the crossed model, and its parts."""

    mean: np.ndarray
    variance: np.ndarray
    df: np.ndarray  # Satterthwaite
    var_seed: np.ndarray  # ANOVA estimates, negative ones set to 0
    var_user: np.ndarray
    var_residual: np.ndarray


def mean_variance(x: np.ndarray, seed_bound: bool = False) -> MeanVariance:
    """Grand mean of seeds x users matrices, its variance estimate and degrees of freedom (see module).

    seed_bound: the variance at least MS_seed / (S U) and df = S - 1 (module docstring)."""
    x = np.asarray(x, dtype=float)
    n_seeds, n_users = x.shape[-2:]
    rows = x.mean(axis=-1, keepdims=True)
    cols = x.mean(axis=-2, keepdims=True)
    grand = x.mean(axis=(-2, -1), keepdims=True)
    df_seed, df_user = n_seeds - 1, n_users - 1
    df_resid = df_seed * df_user
    with np.errstate(divide="ignore", invalid="ignore"):
        ms_seed = n_users * ((rows - grand) ** 2).sum(axis=(-2, -1)) / df_seed
        ms_user = n_seeds * ((cols - grand) ** 2).sum(axis=(-2, -1)) / df_user
        ms_resid = ((x - rows - cols + grand) ** 2).sum(axis=(-2, -1)) / df_resid
        both = ms_seed + ms_user - ms_resid > 0
        # variance = (c_seed MS_seed + c_user MS_user + c_resid MS_resid) / (S U)
        c_seed = c_user = both.astype(float)
        c_resid = 1.0 - 2.0 * c_seed
        parts = (c_seed * ms_seed, c_user * ms_user, c_resid * ms_resid)
        total = sum(parts)
        df = total ** 2 / (parts[0] ** 2 / df_seed + parts[1] ** 2 / df_user + parts[2] ** 2 / df_resid)
    if seed_bound:
        total = np.maximum(total, ms_seed)
        df = np.full(np.shape(total), float(df_seed))
    return MeanVariance(
        mean=grand[..., 0, 0], variance=total / (n_seeds * n_users), df=df,
        var_seed=np.maximum((ms_seed - ms_resid) / n_users, 0.0),
        var_user=np.maximum((ms_user - ms_resid) / n_seeds, 0.0),
        var_residual=ms_resid,
    )


@dataclass(frozen=True)
class Comparison:
    """A strategy against scratch on paired seeds x users matrices (NaN with < 2 seeds or users)."""

    mean_diff: np.ndarray  # mean of strategy - scratch over the paired cells
    rel_change: np.ndarray  # mean_diff / scratch's mean
    p_value: np.ndarray  # two-sided, the crossed mixed model's t-test of mean_diff = 0
    df: np.ndarray
    ci_low: np.ndarray  # confidence interval of rel_change (delta method, same model)
    ci_high: np.ndarray
    var_seed: np.ndarray  # variance components of the difference
    var_user: np.ndarray
    var_residual: np.ndarray
    n_seeds: int
    n_users: int


def compare(strategy: np.ndarray, scratch: np.ndarray, confidence: float = 0.95,
            seed_bound: bool = False) -> Comparison:
    """The primary test and the interval of the relative change, on paired seeds x users matrices.

    rel = mean(d) / mean(scratch); its interval linearises the ratio (delta method): the crossed
    model's variance of mean(d - rel * scratch), divided by mean(scratch)^2, with t quantiles
    on that combination's Satterthwaite degrees of freedom. Identical matrices give p = 1.
    seed_bound: both the test and the interval bounded by the seeds (module docstring).
    """
    strategy, scratch = np.asarray(strategy, dtype=float), np.asarray(scratch, dtype=float)
    n_seeds, n_users = strategy.shape[-2:]
    if n_seeds < 2 or n_users < 2:
        nan = np.full(strategy.shape[:-2], np.nan)
        return Comparison(nan, nan, nan, nan, nan, nan, nan, nan, nan, n_seeds, n_users)
    diff = mean_variance(strategy - scratch, seed_bound)
    base = scratch.mean(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff.mean / base
        t = diff.mean / np.sqrt(diff.variance)
        p = np.where(diff.variance > 0, 2 * stats.t.sf(np.abs(t), diff.df),
                     np.where(diff.mean == 0, 1.0, 0.0))
        linear = mean_variance(strategy - scratch - rel[..., None, None] * scratch, seed_bound)
        half = stats.t.ppf(0.5 + confidence / 2, linear.df) * np.sqrt(linear.variance) / np.abs(base)
        half = np.where(linear.variance > 0, half, 0.0)
    return Comparison(mean_diff=diff.mean, rel_change=rel, p_value=p, df=diff.df,
                      ci_low=rel - half, ci_high=rel + half, var_seed=diff.var_seed,
                      var_user=diff.var_user, var_residual=diff.var_residual,
                      n_seeds=n_seeds, n_users=n_users)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries are not counted and stay NaN).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)); rejecting
    where it is below alpha controls the chance of any false positive among the m at alpha, under
    any dependence (all comparisons share scratch).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def minimum_detectable_effect(var_seed: float, var_user: float, var_residual: float, n_seeds: int,
                              n_users: int, alpha: float = 0.05, power: float = 0.8,
                              seed_bound: bool = False) -> float:
    """Smallest mean difference the primary test detects with probability `power` (two-sided `alpha`).

    (t_{1 - alpha/2, df} + t_{power, df}) * sqrt(var_seed / S + var_user / U + var_residual / (S U)),
    the usual normal-approximation formula with t quantiles; df is Satterthwaite's on the expected
    mean squares, so projecting to more seeds also gains degrees of freedom. seed_bound: the
    seed-bounded test's variance and df = S - 1 (module docstring).
    """
    if n_seeds < 2 or n_users < 2:
        return float("nan")
    ms = np.array([var_residual + n_users * var_seed, var_residual + n_seeds * var_user, var_residual])
    dfs = np.array([n_seeds - 1, n_users - 1, (n_seeds - 1) * (n_users - 1)])
    parts = ms * np.array([1.0, 1.0, -1.0])
    total = max(parts.sum(), ms[0]) if seed_bound else parts.sum()
    if not total > 0:
        return 0.0
    df = float(n_seeds - 1) if seed_bound else total ** 2 / np.sum(parts ** 2 / dfs)
    se = np.sqrt(total / (n_seeds * n_users))
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


# -- tables: which strategies share the lead, and how sure each rank is ------------------------------
@dataclass(frozen=True)
class TopGroup:
    """The leader against every other strategy of one table (seed-bounded test, `top_group`).

    Arrays are aligned with `names`; the leader's own entries are NaN (p-values) and True (in_top).
    """

    names: tuple[str, ...]
    leader: str
    mean_diff: np.ndarray  # leader - strategy over their paired cells (> 0: the leader is ahead)
    p_value: np.ndarray  # two-sided, seed-bounded crossed-model test
    p_holm: np.ndarray  # Holm-adjusted over the m - 1 comparisons
    in_top: np.ndarray  # bool: not significantly below the leader


def top_group(runs: Mapping[str, Mapping[Any, pd.Series]], alpha: float = 0.05, leader: str | None = None
              ) -> TopGroup:
    """The strategies not significantly worse than the best: the table's top group.

    `runs`: strategy -> {seed: per-user values indexed by user id} (NDCG@10, say), paired across
    strategies by seed and by user id on the users every run scored (`stacked_runs`). The leader is
    `leader`, or else the strategy with the highest mean (`stacked_means`). See `top_group_of`.
    """
    values, _, _ = stacked_runs(runs)
    return top_group_of(values, tuple(runs), alpha, leader)


def top_group_of(values: np.ndarray, names: tuple[str, ...], alpha: float = 0.05, leader: str | None = None
                 ) -> TopGroup:
    """`top_group` on a strategies x seeds x users array (NaN rows: seeds a strategy lacks).

    The leader is tested against each other strategy on the seeds both have with
    `compare(leader, strategy, seed_bound=True)`; the m - 1 p-values are Holm-adjusted. A strategy
    leaves the top group only when the leader is ahead on their shared cells and the adjusted
    p-value is below `alpha`; one that cannot be tested (fewer than two shared seeds or users)
    stays in it. What it guarantees: a strategy that is truly best (no other has a higher
    expected mean) is excluded with probability at most about alpha (the leader is chosen as the
    highest of m observed means, which the two-sided p-value, twice the one-sided, absorbs:
    checked on simulated tables, tests/test_stats.py). When several strategies are truly tied,
    the chance that SOME of them is excluded is larger (about 6% for 5 tied strategies on 5 seeds):
    the group is a confidence set for the best strategy, not a test that the others differ.
    """
    if not names:
        raise ValueError("top_group needs at least one strategy")
    if leader is None:
        means = stacked_means(values)
        leader = names[int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))]
    best = names.index(leader)
    have = np.isfinite(values).all(axis=2) & (values.shape[2] > 0)
    diff, p = np.full(len(names), np.nan), np.full(len(names), np.nan)
    for index in range(len(names)):
        both = have[best] & have[index]
        if index == best or both.sum() < 2 or values.shape[2] < 2:
            continue
        result = compare(values[best][both], values[index][both], seed_bound=True)
        diff[index], p[index] = float(result.mean_diff), float(result.p_value)
    adjusted = holm(p)
    excluded = (diff > 0) & (adjusted < alpha)
    return TopGroup(names=tuple(names), leader=leader, mean_diff=diff, p_value=p, p_holm=adjusted, in_top=~excluded)


def stacked_runs(runs: Mapping[str, Mapping[Any, pd.Series]]) -> tuple[np.ndarray, list, list]:
    """strategies x seeds x users array (NaN where a strategy lacks a seed) over the union of the
    seeds and the users every run scored, with its seed and user labels (sorted)."""
    seeds = sorted({seed for per_seed in runs.values() for seed in per_seed})
    frames = [pd.DataFrame(dict(per_seed)).T for per_seed in runs.values()]
    users = None
    for frame in frames:
        scored = frame.columns[frame.notna().all()]
        users = scored if users is None else users.intersection(scored)
    users = sorted(users) if users is not None else []
    values = np.stack([frame.reindex(index=seeds, columns=users).to_numpy(float) for frame in frames])
    return values, seeds, users


def stacked_means(values: np.ndarray) -> np.ndarray:
    """Each strategy's mean over the seeds it has of its per-seed means over the users: (M, S, U) -> (M,)."""
    have = np.isfinite(values).all(axis=2) & (values.shape[2] > 0)
    per_seed = np.where(have, np.nan_to_num(values).mean(axis=2) if values.shape[2] else 0.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_seed.sum(axis=1) / have.sum(axis=1)


def rank_intervals(runs: Mapping[str, Mapping[Any, pd.Series]], confidence: float = 0.95,
                   draws: int = RANK_BOOTSTRAP_DRAWS, seed: int = RANK_BOOTSTRAP_SEED,
                   chunk: int = RANK_BOOTSTRAP_CHUNK) -> pd.DataFrame:
    """Each strategy's mean, rank (1 = highest mean) and two-level bootstrap interval of that rank.

    `runs` as in `top_group`; users are those every run scored (`stacked_runs`). A draw takes S
    seeds with replacement from the union of the S seed labels and U users with replacement, the
    same for every strategy (seed s and user u are paired across strategies); a strategy's mean is
    then over its drawn seeds it has and the drawn users, weighted by how often each was drawn, and
    the strategies are ranked by it (ties share the better rank). Returns, indexed by strategy:
    `mean`, `rank`, `rank_low`, `rank_high` (the (1 +- confidence) / 2 quantiles of the draws'
    ranks, inverted CDF, so whole ranks). Deterministic for a given `seed` and `chunk`
    (`bootstrap_counts`); see the module docstring on what it can and cannot say.
    """
    names = list(runs)
    values, _, _ = stacked_runs(runs)
    n_methods, n_seeds, n_users = values.shape
    mean = stacked_means(values)
    point = np.where(np.isfinite(mean), stats.rankdata(np.where(np.isfinite(mean), -mean, np.inf), method="min"),
                     np.nan)
    out = pd.DataFrame({"mean": mean, "rank": point}, index=pd.Index(names, name="strategy"))
    if n_users < 2 or n_seeds < 1:
        out["rank_low"] = out["rank_high"] = np.nan
        return out
    ranks = np.concatenate([_draw_ranks(means, ties="min") for means in _bootstrap_means(values, draws, seed, chunk)],
                           axis=1)  # (M, B)
    tail = (1 - confidence) / 2
    low, high = [], []
    for row in ranks:
        finite = row[np.isfinite(row)]
        bounds = np.quantile(finite, [tail, 1 - tail], method="inverted_cdf") if len(finite) else [np.nan] * 2
        low.append(bounds[0])
        high.append(bounds[1])
    out["rank_low"], out["rank_high"] = low, high
    return out


def bootstrap_counts(seed: int, n_seeds: int, n_users: int, draws: int, chunk: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The two-level bootstrap's draws, `chunk` at a time: per chunk, how often each of the S seeds
    ((chunk, S)) and each of the U users ((chunk, U)) was drawn in S, respectively U, draws with
    replacement, as floats (the weights of the bootstrap means).

    Drawn as indices from numpy's PCG64 seeded with `seed` (seeds, then users, chunk after chunk)
    and counted row by row: each row is multinomial(U, 1/U each), the distribution
    `Generator.multinomial` samples, at a fifteenth of its cost (it draws U binomials a row:
    2,000 x 22,363 users took 8 s on this CPU). The draws depend on these five numbers only, so a
    dataset's tables (its users, the same seeds) share them (`_stored_counts`)."""
    for seed_counts, user_counts in _stored_counts(seed, n_seeds, n_users, draws, chunk):
        yield seed_counts.astype(float), user_counts.astype(float)


@lru_cache(maxsize=4)
def _stored_counts(seed: int, n_seeds: int, n_users: int, draws: int, chunk: int
                   ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """`bootstrap_counts`' chunks, drawn once and kept compact (read-only, one byte a count where
    every count fits: 2,000 x 22,363 users in 45 MB)."""
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        counts = (_row_counts(rng.integers(0, n_seeds, size=(size, n_seeds)), n_seeds),
                  _row_counts(rng.integers(0, n_users, size=(size, n_users)), n_users))
        for array in counts:
            array.flags.writeable = False
        chunks.append(counts)
    return tuple(chunks)


def _row_counts(indices: np.ndarray, categories: int) -> np.ndarray:
    """(rows, categories) counts of each row's indices (one bincount over offset rows), in the
    smallest unsigned type that holds them."""
    rows = len(indices)
    offset = indices + (np.arange(rows) * categories)[:, None]
    counts = np.bincount(offset.ravel(), minlength=rows * categories).reshape(rows, categories)
    return counts.astype(np.min_scalar_type(int(counts.max(initial=0))))


def _bootstrap_means(values: np.ndarray, draws: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Per chunk of `bootstrap_counts`' draws, each strategy's mean in each draw, (M, chunk): over
    the drawn users (weighted by their counts) of each seed it has, then over its drawn seeds
    (weighted likewise); NaN where a draw took no seed the strategy has."""
    n_methods, n_seeds, n_users = values.shape
    have = np.isfinite(values).all(axis=2)  # (M, S): the strategy ran that seed
    filled = np.nan_to_num(values).reshape(n_methods * n_seeds, n_users)
    for seed_counts, user_counts in bootstrap_counts(seed, n_seeds, n_users, draws, chunk):
        seed_means = (filled @ user_counts.T / n_users).reshape(n_methods, n_seeds, -1)  # (M, S, B)
        weights = seed_counts.T[None, :, :] * have[:, :, None]  # (M, S, B)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield (seed_means * weights).sum(axis=1) / weights.sum(axis=1)


def _draw_ranks(means: np.ndarray, ties: str) -> np.ndarray:
    """Ranks (1 = highest) of the strategies (rows) in each draw (column) of `means`: 1 + the
    number of strategies above, plus half the number tied with it for `ties='average'` (the
    average of the tied places). A NaN mean gets no rank and changes no other's."""
    above = (means[None, :, :] > means[:, None, :]).sum(axis=1)  # [i, b]: #j with means[j, b] > means[i, b]
    ranks = 1.0 + above
    if ties == "average":
        ranks += ((means[None, :, :] == means[:, None, :]).sum(axis=1) - 1) / 2
    return np.where(np.isfinite(means), ranks, np.nan)


def rank_draws(runs: Mapping[str, Mapping[Any, pd.Series]], draws: int = RANK_BOOTSTRAP_DRAWS,
               seed: int = RANK_BOOTSTRAP_SEED, chunk: int = RANK_BOOTSTRAP_CHUNK) -> np.ndarray:
    """strategies x draws: each strategy's rank in each draw of `rank_intervals`' two-level bootstrap
    (the same draws for the same `seed` and `chunk`), ties sharing the average rank (Demsar, JMLR
    2006: the ranks a mean rank across datasets averages). NaN where a draw took no seed the
    strategy has; all NaN with fewer than two users or no seed. Draws are made `chunk` at a time
    (a draw's user counts are a row of U numbers: 2,000 x 22,000 users would take 350 MB at once)."""
    values, _, _ = stacked_runs(runs)
    n_methods, n_seeds, n_users = values.shape
    if n_users < 2 or n_seeds < 1:
        return np.full((n_methods, draws), np.nan)
    return np.concatenate([_draw_ranks(means, ties="average")
                           for means in _bootstrap_means(values, draws, seed, chunk)], axis=1)
