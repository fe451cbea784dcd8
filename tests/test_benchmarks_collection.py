"""benchmarks/ is collected by `pytest --benchmark-only` and `pytest --benchmark-smoke` only; plain
`pytest` runs the tests alone.

Collection only, in a subprocess with the repository's own pytest configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]


def collect(*args: str) -> list[str]:
    """Node ids that `pytest --collect-only -q ARGS` run from the repository root collects."""
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    # exit code 5: nothing collected
    assert result.returncode in (0, 5), result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def benchmark_ids() -> list[str]:
    return collect("--benchmark-only", "benchmarks")


@pytest.fixture(scope="module")
def smoke_ids() -> list[str]:
    return collect("--benchmark-smoke")


def test_plain_pytest_collects_no_benchmark():
    assert collect("benchmarks") == []


def test_plain_pytest_collects_the_tests_without_errors_and_no_benchmark():
    ids = collect()
    assert ids and all(node.startswith("tests/") for node in ids)


def test_benchmark_only_collects_every_benchmark_family(benchmark_ids):
    functions = {node.split("::")[1].split("[")[0] for node in benchmark_ids}
    assert functions == {"test_recommend_topk", "test_roofline", "test_prepare", "test_epoch_start",
                         "test_training_step", "test_sequential_inference", "test_validation_pass",
                         "test_training_epoch", "test_epoch_roofline", "test_expert_mix"}
    assert all(node.startswith("benchmarks/") for node in benchmark_ids)


def test_every_registered_strategy_is_benchmarked(benchmark_ids):
    for family in ("test_prepare", "test_epoch_start", "test_training_step"):
        ids = [node for node in benchmark_ids if f"::{family}[" in node]
        missing = [name for name in STRATEGIES.names() if not any(node.endswith(f"-{name}]") for node in ids)]
        assert not missing, f"{family} lacks {missing}"


def test_every_general_strategy_that_trains_has_a_training_epoch_on_citeulike_ts_shape(benchmark_ids):
    from kdbench.families import FAMILIES
    from kdbench.families.general import GENERAL

    ids = "".join(node for node in benchmark_ids if "::test_training_epoch[" in node)
    general = {name for name in STRATEGIES.names() if FAMILIES[GENERAL].supports(name) and STRATEGIES.get(name).trains}
    assert {"prune-ft", "svd-ft", "ptq"} <= general and not {"svd", "prune", "quant"} & general
    assert {name for name in STRATEGIES.names() if f"[citeulike-t-shape-{name}]" in ids} == general
    on_beauty = {name for name in STRATEGIES.names() if f"[amazon-beauty-shape-{name}]" in ids}
    assert {"scratch", "rrd", "dcd", "rce-kd", "cd-student-guided"} <= on_beauty <= general
    for shape in ("citeulike-t-shape", "amazon-beauty-shape"):
        assert any(f"test_epoch_roofline[{shape}]" in node for node in benchmark_ids)


def test_smoke_mode_collects_every_benchmark_body_on_the_tiny_catalogue_only(benchmark_ids, smoke_ids):
    def functions(ids):
        return {node.split("::")[1].split("[")[0] for node in ids}

    assert smoke_ids and all(node.startswith("benchmarks/") for node in smoke_ids)
    assert functions(smoke_ids) == functions(benchmark_ids)
    assert all("synthetic-tiny" in node for node in smoke_ids)  # no ml-100k, no 100k-item catalogue
    assert len(smoke_ids) < len(benchmark_ids)
    for family in ("test_prepare", "test_epoch_start", "test_training_step"):
        ids = [node for node in smoke_ids if f"::{family}[" in node]
        assert {name for name in STRATEGIES.names() if any(node.endswith(f"-{name}]") for node in ids)} == set(
            STRATEGIES.names())
