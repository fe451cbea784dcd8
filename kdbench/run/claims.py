"""Claims: which process computes a cell, a teacher or a tuning study when several share a folder.

A claim is a small JSON file (owner PID, host, start time, a random token) created with
`O_CREAT | O_EXCL`, which is atomic on local file systems and on NFS (v3 and later): of two
processes that try at once, exactly one creates it. The holder refreshes the file's modification
time every `HEARTBEAT_SECONDS` (a daemon thread) and deletes it when done. A claim is stale, and
taken over, when its owner is on this host and its PID is not alive, or when it has not been
refreshed for `STALE_SECONDS` (an owner on another host that died, or a PID reused after a crash).

Claims only prevent double work: every result and cache entry is still written atomically, so in
the rare races a claim cannot settle (a three-way takeover of a stale claim) two processes compute
the same thing and the last complete write wins, as without claims.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

HEARTBEAT_SECONDS = 30.0  # how often a holder refreshes its claims' modification time
STALE_SECONDS = 600.0  # a claim not refreshed for this long is taken over (generous: NFS clock skew)
POLL_SECONDS = 0.5  # how often a process waiting for a claim looks again
SUFFIX = ".claim"  # a claim file's name: `.<what it claims><SUFFIX>`, beside what it claims
HOST = socket.gethostname()


class Claim:
    """A claim this process holds on `path`; `release()` deletes it (if it is still ours)."""

    def __init__(self, path: Path, token: str):
        self.path = path
        self.token = token

    def release(self) -> None:
        _HEARTBEAT.forget(self)
        if (_read(self.path) or {}).get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def try_claim(path: str | Path) -> Claim | None:
    """Claim `path` (creating its folder), taking over a stale claim; None if a live owner holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _read(path)
            if not is_stale(path, seen):
                return None
            _take_over(path, seen)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "host": HOST, "started": time.time(), "token": token}, handle)
        claim = Claim(path, token)
        _HEARTBEAT.add(claim)
        return claim
    return None


def owner(path: str | Path) -> str:
    """Who holds the claim at `path`, in words (for a progress line)."""
    holder = _read(Path(path)) or {}
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"


def held(path: str | Path) -> bool:
    """Whether a live owner holds a claim at `path` (this process counts as live)."""
    path = Path(path)
    return path.exists() and not is_stale(path, _read(path))


def is_stale(path: Path, holder: dict[str, Any] | None) -> bool:
    """A claim whose owner is dead (same host, PID gone) or that was not refreshed for STALE_SECONDS.
    An unreadable claim (being written, or damaged) is stale only by age."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > STALE_SECONDS:
        return True
    if holder and holder.get("host") == HOST and isinstance(holder.get("pid"), int):
        return not pid_alive(holder["pid"])
    return False


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def wait_until_free(path: str | Path, on_wait: Callable[[str], None] | None = None) -> None:
    """Block until no live owner holds `path` (`on_wait(owner)` is called once, if it has to wait)."""
    told = False
    while held(path):
        if on_wait is not None and not told:
            on_wait(owner(path))
            told = True
        time.sleep(POLL_SECONDS)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _take_over(path: Path, seen: dict[str, Any] | None) -> None:
    """Move a stale claim aside (only one of several processes can rename it). If what was moved
    is not the claim judged stale (another process took it over meanwhile), put it back unless a
    newer claim is already there."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    moved = _read(aside)
    if seen is not None and (moved or {}).get("token") != seen.get("token"):
        try:
            os.link(aside, path)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
    aside.unlink(missing_ok=True)


class _Heartbeat:
    """One daemon thread per process refreshing the modification time of every held claim."""

    def __init__(self) -> None:
        self._claims: set[Claim] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, claim: Claim) -> None:
        with self._lock:
            self._claims.add(claim)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="kdbench-claims", daemon=True)
                self._thread.start()

    def forget(self, claim: Claim) -> None:
        with self._lock:
            self._claims.discard(claim)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            self.refresh()

    def refresh(self) -> None:
        """Touch every held claim now."""
        with self._lock:
            claims = list(self._claims)
        for claim in claims:
            try:
                os.utime(claim.path)
            except OSError:
                pass

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


_HEARTBEAT = _Heartbeat()
