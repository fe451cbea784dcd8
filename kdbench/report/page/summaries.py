"""The page's two summaries, as static HTML: the answer across datasets above its table
(`report.cross_markdown`) and the compute per dataset below it (`report.compute`), the same rows as
`leaderboard.md`'s, read from `leaderboard.json`'s `cross_dataset` and `compute`. Static, so they
read without JavaScript; every text is escaped."""

from __future__ import annotations

import html
import re
from typing import Any

from kdbench.report.compute import COMPUTE_NOTE, compute_from_json, compute_rows
from kdbench.report.cross_dataset import MIN_DATASETS, CrossDataset
from kdbench.report.cross_markdown import TITLES, cross_rows, unranked
from kdbench.report.formatting import TextTable

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def answer_html(entries: list[dict[str, Any]]) -> str:
    """The answer across datasets (above the table), "" where `leaderboard.json` has none."""
    if not entries:
        return ""
    parts = ['<section id="answer" aria-labelledby="answer-title">',
             '<h2 id="answer-title">The answer across datasets</h2>']
    for answer in map(CrossDataset.from_json, entries):
        count = len(answer.datasets)
        parts.append(f"<h3>{html.escape(TITLES.get(answer.family, answer.family))}: "
                     f"{count} dataset{'s' if count != 1 else ''}</h3>")
        if not answer.enough:
            parts.append(f'<p class="note">Needs tuned tables on at least {MIN_DATASETS} datasets for an answer '
                         f"across datasets; today: {html.escape(', '.join(answer.datasets))} only.</p>")
        if answer.sentences:
            parts.append('<ul class="answer">' + "".join(f"<li>{_inline(s)}</li>" for s in answer.sentences) + "</ul>")
        parts.append(_table(cross_rows(answer), f"The change over tuned scratch per table: {answer.family}"))
        missing = unranked(answer)
        if missing:
            parts.append(f'<p class="caption">Not in every table yet, so without a rank and left out of the '
                         f"sentences: {html.escape(', '.join(missing))}.</p>")
    parts.append('<p class="caption">A cell: the change of mean NDCG@10 over tuned scratch in that table, '
                 "95% interval in brackets; ▲ / ▼ a win / loss by the table's Holm-corrected primary test; "
                 "# its rank there. How the ranks and sentences are made: leaderboard.md.</p>")
    return "\n".join(parts + ["</section>", ""])


def compute_html(rows: list[dict[str, Any]]) -> str:
    """The compute per dataset (below the table), "" where `leaderboard.json` has none."""
    if not rows:
        return ""
    return "\n".join(['<section id="compute" aria-labelledby="compute-title">',
                      '<h2 id="compute-title">Compute per dataset</h2>',
                      _table(compute_rows(compute_from_json(rows)), "Core-hours per dataset and pairing"),
                      f'<p class="caption">{_inline(COMPUTE_NOTE)}</p>', "</section>", ""])


def _table(table: TextTable, caption: str) -> str:
    """A table of text cells, each row named by its first cell (a row header, for screen readers); its
    strong rows in bold (as leaderboard.md's)."""
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in table.headers)
    body = "\n".join(('<tr class="strong">' if bold else "<tr>") + f'<th scope="row">{html.escape(row[0])}</th>'
                     + "".join(f"<td>{html.escape(cell)}</td>" for cell in row[1:]) + "</tr>"
                     for row, bold in zip(table.rows, table.strong))
    return (f'<div class="scroll"><table class="summary"><caption class="visually-hidden">{html.escape(caption)}'
            f"</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>")


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in a generated sentence, as HTML (the rest escaped)."""
    return _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=False)))
