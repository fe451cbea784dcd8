"""Size sweep: NDCG@10 of a backbone trained from scratch at several dimensions.

Used to choose the suite's teacher -> student pairings: a student size where scratch keeps
clearly less than the teacher leaves distillation a gap to close.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from kdbench import atomic
from kdbench.cells import Cell
from kdbench.families import BackboneSpec, default_protocol
from kdbench.metrics import PRIMARY_METRIC
from kdbench.train import TrainSettings


SWEEP_FOLDER = "sweep"  # the sweep's runs: results/sweep/runs/...


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
    rows = pd.DataFrame([
        {"model": r["student"], "dim": BackboneSpec.parse(r["student"]).dim, "seed": r["seed"],
         PRIMARY_METRIC: r["test"][PRIMARY_METRIC], "recall@10": r["test"]["recall@10"],
         "params": r["cost"]["params"], "best_epoch": r["training"]["best_epoch"],
         "hit_epoch_cap": r["training"]["hit_epoch_cap"]}
        for r in records if r.get("status") == "ok"
    ])
    table = rows.groupby(["model", "dim"], sort=False).agg(
        seeds=("seed", "count"), params=("params", "first"),
        ndcg10_mean=(PRIMARY_METRIC, "mean"), ndcg10_std=(PRIMARY_METRIC, "std"),
        recall10_mean=("recall@10", "mean"), best_epoch=("best_epoch", "mean"),
        capped=("hit_epoch_cap", "sum"),
    ).reset_index().sort_values("dim", ascending=False)
    table["share_of_largest_%"] = 100 * table["ndcg10_mean"] / table["ndcg10_mean"].iloc[0]
    return table


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
        f"Test NDCG@10 mean (std) over seeds; share of the largest "
        f"model's NDCG@10.\n\n"
    )
    atomic.write_text(stem.with_suffix(".md"), header + tabulate(
        table, headers="keys", tablefmt="github", showindex=False, floatfmt=".4f") + "\n")
    return stem.with_suffix(".md")
