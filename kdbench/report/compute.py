"""The compute behind the tables: per dataset and per pairing, the core-hours of their runs, where
they went (each record's time breakdown), and the machines that ran them.

A run's core-seconds are its wall seconds times its torch threads (`environment.threads`; 1 where
not recorded). The parts come from the record's `training` block: `train_seconds` (optimisation),
`eval_seconds` (validation passes), `test_seconds`, `kd_prepare_seconds` (the strategy's prepare),
`teacher_load_seconds`, `cost_seconds` (the run's inference measurement), each scaled by the same
threads; `other` is what the wall time holds beyond them (data loading, model building, writing).
Records made before a part was recorded leave it out (their share stays in `other`). A teacher
run appears under every pairing its cached teacher serves with the same record: it counts in each
pairing's row but once in its dataset's. Tuning studies (`kdbench tune`) are not runs: their
core-seconds, each study's trial seconds (`compute_seconds`, a killed trial's earlier part included)
times its trials' threads, are summed in a column of their own (each study: `tuning/summary.md`).
Neither are the teachers an ensemble strategy trains beyond the pairing's (HetComp's; `run.teachers`):
each is trained once per dataset and cached, and its training's wall seconds and threads are in the
records that learned from it (`load.ensemble_teachers`), so a column of their own counts each teacher
once, by its cache key (— where a record predates those figures).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from kdbench.report.formatting import TextTable, duration
from kdbench.report.values import frame_from_json
from kdbench.run.record import TEACHER

# column -> the run column (`report.load.RUN_FIELDS`) it sums
PARTS = {"training": "train_seconds", "validation": "eval_seconds", "test": "test_seconds",
         "prepare": "kd_prepare_seconds", "teacher_load": "teacher_load_seconds", "cost": "cost_seconds"}
COMPUTE_COLUMNS = ["dataset", "pairing", "n_runs", "core_seconds", *PARTS, "other", "tuning_core_seconds",
                   "ensemble_core_seconds", "machines"]


def compute_table(runs: pd.DataFrame, tuning: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per dataset (pairing '') followed by one per pairing of it, sorted by name; `tuning`
    (`report.load.load_tuning`) adds its studies' core-seconds, and the datasets and pairings that
    were tuned but have no run yet."""
    studies = _tuning_core_seconds(tuning)
    if not len(runs) and not len(studies):
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    runs = runs.copy()
    threads = _threads(runs["env_threads"])
    runs["_core"] = runs["wall_seconds"].astype(float) * threads
    for part, column in PARTS.items():
        runs[f"_{part}"] = (runs[column].astype(float) * threads) if column in runs else math.nan
    # a teacher's record is copied under each pairing it serves: its dataset counts it once
    is_teacher = runs["method"] == TEACHER
    unique = pd.concat([runs[~is_teacher],
                        runs[is_teacher].drop_duplicates(["dataset", "teacher", "seed", "created", "wall_seconds"])])
    rows = []
    for dataset in sorted(set(runs["dataset"]) | set(studies["dataset"]), key=str):
        tuned = studies[studies["dataset"] == dataset]
        rows.append(_row(unique[unique["dataset"] == dataset], dataset, "") | _tuned(tuned))
        here = runs[runs["dataset"] == dataset]
        for pairing in sorted(set(here["pairing"]) | set(tuned["pairing"]), key=str):
            rows.append(_row(here[here["pairing"] == pairing], dataset, pairing)
                        | _tuned(tuned[tuned["pairing"] == pairing]))
    return pd.DataFrame(rows, columns=COMPUTE_COLUMNS)


def _tuning_core_seconds(tuning: pd.DataFrame | None) -> pd.DataFrame:
    """Per study: dataset, pairing and its core-seconds (threads not recorded: 1)."""
    if tuning is None or not len(tuning):
        return pd.DataFrame({"dataset": [], "pairing": [], "core": []})
    seconds = pd.to_numeric(tuning["compute_seconds"], errors="coerce")
    return pd.DataFrame({"dataset": tuning["dataset"], "pairing": tuning["pairing"],
                         "core": seconds * _threads(tuning["threads"])})


