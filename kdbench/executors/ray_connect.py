"""Bounded Ray failures: joining a cluster, and noticing one that died, each within a fixed time.

Ray's own client retries an unreachable head for minutes (20 tries of every key it reads, two
seconds apart) and prints a warning per try. Here:

- the head's GCS port is probed with a plain TCP connection first (`PROBE_SECONDS`): nothing
  listening is one line at once;
- `ray.init` itself is waited for at most `CONNECT_SECONDS` (`within`): a head that accepts the
  connection but never answers is one line too;
- while tasks run, the driver checks every `POLL_SECONDS` without a finished task that the head
  still accepts connections; after `LOST_POLLS` failed checks in a row the cluster is lost and the
  tasks still running are handed back as lost (recorded failed), never waited for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Callable

from kdbench.errors import KdbenchError

PROBE_SECONDS = 5.0
CONNECT_SECONDS = 30
POLL_SECONDS = 10.0
LOST_POLLS = 3


def head_address(address: str) -> str | None:
    """`address` ("auto" or HOST:PORT) as the HOST:PORT Ray will connect to (None: not found)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address)
    except Exception as exc:  # noqa: BLE001 - Ray's own lookup failed: say so in one line
        raise KdbenchError(f"could not find the Ray cluster '{address}': {exc}") from None


def reachable(host_port: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when something accepts a TCP connection at HOST:PORT, else why not."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"'{host_port}' is not HOST:PORT"
    except OSError as exc:
        return f"{host_port}: {exc.strerror or exc}"


def within(seconds: float, what: str, call: Callable[[], None]) -> None:
    """Run `call` in a daemon thread and raise KdbenchError if it has not returned in `seconds`.
    A thread, not SIGALRM: Ray's C++ client (Ray >= 2.10) blocks in native code for its own
    timeouts (5 s + 5 s + 30 s against a head that never answers), where no signal handler runs;
    the abandoned thread dies with the process, which ends on the error."""
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)

    worker = threading.Thread(target=target, name="kdbench-ray-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise KdbenchError(f"{what}: no answer within {seconds:g} s")
    if outcome:
        raise outcome[0]


def connect(ray, address: str, **kwargs) -> None:
    """`ray.init(address=...)` bounded: PROBE_SECONDS for an unreachable head, CONNECT_SECONDS in all."""
    where = f"could not connect to the Ray cluster at '{address}'"
    target = head_address(address)
    if target is None:
        raise KdbenchError(f"{where}: no running cluster found (start one with `ray start --head`)")
    problem = reachable(target)
    if problem:
        raise KdbenchError(f"{where}: {problem}")
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its retry warnings and errors, one per try
    try:
        within(CONNECT_SECONDS, where, lambda: ray.init(address=address, **kwargs))
    finally:
        logger.setLevel(level)


def gcs_address(ray) -> str | None:
    with contextlib.suppress(Exception):
        return ray.get_runtime_context().gcs_address
    return None
