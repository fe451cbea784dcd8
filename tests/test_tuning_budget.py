"""Tuning's protocol: the published defaults as trial 0, a budget in training epochs equal for every
strategy (pruned trials spend what they ran), two tuning seeds averaged, successive halving on
epochs, the teacher shared by trials, and studies made before this protocol refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml

import kdbench.training.loop as train_module
import kdbench.run.work as work_module
from conftest import write_interactions
from kdbench.families import BackboneSpec
from kdbench.run.cells import Cell
from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.search_space import CatalogueShare, IntRange, LogUniform, Uniform, recordable
from kdbench.strategies.kd import KD
from kdbench.training.loop import TrainSettings
from kdbench.tuning.trial import HALVING, MEDIAN, PrunerSettings
from kdbench.tuning import Study, TuningSettings, open_study, read_best
from kdbench.report.tuning_summary import best_so_far, second_half_gain

BUDGET = 14
SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0, 1],
    "strategies": ["scratch", "kd"],
    "train": {"max_epochs": 3, "batch_size": 4096, "patience": 10, "learning_rate": 0.005},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
    "tuning": {"epochs": BUDGET, "seeds": [100, 101], "startup_trials": 1,
               "pruner": {"first_rung": 1, "reduction_factor": 2}},
}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The toy suite tuned once with an epoch budget, every scoring call watched."""
    root = tmp_path_factory.mktemp("budget")
    write_interactions(root / "data" / "toy" / "toy.inter")
    (root / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(root / "data")}))
    from kdbench.run.runner import Runner
    from kdbench.run.suites import expand, load_suite

    Runner(root / "results", root / "cache").teachers(expand(load_suite(root / "suite.yaml")))
    scored, built = [], []
    original, build = train_module.full_ranking, work_module.build_model

    def watched(model, loader, config):
        if any(loader is data.test for data in work_module._DATA.values()):
            raise AssertionError("the test split was scored while tuning")
        scored.append(loader)
        return original(model, loader, config)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(work_module, "_TEACHERS", type(work_module._TEACHERS)())  # none kept by earlier tests
        patch.setattr(train_module, "full_ranking", watched)
        patch.setattr(work_module, "full_ranking", watched)
        patch.setattr(work_module, "build_model", lambda spec, *a, **k: built.append(str(spec)) or build(spec, *a, **k))
        code = main(["tune", "--suite", str(root / "suite.yaml"), "--results-dir", str(root / "results"),
                     "--cache-dir", str(root / "cache"), "--workers", "1"])
    assert code == 0 and scored
    return {"root": root, "built": built}


def _study(root: Path, strategy: str) -> optuna.Study:
    path = root / "results" / "tuning" / "toy" / "BPR-8_to_BPR-4" / f"{strategy}.db"
    return optuna.load_study(study_name=f"toy/BPR:8->BPR:4/{strategy}", storage=f"sqlite:///{path}")


def _cell(root: Path, strategy: str) -> Cell:
    return Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), strategy, 0)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["scratch", "kd"])
def test_every_strategy_spends_exactly_the_same_epoch_budget(tuned, strategy):
    trials = [t for t in _study(tuned["root"], strategy).get_trials() if t.state.is_finished()]
    epochs = [t.user_attrs["epochs"] for t in trials]
    assert sum(epochs) == BUDGET  # the last trial stopped where the budget ends
    assert max(epochs) <= 2 * 3  # two seeds of at most 3 epochs
    best = read_best(tuned["root"] / "results", _cell(tuned["root"], strategy))
    assert (best["budget"], best["budget_unit"], best["spent"], best["epochs_spent"]) == (BUDGET, "epochs", BUDGET, BUDGET)
    assert best["finished"] and best["trials_counted"] == len(trials)


@pytest.mark.slow
def test_a_pruned_trial_spends_only_the_epochs_it_ran(tuned):
    trials = [t for s in ("scratch", "kd") for t in _study(tuned["root"], s).get_trials()]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and not t.user_attrs.get("out_of_budget")]
    assert pruned, "successive halving from epoch 1 pruned no trial"
    for trial in pruned:  # stopped on the first seed: at most its epochs so far
        assert trial.user_attrs["epochs"] == trial.last_step < 6
        assert "completed_rung_0" in trial.system_attrs


