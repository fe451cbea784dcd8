"""The leaderboard's rows: runs -> one row per strategy and table, with the tests against scratch.

Significance, per strategy against scratch (same dataset and pairing), on the primary metric
(`kdbench.evaluation.metrics.PRIMARY_METRIC`, NDCG@10); the statistics themselves are in `kdbench.report.stats`.
Each seed's run is paired with scratch's run of the same seed, and users by id, on the seeds both
have and the users all those runs scored:

- `p_value_mixed` (primary): crossed mixed model on the seeds x users difference matrix, so both
  seed-to-seed and user-to-user variance count, with the seed-variance floor (`stats.compare`,
  `seed_bound=True`: the variance at least the paired t-test over seeds', S - 1 degrees of
  freedom), so no p-value claims more precision than the seeds allow; needs two shared seeds.
- `p_value_holm`: `p_value_mixed` Holm-Bonferroni adjusted over the strategies compared with
  scratch in the same table (dataset and pairing), the distillation methods and the compression
  rows (`values.is_compression`) as two separate sets. The † / ‡ marks come from it.
- `rel_change_ci_low` / `rel_change_ci_high`: 95% interval of the relative change of the primary
  metric vs scratch, in % like `schema.VS_SCRATCH` (same model and floor, delta method), which is
  the change of the row's mean over scratch's mean on the same seeds (`_same_seeds`; the teacher's
  over all of scratch's), so a row run on fewer seeds than scratch states the comparison its
  interval makes.
- `diff_var_seed`, `diff_var_user`, `diff_var_residual`: the difference's variance components,
  from which `tables.detectable_effects` gives each table's minimum detectable effect.
- Secondary: `p_value_vs_scratch`, `scipy.stats.wilcoxon` (two-sided, zero differences dropped)
  over users of the seed-averaged metric (blind to seed variance); `p_value_seeds`,
  `scipy.stats.ttest_rel` (two-sided) over the per-seed means (blind to user variance).
  Both are 1.0 when the strategy and scratch agree exactly (scipy rejects all-zero differences).

By user group (`kdbench.report.groups`): the same change, interval, mixed-model p and Wilcoxon p
on the light users only and on the heavy users only (columns `*_light`, `*_heavy`; not
Holm-corrected), for runs that record their test users' training interactions.

Beyond accuracy (`kdbench.evaluation.beyond`): `<metric>@10_mean`, the mean over ok seeds of ItemCoverage,
AveragePopularity, TailPercentage and GiniIndex of the test users' top 10, for every row.

Per table, among its distilled students (`kdbench.report.ranking`; compression rows take no rank,
no top group and no rank interval: reference rows, like the teacher's): the top group (not significantly
below the leader, seed-bounded tests against it, Holm-adjusted) and a bootstrap interval of each
rank (`rank_low`, `rank_high`).

The teacher and scratch rows get no p-value against scratch. Training cost belongs to a strategy: from each run's
record, mean and standard deviation over seeds of the seconds to the best model (knowledge
preparation + seconds per epoch x best epoch), of the preparation alone, and of each seed's epoch
time over scratch's mean.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel, wilcoxon

from kdbench.report import stats
from kdbench.evaluation.beyond import BEYOND_METRICS
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.report.forked import forked_map, worker_count
from kdbench.report.groups import GROUP_COLUMNS, dataset_groups, group_tests
from kdbench.report.ranking import ranking_columns
from kdbench.report.schema import (
    COLUMNS, CONFIDENCE, PRIMARY_MEAN, RETAINED, TEACHER_PRIMARY, TUNED_VS_DEFAULTS, VS_SCRATCH,
)
from kdbench.evaluation.compressed_cost import is_compressed_shape
from kdbench.report.tables import shape_cost
from kdbench.report.values import finite, first_text, first_valid, is_compression, ratio, spec_key
from kdbench.errors import KdbenchError
from kdbench.run.record import DEFAULTS, METRICS, SCRATCH, TEACHER, TUNED
from kdbench.strategies.base import tuned_through

NO_TEST: dict[str, Any] = {
    "rel_change_ci_low": math.nan, "rel_change_ci_high": math.nan, "p_value_mixed": math.nan,
    "p_value_vs_scratch": math.nan, "p_value_seeds": math.nan, "n_paired_seeds": 0, "n_users_tested": 0,
    "diff_var_seed": math.nan, "diff_var_user": math.nan, "diff_var_residual": math.nan,
}
# Above this many per-user values over the runs (and with several datasets), the datasets' tables
# are computed by worker processes (`forked`): a real catalogue's tests and rank bootstrap take seconds.
PARALLEL_AGGREGATE_VALUES = 2_000_000
USER_TEST_KEYS = ("n_users_tested", "p_value_vs_scratch", "p_value_mixed", "rel_change_ci_low", "rel_change_ci_high",
                  "diff_var_seed", "diff_var_user", "diff_var_residual")  # what `user_tests` gives


def aggregate(df: pd.DataFrame, tuning: pd.DataFrame | None = None, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, teacher, student, variant, strategy label), with the columns in `COLUMNS`.

    A variant is one table: `defaults` (published hyperparameters) or `tuned` (each strategy's tuned
    ones, `kdbench tune`); each compares its strategies with its own scratch, and the teacher row
    appears in both. Means and sample standard deviations (ddof=1; NaN with one seed) are over the
    ok seeds; training costs are means over seeds. Tables are ordered by dataset, teacher, student
    (model, then size), then tuned before defaults; rows by the primary metric's mean, best first;
    `rank` numbers the students (the teacher row has none). `p_value_holm` adjusts the primary
    p-values over the strategies of one table. `tuning` (from `load_tuning`) gives each tuned row its
    trial budget, `costs` (from `load_costs`) each row its model's inference cost at the dataset's
    catalogue.
    """
    users = {dataset: dataset_groups(runs[runs["status"] == "ok"]) for dataset, runs in df.groupby("dataset")}
    groups = sorted(df.groupby(["dataset", "teacher", "student"], sort=True),
                    key=lambda item: (item[0][0], spec_key(item[0][1]), spec_key(item[0][2])))
    # one task a dataset (its tables share its users and bootstrap draws), in table order
    tasks = [[index for index, ((name, _, _), _) in enumerate(groups) if name == dataset]
             for dataset in dict.fromkeys(key[0] for key, _ in groups)]
    per_user = sum(len(values) for values in df["per_user"] if values is not None) if "per_user" in df else 0
    workers = worker_count(per_user if len(tasks) > 1 else 0, PARALLEL_AGGREGATE_VALUES)
    rows = [table for part in forked_map(_dataset_tables, tasks, workers, shared=(groups, users, tuning, costs))
            for table in part]
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    result = pd.concat(rows, ignore_index=True)
    return result.reindex(columns=list(COLUMNS)).reset_index(drop=True)


