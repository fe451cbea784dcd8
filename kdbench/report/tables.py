"""The leaderboard's other tables: inference cost per model shape and the students' speed-ups, the
compression curves of the size sweeps, and each table's minimum detectable effect.

Inference cost belongs to a model *shape* (model, size, catalogue), so it comes from the cost files
(`kdbench cost`), measured once per shape: a leaderboard row shows its model's figure at the
dataset's own catalogue (`shape_cost`), and a section per teacher gives every shape at every
catalogue measured (`inference_table`), with the teacher/student speed-up beside the roofline's
(`speedups`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from kdbench.report import stats
from kdbench.report.load import COST_COLUMNS
from kdbench.report.schema import (
    CONFIDENCE, POWER, PRIMARY_CI_HIGH, PRIMARY_CI_LOW, PRIMARY_MEAN, PRIMARY_STD, TEACHER_PRIMARY,
)
from kdbench.report.values import ratio, spec_key
from kdbench.run.record import SCRATCH, TEACHER

THROUGHPUT_BATCH, LATENCY_BATCH = 256, 1
RATIO_TOLERANCE = 0.2  # a speed-up within 20% of the roofline's counts as matching it
INFERENCE_COLUMNS = ["dataset", "teacher", "catalogue", "n_items", "synthetic", "kind", "model", "dim", "params",
                     "size_bytes", "batch_users", "users_per_s", "users_per_s_iqr_low", "users_per_s_iqr_high", "median_ms",
                     "min_ms", "max_ms", "n"]
SPEEDUP_COLUMNS = ["dataset", "teacher", "student", "catalogue", "n_items", "deployment", "speedup",
                   "roofline_speedup", "speedup_vs_roofline", "matches_roofline"]
CURVE_COLUMNS = ["dataset", "teacher", "variant", "strategy", "family", "student", "params",
                 "compression_vs_teacher", "n_seeds", PRIMARY_MEAN, PRIMARY_CI_LOW, PRIMARY_CI_HIGH,
                 TEACHER_PRIMARY, "teacher_params", "retained_pct", "retained_ci_low", "retained_ci_high"]


def _cost_rows(costs: pd.DataFrame | None, dataset: str, teacher: str, catalogue: str | None = None,
               batch: int | None = None) -> pd.DataFrame:
    if costs is None or not len(costs):
        return pd.DataFrame(columns=list(COST_COLUMNS))
    keep = (costs["dataset"] == dataset) & (costs["teacher"] == teacher)
    if catalogue is not None:
        keep &= costs["catalogue"] == catalogue
    if batch is not None:
        keep &= costs["batch_users"] == batch
    return costs[keep]


def shape_cost(costs: pd.DataFrame | None, dataset: str, teacher: str, model: str) -> dict[str, float]:
    """A model shape's inference cost at the dataset's own catalogue, from its teacher's sitting:
    users/s of batches of 256 (median call, and the interquartile range of the calls turned into
    users/s) and the median single-user latency in ms. NaN where it was not measured."""
    here = _cost_rows(costs, dataset, teacher, catalogue=dataset)
    here = here[here["kind"].isin(("model", "compressed")) & (here["model"] == model)]  # compressed: issue 28
    batch = here[here["batch_users"] == THROUGHPUT_BATCH]
    single = here[here["batch_users"] == LATENCY_BATCH]
    out = {"throughput_users_per_s": math.nan, "throughput_iqr_low": math.nan, "throughput_iqr_high": math.nan,
           "latency_p50_ms": math.nan}
    if len(batch):
        first = batch.iloc[0]
        out |= {"throughput_users_per_s": THROUGHPUT_BATCH / first["median_s"],
                "throughput_iqr_low": THROUGHPUT_BATCH / first["q75_s"],
                "throughput_iqr_high": THROUGHPUT_BATCH / first["q25_s"]}
    if len(single):
        out["latency_p50_ms"] = float(single.iloc[0]["median_s"]) * 1e3
    return out


def inference_table(costs: pd.DataFrame) -> pd.DataFrame:
    """One row per measured target (model or roofline), catalogue and batch: users/s of the median
    call and of the quartiles (low = the slower quartile), in each sitting's order."""
    if not len(costs):
        return pd.DataFrame(columns=INFERENCE_COLUMNS)
    out = costs[["dataset", "teacher", "catalogue", "n_items", "synthetic", "kind", "model", "dim", "params",
                 "size_bytes", "batch_users"]].copy()
    batch = costs["batch_users"].astype(float)
    out["users_per_s"] = batch / costs["median_s"].astype(float)
    out["users_per_s_iqr_low"] = batch / costs["q75_s"].astype(float)
    out["users_per_s_iqr_high"] = batch / costs["q25_s"].astype(float)
    for column in ("median", "min", "max"):
        out[f"{column}_ms"] = costs[f"{column}_s"].astype(float) * 1e3
    out["n"] = costs["n"]
    return out.reset_index(drop=True)


