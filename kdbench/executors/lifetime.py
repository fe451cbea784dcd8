"""How long processes live: the driver's signals and its workers' tie to it.

- SIGINT (Ctrl-C) raises `KeyboardInterrupt` in the driver, SIGTERM raises `Terminated` (a
  `KeyboardInterrupt`), so both unwind the same way: the executor ends its workers, finished
  cells stay, and the CLI prints one line and exits 128 + the signal's number (130, 143).
- A worker ignores SIGINT (a Ctrl-C reaches the whole process group: the driver alone decides,
  and no worker prints a `KeyboardInterrupt` traceback) and ends itself as soon as its parent is
  gone, even a parent killed with SIGKILL that could clean up nothing: on Linux the kernel sends it
  SIGKILL (`prctl(PR_SET_PDEATHSIG)`); everywhere a thread polls `os.getppid()` every
  `PARENT_POLL_SECONDS` and ends the process when it no longer names the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM."""

    signal_number = signal.SIGTERM


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process its signal ended: 130 or 143."""
    return 128 + int(getattr(interrupt, "signal_number", signal.SIGINT))


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def children_ignore_interrupts() -> Iterator[None]:
    """Processes started inside begin with SIGINT blocked (a signal mask survives fork and exec; the
    child's `tie_to_parent` then ignores it), so a Ctrl-C during a worker's start-up is no traceback.

    The driver's own Ctrl-C in that window is held, not lost: its main thread blocks SIGINT too, and
    one that another of its threads takes meanwhile is recorded; both are raised again under the
    driver's own handling when the window closes. (Ignoring SIGINT for the window discarded a Ctrl-C
    that came while a worker was being started: the run went on.) Where signal masks do not exist
    (Windows), SIGINT is ignored for the window instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not hasattr(signal, "pthread_sigmask"):
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    from multiprocessing import resource_tracker

    # multiprocessing starts its resource tracker with the first process and unblocks SIGINT after
    # starting it, which would undo the mask inside the window: start it before.
    resource_tracker.ensure_running()
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a held Ctrl-C arrives here
        if received:
            signal.raise_signal(signal.SIGINT)  # under the driver's own disposition again


def tie_to_parent(parent: int) -> None:
    """Make this (worker) process ignore SIGINT and end when the process `parent` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a Ctrl-C held since start-up
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by children_ignore_interrupts
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # no libc (an unusual build): the poller alone
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the kernel was told to watch it
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="kdbench-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os._exit(1)  # no cleanup: the task's result has nobody to go to
