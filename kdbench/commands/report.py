"""`report`: the leaderboards and the reproduction table rebuilt from the stored runs, without training."""

from __future__ import annotations

from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.store.paths import check_folder
from kdbench.report import write_reports
from kdbench.report.changes import CHANGES_NAME, read_leaderboard_csv, write_changes
from kdbench.report.reproduction import write_reproduction_report


def rebuild_reports(results_dir: str | Path, quick: bool = False,
                    changes_from: str | Path | None = None) -> list[Path]:
    """The leaderboard (the quick one with `quick`, from RESULTS_DIR/quick) and, for the full one, the
    reproduction table: the files written. With `changes_from` (an earlier leaderboard CSV), also the
    page of what moved between it and the new one (`report.changes`). No runs at all is a `KdbenchError`."""
    root = check_folder(results_dir, "--results-dir")
    before = read_leaderboard_csv(changes_from) if changes_from is not None else None  # read (or refused) first
    runs_dir = root / "quick" if quick else root
    reproductions = [] if quick else write_reproduction_report(root)
    if not (runs_dir / "runs").is_dir() and not reproductions:
        raise KdbenchError(f"no runs under '{runs_dir / 'runs'}': run `python -m kdbench run --all` first")
    outputs = write_reports(runs_dir, root, quick=quick) if (runs_dir / "runs").is_dir() else []
    if before is not None and outputs:
        suffix = "-quick" if quick else ""
        outputs.append(write_changes(before, str(changes_from), root / f"leaderboard{suffix}.csv",
                                     root / CHANGES_NAME.format(suffix=suffix)))
    return [*outputs, *reproductions]
