"""`python -m kdbench verify`: a results folder is what the current code stands behind.

- every stored run file (`runs/`, `quick/runs/`, `sweep/runs/`, `reproduction/*/runs/`,
  `data_share/share-*/runs/`), tuning summary and inference-cost file (`cost/`, `quick/cost/`)
  parses and has its structure
  (`record.check_record`, `inference_cost.check_cost`); a damaged one is an error. Cells of the
  suite that have not run yet (a new size sweep, say) are not errors: verify checks what is stored,
  and `report` shows it;
- every run's identity (`config`) equals what the current code gives its cell, or the run is
  flagged stale (made by other strategy code or settings, or by an older writer without a section
  every run now records: `record.missing_sections`; `strict` makes that an error);
- no run record holds an absolute folder (`locations.absolute_fields`: a record names its data by
  catalogue name and fingerprint): each is a warning (`strict` makes it an error), with the command
  that drops those it can (`verify --drop-locations`, `locations.drop_locations`);
- each leaderboard's Markdown, CSV and JSON, and `reproduction.md` / `.csv`, are byte for byte what
  `report` writes from these runs now (the Pareto and compression PNGs are left out: their bytes
  depend on the matplotlib build).

A leaderboard's run files are read once: checked as its rebuild reads them (a real catalogue's
record holds megabytes of per-user JSON, and parsing them three times was most of `verify`'s time),
by worker processes above `report.load.PARALLEL_READ_BYTES` (each checks the records it reads,
`_run_findings`); the rebuilt texts are compared in memory, nothing is written. The reproduction's
few runs are read by the check and again by its report.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.run.cells import cell_from_record
from kdbench.report.data_share import DATA_SHARE_FOLDER
from kdbench.errors import KdbenchError
from kdbench.families.base import known_models
from kdbench.run.locations import absolute_fields, droppable
from kdbench.report import load_costs
from kdbench.report.leaderboard import build_leaderboard
from kdbench.report.write import leaderboard_texts, stored_invocation, text_paths
from kdbench.report.reproduction import REPORT_NAME, write_reproduction_report
from kdbench.run.record import RunRecord, RunStore, missing_sections, stale_fields, without_per_user
from kdbench.store.reading import DamagedFile
from kdbench.strategies.base import STRATEGIES, strategy_code
from kdbench.tuning import read_summary

RUN_ROOTS = ("", "quick", "sweep")  # folders under the results folder that may hold runs/


@dataclass
class Verification:
    runs: int = 0
    errors: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)  # 'path: field holds an absolute folder ...'

    def absorb(self, other: "Verification") -> None:
        """Add another check's runs and findings to these."""
        self.runs += other.runs
        for name in ("errors", "stale", "notes", "locations"):
            getattr(self, name).extend(getattr(other, name))


def run_roots(results_dir: str | Path) -> list[Path]:
    """Every folder under the results folder that may hold `runs/` (`RUN_ROOTS`, the reproductions)."""
    results_dir = Path(results_dir)
    reproductions = sorted(p.parent for p in (results_dir / "reproduction").glob("*/paper.json"))
    shares = sorted((results_dir / DATA_SHARE_FOLDER).glob("share-*"))  # `sweep-data`'s runs, one folder a share
    return [results_dir / sub for sub in RUN_ROOTS] + reproductions + shares


def verify(results_dir: str | Path) -> Verification:
    results_dir = Path(results_dir)
    found = Verification()
    tuning = results_dir / "tuning"
    for path in sorted(tuning.glob("*/*/*.json")) if tuning.is_dir() else []:
        try:
            read_summary(path)
        except DamagedFile as exc:
            found.errors.append(str(exc))
    for sub in ("", "quick"):
        try:
            load_costs(results_dir / sub)
        except DamagedFile as exc:
            found.errors.append(str(exc))
    boards = {results_dir: False, results_dir / "quick": True}  # run roots with a leaderboard: quick or not
    for root in run_roots(results_dir):
        # a leaderboard's runs are checked as its rebuild reads them (each record file is read once);
        # with an error already found, or a damaged run stopping the rebuild, they are checked one
        # by one, every damaged file named (a damaged run already says report would stop)
        if root not in boards or found.errors or not _check_leaderboard(results_dir, boards[root], found):
            _check_runs(RunStore(root), found)
    if not found.errors:
        _check_reproduction(results_dir, found)
    return found


