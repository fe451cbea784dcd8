"""A report's heavy steps split over forked processes: reading the run files (`load.read_runs`) and
the per-table statistics (`aggregation.aggregate`), each a pure function of its inputs, so the
result is the same with one process or several, in the same order.

The workers are forked (where the platform has fork): they start with everything this process
imported and the `shared` inputs in memory (the run table with its per-user Series is hundreds of
megabytes on a real catalogue: handing it over by pickling would cost more than the work). Only the
tasks and their results cross between processes. Not inside a daemonic process, which may not
start any, nor beside other threads (`worker_count`): `report` and `verify` fork; the end of a `run`
beside its executor's threads reads alone. A worker that ends without its result (killed, e.g. by
the out-of-memory killer, or crashed by a native library whose threads fork did not copy: Ray's,
seen on Python 3.13) costs time, not the result: the tasks are computed again in this process, with
a `WorkerLost` warning.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, Callable, Sequence, TypeVar

MAX_WORKERS = 4
RAY_CORE = "ray._raylet"  # Ray's compiled core: loaded by `import ray`, it starts gRPC once connected

Task = TypeVar("Task")
Result = TypeVar("Result")

_shared: Any = None  # a worker's copy of `forked_map`'s `shared`, set when it starts


class WorkerLost(RuntimeWarning):
    """A forked worker ended without its result; its tasks were computed in the calling process."""


def worker_count(work: float, threshold: float) -> int:
    """How many processes share `work` (any unit): 1 below `threshold`, without fork, inside a
    daemonic process, while this process runs other threads (a fork copies only the calling thread,
    and a lock another one holds, an executor's or Ray's, would stay held in the copy) or once it has
    loaded Ray's native core (its gRPC threads are invisible to `threading`: on Python 3.13 with Ray
    2.60 a worker forked after a driver had connected to a cluster died of SIGSEGV); else one per
    available core, up to `MAX_WORKERS`."""
    if (work < threshold or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon or threading.active_count() > 1
            or RAY_CORE in sys.modules):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


def forked_map(function: Callable[[Any, Task], Result], tasks: Sequence[Task], workers: int,
               shared: Any = None) -> list[Result]:
    """[function(shared, task) for task in tasks], by up to `workers` forked processes. `function`
    is a module-level function (it is named to the workers, not copied); its results are pickled."""
    if workers <= 1 or len(tasks) <= 1:
        return [function(shared, task) for task in tasks]
    try:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("fork"),
                                 initializer=_share, initargs=(shared,)) as pool:
            return list(pool.map(partial(_call, function), tasks))
    except BrokenProcessPool as lost:  # an exception `function` raised comes back as itself, not this
        warnings.warn(WorkerLost(f"a worker process ended without its result ({lost}); computing "
                                 f"its {len(tasks)} task(s) in this process instead"), stacklevel=2)
        return [function(shared, task) for task in tasks]


def _share(value: Any) -> None:
    global _shared
    _shared = value


def _call(function: Callable[[Any, Task], Result], task: Task) -> Result:
    return function(_shared, task)
