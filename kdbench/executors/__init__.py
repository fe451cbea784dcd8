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

One module each: `base` (the protocol, the serial executor, the registry), `local`, `ray_tasks`,
`lifetime` (signals, workers that end with their parent), `ray_connect` (bounded connection and
loss checks).
"""

from kdbench.executors.base import EXECUTORS, Executor, SerialExecutor, WorkerLost, default_workers, make_executor
from kdbench.executors.local import LocalExecutor
from kdbench.executors.ray_tasks import RayExecutor

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "SerialExecutor", "WorkerLost",
           "default_workers", "make_executor"]
