"""Issue 31's malformed inputs, classes 1-4, in `test_malformed`'s corpus style: each ends in one
line `kdbench: error: ...` (or argparse's usage and error line), exit 2, no traceback, nothing written.

1. tracebacks (a stored identity of the wrong type, an infinite flag, a digit int() refuses, a plugin
   raising a BaseException subclass); 2. inputs accepted that must be refused; 3. strategy names
   that escape their folder; 4. hyperparameters that cannot fit the dataset, refused before training.
A property-based test then throws any number and any text at the numeric flags and hyperparameters.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import run_cli
from test_malformed import (STORAGE_PATH, assert_one_line_exit_2, plugin, snapshot, suite_file, suite_run, toy_data,
                            toy_run, workdir, write)  # noqa: F401  (workdir: a fixture)

from kdbench.errors import KdbenchError


def tune_suite(root: Path, **spec) -> list[str]:
    return ["tune", "--suite", suite_file(root, **spec), "--trials", "1"]


def tune_with_storage(study_name: str, identity):
    """`tune` on the toy suite, its scratch study's file already holding `study_name` with `identity`."""
    def setup(root: Path) -> list[str]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        (root / STORAGE_PATH).parent.mkdir(parents=True)
        stored = optuna.create_study(storage=f"sqlite:///{root / STORAGE_PATH}", study_name=study_name)
        stored.set_user_attr("identity", identity)
        return tune_suite(root)
    return setup


def users_dat(body: str):
    def setup(root: Path) -> list[str]:
        write(root / "users.dat", body)
        return ["data", "import", str(root / "users.dat"), "--format", "users-dat", "--name", "cite", "--out", "out"]
    return setup


def registering(name: str):
    """A plugin file registering a strategy under `name`."""
    return plugin("from kdbench.strategies import DistillationStrategy, register_strategy\n"
                  f"@register_strategy({name!r}, family='response')\n"
                  "class Bad(DistillationStrategy):\n"
                  "    needs_teacher = False\n"
                  "    def loss(self, batch):\n"
                  "        return None\n")


