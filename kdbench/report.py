"""Reporting: stored run records -> leaderboard (Markdown, CSV, JSON); the figures are drawn by `plots`.

Everything here is a pure function of the run files and the inference-cost files (`cost/`, written
by `python -m kdbench cost`; plus the command line and wall time stored beside the leaderboard by
`run --all`), so `python -m kdbench report` rebuilds byte-identical files: no clock, no random
draws, no measuring, floats rounded to 6 significant digits, rows in a fixed order.

Cost has two parts. Inference cost belongs to a model *shape* (model, size, catalogue), so it
comes from the cost files, measured once per shape: a row shows its model's figure at the
dataset's own catalogue, and a section per teacher gives every shape at every catalogue measured,
with the teacher/student speed-up beside the roofline's. Training cost belongs to a *strategy*:
from each run's record, mean and standard deviation over seeds of the seconds to the best model
(knowledge preparation + seconds per epoch x best epoch), of the preparation alone, and of each
seed's epoch time over scratch's mean.

Significance, per strategy against scratch (same dataset and pairing), on NDCG@10; the statistics
themselves are in `kdbench.stats`. Each seed's run is paired with scratch's run of the same seed,
and users by id, on the seeds both have and the users all those runs scored:

- `p_value_mixed` (primary): crossed mixed model on the seeds x users difference matrix, so both
  seed-to-seed and user-to-user variance count; needs two shared seeds.
- `p_value_holm`: `p_value_mixed` Holm-Bonferroni adjusted over the strategies compared with
  scratch in the same table (dataset and pairing). The † / ‡ marks come from it.
- `rel_change_ci_low` / `rel_change_ci_high`: 95% interval of the relative change of NDCG@10 vs
  scratch, in % like `ndcg@10_vs_scratch_pct` (same model, delta method).
- `diff_var_seed`, `diff_var_user`, `diff_var_residual`: the difference's variance components,
  from which `detectable_effects` gives each table's minimum detectable effect.
- Secondary: `p_value_vs_scratch`, `scipy.stats.wilcoxon` (two-sided, zero differences dropped)
  over users of seed-averaged NDCG@10 (blind to seed variance); `p_value_seeds`,
  `scipy.stats.ttest_rel` (two-sided) over the per-seed mean NDCG@10 (blind to user variance).
  Both are 1.0 when the strategy and scratch agree exactly (scipy rejects all-zero differences).

The teacher and scratch rows get no p-value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdbench import atomic, stats
from kdbench.families.sequential import MAX_SEQUENCE_LENGTH
from kdbench.plots import plot_compression, plot_pareto
from kdbench.results import (
    DEFAULTS, METRICS, SCRATCH, TEACHER, TUNED, VARIANT_TITLES, RunStore, dataset_label, record_protocol,
)
from kdbench.stored import TUNING_SUMMARY_ADVICE, read_mapping

SIGNIFICANCE = ((0.01, "‡"), (0.05, "†"))  # on the Holm-adjusted primary p-value
CONFIDENCE, POWER = 0.95, 0.8  # of the relative-change interval; of the minimum detectable effect

COLUMNS = (
    "dataset", "pairing", "teacher", "student", "variant", "strategy", "method", "family", "model", "rank",
    "tuning_trials", "n_seeds", "n_failed",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
    "ndcg@10_vs_scratch_pct", "rel_change_ci_low", "rel_change_ci_high", "teacher_ndcg@10_retained_pct",
    "p_value_mixed", "p_value_holm", "p_value_vs_scratch", "p_value_seeds", "n_paired_seeds", "n_users_tested",
    "diff_var_seed", "diff_var_user", "diff_var_residual",
    "params", "compression_vs_teacher", "size_bytes",
    "throughput_users_per_s", "throughput_iqr_low", "throughput_iqr_high", "latency_p50_ms",
    "train_s_per_epoch", "epoch_time_ratio_vs_scratch", "epoch_time_ratio_std",
    "kd_prepare_s_mean", "kd_prepare_s_std", "time_to_best_s_mean", "time_to_best_s_std",
    "best_epoch_mean", "epochs_run_mean", "hit_epoch_cap_share", "compute_seconds", "ndcg@10_tuned_vs_defaults_pct",
    "teacher_trained_further",
)
TRAINED_TEACHER_MARK = "⁂"  # after the strategy's name: its runs trained the teacher further (BD)

# One row per stored run: these record fields, flattened.
_RUN_FIELDS = {
    "params": ("cost", "params"),
    "size_bytes": ("cost", "size_bytes"),
    "train_s_per_epoch": ("training", "seconds_per_epoch"),
    "kd_prepare_seconds": ("training", "kd_prepare_seconds"),
    "epochs_run": ("training", "epochs_run"),
    "best_epoch": ("training", "best_epoch"),
    "hit_epoch_cap": ("training", "hit_epoch_cap"),
    "teacher_ndcg@10": ("teacher_test", "ndcg@10"),
    # the run's own inference measurement (evaluate.inference_cost): the cost of sequential rows,
    # whose shapes `kdbench cost` does not measure (per query: a forward over its input sequence)
    "run_throughput": ("cost", "throughput_users_per_s"),
    "run_latency_p50_ms": ("cost", "latency_p50_ms"),
}
_ENVIRONMENT = ("kdbench", "recbole", "torch", "python", "cpu", "gpu", "threads")


# -- loading ---------------------------------------------------------------------------------------
def load_runs(runs_dir: str | Path) -> pd.DataFrame:
    """Every stored run under `runs_dir/runs/`, one row each, failed ones included.

    `status` is 'ok' or 'failed' (with `error`); a failed run has no metrics or costs (NaN).
    `per_user` holds the run's per-user NDCG@10 as a Series indexed by user id.
    `strategy` is the run's label (`rrd`, or `rrd@K=20` for overridden hyperparameters), the unit
    the leaderboard compares; `method` is the bare strategy name.
    """
    rows = [_flatten(record) for record in RunStore(runs_dir).records()]
    columns = ["dataset", "teacher", "student", "pairing", "model", "variant", "strategy", "method", "family",
               "seed", "status", "error", "created", "wall_seconds", *METRICS, *_RUN_FIELDS,
               "per_user", "teacher_trained_further", *(f"env_{k}" for k in _ENVIRONMENT)]
    return pd.DataFrame(rows, columns=columns)


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    ok = record.get("status") == "ok"
    row = {
        # `ml-100k`, or `citeulike-t@ordered` under another protocol: its own tables
        "dataset": dataset_label(record.get("dataset"), record_protocol(record)),
        "teacher": record.get("teacher"),
        "student": record.get("student"),
        "pairing": record.get("pairing") or f"{record.get('teacher')}->{record.get('student')}",
        "model": record.get("model"),
        "strategy": record.get("label") or record.get("strategy"),
        "method": record.get("strategy"),
        "variant": record.get("variant") or DEFAULTS,
        "family": record.get("family"),
        "seed": record.get("seed"),
        "status": "ok" if ok else "failed",
        "error": record.get("error"),
        "created": record.get("created"),
        "wall_seconds": record.get("wall_seconds"),
    }
    test = record.get("test") or {}
    for metric in METRICS:
        row[metric] = float(test[metric]) if ok and metric in test else math.nan
    for column, (section, field) in _RUN_FIELDS.items():
        value = (record.get(section) or {}).get(field)
        row[column] = value if ok and value is not None else math.nan
    per_user = record.get("per_user") or {}
    row["per_user"] = (pd.Series(per_user["ndcg@10"], index=per_user["user_ids"], dtype=float)
                       if ok and "ndcg@10" in per_user else None)
    row["teacher_trained_further"] = bool(record.get("teacher_trained_further", False))
    environment = record.get("environment") or {}
    for key in _ENVIRONMENT:
        row[f"env_{key}"] = environment.get(key)
    return row


# -- aggregation -----------------------------------------------------------------------------------
def aggregate(df: pd.DataFrame, tuning: pd.DataFrame | None = None, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, teacher, student, variant, strategy label), with the columns in `COLUMNS`.

    A variant is one table: `defaults` (published hyperparameters) or `tuned` (each strategy's tuned
    ones, `kdbench tune`); each compares its strategies with its own scratch, and the teacher row
    appears in both. Means and sample standard deviations (ddof=1; NaN with one seed) are over the
    ok seeds; training costs are means over seeds. Tables are ordered by dataset, teacher, student
    (model, then size), then tuned before defaults; rows by NDCG@10 mean, best first; `rank` numbers
    the students (the teacher row has none). `p_value_holm` adjusts the primary p-values over the
    strategies of one table. `tuning` (from `load_tuning`) gives each tuned row its trial budget,
    `costs` (from `load_costs`) each row its model's inference cost at the dataset's catalogue.
    """
    rows = []
    groups = sorted(df.groupby(["dataset", "teacher", "student"], sort=True),
                    key=lambda item: (item[0][0], _spec_key(item[0][1]), _spec_key(item[0][2])))
    for (dataset, teacher, student), cell in groups:
        ok = cell[cell["status"] == "ok"]
        teacher_runs = ok[ok["method"] == TEACHER]
        teacher_ndcg = _first_valid(teacher_runs["ndcg@10"].mean(), ok["teacher_ndcg@10"].mean())
        teacher_params = teacher_runs["params"].mean()
        students = cell[cell["method"] != TEACHER]
        variants = sorted(set(students["variant"]), key=lambda v: (v != TUNED, v)) or [DEFAULTS]
        defaults_means = (ok[(ok["variant"] == DEFAULTS) & (ok["method"] != TEACHER)]
                          .groupby("method")["ndcg@10"].mean())
        for variant in variants:
            runs_here = pd.concat([cell[cell["method"] == TEACHER], students[students["variant"] == variant]])
            scratch = ok[(ok["method"] == SCRATCH) & (ok["variant"] == variant)]
            group_rows = []
            for strategy, runs in runs_here.groupby("strategy", sort=True):
                row = _strategy_row(runs, scratch, teacher_ndcg, teacher_params, costs)
                row["variant"] = variant
                method = runs["method"].iloc[0]
                if variant == TUNED and method in defaults_means.index:
                    row["ndcg@10_tuned_vs_defaults_pct"] = _ratio(row["ndcg@10_mean"] - defaults_means[method],
                                                                  defaults_means[method]) * 100
                if variant == TUNED and tuning is not None and len(tuning):
                    found = tuning[(tuning["dataset"] == dataset) & (tuning["pairing"] == row["pairing"])
                                   & (tuning["strategy"] == method)]
                    row["tuning_trials"] = int(found["trials_counted"].iloc[0]) if len(found) else pd.NA
                group_rows.append(row)
            group = pd.DataFrame(group_rows)
            group["p_value_holm"] = stats.holm(group["p_value_mixed"].to_numpy(float))
            group["_order"] = np.where(group["family"] == TEACHER, 0, 1)
            group = group.sort_values(["ndcg@10_mean", "_order", "strategy"], ascending=[False, True, True],
                                      na_position="last", kind="mergesort")
            is_student = group["family"] != TEACHER
            group["rank"] = pd.array([pd.NA] * len(group), dtype="Int64")
            group.loc[is_student, "rank"] = np.arange(1, int(is_student.sum()) + 1)
            rows.append(group.drop(columns="_order"))
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    result = pd.concat(rows, ignore_index=True)
    return result.reindex(columns=list(COLUMNS)).reset_index(drop=True)


