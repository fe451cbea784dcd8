"""The Ray executor on real multi-node clusters on this machine (`ray.cluster_utils.Cluster`: separate
raylets and object stores): on a head and a worker node, one CPU each, cells spread over both nodes
give the metrics one process gives, and a cell whose worker process is killed mid-cell is retried
or recorded as failed, never lost; on a head and two worker nodes, a cell whose node is lost
mid-cell runs again on the other. Skipped where Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from kdbench.families import BackboneSpec  # noqa: E402
from kdbench.run.cells import Cell  # noqa: E402
from kdbench.executors import RayExecutor, SerialExecutor  # noqa: E402
from kdbench.run.runner import Runner  # noqa: E402
from kdbench.training.loop import TrainSettings  # noqa: E402

pytestmark = pytest.mark.slow

SMALL = TrainSettings(max_epochs=3, batch_size=4096)
METRIC_FIELDS = ("label", "seed", "status", "test", "per_user", "valid_ndcg@10", "hparams")

# Plugin strategies, loaded by the driver and by every worker from their file. Each attempt of a
# cell appends the id of the node it ran on to `attempts/seed<k>`.
PLUGIN = textwrap.dedent(
    '''
    import os, signal, time
    from pathlib import Path

    import ray

    from kdbench.strategies import DistillationStrategy, register_strategy

    ROOT = Path({root!r})


    def _attempt(seed):
        log = ROOT / "attempts" / f"seed{{seed}}"
        first = not log.exists()
        with open(log, "a") as out:
            out.write(ray.get_runtime_context().get_node_id() + "\\n")
        return first


    def _record_pid(seed):
        """The worker process of a stalled first attempt, for the test to kill with its node."""
        (ROOT / "pids" / f"seed{{seed}}").write_text(str(os.getpid()))


    @register_strategy("node-killer", family="baseline", paper="a test's worker killer")
    class NodeKiller(DistillationStrategy):
        """SIGKILLs its worker process (as the OOM killer would) on the first attempt; always for seed 99."""
        defaults = {{"weight": 0.0}}
        needs_teacher = False

        def prepare(self):
            if _attempt(self.context.seed) or self.context.seed == 99:
                os.kill(os.getpid(), signal.SIGKILL)

        def loss(self, batch):
            return None


    @register_strategy("stall", family="baseline", paper="a test's long first attempt")
    class Stall(DistillationStrategy):
        """On its first attempt, waits (up to 2 minutes) until the test lets it go."""
        defaults = {{"weight": 0.0}}
        needs_teacher = False

        def prepare(self):
            if _attempt(self.context.seed):
                _record_pid(self.context.seed)
                deadline = time.time() + 120
                while not (ROOT / "go").exists() and time.time() < deadline:
                    time.sleep(0.2)

        def loss(self, batch):
            return None
    '''
)


def _cells(toy_dir, strategies, seeds) -> list[Cell]:
    common = dict(dataset="toy", teacher=BackboneSpec("BPR", 16), student=BackboneSpec("BPR", 4), train=SMALL,
                  data_path=str(toy_dir))
    return [Cell(strategy="teacher", seed=0, **common)] + [
        Cell(strategy=name, seed=seed, **common) for seed in seeds for name in strategies]


def _metrics(records) -> list[str]:
    return [json.dumps({k: r.get(k) for k in METRIC_FIELDS}, sort_keys=True) for r in records]


def _run(root: Path, cells, executor, plugins=()) -> list[dict]:
    runner = Runner(root / "results", root / "cache", executor=executor, plugins=plugins)
    try:
        return runner.run_all(cells)
    finally:
        executor.close()


def _start_cluster(head_cpus: int = 1, workers: int = 1) -> Cluster:
    """A head and `workers` worker nodes, one CPU each (the head `head_cpus`); Ray binds them all to
    this machine's own address."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False})
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


@pytest.fixture(scope="module")
def cluster():
    cluster = _start_cluster()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> tuple[str, Path]:
    """The plugin file (registered once in this process too: the driver validates cells with it) and its folder."""
    from kdbench.registry import load_plugin_file

    root = tmp_path_factory.mktemp("plugin")
    (root / "attempts").mkdir()
    (root / "pids").mkdir()
    path = root / "cluster_plugins.py"
    path.write_text(PLUGIN.format(root=str(root)))
    load_plugin_file(path)
    return str(path), root


def _recording(fn, folder: str, parties: int):
    """`fn`, noting in `folder` the node each call runs on, and holding each call until `parties`
    calls have started: two calls that run at once on one-CPU nodes run on two nodes. (A local
    function: Ray pickles it by value, as the workers cannot import this test module.)"""
    def run(task):
        node = ray.get_runtime_context().get_node_id()
        with open(os.path.join(folder, f"{node}.{os.getpid()}.{time.time_ns()}"), "w") as out:
            out.write(f"{task.cell.strategy} {task.cell.seed}")
        deadline = time.time() + 60
        while len(os.listdir(folder)) < parties and time.time() < deadline:
            time.sleep(0.1)
        return fn(task)
    return run


class NodeRecordingExecutor:
    """Runs each call of `fn` through `_recording`, one folder per `map_unordered` call."""

    def __init__(self, inner, folder: Path):
        self.inner, self.workers, self.folder, self.calls = inner, inner.workers, folder, 0

    def map_unordered(self, fn, tasks, resources=None):
        self.calls += 1
        folder = self.folder / f"call{self.calls}"
        folder.mkdir()
        tasks = list(tasks)  # the runner's tasks may be a lazy iterator (claimed as they are pulled)
        return self.inner.map_unordered(_recording(fn, str(folder), min(2, len(tasks))), tasks, resources)

    def close(self):
        self.inner.close()

    def nodes(self) -> dict[str, list[str]]:
        """{node id: the 'strategy seed' of each call that ran there}."""
        ran: dict[str, list[str]] = {}
        for marker in sorted(self.folder.glob("call*/*")):
            ran.setdefault(marker.name.split(".")[0], []).append(marker.read_text())
        return ran


