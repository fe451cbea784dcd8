"""What a suite's run says at its end: how many cells it trained, reused and saw fail (and its
teachers), then the top rows of each leaderboard table, read back from the leaderboard's JSON
(`report.exports`: the report's own aggregation, nothing computed again)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.run.record import SCRATCH, TEACHER
from kdbench.run.runner import Runner
from kdbench.store.reading import read_mapping

TOP_ROWS = 3  # students shown per table


def counts_line(runner: Runner, n_cells: int) -> str:
    """`420 cells: 420 reused, 0 trained, 0 failed; teachers: none needed` (a cell that failed
    in this run is counted as failed, not trained)."""
    trained = sum(record.get("status") == "ok" for record in runner.written)
    failed = len(runner.written) - trained
    sources = list(runner.teacher_sources.values())
    fresh = sum(source.startswith("trained now") for source in sources)
    teachers = (f"{fresh} trained, {len(sources) - fresh} reused from the cache" if sources else "none needed")
    return f"{n_cells} cells: {runner.reused} reused, {trained} trained, {failed} failed; teachers: {teachers}"


def top_rows(outputs: list[Path], top: int = TOP_ROWS) -> list[str]:
    """One line per leaderboard table: its best `top` students by mean NDCG@10 (the table's rank)
    with their change against scratch, and the teacher's NDCG@10."""
    found = [path for path in outputs if path.suffix == ".json" and not path.name.endswith(".meta.json")]
    if not found:
        return []
    rows = read_mapping(found[0]).get("rows") or []
    tables: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        tables.setdefault((row["dataset"], row["pairing"], row["variant"]), []).append(row)
    lines = [f"top {top} of each table by {PRIMARY_METRIC}, mean over seeds (change vs scratch); all rows in "
             f"{found[0].with_suffix('.md')}:"]
    for (dataset, pairing, variant), table in tables.items():
        students = sorted((r for r in table if r.get("rank") is not None
                           and _number(r.get(f"{PRIMARY_METRIC}_mean")) != "n/a"), key=lambda r: r["rank"])
        shown = ", ".join(f"{r['rank']}. {r['strategy']} {_number(r.get(f'{PRIMARY_METRIC}_mean'))}{_change(r)}"
                          for r in students[:top])
        teacher = next((r for r in table if r.get("family") == TEACHER), None)
        tail = f"; teacher {_number(teacher.get(f'{PRIMARY_METRIC}_mean'))}" if teacher else ""
        lines.append(f"  {dataset} {pairing} ({variant}): {shown or 'no finished student'}{tail}")
    return lines


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _change(row: dict[str, Any]) -> str:
    change = row.get(f"{PRIMARY_METRIC}_vs_scratch_pct")
    if row.get("method") == SCRATCH or not isinstance(change, (int, float)) or not math.isfinite(change):
        return ""
    return f" ({change:+.1f}%)"
