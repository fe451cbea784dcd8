"""Size sweep: NDCG@10 of a backbone trained from scratch at several dimensions.

Used to choose the suite's teacher -> student pairings: a student size where scratch keeps
clearly less than the teacher leaves distillation a gap to close. The size rule reads the
VALIDATION split only (tuning and model selection never read test): a size is a candidate
student when its mean validation NDCG@10 is `SIZE_RULE` (50-70%) of the largest size's, and the
suggested student is the candidate closest to the band's middle (60%). Test NDCG@10 stays in the
table as a record of what the sizes score, not as an input to the choice.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from kdbench.store import atomic
from kdbench.run.cells import Cell
from kdbench.families import BackboneSpec, default_protocol
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.training.loop import TrainSettings


SWEEP_FOLDER = "sweep"  # the sweep's runs: results/sweep/runs/...
SIZE_RULE = (50.0, 70.0)  # % of the largest size's validation NDCG@10 a candidate student keeps
VALID_SHARE = "valid_share_of_largest_%"


def sweep_cells(dataset: str, model: str, dims: list[int], seeds: list[int], train: TrainSettings,
                data_path: str | None = None) -> list[Cell]:
    """Scratch cells at every size of `model` (`BPR`, or a sequential shape without its size,
    `SASRec:L1H1`), under the family's default protocol; the largest size is the reference."""
    shape = BackboneSpec.parse(model)
    sized = {dim: BackboneSpec.parse(str(replace(shape, dim=dim))) for dim in dims}  # checks heads | dim
    return [
        Cell(dataset, sized[max(dims)], sized[dim], "scratch", seed, train=train, data_path=data_path,
             protocol=default_protocol(shape))
        for dim in sorted(dims, reverse=True) for seed in seeds
    ]


def sweep_name(model: str) -> str:
    """`sasrec:l1h1` -> `SASRec-L1H1`: the model part of the sweep's file names."""
    shape = BackboneSpec.parse(model)
    return f"{shape.model}-{shape.options_text}" if shape.options else shape.model


def sweep_table(records: list[dict]) -> pd.DataFrame:
    """One row per size, largest first: test and validation NDCG@10 over seeds and their shares of
    the largest size's, and the size rule on validation (`in_size_rule`, `suggested`). The columns
    added for the validation split come after the earlier ones, so older readers of the CSV still
    find theirs in place. Validation NDCG@10 is the run's best (the epoch early stopping kept)."""
    rows = pd.DataFrame([
        {"model": r["student"], "dim": BackboneSpec.parse(r["student"]).dim, "seed": r["seed"],
         PRIMARY_METRIC: r["test"][PRIMARY_METRIC], "recall@10": r["test"]["recall@10"],
         "params": r["cost"]["params"], "best_epoch": r["training"]["best_epoch"],
         "hit_epoch_cap": r["training"]["hit_epoch_cap"], "valid": _valid(r)}
        for r in records if r.get("status") == "ok"
    ])
    table = rows.groupby(["model", "dim"], sort=False).agg(
        seeds=("seed", "count"), params=("params", "first"),
        ndcg10_mean=(PRIMARY_METRIC, "mean"), ndcg10_std=(PRIMARY_METRIC, "std"),
        recall10_mean=("recall@10", "mean"), best_epoch=("best_epoch", "mean"),
        capped=("hit_epoch_cap", "sum"),
        valid_ndcg10_mean=("valid", "mean"), valid_ndcg10_std=("valid", "std"),
    ).reset_index().sort_values("dim", ascending=False)
    table.insert(table.columns.get_loc("valid_ndcg10_mean"), "share_of_largest_%",
                 100 * table["ndcg10_mean"] / table["ndcg10_mean"].iloc[0])
    table[VALID_SHARE] = 100 * table["valid_ndcg10_mean"] / table["valid_ndcg10_mean"].iloc[0]
    low, high = SIZE_RULE
    table["in_size_rule"] = (table[VALID_SHARE] >= low) & (table[VALID_SHARE] <= high)
    distance = (table[VALID_SHARE] - (low + high) / 2).abs().where(table["in_size_rule"])
    table["suggested"] = False
    if distance.notna().any():
        table.loc[distance.idxmin(), "suggested"] = True
    return table


def _valid(record: dict) -> float:
    """The run's validation NDCG@10 at its kept epoch (NaN in a record without one)."""
    value = record.get(f"valid_{PRIMARY_METRIC}", (record.get("training") or {}).get("best_valid"))
    return float(value) if value is not None else math.nan


def write_sweep(records: list[dict], dataset: str, model: str, dims: list[int], seeds: list[int],
                train: TrainSettings, results_dir: str | Path) -> Path:
    """results_dir/size_sweep_DATASET_MODEL.md and .csv from the sweep's run records; the header
    gives the command that makes them."""
    results_dir = Path(results_dir)
    table = sweep_table(records)
    stem = results_dir / f"size_sweep_{dataset}_{sweep_name(model)}"
    atomic.write_text(stem.with_suffix(".csv"), table.to_csv(index=False, float_format="%.4f"))
    header = (
        f"# Size sweep: {model} trained from scratch on {dataset}\n\n"
        f"Command: `python -m kdbench sweep --dataset {dataset} --model {model} "
        f"--dims {','.join(map(str, dims))} --seeds {','.join(map(str, seeds))} --lr {train.learning_rate} "
        f"--batch-size {train.batch_size} --patience {train.patience} --epochs {train.max_epochs}`; training: "
        f"lr {train.learning_rate}, batch {train.batch_size}, patience {train.patience}, "
        f"max epochs {train.max_epochs}; protocol {default_protocol(BackboneSpec.parse(model))}. "
        f"Test NDCG@10 mean (std) over seeds; share of the largest model's NDCG@10.\n\n"
        f"Size rule (reads VALIDATION only; test is never used to choose): a size is a candidate "
        f"student (`in_size_rule`) when its mean validation NDCG@10 trained from scratch is "
        f"{SIZE_RULE[0]:.0f}-{SIZE_RULE[1]:.0f}% of the largest size's (`{VALID_SHARE}`), so that "
        f"distillation has room; `suggested`: the candidate closest to {sum(SIZE_RULE) / 2:.0f}%. "
        f"{_suggestion(table)}\n\n"
    )
    atomic.write_text(stem.with_suffix(".md"), header + tabulate(
        table, headers="keys", tablefmt="github", showindex=False, floatfmt=".4f") + "\n")
    return stem.with_suffix(".md")


def _suggestion(table: pd.DataFrame) -> str:
    suggested = table[table["suggested"]]
    if not len(suggested):
        return "No size is in the band: extend `--dims`."
    row = suggested.iloc[0]
    return (f"Suggested pairing: {table['model'].iloc[0]} -> {row['model']} (validation share "
            f"{row[VALID_SHARE]:.1f}%).")
