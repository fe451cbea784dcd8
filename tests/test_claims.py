"""Two processes on one results folder and one teacher cache: each cell and each teacher computed
once (claims, `kdbench.run.claims`); a dead holder's claim taken over; a teacher cache entry never
half-visible; a tuning study tuned by one process at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_interactions
from kdbench.store import checkpoints
from kdbench.run.cells import Cell
from kdbench.store.checkpoints import META, WEIGHTS, clear_partial, load_checkpoint, save_checkpoint
from kdbench.families import BackboneSpec
from kdbench.run import claims
from kdbench.run.claims import held, try_claim
from kdbench.run.runner import Runner
from kdbench.training.loop import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
SMALL = TrainSettings(max_epochs=2, batch_size=4096)

# `python -m kdbench ARGS` with kdbench.run.work.fit counted: each training appends "<pid> <model>:<dim>"
# to COUNTER and sleeps a little (FIT_SLEEP seconds; only for SLOW_MODEL if set), so that two
# processes started together overlap. It starts when
# GO exists, so that both start together.
COUNTING_RUN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import kdbench.run.work as work

    counter, go, argv = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    original = work.fit

    def counting_fit(model, *args, **kwargs):
        name = f"{type(model).__name__}:{model.user_embedding.weight.shape[1]}"
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()} {name}\\n")
        time.sleep(float(os.environ["FIT_SLEEP"]) if os.environ.get("SLOW_MODEL", name) == name else 0.0)
        return original(model, *args, **kwargs)

    work.fit = counting_fit
    while not go.exists():
        time.sleep(0.01)
    from kdbench.cli import main
    sys.exit(main(argv))
    """
)


