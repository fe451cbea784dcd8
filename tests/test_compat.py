"""kdbench.compat: RecBole 1.2.1 runs on numpy 2 and scipy>=1.13 with the values numpy 1 / scipy 1.12
gave it, and a broken install is named in one line. Every check holds on both stacks (Python 3.11's
numpy 1.26 + scipy 1.12, where nothing is patched, and 3.12+'s numpy 2 + current scipy)."""

from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import kdbench  # noqa: F401  (installs the shims, as every kdbench entry point does)
from kdbench import compat
from kdbench.errors import KdbenchError
from conftest import run_cli


def test_the_numpy_1_names_recbole_reads_are_the_types_they_named():
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_


def test_recbole_config_aliases_its_names_without_error():
    from recbole.config import Config

    Config.compatibility_settings(None)  # what every Config(...) runs first: AttributeError on bare numpy 2
    assert np.float is np.float64 and np.int is np.int_ and np.bool is np.bool_ and np.long is np.int_


def test_recbole_ndcg_gives_the_hand_computed_values():
    """Hits at ranks 1 and 3 of 3, two relevant items: DCG 1, 1, 1 + 1/log2(4); IDCG 1, 1 + 1/log2(3), same."""
    from recbole.config import Config
    from recbole.evaluator.metrics import NDCG

    Config.compatibility_settings(None)
    values = NDCG.metric_info(None, np.array([[True, False, True]]), np.array([2]))
    idcg2 = 1 + 1 / math.log2(3)
    assert values.dtype == np.float64
    np.testing.assert_allclose(values[0], [1.0, 1 / idcg2, 1.5 / idcg2], rtol=1e-12)


def test_a_dok_matrix_filled_with_update_holds_the_entries_given():
    matrix = sp.dok_matrix((2, 3), dtype=np.float32)
    matrix._update({(0, 2): 1, (1, 0): 4})
    np.testing.assert_array_equal(matrix.toarray(), [[0, 0, 1], [4, 0, 0]])
    shimmed = sp.dok_matrix((2, 2), dtype=np.float32)
    compat._dok_update(shimmed, {(1, 1): 2})  # the shim itself, on any scipy
    np.testing.assert_array_equal(shimmed.toarray(), [[0, 0], [0, 2]])


def test_lightgcn_builds_the_hand_computed_normalised_adjacency():
    """Users u0 (items i0, i1) and u1 (item i0): node degrees u0 2, u1 1, i0 2, i1 1 and
    L[a, b] = 1 / sqrt(deg a * deg b) on each edge (RecBole adds 1e-7 to each degree)."""
    from types import SimpleNamespace

    from recbole.model.general_recommender.lightgcn import LightGCN

    model = SimpleNamespace(n_users=2, n_items=2,
                            interaction_matrix=sp.coo_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [0, 1, 0])), shape=(2, 2)))
    dense = LightGCN.get_norm_adj_mat(model).to_dense()
    degree = [2, 1, 2, 1]
    expected = torch.zeros(4, 4)
    for user, item in [(0, 0), (0, 1), (1, 0)]:
        a, b = user, 2 + item
        expected[a, b] = expected[b, a] = 1 / math.sqrt(degree[a] * degree[b])
    torch.testing.assert_close(dense, expected, rtol=1e-6, atol=1e-7)


def test_kdbench_imports_no_numpy_or_scipy_where_nothing_needs_restoring():
    """On numpy 1 / scipy<1.13 `import kdbench` stays light; on numpy 2 it imports numpy only to patch it."""
    code = "import sys, kdbench; print(sorted(m for m in ('numpy', 'scipy', 'recbole') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    expected = [m for m, v in (("numpy", compat._major_minor("numpy") >= (2, 0)),
                               ("scipy", compat._major_minor("scipy") >= (1, 13))) if v]
    assert loaded == repr(expected)