def load_tuning(runs_dir: str | Path) -> pd.DataFrame:
    """The tuning studies' summaries beside the runs (`tuning/*/*/*.json`), one row each."""
    root = Path(runs_dir) / "tuning"
    rows = [read_mapping(p, TUNING_SUMMARY_ADVICE) for p in sorted(root.glob("*/*/*.json"))] if root.is_dir() else []
    return pd.DataFrame([{k: r.get(k) for k in ("dataset", "pairing", "strategy", "trials_counted", "budget")}
                         for r in rows], columns=["dataset", "pairing", "strategy", "trials_counted", "budget"])


def _spec_key(text: Any) -> tuple:
    """`BPR:20` sorts as ('BPR', 20), so sizes come in numeric order (2, 5, 10, 20)."""
    model, _, dim = str(text).rpartition(":")
    return (model, int(dim), "") if dim.isdigit() else (str(text), 0, str(text))


COST_COLUMNS = ("dataset", "teacher", "catalogue", "synthetic", "n_items", "n_users", "kind", "model", "dim",
                "params", "batch_users", "median_s", "q25_s", "q75_s", "min_s", "max_s", "n")
COST_ADVICE = "restore it, or run `python -m kdbench cost` again to measure it anew"
THROUGHPUT_BATCH, LATENCY_BATCH = 256, 1
RATIO_TOLERANCE = 0.2  # a speed-up within 20% of the roofline's counts as matching it


