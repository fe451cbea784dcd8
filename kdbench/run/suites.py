"""Suites: YAML files listing datasets, teacher -> student pairings, strategies and seeds.

    name: default
    datasets: [ml-100k]
    seeds: [0, 1, 2, 3, 4]
    strategies: all            # every registered strategy, or a list of names ([all, de+rrd])
    train: {learning_rate: 0.001, batch_size: 2048, patience: 10}   # eval_every: k validates every k epochs
    pairings:
      - {teacher: "BPR:200", student: "BPR:20"}
      - {teacher: "LightGCN:64", student: "LightGCN:8", train: {...}, teacher_train: {...}}
      - {teacher: "BPR:200", students: [BPR:5, BPR:10, BPR:20], strategies: [scratch, kd], seeds: [0, 1]}
    hparams: {de: {num_experts: 5}}   # per-strategy overrides (the run's label shows them)
    strategy_train: {cd: {weight_decay: 1.0e-8}}   # per-strategy training settings over the pairing's
    protocol: random           # a preset of families.PROTOCOLS, or a list of them (every cell under each)
    paper: {...}               # a published table to compare with (`python -m kdbench reproduce --suite`)
    quick: {seeds: [0], strategies: [scratch, kd, rrd]}   # overrides applied by --quick
    tuning: {trials: 16, seeds: [100], startup_trials: 5, pruner: {startup_trials: 4, warmup_epochs: 10}}

`expand` turns a suite into cells: every protocol x dataset x pairing x (teacher row + strategies) x seed.
A pairing with `students:` is a size sweep: one pairing per student size, each with a teacher row
(the teacher is trained once and cached), and its own `strategies` and `seeds` if given (else
the suite's). A sweep cell that equals another pairing's cell (same student, strategy, seed and
settings) is the same cell, run and stored once. Sweeps are not tuned (`tune` skips them): they
measure how the published methods behave as the student shrinks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kdbench.run.cells import TEACHER, Cell
from kdbench.errors import KdbenchError, choices
from kdbench.families import DEFAULT_PROTOCOL, BackboneSpec, family_of, get_protocol
from kdbench.store.paths import check_file
from kdbench.strategies import STRATEGIES
from kdbench.strategies.base import method_names
from kdbench.training.loop import TrainSettings

SUITE_KEYS = {"name", "description", "datasets", "seeds", "strategies", "train", "teacher_train",
              "pairings", "quick", "teacher_seed", "split_seed", "data_path", "hparams", "tuning",
              "protocol", "paper", "strategy_train"}
PAIRING_KEYS = {"teacher", "student", "students", "train", "teacher_train", "strategies", "seeds"}
FLOAT_SETTINGS = {"learning_rate", "weight_decay", "init_std"}


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


def bundled_suites() -> dict[str, Path]:
    """The suites shipped in kdbench/suites/, by file name without `.yaml` (`default`, `sequential`)."""
    folder = Path(str(resources.files("kdbench") / "suites"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def load_suite(path: str | Path | None = None, quick: bool = False) -> Suite:
    """A suite from a YAML file, or a bundled suite by name (`--suite sequential`) when no such file exists."""
    if path and not Path(path).exists() and str(path) in bundled_suites():
        path = bundled_suites()[str(path)]
    path = check_file(path, "suite file") if path else default_suite_path()
    try:
        spec = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise KdbenchError(f"suite file '{path}' is not UTF-8 text (byte offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise KdbenchError(f"suite file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise KdbenchError(f"suite file '{path}' must be a mapping with keys {choices(SUITE_KEYS)}")
    unknown = set(map(str, spec)) - SUITE_KEYS
    if unknown:
        raise KdbenchError(f"suite '{path}': unknown keys {choices(unknown)}; valid: {choices(SUITE_KEYS)}")
    overrides = _mapping(spec.get("quick"), f"suite '{path}': 'quick'")
    unknown = set(map(str, overrides)) - (SUITE_KEYS - {"quick"})
    if unknown:  # checked with or without --quick: a typo there is found before anyone runs it
        raise KdbenchError(f"suite '{path}': unknown keys in 'quick' {choices(unknown)}; "
                           f"valid: {choices(SUITE_KEYS - {'quick'})}")
    if quick:
        spec = {**spec, **overrides}
    return Suite(str(spec.get("name", path.stem)), spec, quick)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KdbenchError(f"{where} must be a mapping, got {value!r}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KdbenchError(f"{where} must be an integer, got {value!r}")
    return value


def _list(spec: dict[str, Any], key: str, suite: str) -> list[Any]:
    value = spec.get(key)
    if not isinstance(value, list) or not value:
        raise KdbenchError(f"suite '{suite}' needs a non-empty '{key}' list, got {value!r}")
    return value


def _settings(raw: Any, base: TrainSettings | None = None, where: str = "train") -> TrainSettings:
    fields = dict(base.as_dict()) if base else {}
    for key, value in _mapping(raw, f"'{where}'").items():
        if key not in TrainSettings.__dataclass_fields__:
            raise KdbenchError(f"unknown training setting '{key}': valid: {choices(TrainSettings.__dataclass_fields__)}")
        kind = (int, float) if key in FLOAT_SETTINGS else int
        if isinstance(value, bool) or not isinstance(value, kind):
            wanted = "a number" if key in FLOAT_SETTINGS else "an integer"
            raise KdbenchError(f"training setting '{key}' in '{where}' must be {wanted}, got {value!r}")
        if key in FLOAT_SETTINGS and not (math.isfinite(value) and value >= 0):
            raise KdbenchError(f"training setting '{key}' in '{where}' must be a finite number >= 0, got {value!r}")
        if key == "learning_rate" and not value > 0:
            raise KdbenchError(f"training setting 'learning_rate' in '{where}' must be > 0, got {value!r}")
        fields[key] = value
    return TrainSettings(**fields)


def suite_protocols(suite: Suite, override: list[str] | None = None) -> list[str]:
    """The suite's protocol presets (`protocol:`, a name or a list; default `random`), or `override`."""
    value = override or suite.spec.get("protocol", DEFAULT_PROTOCOL)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise KdbenchError(f"suite '{suite.name}': 'protocol' must be a protocol name or a list of them, got {value!r}")
    for protocol in names:
        get_protocol(protocol)
    return list(dict.fromkeys(names))


