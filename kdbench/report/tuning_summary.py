"""The tuning summary: `<results>/tuning/summary.md` (budget and what each study spent, trials,
the defaults' and the best value, hyperparameters, compute, per strategy and pairing) and one plot
per pairing of best-so-far validation NDCG@10 against the training epochs spent. A pure function of
the studies' JSON files and storages (plus the tune invocations kept in `tuning/meta.json`), so it
rebuilds byte-identically.

A study's curve is flat when the second half of the epochs it spent raised its best validation
NDCG@10 by less than `FLAT` of the final value (the table's "2nd-half gain"): a budget is large
enough when every curve of the pairing is flat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from kdbench.store import atomic
from kdbench.run.cells import TEACHER
from kdbench.evaluation.metrics import VALID_PRIMARY_METRIC
from kdbench.run.record import SCRATCH, safe_name
from kdbench.store.reading import DamagedFile, read_mapping
from kdbench.tuning import read_summary

META = "meta.json"
BEST_VALUE = f"best_{VALID_PRIMARY_METRIC}"  # a study summary's best validation value (`tuning` writes it)
BEST_COLUMN = "best valid NDCG@10"  # its column in the summary table
FLAT = 0.01


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


def trial_values(results_dir: str | Path, summary: dict[str, Any]) -> list[tuple[int, float | None, int]]:
    """(trial number, validation NDCG@10 or None if not complete, epochs spent) of a study's
    counted trials, in trial order."""
    import optuna  # here, not at the top: a second of start-up for every command that never plots

    from kdbench.tuning.studies import _counted, _epochs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = Path(results_dir) / "tuning" / safe_name(summary["dataset"]) / safe_name(summary["pairing"]) / summary["storage"]
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{storage}")
    complete = optuna.trial.TrialState.COMPLETE
    return [(t.number, t.value if t.state == complete else None, _epochs(t)) for t in study.get_trials(deepcopy=False)
            if _counted(t)]


def best_so_far(values: list[tuple[int, float | None, int]]) -> list[tuple[int, float]]:
    """(epochs spent, best validation NDCG@10 so far) after each trial, from the first complete one."""
    points, best, epochs = [], None, 0
    for _, value, spent in values:
        epochs += spent
        if value is not None and (best is None or value > best):
            best = value
        if best is not None:
            points.append((epochs, best))
    return points


def second_half_gain(points: list[tuple[int, float]]) -> float | None:
    """Relative rise of the best value over the second half of the epochs spent (None: no curve)."""
    if not points:
        return None
    half = points[-1][0] / 2
    before = [value for epochs, value in points if epochs <= half]
    return (points[-1][1] - before[-1]) / points[-1][1] if before and points[-1][1] else None


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def summary_table(summaries: list[dict[str, Any]], gains: dict[str, float | None] | None = None) -> pd.DataFrame:
    rows = [{
        "dataset": s["dataset"], "pairing": s["pairing"], "strategy": s["strategy"],
        "budget": f"{s['budget']} {s.get('budget_unit', 'trials')}", "epochs spent": s.get("epochs_spent"),
        "complete": s["trials_complete"], "pruned": s["trials_pruned"],
        "failed": s["trials_failed"], "finished": "yes" if s["finished"] else "no",
        "defaults valid NDCG@10": s.get(f"defaults_{VALID_PRIMARY_METRIC}"),
        BEST_COLUMN: s[BEST_VALUE],
        "2nd-half gain (%)": None if (gains or {}).get(s["study"]) is None else 100 * gains[s["study"]],
        "best hyperparameters": _format_params({**s["best_hparams"], **s["best_training"]}),
        "compute (min)": s["compute_seconds"] / 60,
    } for s in summaries]
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["dataset", "pairing", BEST_COLUMN], ascending=[True, True, False],
                                  kind="mergesort", na_position="last")
    return table


def pairing_budget_line(summaries: list[dict[str, Any]]) -> str:
    """Whether a pairing's studies had equal budgets: "equal" only when every one is counted in
    epochs and of the same size (a budget in trials is not equal work: a pruned trial runs a few
    epochs, a complete one dozens); then the epochs each spent."""
    teachers = [s for s in summaries if s.get("strategy") == TEACHER]
    students = [s for s in summaries if s.get("strategy") != TEACHER] or summaries
    budgets = {(s["budget"], s.get("budget_unit", "trials")) for s in students}
    text = " / ".join(f"{b} {unit}" for b, unit in sorted(budgets))
    teacher_budgets = {(s["budget"], s.get("budget_unit", "trials")) for s in teachers}
    if teacher_budgets and teacher_budgets != budgets:  # the teacher is not among the compared strategies
        text += " (the teacher's study: " + " / ".join(f"{b} {unit}" for b, unit in sorted(teacher_budgets)) + ")"
    if any(unit != "epochs" for _, unit in budgets):
        verdict = "counted in trials, so NOT an equal budget in training epochs"
    elif len(budgets) == 1:
        verdict = "equal for every strategy, scratch included"
    else:
        verdict = "NOT equal across strategies"
    spent = [s["epochs_spent"] for s in summaries if s.get("epochs_spent") is not None]
    used = f"; epochs spent {min(spent)}-{max(spent)}" if spent else ""
    return f"Budget per strategy: {text}, {verdict}{used}."


def _settings_line(settings: dict[str, Any], budget: str | None = None) -> str:
    """The tuning settings, as written by this version (`budget`, `unit`) or before (`trials`);
    `budget`, the student studies' budget text (`_budgets_by_dataset`), replaces the settings' own."""
    pruner = settings["pruner"]
    if pruner.get("kind", "median") == "median":
        pruning = (f"median pruner after {pruner['startup_trials']} trials and {pruner['warmup_epochs']} epochs "
                   "(at least the pairing's min_epochs)")
    else:
        pruning = (f"successive halving from {pruner['first_rung']} epochs (at least the pairing's min_epochs), "
                   f"reduction factor {pruner['reduction_factor']}")
    if budget is None:
        own = f"{settings['budget']} {settings['unit']}" if "unit" in settings else f"{settings['trials']} trials"
        budget = f"{own} per study"
    first = "; the published defaults are each study's first trial" if settings.get("defaults_first") else ""
    return (f"Budget: {budget}; tuning seeds {settings['seeds']}; TPE with {settings['startup_trials']} "
            f"random start-up trials; {pruning}{first}.")


def _budgets_by_dataset(summaries: list[dict[str, Any]]) -> str | None:
    """The student studies' budget (a teacher study's is stated with its pairing): one for all, or
    one per dataset when they differ (a dataset's budget grows until its studies are flat); None
    without student studies."""
    by_dataset: dict[str, set[str]] = {}
    for summary in summaries:
        if summary.get("strategy") != TEACHER:
            by_dataset.setdefault(summary["dataset"], set()).add(
                f"{summary['budget']} {summary.get('budget_unit', 'trials')}")
    budgets = {budget for per_dataset in by_dataset.values() for budget in per_dataset}
    if len(budgets) <= 1:
        return f"{budgets.pop()} per student study" if budgets else None
    return "per student study, by dataset: " + "; ".join(f"{dataset} {' / '.join(sorted(per_dataset))}"
                                                          for dataset, per_dataset in by_dataset.items())


def markdown_table(table: pd.DataFrame) -> str:
    """One pairing's table as Markdown; a missing value (a study with too few trials for a 2nd-half
    gain) shows as "—", not as "nan"."""
    with_gaps = table.astype(object).where(table.notna(), None)  # tabulate writes None as `missingval`
    return tabulate(with_gaps, headers="keys", tablefmt="github", showindex=False, floatfmt=".4f", missingval="—")


def write_tuning_report(results_dir: str | Path) -> list[Path]:
    root = Path(results_dir) / "tuning"
    meta = read_meta(results_dir)
    values = {s["study"]: (s, trial_values(results_dir, s)) for s in load_summaries(results_dir)}
    # a summary from before epoch budgets lacks `epochs_spent`: its storage's trials hold it
    summaries = [s if s.get("epochs_spent") is not None else {**s, "epochs_spent": sum(e for _, _, e in trials)}
                 for s, trials in values.values()]
    curves = {study: best_so_far(trials) for study, (_, trials) in values.items()}
    table = summary_table(summaries, {study: second_half_gain(points) for study, points in curves.items()})
    wall = sum(i["wall_seconds"] for i in meta["invocations"])
    compute = sum(s["compute_seconds"] for s in summaries)
    lines = [
        "# Tuning summary",
        "",
        "Every strategy of a pairing, `scratch` included, had the same Optuna budget (TPE sampler, pruning "
        "on per-epoch validation NDCG@10); the objective is the best validation NDCG@10 on the tuning "
        "seeds (their mean), never the test split. Studies are in `tuning/<dataset>/<pairing>/"
        "<strategy>.db` (Optuna SQLite), the chosen values in the `.json` beside each. \"2nd-half gain (%)\": "
        f"how much the second half of the epochs a study spent raised its best value; below {FLAT:.0%} "
        "the curve is flat.",
        "",
    ]
    if summaries:
        lines += [_settings_line(summaries[0]["tuning"], _budgets_by_dataset(summaries)), ""]
    lines += [f"Wall time of the tune invocations: {wall / 60:.1f} min; compute summed over trials: "
              f"{compute / 60:.1f} min.", ""]
    for invocation in meta["invocations"]:
        lines.append(f"- `{invocation['command']}`: {invocation['wall_seconds'] / 60:.1f} min, "
                     f"{invocation['trials_run']} trials")
    lines.append("")
    paths = []
    for (dataset, pairing), group in table.groupby(["dataset", "pairing"], sort=False) if len(table) else []:
        plot = root / f"progress_{safe_name(dataset)}_{safe_name(pairing)}.png"
        mine = [s for s in summaries if (s["dataset"], s["pairing"]) == (dataset, pairing)]
        lines += [f"## {dataset}: {pairing}", "", pairing_budget_line(mine), "", f"![best so far]({plot.name})", "",
                  markdown_table(group.drop(columns=["dataset", "pairing"])), ""]
        plot_progress({s["strategy"]: curves[s["study"]] for s in summaries
                       if (s["dataset"], s["pairing"]) == (dataset, pairing)}, plot, f"{dataset}: {pairing}")
        paths.append(plot)
    summary_path = root / "summary.md"
    atomic.write_text(summary_path, "\n".join(lines).rstrip() + "\n")
    return [summary_path, *paths]


def plot_progress(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """Best-so-far validation NDCG@10 against the training epochs spent, one line per strategy (a
    pruned or failed trial moves a line right, not up), the second half of the budget shaded (where
    a flat curve rises by less than FLAT) and each line's label saying whether it is flat; a bare Agg
    Figure without metadata, so the bytes are stable."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for strategy, points in sorted(curves.items()):
        style = "--" if strategy == SCRATCH else "-"
        gain = second_half_gain(points)
        verdict = (" (no complete trial in the first half)" if gain is None else " (flat)" if gain < FLAT
                   else f" (+{100 * gain:.1f}%: not flat)")
        ax.plot([x for x, _ in points], [y for _, y in points], style, marker=".", linewidth=1.2,
                label=strategy + verdict)
    end = max((points[-1][0] for points in curves.values() if points), default=0)
    if end:
        ax.axvspan(end / 2, end, color="0.95", zorder=0,
                   label=f"second half of the budget: flat if the best rises < {FLAT:.0%}")
    ax.set_xlabel("training epochs spent (all trials and tuning seeds)")
    ax.set_ylabel("best validation NDCG@10 so far")
    ax.set_title(f"Tuning progress, {title}", fontsize=10)
    ax.legend(fontsize=8, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    return path
