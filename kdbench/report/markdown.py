"""The leaderboard page in Markdown: header facts, one ranked quality table and one cost table per
(dataset, pairing, variant) with its minimum detectable effect and its beyond-accuracy metrics
(`beyond_table`), the compression sweeps, the inference cost per model shape, the failed runs, and
the legend (`legend.LEGEND`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from kdbench.report.frontier import frontier_markdown
from kdbench.report.formatting import (
    TRAINED_TEACHER_MARK, duration, fmt, interval, mean_std, p_value, pct, significance_mark, throughput,
)
from kdbench.report.beyond_table import BEYOND_LEGEND, beyond_lines, has_beyond
from kdbench.report.compute import compute_markdown
from kdbench.report.cross_markdown import cross_markdown
from kdbench.report.budget import budget_cell, budget_line
from kdbench.report.leaderboard import Leaderboard
from kdbench.report.groups import GROUP_HEADERS, GROUPS, GROUPS_LEGEND, group_columns
from kdbench.report.legend import LEGEND, SEQUENTIAL_INTRO
from kdbench.report.ranking import RANKING_HEADERS, ranking_cells
from kdbench.report.schema import (
    POWER, PRIMARY_MEAN, PRIMARY_STD, RETAINED, TEACHER_PRIMARY, TUNED_VS_DEFAULTS, VS_SCRATCH,
)
from kdbench.report.teachers import teacher_line
from kdbench.report.tables import LATENCY_BATCH, RATIO_TOLERANCE, THROUGHPUT_BATCH
from kdbench.report.values import finite, is_sequential, spec_key
from kdbench.run.record import SCRATCH, TEACHER, TUNED, VARIANT_TITLES

MD_HEADERS = ["#", "strategy", "family", "NDCG@10", "vs scratch [95% CI]", "of teacher", "NDCG@20",
              "Recall@10", "Recall@20", "p", "p Holm", "p vs leader", "p seeds", "seeds", "params", "× smaller",
              "MB", "users/s [IQR]", "ms/user", "s/epoch", "epoch × scratch", "prepare s", "s to best",
              "ensemble teachers s", "best epoch", "cap hit", "failed"]
N_QUALITY = 14  # the first columns form the quality table; # and strategy repeat in the cost table


def render_markdown(table: pd.DataFrame, runs: pd.DataFrame, header: dict[str, Any], quick: bool = False,
                    effects: pd.DataFrame | None = None, shapes: pd.DataFrame | None = None,
                    ratios: pd.DataFrame | None = None, curves: pd.DataFrame | None = None,
                    top: list[str] | None = None) -> str:
    """The leaderboard page: header facts, then `top` (lines: the compute per dataset and the answer
    across datasets), one ranked table per (dataset, pairing) with its minimum
    detectable effect (`effects`, from `detectable_effects`), the compression sweeps (`curves`), the
    inference cost per model shape (`shapes`, `ratios`), failures, legend."""
    lines = _facts(header, quick) + list(top or [])
    sequential_started = False
    for (dataset, pairing), pairing_group in table.groupby(["dataset", "pairing"], sort=False):
        if not sequential_started and is_sequential(pairing_group["teacher"].iloc[0]):
            sequential_started = True
            lines += [SEQUENTIAL_INTRO, ""]
        section = _pairing_section(dataset, pairing, pairing_group, effects)
        teachers = [t for t in header.get("teachers", []) if (t["dataset"], t["pairing"]) == (dataset, pairing)]
        lines += section[:2] + [teacher_line(teachers[0] if teachers else None), ""] + section[2:]
    if curves is not None and len(curves):
        lines += _compression_markdown(curves)
    if (shapes is not None and len(shapes)) or not all(is_sequential(t) for t in table["teacher"]):
        lines += _inference_markdown(shapes, ratios)  # sequential shapes: per query (`kdbench cost`, else each run)
    failed = runs[runs["status"] != "ok"]
    if len(failed):
        lines += ["## Failed runs", ""]
        rows = [[r.dataset, r.pairing, r.strategy, r.seed,
                 r.error.splitlines()[0][:200] if isinstance(r.error, str) and r.error else "unknown error"]
                for r in failed.itertuples(index=False)]
        lines += [tabulate(rows, headers=["dataset", "pairing", "strategy", "seed", "error"],
                           tablefmt="github", disable_numparse=True), ""]
    lines += [LEGEND + (GROUPS_LEGEND if _has_groups(table) else "") + (BEYOND_LEGEND if has_beyond(table) else "")]
    return "\n".join(lines)


def _has_groups(table: pd.DataFrame) -> bool:
    """Whether any row has a light/heavy change (runs recording their users' training counts)."""
    return any(column in table and table[column].notna().any()
               for column in (group_columns(group)[0] for group in GROUPS))


def _group_cells(row: dict[str, Any]) -> list[str]:
    """The row's light and heavy change vs scratch, in %, with its interval."""
    cells = []
    for group in GROUPS:
        change, low, high = group_columns(group)[:3]
        cells.append(pct(row.get(change, math.nan), signed=True)
                     + interval(row.get(low, math.nan), row.get(high, math.nan)))
    return cells


def _facts(header: dict[str, Any], quick: bool) -> list[str]:
    """The title, the quick warning, the last completed invocation that ran cells and its wall time (the
    tables hold every stored run, whichever command made it, so the newest run's date can be later:
    an interrupted command records none), environment and run counts."""
    env = header["environment"]
    lines = ["# kdbench leaderboard" + (" (QUICK)" if quick else ""), ""]
    if quick:
        lines += ["> **Quick, reduced run (fewer seeds and strategies): a first look only. Do not cite "
                  "these numbers; cite `leaderboard.md` from the full suite.**", ""]
    command = f"`{header['command']}`" if header["command"] else "not recorded (no leaderboard meta file)"
    facts = [
        ("Last completed command that ran cells", command),
        ("Wall time of that command", duration(header["wall_seconds"])),
        ("kdbench / RecBole / torch / Python",
         f"{env['kdbench']} / {env['recbole']} / {env['torch']} / {env['python']}"),
        ("CPU", f"{env['cpu']} ({env['threads']} torch threads)"),
        ("GPU", env["gpu"]),
        ("Allocator of the training workers (runs)",  # kdbench.training.heap: training seconds depend on it
         ", ".join(f"{name} ({count})" for name, count in header.get("allocators", {}).items()) or "unknown"),
        ("Date (newest run)", header["date"] or "unknown"),
        ("Compute time (sum over runs)", duration(header["compute_seconds"])),
        ("Runs", f"{header['n_runs']} ({header['n_failed']} failed)"),
    ]
    return lines + [tabulate(facts, headers=["", ""], tablefmt="github"), ""]


def _pairing_section(dataset: str, pairing: str, pairing_group: pd.DataFrame,
                     effects: pd.DataFrame | None) -> list[str]:
    """One pairing: per variant, its quality table, its detectable effect, its cost table."""
    lines = [f"## {dataset}: {pairing.replace('->', ' → ')}", ""]
    variants = list(dict.fromkeys(pairing_group["variant"]))
    for variant, group in pairing_group.groupby("variant", sort=False):
        tuned = variant == TUNED
        if len(variants) > 1 or tuned:
            lines += [f"### {VARIANT_TITLES.get(variant, variant)}", ""]
        if tuned:
            lines += [budget_line(group), ""]
        records = group.to_dict(orient="records")
        rows = [_markdown_row(row) for row in records]
        grouped = _has_groups(group)
        quality = [row[:N_QUALITY] + (_group_cells(record) if grouped else []) + ranking_cells(record)
                   + ([row[-2], row[-1]] if tuned else []) for row, record in zip(rows, records)]
        headers = (MD_HEADERS[:N_QUALITY] + (list(GROUP_HEADERS) if grouped else []) + list(RANKING_HEADERS)
                   + (["trials (epochs)", "vs defaults"] if tuned else []))
        cost = [row[:2] + row[N_QUALITY:-2] for row in rows]
        lines += ["Quality:", "", tabulate(quality, headers=headers, tablefmt="github",
                                            disable_numparse=True), ""]
        if effects is not None and len(effects):
            found = effects[(effects["dataset"] == dataset) & (effects["pairing"] == pairing)
                            & (effects["variant"] == variant)]
            if len(found):
                lines += [_detectable_line(found.iloc[0].to_dict()), ""]
        lines += beyond_lines(group)
        lines += ["Cost:", "", tabulate(cost, headers=MD_HEADERS[:2] + MD_HEADERS[N_QUALITY:],
                                         tablefmt="github", disable_numparse=True), ""]
    return lines


def _compression_markdown(curves: pd.DataFrame) -> list[str]:
    """Per dataset, teacher and variant: a strategy per row, a student size per column."""
    lines = ["## Compression: the same methods at several student sizes", "",
             "NDCG@10, mean over seeds, and in brackets the share of the teacher's NDCG@10 it keeps "
             "(`compression.png` draws both with their 95% intervals).", ""]
    for (dataset, teacher, variant), group in curves.groupby(["dataset", "teacher", "variant"], sort=False):
        sizes = sorted(set(group["student"]), key=spec_key)
        first = group.drop_duplicates("student").set_index("student")
        lines += [f"### {dataset}: teacher {teacher} (NDCG@10 {group[TEACHER_PRIMARY].iloc[0]:.4f}), "
                  f"{VARIANT_TITLES.get(variant, variant).split(':')[0].lower()}", ""]
        headers = ["strategy"] + [f"{size} ({first.loc[size, 'compression_vs_teacher']:.1f}× smaller)"
                                  for size in sizes]
        rows = []
        order = sorted(set(group["strategy"]), key=lambda name: (name.split("@")[0] != SCRATCH, name))
        for strategy in order:
            found = group[group["strategy"] == strategy].set_index("student")
            rows.append([f"**{strategy}**" if strategy.split("@")[0] == SCRATCH else strategy] + [
                f"{found.loc[size, PRIMARY_MEAN]:.4f} ({found.loc[size, 'retained_pct']:.1f}%), "
                f"{int(found.loc[size, 'n_seeds'])} seeds" if size in found.index else "—" for size in sizes])
        lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return lines


def _inference_markdown(shapes: pd.DataFrame | None, ratios: pd.DataFrame | None) -> list[str]:
    """Per sitting: users/s of every shape at every catalogue, then each student's speed-up."""
    lines = ["## Inference cost per model shape", ""]
    if shapes is None or not len(shapes):
        return lines + ["Not measured: `python -m kdbench cost` measures every shape of the suite once "
                        "(then `python -m kdbench report`).", ""]
    models = shapes[shapes["kind"] == "model"]
    for (dataset, teacher), sitting in models.groupby(["dataset", "teacher"], sort=False):
        catalogues = list(dict.fromkeys(sitting["catalogue"]))
        items = sitting.drop_duplicates("catalogue").set_index("catalogue")["n_items"]
        lines += [f"### {dataset}: teacher {teacher} and its students, measured together", ""]
        headers = ["model", "params", "bytes"] + [
            f"{'synthetic' if catalogue != dataset else catalogue}, {int(items[catalogue]):,} items: users/s [IQR]"
            for catalogue in catalogues] + [f"ms/user, {int(items[c]):,} items" for c in catalogues]
        rows = [_shape_row(sitting[sitting["model"] == model], model, teacher, catalogues)
                for model in dict.fromkeys(sitting["model"])]
        lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        here = ratios[(ratios["dataset"] == dataset) & (ratios["teacher"] == teacher)] if ratios is not None else None
        if here is not None and len(here):
            rows = [[r.student, f"{int(r.n_items):,}" + (" (deployment size)" if r.deployment else ""),
                     fmt(r.speedup, "{:.2f}×"), fmt(r.roofline_speedup, "{:.2f}×"),
                     fmt(r.speedup_vs_roofline, "{:.2f}"), "yes" if r.matches_roofline else "no"]
                    for r in here.itertuples(index=False)]
            lines += ["Student's speed-up over the teacher (teacher's median call / student's, 256 users) and the "
                      "roofline's for the same sizes (U @ I.T + top-20, measured in the same sitting):", "",
                      tabulate(rows, headers=["student", "items", "speed-up", "roofline speed-up", "ratio",
                                              f"within {RATIO_TOLERANCE:.0%}"],
                               tablefmt="github", disable_numparse=True), ""]
    return lines


def _shape_row(mine: pd.DataFrame, model: str, teacher: str, catalogues: list[str]) -> list[str]:
    """One model shape of a sitting: users/s at every catalogue, then ms/user at every catalogue."""
    size = mine["size_bytes"].astype(float).iloc[0] if "size_bytes" in mine else math.nan  # cost files since issue 28
    row = [f"**{model}** (teacher)" if model == teacher else model,
           fmt(mine["params"].astype(float).iloc[0], "{:,.0f}"), fmt(size, "{:,.0f}")]
    for batch, pattern in ((THROUGHPUT_BATCH, None), (LATENCY_BATCH, "{:.3f}")):
        for catalogue in catalogues:
            found = mine[(mine["catalogue"] == catalogue) & (mine["batch_users"] == batch)]
            if not len(found):
                row.append("—")
            elif pattern is None:
                f = found.iloc[0]
                row.append(throughput(f["users_per_s"], f["users_per_s_iqr_low"], f["users_per_s_iqr_high"]))
            else:
                row.append(fmt(found.iloc[0]["median_ms"], pattern))
    return row


def _detectable_line(effect: dict[str, Any]) -> str:
    """One sentence on the table's minimum detectable effect (a `detectable_effects` row)."""
    m = effect["n_compared"]
    if not m or not finite(effect.get("mde_pct")):
        return ("Smallest detectable change: not estimable (no strategy has two seeds and per-user "
                "results shared with scratch), so no marks.")
    projected = {int(k.split("_")[2]): v for k, v in effect.items() if k.startswith("mde_pct_") and finite(v)}
    more = (f"; with {' / '.join(str(n) for n in projected)} seeds: "
            f"{' / '.join(f'±{v:.1f}%' for v in projected.values())}") if projected else ""
    level = "α = 0.05" if m == 1 else f"Holm's first step, α = 0.05/{m}"
    return (f"Smallest detectable change ({POWER:.0%} power, two-sided, {level}): **±{effect['mde_pct']:.1f}%** "
            f"of scratch's NDCG@10 with {effect['n_seeds']} seeds and {effect['n_users']} users "
            f"(±{effect['mde_single_pct']:.1f}% for a single comparison at α = 0.05){more}.")


def _strategy_name(get: dict[str, Any]) -> str:
    """The row's name: the teacher's model, scratch in bold, ⁂ where the teacher trained further."""
    if get["family"] == TEACHER:
        name = f"**teacher ({get['model']})**"
    elif get.get("method") == SCRATCH:
        name = f"**{get['strategy']}**"
    else:
        name = get["strategy"]
    flag = get.get("teacher_trained_further")
    if isinstance(flag, (bool, np.bool_)) and flag:
        name += f" {TRAINED_TEACHER_MARK}"
    return name


def _markdown_row(get: dict[str, Any]) -> list[str]:
    """A leaderboard row in `MD_HEADERS`' order, then the tuned table's trials and vs defaults."""
    mark = significance_mark(get["p_value_holm"])
    rank = get["rank"]
    return [
        "" if rank is pd.NA or rank is None or (isinstance(rank, float) and math.isnan(rank)) else str(int(rank)),
        _strategy_name(get), get["family"] or "",
        mean_std(get[PRIMARY_MEAN], get[PRIMARY_STD]) + (" " + mark if mark else ""),
        pct(get[VS_SCRATCH], signed=True) + interval(get["rel_change_ci_low"], get["rel_change_ci_high"]),
        pct(get[RETAINED]),
        mean_std(get["ndcg@20_mean"], get["ndcg@20_std"]),
        mean_std(get["recall@10_mean"], get["recall@10_std"]),
        mean_std(get["recall@20_mean"], get["recall@20_std"]),
        p_value(get["p_value_mixed"]), p_value(get["p_value_holm"]), p_value(get["p_value_vs_leader_holm"]),
        p_value(get["p_value_seeds"]),
        str(get["n_seeds"]),
        fmt(get["params"], "{:,.0f}"),
        fmt(get["compression_vs_teacher"], "{:.1f}"),
        fmt(get["size_bytes"] / 1e6 if finite(get["size_bytes"]) else math.nan, "{:.2f}"),
        throughput(get["throughput_users_per_s"], get["throughput_iqr_low"], get["throughput_iqr_high"]),
        fmt(get["latency_p50_ms"], "{:.3f}"),
        fmt(get["train_s_per_epoch"], "{:.3f}"),
        mean_std(get["epoch_time_ratio_vs_scratch"], get["epoch_time_ratio_std"], "{:.2f}"),
        mean_std(get["kd_prepare_s_mean"], get["kd_prepare_s_std"], "{:.1f}"),
        mean_std(get["time_to_best_s_mean"], get["time_to_best_s_std"], "{:.0f}"),
        _ensemble_cell(get.get("ensemble_teachers_s_mean", math.nan)),
        fmt(get["best_epoch_mean"], "{:.0f}"),
        pct(get["hit_epoch_cap_share"] * 100 if finite(get["hit_epoch_cap_share"]) else math.nan, digits=0),
        str(get["n_failed"]),
        budget_cell(get),
        pct(get.get(TUNED_VS_DEFAULTS, math.nan), signed=True),
    ]


def _ensemble_cell(seconds: float) -> str:
    """Seconds of the extra teachers a strategy needs: blank where it needs none, — where not recorded."""
    return "" if seconds == 0 else fmt(seconds, "{:,.0f}")


def render_markdown_page(board: Leaderboard) -> str:
    """`leaderboard.md`: `render_markdown` of a built leaderboard."""
    top = compute_markdown(board.compute) + ([] if board.quick else cross_markdown(list(board.cross)))
    page = render_markdown(board.rows, board.runs, board.header, board.quick, board.effects, board.shapes,
                           board.ratios, board.curves, top=top)
    frontier = frontier_markdown(board.table, board.shapes)  # [] without a compression baseline
    cut = page.rfind(LEGEND)  # the frontier goes before the legend
    return page if not frontier else page[:cut] + "\n".join(frontier) + "\n" + page[cut:]
