"""The ranking of one table: which students share the lead, and how sure each rank is.

Among a table's ranked students (the rows `aggregation._ranked` numbered: scratch included; the
teacher row excluded, it is another model, and the compression rows, another deployed format), on the
per-user primary metric paired by seed and user id (`kdbench.report.stats`):

- `top_group`: the leader (the table's best-ranked student) tested against every other student with
  the seed-bounded crossed-model test, Holm-adjusted over those m - 1 comparisons
  (`p_value_vs_leader`, `p_value_vs_leader_holm`); a student is in the top group unless it is
  significantly (alpha 0.05) below the leader. A confidence set for the best student: the truly
  best one is left out with probability at most about 5%.
- `rank_low`, `rank_high`: the 95% two-level bootstrap interval (seeds, then users, the same draws
  for every student) of the student's rank among the table's students; descriptive (with 3-5 seeds
  it under-covers), the top group decides.

Students whose runs lack per-user values (records from before per-user results) take no part:
their columns are missing, and the others are ranked without them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from kdbench.report import stats

RANK_COLUMNS = ("rank_low", "rank_high", "top_group", "p_value_vs_leader", "p_value_vs_leader_holm")
TOP_ALPHA = 0.05
TOP_GROUP_MARK = "★"  # the Markdown's "top group" cell of a student in its table's top group


def ranking_columns(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`table` (one table's rows, best first, with `strategy` and `rank`) with `RANK_COLUMNS` added,
    from `runs` (that table's ok runs, with `strategy`, `seed` and `per_user`)."""
    out = table.copy()
    for column in RANK_COLUMNS:
        out[column] = math.nan
    out["top_group"] = pd.array([pd.NA] * len(out), dtype="boolean")
    per_user = _per_user(out, runs)
    if not per_user:
        return out
    leader = next(name for name in out["strategy"] if name in per_user)
    group = stats.top_group(per_user, alpha=TOP_ALPHA, leader=leader)
    ranks = stats.rank_intervals(per_user)
    position = {name: index for index, name in enumerate(group.names)}
    for index, name in zip(out.index, out["strategy"]):
        if name not in per_user:
            continue
        i = position[name]
        out.loc[index, ["p_value_vs_leader", "p_value_vs_leader_holm"]] = [group.p_value[i], group.p_holm[i]]
        out.loc[index, ["rank_low", "rank_high"]] = [ranks.loc[name, "rank_low"], ranks.loc[name, "rank_high"]]
        out.loc[index, "top_group"] = bool(group.in_top[i])
    return out


def _per_user(table: pd.DataFrame, runs: pd.DataFrame) -> dict[str, dict[Any, pd.Series]]:
    """Each ranked student's {seed: per-user values}, in table order, for students whose every ok
    run has them."""
    found: dict[str, dict[Any, pd.Series]] = {}
    for name, rank in zip(table["strategy"], table["rank"]):
        mine = runs[runs["strategy"] == name]
        if pd.isna(rank) or mine.empty or any(values is None for values in mine["per_user"]):
            continue
        found[name] = dict(zip(mine["seed"], mine["per_user"]))
    return found


RANKING_HEADERS = ("rank [95% CI]", "top group")  # the Markdown quality table's two columns


def ranking_cells(row: dict[str, Any]) -> list[str]:
    """A row's 'rank [95% CI]' ('2 [1–4]'; '' for the teacher) and 'top group' (★, else empty) cells."""
    rank, low, high = row.get("rank"), row.get("rank_low"), row.get("rank_high")
    if not _present(rank):
        text = ""
    elif _present(low) and _present(high):
        text = f"{int(rank)} [{int(low)}–{int(high)}]"
    else:
        text = str(int(rank))
    top = row.get("top_group")
    return [text, TOP_GROUP_MARK if _present(top) and bool(top) else ""]


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value))
