"""A tuning trial killed with its worker continues where it stopped (`kdbench.tuning.resume`) and ends
as the uninterrupted trial does; the study asks the interrupted trial's parameters again first, and
draws its later trials as the uninterrupted study would."""

from __future__ import annotations

from dataclasses import asdict, replace

import optuna
import pytest
import yaml

import kdbench.tuning.trial as trial_module
from kdbench import progress
from conftest import write_interactions
from kdbench.families import BackboneSpec
from kdbench.run.cells import Cell
from kdbench.run.runner import Runner
from kdbench.run.suites import expand, load_suite
from kdbench.run.work import CellTask
from kdbench.tuning import Study, TuningSettings, open_study
from kdbench.tuning.resume import TrialProgress, discard, trial_folder
from kdbench.tuning.studies import HPARAMS, RESUMES, _ask, _tell, trial_resume_key
from kdbench.tuning.trial import PrunerSettings, TrialOutcome, TrialTask, run_trial

SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0],
    "strategies": ["kd"],
    "train": {"max_epochs": 6, "batch_size": 256, "patience": 100},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
}
KEY = "f" * 64
PRUNER = PrunerSettings(first_rung=1, reduction_factor=2)  # rungs at epochs 1, 2, 4


class Killed(BaseException):
    """The worker's end (a signal): not an error the trial records."""


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> CellTask:
    """The toy suite's KD cell with its trained teacher, as the driver hands it to a trial."""
    root = tmp_path_factory.mktemp("trial")
    write_interactions(root / "data" / "toy" / "toy.inter")
    (root / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(root / "data")}))
    runner = Runner(root / "results", root / "cache")
    cell = next(c for c in expand(load_suite(root / "suite.yaml")) if c.strategy == "kd")
    teacher = runner.teachers([cell])[runner.teacher_key(cell)]
    return CellTask(replace(cell, seed=100), runner.device, str(runner.cache_dir), runner.plugins, teacher)


def _finished(rungs: dict[str, float]) -> tuple:
    """A study's one finished trial, whose successive-halving rungs the trial competes against."""
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values={1: 0.5}, system_attrs=rungs))
    return tuple(study.trials)


def _trained(task: TrialTask, monkeypatch, kill_at: int | None = None) -> tuple[TrialOutcome, int]:
    """(outcome, epochs trained here) of the trial; with `kill_at`, the worker dies at that epoch of the
    trial (all seeds counted), before the epoch is kept."""
    fit, trained = trial_module.fit, []

    def watched_fit(*args, on_epoch, **kwargs):
        def counted(epoch, valid):
            trained.append(epoch)
            if len(trained) == kill_at:
                raise Killed
            on_epoch(epoch, valid)
        return fit(*args, on_epoch=counted, **kwargs)

    monkeypatch.setattr(trial_module, "fit", watched_fit)
    return run_trial(task), len(trained)


def _result(outcome: TrialOutcome) -> dict:
    return {k: v for k, v in asdict(outcome).items() if k != "seconds"}


@pytest.mark.slow
@pytest.mark.parametrize("kill_at, rungs", [
    (3, {}),  # mid first seed: its curve is shown to the pruner again
    (6, {}),  # the first seed's last epoch (never kept: it is the end of the seed)
    (9, {}),  # mid second seed, the first taken as it ended
    (3, {"completed_rung_0": 0.0, "completed_rung_1": 0.0, "completed_rung_2": 1.0}),  # pruned at 4 after resuming
])
def test_a_killed_trial_continues_and_ends_as_the_uninterrupted_one(base, monkeypatch, kill_at, rungs):
    task = TrialTask(base, {"weight": 0.5, "learning_rate": 0.01}, (100, 101), PRUNER, _finished(rungs),
                     resume_key=KEY)
    straight, straight_epochs = _trained(replace(task, resume_key=None), monkeypatch)
    assert not (trial_folder(base.work_dir, KEY)).exists()
    with pytest.raises(Killed):
        _trained(task, monkeypatch, kill_at=kill_at)
    kept = TrialProgress(trial_folder(base.work_dir, KEY), KEY)
    assert kept.outcome is None
    resumed, resumed_epochs = _trained(task, monkeypatch)
    assert _result(resumed) == _result(straight)
    assert resumed_epochs < straight_epochs - 1  # it went on from what was kept, not from epoch 1
    assert resumed_epochs + kill_at - 1 >= straight_epochs  # an epoch not yet kept is trained again
    if rungs:
        assert resumed.pruned and resumed.epochs == 4 and set(resumed.rungs) == set(rungs)
    else:
        assert resumed.value is not None and resumed.epochs == 12
    again, trained = _trained(task, monkeypatch)  # ended, but killed before the study recorded it
    assert _result(again) == _result(straight) and trained == 0
    discard(base.work_dir, KEY)
    assert not trial_folder(base.work_dir, KEY).exists()


def test_another_trial_s_progress_is_never_taken_over(tmp_path):
    progress = TrialProgress(tmp_path / "t", "a" * 64)
    progress.seed_done(0.3, 6, 1.0, [(1, 0.2), (2, 0.3)])
    assert TrialProgress(tmp_path / "t", "a" * 64).seeds == [{"value": 0.3, "epochs": 6, "seconds": 1.0}]
    other = TrialProgress(tmp_path / "t", "b" * 64)
    assert (other.seeds, other.curve, other.outcome) == ([], [], None)
    assert other.seed_checkpoint(0).load() is None