@pytest.mark.slow
def test_trial_zero_is_the_published_defaults_with_the_suites_training_settings(tuned):
    kd = _study(tuned["root"], "kd").trials[0]
    assert kd.user_attrs["defaults"] is True
    assert kd.user_attrs["hparams"] == {**KD.defaults, "learning_rate": 0.005, "weight_decay": 0.0}
    assert kd.params["weight_decay"] == 1e-9  # 0 cannot sit on a log scale: the sampler sees the bound
    assert {k: kd.params[k] for k in KD.defaults} == KD.defaults
    scratch = _study(tuned["root"], "scratch").trials[0]
    assert scratch.user_attrs["hparams"] == {"learning_rate": 0.005, "weight_decay": 0.0}


@pytest.mark.slow
def test_the_tuned_training_settings_are_what_the_best_trial_trained_with(tuned):
    for strategy in ("scratch", "kd"):
        study = _study(tuned["root"], strategy)
        best = read_best(tuned["root"] / "results", _cell(tuned["root"], strategy))
        trial = study.trials[best["best_trial"]]
        assert {**best["best_hparams"], **best["best_training"]} == trial.user_attrs["hparams"]
        assert best["best_valid_ndcg@10"] >= best["defaults_valid_ndcg@10"]  # never below the defaults


def test_the_objective_is_the_mean_over_both_tuning_seeds_and_every_epoch_is_spent(monkeypatch):
    import kdbench.tuning.trial as trial_module
    from kdbench.training.loop import FitResult
    from kdbench.tuning.trial import TrialTask, run_trial
    from kdbench.run.work import CellTask

    best = {100: 0.2, 101: 0.3}

    def fake_fit(model, data, settings, strategy=None, seed=0, on_epoch=None, checkpoint=None):
        for epoch in range(1, 4):
            on_epoch(epoch, best[seed] * epoch / 3)
        return FitResult(3, 3, True, best[seed], 0.0, 0.0, 0.0)

    monkeypatch.setattr(trial_module, "fit", fake_fit)
    monkeypatch.setattr(trial_module, "build_student_run", lambda task, params: (None, None, None, 0.0))
    monkeypatch.setattr(trial_module, "prepare_worker", lambda task: None)
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "scratch", 0)
    task = TrialTask(CellTask(cell), {"learning_rate": 0.01}, (100, 101), PrunerSettings(first_rung=1))
    outcome = run_trial(task)
    assert outcome.value == pytest.approx(0.25) and outcome.epochs == 6 and not outcome.pruned
    assert [value for _, value in outcome.curve] == pytest.approx([0.2 / 3, 0.4 / 3, 0.2])  # the first seed's
    assert set(outcome.rungs) == {"completed_rung_0", "completed_rung_1"}  # epochs 1 and 3 (3 x 1)
    cut = run_trial(TrialTask(CellTask(cell), {}, (100, 101), PrunerSettings(first_rung=1), epoch_allowance=4))
    assert (cut.pruned, cut.out_of_budget, cut.epochs, cut.value) == (True, True, 4, None)
    # a trial below the first one at every rung is pruned at the first, unless it holds the defaults
    import optuna

    first = optuna.create_study(direction="maximize")
    first.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.9, 3: 0.9},
                                              system_attrs={"completed_rung_0": 0.9, "completed_rung_1": 0.9}))
    later = TrialTask(CellTask(cell), {}, (100, 101), PrunerSettings(first_rung=1), tuple(first.trials))
    pruned = run_trial(later)
    assert (pruned.pruned, pruned.out_of_budget, pruned.epochs, pruned.rungs) == (True, False, 1, {"completed_rung_0": 0.2 / 3})
    kept = run_trial(replace(later, prunable=False))
    assert (kept.pruned, kept.value, set(kept.rungs)) == (False, pytest.approx(0.25), {"completed_rung_0", "completed_rung_1"})


@pytest.mark.slow
def test_trials_share_the_frozen_teacher(tuned):
    # the teacher BPR:8 is built once in this process, for the first trial; every student anew
    assert tuned["built"].count("BPR:8") == 1
    assert tuned["built"].count("BPR:4") >= 4


