"""A leaderboard: everything its renderers draw from, computed once from the stored files.

`build_leaderboard` reads every input (a damaged file stops here, `DamagedFile`, naming it) and
derives every table; the renderers (`write.OUTPUTS`) only format what it holds, so each output file
is a pure function of the run files, the cost files and the invocation stored beside the
leaderboard: no clock, no random draws, no measuring, floats rounded to 6 significant digits, rows
in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from kdbench.report.aggregation import aggregate
from kdbench.report.compute import compute_table
from kdbench.report.cross_dataset import CrossDataset, cross_dataset
from kdbench.report.load import ENVIRONMENT, load_costs, load_tuning, read_runs
from kdbench.report.teachers import teacher_choices
from kdbench.report.tables import compression_curves, detectable_effects, inference_table, speedups
from kdbench.report.values import sig
from kdbench.run.record import RunRecord

INTEGER_COLUMNS = ("n_seeds", "n_failed", "n_paired_seeds", "n_users_tested", "params", "size_bytes",
                   "tuning_trials", "tuning_budget", "tuning_epochs_spent", "rank_low", "rank_high")


@dataclass(frozen=True)
class Leaderboard:
    """One leaderboard (the full one, or the quick one with `quick`), ready to render."""

    quick: bool
    header: dict[str, Any]  # the invocation, the environment and the run counts (`leaderboard_header`)
    runs: pd.DataFrame  # `load_runs`: one row per stored run, failed ones included
    table: pd.DataFrame  # `aggregate`: one row per strategy and table, at full precision (the figures)
    rows: pd.DataFrame  # `table` at 6 significant digits: the rows every text output shows
    effects: pd.DataFrame  # `detectable_effects`, per table
    shapes: pd.DataFrame  # `inference_table`, per sitting, model shape, catalogue and batch
    ratios: pd.DataFrame  # `speedups`, per sitting, catalogue and student
    curves: pd.DataFrame  # `compression_curves`, per size sweep
    runs_dir: Path | None = None  # the results folder the runs were read from (the page links into it)
    compute: pd.DataFrame | None = None  # `compute.compute_table`: core-hours per dataset and pairing
    cross: tuple[CrossDataset, ...] = ()  # `cross_dataset.cross_dataset`: the answer across datasets
    # each stored run's record without its per-user sections (`without_per_user`), by file, in
    # `runs`' order: what the page shows of a run, read with `runs` rather than again
    records: tuple[tuple[Path, RunRecord], ...] = ()
    inspected: tuple[Any, ...] = ()  # what `build_leaderboard`'s `inspect` made of each record, likewise


def build_leaderboard(runs_dir: str | Path, meta: dict[str, Any], quick: bool = False,
                      inspect: Callable[[Path, RunRecord], Any] | None = None) -> Leaderboard:
    """The leaderboard of the runs under `runs_dir` (with its `cost/` and `tuning/`); `meta` is the
    invocation that produced them ({'command', 'wall_seconds'}); `inspect` as in `read_runs`."""
    stored = read_runs(runs_dir, inspect)
    runs = stored.table
    costs = load_costs(runs_dir)
    tuning = load_tuning(runs_dir)
    table = aggregate(runs, tuning, costs)
    return Leaderboard(quick=quick, header=leaderboard_header(runs, meta, quick, runs_dir), runs=runs, table=table,
                       rows=rounded(table), effects=detectable_effects(table), shapes=inference_table(costs),
                       ratios=speedups(costs), curves=compression_curves(table), runs_dir=Path(runs_dir),
                       compute=compute_table(runs, tuning), cross=tuple(cross_dataset(table, runs)),
                       records=stored.records, inspected=stored.inspected)


def leaderboard_header(runs: pd.DataFrame, meta: dict[str, Any], quick: bool,
                       runs_dir: str | Path | None = None) -> dict[str, Any]:
    """The facts above the tables: the command and its wall time, the compute summed over runs, the
    newest run's date, the run counts, each environment field's values over the runs, and each
    pairing's teacher settings and how they were chosen (`teachers.teacher_choices`)."""
    def values(column: str) -> str:
        found = sorted({str(v) for v in runs[column].dropna()})
        return ", ".join(found) if found else "unknown"

    created = sorted(str(v) for v in runs["created"].dropna())
    return {
        "quick": quick,
        "command": meta.get("command"),
        "wall_seconds": meta.get("wall_seconds"),
        "compute_seconds": sig(float(runs["wall_seconds"].astype(float).sum())) if len(runs) else 0.0,
        "date": created[-1] if created else None,
        "n_runs": int(len(runs)),
        "n_failed": int((runs["status"] != "ok").sum()),
        "environment": {key: values(f"env_{key}") for key in ENVIRONMENT if key != "allocator"},  # counted below
        "allocators": {str(k): int(n) for k, n in runs["env_allocator"].value_counts().sort_index().items()},
        "teachers": teacher_choices(runs, runs_dir),
    }


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """Floats at 6 significant digits (`values.sig`), counts as nullable integers."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [sig(v) for v in out[column]]
    for column in INTEGER_COLUMNS:
        out[column] = pd.array([None if v is None or pd.isna(v) else int(round(v)) for v in out[column]],
                               dtype="Int64")
    return out