def _threads(recorded: pd.Series) -> pd.Series:
    """Torch threads as numbers, 1 where not recorded."""
    return pd.to_numeric(recorded, errors="coerce").fillna(1.0).clip(lower=1.0)


def _tuned(studies: pd.DataFrame) -> dict:
    return {"tuning_core_seconds": float(studies["core"].sum(min_count=1))}


def _row(runs: pd.DataFrame, dataset: str, pairing: str) -> dict:
    row = {"dataset": dataset, "pairing": pairing, "n_runs": int(len(runs)),
           "core_seconds": float(runs["_core"].sum(min_count=1))}
    known = 0.0
    for part in PARTS:
        row[part] = float(runs[f"_{part}"].sum(min_count=1))
        known += 0.0 if math.isnan(row[part]) else row[part]
    row["other"] = row["core_seconds"] - known if np.isfinite(row["core_seconds"]) else math.nan
    row["ensemble_core_seconds"] = _ensemble_core_seconds(runs)
    row["machines"] = ", ".join(sorted({str(c) for c in runs["env_cpu"].dropna()})) or "unknown"
    return row


def _ensemble_core_seconds(runs: pd.DataFrame) -> float:
    """Core-seconds of the ensemble teachers these runs learned from beyond their pairings' own, each
    teacher (cache key) once, threads not recorded: 1; 0 without any, NaN if one's figure predates."""
    if "ensemble_teachers" not in runs:
        return 0.0
    teachers = {key: (wall, threads) for members in runs["ensemble_teachers"] for key, wall, threads in members}
    if any(wall is None for wall, _ in teachers.values()):
        return math.nan
    return math.fsum(wall * max(threads or 1.0, 1.0) for wall, threads in teachers.values())


COMPUTE_NOTE = (
    "Core-hours: wall time × torch threads, summed over the runs (a cached teacher counts once per "
    "dataset); the parts are shares of it from each run's recorded time breakdown (— where its records "
    "predate that part). Tuning core-hours: the tuning studies' trial seconds × their threads, summed "
    "over the dataset's or pairing's studies, teacher studies included (each study: `tuning/summary.md`). "
    "Ensemble teachers core-hours: training the teachers HetComp learns from beyond the pairing's, as "
    "the runs that learned from them record it, each teacher once (blank: none; — where those records "
    "predate the figure, 2026-12-08). CPU names the runs' machines.")


def compute_markdown(compute: pd.DataFrame) -> list[str]:
    """The header's compute table: a dataset's row in bold, its pairings below it."""
    if compute is None or not len(compute):
        return []
    return [compute_rows(compute).markdown(), "", COMPUTE_NOTE, ""]


def compute_from_json(rows: list[dict]) -> pd.DataFrame:
    """The table as `leaderboard.json` holds it, its numbers back as numbers."""
    return frame_from_json(rows, COMPUTE_COLUMNS, text=("dataset", "pairing", "machines"))


def compute_rows(compute: pd.DataFrame) -> TextTable:
    """The table as text: a dataset's row strong, its pairings below it."""
    rows = []
    for r in compute.to_dict(orient="records"):
        name = r["dataset"] if not r["pairing"] else f"{r['dataset']}: {r['pairing'].replace('->', ' → ')}"
        rows.append([name, str(r["n_runs"]), _hours(r["core_seconds"])]
                    + [_share(r[part], r["core_seconds"]) for part in (*PARTS, "other")]
                    + [_hours(r["tuning_core_seconds"]),
                       _hours(r["ensemble_core_seconds"]) if r["ensemble_core_seconds"] else "", r["machines"]])
    headers = ["compute per dataset", "runs", "core-hours", "training", "validation", "test", "prepare",
               "teacher load", "cost", "other", "tuning core-hours", "ensemble teachers core-hours", "CPU"]
    return TextTable(headers, rows, strong=[not pairing for pairing in compute["pairing"]])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} ({duration(seconds)})" if np.isfinite(seconds) else "—"


def _share(part: float, total: float) -> str:
    if not np.isfinite(part) or not np.isfinite(total) or total <= 0:
        return "—"
    return f"{100 * part / total:.0f}%"