@pytest.mark.slow
def test_the_summary_and_the_plot_show_budget_and_epochs_spent(tuned):
    text = (tuned["root"] / "results" / "tuning" / "summary.md").read_text()
    assert f"Budget: {BUDGET} epochs per student study; tuning seeds [100, 101]" in text
    assert "successive halving from 1 epochs" in text and "defaults are each study's first trial" in text
    assert f"| {BUDGET} epochs |" in text and "2nd-half gain" in text


def test_tuning_seeds_that_are_evaluation_seeds_are_refused(tmp_path, capsys):
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    suite = {**SUITE, "data_path": str(tmp_path / "data"), "tuning": {**SUITE["tuning"], "seeds": [1, 100]}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    assert main(["tune", "--suite", str(tmp_path / "suite.yaml"), "--results-dir", str(tmp_path / "results"),
                 "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]) == 2
    assert "kdbench: error: tuning seeds [1] are also evaluation seeds" in capsys.readouterr().err
    assert not (tmp_path / "results" / "tuning" / "toy").exists()


def test_a_study_made_before_epoch_budgets_is_refused_not_resumed(tmp_path):
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    study = Study(cell, 40, tmp_path)
    identity = study.identity(TuningSettings())
    old = {k: v for k, v in identity.items() if k not in ("unit", "defaults_first")}
    old |= {"seeds": [100], "pruner": {"startup_trials": 3, "warmup_epochs": 10}}  # a committed study's
    study.folder.mkdir(parents=True)
    stored = optuna.create_study(storage=f"sqlite:///{study.storage_path}", study_name=study.name, direction="maximize")
    stored.set_user_attr("identity", old)
    with pytest.raises(KdbenchError, match="made with other settings .*defaults_first.*unit.*--force"):
        open_study(study, TuningSettings())


def test_a_larger_budget_resumes_a_study_and_another_unit_does_not(tmp_path):
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    study = Study(cell, 40, tmp_path)
    open_study(study, TuningSettings(epochs=100))
    assert open_study(study, TuningSettings(epochs=400)).user_attrs["identity"] == study.identity(TuningSettings())
    with pytest.raises(KdbenchError, match="made with other settings .*unit"):
        open_study(study, TuningSettings(epochs=None, trials=12))


def test_the_tuning_block_reads_epoch_and_trial_budgets_and_both_pruners():
    settings = TuningSettings.from_spec({"epochs": 900, "pruner": {"first_rung": 5}})
    assert (settings.budget, settings.unit, settings.seeds) == (900, "epochs", (100, 101))
    assert settings.pruner == PrunerSettings(HALVING, first_rung=5, reduction_factor=3)
    legacy = TuningSettings.from_spec({"trials": 12, "seeds": [100], "pruner": {"startup_trials": 3, "warmup_epochs": 10}})
    assert (legacy.budget, legacy.unit, legacy.pruner.kind) == (12, "trials", MEDIAN)
    assert TuningSettings.from_spec({"trials": 12}, epochs=300).unit == "epochs"  # the flag replaces the block's
    assert TuningSettings.from_spec({"epochs": 900}, trials=4).budget == 4
    with pytest.raises(KdbenchError, match="'epochs' or 'trials', not both"):
        TuningSettings.from_spec({"epochs": 900, "trials": 4})
    with pytest.raises(KdbenchError, match="unknown pruner keys warmup_epochs for the successive-halving pruner"):
        TuningSettings.from_spec({"pruner": {"kind": "successive-halving", "warmup_epochs": 3}})
    assert PrunerSettings().not_before(30).first_rung == 30
    assert PrunerSettings(MEDIAN).not_before(30).warmup_epochs == 30


def test_a_default_the_sampler_cannot_record_is_recorded_at_the_bound():
    assert recordable(LogUniform(1e-9, 1e-4), 0.0, 100) == 1e-9
    assert recordable(LogUniform(1e-9, 1e-4), 1e-2, 100) == 1e-2  # out of range but representable: kept
    assert recordable(IntRange(5, 500, log=True), 1000, 100) == 1000
    assert recordable(CatalogueShare(0.01, 0.5, min_items=50), 0, 1682) == 50
    assert recordable(Uniform(0.1, 0.9), 0.0, 100) == 0.0


def test_flatness_is_the_rise_over_the_second_half_of_the_epochs_spent():
    values = [(0, 0.20, 10), (1, None, 5), (2, 0.25, 10), (3, 0.24, 10), (4, None, 5), (5, 0.255, 10)]
    points = best_so_far(values)
    assert points == [(10, 0.20), (15, 0.20), (25, 0.25), (35, 0.25), (40, 0.25), (50, 0.255)]
    assert second_half_gain(points) == pytest.approx((0.255 - 0.25) / 0.255)  # best at epoch 25 was 0.25
    assert second_half_gain([]) is None


def test_a_study_too_young_for_a_gain_shows_a_dash_not_nan():
    import pandas as pd

    from kdbench.report.tuning_summary import markdown_table

    text = markdown_table(pd.DataFrame({"strategy": ["teacher", "kd"], "2nd-half gain (%)": [None, 1.25]}))
    teacher_row = next(line for line in text.splitlines() if "teacher" in line)
    assert "nan" not in text and "—" in teacher_row and text.count("—") == 1 and "1.2500" in text


def test_a_study_summary_written_before_epoch_budgets_still_reads(tmp_path):
    """Summaries of the earlier protocol (a budget in trials, no unit, no epochs spent; the shape the
    round-2 studies were committed in) keep working: verify, list and run --all read them."""
    from kdbench.report.tuning_summary import summary_table
    from kdbench.tuning import read_summary

    old = {"best_hparams": {"K": 45, "tau": 1.0087, "weight": 1.7425},
           "best_training": {"learning_rate": 0.022, "weight_decay": 5.6e-09}, "best_trial": 9,
           "best_valid_ndcg@10": 0.22399, "budget": 12, "compute_seconds": 453.9, "dataset": "ml-100k",
           "finished": True, "identity": {"fixed_hparams": {}, "seeds": [100], "strategy_code": "cdc8b7d3b42b",
                                          "pruner": {"startup_trials": 3, "warmup_epochs": 10}},
           "pairing": "BPR:64->BPR:5", "storage": "kd.db", "strategy": "kd", "study": "ml-100k/BPR:64->BPR:5/kd",
           "trials_complete": 5, "trials_counted": 12, "trials_failed": 0, "trials_pruned": 7}
    path = tmp_path / "kd.json"
    path.write_text(json.dumps(old))
    summary = read_summary(path)
    row = summary_table([summary]).iloc[0]
    assert row["budget"] == "12 trials" and row["best valid NDCG@10"] == 0.22399


def test_every_bundled_suite_that_tunes_uses_the_default_suites_protocol_and_budget():
    """Tables of different datasets compare only if each strategy got the same budget on each: a
    bundled suite's `tuning:` block (epochs, seeds, start-up trials, pruner) is the default suite's."""
    from kdbench.run.suites import bundled_suites, load_suite

    def settings(name: str) -> TuningSettings:
        return TuningSettings.from_spec(load_suite(bundled_suites()[name]).spec.get("tuning"))

    default = settings("default")
    assert default.epochs == 1200 and default.trials is None and default.seeds == (100, 101)
    assert default.for_teachers().epochs == 600 and default.for_teachers().seeds == default.seeds
    tuned = [name for name, path in bundled_suites().items()
             if load_suite(path).spec.get("tuning") is not None and name != "default"]
    assert "datasets" in tuned
    for name in tuned:  # a dataset's student budget starts at 600 and grows until its studies are flat
        assert replace(settings(name), epochs=default.epochs) == default, name
        assert settings(name).epochs in (600, 1200), name


def test_force_starts_again_only_the_studies_made_with_other_settings(tmp_path):
    """`tune --force` after a change: a study made with other settings starts again, a current one
    (here with two finished trials) is kept and resumed, not thrown away."""
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, train=TrainSettings(max_epochs=3))
    current = Study(cell, 40, tmp_path)
    made = open_study(current, TuningSettings())
    for value in (0.1, 0.2):
        made.tell(made.ask(), value)
    other = Study(replace(cell, strategy="scratch"), 40, tmp_path)
    stale = optuna.create_study(storage=f"sqlite:///{other.storage_path}", study_name=other.name, direction="maximize")
    stale.set_user_attr("identity", {"seeds": [100], "unit": "trials"})
    stale.tell(stale.ask(), 0.3)
    assert len(open_study(current, TuningSettings(), force=True).trials) == 2
    restarted = open_study(other, TuningSettings(), force=True)
    assert restarted.trials == [] and restarted.user_attrs["identity"] == other.identity(TuningSettings())


def test_a_trial_after_defaults_outside_the_space_is_pruned_against_them_not_failed(monkeypatch):
    """The published defaults may lie outside the search space (DE's anneal_epochs = 1000 against
    [5, 500]); the pruner's in-memory copy of the study must still take that trial's curve."""
    import kdbench.tuning.trial as trial_module
    from kdbench.training.loop import FitResult
    from kdbench.tuning.trial import TrialTask, mirror_study, run_trial
    from kdbench.run.work import CellTask

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"anneal_epochs": 1000})
    with pytest.warns(UserWarning):  # Optuna records the out-of-range value, with a warning
        defaults = study.ask()
        assert defaults.suggest_int("anneal_epochs", 5, 500, log=True) == 1000
    defaults.report(0.9, 1)
    defaults.report(0.9, 3)
    study._storage.set_trial_system_attr(defaults._trial_id, "completed_rung_0", 0.9)
    study.tell(defaults, 0.9)
    finished = tuple(study.trials)
    with pytest.raises(ValueError, match="isn't contained in the distribution"):
        optuna.create_study().add_trials(list(finished))  # why the mirror leaves parameters out
    mirror = mirror_study(PrunerSettings(first_rung=1), finished)
    assert mirror.trials[0].intermediate_values == {1: 0.9, 3: 0.9} and mirror.trials[0].params == {}
    assert finished[0].params == {"anneal_epochs": 1000}  # the study's own record is untouched

    def fake_fit(model, data, settings, strategy=None, seed=0, on_epoch=None, checkpoint=None):
        for epoch in range(1, 4):
            on_epoch(epoch, 0.1)
        return FitResult(3, 3, True, 0.1, 0.0, 0.0, 0.0)

    monkeypatch.setattr(trial_module, "fit", fake_fit)
    monkeypatch.setattr(trial_module, "build_student_run", lambda task, params: (None, None, None, 0.0))
    monkeypatch.setattr(trial_module, "prepare_worker", lambda task: None)
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "de", 0)
    outcome = run_trial(TrialTask(CellTask(cell), {"anneal_epochs": 20}, (100, 101), PrunerSettings(first_rung=1),
                                  finished))
    assert outcome.error is None and outcome.pruned and outcome.epochs == 1


