"""Reading back what kdbench stored (run records, tuning summaries, leaderboard metadata).

Files under results/ can be truncated by a full disk, cut by a copy, or edited by hand. A damaged
one becomes a single `DamagedFile` error naming the file and what is wrong with it, never a
traceback from deep inside `report` or a resumed suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError


TUNING_SUMMARY_ADVICE = "restore it, or run `python -m kdbench tune` again to rewrite it from its study"


class DamagedFile(KdbenchError):
    """A stored file that cannot be read back as what it should hold."""

    def __init__(self, path: str | Path, problem: str, advice: str = ""):
        self.path = Path(path)
        self.problem = problem
        self.advice = advice
        super().__init__(f"damaged file {path}: {problem}" + (f"; {advice}" if advice else ""))

    def __reduce__(self):  # raised in a reading process (`report.load.read_runs`), re-raised here whole
        return type(self), (self.path, self.problem, self.advice)


def read_json(path: str | Path, advice: str = "") -> Any:
    """The JSON value in `path`; `DamagedFile` if it is unreadable, not UTF-8 text or not JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DamagedFile(path, f"cannot be read ({exc.strerror or exc})", advice) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedFile(path, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})", advice) from None
    if not text or text.isspace():  # not `strip()`: that copies megabytes of record to test for emptiness
        raise DamagedFile(path, "empty", advice)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; truncated?" if not text.rstrip().endswith(("}", "]")) else ""
        raise DamagedFile(path, f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}{hint})",
                          advice) from None


def read_mapping(path: str | Path, advice: str = "") -> dict[str, Any]:
    """`read_json` for files that hold one JSON object."""
    value = read_json(path, advice)
    if not isinstance(value, dict):
        raise DamagedFile(path, f"expected a JSON object, found {type(value).__name__}", advice)
    return value
