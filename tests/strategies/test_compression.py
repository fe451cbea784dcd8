"""Compression baselines (issue 28): SVD, magnitude pruning to a byte budget, per-row quantisation,
and their runs through the training loop (0 epochs, deployed size)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_context
from kdbench.backbones import count_parameters, model_size_bytes
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies._compression import (csr_bytes, dequantise_rows, kept_entries, magnitude_mask,
                                             pack_codes, quantise_rows, quantised_bytes, truncated_factors,
                                             unpack_codes)
from kdbench.strategies.base import method_names
from kdbench.training.loop import TrainSettings, fit
from kdbench.run.work import deployed_model


# -- SVD ------------------------------------------------------------------------------------------
def test_svd_at_full_rank_reproduces_the_scores():
    generator = torch.Generator().manual_seed(0)
    users, items = torch.randn(30, 6, generator=generator), torch.randn(20, 6, generator=generator)
    for rank in (6, 9):  # full rank, and above it (zero-padded)
        p, q = truncated_factors(users, items, rank)
        assert p.shape == (30, rank) and q.shape == (20, rank)
        torch.testing.assert_close(p @ q.T, users @ items.T, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_svd_at_rank_d_is_the_best_rank_d_approximation(rank):
    generator = torch.Generator().manual_seed(1)
    users, items = torch.randn(25, 7, generator=generator), torch.randn(15, 7, generator=generator)
    scores = (users @ items.T).double()
    left, values, right_t = torch.linalg.svd(scores)
    best = left[:, :rank] @ torch.diag(values[:rank]) @ right_t[:rank]  # Eckart-Young
    p, q = truncated_factors(users, items, rank)
    torch.testing.assert_close((p @ q.T).double(), best, atol=1e-4, rtol=1e-4)
    # its error is the tail of the spectrum
    error = torch.linalg.matrix_norm((p @ q.T).double() - scores)
    assert error.item() == pytest.approx(values[rank:].pow(2).sum().sqrt().item(), rel=1e-4)


def test_svd_strategy_writes_the_factors_into_the_student(ml100k):
    context = make_context(ml100k, "BPR:8", "BPR:8")
    strategy = STRATEGIES.get("svd")(context)
    strategy.prepare()
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()
    some = torch.arange(1, 40)
    torch.testing.assert_close(student_users[some] @ student_items.T, teacher_users[some] @ teacher_items.T,
                               atol=1e-3, rtol=1e-3)


def test_svd_refuses_a_propagating_student():
    with pytest.raises(KdbenchError, match="dot product of its own tables"):
        STRATEGIES.get("svd").check_models("BPR", "LightGCN")
    with pytest.raises(KdbenchError, match="dot product"):
        STRATEGIES.get("svd").check_models("NeuMF", "BPR")
    STRATEGIES.get("svd").check_models("LightGCN", "BPR")


# -- pruning --------------------------------------------------------------------------------------
def test_csr_bytes_by_hand():
    assert csr_bytes(rows=3, nnz=5) == 5 * 4 + 5 * 4 + 4 * 4


@pytest.mark.parametrize("budget", [400, 1003, 2000])
def test_pruning_fills_exactly_the_byte_budget(budget):
    shapes = [(10, 8), (20, 8)]
    keep = kept_entries(shapes, budget)
    used = sum(csr_bytes(rows, k) for (rows, _), k in zip(shapes, keep))
    assert used <= budget < used + 8  # less than one (value, index) pair left over
    assert keep[1] in (2 * keep[0] - 1, 2 * keep[0], 2 * keep[0] + 1)  # the same sparsity per table


def test_pruning_refuses_a_budget_below_the_row_pointers():
    with pytest.raises(ValueError, match="row pointers"):
        kept_entries([(10, 8)], 44)


def test_magnitude_mask_keeps_the_largest_entries():
    weight = torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 0.0]])
    mask = magnitude_mask(weight, 3)
    assert mask.tolist() == [[False, True, True], [True, False, False]]


def test_pruned_teacher_has_the_students_bytes(ml100k):
    context = make_context(ml100k, "BPR:32", "BPR:4")
    budget = model_size_bytes(context.student.model)
    assert budget == 4 * count_parameters(context.student.model)
    strategy = STRATEGIES.get("prune")(context)
    strategy.prepare()
    pruned = strategy.model_to_train(context.student.model)
    assert pruned is not context.teacher.model
    assert budget - 8 < model_size_bytes(pruned) <= budget
    tables = [pruned.user_embedding.weight, pruned.item_embedding.weight]
    nonzero = sum(int((t != 0).sum()) for t in tables)
    assert count_parameters(pruned) == nonzero
    # every kept entry of a table is at least as large as every pruned one
    original = context.teacher.model.user_embedding.weight
    kept = pruned.user_embedding.weight != 0
    assert original.abs()[kept].min() >= original.abs()[~kept].max()
    assert (context.teacher.model.user_embedding.weight != 0).all()  # the shared teacher is untouched


def test_prune_ft_keeps_the_mask_while_training(ml100k_large_batches):
    data = ml100k_large_batches
    context = make_context(data, "BPR:16", "BPR:2")
    strategy = STRATEGIES.get("prune-ft")(context)
    strategy.prepare()
    model = strategy.model_to_train(context.student.model)
    zero = model.item_embedding.weight.detach() == 0
    before = model.item_embedding.weight.detach().clone()
    settings = TrainSettings(learning_rate=0.01, batch_size=4096, max_epochs=2, patience=5)
    result = fit(model, data, settings, strategy=strategy)
    assert result.epochs_run == 2
    weight = model.item_embedding.weight.detach()
    assert (weight[zero] == 0).all() and not torch.equal(weight, before)


# -- quantisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 4])
def test_quantisation_round_trip_error_is_at_most_half_a_scale(bits):
    table = torch.randn(50, 9, generator=torch.Generator().manual_seed(2)) * 3
    table[3] = 0.0  # an all-zero row
    codes, scales = quantise_rows(table, bits)
    limit = 2 ** (bits - 1) - 1
    assert codes.abs().max().item() == limit  # each nonzero row's largest entry maps to the limit
    torch.testing.assert_close(scales[:3], table[:3].abs().amax(dim=1) / limit)
    error = (dequantise_rows(codes, scales) - table).abs()
    assert (error <= scales.unsqueeze(1) / 2 + 1e-6).all()
    assert error[3].max().item() == 0.0


@pytest.mark.parametrize("bits,cols", [(8, 9), (4, 9), (4, 8)])
def test_packed_codes_take_the_computed_bytes_and_unpack(bits, cols):
    table = torch.randn(6, cols, generator=torch.Generator().manual_seed(3))
    codes, scales = quantise_rows(table, bits)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() + 4 * scales.numel() == quantised_bytes(6, cols, bits) == 6 * (math.ceil(cols * bits / 8) + 4)
    assert torch.equal(unpack_codes(packed, bits, cols), codes)


def test_quant_strategy_deploys_the_quantised_teacher(ml100k):
    context = make_context(ml100k, "BPR:32", "BPR:4")
    strategy = STRATEGIES.get("quant")(context, bits=4)
    strategy.prepare()
    model = strategy.model_to_train(context.student.model)
    rows = ml100k.n_users + ml100k.n_items
    assert model_size_bytes(model) == rows * (16 + 4)  # 32 4-bit codes in 16 bytes, a float32 scale
    assert count_parameters(model) == rows * 32
    teacher = context.teacher.model.item_embedding.weight
    scale = teacher.abs().amax(dim=1, keepdim=True) / 7
    assert ((model.item_embedding.weight - teacher).abs() <= scale / 2 + 1e-6).all()


@pytest.mark.parametrize("name, options", [("quant", {}), ("prune", {})])
def test_a_lightgcn_teacher_is_compressed_with_its_csr_adjacency_shared(ml100k, name, options):
    """LightGCN keeps its normalised adjacency as a CSR tensor, which copy.deepcopy refuses (every
    LightGCN compression cell of the first ml-100k grid failed on it): the compressed copy shares the
    constant graph, and its own embedding tables leave the teacher's untouched."""
    context = make_context(ml100k, "LightGCN:16", "LightGCN:4")
    teacher = context.teacher.model
    before = teacher.user_embedding.weight.clone()
    strategy = STRATEGIES.get(name)(context, **options)
    strategy.prepare()
    model = strategy.model_to_train(context.student.model)
    assert model is not teacher and model.norm_adj_matrix is teacher.norm_adj_matrix
    assert model.norm_adj_matrix.layout == torch.sparse_csr
    assert torch.equal(teacher.user_embedding.weight, before)
    assert not torch.equal(model.user_embedding.weight, before)  # compressed, in the copy only
    assert torch.isfinite(model.full_sort_predict({"user_id": torch.tensor([1, 2])})).all()


