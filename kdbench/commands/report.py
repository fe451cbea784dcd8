"""`report`: the leaderboards and the reproduction table rebuilt from the stored runs, without training."""

from __future__ import annotations

from pathlib import Path

from kdbench.errors import KdbenchError
from kdbench.paths import check_folder
from kdbench.report import write_reports
from kdbench.report.reproduction import write_reproduction_report


def rebuild_reports(results_dir: str | Path, quick: bool = False) -> list[Path]:
    """The leaderboard (the quick one with `quick`, from RESULTS_DIR/quick) and, for the full one, the
    reproduction table: the files written. No runs at all is a `KdbenchError`."""
    root = check_folder(results_dir, "--results-dir")
    runs_dir = root / "quick" if quick else root
    reproductions = [] if quick else write_reproduction_report(root)
    if not (runs_dir / "runs").is_dir() and not reproductions:
        raise KdbenchError(f"no runs under '{runs_dir / 'runs'}': run `python -m kdbench run --all` first")
    outputs = write_reports(runs_dir, root, quick=quick) if (runs_dir / "runs").is_dir() else []
    return [*outputs, *reproductions]
