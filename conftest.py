"""Keep benchmarks/ out of a plain `pytest` run; `pytest --benchmark-only` collects them."""
from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if "benchmarks" in collection_path.parts and not config.getoption("benchmark_only", False):
        return True
    return None