ANOMALY_PROBE = """
import sys, torch
import kdbench
from kdbench.backbones import build_model, recbole_model_class
from kdbench.families import BackboneSpec, load_data
seen = []
recbole_model_class("SASRec")                       # the first import of RecBole's sequential models
seen.append(torch.is_anomaly_enabled())
data = load_data("ml-100k", model="GRU4Rec", work_dir=sys.argv[1], protocol="leave-one-out")
build_model(BackboneSpec.parse("GRU4Rec:8"), data)
seen.append(torch.is_anomaly_enabled())
del sys.modules["recbole.model.sequential_recommender"], sys.modules["recbole.model.sequential_recommender.sine"]
import recbole.model.sequential_recommender.sine    # RecBole's own side effect, unguarded
seen.append(torch.is_anomaly_enabled())
print(seen)
"""


def test_recboles_sequential_models_leave_autograd_anomaly_detection_off(tmp_path):
    # a fresh process: the side effect is the first import's (sine.py sets it at its top)
    seen = subprocess.run([sys.executable, "-c", ANOMALY_PROBE, str(tmp_path)], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]
    assert seen == "[False, False, True]"  # kdbench's calls keep it off; RecBole's import alone turns it on


def test_kept_anomaly_mode_restores_the_flag_either_way():
    for before in (False, True):
        torch.autograd.set_detect_anomaly(before)
        try:
            with compat.kept_anomaly_mode():
                torch.autograd.set_detect_anomaly(not before)
            assert torch.is_anomaly_enabled() is before
        finally:
            torch.autograd.set_detect_anomaly(False)


def test_this_install_has_no_problems():
    assert compat.install_problems() == []
    compat.check_install()


def _pretend_installed(monkeypatch, versions: dict[str, str | None]):
    real = importlib.metadata.version

    def version(name):
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real(name)

    monkeypatch.setattr(compat.importlib.metadata, "version", version)


def test_a_missing_recbole_names_the_install_command(monkeypatch):
    _pretend_installed(monkeypatch, {"recbole": None})
    (problem,) = compat.install_problems()
    assert problem.startswith("RecBole is not installed") and "pip install --no-deps recbole==1.2.1" in problem


def test_every_problem_is_named_in_one_line(monkeypatch):
    _pretend_installed(monkeypatch, {"recbole": "1.3.0", "pandas": "3.0.1"})
    real_find_spec = compat.importlib.util.find_spec
    monkeypatch.setattr(compat.importlib.util, "find_spec",
                        lambda name: None if name in ("colorlog", "texttable") else real_find_spec(name))
    with pytest.raises(KdbenchError) as caught:
        compat.check_install()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("broken install: ")
    assert "kdbench needs RecBole 1.2.1, found 1.3.0" in message
    assert "missing colorlog, texttable, which RecBole imports" in message
    assert "pandas 3.0.1: RecBole 1.2.1 needs pandas<3" in message


def test_the_cli_stops_on_a_broken_install_with_one_line(monkeypatch, capsys):
    _pretend_installed(monkeypatch, {"recbole": None})
    code, out, err = run_cli(capsys, "list")
    assert code == 2 and out == ""
    assert err.startswith("kdbench: error: broken install: RecBole is not installed") and err.count("\n") == 1


def test_versions_are_read_as_major_minor(monkeypatch):
    _pretend_installed(monkeypatch, {"numpy": "2.5.5", "scipy": "1.13rc1", "torch": "2.13.0+cpu", "gone": None})
    assert compat._major_minor("numpy") == (2, 5) and compat._major_minor("scipy") == (1, 13)
    assert compat._major_minor("torch") == (2, 13) and compat._major_minor("gone") is None


def test_a_strategy_definition_is_hashed_as_python_3_11_dumps_it():
    """Strategy code versions enter every stored run's identity: 3.12 (type_params=[]) and 3.13 (empty
    lists left out) changed `ast.dump`, which would make every committed run stale on them."""
    import ast

    from kdbench.strategies._code import _normalised

    source = 'class A(B):\n    "doc"\n    def f(self, x=None):\n        return [x]\n'
    assert _normalised(ast.parse(source).body[0]) == (
        "ClassDef(name='A', bases=[Name(id='B', ctx=Load())], keywords=[], body=[FunctionDef(name='f', "
        "args=arguments(posonlyargs=[], args=[arg(arg='self'), arg(arg='x')], kwonlyargs=[], kw_defaults=[], "
        "defaults=[Constant(value=None)]), body=[Return(value=List(elts=[Name(id='x', ctx=Load())], ctx=Load()))], "
        "decorator_list=[])], decorator_list=[])")
