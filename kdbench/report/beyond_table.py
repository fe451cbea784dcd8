"""The leaderboard's beyond-accuracy table: under each quality table, the teacher (the reference),
scratch and every strategy's ItemCoverage@10, AveragePopularity@10, TailPercentage@10 and
GiniIndex@10 on the test users' top 10 (`kdbench.evaluation.beyond`; the `*@10_mean` columns of
`report.aggregation`). Does the student inherit its teacher's popularity bias, and which methods
(UnKD by design) reduce it? Shown only for tables where some run records the metrics.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from kdbench.evaluation.beyond import BEYOND_K, BEYOND_METRICS, TAIL_RATIO
from kdbench.run.record import SCRATCH, TEACHER
from kdbench.report.formatting import fmt, pct
from kdbench.report.values import finite

COVERAGE, POPULARITY, TAIL, GINI = (f"{metric}_mean" for metric in BEYOND_METRICS)
BEYOND_HEADERS = ["strategy", f"ItemCoverage@{BEYOND_K}", f"AveragePopularity@{BEYOND_K}", "popularity vs teacher",
                  f"TailPercentage@{BEYOND_K}", f"GiniIndex@{BEYOND_K}"]

BEYOND_LEGEND = f"""- Beyond accuracy (below a quality table, when its runs record it): RecBole's metrics of the test
  users' top {BEYOND_K}, mean over seeds; the teacher's row is the reference. ItemCoverage: share of the
  catalogue recommended to at least one test user. AveragePopularity: mean training interactions of a
  recommended item; "popularity vs teacher": its change against the teacher's, in %, so a positive value means
  the student recommends more popular items than its teacher (amplified popularity bias). TailPercentage:
  share of recommended items in the long tail, the least popular {TAIL_RATIO:.0%} of the items with
  training interactions (by training interactions, ties by item id). GiniIndex: inequality of how
  often items are recommended (0: every item equally, 1: always the same items). UnKD is designed to
  reduce the popularity bias a student inherits. "—": runs made before these metrics were recorded.
"""


def has_beyond(table: pd.DataFrame) -> bool:
    """Whether any row holds a beyond-accuracy value (runs since issue 27)."""
    return any(column in table and pd.to_numeric(table[column], errors="coerce").notna().any()
               for column in (COVERAGE, POPULARITY, TAIL, GINI))


def beyond_lines(group: pd.DataFrame) -> list[str]:
    """One table's beyond-accuracy block: the teacher first, scratch, then the strategies in the
    quality table's order; [] when no row holds the metrics."""
    if not has_beyond(group):
        return []
    records = group.to_dict(orient="records")
    order = ([r for r in records if r["family"] == TEACHER] + [r for r in records if r.get("method") == SCRATCH]
             + [r for r in records if r["family"] != TEACHER and r.get("method") != SCRATCH])
    teachers = [r.get(POPULARITY) for r in order if r["family"] == TEACHER]
    reference = teachers[0] if teachers else math.nan
    rows = [_row(record, reference) for record in order]
    return [f"Beyond accuracy (test users' top {BEYOND_K}; tail: the least popular {TAIL_RATIO:.0%} of items):", "",
            tabulate(rows, headers=BEYOND_HEADERS, tablefmt="github", disable_numparse=True), ""]


def _row(record: dict[str, Any], reference: Any) -> list[str]:
    name = f"**teacher ({record['model']})**" if record["family"] == TEACHER else (
        f"**{record['strategy']}**" if record.get("method") == SCRATCH else record["strategy"])
    popularity = record.get(POPULARITY)
    change = ((popularity - reference) / reference * 100
              if record["family"] != TEACHER and finite(popularity) and finite(reference) and reference else math.nan)
    return [name, pct(_times_100(record.get(COVERAGE))), fmt(popularity, "{:.1f}"), pct(change, signed=True),
            pct(_times_100(record.get(TAIL))), fmt(record.get(GINI), "{:.3f}")]


def _times_100(value: Any) -> float:
    return float(value) * 100 if finite(value) else math.nan