def load_costs(runs_dir: str | Path) -> pd.DataFrame:
    """Every inference-cost measurement under `runs_dir/cost/` (`kdbench cost`), one row each.

    `dataset` and `teacher` name the sitting (a teacher and its students, measured together);
    a damaged file stops here (`DamagedFile`, naming it)."""
    from kdbench.inference_cost import check_cost
    from kdbench.stored import DamagedFile

    root = Path(runs_dir) / "cost"
    rows = []
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        payload = read_mapping(path, COST_ADVICE)
        problem = check_cost(payload)
        if problem:
            raise DamagedFile(path, problem, COST_ADVICE)
        for measurement in payload["measurements"]:
            rows.append({"dataset": payload["dataset"], "teacher": payload["teacher"]}
                        | {k: measurement.get(k) for k in COST_COLUMNS[2:]})
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


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
    here = here[(here["kind"] == "model") & (here["model"] == model)]
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
        return pd.DataFrame(columns=["dataset", "teacher", "catalogue", "n_items", "synthetic", "kind", "model",
                                     "dim", "params", "batch_users", "users_per_s", "users_per_s_iqr_low",
                                     "users_per_s_iqr_high", "median_ms", "min_ms", "max_ms", "n"])
    out = costs[["dataset", "teacher", "catalogue", "n_items", "synthetic", "kind", "model", "dim", "params",
                 "batch_users"]].copy()
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
    rows = []
    columns = ["dataset", "teacher", "student", "catalogue", "n_items", "deployment", "speedup", "roofline_speedup",
               "speedup_vs_roofline", "matches_roofline"]
    if not len(costs):
        return pd.DataFrame(columns=columns)
    batch = costs[costs["batch_users"] == THROUGHPUT_BATCH]
    for (dataset, teacher), sitting in batch.groupby(["dataset", "teacher"], sort=False):
        synthetic = sitting.loc[sitting["synthetic"].astype(bool), "n_items"]
        largest = int(synthetic.max()) if len(synthetic) else None
        for catalogue, here in sitting.groupby("catalogue", sort=False):
            models = here[here["kind"] == "model"].set_index("model")
            roofs = here[here["kind"] == "roofline"].set_index("dim")
            if teacher not in models.index:
                continue
            t_dim = int(models.loc[teacher, "dim"])
            for student, measured in models.iterrows():
                if student == teacher:
                    continue
                s_dim = int(measured["dim"])
                speedup = float(models.loc[teacher, "median_s"]) / float(measured["median_s"])
                roof = (float(roofs.loc[t_dim, "median_s"]) / float(roofs.loc[s_dim, "median_s"])
                        if t_dim in roofs.index and s_dim in roofs.index else math.nan)
                agreement = _ratio(speedup, roof)
                n_items = int(measured["n_items"])
                rows.append({"dataset": dataset, "teacher": teacher, "student": student, "catalogue": catalogue,
                             "n_items": n_items, "deployment": bool(measured["synthetic"]) and n_items == largest,
                             "speedup": speedup, "roofline_speedup": roof, "speedup_vs_roofline": agreement,
                             "matches_roofline": bool(np.isfinite(agreement) and abs(agreement - 1) <= RATIO_TOLERANCE)})
    return pd.DataFrame(rows, columns=columns)


