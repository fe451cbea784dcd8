"""The tuning summary: `<results>/tuning/summary.md` (budget, trials, best value and hyperparameters,
compute, per strategy and pairing) and one plot per pairing of best-so-far validation NDCG@10
against trial number. A pure function of the studies' JSON files and storages (plus the tune
invocations kept in `tuning/meta.json`), so it rebuilds byte-identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from kdbench import atomic
from kdbench.metrics import VALID_PRIMARY_METRIC
from kdbench.record import SCRATCH, safe_name
from kdbench.stored import DamagedFile, read_mapping
from kdbench.tuning import read_summary

META = "meta.json"
BEST_VALUE = f"best_{VALID_PRIMARY_METRIC}"  # a study summary's best validation value (`tuning` writes it)
BEST_COLUMN = "best valid NDCG@10"  # its column in the summary table


def load_summaries(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every study's summary (`tuning/<dataset>/<pairing>/<strategy>.json`), checked."""
    root = Path(results_dir) / "tuning"
    return [read_summary(p) for p in sorted(root.glob("*/*/*.json"))] if root.is_dir() else []


def read_meta(results_dir: str | Path) -> dict[str, Any]:
    """tuning/meta.json: the tune invocations so far (none if absent)."""
    path = Path(results_dir) / "tuning" / META
    meta = read_mapping(path, "restore it or delete it (it only lists past invocations)") if path.exists() else {}
    if not isinstance(meta.setdefault("invocations", []), list):
        raise DamagedFile(path, "'invocations' is not a list", "restore it or delete it")
    return meta


def record_invocation(results_dir: str | Path, command: str, wall_seconds: float, trials_run: int) -> None:
    """Append one `tune` invocation (command, wall time, trials it ran) to tuning/meta.json."""
    path = Path(results_dir) / "tuning" / META
    meta = read_meta(results_dir)
    if trials_run:
        meta["invocations"].append({"command": command, "wall_seconds": round(wall_seconds, 1), "trials_run": trials_run})
    atomic.write_json(path, meta)


def trial_values(results_dir: str | Path, summary: dict[str, Any]) -> list[tuple[int, float | None]]:
    """(trial number, validation NDCG@10 or None if not complete) of a study, in trial order."""
    import optuna  # here, not at the top: a second of start-up for every command that never plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = Path(results_dir) / "tuning" / safe_name(summary["dataset"]) / safe_name(summary["pairing"]) / summary["storage"]
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{storage}")
    complete = optuna.trial.TrialState.COMPLETE
    return [(t.number, t.value if t.state == complete else None) for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("interrupted")]


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def summary_table(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{
        "dataset": s["dataset"], "pairing": s["pairing"], "strategy": s["strategy"],
        "budget": s["budget"], "complete": s["trials_complete"], "pruned": s["trials_pruned"],
        "failed": s["trials_failed"], "finished": "yes" if s["finished"] else "no",
        BEST_COLUMN: s[BEST_VALUE],
        "best hyperparameters": _format_params({**s["best_hparams"], **s["best_training"]}),
        "compute (min)": s["compute_seconds"] / 60,
    } for s in summaries]
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["dataset", "pairing", BEST_COLUMN], ascending=[True, True, False],
                                  kind="mergesort", na_position="last")
    return table


def write_tuning_report(results_dir: str | Path) -> list[Path]:
    root = Path(results_dir) / "tuning"
    summaries = load_summaries(results_dir)
    meta = read_meta(results_dir)
    table = summary_table(summaries)
    wall = sum(i["wall_seconds"] for i in meta["invocations"])
    compute = sum(s["compute_seconds"] for s in summaries)
    lines = [
        "# Tuning summary",
        "",
        "Every strategy of a pairing, `scratch` included, had the same Optuna budget (trials per study, "
        "TPE sampler, median pruner on per-epoch validation NDCG@10); the objective is the best validation "
        "NDCG@10 on the tuning seeds, never the test split. Studies are in `tuning/<dataset>/<pairing>/"
        "<strategy>.db` (Optuna SQLite), the chosen values in the `.json` beside each.",
        "",
    ]
    if summaries:
        settings = summaries[0]["tuning"]
        lines += [f"Budget: {settings['trials']} trials per study; tuning seeds {settings['seeds']}; "
                  f"TPE with {settings['startup_trials']} random start-up trials; median pruner after "
                  f"{settings['pruner']['startup_trials']} trials and {settings['pruner']['warmup_epochs']} epochs "
                  "(at least the pairing's min_epochs).", ""]
    lines += [f"Wall time of the tune invocations: {wall / 60:.1f} min; compute summed over trials: "
              f"{compute / 60:.1f} min.", ""]
    for invocation in meta["invocations"]:
        lines.append(f"- `{invocation['command']}`: {invocation['wall_seconds'] / 60:.1f} min, "
                     f"{invocation['trials_run']} trials")
    lines.append("")
    paths = []
    for (dataset, pairing), group in table.groupby(["dataset", "pairing"], sort=False) if len(table) else []:
        plot = root / f"progress_{safe_name(dataset)}_{safe_name(pairing)}.png"
        lines += [f"## {dataset}: {pairing}", "", f"![best so far]({plot.name})", "",
                  tabulate(group.drop(columns=["dataset", "pairing"]), headers="keys", tablefmt="github",
                           showindex=False, floatfmt=".4f"), ""]
        plot_progress(results_dir, [s for s in summaries if (s["dataset"], s["pairing"]) == (dataset, pairing)],
                      plot, f"{dataset}: {pairing}")
        paths.append(plot)
    summary_path = root / "summary.md"
    atomic.write_text(summary_path, "\n".join(lines).rstrip() + "\n")
    return [summary_path, *paths]


def plot_progress(results_dir: str | Path, summaries: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Best-so-far validation NDCG@10 against trial number, one line per strategy (pruned and failed
    trials keep the previous best); a bare Agg Figure without metadata, so the bytes are stable."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for summary in sorted(summaries, key=lambda s: s["strategy"]):
        best, xs, ys = None, [], []
        for position, (_, value) in enumerate(trial_values(results_dir, summary), start=1):
            if value is not None and (best is None or value > best):
                best = value
            if best is not None:
                xs.append(position)
                ys.append(best)
        style = "--" if summary["strategy"] == SCRATCH else "-"
        ax.plot(xs, ys, style, marker=".", linewidth=1.2, label=summary["strategy"])
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation NDCG@10 so far")
    ax.set_title(f"Tuning progress, {title}", fontsize=10)
    ax.legend(fontsize=8, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    return path
