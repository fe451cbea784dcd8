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
from kdbench.strategies import STRATEGIES, strategy_code
from kdbench.strategies.base import tuned_through
from kdbench.tuning.studies import FIXED_IN_TRIALS, Study, source_cell

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
    for every finished study whose strategy code and fixed settings still match (`warn`: why not; `quiet_untuned`: untuned ones not).

    A strategy tuned through another's study (`tuned_through`: `ptq`, `kd+ptq`) takes that study's
    choice, its hyperparameters under the part's prefix; one that trains nothing (svd, prune, quant)
    has nothing to tune and gets a tuned row with its defaults wherever its pairing is tuned (has a
    study), so that the tuned table holds the same reference rows as the defaults one."""
    tuned: list[Cell] = []
    warned: set[tuple] = set()
    for cell in cells:
        if cell.strategy == TEACHER or cell.variant == TUNED:
            continue
        if not STRATEGIES.get(cell.strategy).trains:
            if _pairing_tuned(results_dir, cell):
                tuned.append(replace(cell, variant=TUNED))
            continue
        source = source_cell(cell)
        through = "" if source is cell else f" ({source.strategy}'s study tunes it)"
        best = read_best(results_dir, source)
        key = (cell.dataset, cell.protocol, cell.pairing, cell.strategy)
        problem = None
        if best is None:
            problem = "not tuned"
        elif best["best_trial"] is None and best.get("spent", best["trials_counted"]) >= best["budget"]:
            problem = "no tuning trial completed"
        elif not best["finished"]:  # a summary from before epoch budgets counts trials
            problem = (f"tuning unfinished ({best.get('spent', best['trials_counted'])}/{best['budget']} "
                       f"{best.get('budget_unit', 'trials')})")
        elif best["identity"]["strategy_code"] != strategy_code(source.strategy):
            problem = "tuned with other strategy code (tune again)"
        elif best["identity"]["fixed_hparams"] != json.loads(json.dumps(dict(source.hparams))):
            problem = "tuned with other fixed hyperparameters"
        elif source.hparams and not best["identity"].get(FIXED_IN_TRIALS):
            problem = ("tuned by trials that left out its fixed hyperparameters (before 2026-12-08; "
                       "`tune --force` tunes it again)")
        if problem:
            if key not in warned and not (quiet_untuned and best is None):
                warn(f"{cell.dataset} {cell.pairing} {cell.strategy}: {problem}{through}; no tuned row")
                warned.add(key)
            continue
        prefix = tuned_through(cell.strategy)[1]
        own = {} if source is cell else dict(cell.hparams)  # e.g. ptq.bits beside kd's choice
        hparams = tuple(sorted({**own, **{prefix + k: v for k, v in best["best_hparams"].items()}}.items()))
        train = replace(cell.train, **best["best_training"])
        tuned.append(replace(cell, hparams=hparams, train=train, variant=TUNED))
    return tuned


def _pairing_tuned(results_dir: str | Path, cell: Cell) -> bool:
    """Whether the cell's pairing has any tuning study in `results_dir` (its tuned table exists)."""
    folder = Study(cell, 0, Path(results_dir)).folder
    return folder.is_dir() and any(folder.glob("*.json"))
