"""`RayExecutor`: Ray tasks on a running cluster (`--executor ray --address auto|HOST:PORT`), or on a
private local Ray instance when no address is given."""

from __future__ import annotations

import contextlib
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.executors import ray_connect
from kdbench.executors.base import EXECUTORS, Executor, WorkerLost, default_workers


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


@EXECUTORS.register("ray")
def _ray_executor(workers: int | None, address: str | None, device: str) -> Executor:
    return RayExecutor(address, workers, gpus_per_task=1.0 if device == "cuda" else 0.0)