def _node_id(node) -> str:
    """A cluster node's id as tasks see it (Ray 2.6's Node has no `node_id`: look it up, connected)."""
    found = getattr(node, "node_id", None)
    return found or next(n["NodeID"] for n in ray.nodes() if n["ObjectStoreSocketName"] == node.plasma_store_socket_name)


def _kill_now(pid_file: Path) -> None:
    """SIGKILL the process whose pid the file holds, if it still runs. A removed node's raylet dies at
    once, but its worker notices only later and, let go meanwhile, could finish its cell and reply to
    the driver directly; killing it too makes the node's loss whole before the stalled cells go on."""
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass


def _attempt_nodes(root: Path, seed: int) -> list[str]:
    return (root / "attempts" / f"seed{seed}").read_text().split()


def test_cells_spread_over_two_nodes_give_the_metrics_of_one_process(toy_dir, tmp_path, cluster):
    cells = _cells(toy_dir, ("scratch", "kd"), (0, 1))
    serial = _run(tmp_path / "serial", cells, SerialExecutor())
    executor = RayExecutor(address=cluster.address)
    assert executor.workers == 2  # the CPUs of both nodes
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    recording = NodeRecordingExecutor(executor, nodes)
    records = _run(tmp_path / "ray", cells, recording)
    assert all(r["status"] == "ok" for r in records)
    assert _metrics(records) == _metrics(serial)
    ran_on = recording.nodes()
    assert len(ran_on) == 2, ran_on  # both nodes ran students
    assert sum(len(tasks) for tasks in ran_on.values()) == 5  # the teacher once, four students once


def test_a_worker_process_killed_mid_cell_is_retried_and_one_killed_twice_is_recorded_failed(
        toy_dir, tmp_path, cluster, plugin):
    path, root = plugin
    cells = _cells(toy_dir, ("node-killer", "scratch"), (3, 99))
    records = _run(tmp_path, cells, RayExecutor(address=cluster.address), plugins=(path,))
    status = {(r["label"], r["seed"]): r["status"] for r in records}
    assert status == {("teacher", 0): "ok", ("node-killer", 3): "ok", ("scratch", 3): "ok",
                      ("node-killer", 99): "failed", ("scratch", 99): "ok"}
    assert len(_attempt_nodes(root, 3)) == 2 and len(_attempt_nodes(root, 99)) == 2  # max_attempts
    failed = next(r for r in records if r["status"] == "failed")
    assert "WorkerLost" in failed["error"]
    assert len(list((tmp_path / "results" / "runs").rglob("*.json"))) == len(cells)


def test_a_node_lost_mid_cell_costs_that_cell_one_attempt(toy_dir, tmp_path, plugin):
    """Two stalled cells on the two worker nodes of a cluster whose head runs no task; the worker node
    the driver is not attached to (removing the driver's own raylet would end the driver) is removed,
    its raylet and workers killed without grace, while its cell runs: that cell runs again on the
    other worker node, and both finish."""
    path, root = plugin
    cluster = _start_cluster(head_cpus=0, workers=2)
    worker_nodes = list(cluster.worker_nodes)
    seeds = (10, 11)
    cells = _cells(toy_dir, ("stall",), seeds)
    events: dict[str, object] = {}

    def remove_a_worker_node_once_both_cells_run():
        try:
            deadline = time.time() + 180
            while time.time() < deadline and "first_nodes" not in events:
                started = {seed: _attempt_nodes(root, seed) for seed in seeds
                           if (root / "attempts" / f"seed{seed}").exists()}
                if len(started) == 2:
                    events["first_nodes"] = {seed: nodes[0] for seed, nodes in started.items()}
                    driver = ray.get_runtime_context().get_node_id()
                    doomed = next(node for node in worker_nodes if _node_id(node) != driver)
                    events["removed"], events["kept"] = _node_id(doomed), next(
                        _node_id(node) for node in worker_nodes if node is not doomed)
                    cluster.remove_node(doomed, allow_graceful=False)
                    lost = next(seed for seed, node in events["first_nodes"].items() if node == events["removed"])
                    _kill_now(root / "pids" / f"seed{lost}")
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            events["error"] = repr(exc)
        finally:
            (root / "go").touch()  # lets the stalled cell(s) go on

    remover = threading.Thread(target=remove_a_worker_node_once_both_cells_run, daemon=True)
    remover.start()
    try:
        records = _run(tmp_path, cells, RayExecutor(address=cluster.address), plugins=(path,))
    finally:
        remover.join(timeout=200)
        cluster.shutdown()
    assert "error" not in events and "removed" in events, events
    assert sorted(events["first_nodes"].values()) == sorted([events["removed"], events["kept"]])  # one per worker
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    lost = next(seed for seed, node in events["first_nodes"].items() if node == events["removed"])
    kept = next(seed for seed in seeds if seed != lost)
    assert _attempt_nodes(root, lost) == [events["removed"], events["kept"]]
    assert _attempt_nodes(root, kept) == [events["kept"]]
    assert len(list((tmp_path / "results" / "runs").rglob("*.json"))) == len(cells)