def compression_curves(table: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The size sweeps: per dataset, teacher, variant and student model, every strategy run at two or
    more student sizes, one row per size: NDCG@10 mean with its `confidence` t-interval over seeds
    (mean ± t * sd / sqrt(n)), parameters, compression (teacher params / student params) and the share
    of the teacher's NDCG@10 kept, with the same interval divided by the teacher's NDCG@10."""
    from scipy.stats import t as student_t

    columns = ["dataset", "teacher", "variant", "strategy", "family", "student", "params", "compression_vs_teacher",
               "n_seeds", "ndcg@10_mean", "ndcg@10_ci_low", "ndcg@10_ci_high", "teacher_ndcg@10",
               "teacher_params", "retained_pct", "retained_ci_low", "retained_ci_high"]
    rows = []
    students = table[table["family"] != TEACHER].copy()
    students["_student_model"] = [_spec_key(s)[0] for s in students["student"]]
    for (dataset, teacher, variant, _), group in students.groupby(
            ["dataset", "teacher", "variant", "_student_model"], sort=False):
        teachers = table[(table["dataset"] == dataset) & (table["teacher"] == teacher) & (table["family"] == TEACHER)]
        teacher_ndcg = float(teachers["ndcg@10_mean"].astype(float).mean()) if len(teachers) else math.nan
        teacher_params = float(teachers["params"].astype(float).mean()) if len(teachers) else math.nan
        for strategy, runs in group.groupby("strategy", sort=True):
            runs = runs[runs["n_seeds"] > 0]
            if runs["student"].nunique() < 2:
                continue
            for _, row in sorted(runs.iterrows(), key=lambda item: _spec_key(item[1]["student"])):
                n, mean, sd = int(row["n_seeds"]), float(row["ndcg@10_mean"]), float(row["ndcg@10_std"])
                half = (student_t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
                        if n >= 2 and np.isfinite(sd) else math.nan)
                rows.append({"dataset": dataset, "teacher": teacher, "variant": variant, "strategy": strategy,
                             "family": row["family"], "student": row["student"], "params": row["params"],
                             "compression_vs_teacher": row["compression_vs_teacher"], "n_seeds": n,
                             "ndcg@10_mean": mean, "ndcg@10_ci_low": mean - half, "ndcg@10_ci_high": mean + half,
                             "teacher_ndcg@10": teacher_ndcg, "teacher_params": teacher_params,
                             "retained_pct": _ratio(mean, teacher_ndcg) * 100,
                             "retained_ci_low": _ratio(mean - half, teacher_ndcg) * 100,
                             "retained_ci_high": _ratio(mean + half, teacher_ndcg) * 100})
    return pd.DataFrame(rows, columns=columns)


def _strategy_row(runs: pd.DataFrame, scratch: pd.DataFrame, teacher_ndcg: float,
                  teacher_params: float, costs: pd.DataFrame | None = None) -> dict[str, Any]:
    ok = runs[runs["status"] == "ok"]
    first = runs.iloc[0]
    family = _first_text(ok["family"], runs["family"])
    row: dict[str, Any] = {
        "dataset": first["dataset"], "pairing": first["pairing"], "teacher": first["teacher"],
        "student": first["student"], "strategy": first["strategy"], "method": first["method"], "family": family,
        "model": _first_text(ok["model"], runs["model"]),
        "n_seeds": int(len(ok)), "n_failed": int((runs["status"] != "ok").sum()),
    }
    for metric in METRICS:
        row[f"{metric}_mean"] = ok[metric].mean()
        row[f"{metric}_std"] = ok[metric].std(ddof=1)
    scratch_ndcg = scratch["ndcg@10"].mean()
    row["ndcg@10_vs_scratch_pct"] = _ratio(row["ndcg@10_mean"] - scratch_ndcg, scratch_ndcg) * 100
    row["teacher_ndcg@10_retained_pct"] = _ratio(row["ndcg@10_mean"], teacher_ndcg) * 100
    if family == TEACHER or first["method"] == SCRATCH:
        row.update(_NO_TEST)
    else:
        row.update(paired_tests(ok, scratch))
    for column in ("params", "size_bytes", "train_s_per_epoch"):
        row[column] = ok[column].mean()
    row["compression_vs_teacher"] = _ratio(teacher_params, row["params"])
    row |= shape_cost(costs, row["dataset"], row["teacher"], row["model"])
    if _is_sequential(row["model"]):  # per query, from the runs themselves (median over seeds)
        ok_runs = runs[runs["status"] == "ok"]
        row |= {"throughput_users_per_s": ok_runs["run_throughput"].median(),
                "throughput_iqr_low": ok_runs["run_throughput"].min(),
                "throughput_iqr_high": ok_runs["run_throughput"].max(),
                "latency_p50_ms": ok_runs["run_latency_p50_ms"].median()}
    # Training cost, per seed, then mean and spread over seeds.
    ratios = ok["train_s_per_epoch"].astype(float) / scratch["train_s_per_epoch"].astype(float).mean()
    prepare = ok["kd_prepare_seconds"].astype(float).fillna(0.0)
    to_best = prepare + ok["train_s_per_epoch"].astype(float) * ok["best_epoch"].astype(float)
    for column, values in (("epoch_time_ratio", ratios), ("kd_prepare_s", prepare), ("time_to_best_s", to_best)):
        row[f"{column}_std"] = values.std(ddof=1)
        row[column + ("_vs_scratch" if column == "epoch_time_ratio" else "_mean")] = values.mean()
    row["best_epoch_mean"] = ok["best_epoch"].mean()
    row["epochs_run_mean"] = ok["epochs_run"].mean()
    row["hit_epoch_cap_share"] = ok["hit_epoch_cap"].astype(float).mean()
    row["compute_seconds"] = runs["wall_seconds"].astype(float).sum(min_count=1)
    row["teacher_trained_further"] = bool(runs["teacher_trained_further"].fillna(False).astype(bool).any())
    return row


def paired_tests(runs: pd.DataFrame, scratch: pd.DataFrame) -> dict[str, Any]:
    """The primary and secondary tests of one strategy's ok runs against scratch's (module docstring)."""
    from scipy.stats import ttest_rel, wilcoxon

    seeds = sorted(set(runs["seed"]) & set(scratch["seed"]))
    out = _NO_TEST | {"n_paired_seeds": len(seeds)}
    if not seeds:
        return out
    mine = runs.set_index("seed").loc[seeds]
    base = scratch.set_index("seed").loc[seeds]
    if all(u is not None for u in mine["per_user"]) and all(u is not None for u in base["per_user"]):
        x, y = stats.paired_matrices(dict(zip(seeds, mine["per_user"])), dict(zip(seeds, base["per_user"])))
        out["n_users_tested"] = x.shape[1]
        if x.shape[1]:
            users_x, users_y = x.mean(axis=0).to_numpy(), y.mean(axis=0).to_numpy()
            out["p_value_vs_scratch"] = (1.0 if np.array_equal(users_x, users_y)
                                         else float(wilcoxon(users_x, users_y).pvalue))
            result = stats.compare(x.to_numpy(), y.to_numpy(), CONFIDENCE)
            out |= {"p_value_mixed": float(result.p_value),
                    "rel_change_ci_low": float(result.ci_low) * 100,
                    "rel_change_ci_high": float(result.ci_high) * 100,
                    "diff_var_seed": float(result.var_seed), "diff_var_user": float(result.var_user),
                    "diff_var_residual": float(result.var_residual)}
    if len(seeds) >= 2:
        x, y = mine["ndcg@10"].to_numpy(float), base["ndcg@10"].to_numpy(float)
        out["p_value_seeds"] = 1.0 if np.array_equal(x, y) else float(ttest_rel(x, y).pvalue)
    return out


_NO_TEST: dict[str, Any] = {
    "rel_change_ci_low": math.nan, "rel_change_ci_high": math.nan, "p_value_mixed": math.nan,
    "p_value_vs_scratch": math.nan, "p_value_seeds": math.nan, "n_paired_seeds": 0, "n_users_tested": 0,
    "diff_var_seed": math.nan, "diff_var_user": math.nan, "diff_var_residual": math.nan,
}


def detectable_effects(table: pd.DataFrame, keys: tuple[str, ...] = ("dataset", "pairing", "variant"),
                       alpha: float = 0.05, power: float = POWER,
                       more_seeds: tuple[int, ...] = (10, 20)) -> pd.DataFrame:
    """Per table (`keys`), the smallest relative change of NDCG@10 vs scratch, in %, that the primary
    test detects with probability `power`: from the median variance components of the strategies
    compared there, at Holm's strictest level alpha / m (`mde_pct`), at alpha for one comparison
    (`mde_single_pct`), and projected to `more_seeds` seeds (`mde_pct_<n>_seeds`, at alpha / m).
    """
    rows = []
    for key, group in table.groupby(list(keys), sort=False):
        tested = group[np.isfinite(group["p_value_mixed"].astype(float))]
        scratch = group.loc[group["method"] == SCRATCH, "ndcg@10_mean"]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row |= {"n_compared": len(tested), "n_seeds": 0, "n_users": 0}
        if tested.empty or scratch.empty:
            rows.append(row)
            continue
        components = [float(tested[c].median()) for c in ("diff_var_seed", "diff_var_user", "diff_var_residual")]
        n_seeds, n_users = int(tested["n_paired_seeds"].median()), int(tested["n_users_tested"].median())
        base = float(scratch.iloc[0])

        def mde(seeds: int, level: float) -> float:
            return 100 * stats.minimum_detectable_effect(*components, seeds, n_users, level, power) / base

        row |= {"n_seeds": n_seeds, "n_users": n_users, "mde_pct": mde(n_seeds, alpha / len(tested)),
                "mde_single_pct": mde(n_seeds, alpha)}
        row |= {f"mde_pct_{n}_seeds": mde(n, alpha / len(tested)) for n in more_seeds}
        rows.append(row)
    return pd.DataFrame(rows)


def _is_sequential(model: Any) -> bool:
    from kdbench.families.sequential import SEQUENTIAL_MODELS

    return isinstance(model, str) and model.split(":")[0] in SEQUENTIAL_MODELS


def _ratio(numerator: float, denominator: float) -> float:
    if denominator is None or not np.isfinite(denominator) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


def _first_valid(*values: float) -> float:
    return next((v for v in values if v is not None and np.isfinite(v)), math.nan)


def _first_text(*series: pd.Series) -> Any:
    for values in series:
        values = values.dropna()
        if len(values):
            return values.iloc[0]
    return None


# -- writing ---------------------------------------------------------------------------------------
def write_reports(runs_dir: str | Path, out_dir: str | Path, quick: bool = False,
                  command: str | None = None, wall_seconds: float | None = None, plot: bool = True) -> list[Path]:
    """Write leaderboard.md/.csv/.json, pareto.png and compression.png (the `-quick` set with `quick=True`).

    Inference costs come from `runs_dir/cost/` (`kdbench cost`); without them those columns are empty.
    `plot=False` leaves the PNGs out (for `verify`, which compares the text files only).
    `command` and `wall_seconds` describe the invocation that produced the runs; given, they are
    stored in `leaderboard[-quick].meta.json`, and when absent (as from `kdbench report`) they are
    read back from it, so a rebuild from the same runs gives the same files.

    Every input is read (a damaged run file stops here, `DamagedFile`, naming it) before anything
    is written, and the files are replaced together (`atomic.atomic_paths`): a failure leaves the
    previous leaderboard whole, never half of a new one.
    """
    out_dir = Path(out_dir)
    suffix = "-quick" if quick else ""
    meta_path = out_dir / f"leaderboard{suffix}.meta.json"
    meta = _invocation(meta_path, command, wall_seconds)
    runs = load_runs(runs_dir)
    costs = load_costs(runs_dir)
    table = aggregate(runs, load_tuning(runs_dir), costs)
    header = _header(runs, meta, quick)

    paths = {kind: out_dir / f"leaderboard{suffix}.{kind}" for kind in ("md", "csv", "json")}
    paths["png"] = out_dir / f"pareto{suffix}.png"
    paths["compression"] = out_dir / f"compression{suffix}.png"
    rounded = _rounded(table)
    effects = detectable_effects(table)
    shapes, ratios, curves = inference_table(costs), speedups(costs), compression_curves(table)
    texts = {
        "csv": rounded.to_csv(index=False, lineterminator="\n"),
        "json": atomic.dumps({"header": header, "columns": list(COLUMNS), "rows": _json_rows(rounded),
                              "detectable_effects": _json_rows(effects), "inference_cost": _json_rows(shapes),
                              "speedups": _json_rows(ratios), "compression": _json_rows(curves)}),
        "md": render_markdown(rounded, runs, header, quick, effects, shapes, ratios, curves),
    }
    kinds = ["csv", "json", "md"] + (["png", "compression"] if plot else [])
    if not quick:  # the interactive page, results/index.html (kdbench.page); none for the quick board
        from kdbench.page import PAGE_NAME, render_page

        paths["html"] = out_dir / PAGE_NAME
        texts["html"] = render_page(_json_rows(rounded), list(COLUMNS), header, runs_dir)
        kinds.append("html")
    if command is not None or wall_seconds is not None:
        texts["meta"] = atomic.dumps(meta)
        kinds.append("meta")
    paths["meta"] = meta_path
    with atomic.atomic_paths([paths[kind] for kind in kinds]) as temps:
        for kind, tmp in zip(kinds, temps):
            if kind == "png":
                plot_pareto(table, tmp, quick=quick)
            elif kind == "compression":
                plot_compression(curves, tmp, quick=quick)
            else:
                tmp.write_text(texts[kind])
    return [paths[kind] for kind in ("md", "csv", "json") + (("png", "compression") if plot else ())] + (
        [meta_path] if meta_path.is_file() else []) + ([paths["html"]] if "html" in paths else [])


def _invocation(meta_path: Path, command: str | None, wall_seconds: float | None) -> dict[str, Any]:
    """The invocation behind the runs: the one given, else the one stored beside the leaderboard."""
    if command is not None or wall_seconds is not None:
        return {"command": command, "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 1)}
    if meta_path.is_file():
        return read_mapping(meta_path, "restore it or delete it (the leaderboard header then omits the command)")
    return {"command": None, "wall_seconds": None}


def _header(runs: pd.DataFrame, meta: dict[str, Any], quick: bool) -> dict[str, Any]:
    def values(column: str) -> str:
        found = sorted({str(v) for v in runs[column].dropna()})
        return ", ".join(found) if found else "unknown"

    created = sorted(str(v) for v in runs["created"].dropna())
    return {
        "quick": quick,
        "command": meta.get("command"),
        "wall_seconds": meta.get("wall_seconds"),
        "compute_seconds": _sig(float(runs["wall_seconds"].astype(float).sum())) if len(runs) else 0.0,
        "date": created[-1] if created else None,
        "n_runs": int(len(runs)),
        "n_failed": int((runs["status"] != "ok").sum()),
        "environment": {key: values(f"env_{key}") for key in _ENVIRONMENT},
    }


def _sig(value: Any, digits: int = 6) -> Any:
    """Round a float to `digits` significant digits (NaN/inf become None); other values pass."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.{digits}g}") if np.isfinite(value) else None
    return value


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [_sig(v) for v in out[column]]
    for column in ("n_seeds", "n_failed", "n_paired_seeds", "n_users_tested", "params", "size_bytes",
                   "tuning_trials"):
        out[column] = pd.array([None if v is None or pd.isna(v) else int(round(v)) for v in out[column]],
                               dtype="Int64")
    return out