def speedups(costs: pd.DataFrame) -> pd.DataFrame:
    """Per sitting, catalogue and student: how much faster the student serves a batch of 256 users
    than its teacher (teacher's median call / student's), against the same ratio of the rooflines of
    their sizes measured in the same sitting; `matches_roofline`: within `RATIO_TOLERANCE`.
    `deployment`: the sitting's largest synthetic catalogue."""
    if not len(costs):
        return pd.DataFrame(columns=SPEEDUP_COLUMNS)
    rows = []
    batch = costs[costs["batch_users"] == THROUGHPUT_BATCH]
    for (dataset, teacher), sitting in batch.groupby(["dataset", "teacher"], sort=False):
        synthetic = sitting.loc[sitting["synthetic"].astype(bool), "n_items"]
        largest = int(synthetic.max()) if len(synthetic) else None
        for catalogue, here in sitting.groupby("catalogue", sort=False):
            models = here[here["kind"] == "model"].set_index("model")
            if teacher in models.index:
                rows += _speedup_rows(dataset, teacher, catalogue, models,
                                      here[here["kind"] == "roofline"].set_index("dim"), largest)
    return pd.DataFrame(rows, columns=SPEEDUP_COLUMNS)


def _speedup_rows(dataset: str, teacher: str, catalogue: str, models: pd.DataFrame, roofs: pd.DataFrame,
                  largest: int | None) -> list[dict[str, Any]]:
    """Every student of one sitting at one catalogue (`models` by model, `roofs` by dim)."""
    rows = []
    t_dim = int(models.loc[teacher, "dim"])
    for student, measured in models.iterrows():
        if student == teacher:
            continue
        s_dim = int(measured["dim"])
        speedup = float(models.loc[teacher, "median_s"]) / float(measured["median_s"])
        roof = (float(roofs.loc[t_dim, "median_s"]) / float(roofs.loc[s_dim, "median_s"])
                if t_dim in roofs.index and s_dim in roofs.index else math.nan)
        agreement = ratio(speedup, roof)
        n_items = int(measured["n_items"])
        rows.append({"dataset": dataset, "teacher": teacher, "student": student, "catalogue": catalogue,
                     "n_items": n_items, "deployment": bool(measured["synthetic"]) and n_items == largest,
                     "speedup": speedup, "roofline_speedup": roof, "speedup_vs_roofline": agreement,
                     "matches_roofline": bool(np.isfinite(agreement) and abs(agreement - 1) <= RATIO_TOLERANCE)})
    return rows


