"""`LocalExecutor`: N long-lived worker processes on this machine (`--workers N`), each pulling the
next task only when it is free.

A local worker ignores Ctrl-C and ends itself when the driver is gone, killed or not
(`kdbench.executors.lifetime`); an interrupted driver's `close()` kills the workers still running a task.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from multiprocessing.connection import wait as connection_wait
from typing import Any

from kdbench import progress
from kdbench.errors import KdbenchError
from kdbench.executors.base import EXECUTORS, Executor, SerialExecutor, WorkerLost, default_workers
from kdbench.executors.lifetime import children_ignore_interrupts, tie_to_parent


class LocalExecutor:
    """`workers` long-lived spawned processes (fresh interpreters: no inherited torch thread pools or
    locks), each running one task at a time and keeping its loaded datasets between tasks.

    Each worker has its own pipe, so a worker that dies costs exactly the task it was running one
    attempt: the worker is replaced and the task retried until it used `max_attempts`.
    """

    def __init__(self, workers: int, max_attempts: int = 2):
        if workers < 1:
            raise KdbenchError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.max_attempts = max_attempts
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._busy: dict[_Worker, int] = {}  # worker -> the task it runs

    def map_unordered(self, fn, tasks, resources=None):
        """Tasks are pulled from `tasks` (any iterable) only when a worker is free to start one, so
        a lazy producer (the runner's claims) decides what runs next at the last moment."""
        source = iter(tasks)
        pulled: list[Any] = []  # the tasks by index, as pulled (None once finished)
        attempts: list[int] = []
        retry: deque[int] = deque()
        exhausted = False
        busy = self._busy
        busy.clear()
        while True:
            while len(busy) < self.workers and (retry or not exhausted):
                if retry:
                    index = retry.popleft()
                else:
                    try:
                        pulled.append(next(source))
                    except StopIteration:
                        exhausted = True
                        continue
                    attempts.append(0)
                    index = len(pulled) - 1
                worker = next((w for w in self._pool if w not in busy), None)
                if worker is None:
                    worker = _Worker(self._context)
                    self._pool.append(worker)
                attempts[index] += 1
                worker.send(fn, pulled[index])
                busy[worker] = index
            if not busy:
                return
            handles = [w.connection for w in busy] + [w.process.sentinel for w in busy]
            connection_wait(handles)
            for worker, index in list(busy.items()):
                outcome = worker.poll()
                if outcome is _RUNNING:
                    continue
                del busy[worker]
                if outcome is _DIED:
                    self._pool.remove(worker)
                    worker.discard()
                    if attempts[index] < self.max_attempts:
                        retry.appendleft(index)
                        continue
                    outcome = WorkerLost(f"worker process died {attempts[index]} time(s) running this task")
                pulled[index] = None
                yield index, outcome

    def close(self) -> None:
        """Idle workers are asked to stop; a worker still running a task (the driver was
        interrupted, or stopped reading results) is killed: its result has nobody to go to."""
        for worker in self._pool:
            if worker in self._busy:
                worker.kill()
            else:
                worker.stop()
        self._pool, self._busy = [], {}


_RUNNING, _DIED = object(), object()
_PROGRESS = "progress"  # a worker's message: ("progress", line) before its ("ok" | "error", result)


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, context):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child, os.getpid()), daemon=True)
        with children_ignore_interrupts():
            self.process.start()
        child.close()

    def send(self, fn, task) -> None:
        self.connection.send((fn, task))

    def poll(self):
        """The task's result (or its exception), _RUNNING, or _DIED; progress lines the task sent
        meanwhile go to the driver's progress sink."""
        while self.connection.poll():
            try:
                status, payload = self.connection.recv()
            except (EOFError, OSError):
                return _DIED
            if status != _PROGRESS:
                return payload
            progress.report(payload)
        return _RUNNING if self.process.is_alive() else _DIED

    def discard(self) -> None:
        self.connection.close()
        self.process.join(timeout=5)

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.connection.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=10)
        self.connection.close()


def _worker_loop(connection, parent: int | None = None) -> None:
    """A worker: run (fn, task) messages until None; send back ("ok", result) or ("error", exception).
    It ignores SIGINT and ends when the process `parent` (default: its parent now) is gone."""
    tie_to_parent(os.getppid() if parent is None else parent)
    progress.set_sink(lambda line: connection.send((_PROGRESS, line)))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, task = message
        try:
            reply = ("ok", fn(task))
        except Exception as exc:  # noqa: BLE001 - handed to the driver
            reply = ("error", exc)
        try:
            connection.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return  # the driver is gone (killed or interrupted): nobody to answer, exit quietly
        except Exception as exc:  # noqa: BLE001 - an exception or result that does not pickle
            try:
                connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
            except OSError:
                return


@EXECUTORS.register("local")
def _local_executor(workers: int | None, address: str | None, device: str) -> Executor:
    """One worker runs in this process; more are local worker processes."""
    workers = workers or default_workers()
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)