def _json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for record in table.to_dict(orient="records"):
        rows.append({k: (None if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v))
                         else _sig(v)) for k, v in record.items()})
    return rows


# -- Markdown --------------------------------------------------------------------------------------
def render_markdown(table: pd.DataFrame, runs: pd.DataFrame, header: dict[str, Any], quick: bool = False,
                    effects: pd.DataFrame | None = None, shapes: pd.DataFrame | None = None,
                    ratios: pd.DataFrame | None = None, curves: pd.DataFrame | None = None) -> str:
    """The leaderboard page: header facts, one ranked table per (dataset, pairing) with its minimum
    detectable effect (`effects`, from `detectable_effects`), the compression sweeps (`curves`), the
    inference cost per model shape (`shapes`, `ratios`), failures, legend."""
    from tabulate import tabulate

    env = header["environment"]
    lines = ["# kdbench leaderboard" + (" (QUICK)" if quick else ""), ""]
    if quick:
        lines += ["> **Quick, reduced run (fewer seeds and strategies): a first look only. Do not cite "
                  "these numbers; cite `leaderboard.md` from the full suite.**", ""]
    command = f"`{header['command']}`" if header["command"] else "not recorded (no leaderboard meta file)"
    facts = [
        ("Command", command),
        ("kdbench / RecBole / torch / Python",
         f"{env['kdbench']} / {env['recbole']} / {env['torch']} / {env['python']}"),
        ("CPU", f"{env['cpu']} ({env['threads']} torch threads)"),
        ("GPU", env["gpu"]),
        ("Date (newest run)", header["date"] or "unknown"),
        ("Wall time of the invocation", _duration(header["wall_seconds"])),
        ("Compute time (sum over runs)", _duration(header["compute_seconds"])),
        ("Runs", f"{header['n_runs']} ({header['n_failed']} failed)"),
    ]
    lines += [tabulate(facts, headers=["", ""], tablefmt="github"), ""]
    sequential_started = False
    for (dataset, pairing), pairing_group in table.groupby(["dataset", "pairing"], sort=False):
        if not sequential_started and _is_sequential(pairing_group["teacher"].iloc[0]):
            sequential_started = True
            lines += [_SEQUENTIAL_INTRO, ""]
        lines += [f"## {dataset}: {pairing.replace('->', ' → ')}", ""]
        variants = list(dict.fromkeys(pairing_group["variant"]))
        for variant, group in pairing_group.groupby("variant", sort=False):
            tuned = variant == TUNED
            if len(variants) > 1 or tuned:
                lines += [f"### {VARIANT_TITLES.get(variant, variant)}", ""]
            if tuned:
                lines += [_budget_line(group), ""]
            rows = [_markdown_row(row) for row in group.to_dict(orient="records")]
            quality = [row[:_N_QUALITY] + ([row[-2], row[-1]] if tuned else []) for row in rows]
            headers = _MD_HEADERS[:_N_QUALITY] + (["trials", "vs defaults"] if tuned else [])
            cost = [row[:2] + row[_N_QUALITY:-2] for row in rows]
            lines += ["Quality:", "", tabulate(quality, headers=headers, tablefmt="github",
                                                disable_numparse=True), ""]
            if effects is not None and len(effects):
                found = effects[(effects["dataset"] == dataset) & (effects["pairing"] == pairing)
                                & (effects["variant"] == variant)]
                if len(found):
                    lines += [_detectable_line(found.iloc[0].to_dict()), ""]
            lines += ["Cost:", "", tabulate(cost, headers=_MD_HEADERS[:2] + _MD_HEADERS[_N_QUALITY:],
                                             tablefmt="github", disable_numparse=True), ""]
    if curves is not None and len(curves):
        lines += _compression_markdown(curves)
    if (shapes is not None and len(shapes)) or not all(_is_sequential(t) for t in table["teacher"]):
        lines += _inference_markdown(shapes, ratios)  # sequential shapes are costed per query, in each run
    failed = runs[runs["status"] != "ok"]
    if len(failed):
        lines += ["## Failed runs", ""]
        rows = [[r.dataset, r.pairing, r.strategy, r.seed,
                 r.error.splitlines()[0][:200] if isinstance(r.error, str) and r.error else "unknown error"]
                for r in failed.itertuples(index=False)]
        lines += [tabulate(rows, headers=["dataset", "pairing", "strategy", "seed", "error"],
                           tablefmt="github", disable_numparse=True), ""]
    lines += [_LEGEND]
    return "\n".join(lines)


