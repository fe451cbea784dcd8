"""`pytest` runs tests/ only; `pytest --benchmark-only` runs benchmarks/ only;
`pytest --benchmark-smoke` runs every benchmark body once, untimed, on tiny shapes (CI's check
that no benchmark is broken; benchmarks/_support.py reads the switch from KDBENCH_BENCH_SMOKE)."""
import os
from pathlib import Path

SMOKE_ENV = "KDBENCH_BENCH_SMOKE"


def pytest_addoption(parser):
    parser.getgroup("benchmark").addoption(
        "--benchmark-smoke", action="store_true", default=False,
        help="kdbench: run benchmarks/ only, each body once on a tiny catalogue, with timing disabled",
    )


def pytest_configure(config):
    if config.getoption("benchmark_smoke"):
        # before benchmarks/ is imported (its parameter lists read it) and before pytest-benchmark
        # configures itself (trylast), so --benchmark-disable takes effect
        os.environ[SMOKE_ENV] = "1"
        config.option.benchmark_disable = True


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    try:
        top = collection_path.relative_to(config.rootpath).parts[:1]
    except ValueError:
        return None
    benchmarks = config.getoption("benchmark_only", False) or config.getoption("benchmark_smoke", False)
    if (top == ("benchmarks",) and not benchmarks) or (top == ("tests",) and benchmarks):
        return True
    return None
