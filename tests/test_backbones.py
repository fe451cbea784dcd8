"""Backbones: `MODEL:DIM` specs, RecBole models built at that size, and the score/representation adapter."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from kdbench.backbones import (
    BackboneAdapter,
    build_model,
    count_parameters,
    model_size_bytes,
    reset_inference_cache,
)
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec


def _adapter(model, data) -> BackboneAdapter:
    return BackboneAdapter(model, data.uid_field, data.iid_field)


# -- specs -----------------------------------------------------------------------------------


def test_a_spec_names_a_model_and_its_dimension():
    assert BackboneSpec.parse("BPR:200") == BackboneSpec("BPR", 200)
    assert str(BackboneSpec.parse("LightGCN:64")) == "LightGCN:64"


def test_model_names_are_case_insensitive_and_canonicalised():
    assert BackboneSpec.parse(" lightgcn:8 ") == BackboneSpec("LightGCN", 8)


def test_the_dimension_defaults_to_64():
    assert BackboneSpec.parse("BPR") == BackboneSpec("BPR", 64)


@pytest.mark.parametrize("text", ["BPR:", "BPR:abc", "BPR:-3", "200", ":8", "BPR:8:2", ""])
def test_a_malformed_spec_is_refused_with_the_expected_form(text):
    with pytest.raises(KdbenchError, match="malformed backbone.*MODEL:DIM"):
        BackboneSpec.parse(text)


def test_an_unknown_model_is_refused_listing_the_valid_ones():
    with pytest.raises(KdbenchError, match="unknown model 'NoSuchNet'") as error:
        BackboneSpec.parse("NoSuchNet:8")
    assert "BPR" in str(error.value) and "LightGCN" in str(error.value)


def test_a_zero_dimension_is_refused():
    with pytest.raises(KdbenchError, match="positive"):
        BackboneSpec.parse("BPR:0")


def test_the_dimension_sets_embedding_size_or_the_models_own_size_keys():
    assert BackboneSpec("BPR", 16).size_overrides() == {"embedding_size": 16}
    neumf = BackboneSpec("NeuMF", 16).size_overrides()
    assert neumf["mf_embedding_size"] == neumf["mlp_embedding_size"] == 16


# -- building models -------------------------------------------------------------------------


def test_a_built_bpr_has_one_embedding_of_the_given_size_per_user_and_item(ml100k):
    model = build_model(BackboneSpec("BPR", 8), ml100k)
    assert model.user_embedding.weight.shape == (ml100k.n_users, 8)
    assert model.item_embedding.weight.shape == (ml100k.n_items, 8)
    assert count_parameters(model) == (ml100k.n_users + ml100k.n_items) * 8


def test_command_line_arguments_do_not_change_the_built_model(ml100k, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--embedding_size=3"])
    model = build_model(BackboneSpec("BPR", 8), ml100k)
    assert model.user_embedding.weight.shape[1] == 8


def test_neumf_is_built_at_the_given_size(toy):
    model = build_model(BackboneSpec("NeuMF", 4), toy)
    assert model.user_mf_embedding.weight.shape == (toy.n_users, 4)
    assert model.user_mlp_embedding.weight.shape == (toy.n_users, 4)


# -- counting --------------------------------------------------------------------------------


def test_parameters_and_bytes_of_a_linear_layer():
    layer = nn.Linear(3, 4)  # 3*4 weights + 4 biases
    assert count_parameters(layer) == 16
    assert model_size_bytes(layer) == 16 * 4
    assert model_size_bytes(layer.half()) == 16 * 2


def test_size_counts_buffers_too():
    norm = nn.BatchNorm1d(4)  # weight, bias; running mean, var (float32) and a step counter (int64)
    assert count_parameters(norm) == 8
    assert model_size_bytes(norm) == 8 * 4 + 8 * 4 + 8


def test_bpr_size_is_four_bytes_per_embedding_value(ml100k):
    model = build_model(BackboneSpec("BPR", 8), ml100k)
    assert model_size_bytes(model) == (ml100k.n_users + ml100k.n_items) * 8 * 4


# -- the adapter -----------------------------------------------------------------------------


def test_bpr_scores_are_dot_products_of_its_embeddings(toy):
    torch.manual_seed(0)
    model = build_model(BackboneSpec("BPR", 4), toy)
    adapter = _adapter(model, toy)
    users = torch.tensor([1, 2, 3])
    items = torch.tensor([[1, 5], [2, 6], [3, 7]])
    expected = (model.user_embedding.weight[users, None, :] * model.item_embedding.weight[items]).sum(-1)
    torch.testing.assert_close(adapter.score(users, items), expected)


@pytest.mark.parametrize("spec", ["BPR:4", "LightGCN:4", "NeuMF:4"])
def test_full_scores_cover_every_item_and_agree_with_pointwise_scores(toy, spec):
    torch.manual_seed(0)
    model = build_model(BackboneSpec.parse(spec), toy).eval()
    adapter = _adapter(model, toy)
    users = torch.tensor([1, 7, 50])
    with torch.no_grad():
        full = adapter.full_scores(users)
        reset_inference_cache(model)
        pointwise = adapter.score(users, torch.arange(toy.n_items).expand(3, toy.n_items))
    assert full.shape == (3, toy.n_items)
    torch.testing.assert_close(full, pointwise, rtol=1e-5, atol=1e-5)


def test_scores_are_differentiable_for_the_student(toy):
    model = build_model(BackboneSpec("BPR", 4), toy)
    _adapter(model, toy).score(torch.tensor([1]), torch.tensor([[2, 3]])).sum().backward()
    assert model.user_embedding.weight.grad is not None


@pytest.mark.parametrize("name", ["BPR", "LightGCN", "NeuMF"])
def test_representation_tables_have_a_row_per_user_and_item(toy, name):
    model = build_model(BackboneSpec(name, 4), toy)
    adapter = _adapter(model, toy)
    users, items = adapter.representation_tables()
    assert users.shape[0] == toy.n_users and items.shape[0] == toy.n_items
    assert adapter.representation_dims() == (users.shape[1], items.shape[1])


def test_a_backbone_without_representations_is_refused_by_feature_strategies(toy):
    adapter = _adapter(build_model(BackboneSpec("Pop", 4), toy), toy)
    assert not adapter.has_representations
    with pytest.raises(KdbenchError, match="strategy 'fitnet' needs user/item representations.*BPR"):
        adapter.require_representations("fitnet")


def test_bpr_has_representations(toy):
    adapter = _adapter(build_model(BackboneSpec("BPR", 4), toy), toy)
    assert adapter.has_representations
    adapter.require_representations("fitnet")


def test_a_graph_backbone_propagates_once_per_training_step(toy, monkeypatch):
    model = build_model(BackboneSpec("LightGCN", 4), toy)
    adapter = _adapter(model, toy)
    calls = []
    original = model.forward  # kdbench's symmetric propagation, bound to this model

    def counting_forward(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    with adapter.one_forward_per_step():
        first = model.forward()
        second = model.forward()
        adapter.score(torch.tensor([1]), torch.tensor([[2]]))
    assert len(calls) == 1
    assert first[0] is second[0]
    model.forward()
    assert len(calls) == 2  # outside the step the memo is gone


def test_reset_inference_cache_drops_lightgcns_propagated_embeddings(toy):
    model = build_model(BackboneSpec("LightGCN", 4), toy).eval()
    with torch.no_grad():
        _adapter(model, toy).full_scores(torch.tensor([1]))
    assert model.restore_user_e is not None
    reset_inference_cache(model)
    assert model.restore_user_e is None and model.restore_item_e is None


def test_lightgcn_propagation_equals_recboles_in_value_and_gradient(toy):
    from recbole.model.general_recommender import LightGCN

    model = build_model(BackboneSpec("LightGCN", 4), toy)
    ours = model.forward()
    recboles = LightGCN.forward(model)
    for a, b in zip(ours, recboles):
        assert torch.allclose(a, b, atol=1e-6)
    batch = next(iter(toy.train))
    model.calculate_loss(batch).backward()
    ours_grad = model.user_embedding.weight.grad.clone()
    model.zero_grad()
    del model.forward  # back to RecBole's own propagation
    model.calculate_loss(batch).backward()
    assert torch.allclose(ours_grad, model.user_embedding.weight.grad, atol=1e-6)