def _dataset_tables(shared: tuple, indices: list[int]) -> list[pd.DataFrame]:
    """The tables (`_pairing_tables`) of the groups `indices` of `aggregate`'s `groups`."""
    groups, users, tuning, costs = shared
    cost_of = lru_cache(maxsize=None)(partial(shape_cost, costs))  # a shape's cost, looked up once
    return [table for index in indices
            for table in _pairing_tables(groups[index][1], users[groups[index][0][0]], tuning, cost_of)]


def _pairing_tables(cell: pd.DataFrame, users: pd.Series | None, tuning: pd.DataFrame | None,
                    cost_of: Callable[[str, str, str], dict[str, float]]) -> list[pd.DataFrame]:
    """One (dataset, teacher, student)'s tables, one a variant, tuned first: rows ranked and tested."""
    tables = []
    dataset = cell["dataset"].iloc[0]
    ok = cell[cell["status"] == "ok"]
    teacher_runs = ok[ok["method"] == TEACHER]
    teacher_primary = first_valid(teacher_runs[PRIMARY_METRIC].mean(), ok[TEACHER_PRIMARY].mean())
    teacher_params = teacher_runs["params"].mean()
    students = cell[cell["method"] != TEACHER]
    variants = sorted(set(students["variant"]), key=lambda v: (v != TUNED, v)) or [DEFAULTS]
    defaults_means = (ok[(ok["variant"] == DEFAULTS) & (ok["method"] != TEACHER)]
                      .groupby("method")[PRIMARY_METRIC].mean())
    for variant in variants:
        runs_here = pd.concat([cell[cell["method"] == TEACHER], students[students["variant"] == variant]])
        scratch = ok[(ok["method"] == SCRATCH) & (ok["variant"] == variant)]
        group_rows = []
        for _, runs in runs_here.groupby("strategy", sort=True):
            row = _strategy_row(runs, scratch, teacher_primary, teacher_params, cost_of, users)
            row["variant"] = variant
            if variant == TUNED:
                row |= _tuned_columns(row, runs["method"].iloc[0], dataset, defaults_means, tuning)
            group_rows.append(row)
        table_runs = students[(students["variant"] == variant) & (students["status"] == "ok")]
        tables.append(ranking_columns(_ranked(pd.DataFrame(group_rows)), table_runs))
    return tables