def _counting_run(root: Path, argv: list[str], sleep: float = 0.5, slow_model: str = "") -> subprocess.Popen:
    """`run ARGV` counting its trainings; each sleeps `sleep` seconds first (only `slow_model`'s, if given)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FIT_SLEEP": str(sleep), **({"SLOW_MODEL": slow_model} if slow_model else {})}
    return subprocess.Popen([sys.executable, "-c", COUNTING_RUN, str(root / "fits.txt"), str(root / "go"), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)


def _fits(root: Path) -> Counter:
    lines = (root / "fits.txt").read_text().split("\n") if (root / "fits.txt").exists() else []
    return Counter(line.split()[1] for line in lines if line)


# -- the claim files --------------------------------------------------------------------------------

def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_claim(path: Path, pid: int, host: str = claims.HOST) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "started": time.time(), "token": "theirs"}))


def test_a_claim_is_exclusive_while_held_and_gone_once_released(tmp_path):
    path = tmp_path / "x.claim"
    claim = try_claim(path)
    assert claim is not None and held(path)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert try_claim(path) is None  # a live owner (this very process) holds it
    claim.release()
    assert not path.exists() and not held(path)
    again = try_claim(path)
    assert again is not None
    again.release()


def test_a_claim_whose_owner_died_is_taken_over(tmp_path):
    path = tmp_path / "x.claim"
    _write_claim(path, _dead_pid())
    assert not held(path)
    claim = try_claim(path)
    assert claim is not None
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["x.claim"]  # the stale one was removed
    claim.release()


def test_a_live_claim_on_another_host_is_respected_until_it_goes_unrefreshed(tmp_path):
    path = tmp_path / "x.claim"
    _write_claim(path, 1, host="elsewhere.example")
    assert try_claim(path) is None
    old = time.time() - claims.STALE_SECONDS - 5
    os.utime(path, (old, old))  # not refreshed by its holder's heartbeat for too long
    claim = try_claim(path)
    assert claim is not None
    claim.release()


def test_a_holder_refreshes_its_claim_and_releasing_another_process_s_claim_leaves_it(tmp_path):
    path = tmp_path / "x.claim"
    claim = try_claim(path)
    assert claims._HEARTBEAT.running  # the thread that refreshes every HEARTBEAT_SECONDS
    old = time.time() - claims.STALE_SECONDS - 5
    os.utime(path, (old, old))
    claims._HEARTBEAT.refresh()  # what that thread does each time
    assert path.stat().st_mtime > time.time() - 60 and held(path)
    _write_claim(path, os.getpid())  # taken over by someone else meanwhile (another token)
    claim.release()
    assert path.exists()


# -- the runner: cells and teachers ---------------------------------------------------------------------

def _cell(toy_dir: Path, strategy: str = "scratch", seed: int = 0) -> Cell:
    return Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), strategy, seed=seed, train=SMALL,
                teacher_train=SMALL, data_path=str(toy_dir))


@pytest.mark.slow
def test_a_cell_claimed_by_a_dead_process_is_taken_over(toy_dir, tmp_path):
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    cell = _cell(toy_dir)
    _write_claim(runner.stored.claim_path(cell), _dead_pid())
    _write_claim(runner.cache.claim_path(runner.teacher_key(cell)), _dead_pid())
    record = runner.run(cell)
    assert record["status"] == "ok" and runner.executed == 1
    assert not runner.stored.claim_path(cell).exists()
    assert not runner.cache.claim_path(runner.teacher_key(cell)).exists()
    assert sorted(p.name for p in (tmp_path / "cache" / "teachers").iterdir()) == [runner.teacher_key(cell)]


@pytest.mark.slow
def test_a_cell_held_by_a_live_process_is_left_for_the_end_then_reused(toy_dir, tmp_path):
    """The holder stores the result while this runner runs the other cells; the runner takes it."""
    notes: list[str] = []
    runner = Runner(tmp_path / "results", tmp_path / "cache", log=notes.append)
    held_cell, other = _cell(toy_dir, seed=0), _cell(toy_dir, seed=1)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_claim(runner.stored.claim_path(held_cell), holder.pid)
        stored = Runner(tmp_path / "results2", tmp_path / "cache").run(held_cell)  # what the holder will store

        def finish() -> None:  # the holder writes its result, then releases its claim
            time.sleep(1.0)
            runner.store.put(held_cell.address, stored)
            runner.stored.claim_path(held_cell).unlink()

        threading.Thread(target=finish).start()
        records = runner.run_all([held_cell, other])
    finally:
        holder.kill()
        holder.wait()
    assert runner.executed == 1  # only `other` was run here
    assert records[0] == runner.store.find(held_cell.address) and records[0]["test"] == stored["test"]
    assert any("being run by another process" in note and str(holder.pid) in note for note in notes)


@pytest.mark.slow
def test_two_runs_started_together_on_one_folder_train_each_cell_and_the_teacher_once(toy_dir, tmp_path):
    argv = ["run", "--dataset", "toy", "--data-path", str(toy_dir), "--teacher", "BPR:8", "--student", "BPR:4",
            "--strategy", "scratch", "--strategy", "kd", "--seed", "0", "--seed", "1", "--epochs", "2",
            "--teacher-epochs", "2", "--workers", "1", "--results-dir", str(tmp_path / "results"),
            "--cache-dir", str(tmp_path / "cache")]
    processes = [_counting_run(tmp_path, argv) for _ in range(2)]
    (tmp_path / "go").touch()
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert _fits(tmp_path) == {"BPR:8": 1, "BPR:4": 4}  # one teacher, four student cells, once each
    runs = sorted((tmp_path / "results" / "runs").rglob("seed*.json"))
    assert len(runs) == 4 and all(json.loads(p.read_text())["status"] == "ok" for p in runs)
    assert not list(tmp_path.rglob("*.claim")) and not list(tmp_path.rglob("*.tmp"))
    assert len(list((tmp_path / "cache" / "teachers").iterdir())) == 1


@pytest.mark.slow
def test_a_killed_holder_s_cell_is_taken_over_by_the_process_waiting_for_it(toy_dir, tmp_path):
    argv = ["run", "--dataset", "toy", "--data-path", str(toy_dir), "--teacher", "BPR:8", "--student", "BPR:4",
            "--seed", "0", "--epochs", "2", "--teacher-epochs", "2", "--workers", "1",
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    (tmp_path / "go").touch()
    holder = _counting_run(tmp_path, argv, sleep=120, slow_model="BPR:4")  # trains the teacher, claims the
    claim = tmp_path / "results" / "runs" / "toy" / "BPR-8_to_BPR-4" / "scratch" / ".seed0.claim"  # cell, hangs
    deadline = time.time() + 120
    while not (claim.exists() and _fits(tmp_path)["BPR:4"]) and time.time() < deadline:
        time.sleep(0.05)
    assert holder.poll() is None and claim.exists() and _fits(tmp_path) == {"BPR:8": 1, "BPR:4": 1}
    notes: list[str] = []
    runner = Runner(tmp_path / "results", tmp_path / "cache", log=notes.append)

    def kill_holder() -> None:
        time.sleep(1.5)
        holder.kill()
        holder.communicate()  # reaped: its PID is gone

    threading.Thread(target=kill_holder).start()
    (record,) = runner.run_all([_single_run_cell(toy_dir)])
    assert record["status"] == "ok" and runner.executed == 1
    assert runner.teacher_sources[runner.teacher_key(_single_run_cell(toy_dir))].startswith("loaded from the cache")
    assert any("being run by another process" in note for note in notes)
    assert not claim.exists() and not list(tmp_path.rglob("*.claim"))


def _single_run_cell(toy_dir: Path) -> Cell:
    """The cell `run --epochs 2 --teacher-epochs 2` makes (the CLI's training defaults otherwise)."""
    from dataclasses import replace

    return Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "scratch", seed=0,
                train=replace(TrainSettings(), max_epochs=2), teacher_train=replace(TrainSettings(), max_epochs=2),
                data_path=str(toy_dir))