_SEQUENTIAL_INTRO = f"""# Sequential recommenders

Teacher and students are RecBole sequential models (SASRec, GRU4Rec) under `leave-one-out`: per
user, interactions by timestamp, the last one is the test target and the one before it the
validation target; a query is the user's last {MAX_SEQUENCE_LENGTH} items before the prediction point; full ranking
over all items, nothing masked but the padding item. Cost columns are per query: users/s is queries
per second on batches of 256 test queries (scoring every item and taking the top 20; [min, max]
over seeds instead of an IQR), ms/user the median latency of one query, both from the runs
themselves (`cost` in each run file)."""

_MD_HEADERS = ["#", "strategy", "family", "NDCG@10", "vs scratch [95% CI]", "of teacher", "NDCG@20",
               "Recall@10", "Recall@20", "p", "p Holm", "p users", "p seeds", "seeds", "params", "× smaller",
               "MB", "users/s [IQR]", "ms/user", "s/epoch", "epoch × scratch", "prepare s", "s to best",
               "best epoch", "cap hit", "failed"]
_N_QUALITY = 14  # the first columns form the quality table; # and strategy repeat in the cost table


def _compression_markdown(curves: pd.DataFrame) -> list[str]:
    """Per dataset, teacher and variant: a strategy per row, a student size per column."""
    from tabulate import tabulate

    lines = ["## Compression: the same methods at several student sizes", "",
             "NDCG@10, mean over seeds, and in brackets the share of the teacher's NDCG@10 it keeps "
             "(`compression.png` draws both with their 95% intervals).", ""]
    for (dataset, teacher, variant), group in curves.groupby(["dataset", "teacher", "variant"], sort=False):
        sizes = sorted(set(group["student"]), key=_spec_key)
        first = group.drop_duplicates("student").set_index("student")
        lines += [f"### {dataset}: teacher {teacher} (NDCG@10 {group['teacher_ndcg@10'].iloc[0]:.4f}), "
                  f"{VARIANT_TITLES.get(variant, variant).split(':')[0].lower()}", ""]
        headers = ["strategy"] + [f"{size} ({first.loc[size, 'compression_vs_teacher']:.1f}× smaller)"
                                  for size in sizes]
        rows = []
        order = sorted(set(group["strategy"]), key=lambda name: (name.split("@")[0] != SCRATCH, name))
        for strategy in order:
            found = group[group["strategy"] == strategy].set_index("student")
            rows.append([f"**{strategy}**" if strategy.split("@")[0] == SCRATCH else strategy] + [
                f"{found.loc[size, 'ndcg@10_mean']:.4f} ({found.loc[size, 'retained_pct']:.1f}%), "
                f"{int(found.loc[size, 'n_seeds'])} seeds" if size in found.index else "—" for size in sizes])
        lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return lines