@pytest.mark.slow
def test_tuning_again_reports_each_study_s_spent_budget_on_opening_and_runs_nothing(tuned):
    from kdbench.run.runner import Runner
    from kdbench.run.suites import expand, load_suite
    from kdbench.tuning import tune

    root = tuned["root"]
    cells = expand(load_suite(root / "suite.yaml"))
    opened, trials = {}, []
    tune(Runner(root / "results", root / "cache"), cells, TuningSettings.from_spec(SUITE["tuning"]),
         on_trial=lambda study, outcome: trials.append(study.label),
         on_open=lambda study, used: opened.setdefault(study.cell.strategy, used))
    assert opened == {"scratch": BUDGET, "kd": BUDGET} and trials == []


def _asks_per_study(budget: dict[str, int]):
    """A stand-in for `studies._ask`: each study (by strategy name) is asked `budget[name]` trials,
    named `<name><k>`, then reports its budget spent (None)."""
    from types import SimpleNamespace

    asked = {name: 0 for name in budget}

    def fake_ask(study, optuna_study, settings):
        name = study.cell.strategy
        if asked[name] == budget[name]:
            return None
        asked[name] += 1
        attrs = {}
        return SimpleNamespace(user_attrs=attrs, name=f"{name}{asked[name]}", set_user_attr=attrs.__setitem__), {}, None

    return fake_ask