# -- the teacher cache entry as one unit ----------------------------------------------------------------

def _state(value: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.full((64, 8), value)}


def test_a_save_cut_off_between_weights_and_metadata_leaves_no_entry(tmp_path, monkeypatch):
    folder = tmp_path / "teachers" / "k"

    def crash(path):
        raise KeyboardInterrupt  # the process dies after the weights were written, before the metadata

    monkeypatch.setattr(checkpoints, "file_digest", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, _state(1.0), {"writer": 1})
    assert load_checkpoint(folder) is None and not folder.exists()
    assert list((tmp_path / "teachers").iterdir()) == []  # no temporary folder left either


KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    import torch
    from kdbench.store import checkpoints

    def stall(path):
        print("weights written", flush=True)
        time.sleep(60)

    checkpoints.file_digest = stall
    checkpoints.save_checkpoint(sys.argv[1], {"weight": torch.zeros(4)}, {"writer": 2})
    """
)


def test_a_save_killed_between_weights_and_metadata_leaves_the_previous_entry_whole(tmp_path):
    folder = tmp_path / "teachers" / "k"
    save_checkpoint(folder, _state(1.0), {"writer": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=env)
    assert writer.stdout.readline().strip() == "weights written"
    writer.kill()
    writer.communicate()
    state, meta = load_checkpoint(folder)
    assert meta == {"writer": 1} and torch.equal(state["weight"], _state(1.0)["weight"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS, META])
    assert clear_partial(folder) == 1  # the killed write's temporary folder, cleared by the next writer
    assert [p.name for p in (tmp_path / "teachers").iterdir()] == ["k"]


CONCURRENT_SAVES = textwrap.dedent(
    """
    import sys
    import torch
    from kdbench.store.checkpoints import save_checkpoint

    writer = int(sys.argv[2])
    for _ in range(40):
        save_checkpoint(sys.argv[1], {"weight": torch.full((256, 64), float(writer))}, {"writer": writer})
    """
)


def test_two_writers_of_one_entry_never_show_a_reader_a_mismatch(tmp_path):
    """Weights and metadata of one writer, always: no checksum mismatch, no weights without metadata."""
    folder = tmp_path / "teachers" / "k"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_SAVES, str(folder), str(n)], env=env)
               for n in (1, 2)]
    seen = Counter()
    while any(writer.poll() is None for writer in writers):
        loaded = load_checkpoint(folder)  # raises DamagedCheckpoint on a mismatch
        if loaded is not None:
            state, meta = loaded
            assert torch.all(state["weight"] == float(meta["writer"]))
            seen[meta["writer"]] += 1
    assert [writer.returncode for writer in writers] == [0, 0]
    state, meta = load_checkpoint(folder)
    assert torch.all(state["weight"] == float(meta["writer"]))
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == ["k"]
    assert sum(seen.values()) > 0


# -- tuning studies ------------------------------------------------------------------------------------

TUNE_SUITE = {
    "name": "toy", "datasets": ["toy"], "seeds": [0], "strategies": ["scratch"],
    "train": {"max_epochs": 2, "batch_size": 4096, "patience": 10},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
    "tuning": {"trials": 2, "seeds": [100], "startup_trials": 1},
}


@pytest.mark.slow
def test_a_study_another_process_tunes_is_waited_for_and_its_running_trial_left_alone(tmp_path):
    import optuna

    from kdbench.run.suites import expand, load_suite
    from kdbench.tuning import Study, TuningSettings, open_study, tune

    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**TUNE_SUITE, "data_path": str(tmp_path / "data")}))
    cells = expand(load_suite(tmp_path / "suite.yaml"), sweeps=False)
    notes: list[str] = []
    runner = Runner(tmp_path / "results", tmp_path / "cache", log=notes.append)
    settings = TuningSettings.from_spec(TUNE_SUITE["tuning"])
    (cell,) = [c for c in cells if c.strategy == "scratch"]
    study = Study(cell, runner.n_items(cell), tmp_path / "results", runner.fingerprint(cell))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    _write_claim(study.folder / ".scratch.claim", holder.pid)
    other = open_study(study, settings)  # the holder's study, with a trial it is running now
    running = other.ask()
    result: list = []
    tuner = threading.Thread(target=lambda: result.append(tune(runner, cells, settings)))
    tuner.start()
    time.sleep(2.0)
    assert tuner.is_alive()  # waiting for the holder
    assert other.trials[running.number].state == optuna.trial.TrialState.RUNNING  # not taken for interrupted
    assert any("waiting for study" in note and str(holder.pid) in note for note in notes)
    holder.kill()  # the holder dies: its study is resumed here, its running trial marked interrupted
    holder.wait()
    tuner.join(timeout=300)
    assert not tuner.is_alive() and result[0][0]["finished"]
    trials = optuna.load_study(study_name=study.name, storage=f"sqlite:///{study.storage_path}").trials
    assert trials[running.number].user_attrs.get("interrupted") is True
    assert not (study.folder / ".scratch.claim").exists()


@pytest.mark.slow
def test_a_study_another_process_made_with_other_settings_is_refused_once_it_is_free(tmp_path):
    """Matched by its identity, not its name: the study the holder created while this tuner waited
    (other tuning seeds) is refused, never tuned further with this tuner's settings."""
    from kdbench.errors import KdbenchError
    from kdbench.run.suites import expand, load_suite
    from kdbench.tuning import Study, TuningSettings, open_study, tune

    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**TUNE_SUITE, "data_path": str(tmp_path / "data")}))
    cells = expand(load_suite(tmp_path / "suite.yaml"), sweeps=False)
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    settings = TuningSettings.from_spec(TUNE_SUITE["tuning"])
    (cell,) = [c for c in cells if c.strategy == "scratch"]
    study = Study(cell, runner.n_items(cell), tmp_path / "results", runner.fingerprint(cell))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    _write_claim(study.folder / ".scratch.claim", holder.pid)
    errors: list[BaseException] = []

    def tuner() -> None:
        try:
            tune(runner, cells, settings)
        except KdbenchError as exc:
            errors.append(exc)

    thread = threading.Thread(target=tuner)
    thread.start()
    time.sleep(1.0)
    open_study(study, TuningSettings.from_spec({**TUNE_SUITE["tuning"], "seeds": [7]}))  # the holder's study
    holder.kill()
    holder.wait()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(errors) == 1
    assert "made with other settings" in str(errors[0]) and "seeds" in str(errors[0])
    assert not (tmp_path / "cache" / "teachers").exists() or not any((tmp_path / "cache" / "teachers").iterdir())


def test_a_new_runner_clears_a_killed_write_s_temp_file_but_not_one_a_live_holder_is_writing(tmp_path):
    folder = tmp_path / "results" / "runs" / "toy" / "A_to_B" / "scratch"
    folder.mkdir(parents=True)
    (folder / ".seed0.json.abc.tmp").write_text("{")  # a write of a live process, which holds seed0
    (folder / ".seed1.json.def.tmp").write_text("{")  # a write killed along with its process
    live = try_claim(folder / ".seed0.claim")
    _write_claim(folder / ".seed1.claim", _dead_pid())
    Runner(tmp_path / "results", tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == [".seed0.claim", ".seed0.json.abc.tmp", ".seed1.claim"]
    live.release()