def expand(suite: Suite, strategies_override: list[str] | None = None,
           protocols_override: list[str] | None = None, sweeps: bool = True,
           datasets_only: list[str] | None = None) -> list[Cell]:
    """The suite's cells, in suite order, each once. `strategies_override` (`run --strategy`) replaces
    the suite's strategies and narrows a pairing's own list to the names in both; `protocols_override`
    (`--protocol`) replaces the suite's protocols; `sweeps=False` leaves out the pairings that sweep
    student sizes (`students:`); `datasets_only` (`--dataset`) keeps those of the suite's datasets, so
    a grid can finish one dataset before the next (the cells, studies and their identities are the
    suite's own)."""
    spec = suite.spec
    name = suite.name
    datasets = [str(d) for d in _list(spec, "datasets", name)]
    if datasets_only:
        unknown = [d for d in datasets_only if d not in datasets]
        if unknown:
            raise KdbenchError(f"dataset '{unknown[0]}' is not in suite '{name}': valid: {choices(datasets)}")
        datasets = [d for d in datasets if d in datasets_only]
    pairings = _list(spec, "pairings", name)
    seeds = _seeds(spec, f"suite '{name}'")
    strategies = _strategy_names(strategies_override or spec.get("strategies", "all"), f"suite '{name}'")
    overrides = _mapping(spec.get("hparams"), f"suite '{name}': 'hparams'")
    for strategy in list(overrides):
        STRATEGIES.get(strategy)
    protocols = suite_protocols(suite, protocols_override)
    strategy_train = _mapping(spec.get("strategy_train"), f"suite '{name}': 'strategy_train'")
    for strategy in strategy_train:
        if strategy not in strategies:
            raise KdbenchError(f"suite '{name}': 'strategy_train' names '{strategy}', which the suite does not run: "
                               f"valid: {choices(strategies)}")
    base_train = _settings(spec.get("train"))
    teacher_seed = _int(spec.get("teacher_seed", 0), f"suite '{name}': 'teacher_seed'")
    split_seed = _int(spec.get("split_seed", 2020), f"suite '{name}': 'split_seed'")
    data_path = spec.get("data_path")
    if data_path is not None and not isinstance(data_path, str):
        raise KdbenchError(f"suite '{name}': 'data_path' must be a folder path, got {data_path!r}")
    cells: list[Cell] = []
    for protocol, dataset in ((p, d) for p in protocols for d in datasets):
        for pairing in pairings:
            students = _students(pairing, name)
            if "students" in pairing and not sweeps:
                continue
            where = f"suite '{name}': pairing {pairing['teacher']}"
            own = _strategy_names(pairing["strategies"], where) if "strategies" in pairing else None
            names = strategies if own is None else (
                [s for s in own if s in strategies] if strategies_override else own)
            # `all` means every strategy the pairing's family supports; a name given explicitly is
            # kept (and refused by validate_cells with the family's valid choices if it does not apply)
            family = family_of(BackboneSpec.parse(str(pairing["teacher"])))
            listed = _explicit_names(pairing.get("strategies")) | _explicit_names(
                strategies_override or spec.get("strategies", "all"))
            names = [s for s in names if family.supports(s) or s in listed]
            hparams = {s: tuple(sorted(_mapping(overrides.get(s), f"suite '{name}': hparams of '{s}'").items()))
                       for s in names}
            pairing_seeds = _seeds(pairing, where) if "seeds" in pairing else seeds
            train = _settings(pairing.get("train"), base_train)
            teacher_train = _settings(pairing.get("teacher_train") or spec.get("teacher_train"), train, "teacher_train")
            by_strategy = {s: _settings(strategy_train[s], train, f"strategy_train: {s}") for s in strategy_train}
            for student in students:
                common = dict(dataset=dataset, teacher=BackboneSpec.parse(str(pairing["teacher"])), student=student,
                              train=train, teacher_train=teacher_train, teacher_seed=teacher_seed,
                              data_path=data_path, split_seed=split_seed, protocol=protocol)
                cells.append(Cell(strategy=TEACHER, seed=teacher_seed, **common))
                for seed in pairing_seeds:
                    for strategy in names:
                        cells.append(Cell(strategy=strategy, seed=seed, hparams=hparams[strategy],
                                          **{**common, "train": by_strategy.get(strategy, train)}))
    return list(dict.fromkeys(cells))