def _inference_markdown(shapes: pd.DataFrame | None, ratios: pd.DataFrame | None) -> list[str]:
    """Per sitting: users/s of every shape at every catalogue, then each student's speed-up."""
    from tabulate import tabulate

    lines = ["## Inference cost per model shape", ""]
    if shapes is None or not len(shapes):
        return lines + ["Not measured: `python -m kdbench cost` measures every shape of the suite once "
                        "(then `python -m kdbench report`).", ""]
    models = shapes[shapes["kind"] == "model"]
    for (dataset, teacher), sitting in models.groupby(["dataset", "teacher"], sort=False):
        catalogues = list(dict.fromkeys(sitting["catalogue"]))
        items = sitting.drop_duplicates("catalogue").set_index("catalogue")["n_items"]
        lines += [f"### {dataset}: teacher {teacher} and its students, measured together", ""]
        headers = ["model", "params"] + [
            f"{'synthetic' if catalogue != dataset else catalogue}, {int(items[catalogue]):,} items: users/s [IQR]"
            for catalogue in catalogues] + [f"ms/user, {int(items[c]):,} items" for c in catalogues]
        rows = []
        for model in dict.fromkeys(sitting["model"]):
            mine = sitting[sitting["model"] == model]
            row = [f"**{model}** (teacher)" if model == teacher else model,
                   _fmt(mine["params"].astype(float).iloc[0], "{:,.0f}")]
            for batch, pattern in ((THROUGHPUT_BATCH, None), (LATENCY_BATCH, "{:.3f}")):
                for catalogue in catalogues:
                    found = mine[(mine["catalogue"] == catalogue) & (mine["batch_users"] == batch)]
                    if not len(found):
                        row.append("—")
                    elif pattern is None:
                        f = found.iloc[0]
                        row.append(_throughput(f["users_per_s"], f["users_per_s_iqr_low"], f["users_per_s_iqr_high"]))
                    else:
                        row.append(_fmt(found.iloc[0]["median_ms"], pattern))
            rows.append(row)
        lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        here = ratios[(ratios["dataset"] == dataset) & (ratios["teacher"] == teacher)] if ratios is not None else None
        if here is not None and len(here):
            rows = [[r.student, f"{int(r.n_items):,}" + (" (deployment size)" if r.deployment else ""),
                     _fmt(r.speedup, "{:.2f}×"), _fmt(r.roofline_speedup, "{:.2f}×"),
                     _fmt(r.speedup_vs_roofline, "{:.2f}"), "yes" if r.matches_roofline else "no"]
                    for r in here.itertuples(index=False)]
            lines += ["Student's speed-up over the teacher (teacher's median call / student's, 256 users) and the "
                      "roofline's for the same sizes (U @ I.T + top-20, measured in the same sitting):", "",
                      tabulate(rows, headers=["student", "items", "speed-up", "roofline speed-up", "ratio",
                                              f"within {RATIO_TOLERANCE:.0%}"],
                               tablefmt="github", disable_numparse=True), ""]
    return lines


def _budget_line(group: pd.DataFrame) -> str:
    """The tuned table's budget: the trials each strategy had (the same for all, scratch included)."""
    trials = sorted({int(t) for t in group["tuning_trials"].dropna()})
    budget = " / ".join(map(str, trials)) if trials else "unknown"
    equal = "the same for every strategy, scratch included" if len(trials) == 1 else "NOT equal across strategies"
    return (f"Each strategy's hyperparameters, learning rate and weight decay were tuned with Optuna on "
            f"validation NDCG@10 (tuning seed disjoint from the evaluation seeds; test never scored): "
            f"**{budget} trials per strategy**, {equal}. See `tuning/summary.md`. \"vs defaults\": change "
            f"of mean NDCG@10 against the same strategy with its published defaults.")


def _detectable_line(effect: dict[str, Any]) -> str:
    """One sentence on the table's minimum detectable effect (a `detectable_effects` row)."""
    m = effect["n_compared"]
    if not m or not _finite(effect.get("mde_pct")):
        return ("Smallest detectable change: not estimable (no strategy has two seeds and per-user "
                "results shared with scratch), so no marks.")
    projected = {int(k.split("_")[2]): v for k, v in effect.items() if k.startswith("mde_pct_") and _finite(v)}
    more = (f"; with {' / '.join(str(n) for n in projected)} seeds: "
            f"{' / '.join(f'±{v:.1f}%' for v in projected.values())}") if projected else ""
    level = "α = 0.05" if m == 1 else f"Holm's first step, α = 0.05/{m}"
    return (f"Smallest detectable change ({POWER:.0%} power, two-sided, {level}): **±{effect['mde_pct']:.1f}%** "
            f"of scratch's NDCG@10 with {effect['n_seeds']} seeds and {effect['n_users']} users "
            f"(±{effect['mde_single_pct']:.1f}% for a single comparison at α = 0.05){more}.")

