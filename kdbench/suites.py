"""Suites: YAML files listing datasets, teacher -> student pairings, strategies and seeds.

    name: default
    datasets: [ml-100k]
    seeds: [0, 1, 2, 3, 4]
    strategies: all            # every registered strategy, or a list of names ([all, de+rrd])
    train: {learning_rate: 0.001, batch_size: 2048, patience: 10}
    pairings:
      - {teacher: "BPR:200", student: "BPR:20"}
      - {teacher: "LightGCN:64", student: "LightGCN:8", train: {...}, teacher_train: {...}}
    hparams: {de: {num_experts: 5}}   # per-strategy overrides (the run's label shows them)
    quick: {seeds: [0], strategies: [scratch, kd, rrd]}   # overrides applied by --quick
    tuning: {trials: 16, seeds: [100], startup_trials: 5, pruner: {startup_trials: 4, warmup_epochs: 10}}

`expand` turns a suite into cells: every dataset x pairing x (teacher row + strategies) x seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kdbench.backbones import BackboneSpec
from kdbench.errors import KdbenchError, choices
from kdbench.cells import TEACHER, Cell
from kdbench.strategies import STRATEGIES
from kdbench.train import TrainSettings

SUITE_KEYS = {"name", "description", "datasets", "seeds", "strategies", "train", "teacher_train",
              "pairings", "quick", "teacher_seed", "split_seed", "data_path", "hparams", "tuning"}
PAIRING_KEYS = {"teacher", "student", "train", "teacher_train"}


@dataclass
class Suite:
    name: str
    spec: dict[str, Any]
    quick: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}-quick" if self.quick else self.name


def default_suite_path() -> Path:
    return Path(str(resources.files("kdbench") / "suites" / "default.yaml"))


def load_suite(path: str | Path | None = None, quick: bool = False) -> Suite:
    path = Path(path) if path else default_suite_path()
    if not path.is_file():
        raise KdbenchError(f"suite file '{path}' does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise KdbenchError(f"suite file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise KdbenchError(f"suite file '{path}' must be a mapping with keys {choices(SUITE_KEYS)}")
    unknown = set(spec) - SUITE_KEYS
    if unknown:
        raise KdbenchError(f"suite '{path}': unknown keys {choices(unknown)}; valid: {choices(SUITE_KEYS)}")
    if quick:
        spec = {**spec, **(spec.get("quick") or {})}
    return Suite(spec.get("name", path.stem), spec, quick)


def _settings(raw: dict[str, Any] | None, base: TrainSettings | None = None) -> TrainSettings:
    fields = dict(base.as_dict()) if base else {}
    for key, value in (raw or {}).items():
        if key not in TrainSettings.__dataclass_fields__:
            raise KdbenchError(f"unknown training setting '{key}': valid: {choices(TrainSettings.__dataclass_fields__)}")
        fields[key] = value
    return TrainSettings(**fields)


def expand(suite: Suite, strategies_override: list[str] | None = None) -> list[Cell]:
    spec = suite.spec
    for key in ("datasets", "pairings", "seeds"):
        if not spec.get(key):
            raise KdbenchError(f"suite '{suite.name}' needs a non-empty '{key}' list")
    strategies = strategies_override or spec.get("strategies", "all")
    if isinstance(strategies, str):
        strategies = [strategies]
    # "all" is every registered strategy; composites (`de+rrd`) and others may be listed beside it
    strategies = list(dict.fromkeys(n for name in strategies for n in (STRATEGIES.names() if name == "all" else [name])))
    overrides = spec.get("hparams") or {}
    for name in list(strategies) + list(overrides):
        STRATEGIES.get(name)
    hparams = {name: tuple(sorted((overrides.get(name) or {}).items())) for name in strategies}
    base_train = _settings(spec.get("train"))
    cells: list[Cell] = []
    for dataset in spec["datasets"]:
        for pairing in spec["pairings"]:
            unknown = set(pairing) - PAIRING_KEYS
            if unknown:
                raise KdbenchError(f"suite '{suite.name}': unknown pairing keys {choices(unknown)}; valid: {choices(PAIRING_KEYS)}")
            train = _settings(pairing.get("train"), base_train)
            teacher_train = _settings(pairing.get("teacher_train") or spec.get("teacher_train"), train)
            common = dict(
                dataset=dataset,
                teacher=BackboneSpec.parse(str(pairing["teacher"])),
                student=BackboneSpec.parse(str(pairing["student"])),
                train=train,
                teacher_train=teacher_train,
                teacher_seed=int(spec.get("teacher_seed", 0)),
                data_path=spec.get("data_path"),
                split_seed=int(spec.get("split_seed", 2020)),
            )
            cells.append(Cell(strategy=TEACHER, seed=common["teacher_seed"], **common))
            for seed in spec["seeds"]:
                for name in strategies:
                    cells.append(Cell(strategy=name, seed=int(seed), hparams=hparams[name], **common))
    return cells
