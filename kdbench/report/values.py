"""Small value rules the report's modules share: finite numbers, safe ratios, first present values,
the order of backbone specs, and which models are sequential."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.families import family_of
from kdbench.strategies.base import COMPRESSION


def is_compression(family: Any) -> bool:
    """Whether a row's family has a compression part (`svd`, `prune`, `quant`, and `kd+ptq`, which
    distils, then quantises): another deployed format than the distilled students', so a table shows
    it beside them as a reference row and ranks and tests the students without it."""
    return COMPRESSION in str(family).split("+")


def finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is missing, infinite or zero."""
    if denominator is None or not np.isfinite(denominator) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


def first_valid(*values: float) -> float:
    return next((v for v in values if v is not None and np.isfinite(v)), math.nan)


def first_text(*series: pd.Series) -> Any:
    for values in series:
        values = values.dropna()
        if len(values):
            return values.iloc[0]
    return None


def spec_key(text: Any) -> tuple:
    """`BPR:20` sorts as ('BPR', 20), so sizes come in numeric order (2, 5, 10, 20)."""
    model, _, dim = str(text).rpartition(":")
    return (model, int(dim), "") if dim.isdigit() else (str(text), 0, str(text))


def is_sequential(model: Any) -> bool:
    """A `MODEL:DIM[:OPTIONS]` spec of a backbone whose family `kdbench cost` does not measure on
    synthetic catalogues (the sequential one: its cost comes from its own runs, and its tables
    follow the general ones)."""
    if not isinstance(model, str):
        return False
    try:
        return not family_of(model.split(":")[0]).catalogue_cost
    except KdbenchError:  # a model this code no longer knows: shown with the general tables
        return False


def sig(value: Any, digits: int = 6) -> Any:
    """Round a float to `digits` significant digits (NaN/inf become None); other values pass."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.{digits}g}") if np.isfinite(value) else None
    return value


def frame_from_json(rows: list[dict[str, Any]], columns: list[str], text: tuple[str, ...]) -> pd.DataFrame:
    """A table as `leaderboard.json` holds it (`exports.json_rows`: missing numbers null) back as a
    frame of `columns`, every column not in `text` as numbers (NaN where null)."""
    table = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column not in text:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table