def _tuned_columns(row: dict[str, Any], method: str, dataset: str, defaults_means: pd.Series,
                   tuning: pd.DataFrame | None) -> dict[str, Any]:
    """A tuned row's change against the same strategy's defaults row, and its study's budget (its unit:
    `trials` for studies made before epoch budgets) and what it spent."""
    out: dict[str, Any] = {}
    if method in defaults_means.index:
        out[TUNED_VS_DEFAULTS] = ratio(row[PRIMARY_MEAN] - defaults_means[method], defaults_means[method]) * 100
    if tuning is not None and len(tuning):
        study = _study_of(method)
        found = tuning[(tuning["dataset"] == dataset) & (tuning["pairing"] == row["pairing"])
                       & (tuning["strategy"] == study)]
        first = found.iloc[0] if len(found) else {}
        out["tuning_trials"] = int(first["trials_counted"]) if len(found) else pd.NA
        out["tuning_budget"] = int(first["budget"]) if len(found) and pd.notna(first["budget"]) else pd.NA
        out["tuning_budget_unit"] = (first["budget_unit"] if len(found) and isinstance(first["budget_unit"], str)
                                     else "trials" if len(found) else None)
        out["tuning_epochs_spent"] = (int(first["epochs_spent"]) if len(found) and pd.notna(first["epochs_spent"])
                                      else pd.NA)
    return out


def _study_of(method: str) -> str:
    """The strategy whose study tuned `method` (`tuned_through`: ptq, scratch's); the method itself
    when this process cannot build it (a plugin's, read back from its runs)."""
    try:
        return tuned_through(method)[0]
    except KdbenchError:
        return method


def _ranked(group: pd.DataFrame) -> pd.DataFrame:
    """One table: rows best first; the distilled students (scratch included) numbered and their
    primary p-values Holm-adjusted together; the compression rows (`values.is_compression`) are
    reference rows like the teacher's, unnumbered and Holm-adjusted among themselves, so that the
    compression suite's rows in a pairing's table change no distillation method's rank or p Holm.
    The rank is the one decision of who is ranked: `ranking_columns` and `detectable_effects` read it."""
    group["_order"] = np.where(group["family"] == TEACHER, 0, 1)
    group = group.sort_values([PRIMARY_MEAN, "_order", "strategy"], ascending=[False, True, True],
                              na_position="last", kind="mergesort")
    reference = group["family"].map(is_compression).to_numpy(bool)
    p_values, adjusted = group["p_value_mixed"].to_numpy(float), np.full(len(group), np.nan)
    for part in (reference, ~reference):
        adjusted[part] = stats.holm(p_values[part])
    group["p_value_holm"] = adjusted
    is_student = (group["family"] != TEACHER).to_numpy(bool) & ~reference
    group["rank"] = pd.array([pd.NA] * len(group), dtype="Int64")
    group.loc[is_student, "rank"] = np.arange(1, int(is_student.sum()) + 1)
    return group.drop(columns="_order")


