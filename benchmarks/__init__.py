"""Micro-benchmarks of kdbench (pytest-benchmark); collected only by `pytest --benchmark-only`.

A package, not a plain folder: tests/conftest.py is imported by the unit tests as `conftest`
(`from conftest import make_context`), and pytest imports a non-package conftest.py under that
same module name, so a second one here would shadow it. As a package, this folder's conftest
is `benchmarks.conftest`.
"""