# class -> {id: (setup(workdir) -> argv, fragments of the error line)}
CASES = {
    "traceback": {
        "cost-min-seconds-inf": (lambda root: ["cost", "--suite", suite_file(root), "--min-seconds", "inf"],
                                 ["--min-seconds", "must be a finite number"]),
        "cost-min-seconds-nan": (lambda root: ["cost", "--suite", suite_file(root), "--min-seconds", "nan"],
                                 ["--min-seconds", "must be > 0"]),
        "users-dat-superscript-digit": (users_dat("2 1 \u00b2\n1 3\n"), ["'\u00b2' is not a non-negative integer"]),
        "users-dat-arabic-indic-digit": (users_dat("1 \u0663\n"), ["is not a non-negative integer"]),
        "plugin-raises-base-exception": (plugin("class Boom(BaseException):\n    pass\nraise Boom('no')\n"),
                                         ["failed to import: Boom: no"]),
        "plugin-raises-generator-exit": (plugin("raise GeneratorExit\n"), ["failed to import: GeneratorExit"]),
        "tune-study-identity-is-a-list": (tune_with_storage("toy/BPR:16->BPR:4/scratch", [1, 2]),
                                          ["other settings", "identity stored as list, not a mapping"]),
    },
    "accepted": {
        "tune-study-file-of-another-dataset": (tune_with_storage("ml-100k/BPR:16->BPR:4/scratch", {"space": {}}),
                                               ["holds the study 'ml-100k/BPR:16->BPR:4/scratch'"]),
        "suite-quick-unknown-key": (lambda root: suite_run(root, quick={"seedz": [0]}),
                                    ["unknown keys in 'quick'", "seedz"]),
        "suite-quick-unknown-key-with-quick": (lambda root: suite_run(root, quick={"stratgies": ["kd"]}) + ["--quick"],
                                               ["unknown keys in 'quick'", "stratgies"]),
        "tune-pruner-negative-warmup": (lambda root: tune_suite(root, tuning={"pruner": {"warmup_epochs": -1}}),
                                        ["warmup_epochs >= 0"]),
        "lr-inf": (lambda root: toy_run(root, "--lr", "inf"), ["--lr", "must be a finite number"]),
        "lr-nan": (lambda root: toy_run(root, "--lr", "nan"), ["--lr", "must be > 0"]),
        "teacher-lr-inf": (lambda root: toy_run(root, "--teacher-lr", "1e999"), ["--teacher-lr", "finite"]),
        "suite-learning-rate-inf": (lambda root: suite_run(root, train={"learning_rate": math.inf}),
                                    ["'learning_rate'", "finite number"]),
        "suite-weight-decay-nan": (lambda root: suite_run(root, train={"weight_decay": math.nan}),
                                   ["'weight_decay'", "finite number"]),
        "suite-teacher-weight-decay-negative": (lambda root: suite_run(root, teacher_train={"weight_decay": -1.0}),
                                                ["'weight_decay'", ">= 0"]),
        "hp-weight-inf": (lambda root: toy_run(root, "--strategy", "kd", "--hp", "weight=inf"), ["'weight'", "kd"]),
        "hp-weight-nan": (lambda root: toy_run(root, "--strategy", "kd", "--hp", "weight=nan"), ["'weight'", "kd"]),
        "hp-int-huge": (lambda root: toy_run(root, "--strategy", "rrd", "--hp", "K=1e400"), ["'K'", "must be int"]),
        "hp-bool-unknown-word": (lambda root: toy_run(root, "--strategy", "dcd", "--hp", "teacher_order=maybe"),
                                 ["'teacher_order'", "must be bool, got 'maybe'"]),
        "hp-bool-empty": (lambda root: toy_run(root, "--strategy", "freqd", "--hp", "normalize="),
                          ["'normalize'", "must be bool"]),
        "hp-probability-above-one": (lambda root: toy_run(root, "--strategy", "freqd", "--hp", "keep_prob=2"),
                                     ["'keep_prob'", "probability", "[0, 1]"]),
        "hp-dropout-above-one": (lambda root: toy_run(root, "--strategy", "fitnet-mlp", "--hp", "dropout=1.5"),
                                 ["'dropout'", "[0, 1]"]),
        "composite-probability-above-one": (lambda root: toy_run(root, "--strategy", "kd+freqd",
                                                                 "--hp", "freqd.keep_prob=3"),
                                            ["'freqd.keep_prob'", "[0, 1]"]),
        "address-without-ray": (lambda root: toy_run(root, "--address", "127.0.0.1:1"),
                                ["--address", "needs --executor ray"]),
        "seed-negative": (lambda root: toy_run(root, "--seed", "-1"), ["--seed", "must be >= 0"]),
        "import-min-interactions-negative": (lambda root: users_dat("1 0\n")(root) + ["--min-user-interactions", "-3"],
                                             ["--min-user-interactions", "must be >= 0"]),
    },
    "names": {
        "plugin-registers-teacher": (registering("teacher"), ["invalid strategy name 'teacher'", "reserved"]),
        "plugin-registers-all": (registering("all"), ["'all'", "reserved"]),
        "plugin-registers-empty": (registering(""), ["invalid strategy name ''"]),
        "plugin-registers-composite": (registering("de+rrd"), ["invalid strategy name 'de+rrd'"]),
        "plugin-registers-dot-dot": (registering(".."), ["invalid strategy name '..'"]),
        "plugin-registers-a-path": (registering("a/../../b"), ["invalid strategy name"]),
        "plugin-registers-uppercase": (registering("MyKD"), ["invalid strategy name 'MyKD'"]),
        "plugin-registers-space": (registering("my kd"), ["invalid strategy name 'my kd'"]),
        "plugin-registers-builtin": (registering("scratch"), ["strategy 'scratch' is already registered"]),
    },
    "before-training": {
        "rrd-top-n-zero": (lambda root: toy_run(root, "--strategy", "rrd", "--hp", "top_n=0"),
                           ["'top_n'", "rrd", "[1, 14]", "15 items"]),
        "rrd-k-huge": (lambda root: toy_run(root, "--strategy", "rrd", "--hp", "K=100000", "--hp", "top_n=10"),
                       ["top_n (10) must be >= K (100000)"]),
        "rrd-top-n-above-catalogue": (lambda root: toy_run(root, "--strategy", "rrd", "--hp", "top_n=500"),
                                      ["'top_n'", "[1, 14]"]),
        "dcd-top-n-above-catalogue": (lambda root: toy_run(root, "--strategy", "dcd"), ["'top_n'", "dcd", "got 500"]),
        "rrd-top-n-plus-l-above-catalogue": (lambda root: toy_run(root, "--strategy", "rrd", "--hp", "top_n=10",
                                                                  "--hp", "K=5", "--hp", "L=10"),
                                             ["top_n + L = 20", "15 items"]),
        "composite-part-top-n-zero": (lambda root: toy_run(root, "--strategy", "kd+rrd", "--hp", "rrd.top_n=0"),
                                      ["'top_n'", "rrd", "got 0"]),
        "suite-hparams-too-large": (lambda root: suite_run(root, strategies=["rrd"], hparams={"rrd": {"top_n": 99}}),
                                    ["'top_n'", "[1, 14]"]),
        "tune-fixed-hparam-too-large": (lambda root: tune_suite(root, strategies=["rrd"],
                                                                hparams={"rrd": {"top_n": 99}}),
                                        ["'top_n'", "[1, 14]"]),
    },
}
FLAT = {f"{kind}/{name}": case for kind, cases in CASES.items() for name, case in cases.items()}


