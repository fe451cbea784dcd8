"""The leaderboard's first section in Markdown: the answer across datasets (`cross_dataset`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdbench.report.cross_dataset import (
    ALPHA, GENERAL, LOSS, MIN_DATASETS, SPARSE_DENSITY, WIN, CrossDataset, density,
)
from kdbench.report.formatting import TextTable, interval, pct
from kdbench.run.record import SCRATCH

MARKS = {WIN: " ▲", LOSS: " ▼"}
TITLES = {GENERAL: "General recommenders", "sequential": "Sequential recommenders"}

CROSS_LEGEND = f"""How this section is computed (`kdbench/report/cross_dataset.py`): tuned tables only (every
strategy, scratch included, tuned with the same budget). A cell is the strategy's change of mean NDCG@10
over tuned scratch in that table, with its 95% interval; ▲ / ▼: a win / loss, i.e. the table's primary
test against scratch after Holm's correction gives p < {ALPHA} (the † / ‡ marks of the tables); `#`: its
rank among the strategies every table has (1 = best mean NDCG@10, ties share the average rank). Mean
rank: per dataset the mean over its tables, then the mean over datasets (Demšar, JMLR 2006); its 95%
interval is a bootstrap over seeds and users within each table (not over the choice of datasets).
Wins / ties / losses count tables. The sentences follow fixed rules: (1) the distillation strategy with
the best mean rank, and every strategy whose rank interval overlaps its interval; (2) the strategies
that win in every table (else the one with the most wins), and those with any loss; (3) where sparse
(density = interactions / (users × items) < {SPARSE_DENSITY:.1%}) and dense datasets are both present,
the best mean rank in each group, its change over scratch there, and whether that change is significant
in all, some or none of the group's tables (none: "within noise")."""


def cross_markdown(answers: list[CrossDataset]) -> list[str]:
    """`## The answer across datasets`: per family, the table of changes, ranks and outcomes, then
    the generated sentences (or, with fewer than `MIN_DATASETS` datasets, what exists so far)."""
    lines = ["## The answer across datasets", ""]
    if not answers:
        return lines + [f"Needs tuned tables (`python -m kdbench tune`, then `run`) on at least {MIN_DATASETS} "
                        f"datasets; there are none yet.", ""]
    for answer in answers:
        lines += [f"### {TITLES.get(answer.family, answer.family)}: "
                  f"{len(answer.datasets)} dataset{'s' if len(answer.datasets) != 1 else ''}", ""]
        if not answer.enough:
            lines += [f"> Needs tuned tables on at least {MIN_DATASETS} datasets for an answer across datasets; "
                      f"today: {', '.join(answer.datasets)} only. What exists (ranks within it):", ""]
        lines += [cross_rows(answer).markdown(), ""]
        missing = unranked(answer)
        if missing:
            lines += [f"Not in every table yet, so without a rank and left out of the sentences: "
                      f"{', '.join(missing)}.", ""]
        if answer.sentences:
            lines += ["What to use (generated from the table by the rules below):", ""]
            lines += [f"- {sentence}" for sentence in answer.sentences] + [""]
    return lines + [CROSS_LEGEND, ""]


def unranked(answer: CrossDataset) -> list[str]:
    """The strategies not in every table yet (no mean rank)."""
    return [name for name, rank in zip(answer.summary["strategy"], answer.summary["mean_rank"])
            if not np.isfinite(rank)]


def cross_rows(answer: CrossDataset) -> TextTable:
    """The section's table as text, scratch's row strong."""
    keys = list(dict.fromkeys(zip(answer.tables["dataset"], answer.tables["pairing"])))
    cells = answer.tables.set_index(["strategy", "dataset", "pairing"])
    headers = (["strategy"] + [f"{d}: {p.replace('->', ' → ')}{_density_note(d)}" for d, p in keys]
               + ["mean rank [95%]", "wins / ties / losses"])
    rows = []
    for summary in answer.summary.itertuples(index=False):
        row = [summary.strategy] + [_cell(cells, summary.strategy, key) for key in keys]
        rank = "—" if not np.isfinite(summary.mean_rank) else f"{summary.mean_rank:.1f}" + (
            f" [{summary.mean_rank_ci_low:.1f}, {summary.mean_rank_ci_high:.1f}]"
            if np.isfinite(summary.mean_rank_ci_low) else "")
        score = "—" if summary.strategy == SCRATCH else f"{summary.wins} / {summary.ties} / {summary.losses}"
        rows.append(row + [rank, score])
    return TextTable(headers, rows, strong=[strategy == SCRATCH for strategy in answer.summary["strategy"]])


def _cell(cells: pd.DataFrame, strategy: str, key: tuple[str, str]) -> str:
    if (strategy, *key) not in cells.index:
        return "—"
    found = cells.loc[(strategy, *key)]
    text = pct(found["change_pct"], signed=True) + interval(found["change_ci_low"], found["change_ci_high"])
    text += MARKS.get(found["outcome"], "")
    return text + (f" #{found['rank']:g}" if np.isfinite(found["rank"]) else "")


def _density_note(dataset: str) -> str:
    value = density(dataset)
    return f" ({value:.2%} dense)" if np.isfinite(value) else ""