def test_a_study_gets_its_next_trial_while_another_study_s_long_trial_still_runs(monkeypatch, tmp_path):
    """Trials are handed out as workers free up: a study whose trial returned is back in turn at
    once, not after every other study's trial of a round has returned."""
    from types import SimpleNamespace

    import kdbench.tuning.studies as studies_module
    from kdbench.tuning.trial import TrialOutcome

    fake_ask = _asks_per_study({"slow": 1, "fast": 4})

    told = []
    monkeypatch.setattr(studies_module, "open_study", lambda study, settings, force=False: SimpleNamespace(
        get_trials=lambda deepcopy=False: []))
    monkeypatch.setattr(studies_module, "_ask", fake_ask)
    monkeypatch.setattr(studies_module, "trial_resume_key", lambda *args: None)  # no registered space to key
    monkeypatch.setattr(studies_module, "learns_from_trajectories", lambda cell: False)  # "slow", "fast": no registry entry
    monkeypatch.setattr(studies_module, "needs_teacher", lambda cell: True)
    monkeypatch.setattr(studies_module, "_tell", lambda optuna_study, trial, outcome, params: told.append(trial.name))
    monkeypatch.setattr(studies_module, "write_best", lambda study, optuna_study, settings: {})

    class TwoWorkers:
        """Pulls tasks lazily like LocalExecutor with 2 workers; a slow trial returns only once
        nothing else is running."""

        def map_unordered(self, fn, tasks, resources=None):
            source, running, index = iter(tasks), [], 0
            while True:
                while len(running) < 2 and (task := next(source, None)) is not None:
                    running.append((index, task.base.cell.strategy))
                    index += 1
                if not running:
                    return
                fast = [job for job in running if job[1] == "fast"]
                job = fast[0] if fast else running[0]
                running.remove(job)
                yield job[0], TrialOutcome(0.1, [], epochs=1)

    cells = [Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), name, 0) for name in ("slow", "fast")]
    runner = SimpleNamespace(teachers=lambda cells: {"t": None}, teacher_key=lambda cell: "t",
                             ensemble=lambda cell, artifacts: (), device="cpu", cache_dir=tmp_path, plugins=(),
                             executor=TwoWorkers())
    studies = [Study(cell, 40, tmp_path) for cell in cells]
    studies_module._tune_claimed(runner, studies, TuningSettings(epochs=10), False, None, None)
    assert told == ["fast1", "fast2", "fast3", "fast4", "slow1"]  # fast's trials ran beside slow's first


