"""Signs of life from a long task: a task reports a short line (`report`), the driver shows it.

In the driver's own process (the serial executor) `report` calls the driver's sink directly; a
local worker process sets its sink to send the line over its pipe, and the driver's executor hands
it to the driver's sink (`kdbench.executors`). The driver's sink is the progress bar's postfix
(`runner.run_cells`). Without a sink a line goes nowhere: progress is never an error.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

Sink = Callable[[str], None]
_sink: Sink | None = None


def report(line: str) -> None:
    """Show `line` as the current progress of whatever runs now (if anybody listens)."""
    if _sink is not None:
        with contextlib.suppress(Exception):  # a closed pipe or bar: progress never fails a task
            _sink(line)


def set_sink(sink: Sink | None) -> Sink | None:
    """Send progress lines to `sink` (None: nowhere); returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink
    return previous


@contextlib.contextmanager
def sink(to: Sink | None) -> Iterator[None]:
    """Progress lines go to `to` while inside."""
    previous = set_sink(to)
    try:
        yield
    finally:
        set_sink(previous)
