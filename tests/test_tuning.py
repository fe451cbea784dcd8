"""Tuning: equal budgets, studies Optuna can load, resume without repeating a trial, never the test split;
and result identity: a changed default or strategy code makes a stored cell stale."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml

import kdbench.training.loop as train_module
import kdbench.run.work as work_module
from conftest import write_interactions
from kdbench.run.cells import TUNED, Cell
from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.runner import Runner
from kdbench.search_space import SHARED_TRAINING_SPACE, CatalogueShare, LogUniform
from kdbench.strategies import STRATEGIES
from kdbench.strategies.kd import KD
from kdbench.training.loop import TrainSettings
from kdbench.tuning import TuningSettings, read_best, tuned_cells

SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0, 1],
    "strategies": ["scratch", "kd"],
    "train": {"max_epochs": 3, "batch_size": 4096, "patience": 10},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
    "tuning": {"trials": 2, "seeds": [100], "startup_trials": 1, "pruner": {"startup_trials": 1, "warmup_epochs": 1}},
}


@pytest.fixture
def suite_dir(tmp_path):
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(tmp_path / "data")}))
    return tmp_path


def _tune_args(root: Path, *extra: str) -> list[str]:
    return ["tune", "--suite", str(root / "suite.yaml"), "--results-dir", str(root / "results"),
            "--cache-dir", str(root / "cache"), "--workers", "1", *extra]


def _study(root: Path, strategy: str) -> optuna.Study:
    path = root / "results" / "tuning" / "toy" / "BPR-8_to_BPR-4" / f"{strategy}.db"
    return optuna.load_study(study_name=f"toy/BPR:8->BPR:4/{strategy}", storage=f"sqlite:///{path}")


def _finished_trials(db: Path) -> int:
    """Finished trials in a study's SQLite file, read-only: opening it with Optuna while the tuner is
    creating it would race the tuner's schema creation."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')").fetchone()[0]
    except sqlite3.Error:  # the tables are not there yet, or the file is locked for a write
        return 0


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state != optuna.trial.TrialState.RUNNING
            and not t.user_attrs.get("interrupted")]


def test_tune_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--help"])
    assert exit_info.value.code == 0
    assert "--trials" in capsys.readouterr().out


@pytest.mark.slow
def test_tuning_gives_every_strategy_the_same_budget_and_never_scores_the_test_split(suite_dir, monkeypatch):
    scored = []
    original = train_module.full_ranking

    def watched(model, loader, config):
        scored.append(loader)
        if any(loader is data.test for data in work_module._DATA.values()):
            raise AssertionError("the test split was scored while tuning")
        return original(model, loader, config)

    from kdbench.run.suites import expand, load_suite

    # the teacher (whose own row is scored on test) is trained and cached first; then every
    # scoring call, validation or test, goes through the watched function
    Runner(suite_dir / "results", suite_dir / "cache").teachers(expand(load_suite(suite_dir / "suite.yaml")))
    monkeypatch.setattr(train_module, "full_ranking", watched)
    monkeypatch.setattr(work_module, "full_ranking", watched)
    assert main(_tune_args(suite_dir)) == 0
    assert scored  # validation was scored, through the watched function
    for strategy in ("scratch", "kd"):
        study = _study(suite_dir, strategy)
        assert len(_counted(study)) == 2  # the same budget, scratch included
        best = read_best(suite_dir / "results", Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4),
                                                     strategy, 0))
        assert best["finished"] and best["budget"] == 2 and best["trials_counted"] == 2
        complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
        assert best["best_valid_ndcg@10"] == max(t.value for t in complete)
        assert set(best["best_training"]) == set(SHARED_TRAINING_SPACE)
    assert set(_study(suite_dir, "kd").trials[0].params) == {"weight", "K", "tau", *SHARED_TRAINING_SPACE}
    assert set(_study(suite_dir, "scratch").trials[0].params) == set(SHARED_TRAINING_SPACE)
    assert (suite_dir / "results" / "tuning" / "summary.md").is_file()
    assert (suite_dir / "results" / "tuning" / "progress_toy_BPR-8_to_BPR-4.png").is_file()