def test_the_teachers_budget_is_their_own_and_a_budget_flag_grows_only_the_students():
    settings = TuningSettings.from_spec({"epochs": 1200, "teacher_epochs": 600, "teacher": True})
    assert (settings.budget, settings.for_teachers().budget) == (1200, 600)
    grown = TuningSettings.from_spec({"epochs": 600, "teacher_epochs": 600, "teacher": True}, epochs=1200)
    assert (grown.budget, grown.for_teachers().budget) == (1200, 600)
    assert TuningSettings.from_spec({"epochs": 900}).for_teachers().budget == 900  # none given: the students'
    assert TuningSettings.from_spec({"trials": 12, "teacher_epochs": 600}).for_teachers().budget == 12
    assert settings.as_dict() == settings.for_teachers().as_dict() | {"budget": 1200}  # identity: neither budget
    with pytest.raises(KdbenchError, match="budget"):
        TuningSettings.from_spec({"epochs": 600, "teacher_epochs": 0})


def test_the_budget_line_states_the_teacher_s_own_budget_apart_from_the_compared_strategies():
    from kdbench.report.tuning_summary import pairing_budget_line

    rows = [{"strategy": "teacher", "budget": 600, "budget_unit": "epochs", "epochs_spent": 600},
            {"strategy": "scratch", "budget": 1200, "budget_unit": "epochs", "epochs_spent": 1200},
            {"strategy": "kd", "budget": 1200, "budget_unit": "epochs", "epochs_spent": 1190}]
    assert pairing_budget_line(rows) == ("Budget per strategy: 1200 epochs (the teacher's study: 600 epochs), equal "
                                         "for every strategy, scratch included; epochs spent 600-1200.")


