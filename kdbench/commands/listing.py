"""`list`: what kdbench knows: the datasets, the backbones, the registered strategies (with the
backbone families each supports), and the tuned hyperparameters stored so far."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tabulate import tabulate

from kdbench.backbones import OPTION_KEYS, REPRESENTATIONS
from kdbench.data.loading import BUNDLED_DATASETS, downloadable_datasets
from kdbench.data.catalogue import CATALOGUE
from kdbench.families import FAMILIES
from kdbench.families.general import general_recommenders
from kdbench.families.sequential import SEQUENTIAL_MODELS
from kdbench.report.tuning_summary import BEST_COLUMN, load_summaries, summary_table
from kdbench.strategies import STRATEGIES

TUNED_COLUMNS = ["dataset", "pairing", "strategy", "complete", "pruned", "failed", "finished", BEST_COLUMN,
                 "best hyperparameters"]


def describe(results_dir: str | Path, all_datasets: bool = False) -> Iterator[str]:
    """The listing, block by block as each is known (every downloadable dataset's name with
    `all_datasets`); a damaged tuning summary stops it at the tuned hyperparameters."""
    yield "Datasets bundled (offline): " + ", ".join(BUNDLED_DATASETS)
    yield "Datasets of the catalogue (`data list`, `data fetch NAME`): " + ", ".join(CATALOGUE.names())
    downloadable = downloadable_datasets()
    if all_datasets:
        yield "Datasets RecBole downloads (needs internet): " + ", ".join(downloadable)
    else:
        yield (f"Datasets RecBole downloads (needs internet): {len(downloadable)} (--all-datasets lists them); "
               "your own: --data-path DIR with DATASET.inter")
    yield "\nBackbones (RecBole general recommenders, MODEL:DIM):"
    yield "  " + ", ".join(general_recommenders())
    yield "  feature strategies need representations: " + ", ".join(REPRESENTATIONS)
    yield "\nSequential backbones (RecBole sequential recommenders, MODEL:DIM[:OPTIONS], protocol leave-one-out):"
    for model in SEQUENTIAL_MODELS:
        options = ", ".join(f"{k}<n>: {v}" for k, v in OPTION_KEYS.get(model, {}).items())
        yield f"  {model}  (options {options}; e.g. {model}:64:{''.join(f'{k}1' for k in OPTION_KEYS.get(model, {}))})"
    rows = _strategy_rows()
    yield "\nStrategies:"
    yield tabulate(rows, headers=["name", "family", "backbones", "source", "defaults"], tablefmt="simple")
    summaries = load_summaries(results_dir)
    if summaries:
        table = summary_table(summaries)[TUNED_COLUMNS]
        yield f"\nTuned hyperparameters ({Path(results_dir) / 'tuning'}; `run --all` uses finished ones):"
        yield tabulate(table, headers="keys", tablefmt="simple", showindex=False, floatfmt=".4f")


def _strategy_rows() -> list[list[str]]:
    rows = []
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        supported = ", ".join(f.name for f in FAMILIES.values() if f.supports(name))
        supported += "; teacher files" if cls.file_teacher is not None else ""
        family = f"{cls.family} (variant of {cls.variant_of}, not in 'all')" if cls.variant_of else cls.family
        rows.append([name, family, supported, cls.paper, defaults])
    return rows
