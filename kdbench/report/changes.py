"""One leaderboard against an earlier one (e.g. before and after a regeneration): per table, each
strategy's mean NDCG@10, rank and top-group membership in both, and which rows moved.

A row moved when Welch's t-test on the two sets of seed results (`scipy.stats.ttest_ind_from_stats`
from each row's mean, standard deviation and seed count) gives p < `MOVE_ALPHA`, or when it entered or
left its table's top group. The test is descriptive: the two leaderboards' seeds are not paired (their
teachers and tuned hyperparameters differ), and no correction is made for the number of rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from kdbench.store import atomic
from kdbench.errors import KdbenchError
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.report.formatting import fmt, mean_std
from kdbench.report.values import finite

TABLE_KEYS = ["dataset", "pairing", "variant"]
ROW_KEYS = [*TABLE_KEYS, "strategy"]
NEEDED = [*ROW_KEYS, f"{PRIMARY_METRIC}_mean", f"{PRIMARY_METRIC}_std", "n_seeds"]
OPTIONAL = ["rank", "top_group"]
MOVE_ALPHA = 0.05
CHANGES_NAME = "leaderboard{suffix}-changes.md"


def read_leaderboard_csv(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV's rows (`KdbenchError` naming the file if it is missing or not one)."""
    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"no leaderboard CSV at '{path}' (e.g. `git show REV:results/leaderboard.csv > {path}`)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KdbenchError(f"'{path}' is not a leaderboard CSV: {str(exc).splitlines()[0]}") from None
    missing = [column for column in NEEDED if column not in table.columns]
    if missing:
        raise KdbenchError(f"'{path}' is not a leaderboard CSV: no column {', '.join(repr(c) for c in missing)}")
    for column in OPTIONAL:
        if column not in table.columns:
            table[column] = np.nan
    return table


def leaderboard_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, strategy) in either leaderboard: both means, stds, seed counts, ranks and
    top-group flags (`_before` / `_after`), the relative change in % and Welch's p, and `status`:
    'up', 'down' (moved, see the module docstring), 'same', 'new' or 'gone'."""
    metric_mean, metric_std = f"{PRIMARY_METRIC}_mean", f"{PRIMARY_METRIC}_std"
    columns = [*ROW_KEYS, metric_mean, metric_std, "n_seeds", *OPTIONAL]
    merged = before[columns].merge(after[columns], on=ROW_KEYS, how="outer", suffixes=("_before", "_after"),
                                   sort=False)
    merged = merged.rename(columns={f"{metric_mean}_before": "mean_before", f"{metric_mean}_after": "mean_after",
                                    f"{metric_std}_before": "std_before", f"{metric_std}_after": "std_after"})
    merged["change_pct"] = 100 * (merged["mean_after"] / merged["mean_before"] - 1)
    merged["p_value"] = [_welch(row) for row in merged.itertuples(index=False)]
    merged["status"] = [_status(row) for row in merged.itertuples(index=False)]
    return merged


def _welch(row) -> float:
    values = (row.mean_before, row.std_before, row.n_seeds_before, row.mean_after, row.std_after, row.n_seeds_after)
    if not all(finite(v) for v in values) or min(row.n_seeds_before, row.n_seeds_after) < 2:
        return float("nan")
    if row.std_before == 0 and row.std_after == 0:
        return 1.0 if row.mean_before == row.mean_after else 0.0
    return float(stats.ttest_ind_from_stats(row.mean_before, row.std_before, row.n_seeds_before,
                                            row.mean_after, row.std_after, row.n_seeds_after, equal_var=False).pvalue)


def _top(flag) -> bool:
    return bool(flag) if finite(flag) else False


def _status(row) -> str:
    if not finite(row.mean_before):
        return "new"
    if not finite(row.mean_after):
        return "gone"
    group_changed = finite(row.top_group_before) and finite(row.top_group_after) and \
        _top(row.top_group_before) != _top(row.top_group_after)
    if (finite(row.p_value) and row.p_value < MOVE_ALPHA) or group_changed:
        return "up" if row.mean_after > row.mean_before else "down"
    return "same"


def changes_markdown(changes: pd.DataFrame, before_label: str, after_label: str) -> str:
    """A Markdown page: per table (dataset, pairing, variant), its rows before and after, best first."""
    lines = ["# Leaderboard changes", "",
             f"Before: `{before_label}`; after: `{after_label}`. {PRIMARY_METRIC.upper()} mean ± std over seeds "
             f"(n seeds); rank: the leaderboard's own (1 = best mean, among the table's rows at that time); "
             f"top: in the table's top group (not significantly worse than its leader). Status: up / down when "
             f"Welch's t-test on the seed results gives p < {MOVE_ALPHA} or the row entered or left the top group "
             f"(descriptive: unpaired seeds, no correction for the number of rows); new / gone: in one "
             f"leaderboard only.", ""]
    for keys, table in changes.groupby(TABLE_KEYS, sort=False):
        table = table.sort_values(["mean_after", "mean_before"], ascending=False, na_position="last")
        counts = table["status"].value_counts()
        summary = ", ".join(f"{counts[s]} {s}" for s in ("up", "down", "same", "new", "gone") if s in counts)
        lines += [f"## {' · '.join(str(k) for k in keys)}", "", summary, "", _table(table), ""]
    return "\n".join(lines)


def _table(table: pd.DataFrame) -> str:
    rows = []
    for row in table.itertuples(index=False):
        rows.append([row.strategy,
                     _cell(row.mean_before, row.std_before, row.n_seeds_before),
                     _cell(row.mean_after, row.std_after, row.n_seeds_after),
                     fmt(row.change_pct, "{:+.1f}%"), fmt(row.p_value, "{:.3g}"),
                     f"{fmt(row.rank_before, '{:g}')} → {fmt(row.rank_after, '{:g}')}",
                     f"{_yes(row.top_group_before)} → {_yes(row.top_group_after)}", row.status])
    return tabulate(rows, headers=["strategy", "before", "after", "change", "Welch p", "rank", "top", "status"],
                    tablefmt="github", disable_numparse=True)


def _cell(mean, std, n) -> str:
    return f"{mean_std(mean, std)} ({n:g})" if finite(mean) else "—"


def _yes(flag) -> str:
    return ("yes" if _top(flag) else "no") if finite(flag) else "—"


def write_changes(before: pd.DataFrame, before_label: str, after_csv: Path, out: Path) -> Path:
    """Compare `after_csv` (the leaderboard just written) with `before` (read before it was written,
    so that the same path may be given for both) into `out`, atomically."""
    changes = leaderboard_changes(before, read_leaderboard_csv(after_csv))
    atomic.write_text(out, changes_markdown(changes, before_label, str(after_csv)) + "\n")
    return out
