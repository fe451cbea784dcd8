"""The tuned table's budget line: what each strategy's study was given and what it spent.

A study's summary (`kdbench.tuning.write_best`) stores its `budget`, the budget's unit
(`budget_unit`: `epochs`, or `trials` for studies made before epoch budgets) and the training epochs
its counted trials ran (`epochs_spent`). The table says "equal" only when every strategy of the
table had the same budget counted in epochs: a budget in trials is not equal in work (a pruned
trial runs a few epochs, a complete one dozens), whatever the trial counts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdbench.report.values import is_compression
from kdbench.run.record import TEACHER

EPOCHS = "epochs"


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and value != value)


def budget_line(group: pd.DataFrame) -> str:
    """The sentence above a tuned table (`tuning_budget`, `tuning_budget_unit`, `tuning_epochs_spent`
    and `tuning_trials` of its rows)."""
    studied = group["tuning_budget"].map(_present).astype(bool)
    # a compression row without a study trains nothing (svd, prune, quant): nothing to tune, no budget
    students = group[(group["family"] != TEACHER) & (studied | ~group["family"].map(is_compression))]
    have = students[studied[students.index]]
    units = sorted({str(u) if _present(u) else "trials" for u in have["tuning_budget_unit"]})
    budgets = sorted({int(b) for b in have["tuning_budget"]})
    if not budgets:
        size, equal = "unknown budget", "budgets not recorded"
    else:
        size = " / ".join(f"{b} {'/'.join(units)}" for b in budgets) + " per strategy"
        if units != [EPOCHS]:
            equal = ("the same for every strategy, scratch included (a budget in trials, NOT an equal "
                     "budget in training epochs)" if len(budgets) == 1 and len(have) == len(students)
                     else "NOT equal across strategies (a budget in trials)")
        elif len(budgets) == 1 and len(have) == len(students):
            equal = "equal for every strategy, scratch included"
        else:
            equal = "NOT equal across strategies"
    spent = [int(s) for s in have["tuning_epochs_spent"] if _present(s)]
    used = f"; epochs spent {min(spent)}-{max(spent)}" if spent else ""
    return (f"Each strategy's hyperparameters, learning rate and weight decay were tuned with Optuna on "
            f"validation NDCG@10 (tuning seeds disjoint from the evaluation seeds; test never scored): "
            f"**{size}**, {equal}{used}. See `tuning/summary.md`. \"trials (epochs)\": the trials "
            f"each study counted and the training epochs they ran; \"vs defaults\": change of mean NDCG@10 "
            f"against the same strategy with its published defaults.")


def budget_cell(row: dict[str, Any]) -> str:
    """A tuned row's 'trials (epochs)' cell: '14 (400)', '12' without epochs, '' untuned."""
    trials, epochs = row.get("tuning_trials"), row.get("tuning_epochs_spent")
    if not _present(trials):
        return ""
    return f"{int(trials)} ({int(epochs)})" if _present(epochs) else str(int(trials))
