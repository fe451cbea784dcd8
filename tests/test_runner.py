"""The runner: cells trained and measured, teachers cached, finished cells skipped, failures recorded."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import kdbench.run.work as work_module
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.record import RunStore
from kdbench.run.runner import TEACHER, Cell, Runner, run_cells, validate_cells
from kdbench.strategies import STRATEGIES
from kdbench.strategies.base import DistillationStrategy
from kdbench.strategies.scratch import Scratch
from kdbench.training.loop import TrainSettings

SMALL = TrainSettings(max_epochs=2, batch_size=4096)
ML100K = Cell("ml-100k", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "scratch", seed=0, train=SMALL)


class FitCounter:
    """Wraps kdbench.run.work.fit, recording which model sizes were trained."""

    def __init__(self, monkeypatch):
        self.trained: list[str] = []
        original = work_module.fit

        def counting_fit(model, *args, **kwargs):
            self.trained.append(f"{type(model).__name__}:{model.user_embedding.weight.shape[1]}")
            return original(model, *args, **kwargs)

        monkeypatch.setattr(work_module, "fit", counting_fit)


@pytest.fixture
def fits(monkeypatch):
    return FitCounter(monkeypatch)


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "results", tmp_path / "cache"


def _toy_cell(toy_dir, **change) -> Cell:
    cell = Cell("toy", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "scratch", seed=0, train=SMALL,
                data_path=str(toy_dir))
    return replace(cell, **change)


def _teacher_folders(cache_dir):
    return sorted((cache_dir / "teachers").iterdir())


# -- one finished ml-100k cell ---------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A scratch cell on ml-100k run once in fresh results and cache folders."""
    root = tmp_path_factory.mktemp("runner")
    with pytest.MonkeyPatch.context() as monkeypatch:
        counter = FitCounter(monkeypatch)
        runner = Runner(root / "results", root / "cache")
        record = runner.run(ML100K)
    return {"root": root, "record": record, "trained": counter.trained, "runner": runner}


@pytest.mark.slow
def test_a_cell_trains_its_teacher_then_its_student(finished):
    assert finished["trained"] == ["BPR:16", "BPR:4"]


@pytest.mark.slow
def test_a_finished_cell_is_written_as_one_json_file(finished):
    folder = finished["root"] / "results" / "runs" / "ml-100k" / "BPR-16_to_BPR-4" / "scratch"
    assert sorted(p.name for p in folder.iterdir()) == ["seed0.json", "seed0.log"]  # no temporary files
    assert json.loads((folder / "seed0.json").read_text()) == json.loads(json.dumps(finished["record"]))


