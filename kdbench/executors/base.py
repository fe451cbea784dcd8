"""What every executor is: the `Executor` protocol, the in-process `SerialExecutor`, `WorkerLost`,
and the registry of executors by the name `--executor` gives (`EXECUTORS`, `make_executor`).

A worker that dies mid-task (killed, out of memory, node lost) costs that task one attempt; after
`max_attempts` the task's result is a `WorkerLost` exception, which the driver records as a
failed cell. No executor ever hangs on a lost worker or drops a task.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Protocol

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


# Executor factories by the name `--executor` gives: (workers, address, device) -> Executor.
EXECUTORS: Registry[Callable[[int | None, str | None, str], Executor]] = Registry("executor")


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None,
                  device: str = "cpu") -> Executor:
    """The executor the CLI flags name. `local` with one worker runs in this process."""
    return EXECUTORS.get(kind)(workers, address, device)