def compression_curves(table: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The size sweeps: per dataset, teacher, variant and student model, every strategy run at two or
    more student sizes, one row per size: the primary metric's mean with its `confidence` t-interval
    over seeds (mean ± t * sd / sqrt(n)), parameters, compression (teacher params / student params)
    and the share of the teacher's value kept, with the same interval divided by the teacher's value."""
    rows = []
    students = table[table["family"] != TEACHER].copy()
    students["_student_model"] = [spec_key(s)[0] for s in students["student"]]
    for (dataset, teacher, variant, _), group in students.groupby(
            ["dataset", "teacher", "variant", "_student_model"], sort=False):
        teachers = table[(table["dataset"] == dataset) & (table["teacher"] == teacher) & (table["family"] == TEACHER)]
        teacher_primary = float(teachers[PRIMARY_MEAN].astype(float).mean()) if len(teachers) else math.nan
        teacher_params = float(teachers["params"].astype(float).mean()) if len(teachers) else math.nan
        for strategy, runs in group.groupby("strategy", sort=True):
            runs = runs[runs["n_seeds"] > 0]
            if runs["student"].nunique() < 2:
                continue
            for _, row in sorted(runs.iterrows(), key=lambda item: spec_key(item[1]["student"])):
                n, mean, sd = int(row["n_seeds"]), float(row[PRIMARY_MEAN]), float(row[PRIMARY_STD])
                half = (student_t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
                        if n >= 2 and np.isfinite(sd) else math.nan)
                rows.append({"dataset": dataset, "teacher": teacher, "variant": variant, "strategy": strategy,
                             "family": row["family"], "student": row["student"], "params": row["params"],
                             "compression_vs_teacher": row["compression_vs_teacher"], "n_seeds": n,
                             PRIMARY_MEAN: mean, PRIMARY_CI_LOW: mean - half, PRIMARY_CI_HIGH: mean + half,
                             TEACHER_PRIMARY: teacher_primary, "teacher_params": teacher_params,
                             "retained_pct": ratio(mean, teacher_primary) * 100,
                             "retained_ci_low": ratio(mean - half, teacher_primary) * 100,
                             "retained_ci_high": ratio(mean + half, teacher_primary) * 100})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def detectable_effects(table: pd.DataFrame, keys: tuple[str, ...] = ("dataset", "pairing", "variant"),
                       alpha: float = 0.05, power: float = POWER,
                       more_seeds: tuple[int, ...] = (10, 20)) -> pd.DataFrame:
    """Per table (`keys`), the smallest relative change of the primary metric vs scratch, in %, that
    the primary test (seed-bounded, like the p-values) detects with probability `power`: from the
    median variance components of the
    strategies compared there, at Holm's strictest level alpha / m (`mde_pct`), at alpha for one
    comparison (`mde_single_pct`), and projected to `more_seeds` seeds (`mde_pct_<n>_seeds`, at
    alpha / m).
    """
    rows = []
    for key, group in table.groupby(list(keys), sort=False):
        # the ranked students with a test (the teacher, scratch and the compression rows have none)
        tested = group[np.isfinite(group["p_value_mixed"].astype(float)) & group["rank"].notna()]
        scratch = group.loc[group["method"] == SCRATCH, PRIMARY_MEAN]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row |= {"n_compared": len(tested), "n_seeds": 0, "n_users": 0}
        if tested.empty or scratch.empty:
            rows.append(row)
            continue
        components = [float(tested[c].median()) for c in ("diff_var_seed", "diff_var_user", "diff_var_residual")]
        n_seeds, n_users = int(tested["n_paired_seeds"].median()), int(tested["n_users_tested"].median())
        base = float(scratch.iloc[0])

        def mde(seeds: int, level: float) -> float:
            return 100 * stats.minimum_detectable_effect(*components, seeds, n_users, level, power,
                                                         seed_bound=True) / base

        row |= {"n_seeds": n_seeds, "n_users": n_users, "mde_pct": mde(n_seeds, alpha / len(tested)),
                "mde_single_pct": mde(n_seeds, alpha)}
        row |= {f"mde_pct_{n}_seeds": mde(n, alpha / len(tested)) for n in more_seeds}
        rows.append(row)
    return pd.DataFrame(rows)