@pytest.mark.slow
def test_a_killed_tuning_run_resumes_without_repeating_a_finished_trial(suite_dir):
    slow = {**SUITE, "data_path": str(suite_dir / "data"), "train": {"max_epochs": 40, "batch_size": 512}}
    (suite_dir / "suite.yaml").write_text(yaml.safe_dump(slow))  # trials of a second or more: time to kill
    command = [sys.executable, "-m", "kdbench", *_tune_args(suite_dir, "--trials", "4")]
    log = suite_dir / "tune.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    db = suite_dir / "results" / "tuning" / "toy" / "BPR-8_to_BPR-4" / "kd.db"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _finished_trials(db) == 0:
        time.sleep(0.2)
    assert process.poll() is None, f"the tuning run ended before it could be killed: {log.read_text()[-2000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = [t for t in _study(suite_dir, "kd").get_trials() if t.state.is_finished()]
    assert 0 < len(finished_before) < 4, "the kill did not fall mid-way"
    assert main(_tune_args(suite_dir, "--trials", "4")) == 0
    after = _study(suite_dir, "kd").get_trials()
    counted = [t for t in after if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == 4
    for trial in finished_before:  # kept as they were, not run again
        again = after[trial.number]
        assert (again.state, again.params, again.value) == (trial.state, trial.params, trial.value)
    assert len(_counted(_study(suite_dir, "scratch"))) == 4
    for strategy in ("scratch", "kd"):  # a trial cut off once it had its parameters is asked again with
        trials = _study(suite_dir, strategy).get_trials()  # them, to go on from what it kept (`tuning.resume`)
        for cut in (t for t in trials if t.user_attrs.get("interrupted") and "hparams" in t.user_attrs):
            taken_up = [t for t in trials if t.user_attrs.get("resumes") == cut.number]
            assert len(taken_up) == 1 and taken_up[0].user_attrs["hparams"] == cut.user_attrs["hparams"]
            assert taken_up[0].user_attrs["progress"] == cut.user_attrs.get("progress", taken_up[0].user_attrs["progress"])
    assert not list((suite_dir / "cache").glob("resume/trials/*"))  # removed once each trial was recorded
    # and the studies hold what an uninterrupted tune's hold: the same trials, drawn, trained and pruned alike
    straight = suite_dir / "straight"
    write_interactions(straight / "data" / "toy" / "toy.inter")
    (straight / "suite.yaml").write_text(yaml.safe_dump({**slow, "data_path": str(straight / "data")}))
    assert main(_tune_args(straight, "--trials", "4")) == 0

    def trained(root: Path, strategy: str) -> list[tuple]:
        return [(t.state, t.params, t.value, t.user_attrs["epochs"], t.intermediate_values)
                for t in _study(root, strategy).get_trials() if not t.user_attrs.get("interrupted")]

    for strategy in ("scratch", "kd"):
        assert trained(suite_dir, strategy) == trained(straight, strategy)


def test_a_study_made_with_other_settings_is_refused_without_force(suite_dir):
    from kdbench.tuning import Study, open_study

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0,
                train=TrainSettings(max_epochs=3, batch_size=4096), data_path=str(suite_dir / "data"))
    study = Study(cell, 40, suite_dir / "results")
    open_study(study, TuningSettings(trials=2))
    with pytest.raises(KdbenchError, match="was made with other settings .*seeds.*--force"):
        open_study(study, TuningSettings(trials=2, seeds=(7,)))
    assert open_study(study, TuningSettings(trials=2, seeds=(7,)), force=True).user_attrs["identity"]["seeds"] == [7]


def test_a_study_made_with_other_ensemble_trajectories_is_refused_without_force(suite_dir):
    """An ensemble strategy's trials learn from its teachers' recorded trajectories; a teacher cache
    rebuilt with other lists (another machine, another recorder) is a change of settings."""
    from kdbench.tuning import Study, open_study

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0,
                train=TrainSettings(max_epochs=3, batch_size=4096), data_path=str(suite_dir / "data"))
    root = suite_dir / "results"
    made = open_study(Study(cell, 40, root, knowledge=("aaaa", "bbbb")), TuningSettings(trials=2))
    assert made.user_attrs["identity"]["trajectories"] == ["aaaa", "bbbb"]
    open_study(Study(cell, 40, root, knowledge=("aaaa", "bbbb")), TuningSettings(trials=2))  # the same: resumed
    with pytest.raises(KdbenchError, match="was made with other settings .*trajectories.*--force"):
        open_study(Study(cell, 40, root, knowledge=("aaaa", "cccc")), TuningSettings(trials=2))
    assert "trajectories" not in Study(cell, 40, root).identity(TuningSettings(trials=2))  # no ensemble: as before


