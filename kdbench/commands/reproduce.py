"""`reproduce --suite`: a suite with a published table (`paper:`) run into
RESULTS_DIR/reproduction/NAME/ and compared with the paper in RESULTS_DIR/reproduction.md and .csv
(`kdbench.report.reproduction`). One stored run again is `kdbench.run.reproduce.reproduce`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kdbench.commands.execution import Execution, execute_cells, resolve_protocols
from kdbench.errors import KdbenchError, choices
from kdbench.store.paths import check_folder
from kdbench.report.reproduction import reproduction_folder, write_paper, write_reproduction_report
from kdbench.run.record import METRICS
from kdbench.run.suites import Suite, expand, load_suite, suite_protocols


def reproduce_suite(results_dir: str | Path, execution: Execution, suite_file: str,
                    protocols: list[str] | None = None, data_path: str | None = None) -> tuple[list[Path], list[dict]]:
    """Run the suite (only `protocols` of its own, if given; its dataset from `data_path` if given)
    and write the comparison: (the files written, the cells' records)."""
    check_folder(results_dir, "--results-dir")
    suite = load_suite(suite_file)
    paper = check_paper(suite)
    protocols = resolve_protocols(protocols)
    unknown = sorted(set(protocols or []) - {cell.protocol for cell in expand(suite)})
    if unknown:
        raise KdbenchError(f"suite '{suite.name}' has no protocol '{unknown[0]}': valid: "
                           f"{', '.join(sorted({cell.protocol for cell in expand(suite)}))}")
    cells = expand(suite, protocols_override=protocols)
    if data_path is not None:
        cells = [replace(cell, data_path=data_path) for cell in cells]
    folder = reproduction_folder(results_dir, suite.name)
    # the paper's table is written first, so that a reproduction cut off part-way still reports the
    # cells it finished (`report` reads this folder's runs beside it)
    _, records = execute_cells(cells, folder, execution, check_stored=True,
                               before_training=lambda: write_paper(folder, suite.name, paper))
    return write_reproduction_report(results_dir), records


def check_paper(suite: Suite) -> dict[str, Any]:
    """The suite's `paper:` block, checked: a title, one of the suite's protocols, known metrics and,
    per row (the teacher or one of the suite's strategies), a number or null per metric."""
    where = f"suite '{suite.name}': 'paper'"
    paper = suite.spec.get("paper")
    if not isinstance(paper, dict):
        raise KdbenchError(f"{where} is missing: a reproduction suite needs the published table "
                           f"(title, protocol, metrics, rows)")
    unknown = set(paper) - {"title", "protocol", "metrics", "rows", "source"}
    if unknown:
        raise KdbenchError(f"{where}: unknown keys {choices(unknown)}; valid: metrics, protocol, rows, source, title")
    if not isinstance(paper.get("title"), str):
        raise KdbenchError(f"{where} needs a 'title' string")
    protocols = suite_protocols(suite)
    if paper.get("protocol") not in protocols:
        raise KdbenchError(f"{where}: 'protocol' must be one of the suite's protocols: {choices(protocols)}")
    metrics = paper.get("metrics")
    if not isinstance(metrics, list) or not metrics or not set(metrics) <= set(METRICS):
        raise KdbenchError(f"{where}: 'metrics' must be a list of {choices(METRICS)}")
    rows = paper.get("rows")
    methods = {cell.strategy for cell in expand(suite)}
    if not isinstance(rows, dict) or not rows:
        raise KdbenchError(f"{where}: 'rows' must map methods to their published values")
    for method, values in rows.items():
        if method not in methods:
            raise KdbenchError(f"{where}: row '{method}' is not run by the suite: valid: {choices(methods)}")
        values = values or {}
        if not isinstance(values, dict) or not set(values) <= set(metrics) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values.values()):
            raise KdbenchError(f"{where}: row '{method}' must map metrics of {choices(metrics)} to positive "
                               f"numbers (or be null: no published value)")
    return {key: paper[key] for key in ("title", "source", "protocol", "metrics", "rows") if key in paper}