def _check_reproduction(results_dir: Path, found: Verification) -> None:
    with tempfile.TemporaryDirectory(prefix="kdbench-verify-") as scratch:
        if (results_dir / "reproduction").is_dir():
            shutil.copytree(results_dir / "reproduction", Path(scratch) / "reproduction")
        written = {path.name: path for path in write_reproduction_report(scratch)}
        for kind in ("md", "csv"):
            stored = results_dir / f"{REPORT_NAME}.{kind}"
            expected = written.get(stored.name)
            if expected is None:
                if stored.exists():
                    found.errors.append(f"{stored} has no runs under {results_dir / 'reproduction'} to come from")
                continue
            if not stored.exists():
                found.notes.append(f"no {stored.name} beside the reproduction runs (`python -m kdbench report` writes it)")
            elif stored.read_bytes() != expected.read_bytes():
                found.errors.append(f"{stored} differs from what `report` writes now "
                                    f"({_first_difference(stored.read_bytes(), expected.read_bytes())}); "
                                    f"run `python -m kdbench report`")


def _check_runs(store: RunStore, found: Verification) -> None:
    for path in store.files():
        try:
            record = store.load(path)
        except DamagedFile as exc:
            found.errors.append(str(exc))
            continue
        _check_run(path, record, found)


def _check_run(path: Path, record: RunRecord, found: Verification) -> None:
    """One parsed run: counted, its absolute folders and whether its identity is current."""
    found.runs += 1
    # the per-user sections hold numbers only (`check_record` saw to it): no folder to look for there
    for name, value in absolute_fields(without_per_user(record)):
        fix = ("`python -m kdbench verify --drop-locations` drops it" if name == "config.data_path"
               and droppable(record) else "a dataset outside the catalogue: give it a relative --data-path")
        found.locations.append(f"{path}: {name} holds an absolute folder ('{value}'); {fix}")
    try:
        changed = stale_fields(cell_from_record(record, str(path)), record.get("config") or {})
    except KdbenchError as exc:  # e.g. a plugin strategy whose plugin was not given
        found.stale.append(f"{path}: identity not checked ({exc})")
        return
    if changed:
        found.stale.append(f"{path}: made with other {', '.join(changed)} than the current code gives")
    elif missing := missing_sections(record):
        found.stale.append(f"{path}: made by an older writer, without {', '.join(missing)}")


def _check_leaderboard(results_dir: Path, quick: bool, found: Verification) -> bool:
    """Compare the stored leaderboard (quick or not) with a rebuild, checking each run (`_check_run`)
    as the rebuild reads it. False where its runs were not all checked: no leaderboard to rebuild,
    or a damaged run file stopped the rebuild (nothing of it is then added to `found`)."""
    suffix = "-quick" if quick else ""
    runs_dir = results_dir / "quick" if quick else results_dir
    stored = text_paths(results_dir, quick)  # Markdown, CSV, JSON; the web page with the full one only
    present = [kind for kind, path in stored.items() if path.exists()]
    if not present:
        if (runs_dir / "runs").is_dir() and any(RunStore(runs_dir).files()):
            found.notes.append(f"no leaderboard{suffix} beside the runs under {runs_dir / 'runs'} "
                               f"(`python -m kdbench report{' --quick' if quick else ''}` writes it)")
        return False
    _warm_identity_checks()
    try:
        board = build_leaderboard(runs_dir, stored_invocation(results_dir, quick), quick, inspect=_run_findings)
    except DamagedFile as exc:
        if exc.path not in RunStore(runs_dir).files():  # not a run file: the error says it
            raise
        return False
    seen = Verification()
    for findings in board.inspected:
        seen.absorb(findings)
    if len(present) < len(stored):
        missing = sorted(set(stored) - set(present))
        seen.errors.append(f"leaderboard{suffix} is incomplete: no .{', .'.join(missing)} beside the others")
    texts = leaderboard_texts(board)
    for kind in present:
        expected = texts[kind].encode("utf-8")
        actual = stored[kind].read_bytes()
        if actual != expected:
            seen.errors.append(f"{stored[kind]} differs from what `report` writes now "
                               f"({_first_difference(actual, expected)}); run `python -m kdbench "
                               f"report{' --quick' if quick else ''}`")
    found.absorb(seen)
    return True


def _warm_identity_checks() -> None:
    """What a run's identity check computes once a process (each strategy's code version, the models
    a spec may name, about a second), computed before the rebuild's reading processes fork, so that
    they inherit it instead of each computing it again. A strategy whose code cannot be hashed is
    left to the run check that meets it."""
    known_models()
    for name in STRATEGIES.names():
        try:
            strategy_code(name)
        except KdbenchError:
            continue


def _run_findings(path: Path, record: RunRecord) -> Verification:
    """`_check_run`'s findings on one record, on their own (made where the record is read)."""
    findings = Verification()
    _check_run(path, record, findings)
    return findings


def _first_difference(actual: bytes, expected: bytes) -> str:
    old, new = actual.decode("utf-8", "replace").splitlines(), expected.decode("utf-8", "replace").splitlines()
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return f"line {number}: stored {a[:80]!r}, report {b[:80]!r}"
    return f"{len(old)} lines stored, {len(new)} from report"
