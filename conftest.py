"""`pytest` runs tests/ only; `pytest --benchmark-only` runs benchmarks/ only."""
from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    try:
        top = collection_path.relative_to(config.rootpath).parts[:1]
    except ValueError:
        return None
    benchmark_only = config.getoption("benchmark_only", False)
    if (top == ("benchmarks",) and not benchmark_only) or (top == ("tests",) and benchmark_only):
        return True
    return None
