"""`kdbench cost` for compressed shapes: the CSR and integer kernels score what the runs score, the
targets a suite's compression cells deploy are measured, named as the runs name their model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from kdbench.cli import main
from kdbench.evaluation.compressed_cost import (CSRScorer, IntScorer, cell_targets, compressed_name, dequantised_scores)
from kdbench.families import BackboneSpec
from kdbench.run.inference_cost import check_cost
from kdbench.run.runner import Cell
from kdbench.strategies._compression import kept_entries, magnitude_mask


@pytest.fixture
def tables():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(100, 16, generator=generator), torch.randn(300, 16, generator=generator)


def test_the_csr_kernel_scores_the_pruned_tables(tables):
    users, items = tables
    scorer = CSRScorer(users, items, 4000, k=10)
    keep = kept_entries([(100, 16), (300, 16)], 4000)
    pruned_users, pruned_items = users * magnitude_mask(users, keep[0]), items * magnitude_mask(items, keep[1])
    ids = torch.tensor([1, 5, 5, 99])
    torch.testing.assert_close(scorer.user_rows(ids), pruned_users[ids])
    scores = pruned_users[ids] @ pruned_items.T
    assert torch.equal(scorer(ids), torch.topk(scores, 10, dim=1).indices)
    assert 4000 - 8 < scorer.size_bytes <= 4000


@pytest.mark.parametrize("bits,row_bytes", [(8, 16 + 4), (4, 8 + 4)])
def test_the_integer_kernel_scores_the_dequantised_tables(tables, bits, row_bytes):
    users, items = tables
    scorer = IntScorer(users, items, bits, k=10)
    ids = torch.tensor([0, 7, 42])
    torch.testing.assert_close(scorer.scores(ids), dequantised_scores(users, items, bits)[ids], atol=1e-3, rtol=1e-4)
    assert scorer.size_bytes == 400 * row_bytes


def test_cells_name_the_compressed_shapes_they_deploy():
    def cell(strategy, hparams=()):
        return Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), strategy, seed=0, hparams=hparams)

    assert cell_targets(cell("prune")) == [("BPR:8", "CSR", "BPR:4")]
    assert cell_targets(cell("quant", (("bits", 4),))) == [("BPR:8", "int4", None)]
    assert cell_targets(cell("kd+ptq")) == [("BPR:4", "int8", None)]
    assert cell_targets(cell("quant-int4")) == [("BPR:8", "int4", None)]
    assert cell_targets(cell("ptq", (("bits", 4),))) == [("BPR:4", "int4", None)]
    assert cell_targets(cell("rrd+ptq-int4")) == [("BPR:4", "int4", None)]
    assert cell_targets(cell("kd")) == [] and cell_targets(cell("svd")) == []
    assert compressed_name("BPR:8", "CSR", "BPR:4") == "BPR:8 CSR@BPR:4"


def test_the_cost_command_times_the_compressed_shapes_of_a_suite(toy_dir, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "datasets": ["toy"], "data_path": str(toy_dir), "seeds": [0],
        "strategies": ["scratch", "prune", "quant", "quant-int4", "kd+ptq"],
        "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
    }))
    args = ["cost", "--suite", str(suite), "--catalogues", "", "--rounds", "3", "--warmup", "1",
            "--min-seconds", "0.01", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0, capsys.readouterr().err
    payload = json.loads((tmp_path / "results" / "cost" / "toy" / "BPR-8.json").read_text())
    assert check_cost(payload) is None
    compressed = {row["model"]: row for row in payload["measurements"] if row["kind"] == "compressed"}
    assert set(compressed) == {"BPR:8 CSR@BPR:4", "BPR:8 int8", "BPR:8 int4", "BPR:4 int8"}
    assert compressed["BPR:8 int4"]["size_bytes"] == compressed["BPR:4 int8"]["size_bytes"]  # 4 + 4 bytes a row
    dense = {row["model"]: row for row in payload["measurements"] if row["kind"] == "model"}
    assert dense["BPR:4"]["size_bytes"] == 4 * dense["BPR:4"]["params"]
    assert dense["BPR:4"]["size_bytes"] - 8 < compressed["BPR:8 CSR@BPR:4"]["size_bytes"] <= dense["BPR:4"]["size_bytes"]
    assert compressed["BPR:8 int8"]["size_bytes"] == 12 / 8 * compressed["BPR:8 int4"]["size_bytes"]
