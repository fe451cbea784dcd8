"""How a leaderboard value reads in a rendered table (Markdown now; any page renderer alike): an
absent or non-finite value is "—", means carry their spread, p-values switch to exponents below 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from kdbench.report.values import finite

SIGNIFICANCE = ((0.01, "‡"), (0.05, "†"))  # on the Holm-adjusted primary p-value
TRAINED_TEACHER_MARK = "⁂"  # after the strategy's name: its runs trained the teacher further (BD)


@dataclass(frozen=True)
class TextTable:
    """A summary table as text, built once for `leaderboard.md` and the page: `strong[i]` says
    whether row i is shown in bold (scratch's row, a dataset's total), each renderer its own way."""

    headers: list[str]
    rows: list[list[str]]
    strong: list[bool]

    def markdown(self) -> str:
        """GitHub Markdown, a strong row's first cell in **bold**."""
        rows = [[f"**{row[0]}**" if bold else row[0], *row[1:]] for row, bold in zip(self.rows, self.strong)]
        return tabulate(rows, headers=self.headers, tablefmt="github", disable_numparse=True)


def significance_mark(p_holm: Any) -> str:
    """‡ below 0.01, † below 0.05, else nothing."""
    return next((m for level, m in SIGNIFICANCE if finite(p_holm) and p_holm < level), "")


def fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if finite(value) else "—"


def mean_std(mean: float, std: float, pattern: str = "{:.4f}") -> str:
    if not finite(mean):
        return "—"
    return f"{pattern.format(mean)} ± {pattern.format(std)}" if finite(std) else pattern.format(mean)


def throughput(median: float, low: float, high: float) -> str:
    """Users/s of the median call, and in brackets of the slower and faster quartile calls."""
    if not finite(median):
        return "—"
    return f"{median:,.0f} [{low:,.0f}–{high:,.0f}]" if finite(low) and finite(high) else f"{median:,.0f}"


def pct(value: float, signed: bool = False, digits: int = 1) -> str:
    if not finite(value):
        return "—"
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def interval(low: float, high: float) -> str:
    return f" [{low:+.1f}, {high:+.1f}]" if finite(low) and finite(high) else ""


def p_value(value: float) -> str:
    if not finite(value):
        return "—"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def duration(seconds: float | None) -> str:
    if seconds is None or not finite(seconds):
        return "not recorded"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