def test_ptq_quantises_the_trained_student_after_training(ml100k):
    context = make_context(ml100k, "BPR:32", "BPR:8")
    composite = STRATEGIES.get("kd+ptq")(context)
    trained = context.student.model
    deployed = deployed_model(composite, trained)
    assert deployed is not trained
    assert model_size_bytes(deployed) == (ml100k.n_users + ml100k.n_items) * (8 + 4)
    assert model_size_bytes(trained) == 4 * count_parameters(trained)


def test_bits_must_be_8_or_4():
    with pytest.raises(KdbenchError, match="'bits'"):
        STRATEGIES.get("quant").check_hparams(STRATEGIES.get("quant").resolve_hparams({"bits": 6}), 100, 100)


def test_a_compressed_teacher_joins_no_composite():
    with pytest.raises(KdbenchError, match="joins no composite"):
        STRATEGIES.get("prune+kd")


# -- the training loop and the registry -----------------------------------------------------------
def test_a_strategy_that_does_not_train_is_validated_once(ml100k):
    context = make_context(ml100k, "BPR:16", "BPR:4")
    strategy = STRATEGIES.get("svd")(context)
    strategy.prepare()
    before = context.student.model.user_embedding.weight.detach().clone()
    result = fit(context.student.model, ml100k, TrainSettings(max_epochs=5), strategy=strategy)
    assert (result.epochs_run, result.best_epoch, result.train_seconds) == (0, 0, 0.0)
    assert result.valid_curve == [(0, result.best_valid)] and result.best_valid > 0
    assert torch.equal(context.student.model.user_embedding.weight, before)


def test_compression_baselines_are_their_own_family_and_not_in_all():
    names = {"svd", "svd-ft", "prune", "prune-ft", "quant", "ptq"}
    assert {STRATEGIES.get(name).family for name in names} == {"compression"}
    assert not names & set(method_names()) and "scratch" in method_names()
    assert STRATEGIES.get("kd+ptq").family == "response+compression"


def test_a_strategy_that_does_not_train_gets_no_tuning_study():
    from kdbench.families import BackboneSpec
    from kdbench.run.runner import Cell
    from kdbench.tuning import study_cells

    cells = [Cell("ml-100k", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), name, seed=0)
             for name in ("svd", "svd-ft", "prune", "prune-ft", "quant", "kd+ptq")]
    # kd+ptq only quantises after training: kd's study tunes it (tuning.studies.source_cell)
    assert [cell.strategy for cell in study_cells(cells)] == ["svd-ft", "prune-ft", "kd"]