def _strategy_row(runs: pd.DataFrame, scratch: pd.DataFrame, teacher_primary: float,
                  teacher_params: float, cost_of: Callable[[str, str, str], dict[str, float]],
                  user_groups: pd.Series | None = None) -> dict[str, Any]:
    ok = runs[runs["status"] == "ok"]
    first = runs.iloc[0]
    family = first_text(ok["family"], runs["family"])
    row: dict[str, Any] = {
        "dataset": first["dataset"], "pairing": first["pairing"], "teacher": first["teacher"],
        "student": first["student"], "strategy": first["strategy"], "method": first["method"], "family": family,
        "model": first_text(ok["model"], runs["model"]),
        "n_seeds": int(len(ok)), "n_failed": int((runs["status"] != "ok").sum()),
    }
    for metric in METRICS:
        row[f"{metric}_mean"] = ok[metric].mean()
        row[f"{metric}_std"] = ok[metric].std(ddof=1)
    for metric in BEYOND_METRICS:  # NaN for runs from before issue 27
        row[f"{metric}_mean"] = ok[metric].astype(float).mean()
    untested = family == TEACHER or first["method"] == SCRATCH  # no test against scratch
    scratch_primary = (scratch if untested else _same_seeds(scratch, ok))[PRIMARY_METRIC].mean()
    row[VS_SCRATCH] = ratio(row[PRIMARY_MEAN] - scratch_primary, scratch_primary) * 100
    row[RETAINED] = ratio(row[PRIMARY_MEAN], teacher_primary) * 100
    if untested:
        row.update(NO_TEST | dict.fromkeys(GROUP_COLUMNS, math.nan))
    else:
        paired = stats.pair_runs(ok, scratch)
        row.update(_paired_columns(paired))
        row.update(group_tests(paired, user_groups, user_tests))
    for column in ("params", "size_bytes", "train_s_per_epoch"):
        row[column] = ok[column].mean()
    row["compression_vs_teacher"] = ratio(teacher_params, row["params"])
    row |= cost_of(row["dataset"], row["teacher"], row["model"])
    if not finite(row["throughput_users_per_s"]) and not is_compressed_shape(row["model"]):
        # a dense shape `kdbench cost` has not measured (a sequential one, or a student its teacher's
        # sitting lacks): from the runs themselves, median over seeds (per query for a sequential
        # shape). Not a compressed format: its runs score through dense dequantised or zero-filled
        # tables, so its cost is its kernel's, which only `cost` times
        row |= {"throughput_users_per_s": ok["run_throughput"].median(),
                "throughput_iqr_low": ok["run_throughput"].min(),
                "throughput_iqr_high": ok["run_throughput"].max(),
                "latency_p50_ms": ok["run_latency_p50_ms"].median()}
    row |= _training_cost(ok, scratch)
    row["compute_seconds"] = runs["wall_seconds"].astype(float).sum(min_count=1)
    row["teacher_trained_further"] = bool(runs["teacher_trained_further"].fillna(False).astype(bool).any())
    return row


