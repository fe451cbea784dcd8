"""Issue 31: SIGTERM, Ctrl-C (SIGINT to the process group) and a killed parent (SIGKILL) end every
worker process of a `run --workers 2`; the driver prints one line saying what was kept, no process
prints a traceback, and the exit code is 128 + the signal (130, 143).

Each test starts a real `python -m kdbench run` on a toy dataset whose students train for (nearly)
ever, waits until both workers run a student, sends the signal and watches the processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import write_interactions

ROOT = Path(__file__).resolve().parents[1]
GONE_WITHIN = 10.0  # seconds for every worker to end after the signal (the parent-watch polls every 0.5 s)
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _start(tmp_path: Path) -> subprocess.Popen:
    write_interactions(tmp_path / "data" / "toy" / "toy.inter", n_users=30, n_items=25, per_user=10)
    argv = [sys.executable, "-m", "kdbench", "run", "--dataset", "toy", "--data-path", str(tmp_path / "data"),
            "--teacher", "BPR:8", "--student", "BPR:4", "--strategy", "scratch,kd", "--workers", "2",
            "--teacher-epochs", "1", "--epochs", "1000000", "--patience", "1000000", "--batch-size", "4096",
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), KDBENCH_CACHE=str(tmp_path / "cache"))
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_as_a_terminal_job)


def _as_a_terminal_job() -> None:
    """SIGINT at its default, as a shell starts a foreground command: a test run started in the
    background (`cmd &` in a script) would otherwise hand the driver an ignored SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _workers(driver: subprocess.Popen, count: int = 2, timeout: float = 240.0) -> list[psutil.Process]:
    """The driver's worker processes once `count` of them are busy (a student stage started)."""
    parent = psutil.Process(driver.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()
        workers = [p for p in parent.children() if "spawn_main" in " ".join(_cmdline(p))]
        busy = [p for p in workers if _cpu(p) > 1.0]  # seconds of CPU: past start-up, training
        if len(busy) >= count:
            return parent.children(recursive=True)
        time.sleep(0.5)
    driver.kill()
    pytest.fail(f"no {count} busy workers within {timeout} s: {driver.communicate()}")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def _assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=GONE_WITHIN)
    _kill(alive)
    assert not alive, f"still running {GONE_WITHIN} s after the signal: {[_cmdline(p) for p in alive]}"


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


def _stderr(driver: subprocess.Popen, workers: list[psutil.Process]) -> str:
    """The driver's stderr once it ended; an orphaned worker keeps the pipe open: after a bound
    the test fails, every process of the run ended first."""
    try:
        return driver.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        _, alive = psutil.wait_procs(workers, timeout=0)
        _kill(alive + [psutil.Process(driver.pid)] if driver.poll() is None else alive)
        pytest.fail(f"{len(alive)} worker(s) still running 60 s after the signal (killed now): "
                    f"{driver.communicate()[1][-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("how, code", [("sigterm", 143), ("ctrl-c", 130)])
def test_a_signal_ends_every_worker_and_says_what_was_kept(tmp_path, how, code):
    driver = _start(tmp_path)
    workers = _workers(driver)
    if how == "sigterm":
        driver.send_signal(signal.SIGTERM)
    else:
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    err = _stderr(driver, workers)
    _assert_all_gone(workers)
    assert driver.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "kdbench: error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("kdbench: interrupted")]
    assert len(lines) == 1, err
    # the two students never finished: nothing of this run is kept, and the line says where it would be
    assert lines[0].startswith("kdbench: interrupted; 0 cell(s) finished in this run are kept in "), err
    assert str(tmp_path / "results" / "runs") in lines[0]
    assert not list((tmp_path / "results").rglob("*.json"))


@pytest.mark.slow
def test_workers_end_when_their_parent_is_killed(tmp_path):
    driver = _start(tmp_path)
    workers = _workers(driver)
    driver.kill()  # SIGKILL: the driver cleans up nothing
    err = _stderr(driver, workers)
    _assert_all_gone(workers)
    assert "Traceback" not in err, err


def _signal_lines(pid: int) -> dict[str, int]:
    """SigBlk / SigIgn of a process as bit masks (Linux /proc)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: int(line.split()[1], 16) for line in lines for key in ("SigBlk", "SigIgn") if line.startswith(key + ":")}


def _report_signal_state(connection) -> None:
    """A spawned child: its SIGINT state at start-up, then after `tie_to_parent`."""
    from kdbench.executors.lifetime import tie_to_parent

    connection.send(_signal_lines(os.getpid()))
    tie_to_parent(os.getppid())
    connection.send(_signal_lines(os.getpid()))


def test_a_ctrl_c_while_a_worker_starts_is_held_and_raised_after_the_start():
    """A Ctrl-C that comes while `children_ignore_interrupts` starts a worker is not lost (ignoring
    SIGINT for that window discarded it, and the run went on): KeyboardInterrupt follows the window."""
    from kdbench.executors.lifetime import children_ignore_interrupts

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt):
            with children_ignore_interrupts():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the interrupt would arrive here, held instead
                held = True
        assert held
        with children_ignore_interrupts():  # and nothing is left held for the next window
            pass
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_starts_with_sigint_blocked_and_then_ignores_it():
    """The child of the window starts with SIGINT blocked (no KeyboardInterrupt traceback during its
    imports) and, once tied to its parent, ignores it and blocks nothing; the driver blocks nothing after."""
    import multiprocessing

    from kdbench.executors.lifetime import children_ignore_interrupts

    bit = 1 << (signal.SIGINT - 1)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_report_signal_state, args=(theirs,))
    before = signal.getsignal(signal.SIGINT)
    with children_ignore_interrupts():
        child.start()
    assert not _signal_lines(os.getpid())["SigBlk"] & bit
    assert signal.getsignal(signal.SIGINT) is before
    at_start, tied = ours.recv(), ours.recv()
    child.join(timeout=30)
    assert at_start["SigBlk"] & bit and not at_start["SigIgn"] & bit
    assert tied["SigIgn"] & bit and not tied["SigBlk"] & bit