@pytest.mark.parametrize("setup, fragments", list(FLAT.values()), ids=list(FLAT))
def test_a_malformed_input_is_one_line_exit_2_and_writes_nothing(capsys, workdir, setup, fragments):
    argv = setup(workdir)
    before = snapshot(workdir)
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_exit_2(code, err, fragments)
    assert snapshot(workdir) == before


def test_the_corpus_has_every_class():
    counts = {kind: len(cases) for kind, cases in CASES.items()}
    assert counts == {"traceback": 7, "accepted": 21, "names": 9, "before-training": 8}


# -- tuning studies (class 1: a wrong-typed identity; class 2: another dataset's study) ----------


def _study(root: Path, **spec):
    from kdbench.run.suites import expand, load_suite
    from kdbench.tuning import Study, study_cells

    cell = study_cells(expand(load_suite(suite_file(root, **spec))))[0]
    return Study(cell, 15, root / "results")


def _storage_with(study, name: str, identity) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.folder.mkdir(parents=True, exist_ok=True)
    stored = optuna.create_study(storage=f"sqlite:///{study.storage_path}", study_name=name)
    stored.set_user_attr("identity", identity)


@pytest.mark.parametrize("identity", [[1, 2], "identity", 7], ids=["list", "text", "number"])
def test_a_study_whose_stored_identity_is_not_a_mapping_is_refused_in_one_line(workdir, identity):
    from kdbench.tuning import TuningSettings, open_study

    study = _study(workdir)
    _storage_with(study, study.name, identity)
    before = study.storage_path.read_bytes()
    with pytest.raises(KdbenchError, match="other settings .*not a mapping"):
        open_study(study, TuningSettings.from_spec({}))
    assert study.storage_path.read_bytes() == before