def test_a_study_is_identified_by_its_data_content_not_its_folder(suite_dir):
    from kdbench.tuning import Study, open_study

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0,
                train=TrainSettings(max_epochs=3, batch_size=4096), data_path=str(suite_dir / "data"))
    root = suite_dir / "results"
    open_study(Study(cell, 40, root, "f" * 16), TuningSettings(trials=2))
    moved = replace(cell, data_path="/elsewhere/data")  # the same files in another checkout
    assert open_study(Study(moved, 40, root, "f" * 16), TuningSettings(trials=2)).user_attrs["identity"]["data_path"] \
        == str(suite_dir / "data")
    with pytest.raises(KdbenchError, match="other settings .*data_fingerprint"):
        open_study(Study(moved, 40, root, "0" * 16), TuningSettings(trials=2))


def test_a_study_stored_before_fingerprints_is_taken_at_its_word_about_the_data(suite_dir):
    from kdbench.tuning import Study, open_study

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0,
                train=TrainSettings(max_epochs=3, batch_size=4096), data_path=str(suite_dir / "data"))
    root = suite_dir / "results"
    open_study(Study(cell, 40, root), TuningSettings(trials=2))  # no fingerprint recorded
    assert "data_fingerprint" not in open_study(Study(cell, 40, root, "f" * 16),
                                                TuningSettings(trials=2)).user_attrs["identity"]


def test_tuned_cells_take_the_best_hyperparameters_and_training_knobs(tmp_path):
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    from kdbench.tuning import Study

    study = Study(cell, 40, tmp_path)
    best = {"finished": True, "best_trial": 3, "trials_counted": 2, "budget": 2,
            "best_hparams": {"weight": 0.3, "K": 20, "tau": 2.0},
            "best_training": {"learning_rate": 0.004, "weight_decay": 1e-6},
            "identity": {"strategy_code": KD.code_version(), "fixed_hparams": {}}}
    study.folder.mkdir(parents=True)
    study.best_path.write_text(json.dumps(best))
    (tuned,) = tuned_cells([cell, replace(cell, strategy="teacher")], tmp_path, warn=lambda m: None)
    assert tuned.variant == TUNED and tuned.label == "kd@tuned"
    assert dict(tuned.hparams) == {"weight": 0.3, "K": 20, "tau": 2.0}
    assert (tuned.train.learning_rate, tuned.train.weight_decay, tuned.train.max_epochs) == (0.004, 1e-6, 3)
    stale = {**best, "identity": {"strategy_code": "0" * 12, "fixed_hparams": {}}}
    study.best_path.write_text(json.dumps(stale))
    warnings = []
    assert tuned_cells([cell], tmp_path, warn=warnings.append) == []
    assert "other strategy code" in warnings[0]


def test_a_study_with_fixed_hyperparameters_tuned_before_its_trials_used_them_is_tuned_again(tmp_path):
    """Until 2026-12-08 a trial's draws replaced the suite's fixed hyperparameters (DE trained its
    default 30 experts where the suite fixes 5): such a study gives no tuned row, and `tune` refuses
    to resume it without --force (its identity lacks FIXED_IN_TRIALS)."""
    from kdbench.tuning import Study, open_study
    from kdbench.tuning.studies import FIXED_IN_TRIALS

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, hparams=(("K", 20),),
                train=TrainSettings(max_epochs=3))
    study = Study(cell, 40, tmp_path)
    identity = study.identity(TuningSettings(trials=2))
    assert identity["fixed_hparams"] == {"K": 20} and identity[FIXED_IN_TRIALS] is True
    assert FIXED_IN_TRIALS not in Study(replace(cell, hparams=()), 40, tmp_path).identity(TuningSettings(trials=2))
    best = {"finished": True, "best_trial": 3, "trials_counted": 2, "budget": 2,
            "best_hparams": {"weight": 0.3, "K": 20, "tau": 2.0}, "best_training": {},
            "identity": {"strategy_code": KD.code_version(), "fixed_hparams": {"K": 20}, FIXED_IN_TRIALS: True}}
    study.folder.mkdir(parents=True)
    study.best_path.write_text(json.dumps(best))
    assert [dict(c.hparams)["K"] for c in tuned_cells([cell], tmp_path, warn=lambda m: None)] == [20]
    best["identity"].pop(FIXED_IN_TRIALS)  # tuned by trials that left K out
    study.best_path.write_text(json.dumps(best))
    warnings = []
    assert tuned_cells([cell], tmp_path, warn=warnings.append) == []
    assert "left out its fixed hyperparameters" in warnings[0] and "tune --force" in warnings[0]
    storage = open_study(study, TuningSettings(trials=2))  # a study made by the earlier code ...
    old = {k: v for k, v in storage.user_attrs["identity"].items() if k != FIXED_IN_TRIALS}
    storage.set_user_attr("identity", old)
    with pytest.raises(KdbenchError, match=f"{FIXED_IN_TRIALS}.*--force"):  # ... is not resumed
        open_study(study, TuningSettings(trials=2))
    assert open_study(study, TuningSettings(trials=2), force=True).user_attrs["identity"][FIXED_IN_TRIALS]


