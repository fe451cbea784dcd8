"""The leaderboard as data: `leaderboard.csv` (the rows) and `leaderboard.json` (the header, the rows
and every other table), every float at 6 significant digits.

`leaderboard_payload` is the one structure behind the JSON file; a renderer that needs the same rows
(a web page) takes it from there rather than re-deriving them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kdbench.store import atomic
from kdbench.report.leaderboard import Leaderboard
from kdbench.report.schema import COLUMNS
from kdbench.report.values import sig


def json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready mappings: missing and non-finite values None, floats rounded."""
    rows = []
    for record in table.to_dict(orient="records"):
        rows.append({k: (None if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v))
                         else sig(v)) for k, v in record.items()})
    return rows


def leaderboard_payload(board: Leaderboard) -> dict[str, Any]:
    """What `leaderboard.json` holds: `header`, `columns` (`schema.COLUMNS`), `rows` (one mapping
    per leaderboard row, in page order), `detectable_effects`, `inference_cost`, `speedups` and
    `compression`, each a list of row mappings; `compute` (`report.compute`) and `cross_dataset`
    (`report.cross_dataset`: per family its datasets, sentences, per-table rows and summary)."""
    return {"header": board.header, "columns": list(COLUMNS), "rows": json_rows(board.rows),
            "detectable_effects": json_rows(board.effects), "inference_cost": json_rows(board.shapes),
            "speedups": json_rows(board.ratios), "compression": json_rows(board.curves),
            "compute": json_rows(board.compute) if board.compute is not None else [],
            "cross_dataset": [{"family": answer.family, "datasets": answer.datasets, "sentences": answer.sentences,
                               "tables": json_rows(answer.tables), "summary": json_rows(answer.summary)}
                              for answer in board.cross]}


def render_json(board: Leaderboard) -> str:
    return atomic.dumps(leaderboard_payload(board))


def render_csv(board: Leaderboard) -> str:
    return board.rows.to_csv(index=False, lineterminator="\n")