def test_a_study_file_holding_another_datasets_study_is_refused_and_left_alone(workdir):
    from kdbench.tuning import TuningSettings, open_study

    study = _study(workdir)
    _storage_with(study, "other-dataset/BPR:16->BPR:4/scratch", {"space": {}})
    before = study.storage_path.read_bytes()
    with pytest.raises(KdbenchError, match="holds the study 'other-dataset/.*', not "):
        open_study(study, TuningSettings.from_spec({}))
    assert study.storage_path.read_bytes() == before


def test_a_run_record_config_that_is_not_a_mapping_differs_as_a_whole():
    from kdbench.run.record import identity_differences

    assert identity_differences([1], {"a": 1}) == ["config (stored as list, not a mapping)"]
    assert identity_differences({"a": 1}, {"a": 1}) == []


# -- registration names (class 3) ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["rrd", "kd-full", "fitnet_mlp2", "a"])
def test_a_well_formed_name_passes_the_check(name):
    from kdbench.strategies.base import check_strategy_name

    check_strategy_name(name)


def test_every_builtin_strategy_name_is_a_valid_name():
    from kdbench.strategies import STRATEGIES
    from kdbench.strategies.base import check_strategy_name

    for name in STRATEGIES.names():
        check_strategy_name(name)


# -- property-based: any number, any text, never a traceback ------------------------------------


class _Validated(Exception):
    """Raised in place of building the runner: every check passed, nothing trains."""


NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e999", "-0", "0", "", " ", "1_000", "0x10", "\u00b2", "\u0663"]),
    st.text(max_size=8),
)
FLAGS = ["--lr", "--teacher-lr", "--epochs", "--batch-size", "--patience", "--eval-every", "--seed",
         "--teacher-epochs", "--teacher-batch-size", "--workers"]
HPARAMS = [("kd", "weight"), ("kd", "T"), ("rrd", "K"), ("rrd", "top_n"), ("rrd", "T"), ("freqd", "keep_prob"),
           ("freqd", "normalize"), ("dcd", "teacher_order"), ("fitnet-mlp", "dropout"), ("kd", "nosuch")]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> str:
    return toy_data(tmp_path_factory.mktemp("toy"))


@settings(max_examples=60, deadline=2000, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(FLAGS), flag_value=NUMBER_TEXT, hparam=st.sampled_from(HPARAMS), hp_value=NUMBER_TEXT)
def test_any_number_or_text_in_a_flag_or_hyperparameter_is_exit_0_or_2(capsys, monkeypatch, tmp_path, toy_dir,
                                                                      flag, flag_value, hparam, hp_value):
    import kdbench.commands.execution as execution

    def stop(*args, **kwargs):
        raise _Validated

    monkeypatch.setattr(execution, "Runner", stop)
    tmp_path = tmp_path / uuid.uuid4().hex  # a fresh folder per example
    results = tmp_path / "results"
    strategy, key = hparam
    argv = ["run", "--dataset", "toy", "--data-path", toy_dir, "--strategy", strategy, "--results-dir", str(results),
            "--cache-dir", str(tmp_path / "cache"), f"{flag}={flag_value}", "--hp", f"{key}={hp_value}"]
    try:
        code, _, err = run_cli(capsys, *argv)
    except _Validated:
        code, err = 0, ""
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.strip().splitlines()[-1].startswith(("kdbench: error:", "python -m kdbench")), err
        assert not results.exists() and not (tmp_path / "cache").exists()


def test_a_catalogue_share_its_strategy_clips_is_accepted_and_the_default_suite_validates(monkeypatch):
    """CD's N = 3000 is more than ml-100k's 1,682 items: CD clips it, so it is not refused; every
    cell of the default suite (full and quick) passes the checks."""
    from kdbench.run.validation import validate_cells
    from kdbench.run.suites import expand, load_suite

    for quick in (False, True):
        cells = expand(load_suite(None, quick=quick))
        assert validate_cells(cells) == cells
    assert any(cell.strategy == "cd" and dict(cell.hparams).get("N", 3000) == 3000 for cell in expand(load_suite()))