def _same_seeds(scratch: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Scratch's runs of the seeds the row has (all of them if it shares none): a row run on fewer
    seeds than scratch (the compression suite's 3 beside the default suite's 5, a failed seed) is
    compared with the same seeds' scratch, as its interval and tests are (paired by seed), so that
    the change and its interval describe the same comparison."""
    shared = scratch[scratch["seed"].isin(ok["seed"])]
    return shared if len(shared) else scratch


def _training_cost(ok: pd.DataFrame, scratch: pd.DataFrame) -> dict[str, Any]:
    """Training cost per seed, then mean and spread over seeds (module docstring)."""
    row: dict[str, Any] = {}
    ratios = ok["train_s_per_epoch"].astype(float) / scratch["train_s_per_epoch"].astype(float).mean()
    prepare = ok["kd_prepare_seconds"].astype(float).fillna(0.0)
    to_best = prepare + ok["train_s_per_epoch"].astype(float) * ok["best_epoch"].astype(float)
    for column, values in (("epoch_time_ratio", ratios), ("kd_prepare_s", prepare), ("time_to_best_s", to_best)):
        row[f"{column}_std"] = values.std(ddof=1)
        row[column + ("_vs_scratch" if column == "epoch_time_ratio" else "_mean")] = values.mean()
    row["ensemble_teachers_s_mean"] = _ensemble_teachers_seconds(ok)
    row["best_epoch_mean"] = ok["best_epoch"].mean()
    row["epochs_run_mean"] = ok["epochs_run"].mean()
    row["hit_epoch_cap_share"] = ok["hit_epoch_cap"].astype(float).mean()
    return row


def _ensemble_teachers_seconds(ok: pd.DataFrame) -> float:
    """Wall seconds of training the teachers the strategy needs beyond the pairing's (HetComp's
    ensemble, `load.ensemble_teachers`), mean over seeds (each seed's are the same cached teachers):
    0 for a strategy without any, NaN where the records predate the figure."""
    if not ok["ensemble_teachers"].map(len).any():
        return 0.0
    per_seed = [math.fsum(wall for _, wall, _ in members) if all(wall is not None for _, wall, _ in members)
                else math.nan for members in ok["ensemble_teachers"]]
    return float(np.mean(per_seed))


def paired_tests(runs: pd.DataFrame, scratch: pd.DataFrame) -> dict[str, Any]:
    """The primary and secondary tests of one strategy's ok runs against scratch's (module docstring)."""
    return _paired_columns(stats.pair_runs(runs, scratch))


def _paired_columns(paired: stats.PairedRuns) -> dict[str, Any]:
    out = NO_TEST | {"n_paired_seeds": len(paired.seeds)}
    if not paired.seeds:
        return out
    if paired.x is not None:
        out |= user_tests(paired.x, paired.y)
    if len(paired.seeds) >= 2:
        x, y = paired.mine[PRIMARY_METRIC].to_numpy(float), paired.base[PRIMARY_METRIC].to_numpy(float)
        out["p_value_seeds"] = 1.0 if np.array_equal(x, y) else float(ttest_rel(x, y).pvalue)
    return out


def user_tests(x: pd.DataFrame | np.ndarray, y: pd.DataFrame | np.ndarray) -> dict[str, Any]:
    """The tests on paired seeds x users matrices (`stats.paired_matrices`): the users tested, the
    Wilcoxon test over users' seed means, and the seed-bounded mixed model's p, interval and
    variance parts (NaN without users)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = {key: NO_TEST[key] for key in USER_TEST_KEYS} | {"n_users_tested": x.shape[1]}
    if x.shape[1]:
        users_x, users_y = x.mean(axis=0), y.mean(axis=0)
        out["p_value_vs_scratch"] = (1.0 if np.array_equal(users_x, users_y)
                                     else float(wilcoxon(users_x, users_y).pvalue))
        result = stats.compare(x, y, CONFIDENCE, seed_bound=True)
        out |= {"p_value_mixed": float(result.p_value),
                "rel_change_ci_low": float(result.ci_low) * 100,
                "rel_change_ci_high": float(result.ci_high) * 100,
                "diff_var_seed": float(result.var_seed), "diff_var_user": float(result.var_user),
                "diff_var_residual": float(result.var_residual)}
    return out
