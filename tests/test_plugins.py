"""Third-party strategies run end to end without editing kdbench: via --plugin and via an entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import write_interactions

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A third-party strategy: squared error between student and teacher scores on batch positives."""
    import torch

    from kdbench.strategies import DistillationStrategy, register_strategy


    @register_strategy("{name}", family="response", paper="a plugin written in a test")
    class PluginKD(DistillationStrategy):
        defaults = {{"weight": 0.5}}

        def loss(self, batch):
            users = self.batch_users(batch)
            items = batch[self.context.iid_field].unsqueeze(1)
            student = self.context.student.score(users, items)
            with torch.no_grad():
                teacher = self.context.teacher.score(users, items)
            return ((student - teacher) ** 2).mean()
    '''
)


def _run_kdbench(cwd: Path, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, KDBENCH_CACHE=str(cwd / "cache"))
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "kdbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _tiny_run_args(data_root: Path, strategy: str) -> list[str]:
    return ["run", "--dataset", "toy", "--data-path", str(data_root), "--teacher", "BPR:8",
            "--student", "BPR:4", "--strategy", strategy, "--epochs", "2", "--teacher-epochs", "2", "--results-dir", "results"]


@pytest.fixture
def workdir(tmp_path):
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    return tmp_path


@pytest.mark.slow
def test_a_plugin_file_strategy_runs_through_the_cli(workdir):
    plugin = workdir / "elsewhere" / "my_kd.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN_SOURCE.format(name="file-plugin-kd"))

    listed = _run_kdbench(workdir, "--plugin", str(plugin), "list")
    assert listed.returncode == 0, listed.stderr
    assert "file-plugin-kd" in listed.stdout

    done = _run_kdbench(workdir, "--plugin", str(plugin), *_tiny_run_args(workdir / "data", "file-plugin-kd"))
    assert done.returncode == 0, done.stderr
    record = json.loads(next((workdir / "results" / "runs").rglob("seed0.json")).read_text())
    assert record["strategy"] == "file-plugin-kd" and record["status"] == "ok"
    assert record["hparams"] == {"weight": 0.5}
    assert 0.0 <= record["test"]["ndcg@10"] <= 1.0


@pytest.mark.slow
def test_an_entry_point_strategy_runs_through_the_cli(workdir):
    # an installed distribution advertising `kdbench.strategies = ep_kd`, as pip would lay it out
    site = workdir / "site"
    (site / "ep_kd_pkg-0.1.dist-info").mkdir(parents=True)
    (site / "ep_kd.py").write_text(PLUGIN_SOURCE.format(name="entry-point-kd"))
    (site / "ep_kd_pkg-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-kd-pkg\nVersion: 0.1\n")
    (site / "ep_kd_pkg-0.1.dist-info" / "entry_points.txt").write_text("[kdbench.strategies]\nentry-point-kd = ep_kd\n")

    listed = _run_kdbench(workdir, "list", extra_path=site)
    assert listed.returncode == 0, listed.stderr
    assert "entry-point-kd" in listed.stdout

    done = _run_kdbench(workdir, *_tiny_run_args(workdir / "data", "entry-point-kd"), extra_path=site)
    assert done.returncode == 0, done.stderr
    record = json.loads(next((workdir / "results" / "runs").rglob("seed0.json")).read_text())
    assert record["strategy"] == "entry-point-kd" and record["status"] == "ok"