def test_post_training_quantisation_is_tuned_through_the_study_of_the_model_it_quantises():
    from kdbench.strategies.base import tuned_through
    from kdbench.tuning.studies import study_cells

    assert tuned_through("ptq") == tuned_through("ptq-int4") == ("scratch", "")
    assert tuned_through("kd+ptq") == tuned_through("kd+ptq-int4") == ("kd", "kd.")
    assert tuned_through("rrd-topk+ptq") == ("rrd-topk", "rrd-topk.")
    for own in ("kd", "svd-ft", "prune-ft", "de+rrd", "scratch"):
        assert tuned_through(own) == (own, "")
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    suite = [replace(cell, strategy=name, seed=seed) for seed in (0, 1)
             for name in ("ptq", "kd+ptq", "kd+ptq-int4", "kd", "svd", "quant", "svd-ft")]
    # kd once for kd, kd+ptq and kd+ptq-int4; scratch for ptq; nothing for svd and quant (no training)
    assert [c.strategy for c in study_cells(suite)] == ["scratch", "kd", "svd-ft"]
    fixed = replace(cell, strategy="kd+ptq", hparams=(("kd.K", 20), ("ptq.bits", 4)))
    assert study_cells([fixed])[0].hparams == (("K", 20),)  # kd's part of the fixed settings


def test_a_quantised_row_takes_its_models_study_and_an_untrained_one_its_defaults_where_the_pairing_is_tuned(tmp_path):
    from kdbench.tuning import Study

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    chosen = {"kd": ({"weight": 0.3, "K": 20, "tau": 2.0}, 0.004), "scratch": ({}, 0.002)}
    for name, (hparams, learning_rate) in chosen.items():
        study = Study(replace(cell, strategy=name), 40, tmp_path)
        study.folder.mkdir(parents=True, exist_ok=True)
        study.best_path.write_text(json.dumps({
            "finished": True, "best_trial": 3, "trials_counted": 2, "budget": 2, "best_hparams": hparams,
            "best_training": {"learning_rate": learning_rate, "weight_decay": 0.0},
            "identity": {"strategy_code": STRATEGIES.get(name).code_version(), "fixed_hparams": {}}}))
    asked = [replace(cell, strategy=name) for name in ("kd+ptq-int4", "ptq", "svd", "svd-ft")]
    warnings = []
    tuned = {c.strategy: c for c in tuned_cells(asked, tmp_path, warn=warnings.append)}
    assert dict(tuned["kd+ptq-int4"].hparams) == {"kd.weight": 0.3, "kd.K": 20, "kd.tau": 2.0}
    assert tuned["kd+ptq-int4"].train.learning_rate == 0.004
    assert tuned["ptq"].hparams == () and tuned["ptq"].train.learning_rate == 0.002  # scratch's choice
    assert tuned["svd"].variant == TUNED and tuned["svd"].hparams == () and tuned["svd"].train == cell.train
    assert "svd-ft" not in tuned and warnings == ["toy BPR:8->BPR:4 svd-ft: not tuned; no tuned row"]
    elsewhere = replace(cell, strategy="svd", student=BackboneSpec("BPR", 2))  # a pairing without studies
    assert tuned_cells([elsewhere], tmp_path, warn=warnings.append) == []


def test_every_built_in_strategy_declares_a_space_that_names_its_own_hyperparameters():
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        if not cls.__module__.startswith("kdbench.strategies."):
            continue  # a plugin registered by another test
        space = cls.tuning_space()
        assert set(space) <= set(cls.defaults), name
        assert cls.search_space is not None, f"{name} declares no search space"
    assert STRATEGIES.get("scratch").tuning_space() == {}


def test_a_catalogue_share_scales_with_the_catalogue():
    share = CatalogueShare(0.01, 0.5, min_items=50)
    assert share.bounds(1682) == (50, 841)
    assert share.bounds(25181) == (252, 12590)
    assert share.bounds(40) == (39, 39)  # never more than the catalogue's real items