def _strategy_names(value: Any, where: str) -> list[str]:
    """`all` (every registered strategy but variants: `method_names`) and names (composites such
    as `de+rrd` too), each checked."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise KdbenchError(f"{where}: 'strategies' must be 'all' or a list of names, got {value!r}")
    names = list(dict.fromkeys(n for s in value for n in (method_names() if s == "all" else [s])))
    for strategy in names:
        STRATEGIES.get(strategy)
    return names


def _explicit_names(value: Any) -> set[str]:
    """The names a `strategies:` value lists by name (not through `all`)."""
    if isinstance(value, str):
        value = [value]
    return {s for s in value or [] if isinstance(s, str) and s != "all"}


def _seeds(spec: dict[str, Any], where: str) -> list[int]:
    value = spec.get("seeds")
    if not isinstance(value, list) or not value:
        raise KdbenchError(f"{where} needs a non-empty 'seeds' list, got {value!r}")
    return [_int(s, f"{where}: each seed") for s in value]


def _students(pairing: Any, suite: str) -> list[BackboneSpec]:
    """A pairing's student, or the sizes its `students:` list sweeps."""
    if not isinstance(pairing, dict) or "teacher" not in pairing or ("student" in pairing) == ("students" in pairing):
        raise KdbenchError(f"suite '{suite}': each pairing must be a mapping with 'teacher' and either 'student' "
                           f"(MODEL:DIM) or 'students' (a list of MODEL:DIM), got {pairing!r}")
    unknown = set(pairing) - PAIRING_KEYS
    if unknown:
        raise KdbenchError(f"suite '{suite}': unknown pairing keys {choices(unknown)}; valid: {choices(PAIRING_KEYS)}")
    if "student" in pairing:
        return [BackboneSpec.parse(str(pairing["student"]))]
    students = pairing["students"]
    if not isinstance(students, list) or not students:
        raise KdbenchError(f"suite '{suite}': 'students' of pairing {pairing['teacher']} must be a non-empty list "
                           f"of MODEL:DIM, got {students!r}")
    return list(dict.fromkeys(BackboneSpec.parse(str(s)) for s in students))
