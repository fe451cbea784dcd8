"""The compression frontier (issue 28): quality against deployed size in bytes, per dataset and
teacher, for scratch, the distillation methods run at several sizes and the compression baselines.

`frontier_points` takes the published-defaults rows (the variant size sweeps and compression cells
run under) of every dataset and teacher: the teacher, scratch, every strategy of the compression
family (alone or in a composite: `kd+ptq`) and every other strategy run at two or more student
sizes (the figure's points: a method run at one size adds a dot, not a curve), or with
`all_students` every distilled student. A point is on the Pareto front when no other point is at
most as large and at least as good (one of the two strictly). `best_by_size` answers "what should I
deploy within B bytes": for each budget (the dense size of each scratch student, and the
teacher's), the best point that fits, the best distilled student and the best compressed model,
among every published-defaults model (`all_students`: a method run at the suite's one student size
competes there too). `frontier_markdown` renders both, and the
compressed shapes' measured inference cost; `plot_frontier` draws `frontier.png`. Nothing is shown
(no section, no figure) unless a compression baseline was run, so leaderboards without one are
unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from kdbench.run.record import DEFAULTS, SCRATCH, TEACHER
from kdbench.report.formatting import fmt
from kdbench.report.schema import PRIMARY_MEAN
from kdbench.report.tables import LATENCY_BATCH, THROUGHPUT_BATCH
from kdbench.report.values import is_compression

POINT_COLUMNS = ["dataset", "teacher", "strategy", "family", "kind", "student", "model", "size_bytes", "params",
                 PRIMARY_MEAN, "n_seeds", "latency_p50_ms", "on_front"]
KINDS = (TEACHER, "scratch", "distillation", "compression")  # how a point is drawn and counted


def point_kind(strategy: str, family: str) -> str:
    """teacher, scratch, compression (any strategy with a compression part: `kd+ptq` too), or
    distillation."""
    if family == TEACHER:
        return TEACHER
    if strategy == SCRATCH:
        return "scratch"
    return "compression" if is_compression(family) else "distillation"


def has_compression(table: pd.DataFrame) -> bool:
    """Whether any row of the leaderboard is a compression baseline (the frontier's condition)."""
    return bool(len(table)) and any(is_compression(f) for f in table["family"].dropna())


def pareto_front(size: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Booleans: the points no other point dominates (size <= and quality >=, one strictly)."""
    on = np.ones(len(size), dtype=bool)
    for i in range(len(size)):
        better = (size <= size[i]) & (quality >= quality[i]) & ((size < size[i]) | (quality > quality[i]))
        on[i] = not better.any()
    return on


def frontier_points(table: pd.DataFrame, all_students: bool = False) -> pd.DataFrame:
    """One row per point (see the module docstring), per dataset and teacher, by size then name;
    distilled students of methods run at one size only with `all_students`."""
    rows = table[(table["variant"] == DEFAULTS) & (table["n_seeds"] > 0)] if len(table) else table
    groups = []
    for (dataset, teacher), group in rows.groupby(["dataset", "teacher"], sort=False):
        group = group[np.isfinite(group[PRIMARY_MEAN].astype(float)) & np.isfinite(group["size_bytes"].astype(float))]
        kinds = [point_kind(s, f) for s, f in zip(group["strategy"], group["family"])]
        sizes_run = group.groupby("strategy")["student"].transform("nunique")
        keep = [all_students or k != "distillation" or n >= 2 for k, n in zip(kinds, sizes_run)]
        chosen = group[keep].assign(kind=[k for k, kept in zip(kinds, keep) if kept])
        # a teacher or a compressed teacher is the same model in every pairing: one point each
        chosen = chosen.drop_duplicates(["strategy", "model"]).copy()
        if not len(chosen):
            continue
        chosen["on_front"] = pareto_front(chosen["size_bytes"].to_numpy(float), chosen[PRIMARY_MEAN].to_numpy(float))
        groups.append(chosen.sort_values(["size_bytes", "strategy"], kind="mergesort"))
    if not groups:
        return pd.DataFrame(columns=POINT_COLUMNS)
    return pd.concat(groups)[POINT_COLUMNS].reset_index(drop=True)


def best_by_size(points: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, teacher and budget (each scratch student's bytes, and the teacher's): the best
    point within it overall, among distilled students and among compressed models, and scratch."""
    rows = []
    for (dataset, teacher), group in points.groupby(["dataset", "teacher"], sort=False):
        budgets = group[group["kind"].isin(["scratch", TEACHER])].sort_values("size_bytes", kind="mergesort")
        for budget in budgets.to_dict("records"):
            fits = group[group["size_bytes"] <= budget["size_bytes"]]
            row = {"dataset": dataset, "teacher": teacher, "budget": budget["model"],
                   "budget_bytes": budget["size_bytes"]}
            for name, subset in (("best", fits), ("distillation", fits[fits["kind"] == "distillation"]),
                                 ("compression", fits[fits["kind"] == "compression"])):
                top = subset.sort_values([PRIMARY_MEAN, "size_bytes"], ascending=[False, True], kind="mergesort")
                found = top.iloc[0] if len(top) else None
                row[name] = _label(found) if found is not None else None
                row[f"{name}_ndcg"] = float(found[PRIMARY_MEAN]) if found is not None else math.nan
                row[f"{name}_bytes"] = float(found["size_bytes"]) if found is not None else math.nan
            row["scratch_ndcg"] = float(budget[PRIMARY_MEAN]) if budget["kind"] == "scratch" else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _label(point) -> str:
    """`kd BPR:5`, or the compressed shape for a compression baseline (`quant BPR:64 int8`)."""
    return f"{point['strategy']} {point['model']}" if point["kind"] != TEACHER else f"teacher {point['model']}"


def frontier_markdown(table: pd.DataFrame, shapes: pd.DataFrame | None) -> list[str]:
    """The leaderboard's frontier section (nothing without a compression baseline)."""
    if not has_compression(table):
        return []
    points = frontier_points(table, all_students=True)
    lines = ["## Compression frontier: the best model within each size", "",
             "Published defaults. A budget is a dense float32 student's size (4 bytes a parameter) or the "
             "teacher's; each cell is the best NDCG@10 among the models that fit in it (bytes of the deployed "
             "format: CSR for pruned tables, packed codes + per-row scales for quantised ones), every "
             "distilled student included. Figure: `frontier.png` (the methods run at two or more sizes).", ""]
    for (dataset, teacher), group in best_by_size(points).groupby(["dataset", "teacher"], sort=False):
        lines += [f"### {dataset}: teacher {teacher}", ""]
        rows = [[r.budget, fmt(r.budget_bytes, "{:,.0f}"), _cell(r.best, r.best_ndcg, r.best_bytes),
                 fmt(r.scratch_ndcg, "{:.4f}"), _cell(r.distillation, r.distillation_ndcg, r.distillation_bytes),
                 _cell(r.compression, r.compression_ndcg, r.compression_bytes)]
                for r in group.itertuples(index=False)]
        lines += [tabulate(rows, headers=["budget", "bytes", "best within it", "scratch", "best distilled",
                                          "best compressed"], tablefmt="github", disable_numparse=True), ""]
    return lines + compressed_cost_markdown(shapes)


def _cell(label: str | None, ndcg: float, size: float) -> str:
    return "—" if label is None else f"{label}: {ndcg:.4f} ({size:,.0f} B)"


def compressed_cost_markdown(shapes: pd.DataFrame | None) -> list[str]:
    """The compressed shapes `kdbench cost` timed with their kernels, beside the dense shape."""
    if shapes is None or not len(shapes) or not (shapes["kind"] == "compressed").any():
        return []
    lines = ["### Inference cost of the compressed shapes (CSR: torch.sparse.mm; int8/int4: torch._int_mm)", ""]
    rows = []
    for row in shapes[(shapes["kind"] == "compressed") & (shapes["batch_users"] == THROUGHPUT_BATCH)].itertuples(index=False):
        dense_name = row.model.split(" ")[0]
        same = shapes[(shapes["dataset"] == row.dataset) & (shapes["teacher"] == row.teacher)
                      & (shapes["catalogue"] == row.catalogue)]
        dense = same[(same["model"] == dense_name) & (same["batch_users"] == THROUGHPUT_BATCH)]
        single = same[(same["model"] == row.model) & (same["batch_users"] == LATENCY_BATCH)]
        ratio = float(row.users_per_s) / float(dense.iloc[0]["users_per_s"]) if len(dense) else math.nan
        rows.append([row.dataset, row.model, fmt(row.size_bytes, "{:,.0f}"), f"{int(row.n_items):,}",
                     fmt(row.users_per_s, "{:,.0f}"),
                     fmt(ratio, "{:.2f}×"), fmt(single.iloc[0]["median_ms"] if len(single) else math.nan, "{:.3f}")])
    headers = ["dataset", "shape", "bytes", "items", "users/s (256 a call)", "× its dense shape", "ms/user"]
    return lines + [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]


def plot_frontier(table: pd.DataFrame, path: str | Path, quick: bool = False) -> Path:
    """`frontier.png`: per dataset and teacher (a column), NDCG@10 against bytes (top) and against
    single-user latency where `kdbench cost` measured it (bottom), log x, the Pareto front dashed."""
    from kdbench.report.plots import _style

    with _style():
        return _plot_frontier(frontier_points(table), path, quick)


KIND_STYLE = {TEACHER: ("black", "*"), "scratch": ("tab:gray", "s"), "distillation": ("tab:blue", "o"),
              "compression": ("tab:purple", "D")}


def _plot_frontier(points: pd.DataFrame, path: str | Path, quick: bool) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from kdbench.report.plots import _save

    panels = list(points.groupby(["dataset", "teacher"], sort=False)) if len(points) else []
    n = max(len(panels), 1)
    fig = Figure(figsize=(6.4 * n, 9.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, ((dataset, teacher), group) in enumerate(panels):
        for row, (x_col, label) in enumerate((("size_bytes", "deployed size in bytes (log scale)"),
                                              ("latency_p50_ms", "ms per single-user call, `kdbench cost` (log scale)"))):
            ax = axes[row][col]
            _frontier_panel(ax, group, x_col)
            ax.set_xlabel(label)
            ax.set_ylabel("NDCG@10, mean over seeds")
            ax.set_title(f"{dataset}: teacher {teacher}")
    if not panels:
        for ax in axes.flat:
            ax.text(0.5, 0.5, "no compression baseline was run", ha="center", va="center", transform=ax.transAxes)
    handles = [Line2D([], [], marker=m, color=c, linestyle="", label=k) for k, (c, m) in KIND_STYLE.items()]
    handles.append(Line2D([], [], color="grey", linestyle="--", label="Pareto front"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle("kdbench: distillation against compression, quality vs deployed size and latency"
                 + (" (QUICK, reduced run: do not cite)" if quick else ""), fontsize=10)
    return _save(fig, path)


def _frontier_panel(ax, group: pd.DataFrame, x_col: str) -> None:
    points = group[np.isfinite(group[x_col].astype(float)) & (group[x_col].astype(float) > 0)]
    if points.empty:
        ax.text(0.5, 0.5, "not measured (`kdbench cost`)", ha="center", va="center", transform=ax.transAxes)
        return
    x, y = points[x_col].to_numpy(float), points[PRIMARY_MEAN].to_numpy(float)
    for kind, (colour, marker) in KIND_STYLE.items():
        mine = (points["kind"] == kind).to_numpy()
        ax.scatter(x[mine], y[mine], c=colour, marker=marker, s=40 if kind == TEACHER else 22, edgecolors="black",
                   linewidths=0.4, zorder=3)
    front = pareto_front(x, y)
    order = np.argsort(x[front], kind="mergesort")
    ax.plot(x[front][order], y[front][order], color="grey", linestyle="--", linewidth=0.8, zorder=2)
    for xi, yi, point in zip(x, y, points.to_dict("records")):
        ax.annotate(_label(point) if point["kind"] != "scratch" else f"scratch {point['model']}", (xi, yi),
                    fontsize=5.5, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
