"""Writing a leaderboard: every output file from one built `Leaderboard`, replaced together.

`OUTPUTS` lists the files in the order `write_reports` returns them; each is a text renderer
(`Leaderboard -> str`) or a figure drawn into a path. The web page (`index.html`, `report.page`)
is one such entry: it renders the same rows as `leaderboard.json` (`exports.leaderboard_payload`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kdbench.store import atomic
from kdbench.report.exports import leaderboard_payload, render_csv, render_json
from kdbench.report.frontier import has_compression, plot_frontier
from kdbench.report.leaderboard import Leaderboard, build_leaderboard
from kdbench.report.markdown import render_markdown_page
from kdbench.report.page import PAGE_NAME, render_page
from kdbench.report.plots import plot_compression, plot_pareto
from kdbench.store.reading import read_mapping

META_ADVICE = "restore it or delete it (the leaderboard header then omits the command)"


@dataclass(frozen=True)
class Output:
    """One file of a leaderboard, named `name` with `{suffix}` ('-quick' for the quick set)."""

    key: str
    name: str
    text: Callable[[Leaderboard], str] | None = None  # its content
    figure: Callable[[Leaderboard, Path], Any] | None = None  # draws it into the path (left out with plot=False)
    full_only: bool = False  # written for the full leaderboard only, not the quick one
    when: Callable[[Leaderboard], bool] | None = None  # written only where this holds (None: always)


def render_html(board: Leaderboard) -> str:
    payload = leaderboard_payload(board)
    return render_page(payload["rows"], payload["columns"], payload["header"], board.runs_dir, board.records,
                       cross_dataset=payload["cross_dataset"], compute=payload["compute"])


OUTPUTS = (
    Output("md", "leaderboard{suffix}.md", text=render_markdown_page),
    Output("csv", "leaderboard{suffix}.csv", text=render_csv),
    Output("json", "leaderboard{suffix}.json", text=render_json),
    Output("png", "pareto{suffix}.png", figure=lambda board, path: plot_pareto(board.table, path, quick=board.quick)),
    Output("compression", "compression{suffix}.png",
           figure=lambda board, path: plot_compression(board.curves, path, quick=board.quick)),
    Output("html", PAGE_NAME, text=render_html, full_only=True),
    Output("frontier", "frontier{suffix}.png", figure=lambda board, path: plot_frontier(board.table, path, board.quick),
           when=lambda board: has_compression(board.table)),
)


def write_reports(runs_dir: str | Path, out_dir: str | Path, quick: bool = False,
                  command: str | None = None, wall_seconds: float | None = None, plot: bool = True) -> list[Path]:
    """Write leaderboard.md/.csv/.json, pareto.png and compression.png (the `-quick` set with `quick=True`).

    Inference costs come from `runs_dir/cost/` (`kdbench cost`); without them those columns are empty.
    `plot=False` leaves the PNGs out. `command` and `wall_seconds` describe the invocation that
    produced the runs; given, they are stored in `leaderboard[-quick].meta.json`, and when absent (as
    from `kdbench report`) they are read back from it, so a rebuild from the same runs gives the
    same files.

    Every input is read and every text rendered before anything is written, and the files are
    replaced together (`atomic.atomic_paths`): a failure leaves the previous leaderboard whole,
    never half of a new one.
    """
    out_dir = Path(out_dir)
    meta_path = _meta_path(out_dir, quick)
    given = command is not None or wall_seconds is not None
    meta = _invocation(meta_path, command, wall_seconds)
    board = build_leaderboard(runs_dir, meta, quick)
    outputs = _outputs(board, plot)
    texts = leaderboard_texts(board)
    paths = [out_dir / _name(output, quick) for output in outputs]
    with atomic.atomic_paths(paths + ([meta_path] if given else [])) as temps:
        for output, tmp in zip(outputs, temps):
            if output.text is not None:
                tmp.write_text(texts[output.key], encoding="utf-8", newline="")  # verify's bytes
            else:
                output.figure(board, tmp)
        if given:
            temps[-1].write_text(atomic.dumps(meta))
    return paths + ([meta_path] if meta_path.is_file() else [])


def leaderboard_texts(board: Leaderboard) -> dict[str, str]:
    """The leaderboard's text files (Markdown, CSV, JSON, the web page), by `Output.key`: what
    `write_reports` writes of `board` (UTF-8), and what `verify` compares with the stored files."""
    return {output.key: output.text(board) for output in _outputs(board, plot=False)}


def text_paths(out_dir: str | Path, quick: bool = False) -> dict[str, Path]:
    """Where `write_reports` puts each text file of the leaderboard (quick or not), by `Output.key`."""
    return {output.key: Path(out_dir) / _name(output, quick) for output in OUTPUTS
            if output.text is not None and not (quick and output.full_only)}


def stored_invocation(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    """The invocation stored beside the leaderboard in `out_dir` (`leaderboard[-quick].meta.json`)."""
    return _invocation(_meta_path(Path(out_dir), quick), None, None)


def _outputs(board: Leaderboard, plot: bool) -> list[Output]:
    return [output for output in OUTPUTS if (plot or output.figure is None) and not (board.quick and output.full_only)
            and (output.when is None or output.when(board))]


def _name(output: Output, quick: bool) -> str:
    return output.name.format(suffix="-quick" if quick else "")


def _meta_path(out_dir: Path, quick: bool) -> Path:
    return out_dir / f"leaderboard{'-quick' if quick else ''}.meta.json"


def _invocation(meta_path: Path, command: str | None, wall_seconds: float | None) -> dict[str, Any]:
    """The invocation behind the runs: the one given, else the one stored beside the leaderboard."""
    if command is not None or wall_seconds is not None:
        return {"command": command, "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 1)}
    if meta_path.is_file():
        return read_mapping(meta_path, META_ADVICE)
    return {"command": None, "wall_seconds": None}