def test_a_cadence_of_5_spends_every_training_epoch_and_prunes_at_the_validated_rungs(monkeypatch):
    """`eval_every: 5` (the datasets suite's students): validations at 5, 10, ...; every training epoch
    is spent from the budget; successive halving's rungs (10, 30, ...) fall on validated epochs."""
    import kdbench.tuning.trial as trial_module
    from kdbench.training.loop import FitResult
    from kdbench.tuning.trial import TrialTask, run_trial
    from kdbench.run.work import CellTask

    level = {"value": 0.5}

    def fake_fit(model, data, settings, strategy=None, seed=0, on_epoch=None, checkpoint=None):
        for epoch in range(1, 41):
            on_epoch(epoch, level["value"] if epoch % settings.eval_every == 0 else None)
        return FitResult(40, 40, True, level["value"], 0.0, 0.0, 0.0)

    monkeypatch.setattr(trial_module, "fit", fake_fit)
    monkeypatch.setattr(trial_module, "build_student_run", lambda task, params: (None, None, None, 0.0))
    monkeypatch.setattr(trial_module, "prepare_worker", lambda task: None)
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "scratch", 0,
                train=TrainSettings(max_epochs=40, eval_every=5))
    pruner = PrunerSettings(first_rung=10, reduction_factor=3)
    first = run_trial(TrialTask(CellTask(cell), {}, (100, 101), pruner))
    assert first.epochs == 80 and [epoch for epoch, _ in first.curve] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert set(first.rungs) == {"completed_rung_0", "completed_rung_1"}  # epochs 10 and 30
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values=dict(first.curve),
                                              system_attrs=first.rungs))
    level["value"] = 0.1
    worse = run_trial(TrialTask(CellTask(cell), {}, (100, 101), pruner, tuple(study.trials)))
    assert worse.pruned and not worse.out_of_budget and worse.epochs == 10  # at the first rung, not before


def test_the_summary_states_each_dataset_s_student_budget_when_they_differ():
    """A dataset's budget grows until its studies are flat, so datasets may differ; the teacher
    studies' budgets are stated with their pairings, not in the header."""
    from kdbench.report.tuning_summary import _budgets_by_dataset

    def study(dataset, strategy, budget):
        return {"dataset": dataset, "strategy": strategy, "budget": budget, "budget_unit": "epochs"}

    same = [study("ml-100k", "kd", 1200), study("ml-100k", "teacher", 600), study("citeulike-t", "teacher", 600)]
    assert _budgets_by_dataset(same) == "1200 epochs per student study"
    differ = same + [study("citeulike-t", "kd", 600)]
    assert _budgets_by_dataset(differ) == "per student study, by dataset: ml-100k 1200 epochs; citeulike-t 600 epochs"
    assert _budgets_by_dataset([study("citeulike-t", "teacher", 600)]) is None


def test_a_study_whose_budget_is_spent_is_let_go_while_the_others_still_tune(monkeypatch, tmp_path):
    """A finished study (a teacher's, which another suite's tuner needs too) is released, its summary
    written, before the other studies' trials run, not when the whole tune ends."""
    from types import SimpleNamespace

    import kdbench.tuning.studies as studies_module
    from kdbench.tuning.trial import TrialOutcome

    fake_ask = _asks_per_study({"done": 0, "busy": 2})  # "done" has spent its budget already
    events = []

    monkeypatch.setattr(studies_module, "open_study", lambda study, settings, force=False: SimpleNamespace(
        get_trials=lambda deepcopy=False: []))
    monkeypatch.setattr(studies_module, "_ask", fake_ask)
    monkeypatch.setattr(studies_module, "trial_resume_key", lambda *args: None)  # no registered space to key
    monkeypatch.setattr(studies_module, "learns_from_trajectories", lambda cell: False)
    monkeypatch.setattr(studies_module, "needs_teacher", lambda cell: False)
    monkeypatch.setattr(studies_module, "_tell", lambda optuna_study, trial, outcome, params: events.append(trial.name))
    monkeypatch.setattr(studies_module, "write_best",
                        lambda study, optuna_study, settings: {"strategy": study.cell.strategy})

    class OneWorker:
        def map_unordered(self, fn, tasks, resources=None):
            for index, _ in enumerate(tasks):
                yield index, TrialOutcome(0.1, [], epochs=1)

    cells = [Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), name, 0) for name in ("done", "busy")]
    runner = SimpleNamespace(teachers=lambda cells: {}, device="cpu", cache_dir=tmp_path, plugins=(),
                             executor=OneWorker())
    studies = [Study(cell, 40, tmp_path) for cell in cells]
    summaries = studies_module._tune_claimed(runner, studies, TuningSettings(epochs=10), False, None, None,
                                             spent_out=lambda study: events.append(f"released {study.cell.strategy}"))
    assert events == ["released done", "busy1", "busy2", "released busy"]
    assert summaries == [{"strategy": "done"}, {"strategy": "busy"}]  # in the studies' order