@pytest.mark.slow
def test_a_finished_record_holds_metrics_cost_settings_and_environment(finished):
    record = finished["record"]
    assert record["status"] == "ok"
    assert (record["dataset"], record["pairing"], record["model"]) == ("ml-100k", "BPR:16->BPR:4", "BPR:4")
    assert (record["strategy"], record["family"], record["seed"]) == ("scratch", "baseline", 0)
    assert set(record["test"]) == {"ndcg@10", "ndcg@20", "recall@10", "recall@20"}
    assert all(0 <= value <= 1 for value in record["test"].values())
    assert len(record["per_user"]["user_ids"]) == len(record["per_user"]["ndcg@10"]) == 943
    assert record["cost"]["params"] == (944 + 1683) * 4
    assert record["cost"]["size_bytes"] == record["cost"]["params"] * 4
    assert record["cost"]["throughput_users_per_s"] > 0
    assert record["training"]["epochs_run"] == 2
    assert record["config"]["train"] == SMALL.as_dict()
    assert record["config"]["protocol"]["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}
    assert set(record["environment"]) >= {"kdbench", "recbole", "torch", "python", "cpu", "gpu"}
    assert set(record["teacher_test"]) == set(record["test"])
    assert record["wall_seconds"] > 0


@pytest.mark.slow
def test_a_record_keeps_its_time_breakdown(finished):
    training = finished["record"]["training"]
    parts = ("kd_prepare_seconds", "train_seconds", "eval_seconds", "test_seconds", "cost_seconds",
             "teacher_load_seconds")
    assert all(training[part] >= 0 for part in parts)
    assert training["train_seconds"] > 0 and training["eval_seconds"] > 0 and training["test_seconds"] > 0
    assert sum(training[part] for part in parts) <= finished["record"]["wall_seconds"]


@pytest.mark.slow
def test_the_teacher_is_cached_as_weights_and_metadata(finished):
    (folder,) = _teacher_folders(finished["root"] / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "weights.pt"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["model"] == "BPR:16" and meta["strategy"] == TEACHER
    assert meta["test"] == finished["record"]["teacher_test"]


@pytest.mark.slow
def test_nothing_is_written_outside_the_results_and_cache_folders(finished):
    assert sorted(p.name for p in finished["root"].iterdir()) == ["cache", "results"]


@pytest.mark.slow
def test_rerunning_a_finished_cell_trains_nothing_and_returns_its_record(finished, fits):
    again = Runner(finished["root"] / "results", finished["root"] / "cache")
    assert again.is_done(ML100K)
    assert again.run(ML100K) == json.loads(json.dumps(finished["record"]))
    assert fits.trained == []


# -- the cache and resume, on the small synthetic dataset ------------------------------------


def test_a_new_runner_loads_the_cached_teacher_instead_of_training_it(toy_dir, dirs, fits):
    Runner(*dirs).run(_toy_cell(toy_dir))
    (folder,) = _teacher_folders(dirs[1])
    written = (folder / "meta.json").stat().st_mtime_ns, (folder / "weights.pt").stat().st_mtime_ns
    fits.trained.clear()
    record = Runner(*dirs).run(_toy_cell(toy_dir, seed=1))  # another student, the same teacher
    assert record["status"] == "ok"
    assert fits.trained == ["BPR:4"]
    assert _teacher_folders(dirs[1]) == [folder]
    assert ((folder / "meta.json").stat().st_mtime_ns, (folder / "weights.pt").stat().st_mtime_ns) == written


def test_the_cached_teacher_scores_as_the_trained_one(toy_dir, dirs):
    first = Runner(*dirs).run(_toy_cell(toy_dir))
    second = Runner(*dirs).run(_toy_cell(toy_dir, seed=1))
    assert second["teacher_test"] == first["teacher_test"]


def test_another_teacher_setting_trains_another_teacher(toy_dir, dirs, fits):
    runner = Runner(*dirs)
    runner.run(_toy_cell(toy_dir))
    runner.run(_toy_cell(toy_dir, teacher_seed=1))
    assert fits.trained == ["BPR:16", "BPR:4", "BPR:16", "BPR:4"]
    assert len(_teacher_folders(dirs[1])) == 2


def test_a_strategy_that_trains_the_teacher_further_leaves_the_cached_teacher_byte_identical(
        toy_dir, dirs, monkeypatch):
    runner = Runner(*dirs)
    scratch = runner.run(_toy_cell(toy_dir))
    (folder,) = _teacher_folders(dirs[1])
    cached = {p.name: p.read_bytes() for p in folder.iterdir()}
    seen = {}
    original = work_module.fit

    def watching_fit(model, data, settings, strategy=None, **kwargs):
        result = original(model, data, settings, strategy=strategy, **kwargs)
        teacher = strategy.context.teacher.model
        seen["teacher"] = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
        seen["trainable"] = teacher.training and all(p.requires_grad for p in teacher.parameters())
        return result

    monkeypatch.setattr(work_module, "fit", watching_fit)
    record = runner.run(_toy_cell(toy_dir, strategy="bd"))
    assert record["status"] == "ok"
    assert record["teacher_trained_further"] is True and scratch["teacher_trained_further"] is False
    assert record["training_only_params"] == 0  # the teacher copy is not a training-only module
    assert record["teacher_test"] == scratch["teacher_test"]  # the cached teacher's own metrics
    assert _teacher_folders(dirs[1]) == [folder]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == cached
    # ... although the worker's copy was trainable and did train
    cached_state = torch.load(folder / "weights.pt", weights_only=True)
    assert seen["trainable"]
    assert any(not torch.equal(cached_state[k], seen["teacher"][k].cpu()) for k in cached_state)


def test_rerunning_a_finished_cell_does_not_retrain_but_force_does(toy_dir, dirs, fits):
    cell = _toy_cell(toy_dir)
    first = Runner(*dirs).run(cell)
    fits.trained.clear()
    assert Runner(*dirs).run(cell) == json.loads(json.dumps(first))
    assert fits.trained == []
    forced = Runner(*dirs, force=True).run(cell)
    assert fits.trained == ["BPR:4"]  # the student again; the teacher still comes from the cache
    assert forced["status"] == "ok" and forced["created"] >= first["created"]


def test_a_current_run_in_a_reuse_from_folder_is_copied_not_rerun(toy_dir, dirs, tmp_path, fits):
    """sweep-data's 100% share and the run store hold the same cells: one folder's finished run is the
    other's, copied with its log; a run there with other settings is not, and force runs anyway."""
    cell = _toy_cell(toy_dir)
    elsewhere = tmp_path / "elsewhere"
    made = Runner(elsewhere, dirs[1]).run(cell)
    fits.trained.clear()
    runner = Runner(*dirs, reuse_from=(elsewhere,))
    assert runner.run(cell) == json.loads(json.dumps(made))
    assert fits.trained == [] and (runner.executed, runner.reused) == (0, 1)
    source, copy = (RunStore(folder).file(cell.address) for folder in (elsewhere, dirs[0]))
    assert json.loads(copy.read_text()) == json.loads(source.read_text())
    assert copy.with_suffix(".log").read_text() == source.with_suffix(".log").read_text() != ""
    other = _toy_cell(toy_dir, seed=1, train=TrainSettings(max_epochs=3, batch_size=4096))
    Runner(elsewhere, dirs[1]).run(_toy_cell(toy_dir, seed=1))  # seed 1 there with the suite's settings
    fits.trained.clear()
    Runner(*dirs, reuse_from=(elsewhere,)).run(other)
    assert fits.trained[-1:] == ["BPR:4"]  # the student (its teacher too: other settings)
    fits.trained.clear()
    Runner(*dirs, reuse_from=(elsewhere,), force=True).run(cell)
    assert fits.trained == ["BPR:4"]


def test_the_same_cell_gives_the_same_result(toy_dir, dirs):
    first = Runner(*dirs).run(_toy_cell(toy_dir))
    forced = Runner(*dirs, force=True).run(_toy_cell(toy_dir))
    assert forced["test"] == first["test"]
    assert forced["per_user"] == first["per_user"]


def test_the_teacher_row_is_a_cell_of_its_own(toy_dir, dirs):
    record = Runner(*dirs).run(_toy_cell(toy_dir).teacher_cell())
    assert record["status"] == "ok"
    assert (record["strategy"], record["family"], record["model"]) == (TEACHER, TEACHER, "BPR:16")
    assert (dirs[0] / "runs" / "toy" / "BPR-16_to_BPR-4" / "teacher" / "seed0.json").is_file()


def test_overridden_hyperparameters_make_a_separate_cell(toy_dir, dirs):
    record = Runner(*dirs).run(_toy_cell(toy_dir, hparams=(("weight", 0.0),)))
    assert record["label"] == "scratch@weight=0.0"
    assert (dirs[0] / "runs" / "toy" / "BPR-16_to_BPR-4" / "scratch@weight=0.0" / "seed0.json").is_file()


# -- failures --------------------------------------------------------------------------------


def _explode(self, batch):
    raise RuntimeError("boom in the KD loss")


def test_a_failing_cell_is_recorded_and_the_runner_goes_on(toy_dir, dirs, monkeypatch):
    runner = Runner(*dirs)
    good = _toy_cell(toy_dir)
    runner.run(good)
    monkeypatch.setattr(Scratch, "loss", _explode)
    bad = _toy_cell(toy_dir, seed=1)
    records = run_cells(runner, [bad, good, _toy_cell(toy_dir, seed=2)])
    assert [r["status"] for r in records] == ["failed", "ok", "failed"]
    assert records[0]["error"] == "RuntimeError: boom in the KD loss"
    stored = runner.store.read("toy", bad.pairing, bad.label, 1)
    assert stored["status"] == "failed" and stored["error"] == records[0]["error"]
    assert stored["environment"] and stored["config"]["train"] == SMALL.as_dict()
    log = runner.store.path("toy", bad.pairing, bad.label, 1).with_suffix(".log").read_text()
    assert "Traceback" in log and "boom in the KD loss" in log


def test_a_finished_cell_with_other_settings_is_not_done(toy_dir, dirs):
    runner = Runner(*dirs)
    runner.run(_toy_cell(toy_dir))
    assert runner.is_done(_toy_cell(toy_dir))
    for change in ({"train": TrainSettings(max_epochs=3, batch_size=4096)}, {"teacher_seed": 1},
                   {"split_seed": 7}, {"teacher_train": TrainSettings(max_epochs=1, batch_size=4096)}):
        assert not runner.is_done(_toy_cell(toy_dir, **change)), change
    assert not Runner(dirs[0], dirs[1], device="cuda").is_done(_toy_cell(toy_dir))


def test_a_failed_cell_is_retried_on_the_next_run(toy_dir, dirs, monkeypatch):
    cell = _toy_cell(toy_dir)
    with monkeypatch.context() as patch:
        patch.setattr(Scratch, "loss", _explode)
        assert Runner(*dirs).run(cell)["status"] == "failed"
    runner = Runner(*dirs)
    assert not runner.is_done(cell)
    assert runner.run(cell)["status"] == "ok"


def test_a_user_error_inside_a_cell_is_raised_not_recorded(toy_dir, dirs):
    with pytest.raises(KdbenchError, match="unknown hyperparameter 'nosuchkey'"):
        Runner(*dirs).run(_toy_cell(toy_dir, hparams=(("nosuchkey", 1),)))
    assert not list((dirs[0] / "runs").rglob("*.json"))


# -- validation before anything trains ------------------------------------------------------


def test_validation_refuses_an_unknown_strategy_listing_the_registered_ones(toy_dir):
    with pytest.raises(KdbenchError, match="unknown strategy 'nosuch': valid: .*scratch"):
        validate_cells([_toy_cell(toy_dir, strategy="nosuch")])


def test_validation_refuses_a_bad_hyperparameter(toy_dir):
    with pytest.raises(KdbenchError, match="hyperparameter 'weight'.*>= 0"):
        validate_cells([_toy_cell(toy_dir, hparams=(("weight", "-1"),))])


def test_validation_refuses_a_missing_dataset(tmp_path):
    with pytest.raises(KdbenchError, match="does not exist"):
        validate_cells([Cell("toy", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "scratch", 0,
                             data_path=str(tmp_path / "absent"))])


class NeedsRepresentations(DistillationStrategy):
    name = "needs-representations"
    family = "feature"
    needs_representations = True


def test_validation_refuses_a_feature_strategy_on_a_backbone_without_representations(toy_dir, monkeypatch):
    monkeypatch.setitem(STRATEGIES._items, NeedsRepresentations.name, NeedsRepresentations)
    with pytest.raises(KdbenchError, match="needs user/item representations.*not for Pop"):
        validate_cells([_toy_cell(toy_dir, strategy=NeedsRepresentations.name, student=BackboneSpec("Pop", 4))])
    validate_cells([_toy_cell(toy_dir, strategy=NeedsRepresentations.name)])  # BPR -> BPR has them


def test_a_cell_under_another_protocol_is_stored_apart_and_resumes(toy_dir, dirs, fits):
    """An ordered cell: its own teacher, its own runs folder, the protocol in its record; rerun: nothing trains."""
    random_cell = _toy_cell(toy_dir, train=replace(SMALL, init_std=0.01))
    ordered = replace(random_cell, protocol="ordered-mask-train")
    runner = Runner(*dirs)
    records = runner.run_all([random_cell, ordered])
    assert [r["protocol"] for r in records] == ["random", "ordered-mask-train"]
    assert runner.teacher_key(random_cell) != runner.teacher_key(ordered)
    assert len(_teacher_folders(dirs[1])) == 2
    assert (dirs[0] / "runs" / "toy@ordered-mask-train" / "BPR-16_to_BPR-4" / "scratch" / "seed0.json").is_file()
    assert (dirs[0] / "runs" / "toy" / "BPR-16_to_BPR-4" / "scratch" / "seed0.json").is_file()
    assert records[0]["test"] != records[1]["test"]
    trained = len(fits.trained)
    Runner(*dirs).run_all([random_cell, ordered])
    assert len(fits.trained) == trained


def test_the_same_data_in_another_folder_resumes_and_changed_data_does_not(toy_dir, dirs, tmp_path, fits):
    """The data's folder is where it lies, not what it is: a checkout holding the dataset elsewhere
    reuses the stored runs; data that differs (by its split's fingerprint) is not the same cell."""
    import shutil

    from conftest import write_interactions

    record = Runner(*dirs).run(_toy_cell(toy_dir))
    assert len(record["data_fingerprint"]) > 8 and record["config"]["data_path"] == str(toy_dir)
    moved = tmp_path / "elsewhere"
    shutil.copytree(toy_dir / "toy", moved / "toy")
    fits.trained.clear()
    assert Runner(*dirs).run(_toy_cell(moved)) == json.loads(json.dumps(record))
    assert fits.trained == []
    changed = tmp_path / "changed"
    write_interactions(changed / "toy" / "toy.inter", seed=1)
    runner = Runner(*dirs)
    assert not runner.is_done(_toy_cell(changed))
    with pytest.raises(KdbenchError, match="holds a finished run with other settings"):
        runner.check_no_overwrite([_toy_cell(changed)])


def test_a_record_from_before_data_fingerprints_is_matched_by_dataset_name(toy_dir, dirs, tmp_path):
    import shutil

    runner = Runner(*dirs)
    runner.run(_toy_cell(toy_dir))
    path = runner.store.path("toy", _toy_cell(toy_dir).pairing, "scratch", 0)
    stored = json.loads(path.read_text())
    del stored["data_fingerprint"]
    path.write_text(json.dumps(stored))
    shutil.copytree(toy_dir / "toy", tmp_path / "elsewhere" / "toy")
    assert Runner(*dirs).is_done(_toy_cell(tmp_path / "elsewhere"))


def test_a_record_an_older_writer_made_is_stale_and_replace_stale_makes_it_again(toy_dir, dirs, fits):
    """A finished record without the beyond-accuracy metrics every run now records is not reused:
    --replace-stale retrains the cell, and the new record holds them."""
    cell = _toy_cell(toy_dir)
    runner = Runner(*dirs)
    runner.run(cell)
    path = runner.store.path("toy", cell.pairing, "scratch", 0)
    stored = json.loads(path.read_text())
    del stored["beyond"], stored["test_users"]
    path.write_text(json.dumps(stored))
    assert not Runner(*dirs).is_done(cell)
    fits.trained.clear()
    again = Runner(*dirs, replace_stale=True)
    again.check_no_overwrite([cell])
    again.run_all([cell])
    assert again.executed == 1 and len(fits.trained) == 1
    remade = json.loads(path.read_text())
    assert set(remade["beyond"]) >= {"itemcoverage@10", "giniindex@10"} and remade["test_users"]["train_interactions"]
    assert remade["test"] == stored["test"]


def test_replace_stale_redoes_only_the_runs_made_with_other_settings_and_resumes(toy_dir, dirs, fits):
    """After a change to a cell's identity, --replace-stale retrains that cell in place, reuses the
    cell that is still current, and a second invocation trains nothing."""
    current, changed = _toy_cell(toy_dir), _toy_cell(toy_dir, seed=1)
    Runner(*dirs).run_all([current, changed])
    changed_now = replace(changed, train=replace(changed.train, learning_rate=changed.train.learning_rate / 2))
    with pytest.raises(KdbenchError, match="--replace-stale. replaces only such runs"):
        Runner(*dirs).check_no_overwrite([current, changed_now])
    fits.trained.clear()
    notes = []
    runner = Runner(*dirs, replace_stale=True, log=notes.append)
    runner.check_no_overwrite([current, changed_now])
    records = runner.run_all([current, changed_now])
    assert runner.executed == 1 and runner.reused == 1
    assert any("replacing 1 stored run(s) made with other settings" in note for note in notes)
    stored = json.loads(runner.store.path("toy", changed.pairing, "scratch", 1).read_text())
    assert stored["config"] == json.loads(json.dumps(records[1]["config"]))
    assert Runner(*dirs).is_done(changed_now) and not Runner(*dirs).is_done(changed)
    again = Runner(*dirs, replace_stale=True)
    again.check_no_overwrite([current, changed_now])
    again.run_all([current, changed_now])
    assert again.executed == 0 and again.reused == 2


def test_without_nominal_teachers_only_cells_that_learn_from_one_train_it(toy_dir, dirs, fits):
    """A size sweep's scratch cells get no teacher (their reference is the largest size); a kd cell in
    the same run still trains and records its own, and scratch's figures do not depend on either."""
    results, cache = dirs
    scratch = _toy_cell(toy_dir)
    bare = Runner(results / "bare", cache / "bare", nominal_teachers=False)
    [alone] = bare.run_all([scratch])
    assert fits.trained == ["BPR:4"] and not (cache / "bare" / "teachers").exists()
    assert alone["status"] == "ok" and "teacher_test" not in alone
    records = bare.run_all([replace(scratch, seed=1), replace(scratch, strategy="kd", seed=1)])
    assert fits.trained == ["BPR:4", "BPR:16", "BPR:4", "BPR:4"]  # the kd cell's teacher, once
    assert "teacher_test" not in records[0] and records[1]["teacher_test"]["ndcg@10"] > 0
    [nominal] = Runner(results / "nominal", cache / "nominal").run_all([scratch])
    assert fits.trained[-2:] == ["BPR:16", "BPR:4"]  # by default scratch's teacher is trained
    assert nominal["test"] == alone["test"] and nominal["teacher_test"] == records[1]["teacher_test"]
