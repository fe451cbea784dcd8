"""Less data: the teacher, scratch and distilled students trained on a share of each user's training
interactions (`kdbench.run.subsample`; validation and test fixed), and the curve of NDCG@10 against the
share, written as results/data_share_DATASET_PAIRING.md/.csv/.png (`kdbench sweep-data`).

Each share's runs live under their own results folder (`results/data_share/share-<s>/runs/`), so a
cell's address never meets another share's; the share and the subsample seed are part of the
identity of every cell below the whole split (`record.data_share_identity`). Does distillation
matter more when data is scarce? The table gives each strategy's change over scratch at each share.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from kdbench.store import atomic
from kdbench.run.cells import Cell
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.run.record import DEFAULTS, SCRATCH, TEACHER, safe_name

DATA_SHARE_FOLDER = "data_share"  # results/data_share/share-<s>/runs/...
DEFAULT_SHARES = (0.25, 0.5, 1.0)
TABLE_COLUMNS = ("strategy", "variant", "share", "n_seeds", f"{PRIMARY_METRIC}_mean", f"{PRIMARY_METRIC}_std",
                 "recall@10_mean", f"{PRIMARY_METRIC}_vs_scratch_pct", f"teacher_{PRIMARY_METRIC}_retained_pct",
                 "best_epoch_mean")


def share_text(share: float) -> str:
    """`0.25`, `0.5`, `1`: a share as it appears in folder names and tables."""
    return f"{share:g}"


def share_root(results_dir: str | Path, share: float) -> Path:
    """The results folder of one share's runs."""
    return Path(results_dir) / DATA_SHARE_FOLDER / f"share-{share_text(share)}"


def share_cells(students: list[Cell], teacher: Cell, shares: list[float], subsample_seed: int) -> dict[float, list[Cell]]:
    """Per share, the teacher row and every student cell trained on that share of the training split
    (drawn with `subsample_seed`; the whole split at 1.0, whose cells are the plain ones)."""
    out = {}
    for share in shares:
        sub = {} if share == 1.0 else {"data_share": share, "subsample_seed": subsample_seed}
        out[share] = [replace(teacher, **sub)] + [replace(cell, **sub) for cell in students]
    return out


def data_share_table(records: dict[float, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per (strategy, share): NDCG@10 mean and sample std over ok seeds, its change over
    scratch's mean at the same share (%), and its share of the teacher's NDCG@10 at that share (%)."""
    rows = []
    for share, found in records.items():
        ok = [r for r in found if r.get("status") == "ok"]
        frame = pd.DataFrame([{"strategy": r["strategy"], "variant": r.get("variant") or DEFAULTS,
                               "seed": r["seed"], PRIMARY_METRIC: r["test"][PRIMARY_METRIC],
                               "recall@10": r["test"]["recall@10"],
                               "best_epoch": (r.get("training") or {}).get("best_epoch", np.nan)} for r in ok])
        if frame.empty:
            continue
        means = frame.groupby("strategy")[PRIMARY_METRIC].mean()
        scratch, teacher = means.get(SCRATCH, np.nan), means.get(TEACHER, np.nan)
        for strategy, runs in frame.groupby("strategy", sort=False):
            mean = runs[PRIMARY_METRIC].mean()
            rows.append({"strategy": strategy, "variant": runs["variant"].iloc[0], "share": share,
                         "n_seeds": len(runs), f"{PRIMARY_METRIC}_mean": mean,
                         f"{PRIMARY_METRIC}_std": runs[PRIMARY_METRIC].std(ddof=1),
                         "recall@10_mean": runs["recall@10"].mean(),
                         f"{PRIMARY_METRIC}_vs_scratch_pct": (mean - scratch) / scratch * 100
                         if strategy not in (TEACHER, SCRATCH) else np.nan,
                         f"teacher_{PRIMARY_METRIC}_retained_pct": mean / teacher * 100,
                         "best_epoch_mean": runs["best_epoch"].astype(float).mean()})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    order = {name: i for i, name in enumerate(_strategy_order(table["strategy"]))}
    return table.sort_values(["strategy", "share"], key=lambda column: column.map(order) if column.name == "strategy"
                             else column, kind="mergesort").reset_index(drop=True)


def _strategy_order(names) -> list[str]:
    """The teacher, scratch, then the strategies in the order given."""
    names = list(dict.fromkeys(names))
    return [n for n in (TEACHER, SCRATCH) if n in names] + [n for n in names if n not in (TEACHER, SCRATCH)]


def markdown(table: pd.DataFrame, title: str, intro: str) -> str:
    """The page: the intro, then a strategy per row and a share per column (mean ± sd, change over
    scratch at that share)."""
    shares = sorted(set(table["share"]))
    rows = []
    for strategy in _strategy_order(table["strategy"]):
        mine = table[table["strategy"] == strategy].set_index("share")
        name = f"**{strategy}**" if strategy in (TEACHER, SCRATCH) else strategy
        rows.append([name] + [_cell(mine.loc[share]) if share in mine.index else "—" for share in shares])
    headers = ["strategy"] + [f"{share_text(s * 100)}% of training data" for s in shares]
    return (f"# {title}\n\n{intro}\n\n"
            + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n")


def _cell(row: pd.Series) -> str:
    mean, std, change = row[f"{PRIMARY_METRIC}_mean"], row[f"{PRIMARY_METRIC}_std"], row[f"{PRIMARY_METRIC}_vs_scratch_pct"]
    text = f"{mean:.4f}" + (f" ± {std:.4f}" if np.isfinite(std) else "")
    if np.isfinite(change):
        text += f" ({change:+.1f}%)"
    return text + f", {int(row['n_seeds'])} seed{'s' if row['n_seeds'] != 1 else ''}"


def plot(table: pd.DataFrame, title: str, path: Path) -> None:
    """NDCG@10 against the share of training data, one line per strategy, bars ± the sample sd over
    seeds (none with one seed); the teacher dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for strategy in _strategy_order(table["strategy"]):
        mine = table[table["strategy"] == strategy].sort_values("share")
        spread = mine[f"{PRIMARY_METRIC}_std"].fillna(0.0)
        axis.errorbar(mine["share"] * 100, mine[f"{PRIMARY_METRIC}_mean"], yerr=spread, marker="o", capsize=3,
                      linestyle="--" if strategy == TEACHER else "-", linewidth=2.2 if strategy == SCRATCH else 1.4,
                      **({"color": "black"} if strategy == TEACHER else {}),
                      label=strategy)
    axis.set_xlabel("share of each user's training interactions (%)")
    axis.set_ylabel("test NDCG@10 (mean ± sd over seeds)")
    axis.set_xticks(sorted(set(table["share"] * 100)))
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120, metadata={"Software": None})  # no version, no date
    plt.close(figure)


def write_data_share(records: dict[float, list[dict[str, Any]]], dataset: str, pairing: str, intro: str,
                     results_dir: str | Path) -> list[Path]:
    """results_dir/data_share_DATASET_PAIRING.md, .csv and .png from each share's records, replaced together."""
    table = data_share_table(records)
    stem = Path(results_dir) / f"data_share_{safe_name(dataset)}_{safe_name(pairing)}"
    title = f"Less training data: {dataset}, {pairing.replace('->', ' → ')}"
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".png")]
    with atomic.atomic_paths(paths) as temps:
        temps[0].write_text(markdown(table, title, intro))
        temps[1].write_text(table.to_csv(index=False, float_format="%.6g"))
        plot(table, title, temps[2])
    return paths
