"""Writes that fail or are killed: the previous file stays whole and readable, nothing partial is left."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdbench.store import atomic
from kdbench.store.atomic import WriteFailed
from kdbench.cli import main
from kdbench.run.record import RunStore


def _disk_full(monkeypatch, on_name: str | None = None) -> None:
    """Make text writes raise ENOSPC (only for temp files of `on_name` when given), after writing half."""
    original = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if on_name is None or self.name.startswith(f".{on_name}."):
            original(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_write_on_a_full_disk_leaves_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "seed0.json"
    atomic.write_json(target, {"ndcg@10": 0.25})
    _disk_full(monkeypatch)
    with pytest.raises(WriteFailed, match=r"could not write .*seed0.json: No space left on device"):
        atomic.write_json(target, {"ndcg@10": 0.5, "padding": "x" * 10_000})
    assert json.loads(target.read_text()) == {"ndcg@10": 0.25}
    assert [p.name for p in tmp_path.iterdir()] == ["seed0.json"]


def test_a_first_write_on_a_full_disk_leaves_no_file_at_all(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    with pytest.raises(WriteFailed):
        atomic.write_text(tmp_path / "new.md", "# table\n" * 100)
    assert list(tmp_path.iterdir()) == []


def test_several_files_are_replaced_all_or_none(tmp_path, monkeypatch):
    paths = [tmp_path / "a.csv", tmp_path / "b.md"]
    for path in paths:
        path.write_text("old\n")
    _disk_full(monkeypatch, on_name="b.md")
    with pytest.raises(WriteFailed, match=r"b\.md"):
        with atomic.atomic_paths(paths) as temps:
            for tmp in temps:
                tmp.write_text("new\n")
    assert [p.read_text() for p in paths] == ["old\n", "old\n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.md"]


def test_report_on_a_full_disk_is_one_line_and_keeps_the_whole_previous_leaderboard(tmp_path, monkeypatch, capsys):
    from test_malformed import CELL_PATH, record

    monkeypatch.chdir(tmp_path)
    (tmp_path / CELL_PATH).parent.mkdir(parents=True)
    (tmp_path / CELL_PATH).write_text(json.dumps(record(0)))
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "pareto.png"):
        (tmp_path / "results" / name).write_text(f"the previous {name}\n")
    before = {p: p.read_bytes() for p in (tmp_path / "results").glob("*.*")}
    _disk_full(monkeypatch, on_name="leaderboard.md")
    capsys.readouterr()
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdbench: error: could not write results/leaderboard.md: No space left on device")
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in (tmp_path / "results").glob("*.*")} == before  # csv, json, png untouched
    assert not list((tmp_path / "results").glob(".*.tmp"))


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from kdbench.store import atomic

    original = Path.write_text

    def slow_write(self, data, *args, **kwargs):  # half the bytes, then wait to be killed
        with open(self, "w") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            print("half written", flush=True)
            time.sleep(60)

    Path.write_text = slow_write
    atomic.write_json(sys.argv[1], {"status": "ok", "test": {"ndcg@10": 0.5}, "padding": "x" * 100000})
    """
)


def test_a_result_write_killed_midway_leaves_the_previous_result_readable(tmp_path):
    target = tmp_path / "runs" / "toy" / "A_to_B" / "scratch" / "seed0.json"
    atomic.write_json(target, {"status": "ok", "test": {"ndcg@10": 0.25}})
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "half written"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    assert json.loads(target.read_text()) == {"status": "ok", "test": {"ndcg@10": 0.25}}  # the previous state
    leftovers = list(target.parent.glob(".seed0.json.*.tmp"))
    assert len(leftovers) == 1  # the killed write's temp file, never read as a result
    assert RunStore(tmp_path).clear_partial_writes() == 1  # and cleared by the next run
    assert [p.name for p in target.parent.iterdir()] == ["seed0.json"]


def test_a_written_file_gets_the_mode_a_plain_write_would_give(tmp_path):
    """mkstemp's 0600 must not leak into results: others sharing the folder read them as any file."""
    import stat

    from kdbench.store.atomic import write_text

    (tmp_path / "plain.txt").write_text("x")
    write_text(tmp_path / "atomic.txt", "x")
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
