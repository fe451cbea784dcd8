"""The tuned hyperparameters read back: a study's summary (`<strategy>.json`), checked, and the suite's
cells with each finished study's choice (`tuned_cells`), refused where the strategy's code or fixed
settings changed since it was tuned."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from kdbench.run.cells import TEACHER, TUNED, Cell
from kdbench.store.reading import TUNING_SUMMARY_ADVICE, DamagedFile, read_mapping
from kdbench.strategies import STRATEGIES
from kdbench.tuning.studies import Study

# What readers of a study's summary rely on (`studies.write_best` writes them all): `tuned_cells` the
# first set, the tuning summary table all of them.
BEST_FIELDS = {"best_trial": (int, type(None)), "trials_counted": int, "budget": int, "finished": bool,
               "identity": dict, "best_hparams": dict, "best_training": dict}
SUMMARY_FIELDS = {**BEST_FIELDS, "dataset": str, "pairing": str, "strategy": str, "study": str, "storage": str,
                  "trials_complete": int, "trials_pruned": int, "trials_failed": int, "compute_seconds": (int, float)}


def read_summary(path: str | Path, fields: dict[str, Any] = SUMMARY_FIELDS) -> dict[str, Any]:
    """A study's `<strategy>.json`, checked; `DamagedFile` naming it if truncated or hand-edited."""
    summary = read_mapping(path, TUNING_SUMMARY_ADVICE)
    for key, kind in fields.items():
        if key not in summary:
            raise DamagedFile(path, f"lacks '{key}'", TUNING_SUMMARY_ADVICE)
        if isinstance(summary[key], bool) and kind is int or not isinstance(summary[key], kind):
            raise DamagedFile(path, f"'{key}' is {summary[key]!r}", TUNING_SUMMARY_ADVICE)
    if "identity" in fields and not {"strategy_code", "fixed_hparams"} <= set(summary["identity"]):
        raise DamagedFile(path, "'identity' lacks strategy_code or fixed_hparams", TUNING_SUMMARY_ADVICE)
    return summary


def read_best(results_dir: str | Path, cell: Cell) -> dict[str, Any] | None:
    study = Study(cell, 0, Path(results_dir))
    return read_summary(study.best_path, BEST_FIELDS) if study.best_path.exists() else None


def tuned_cells(cells: list[Cell], results_dir: str | Path, warn: Callable[[str], None] = print,
                quiet_untuned: bool = False) -> list[Cell]:
    """The suite's student cells again, with each strategy's tuned hyperparameters and training knobs,
    for every finished study whose strategy code and fixed settings still match (`warn`: why not; `quiet_untuned`: untuned ones not)."""
    tuned: list[Cell] = []
    warned: set[tuple] = set()
    for cell in cells:
        if cell.strategy == TEACHER or cell.variant == TUNED:
            continue
        best = read_best(results_dir, cell)
        key = (cell.dataset, cell.protocol, cell.pairing, cell.strategy)
        problem = None
        if best is None:
            problem = "not tuned"
        elif best["best_trial"] is None and best.get("spent", best["trials_counted"]) >= best["budget"]:
            problem = "no tuning trial completed"
        elif not best["finished"]:  # a summary from before epoch budgets counts trials
            problem = (f"tuning unfinished ({best.get('spent', best['trials_counted'])}/{best['budget']} "
                       f"{best.get('budget_unit', 'trials')})")
        elif best["identity"]["strategy_code"] != STRATEGIES.get(cell.strategy).code_version():
            problem = "tuned with other strategy code (tune again)"
        elif best["identity"]["fixed_hparams"] != json.loads(json.dumps(dict(cell.hparams))):
            problem = "tuned with other fixed hyperparameters"
        if problem:
            if key not in warned and not (quiet_untuned and best is None):
                warn(f"{cell.dataset} {cell.pairing} {cell.strategy}: {problem}; no tuned row")
                warned.add(key)
            continue
        hparams = tuple(sorted(best["best_hparams"].items()))
        train = replace(cell.train, **best["best_training"])
        tuned.append(replace(cell, hparams=hparams, train=train, variant=TUNED))
    return tuned