def test_a_strategy_without_a_declared_space_tunes_its_weight_over_four_decades():
    from kdbench.strategies.base import DistillationStrategy

    class Plain(DistillationStrategy):
        name = "plain"
        defaults = {"weight": 0.5, "alpha": 1.0}

    assert Plain.tuning_space() == {"weight": LogUniform(0.005, 50.0)}


# -- result identity ----------------------------------------------------------------------------

SMALL = TrainSettings(max_epochs=2, batch_size=4096)


@pytest.mark.slow
def test_a_changed_default_or_strategy_code_makes_a_stored_cell_run_again(toy_dir, tmp_path, monkeypatch):
    cell = Cell("toy", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "kd", seed=0, train=SMALL,
                data_path=str(toy_dir))
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    first = runner.run(cell)
    assert first["config"]["hparams"] == KD.defaults and first["config"]["strategy_code"] == KD.code_version()
    assert runner.is_done(cell)
    with monkeypatch.context() as patch:
        patch.setattr(KD, "defaults", {**KD.defaults, "tau": 3.0})
        assert not runner.is_done(cell)
        with pytest.raises(KdbenchError, match="holds a finished run with other settings"):
            runner.check_no_overwrite([cell])
        again = runner.run(cell)
        assert again["hparams"]["tau"] == 3.0 and again["created"] >= first["created"]
    with monkeypatch.context() as patch:
        patch.setattr("kdbench.run.record.strategy_code", lambda name: "changed-code")
        assert not runner.is_done(cell)


def test_the_code_version_follows_the_maths_not_comments_docstrings_spaces_or_unrelated_helpers(tmp_path):
    from kdbench.strategies import _code

    def version(variant: str, source: str) -> str:
        """`source` loaded as the module `kdb_code` (from its own file, so no source cache is stale)."""
        import importlib.util

        path = tmp_path / f"{variant}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("kdb_code", path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules["kdb_code"] = loaded
        spec.loader.exec_module(loaded)
        _code._module_index.cache_clear()
        return _code.code_version([("kdb_code", "S")])

    base = ('SCALE = 2\n\ndef helper(x):\n    return x * SCALE\n\n'
            'class S:\n    """Doc."""\n    search_space = {"w": 1}\n    def loss(self, x):\n        return helper(x)\n')
    reference = version("a", base)
    assert version("b", base.replace('"""Doc."""', '"""Other doc."""  # note')) == reference
    assert version("c", base.replace('{"w": 1}', '{"w": 2}')) == reference
    assert version("d", base + "\ndef unrelated(y):\n    return y + 1\n") == reference
    assert version("e", base.replace("x * SCALE", "x * SCALE + 1")) != reference  # a helper it calls
    assert version("f", base.replace("SCALE = 2", "SCALE = 3")) != reference  # a constant it reads


def test_tune_with_strict_cache_hands_it_to_the_runner(suite_dir, monkeypatch):
    """`tune --strict-cache` must reach the Runner (a damaged teacher entry is then an error)."""
    import kdbench.commands.tune as tune_command

    seen = {}

    class Stop(Exception):
        pass

    def fake_runner(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(tune_command, "Runner", fake_runner)
    for flags, heal in (((), True), (("--strict-cache",), False)):
        seen.clear()
        with pytest.raises(Stop):
            main(_tune_args(suite_dir, *flags))
        assert seen["heal_cache"] is heal


def test_an_interrupted_tune_still_rewrites_the_summary_with_what_the_studies_spent(suite_dir, monkeypatch):
    import kdbench.commands.tune as tune_command

    original = tune_command.tune

    def interrupted_after_one_trial(runner, cells, settings, force, on_trial, on_open):
        def once(study, outcome):
            on_trial(study, outcome)
            raise KeyboardInterrupt
        return original(runner, cells, settings, force=force, on_trial=once, on_open=on_open)

    monkeypatch.setattr(tune_command, "tune", interrupted_after_one_trial)
    summary = suite_dir / "results" / "tuning" / "summary.md"
    assert main(_tune_args(suite_dir)) == 130
    assert summary.is_file()
    meta = json.loads((suite_dir / "results" / "tuning" / "meta.json").read_text())
    assert [i["trials_run"] for i in meta["invocations"]] == [1]
    assert "toy: BPR:8->BPR:4" in summary.read_text()