_LEGEND = """### How to read these tables

- One table per dataset and teacher → student pairing; rows ranked by mean NDCG@10 over seeds, best
  first. **teacher (model)** is the teacher itself (one run, the reference); **scratch** is the student
  trained without distillation (the baseline every test compares against). `#` ranks the students.
- ⁂ after a strategy's name: the teacher was trained further during distillation (BD); its row
  compares a student distilled from a co-trained teacher, not from the cached teacher of the other
  rows (the teacher row and `of teacher` still refer to the cached one).
- NDCG@10, NDCG@20, Recall@10, Recall@20: full-ranking test metrics (RecBole), mean ± sample standard
  deviation over seeds (no ± with a single seed).
- † / ‡ after NDCG@10: the primary test below gives p < 0.05 / p < 0.01 against scratch after the
  Holm-Bonferroni correction over the strategies of the table (either direction; read the sign in "vs
  scratch"). The correction keeps the chance of any false mark in a table at 5% / 1%.
- vs scratch: relative change of mean NDCG@10 against scratch's mean, in %, and in brackets its 95%
  confidence interval (same model as p; not corrected for the several comparisons, so an interval can
  exclude 0 without a mark).
- of teacher: mean NDCG@10 as a share of the teacher's NDCG@10, in %.
- p (`p_value_mixed`, primary): two-sided test of the mean per-user, per-seed difference against
  scratch. Each seed's run is paired with scratch's run of the same seed, and users by id; the
  differences are modelled as overall effect + seed effect + user effect + residual (a linear mixed
  model with crossed random effects, solved in closed form), so both seed-to-seed and user-to-user
  variance widen the interval (t-test on Satterthwaite's degrees of freedom). Needs two shared seeds.
  p Holm (`p_value_holm`): that p after the Holm-Bonferroni correction; the marks come from it.
- Smallest detectable change (below each quality table): the relative change the primary test would
  detect with 80% power at Holm's strictest level, from the table's median variance components; an
  unmarked strategy may still differ from scratch by less than this. More seeds shrink only the seed
  part, so the figure stops falling once user variance dominates.
- p users (`p_value_vs_scratch`, secondary): two-sided Wilcoxon signed-rank test over test users of
  each user's NDCG@10 averaged over the shared seeds (users with equal values dropped). It does not see
  seed-to-seed variance, so it overstates significance when seeds disagree.
- p seeds (`p_value_seeds`, secondary): two-sided paired t-test over the per-seed mean NDCG@10 (paired
  by seed; needs two shared seeds). It does not see user-to-user variance, and with few seeds it has
  little power. Both secondary p are 1 when the runs equal scratch's exactly.
- seeds: successful seeds aggregated. failed: runs that failed (listed under "Failed runs").
- params: parameters used at inference (training-only modules excluded). × smaller: teacher params /
  params. MB: model size on disk.
- users/s [IQR]: inference throughput of the row's model *shape* (full-catalogue scoring and top-20 for
  batches of 256 users) on the dataset's catalogue: users per second of the median call, in brackets of
  the slower and the faster quartile call. ms/user: median latency of scoring and ranking the whole
  catalogue for one user. Both come from `python -m kdbench cost` (warm-up, then repeated calls, the
  teacher and its students interleaved in one process, randomly initialised weights), not from the
  runs: every student of a pairing has the same shape, hence the same figure. "Inference cost per model
  shape" below gives every shape at the dataset's and at synthetic deployment-size catalogues.
- s/epoch: training seconds per epoch (optimisation only), mean over seeds; epoch × scratch: each seed's
  epoch time over scratch's mean epoch time, mean ± standard deviation over seeds (the overhead of
  distilling); prepare s: the strategy's one-off knowledge preparation (the teacher's rankings, ...);
  s to best: training seconds to the best model, prepare s + s/epoch × best epoch (validation passes
  excluded), mean ± sd over seeds; best epoch: mean epoch of the restored model. cap hit: share of seeds
  that stopped at the epoch limit rather than by early stopping (their quality may be understated).
- pareto.png: NDCG@10 against parameters (top) and against training seconds to the best model (bottom,
  the price of each method; horizontal bar ± sd over seeds); up-left is better in both; the dashed
  line joins the points no other point beats on both axes; the dotted line is scratch, and a strategy's
  vertical bar is the 95% interval of its difference from scratch. Students of one pairing share a
  parameter count, so their points are spread slightly sideways to stay readable. One column per
  dataset and teacher: the pairing with the most strategies (a size sweep's other sizes are in
  compression.png).
- Compression (when strategies were run at several student sizes): compression.png draws NDCG@10 (mean,
  95% t-interval over seeds) against the student's parameters per strategy, the teacher as a dashed
  line (top), and the share of the teacher's NDCG@10 kept against the compression ratio (bottom).
- Speed-up: the teacher's median call time over the student's at one catalogue (how many times more
  users/s the student serves), beside the same ratio for the bare roofline (U @ I.T + top-20) of their
  two sizes, measured in the same sitting; "within 20%": the two agree to 20%.
- Wall time: the whole `run` invocation that wrote these runs; compute time: the sum of the runs' own
  wall times (a teacher loaded from the cache counts only its loading).
- The CSV and JSON beside this file hold every column at 6 significant digits.
"""


def _markdown_row(get: dict[str, Any]) -> list[str]:
    family, strategy = get["family"], get["strategy"]
    if family == TEACHER:
        name = f"**teacher ({get['model']})**"
    elif get.get("method") == SCRATCH:
        name = f"**{strategy}**"
    else:
        name = strategy
    flag = get.get("teacher_trained_further")
    if isinstance(flag, (bool, np.bool_)) and flag:
        name += f" {TRAINED_TEACHER_MARK}"
    p_holm = get["p_value_holm"]
    mark = next((m for level, m in SIGNIFICANCE if _finite(p_holm) and p_holm < level), "")
    rank = get["rank"]
    return [
        "" if rank is pd.NA or rank is None or (isinstance(rank, float) and math.isnan(rank)) else str(int(rank)),
        name, family or "",
        _mean_std(get["ndcg@10_mean"], get["ndcg@10_std"]) + (" " + mark if mark else ""),
        _pct(get["ndcg@10_vs_scratch_pct"], signed=True) + _interval(get["rel_change_ci_low"],
                                                                     get["rel_change_ci_high"]),
        _pct(get["teacher_ndcg@10_retained_pct"]),
        _mean_std(get["ndcg@20_mean"], get["ndcg@20_std"]),
        _mean_std(get["recall@10_mean"], get["recall@10_std"]),
        _mean_std(get["recall@20_mean"], get["recall@20_std"]),
        _p(get["p_value_mixed"]), _p(p_holm), _p(get["p_value_vs_scratch"]), _p(get["p_value_seeds"]),
        str(get["n_seeds"]),
        _fmt(get["params"], "{:,.0f}"),
        _fmt(get["compression_vs_teacher"], "{:.1f}"),
        _fmt(get["size_bytes"] / 1e6 if _finite(get["size_bytes"]) else math.nan, "{:.2f}"),
        _throughput(get["throughput_users_per_s"], get["throughput_iqr_low"], get["throughput_iqr_high"]),
        _fmt(get["latency_p50_ms"], "{:.3f}"),
        _fmt(get["train_s_per_epoch"], "{:.3f}"),
        _mean_std(get["epoch_time_ratio_vs_scratch"], get["epoch_time_ratio_std"], "{:.2f}"),
        _mean_std(get["kd_prepare_s_mean"], get["kd_prepare_s_std"], "{:.1f}"),
        _mean_std(get["time_to_best_s_mean"], get["time_to_best_s_std"], "{:.0f}"),
        _fmt(get["best_epoch_mean"], "{:.0f}"),
        _pct(get["hit_epoch_cap_share"] * 100 if _finite(get["hit_epoch_cap_share"]) else math.nan, digits=0),
        str(get["n_failed"]),
        "" if get.get("tuning_trials") is None or get.get("tuning_trials") is pd.NA else str(get["tuning_trials"]),
        _pct(get.get("ndcg@10_tuned_vs_defaults_pct", math.nan), signed=True),
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def _fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if _finite(value) else "—"


def _mean_std(mean: float, std: float, pattern: str = "{:.4f}") -> str:
    if not _finite(mean):
        return "—"
    return f"{pattern.format(mean)} ± {pattern.format(std)}" if _finite(std) else pattern.format(mean)


def _throughput(median: float, low: float, high: float) -> str:
    """Users/s of the median call, and in brackets of the slower and faster quartile calls."""
    if not _finite(median):
        return "—"
    return f"{median:,.0f} [{low:,.0f}–{high:,.0f}]" if _finite(low) and _finite(high) else f"{median:,.0f}"


def _pct(value: float, signed: bool = False, digits: int = 1) -> str:
    if not _finite(value):
        return "—"
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def _interval(low: float, high: float) -> str:
    return f" [{low:+.1f}, {high:+.1f}]" if _finite(low) and _finite(high) else ""


def _p(value: float) -> str:
    if not _finite(value):
        return "—"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not _finite(seconds):
        return "not recorded"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
