"""What a tuning study's storage file holds, read without Optuna and without writing: checked before
any study is opened, so a foreign, damaged or other study's file stops `tune` before anything trains
or is created (Optuna would silently add a second study to a file holding another one)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.store.reading import DamagedFile

SQLITE_HEADER = b"SQLite format 3\x00"
FORCE_ADVICE = "pass --force to start it again"


def stored_studies(path: Path) -> dict[str, Any]:
    """{study name: its stored `identity` user attribute (None if absent)}, read-only; {} where a
    read-only look is not possible (a killed run's journal to roll back, a writer holding a lock)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DamagedFile(path, f"cannot be read ({exc.strerror or exc})", FORCE_ADVICE) from None
    if header != SQLITE_HEADER:
        raise DamagedFile(path, "not an SQLite database (truncated or replaced?)", FORCE_ADVICE)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = dict(connection.execute("SELECT study_id, study_name FROM studies"))
            attrs = connection.execute("SELECT study_id, value_json FROM study_user_attributes WHERE key = 'identity'")
            identities = {names.get(study_id): json.loads(value) for study_id, value in attrs}
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "readonly" in str(exc) or "locked" in str(exc):
            return {}  # a hot journal of a killed run, or a writer now: Optuna recovers or waits, then opens it
        raise DamagedFile(path, f"not a readable Optuna study (OperationalError: {str(exc)[:120]})",
                          FORCE_ADVICE) from None
    except (sqlite3.Error, ValueError) as exc:
        raise DamagedFile(path, f"not a readable Optuna study ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''})", FORCE_ADVICE) from None
    return {name: identities.get(name) for name in names.values()}


def check_storage(path: Path, study_name: str) -> None:
    """Refuse a storage holding another study than `study_name`, or whose identity is not a mapping."""
    studies = stored_studies(path)
    others = [name for name in studies if name != study_name]
    if others:
        raise KdbenchError(f"{path} holds the study '{others[0]}', not '{study_name}': "
                           "move it away or pass --force to start this study there")
    identity = studies.get(study_name)
    if identity is not None and not isinstance(identity, dict):
        raise KdbenchError(f"study '{study_name}' in {path} was made with other settings (identity stored as "
                           f"{type(identity).__name__}, not a mapping); {FORCE_ADVICE}")
