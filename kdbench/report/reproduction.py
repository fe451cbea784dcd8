"""A published table beside kdbench's runs of the same setup: `results/reproduction.md` and `.csv`.

A reproduction suite (e.g. `kdbench/suites/reproduce-rcekd-citeulike.yaml`) carries a `paper:`
block, the published values per method and metric and the protocol they were made under:

    paper:
      title: "RCE-KD (2025), MF 400 -> MF 20, CiteULike"
      protocol: ordered-mask-train      # the suite's protocol matching the paper's setup
      metrics: [recall@10, ...]         # of `results.METRICS`
      rows: {teacher: {recall@10: 0.0283, ...}, scratch: {...}, rce-kd: null}

`python -m kdbench reproduce --suite FILE` runs the suite into `results/reproduction/<name>/` and
stores the block there (`paper.json`); the tables are a pure function of those files, so
`python -m kdbench report` rebuilds them byte for byte. Per method and metric: the paper's value,
kdbench's mean ± sample standard deviation over the ok seeds under each of the suite's protocols,
and the relative difference (kdbench mean - paper) / paper.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from kdbench.store import atomic
from kdbench.families import PROTOCOLS
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.run.record import METRICS, SCRATCH, TEACHER, RunStore, record_protocol, safe_name
from kdbench.store.reading import read_mapping

FOLDER = "reproduction"
PAPER_FILE = "paper.json"
REPORT_NAME = "reproduction"
CSV_COLUMNS = ("suite", "method", "metric", "protocol", "paper", "mean", "std", "n_seeds", "rel_diff_pct")
METRIC_TITLES = {m: m.replace("ndcg", "NDCG").replace("recall", "Recall") for m in METRICS}  # NDCG@10, Recall@20


def reproduction_folder(results_dir: str | Path, suite_name: str) -> Path:
    return Path(results_dir) / FOLDER / safe_name(suite_name)


def write_paper(folder: Path, suite_name: str, paper: dict[str, Any]) -> Path:
    path = folder / PAPER_FILE
    # JSON is written with sorted keys: keep the table's row order beside the rows
    atomic.write_json(path, {"suite": suite_name, **paper, "row_order": list(paper["rows"])})
    return path


def load_reproductions(results_dir: str | Path) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(paper block, one row per stored run) for every reproduction under `results_dir`, by suite name."""
    root = Path(results_dir) / FOLDER
    found = []
    for paper_path in sorted(root.glob(f"*/{PAPER_FILE}")) if root.is_dir() else []:
        paper = read_mapping(paper_path, "run `python -m kdbench reproduce --suite FILE` again to rewrite it")
        found.append((paper, runs_frame(RunStore(paper_path.parent).records())))
    return found


def runs_frame(records) -> pd.DataFrame:
    """protocol, method, seed, status and the test metrics of each record."""
    rows = []
    for record in records:
        ok = record.get("status") == "ok"
        test = record.get("test") or {}
        rows.append({"protocol": record_protocol(record), "method": record["strategy"], "seed": record["seed"],
                     "status": "ok" if ok else "failed", "wall_seconds": record.get("wall_seconds", math.nan),
                     **{m: float(test[m]) if ok and m in test else math.nan for m in METRICS}})
    return pd.DataFrame(rows, columns=["protocol", "method", "seed", "status", "wall_seconds", *METRICS])


def reproduction_table(paper: dict[str, Any], runs: pd.DataFrame) -> pd.DataFrame:
    """Long table, `CSV_COLUMNS`: per method (the paper's rows in order, then the suite's other
    methods), metric and protocol (the paper's first), kdbench's mean, std and seeds and the
    relative difference from the paper's value in %."""
    metrics = list(paper["metrics"])
    protocols = [paper["protocol"]] + sorted(set(runs["protocol"]) - {paper["protocol"]})
    published = list(paper.get("row_order") or paper["rows"])
    methods = published + sorted(set(runs["method"]) - set(published),
                                           key=lambda m: (m != TEACHER, m != SCRATCH, m))
    ok = runs[runs["status"] == "ok"]
    rows = []
    for method in methods:
        published = paper["rows"].get(method) or {}
        for metric in metrics:
            for protocol in protocols:
                values = ok.loc[(ok["method"] == method) & (ok["protocol"] == protocol), metric].astype(float)
                mean = values.mean() if len(values) else math.nan
                value = published.get(metric, math.nan)
                rows.append({"suite": paper.get("suite", ""), "method": method, "metric": metric,
                             "protocol": protocol, "paper": value, "mean": mean,
                             "std": values.std(ddof=1) if len(values) > 1 else math.nan,
                             "n_seeds": len(values),
                             "rel_diff_pct": (mean - value) / value * 100 if value == value else math.nan})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def ordering_lines(paper: dict[str, Any], table: pd.DataFrame, metric: str = PRIMARY_METRIC) -> list[str]:
    """Whether scratch sits below every distilled method with a published value, and the order of
    those methods by `metric`, in the paper and under each protocol."""
    rows = paper["rows"]
    compared = [m for m in paper.get("row_order") or rows if m != TEACHER and (rows[m] or {}).get(metric)]
    if SCRATCH not in compared or len(compared) < 2:
        return []
    title = METRIC_TITLES.get(metric, metric)
    published = {m: paper["rows"][m][metric] for m in compared}
    lines = [f"- paper, {title}: {_order(published)}"]
    here = table[table["metric"] == metric]
    for protocol in dict.fromkeys(here["protocol"]):
        means = here[(here["protocol"] == protocol) & here["method"].isin(compared)].set_index("method")["mean"]
        means = means.dropna()
        if len(means) < len(compared):
            lines.append(f"- kdbench `{protocol}`, {title}: not every method has runs yet")
            continue
        below = [m for m in compared if m != SCRATCH and not means[SCRATCH] < means[m]]
        verdict = ("scratch below every distilled method, as in the paper" if not below
                   else f"scratch NOT below {', '.join(below)}")
        lines.append(f"- kdbench `{protocol}`, {title}: {_order(means.to_dict())} ({verdict})")
    return lines