def _toy_study(data, root) -> Study:
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", 0, data_path=str(data))
    return Study(cell, 40, root)


def _key(study: Study, optuna_study, asked, settings: TuningSettings) -> str:
    """The kept-progress key the driver gives the trial just asked."""
    finished = tuple(t for t in optuna_study.get_trials(deepcopy=False)
                     if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    return trial_resume_key(study, settings, asked[1], finished, asked[2], True)


def test_an_interrupted_trial_is_asked_again_first_and_later_draws_are_the_uninterrupted_study_s(tmp_path):
    settings = TuningSettings(epochs=1000, seeds=(100, 101), startup_trials=1)
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")

    def tell(optuna_study, asked, value):
        trial, params, _ = asked
        _tell(optuna_study, trial, TrialOutcome(value, [(1, value)], epochs=5), params)

    straight_study = _toy_study(tmp_path / "data", tmp_path / "straight")
    straight = open_study(straight_study, settings)
    tell(straight, _ask(straight_study, straight, settings), 0.1)  # the defaults
    second = _ask(straight_study, straight, settings)
    second_key = _key(straight_study, straight, second, settings)
    tell(straight, second, 0.2)
    third = _ask(straight_study, straight, settings)

    killed_study = _toy_study(tmp_path / "data", tmp_path / "killed")
    killed = open_study(killed_study, settings)
    tell(killed, _ask(killed_study, killed, settings), 0.1)
    interrupted = _ask(killed_study, killed, settings)  # running when its driver was killed
    assert interrupted[1] == second[1]
    reopened = open_study(killed_study, settings)
    assert reopened.trials[interrupted[0].number].state == optuna.trial.TrialState.FAIL
    resumed = _ask(killed_study, reopened, settings)
    assert resumed[1] == interrupted[1] and resumed[2] == interrupted[2]  # parameters and epochs it may spend
    assert resumed[0].user_attrs[RESUMES] == interrupted[0].number and resumed[0].user_attrs[HPARAMS] == second[1]
    assert _key(killed_study, reopened, resumed, settings) == second_key  # it takes the kept progress over
    tell(reopened, resumed, 0.2)
    after = _ask(killed_study, reopened, settings)
    assert after[1] == third[1] != second[1]  # the sampler's draw of the uninterrupted study's next trial


def test_a_trial_interrupted_before_it_knew_its_parameters_is_not_asked_again(tmp_path):
    """A study tuned before trials kept their parameters at once: its running trial is only failed."""
    settings = TuningSettings(epochs=1000, seeds=(100, 101))
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    study = _toy_study(tmp_path / "data", tmp_path)
    optuna_study = open_study(study, settings)
    optuna_study.ask()  # asked by an older kdbench: no parameters recorded
    reopened = open_study(study, settings)
    assert [t.state for t in reopened.trials] == [optuna.trial.TrialState.FAIL]


def test_interrupted_defaults_are_asked_again_once_as_the_defaults(tmp_path):
    settings = TuningSettings(epochs=1000, seeds=(100, 101))
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    study = _toy_study(tmp_path / "data", tmp_path)
    first = _ask(study, open_study(study, settings), settings)  # the published defaults, then killed
    reopened = open_study(study, settings)
    again = _ask(study, reopened, settings)
    assert again[1] == first[1] == study.defaults() and again[0].user_attrs["defaults"]
    assert [t.state for t in reopened.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING]


def test_a_trial_shows_each_epoch_on_the_progress_bar(base):
    """The tune bar counts a trial's epochs when it ends; meanwhile each epoch is a progress line."""
    seen: list[str] = []
    with progress.sink(seen.append):
        outcome = run_trial(TrialTask(base, {"learning_rate": 1e-3}, (100, 101), PRUNER, prunable=False))
    assert outcome.error is None and outcome.epochs == 12
    label = f"{base.cell.pairing} {base.cell.label} trial"
    assert [line.split(",")[0] for line in seen] == [f"{label}: seed {seed} epoch {epoch}/6"
                                                     for seed in (100, 101) for epoch in range(1, 7)]
    assert seen[0].startswith(f"{label}: seed 100 epoch 1/6, valid NDCG@10 {outcome.curve[0][1]:.4f}")


def test_a_trial_trains_with_the_suite_s_fixed_hyperparameters_under_its_draws(base, monkeypatch):
    """A suite fixes some hyperparameters (DE's num_experts: 5); the trial draws the rest. Before
    2026-12-08 the draws replaced them, so DE's trials trained its default 30 experts."""
    built = []
    real = trial_module.build_student_run

    def spy(task, hparams=None, **kwargs):
        data, student, strategy, seconds = real(task, hparams, **kwargs)
        built.append(dict(strategy.hparams))
        return data, student, strategy, seconds

    monkeypatch.setattr(trial_module, "build_student_run", spy)
    fixed = replace(base, cell=replace(base.cell, hparams=(("K", 7), ("tau", 3.0))))
    outcome = run_trial(TrialTask(fixed, {"weight": 0.5, "tau": 2.0, "learning_rate": 1e-3}, (100,), PRUNER,
                                  prunable=False, epoch_allowance=1))
    assert outcome.error is None
    assert built[0]["K"] == 7 and built[0]["weight"] == 0.5  # fixed, and drawn
    assert built[0]["tau"] == 2.0  # where a suite fixes a name the space also draws, the draw wins
