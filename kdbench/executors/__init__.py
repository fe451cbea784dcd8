"""Executors: where tasks run. The driver (runner, tuner) hands a list of tasks and a function;
an executor yields (task index, result or the exception it raised) as tasks finish.

- `SerialExecutor`: in the driver's process, one after another.
- `LocalExecutor`: N worker processes on this machine (`--workers N`).
- `RayExecutor`: Ray tasks on a running cluster (`--executor ray --address auto|HOST:PORT`), or
  on a local Ray instance when no address is given.

A worker that dies mid-task (killed, out of memory, node lost) costs that task one attempt; after
`max_attempts` the task's result is a `WorkerLost` exception, which the driver records as a
failed cell. No executor ever hangs on a lost worker or drops a task.

A local worker ignores Ctrl-C and ends itself when the driver is gone, killed or not
(`kdbench.executors.lifetime`); an interrupted driver's `close()` kills the workers still running a task.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from multiprocessing.connection import wait as connection_wait
from typing import Any, Callable, Iterable, Iterator, Protocol

from kdbench.errors import KdbenchError
from kdbench.executors.lifetime import children_ignore_interrupts, tie_to_parent
from kdbench import progress
from kdbench.executors import ray_connect
from kdbench.registry import Registry


class WorkerLost(RuntimeError):
    """The process running a task died before returning (every attempt)."""


class Executor(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                      resources: dict[str, float] | None = None) -> Iterator[tuple[int, Any]]:
        """Yield (index, result) per task as it finishes; `result` is the exception if it raised.
        `index` counts tasks in the order `tasks` gives them; the local executors pull the next task
        only when a worker is free, Ray submits them all at once."""

    def close(self) -> None: ...


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class SerialExecutor:
    """Tasks in this process, in order. Exceptions are yielded, not raised."""

    workers = 1

    def map_unordered(self, fn, tasks, resources=None):
        for index, task in enumerate(tasks):
            try:
                yield index, fn(task)
            except Exception as exc:  # noqa: BLE001 - handed to the driver
                yield index, exc

    def close(self) -> None:
        pass


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


class RayExecutor:
    """Ray tasks, one CPU each (plus one GPU each with `gpus_per_task=1` for --device cuda).

    `address=None` starts a private local instance with `workers` CPUs (`ray.init(address="local")`,
    never a stale cluster file); "auto" or "HOST:PORT" joins a running cluster, whose nodes need
    kdbench installed in the same environment. Ray retries a task whose worker died
    (`max_retries`); a task that still failed yields `WorkerLost`. Joining a cluster and noticing a
    lost one take bounded times (`kdbench.executors.ray_connect`): tasks of a lost cluster yield `WorkerLost`.
    """

    def __init__(self, address: str | None = None, workers: int | None = None, max_attempts: int = 2,
                 gpus_per_task: float = 0.0):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray comes with recbole
            raise KdbenchError(f"--executor ray needs Ray installed ({exc})") from None
        self._ray = ray
        self.max_attempts = max_attempts
        self.gpus_per_task = gpus_per_task
        self._started_here = not ray.is_initialized()
        if self._started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            try:
                if address:
                    ray_connect.connect(ray, address, **kwargs)  # bounded: see kdbench.executors.ray_connect
                else:
                    # Ray starts its workers at nice 15 (RayConfig worker_niceness): beside any other
                    # process, such as this driver or a second job, they get a fraction of the CPU
                    # the local executor's workers get. A private instance runs them at normal priority.
                    ray.init(address="local", num_cpus=workers or default_workers(),
                             _system_config={"worker_niceness": 0}, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise KdbenchError(f"could not connect to the Ray cluster at '{address or 'local'}': {exc}") from None
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def map_unordered(self, fn, tasks, resources=None):
        ray = self._ray
        remote = ray.remote(fn).options(num_cpus=1, num_gpus=self.gpus_per_task,
                                        max_retries=self.max_attempts - 1, retry_exceptions=False)
        refs = {remote.remote(task): index for index, task in enumerate(tasks)}
        remaining = list(refs)
        failed_polls = 0
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1, timeout=ray_connect.POLL_SECONDS)
            if not done:  # nothing finished for a while: is the cluster still there?
                problem = self._cluster_problem()
                failed_polls = failed_polls + 1 if problem else 0
                if failed_polls >= ray_connect.LOST_POLLS:
                    for ref in remaining:
                        with contextlib.suppress(Exception):
                            ray.cancel(ref, force=True)
                        yield refs[ref], WorkerLost(f"Ray cluster lost: {problem}")
                    return
            for ref in done:
                index = refs[ref]
                try:
                    yield index, ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the task raised: hand over its exception
                    cause = exc.as_instanceof_cause()
                    yield index, getattr(cause, "cause", None) or cause
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.RayError) as exc:
                    yield index, WorkerLost(f"Ray worker lost after {self.max_attempts} attempt(s): {type(exc).__name__}")

    def _cluster_problem(self) -> str | None:
        """Why the cluster's head cannot be reached (None: it can): checked while nothing finishes."""
        address = ray_connect.gcs_address(self._ray)
        return ray_connect.reachable(address) if address else "no head address"

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()


# Executor factories by the name `--executor` gives: (workers, address, device) -> Executor.
EXECUTORS: Registry[Callable[[int | None, str | None, str], Executor]] = Registry("executor")


@EXECUTORS.register("local")
def _local_executor(workers: int | None, address: str | None, device: str) -> Executor:
    """One worker runs in this process; more are local worker processes."""
    workers = workers or default_workers()
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)


@EXECUTORS.register("ray")
def _ray_executor(workers: int | None, address: str | None, device: str) -> Executor:
    return RayExecutor(address, workers, gpus_per_task=1.0 if device == "cuda" else 0.0)


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None,
                  device: str = "cpu") -> Executor:
    """The executor the CLI flags name. `local` with one worker runs in this process."""
    return EXECUTORS.get(kind)(workers, address, device)
