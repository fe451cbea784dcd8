"""RecBole 1.2.1 on the libraries of Python 3.12+, and a one-line check of the install.

RecBole 1.2.1 (the newest release) still uses names that newer libraries removed. `install()` runs
when `kdbench` is imported, so before any kdbench module imports RecBole (here, in spawned local
workers and in Ray workers alike), and restores them as the objects they were, so results match
the numpy 1 / scipy 1.12 stack of Python 3.11:

- numpy 2 (NEP 52) removed `np.float_`, `np.complex_` and `np.unicode_`. RecBole's
  `Config.compatibility_settings` reads them at construction to alias `np.float`, `np.complex` and
  `np.unicode`, which its metrics, interactions and dataset code then use: without them the first
  `Config(...)` raises AttributeError. Restored as `float64`, `complex128` and `str_`, their values
  in numpy 1.x.
- scipy 1.13 rewrote `dok_matrix` without `_update`, with which RecBole's LightGCN, NGCF, NCL, GCMC,
  SpectralCF, KGIN and MCCLK fill their adjacency matrix. Restored as scipy 1.12 defined it: an
  unchecked `dict.update` of the stored entries.

Nothing is patched where the name exists (Python 3.11's numpy 1.26 and scipy 1.12), and numpy and
scipy are imported here only when their installed version lacks the name. RecBole's open pull
request RUCAIBox/RecBole#2187 fixes the same names in RecBole's own code.

`kept_anomaly_mode` wraps every kdbench call that may import RecBole's models (its `Config`, which
looks the model's class up, and `get_model`): the first import of `recbole.model.sequential_recommender`
runs its `sine.py`, whose top line `torch.autograd.set_detect_anomaly(True)` turns autograd's
anomaly detection on for the whole process, and every later backward pass, of any model, then
checks each gradient for NaNs and records the forward's stack traces: a training step 1.6-2.5x
slower, the same values (README, "Training cost: RecBole's anomaly mode"; `benchmarks/anomaly_mode.py`).

`ast_as_311` keeps strategy code versions (part of every stored run's identity) independent of the
interpreter: Python 3.12 and 3.13 changed `ast.dump`.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.metadata
import importlib.util
import re
import sys
from typing import Iterator

from kdbench.errors import KdbenchError

RECBOLE_VERSION = "1.2.1"
# numpy 1.x name -> the numpy 2 type it named
NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
# The modules RecBole imports on the paths kdbench uses (config, data, models, evaluator, utils),
# with the distribution that provides each: what an install without RecBole's dependencies needs.
RECBOLE_IMPORTS = {
    "torch": "torch", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "sklearn": "scikit-learn",
    "yaml": "pyyaml", "tqdm": "tqdm", "colorlog": "colorlog", "colorama": "colorama",
    "tensorboard": "tensorboard", "texttable": "texttable",
}


def _major_minor(distribution: str) -> tuple[int, int] | None:
    """(major, minor) of an installed distribution, None if it is not installed or unparsable."""
    try:
        found = re.match(r"(\d+)\.(\d+)", importlib.metadata.version(distribution))
    except importlib.metadata.PackageNotFoundError:
        return None
    return (int(found[1]), int(found[2])) if found else None


def _dok_update(self, data: dict) -> None:
    """scipy<1.13's `dok_matrix._update`: store `data`'s {(row, col): value} entries as given, unchecked."""
    store = getattr(self, "_dict", None)
    if isinstance(store, dict):
        store.update(data)
    else:  # a future layout: the public, checked update
        self.update(data)


@contextlib.contextmanager
def kept_anomaly_mode() -> Iterator[None]:
    """Autograd's anomaly detection as it was before the block, whatever RecBole's imports set."""
    import torch

    enabled = torch.is_anomaly_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(enabled)


def install() -> None:
    """Restore the numpy and scipy names RecBole 1.2.1 uses, where the installed versions lack them."""
    numpy_version = _major_minor("numpy")
    if numpy_version is not None and numpy_version >= (2, 0):
        import numpy

        for old, new in NUMPY_ALIASES.items():
            if old not in vars(numpy):  # vars(): numpy's __getattr__ warns on removed names
                setattr(numpy, old, getattr(numpy, new))
    scipy_version = _major_minor("scipy")
    if scipy_version is not None and scipy_version >= (1, 13):
        import scipy.sparse

        if not hasattr(scipy.sparse.dok_matrix, "_update"):
            scipy.sparse.dok_matrix._update = _dok_update


class _AstAs311:
    """The `ast` module, whose `dump` writes what Python 3.11's `ast.dump(node)` writes: 3.12 added
    `type_params=[]` to function and class definitions, and 3.13 leaves empty lists out."""

    def __getattr__(self, name: str):
        return getattr(ast, name)

    @staticmethod
    def dump(node: ast.AST) -> str:
        node = copy.deepcopy(node)
        for inner in ast.walk(node):
            if getattr(inner, "type_params", None) == []:  # a field 3.11 does not have
                del inner.type_params
        return ast.dump(node, show_empty=True) if sys.version_info >= (3, 13) else ast.dump(node)


ast_as_311 = _AstAs311()


def install_problems() -> list[str]:
    """What keeps RecBole from working in this environment, one phrase each (empty: nothing)."""
    problems = []
    try:
        found = importlib.metadata.version("recbole")
    except importlib.metadata.PackageNotFoundError:
        problems.append(f"RecBole is not installed (Python {sys.version_info.major}.{sys.version_info.minor}: "
                        f"`pip install --no-deps recbole=={RECBOLE_VERSION}`, see README, Quick start)")
    else:
        if found != RECBOLE_VERSION:
            problems.append(f"kdbench needs RecBole {RECBOLE_VERSION}, found {found}")
    missing = sorted(dist for module, dist in RECBOLE_IMPORTS.items() if importlib.util.find_spec(module) is None)
    if missing:
        problems.append(f"missing {', '.join(missing)}, which RecBole imports (`pip install -e .` installs them)")
    pandas_version = _major_minor("pandas")
    if pandas_version is not None and pandas_version >= (3, 0):
        problems.append(f"pandas {importlib.metadata.version('pandas')}: RecBole {RECBOLE_VERSION} needs pandas<3 "
                        "(under pandas 3 its fillna(inplace=True) silently leaves missing values)")
    return problems


def check_install() -> None:
    """Raise a one-line KdbenchError naming every problem `install_problems` finds."""
    problems = install_problems()
    if problems:
        raise KdbenchError("broken install: " + "; ".join(problems))