def _order(values: dict[str, float]) -> str:
    return " > ".join(m for m, _ in sorted(values.items(), key=lambda item: (-item[1], item[0])))


def markdown(paper: dict[str, Any], table: pd.DataFrame, runs: pd.DataFrame) -> str:
    metrics = list(paper["metrics"])
    main = paper["protocol"]
    others = [p for p in dict.fromkeys(table["protocol"]) if p != main]
    headers = ["method", "seeds"]
    for metric in metrics:
        title = METRIC_TITLES.get(metric, metric)
        headers += [f"{title} paper", f"{title} kdbench", "Δ"]
    for protocol in others:
        headers += [f"seeds `{protocol}`"] + [f"{METRIC_TITLES.get(m, m)} `{protocol}`" for m in metrics]
    body = []
    for method in dict.fromkeys(table["method"]):
        rows = table[table["method"] == method]
        first = rows[rows["protocol"] == main].iloc[0]
        line = [f"**{method}**" if method in (TEACHER, SCRATCH) else method, str(int(first["n_seeds"]))]
        for metric in metrics:
            cell = rows[(rows["metric"] == metric) & (rows["protocol"] == main)].iloc[0]
            line += [_num(cell["paper"]), _mean_std(cell["mean"], cell["std"]), _pct(cell["rel_diff_pct"])]
        for protocol in others:
            line.append(str(int(rows[rows["protocol"] == protocol].iloc[0]["n_seeds"])))
            for metric in metrics:
                cell = rows[(rows["metric"] == metric) & (rows["protocol"] == protocol)].iloc[0]
                line.append(_mean_std(cell["mean"], cell["std"]))
        body.append(line)
    parts = [f"## {paper['title']}", ""]
    if paper.get("source"):
        parts += [f"Source: {paper['source']}", ""]
    described = "; ".join(f"`{p}`: {PROTOCOLS[p].summary}" for p in [main, *others] if p in PROTOCOLS)
    parts += [f"Suite `{paper.get('suite', '')}`. kdbench columns under `{main}` (the paper's setup); "
              f"Δ = (kdbench mean − paper) / paper. Beside it: the same cells under "
              f"{', '.join(f'`{p}`' for p in others) or 'no other protocol'}. Protocols: {described}.", "",
              tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]
    ordering = ordering_lines(paper, table)
    if ordering:
        parts += [f"Ordering by {METRIC_TITLES[PRIMARY_METRIC]}:", "", *ordering, ""]
    compute = runs.groupby("protocol")["wall_seconds"].sum(min_count=1)
    if len(compute):
        parts += ["Compute (sum of the runs' own wall times, teacher loads included): "
                  + ", ".join(f"`{p}` {compute[p] / 3600:.2f} h" for p in compute.index if compute[p] == compute[p])
                  + ".", ""]
    return "\n".join(parts)


def write_reproduction_report(results_dir: str | Path) -> list[Path]:
    """`results_dir/reproduction.md` and `.csv` from every stored reproduction; [] if there is none."""
    found = load_reproductions(results_dir)
    if not found:
        return []
    tables, sections = [], []
    for paper, runs in found:
        table = reproduction_table(paper, runs)
        tables.append(table)
        sections.append(markdown(paper, table, runs))
    text = ("# Reproductions of published tables\n\nGenerated by `python -m kdbench report` (or `python -m "
            "kdbench reproduce --suite FILE`) from the runs under `reproduction/`; do not edit by hand.\n\n"
            + "\n".join(sections))
    csv = pd.concat(tables, ignore_index=True).to_csv(index=False, float_format="%.6g", lineterminator="\n")
    paths = [Path(results_dir) / f"{REPORT_NAME}.md", Path(results_dir) / f"{REPORT_NAME}.csv"]
    with atomic.atomic_paths(paths) as (md_tmp, csv_tmp):
        md_tmp.write_text(text)
        csv_tmp.write_text(csv)
    return paths


def _num(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float, np.floating)) and math.isfinite(value) else "—"


def _mean_std(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f}"


def _pct(value: float) -> str:
    return f"{value:+.1f}%" if math.isfinite(value) else "—"
