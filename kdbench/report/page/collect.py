"""What the page embeds: the leaderboard's rows (as `leaderboard.json` holds them) joined with the
stored runs behind each row and, for tuned rows, their tuning study.

A row's runs are those `report` aggregated into it: the teacher row of a table takes the pairing's
teacher runs, any other row the runs of its dataset, pairing, variant and strategy label. Run
fields are copied, floats rounded to 6 significant digits (as the leaderboard files), without the
per-user lists and validation curves (megabytes the page does not show). Run settings (`config`)
and environments repeat across seeds and rows, so each distinct one is stored once and referred to
by index. Every path is relative to the results folder, which holds the page; the rerun command
names the results folder by its own name, as run from the folder that holds it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from kdbench.report.page.studies import load_studies, study_key
from kdbench.run.record import DEFAULTS, TEACHER, TUNED, RunRecord, RunStore, dataset_label, record_protocol

# a fingerprint of the strategy's source: says nothing to a reader, and `verify` reports a run whose
# fingerprint is not the current code's as stale (a warning), which must not also change the page
_UNSHOWN_CONFIG = ("strategy_code",)
_TRAINING = ("best_epoch", "best_valid", "epochs_run", "hit_epoch_cap", "kd_prepare_seconds",
             "seconds_per_epoch", "train_seconds", "eval_seconds")


def page_data(rows: list[dict[str, Any]], columns: list[str], header: dict[str, Any],
              runs_dir: str | Path, records: Iterable[tuple[Path, RunRecord]] | None = None) -> dict[str, Any]:
    """The page's JSON: `columns`, `rows` (lists in column order), `extra` (per row: key, runs,
    backbones, tuning study, CSV line), `runs`, `configs`, `environments`, `studies`, `header`, and
    `results_folder` (the results folder's name, for the rerun commands). `records`: the stored
    runs as (file, record) in file order, where the caller has read them (`Leaderboard.records`);
    else they are read from `runs_dir`."""
    root = Path(runs_dir)
    store = RunStore(root)
    interned: dict[str, dict[str, int]] = {"configs": {}, "environments": {}}
    runs, by_key = [], {}
    stored = records if records is not None else ((path, store.load(path)) for path in store.files())
    for path, record in stored:
        by_key.setdefault(_run_key(record), []).append(len(runs))
        runs.append(_run_entry(record, path.relative_to(root).as_posix(), interned))
    studies = load_studies(root)
    extra = []
    for row in rows:
        teacher = row.get("family") == TEACHER
        key = ((row["dataset"], row["pairing"], TEACHER) if teacher
               else (row["dataset"], row["pairing"], row.get("variant") or DEFAULTS, row["strategy"]))
        study = study_key(row["dataset"], row["pairing"], str(row.get("method")))
        extra.append({
            "key": "|".join((row["dataset"], row["pairing"], row.get("variant") or DEFAULTS, row["strategy"])),
            "runs": by_key.get(key, []),
            "backbones": _backbones(row),
            "study": study if row.get("variant") == TUNED and study in studies else None,
            "csv": _csv_line([row.get(c) for c in columns]),
        })
    return {
        "header": _clean(header), "columns": list(columns), "csv_header": _csv_line(list(columns)),
        "results_folder": root.resolve().name,
        "rows": [[row.get(c) for c in columns] for row in rows], "extra": extra, "runs": runs,
        "configs": [json.loads(text) for text in interned["configs"]],
        "environments": [json.loads(text) for text in interned["environments"]],
        "studies": _clean(studies),
    }


def _run_key(record: dict[str, Any]) -> tuple[str, ...]:
    dataset = dataset_label(record["dataset"], record_protocol(record))
    if record.get("strategy") == TEACHER:
        return (dataset, record["pairing"], TEACHER)
    return (dataset, record["pairing"], record.get("variant") or DEFAULTS, record.get("label") or record["strategy"])


def _run_entry(record: dict[str, Any], relative: str, interned: dict[str, dict[str, int]]) -> dict[str, Any]:
    """One run as the detail view shows it (paths relative to the results folder)."""
    error = record.get("error")
    return _clean({
        "path": relative,  # the page links it (and its .log) and names it in the rerun command
        "seed": record.get("seed"), "status": record.get("status"),
        "error": error.splitlines()[0][:300] if isinstance(error, str) and error else None,
        "created": record.get("created"), "wall_seconds": record.get("wall_seconds"),
        "test": record.get("test"), "valid_ndcg@10": record.get("valid_ndcg@10"),
        "training": {k: v for k, v in (record.get("training") or {}).items() if k in _TRAINING},
        "cost": record.get("cost"), "teacher_trained_further": bool(record.get("teacher_trained_further", False)),
        "config": _intern(interned["configs"], {k: v for k, v in (record.get("config") or {}).items()
                                                 if k not in _UNSHOWN_CONFIG}),
        "env": _intern(interned["environments"], record.get("environment") or {}),
    })


def _intern(table: dict[str, int], value: dict[str, Any]) -> int:
    text = json.dumps(_clean(value), sort_keys=True)
    return table.setdefault(text, len(table))


def _backbones(row: dict[str, Any]) -> list[str]:
    """The backbone family (general / sequential) and the teacher's and student's model names."""
    from kdbench.families import family_of

    models = [str(row.get(side) or "").split(":")[0] for side in ("teacher", "student")]
    return [family_of(models[0]).name, *dict.fromkeys(m for m in models if m)]


def _csv_line(values: list[Any]) -> str:
    """A row as `leaderboard.csv` writes it (pandas: empty for missing, minimal quoting)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in values])
    return out.getvalue()


def _clean(value: Any) -> Any:
    """Floats to 6 significant digits (NaN and inf to None), dicts with sorted keys, recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return str(value)
