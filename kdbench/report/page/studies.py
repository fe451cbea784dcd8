"""The tuning studies behind tuned rows, for the page's detail view: each study's summary
(`tuning/<dataset>/<pairing>/<strategy>.json`) and its trials, read from the Optuna SQLite storage.

The storage is opened read-only and immutable through the standard library's `sqlite3` (no file
is touched, no lock taken), and read through the five tables of Optuna's RDB schema that hold a
trial: `studies`, `trials`, `trial_values`, `trial_params`, `trial_user_attributes`. Importing Optuna
and opening each study through it costs seconds per report for the same rows. A parameter's
stored value is Optuna's internal one: an index into the choices for a categorical distribution,
a float otherwise (an integer one is turned back into an int). A storage that is missing or not
readable this way gives no trials (the summary still shows), never an error: the page reports
what is stored.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kdbench.store.reading import TUNING_SUMMARY_ADVICE, read_mapping

_SUMMARY_KEYS = ("budget", "trials_counted", "trials_complete", "trials_pruned", "trials_failed",
                 "trials_interrupted", "best_trial", "best_valid_ndcg@10", "best_hparams", "best_training",
                 "compute_seconds", "finished", "tuning", "storage", "study")


def study_key(dataset: str, pairing: str, strategy: str) -> str:
    return f"{dataset}|{pairing}|{strategy}"


def load_studies(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every study under `results_dir/tuning/`, by `study_key`: its summary, search space and trials."""
    root = Path(results_dir) / "tuning"
    studies = {}
    for path in sorted(root.glob("*/*/*.json")) if root.is_dir() else []:
        summary = read_mapping(path, TUNING_SUMMARY_ADVICE)
        if not all(isinstance(summary.get(k), str) for k in ("dataset", "pairing", "strategy")):
            continue  # not a study summary
        entry = {k: summary[k] for k in _SUMMARY_KEYS if k in summary}
        entry["space"] = (summary.get("identity") or {}).get("space")
        entry["file"] = path.relative_to(Path(results_dir)).as_posix()
        storage = path.parent / str(summary.get("storage") or "")
        entry["trials"] = read_trials(storage, str(summary.get("study"))) if storage.is_file() else []
        studies[study_key(summary["dataset"], summary["pairing"], summary["strategy"])] = entry
    return studies


def read_trials(storage: Path, study_name: str) -> list[dict[str, Any]]:
    """A study's trials in trial order: number, state, objective value, parameters, interrupted."""
    uri = f"file:{quote(str(storage.resolve()))}?mode=ro&immutable=1"
    try:
        with sqlite3.connect(uri, uri=True) as db:
            found = db.execute("SELECT study_id FROM studies WHERE study_name = ?", (study_name,)).fetchone()
            if found is None:
                return []
            trials = db.execute("SELECT trial_id, number, state FROM trials WHERE study_id = ? ORDER BY number",
                                (found[0],)).fetchall()
            ids = [t[0] for t in trials]
            marks = ",".join("?" * len(ids))
            values = dict(db.execute(f"SELECT trial_id, value FROM trial_values WHERE objective = 0 "
                                     f"AND trial_id IN ({marks})", ids).fetchall()) if ids else {}
            params: dict[int, dict[str, Any]] = {}
            for trial_id, name, value, distribution in db.execute(
                    f"SELECT trial_id, param_name, param_value, distribution_json FROM trial_params "
                    f"WHERE trial_id IN ({marks}) ORDER BY param_name", ids).fetchall() if ids else []:
                params.setdefault(trial_id, {})[name] = _external(value, distribution)
            interrupted = {row[0] for row in db.execute(
                f"SELECT trial_id FROM trial_user_attributes WHERE key = 'interrupted' AND value_json = 'true' "
                f"AND trial_id IN ({marks})", ids).fetchall()} if ids else set()
    except sqlite3.Error:
        return []
    return [{"number": number, "state": state, "value": values.get(trial_id), "params": params.get(trial_id, {}),
             "interrupted": trial_id in interrupted} for trial_id, number, state in trials]


def _external(value: float | None, distribution: str) -> Any:
    """Optuna's stored (internal) parameter value as the trial saw it."""
    try:
        spec = json.loads(distribution)
    except (TypeError, ValueError):
        return value
    name, attributes = spec.get("name", ""), spec.get("attributes") or {}
    if value is None:
        return None
    if name.startswith("Categorical") and isinstance(attributes.get("choices"), list):
        choices = attributes["choices"]
        index = int(value)
        return choices[index] if 0 <= index < len(choices) else value
    if name.startswith("Int"):
        return int(round(value))
    return value
