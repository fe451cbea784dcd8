"""Each pairing's teacher as the leaderboard header states it: its learning rate and weight decay
(from the teacher run's `config.teacher_train`) and how they were chosen: `tuned` when the
pairing's teacher study (`tuning/<dataset>/<pairing>/teacher.json`, `kdbench.tuning.teachers`) chose
exactly these values, else `fixed` (the suite's settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.run.record import TEACHER, safe_name
from kdbench.store.reading import TUNING_SUMMARY_ADVICE, read_mapping

KNOBS = ("learning_rate", "weight_decay")


def teacher_choices(runs: pd.DataFrame, runs_dir: str | Path | None) -> list[dict[str, Any]]:
    """One entry per (dataset, pairing) with a finished teacher run: dataset, pairing, teacher, its
    learning rate and weight decay, `chosen` ('fixed' or 'tuned') and the study's path ('tuned')."""
    out = []
    ok = runs[(runs["status"] == "ok") & (runs["method"] == TEACHER)]
    for (dataset, pairing), found in ok.groupby(["dataset", "pairing"], sort=True):
        first = found.iloc[0]
        entry = {"dataset": dataset, "pairing": pairing, "teacher": first["teacher"],
                 **{knob: _number(first.get(f"teacher_{knob}")) for knob in KNOBS}, "chosen": "fixed", "study": None}
        study = Path("tuning") / safe_name(dataset) / safe_name(pairing) / "teacher.json"
        if runs_dir is not None and (Path(runs_dir) / study).is_file():
            best = read_mapping(Path(runs_dir) / study, TUNING_SUMMARY_ADVICE).get("best_training") or {}
            if all(knob in best and best[knob] == entry[knob] for knob in KNOBS):
                entry |= {"chosen": "tuned", "study": study.as_posix()}
        out.append(entry)
    return out


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def teacher_line(entry: dict[str, Any] | None) -> str:
    """'Teacher BPR:64: learning rate 0.001, weight decay 0; fixed by the suite.' (or tuned, with its study)."""
    if entry is None:
        return "Teacher: no finished teacher run, so its settings are not known."
    knobs = ", ".join(f"{knob.replace('_', ' ')} {entry[knob]:.3g}" if entry[knob] is not None
                      else f"{knob.replace('_', ' ')} not recorded" for knob in KNOBS)
    how = (f"tuned on validation NDCG@10 by its own study (`{entry['study']}`)" if entry["chosen"] == "tuned"
           else "fixed by the suite (not tuned)")
    return f"Teacher {entry['teacher']}: {knobs}; {how}."
