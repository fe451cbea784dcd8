"""The leaderboard's figures: `pareto.png` (NDCG@10 against parameters and against training cost) and
`compression.png` (NDCG@10 and the share of the teacher's kept, against student size), drawn from the
tables `report` aggregates.

Every figure is drawn on a bare Agg `Figure` (no pyplot state) in a fixed style (`PLOT_STYLE`, whatever
the user's matplotlibrc), at a fixed size and dpi and without software or date metadata, so the same
records give byte-identical PNGs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.store import atomic
from kdbench.report.schema import PRIMARY_CI_HIGH, PRIMARY_CI_LOW, PRIMARY_MEAN, TEACHER_PRIMARY
from kdbench.run.record import DEFAULTS, SCRATCH, TEACHER, TUNED, VARIANT_TITLES

FAMILY_COLOURS = {TEACHER: "black", "baseline": "tab:gray", "response": "tab:blue", "feature": "tab:orange",
                  "ranking": "tab:green", "topology": "tab:red", "compression": "tab:purple"}  # fixed, so plots compare across reports

# Fixed style for every figure: the same records give the same PNG bytes whatever the user's matplotlibrc.
PLOT_STYLE = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
              "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 8, "lines.linewidth": 1.0,
              "savefig.dpi": 110, "figure.dpi": 110, "path.simplify": False}
PNG_METADATA = {"Software": None}  # no version string, and Agg writes no date


@contextmanager
def _style():
    from matplotlib import rc_context, rcParamsDefault

    defaults = {k: v for k, v in rcParamsDefault.items() if k not in ("backend", "backend_fallback", "interactive")}
    with rc_context(defaults | PLOT_STYLE):
        yield


def _save(fig, path: str | Path) -> Path:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=PNG_METADATA)
    return Path(path)


def plot_pareto(table: pd.DataFrame, path: str | Path, quick: bool = False) -> Path:
    """NDCG@10 (mean over seeds) against model size in bytes (top row: dense float32 is 4 bytes a
    parameter, a compressed model its format's bytes, `cost.size_bytes`) and against training seconds to the best model
    (bottom row, ± sd over seeds), log x; one column per dataset and teacher (its main pairing,
    `main_pairings`), one labelled point per strategy, teacher and scratch included. A strategy's
    vertical bar is the 95% interval of its change vs scratch (a dotted line).

    Drawn on a bare Agg `Figure` (no pyplot state) in a fixed style (`PLOT_STYLE`); fixed size, dpi
    and no software/date metadata, so the same table gives the same bytes.
    """
    with _style():
        return _plot_pareto(table, path, quick)


def main_pairings(table: pd.DataFrame) -> pd.DataFrame:
    """Each dataset and teacher's headline rows of the pairing(s) with the most strategies: the pairing
    a suite compares every method on, not the other sizes of its size sweep."""
    table = headline(table)
    if not len(table):
        return table
    counts = table[table["family"] != TEACHER].groupby(["dataset", "teacher", "pairing"], sort=False).size()
    if not len(counts):
        return table
    best = counts.groupby(level=["dataset", "teacher"]).transform("max")
    keep = set(counts[counts == best].index.get_level_values("pairing"))
    return table[table["pairing"].isin(keep)]


def _plot_pareto(table: pd.DataFrame, path: str | Path, quick: bool) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    table = main_pairings(table)
    panels = list(table.groupby(["dataset", "pairing"], sort=False)) if len(table) else []
    n = max(len(panels), 1)
    families = sorted({str(f) for f in table["family"].dropna()}, key=lambda f: (f not in FAMILY_COLOURS, f))
    spare = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"] * 10)
    colours = {f: FAMILY_COLOURS.get(f) or next(spare) for f in families}
    fig = Figure(figsize=(6.4 * n, 9.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, ((dataset, pairing), group) in enumerate(panels):
        for row, (x_col, x_label) in enumerate((
                ("size_bytes", "model size in bytes, as deployed: float32, or a compressed format (log scale)"),
                ("time_to_best_s_mean", "training seconds to the best model, incl. knowledge preparation (log scale)"))):
            ax = axes[row][col]
            _pareto_panel(ax, group, x_col, colours, xerr_col=None if row == 0 else "time_to_best_s_std")
            ax.set_xlabel(x_label, fontsize=8)
            ax.set_ylabel("NDCG@10, mean over seeds (bars: 95% CI of the change vs scratch)", fontsize=8)
            ax.set_title(f"{dataset}: {pairing.replace('->', ' → ')}", fontsize=9)
            ax.tick_params(labelsize=7)
    if not panels:
        for ax in axes.flat:
            ax.text(0.5, 0.5, "no successful runs", ha="center", va="center", transform=ax.transAxes)
    handles = [Line2D([], [], marker=_marker(f, ""), color=colours[f], linestyle="", label=f) for f in families]
    handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8, label="Pareto front"))
    handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=0.6, label="scratch"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), frameon=False, fontsize=8)
    fig.suptitle("kdbench: quality vs model size and vs training cost"
                 + (" (QUICK, reduced run: do not cite)" if quick else ""), fontsize=10)
    return _save(fig, path)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """Each pairing's headline table: the tuned one where it exists, else the defaults."""
    if not len(table):
        return table
    tuned_pairings = set(table.loc[table["variant"] == TUNED, "pairing"])
    keep = np.where(table["pairing"].isin(tuned_pairings), table["variant"] == TUNED, table["variant"] == DEFAULTS)
    return table[keep]


def _marker(family: str, strategy: str) -> str:
    return "*" if family == TEACHER else "s" if strategy == SCRATCH or family == "baseline" else "o"


def _pareto_panel(ax, group: pd.DataFrame, x_col: str, colours: dict, xerr_col: str | None = None) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    points = group[np.isfinite(group[PRIMARY_MEAN].astype(float)) & np.isfinite(group[x_col].astype(float))
                   & (group[x_col].astype(float) > 0)]
    if points.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    x = points[x_col].to_numpy(float)
    y = points[PRIMARY_MEAN].to_numpy(float)
    # ± the x column's spread, clipped so the bar stays on the log axis
    xerr = (np.nan_to_num(points[xerr_col].to_numpy(float)) if xerr_col else np.zeros_like(x))
    xerr_low = np.minimum(xerr, x * 0.9)
    scratch = group.loc[group["method"] == SCRATCH, PRIMARY_MEAN].astype(float)
    base = float(scratch.iloc[0]) if len(scratch) else math.nan
    # Half the 95% interval of the change vs scratch, in NDCG@10 units, around the strategy's mean.
    width = (points["rel_change_ci_high"].to_numpy(float) - points["rel_change_ci_low"].to_numpy(float)) / 100
    err = np.nan_to_num(width * base / 2)
    if np.isfinite(base):
        ax.axhline(base, color="grey", linewidth=0.6, linestyle=":", zorder=0)
    # Students share one parameter count: spread equal x a little so bars stay readable.
    shown_x = x.copy()
    for value in np.unique(x):
        same = np.flatnonzero(x == value)
        if len(same) > 1:
            order = same[np.argsort(-y[same], kind="stable")]
            offsets = np.linspace(-0.025, 0.025, len(order))
            shown_x[order] = value * 10 ** offsets
    for i, (family, strategy) in enumerate(zip(points["family"], points["strategy"])):
        ax.errorbar(shown_x[i], y[i], yerr=err[i], xerr=[[xerr_low[i]], [xerr[i]]] if xerr[i] else None,
                    fmt=_marker(family, strategy),
                    color=colours.get(str(family), "grey"), markersize=9 if family == TEACHER else 6,
                    capsize=2, elinewidth=0.8, markeredgecolor="black", markeredgewidth=0.4)
    frontier = _frontier(x, y)
    if len(frontier) > 1:
        ax.plot(x[frontier], y[frontier], color="grey", linewidth=0.8, linestyle="--", zorder=0)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = float(np.min(x - xerr_low)), float(np.max(x + xerr))
    ax.set_xlim(lo / 1.8, hi * 3.5)
    span = max(float(np.max(y + err) - np.min(y - err)), 1e-6)
    ax.set_ylim(float(np.min(y - err)) - 0.08 * span, float(np.max(y + err)) + 0.08 * span)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    _label_points(ax, shown_x, y, list(points["strategy"]), list(points["family"]), span)


def _compact(value: float, _position=None) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _frontier(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the non-dominated points: lower x (cost) and higher y (quality)."""
    keep = []
    for i in range(len(x)):
        dominated = any(x[j] <= x[i] and y[j] >= y[i] and (x[j] != x[i] or y[j] != y[i]) for j in range(len(x)))
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (x[i], y[i]))


def _label_points(ax, x: np.ndarray, y: np.ndarray, names: list[str], families: list[str], span: float) -> None:
    """Labels to the right of their points, pushed apart vertically so they do not overlap."""
    from matplotlib.collections import LineCollection

    order = np.argsort(y, kind="stable")
    gap = span * 0.045
    placed = np.empty(len(y))
    last = -np.inf
    for i in order:
        placed[i] = max(y[i], last + gap)
        last = placed[i]
    overflow = last - (np.max(y) + 0.05 * span)
    if overflow > 0:
        placed -= min(overflow, float(placed[order[0]] - (np.min(y) - 0.05 * span)))
    leaders = []
    for i in order:
        text = "teacher" if families[i] == TEACHER else names[i]
        label_x = x[i] * 1.35
        leaders.append([(x[i], y[i]), (label_x / 1.03, placed[i])])
        ax.text(label_x, placed[i], text, fontsize=7, va="center",
                fontweight="bold" if families[i] == TEACHER or names[i] == SCRATCH else "normal")
    ax.add_collection(LineCollection(leaders, colors="grey", linewidths=0.4, zorder=0))


def plot_compression(curves: pd.DataFrame, path: str | Path, quick: bool = False) -> Path:
    """The compression curves (`compression_curves`): one column per dataset, teacher and variant.
    Top: NDCG@10 (mean, bar: 95% t-interval over seeds) against the student's parameters (log x), a
    line per strategy run at several sizes, the teacher's NDCG@10 as a dashed line. Bottom: the share
    of the teacher's NDCG@10 kept against the compression ratio (teacher params / student params,
    log x), 100% dashed. Scratch is grey squares; other strategies take colours in name order.
    Same style and metadata rules as `plot_pareto`, so the same curves give the same bytes."""
    with _style():
        return _plot_compression(curves, path, quick)


def _plot_compression(curves: pd.DataFrame, path: str | Path, quick: bool) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    panels = list(curves.groupby(["dataset", "teacher", "variant"], sort=False)) if len(curves) else []
    n = max(len(panels), 1)
    fig = Figure(figsize=(6.0 * n, 8.5), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    strategies = sorted({str(s) for s in curves["strategy"]}, key=lambda s: (s.split("@")[0] != SCRATCH, s))
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan"]
    others = [s for s in strategies if s.split("@")[0] != SCRATCH]
    colours = {s: "dimgray" if s.split("@")[0] == SCRATCH else palette[others.index(s) % len(palette)]
               for s in strategies}
    for col, ((dataset, teacher, variant), group) in enumerate(panels):
        top, bottom = axes[0][col], axes[1][col]
        teacher_primary = float(group[TEACHER_PRIMARY].iloc[0])
        lines = list(group.groupby("strategy", sort=False))
        for number, (strategy, line) in enumerate(lines):
            line = line.sort_values("params", kind="mergesort")
            dodge = 10 ** ((number - (len(lines) - 1) / 2) * 0.01)  # strategies side by side, bars readable
            scratch = strategy.split("@")[0] == SCRATCH
            style = dict(color=colours[strategy], marker="s" if scratch else "o", markersize=5, capsize=2,
                         elinewidth=0.8, linewidth=1.6 if scratch else 1.1, linestyle="--" if scratch else "-",
                         label=strategy)
            x, y = line["params"].to_numpy(float) * dodge, line[PRIMARY_MEAN].to_numpy(float)
            err = np.nan_to_num(np.vstack([y - line[PRIMARY_CI_LOW].to_numpy(float),
                                           line[PRIMARY_CI_HIGH].to_numpy(float) - y]))
            top.errorbar(x, y, yerr=err, **style)
            kept = line["retained_pct"].to_numpy(float)
            kept_err = np.nan_to_num(np.vstack([kept - line["retained_ci_low"].to_numpy(float),
                                                line["retained_ci_high"].to_numpy(float) - kept]))
            bottom.errorbar(line["compression_vs_teacher"].to_numpy(float) / dodge, kept, yerr=kept_err, **style)
        if np.isfinite(teacher_primary):
            top.axhline(teacher_primary, color="black", linestyle="--", linewidth=0.9, label=f"teacher {teacher}")
        bottom.axhline(100.0, color="black", linestyle="--", linewidth=0.9, label="teacher (100%)")
        title = f"{dataset}: teacher {teacher}, {VARIANT_TITLES.get(variant, variant).split(':')[0].lower()}"
        sizes = group.drop_duplicates("student").sort_values("params", kind="mergesort")
        ticks = (sizes["params"].to_numpy(float), [f"{s}\n{_compact(p)}" for s, p in zip(sizes["student"], sizes["params"])])
        ratios = sizes["compression_vs_teacher"].to_numpy(float)
        for ax, x_label, y_label, (positions, labels) in (
                (top, "student: parameters (log scale)", "test NDCG@10, mean over seeds (bars: 95% CI)", ticks),
                (bottom, "compression ratio: teacher params / student params (log scale)",
                 "share of the teacher's NDCG@10 kept, % (bars: 95% CI)", (ratios, [f"{r:.1f}×" for r in ratios]))):
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(positions, labels=labels)
            ax.set_xlabel(x_label)
            ax.set_ylabel(y_label)
            ax.set_title(title)
            ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
            ax.legend(loc="lower right" if ax is top else "lower left", frameon=False, fontsize=7)
        bottom.invert_xaxis()  # more compression to the left, as smaller students are on the top row
    if not panels:
        for ax in axes.flat:
            ax.text(0.5, 0.5, "no strategy was run at several student sizes\n(a suite pairing with `students:`)",
                    ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("kdbench: quality as the student shrinks" + (" (QUICK, reduced run: do not cite)" if quick else ""),
                 fontsize=10)
    return _save(fig, path)
