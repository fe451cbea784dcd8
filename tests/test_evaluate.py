"""Evaluation: RecBole's full-ranking metrics kept per user, and the deployed model's cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.backbones import BackboneAdapter, build_model, count_parameters, model_size_bytes
from kdbench.families import BackboneSpec
from kdbench.evaluation.evaluator import full_ranking, inference_cost, recommend_topk, topk_hits


def _indicator(data, loader) -> torch.Tensor:
    """users x items, 1 where the loader's split holds the interaction."""
    feat = loader.dataset.inter_feat
    matrix = torch.zeros(data.n_users, data.n_items)
    matrix[feat[data.uid_field], feat[data.iid_field]] = 1.0
    return matrix


def _scripted_model(data, user_scores: torch.Tensor):
    """A BPR whose score for (user, item) is exactly user_scores[user, item] (identity item embeddings)."""
    model = build_model(BackboneSpec("BPR", data.n_items), data)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.eye(data.n_items))
        model.user_embedding.weight.copy_(user_scores)
    return model


@pytest.fixture(scope="module")
def splits(ml100k):
    return {name: _indicator(ml100k, getattr(ml100k, name)) for name in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def random_bpr(ml100k):
    torch.manual_seed(0)
    return build_model(BackboneSpec("BPR", 8), ml100k)


def test_a_model_that_scores_the_test_items_first_gets_perfect_ndcg(ml100k, splits):
    result = full_ranking(_scripted_model(ml100k, splits["test"]), ml100k.test, ml100k.config)
    assert result.metrics["ndcg@10"] == pytest.approx(1.0)
    assert result.metrics["ndcg@20"] == pytest.approx(1.0)
    n_test = splits["test"].sum(1)[1:].numpy()
    for k in (10, 20):
        assert result.metrics[f"recall@{k}"] == pytest.approx(np.mean(np.minimum(k, n_test) / n_test))


def test_a_model_that_scores_the_test_items_last_gets_zero(ml100k, splits):
    result = full_ranking(_scripted_model(ml100k, -splits["test"]), ml100k.test, ml100k.config)
    assert result.metrics == {"recall@10": 0.0, "recall@20": 0.0, "ndcg@10": 0.0, "ndcg@20": 0.0}


def test_training_and_validation_items_are_masked_at_test_time(ml100k, splits):
    scores = 3 * splits["train"] + 2 * splits["valid"] + splits["test"]
    result = full_ranking(_scripted_model(ml100k, scores), ml100k.test, ml100k.config)
    assert result.metrics["ndcg@10"] == pytest.approx(1.0)


def test_test_items_are_not_masked_at_validation_time(ml100k, splits):
    masked = full_ranking(_scripted_model(ml100k, 3 * splits["train"] + splits["valid"]), ml100k.valid, ml100k.config)
    assert masked.metrics["ndcg@10"] == pytest.approx(1.0)
    distracted = full_ranking(_scripted_model(ml100k, splits["valid"] + 2 * splits["test"]),
                              ml100k.valid, ml100k.config)
    assert distracted.metrics["ndcg@10"] < 0.5


def test_the_padding_item_is_never_recommended(ml100k, splits):
    scores = splits["test"].clone()
    scores[:, 0] = 100.0
    result = full_ranking(_scripted_model(ml100k, scores), ml100k.test, ml100k.config)
    assert result.metrics["ndcg@10"] == pytest.approx(1.0)


def test_mean_metrics_are_the_means_of_the_per_user_values(ml100k, random_bpr):
    result = full_ranking(random_bpr, ml100k.test, ml100k.config)
    assert set(result.metrics) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    for name, value in result.metrics.items():
        assert 0.0 <= value <= 1.0
        assert len(result.per_user[name]) == 943
        assert value == pytest.approx(result.per_user[name].mean())
        assert ((result.per_user[name] >= 0) & (result.per_user[name] <= 1)).all()


def test_per_user_values_come_with_every_evaluated_user_once(ml100k, random_bpr):
    result = full_ranking(random_bpr, ml100k.test, ml100k.config)
    assert len(result.user_ids) == 943
    assert sorted(result.user_ids.tolist()) == list(range(1, 944))


def test_metrics_equal_recboles_own_trainer_evaluation(ml100k, random_bpr, tmp_path, monkeypatch):
    from recbole.trainer import Trainer

    monkeypatch.chdir(tmp_path)  # RecBole's trainer writes log_tensorboard/ into the working directory
    ours = full_ranking(random_bpr, ml100k.test, ml100k.config).metrics
    theirs = Trainer(ml100k.config, random_bpr).evaluate(ml100k.test, load_best_model=False, show_progress=False)
    for name, value in ours.items():
        assert value == pytest.approx(float(theirs[name]), abs=1e-4)  # RecBole rounds to 4 places


def test_topk_hits_equal_the_tensor_recboles_collector_builds(ml100k):
    from recbole.evaluator import Collector

    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 40, (37, 300), generator=generator).float()  # many ties
    scores[:, :5] = -np.inf  # masked items
    positive_u = torch.randint(0, 37, (900,), generator=generator)
    positive_i = torch.randint(0, 300, (900,), generator=generator)  # repeated pairs among them
    collector = Collector(ml100k.config)
    collector.eval_batch_collect(scores, None, positive_u, positive_i)
    expected = collector.get_data_struct().get("rec.topk")
    ours = topk_hits(scores, positive_u, positive_i, max(collector.topk))
    assert ours.dtype == expected.dtype and torch.equal(ours, expected)
    assert ours[:, -1].sum() < len(positive_u)  # the repeats were counted once, as RecBole does


def test_per_user_metrics_are_identical_through_recboles_collector(ml100k, random_bpr, monkeypatch):
    from kdbench.evaluation import evaluator

    ours = full_ranking(random_bpr, ml100k.test, ml100k.config)
    monkeypatch.setattr(evaluator, "needs_topk_only", lambda config: False)
    theirs = full_ranking(random_bpr, ml100k.test, ml100k.config)
    assert ours.metrics == theirs.metrics
    for key, values in ours.per_user.items():
        assert np.array_equal(values, theirs.per_user[key]), key


def test_evaluation_leaves_the_model_unchanged(ml100k, random_bpr):
    before = {k: v.clone() for k, v in random_bpr.state_dict().items()}
    first = full_ranking(random_bpr, ml100k.test, ml100k.config).metrics
    assert full_ranking(random_bpr, ml100k.test, ml100k.config).metrics == first
    for name, tensor in random_bpr.state_dict().items():
        assert torch.equal(tensor, before[name])



def test_a_model_scoring_from_its_own_table_is_not_masked_in_place(ml100k, splits):
    """A model whose full-sort scores are a view of its own tensor gets a copy masked, not its table."""

    class Table(torch.nn.Module):
        n_items = ml100k.n_items

        def __init__(self):
            super().__init__()
            self.cached = splits["test"].clone()  # a plain tensor attribute, as LightGCN caches

        def full_sort_predict(self, interaction):
            return self.cached[: len(interaction[ml100k.uid_field])].view(-1)  # a view, no copy

    model = Table()
    before = model.cached.clone()
    full_ranking(model, ml100k.valid, ml100k.config)
    assert torch.equal(model.cached, before)


def test_an_evaluation_loader_is_read_once_and_its_batches_reused(ml100k, random_bpr, monkeypatch):
    from kdbench.evaluation import evaluator

    first = full_ranking(random_bpr, ml100k.valid, ml100k.config)
    reads = []
    monkeypatch.setattr(type(ml100k.valid), "__iter__", lambda self: reads.append(1) or iter(()))
    second = full_ranking(random_bpr, ml100k.valid, ml100k.config)
    assert not reads and second.metrics == first.metrics
    batches = evaluator.evaluation_batches(ml100k.valid)
    assert sum(len(interaction) for interaction, *_ in batches.batches) == len(first.user_ids)


def test_ranked_hits_of_rows_without_positives_are_zero_with_zero_counts():
    from kdbench.evaluation.evaluator import positive_keys, ranked_hits

    topk_idx = torch.tensor([[3, 1], [0, 2]])
    none = positive_keys(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64), 5)
    assert torch.equal(ranked_hits(topk_idx, none, 5), torch.zeros(2, 3, dtype=torch.int64))
    some = positive_keys(torch.tensor([0, 0, 0]), torch.tensor([1, 4, 1]), 5)  # row 0: items 1, 4
    assert ranked_hits(topk_idx, some, 5).tolist() == [[0, 1, 2], [0, 0, 0]]

# -- cost ------------------------------------------------------------------------------------


def test_inference_cost_reports_size_throughput_and_latency(ml100k, random_bpr):
    cost = inference_cost(random_bpr, ml100k.uid_field, ml100k.iid_field, ml100k.n_users,
                          batch_users=32, repeats=2, latency_samples=20)
    assert cost.params == count_parameters(random_bpr) == (ml100k.n_users + ml100k.n_items) * 8
    assert cost.size_bytes == model_size_bytes(random_bpr) == cost.params * 4
    assert cost.batch_users == 32
    assert cost.throughput_users_per_s > 0
    assert 0 < cost.latency_p50_ms <= cost.latency_p99_ms
    assert set(cost.as_dict()) == {"params", "size_bytes", "throughput_users_per_s", "latency_p50_ms",
                                   "latency_p99_ms", "batch_users"}


def test_inference_cost_works_for_a_graph_backbone(toy):
    model = build_model(BackboneSpec("LightGCN", 4), toy)
    cost = inference_cost(model, toy.uid_field, toy.iid_field, toy.n_users, batch_users=8, repeats=1,
                          latency_samples=5)
    assert cost.params == (toy.n_users + toy.n_items) * 4
    assert cost.throughput_users_per_s > 0
    assert cost.latency_p50_ms <= cost.latency_p99_ms


def test_a_deployed_model_recommends_the_top_20_items_per_user(toy):
    n_items = toy.n_items  # 40 items and the padding item 0
    scores = torch.zeros(toy.n_users, n_items)
    scores[1] = torch.arange(n_items, dtype=torch.float)  # higher id, higher score
    scores[2] = -torch.arange(n_items, dtype=torch.float)  # lower id, higher score...
    scores[2, 0] = -100.0  # ...but the padding item last
    scores[3, [7, 3, 30]] = torch.tensor([3.0, 2.0, 1.0])  # three items first, the rest tied at 0
    adapter = BackboneAdapter(_scripted_model(toy, scores), toy.uid_field, toy.iid_field)
    top = recommend_topk(adapter, torch.tensor([1, 2, 3]))
    assert top.shape == (3, 20)
    assert top[0].tolist() == list(range(n_items - 1, n_items - 21, -1))  # 40, 39, ..., 21
    assert top[1].tolist() == list(range(1, 21))
    assert top[2, :3].tolist() == [7, 3, 30]


def test_the_recorded_beyond_accuracy_blocks_match_recboles_metrics_on_ml100k(ml100k, random_bpr):
    """`work.beyond_blocks` on a real test pass: RecBole's own metric classes fed its Collector's
    training-split counters and these top-10 lists give the same values; the users' training counts
    follow `per_user`'s order."""
    from recbole.evaluator.collector import DataStruct
    from recbole.evaluator.metrics import AveragePopularity, GiniIndex, ItemCoverage

    from kdbench.run.work import beyond_blocks

    result = full_ranking(random_bpr, ml100k.test, ml100k.config)
    blocks = beyond_blocks(ml100k, result)
    train = ml100k.train._dataset
    struct = DataStruct()
    struct.set("rec.items", torch.from_numpy(result.topk_items[:, :10]))
    struct.set("data.num_items", train.item_num)
    struct.set("data.count_items", train.item_counter)
    config = {"topk": [10], "metric_decimal_place": 12}
    for metric in (ItemCoverage, AveragePopularity, GiniIndex):  # TailPercentage: tests/test_beyond.py
        for key, value in metric(config).calculate_metric(struct).items():
            assert blocks["beyond"][key] == pytest.approx(value, abs=1e-6), key
    assert 0 < blocks["beyond"]["tailpercentage@10"] < 1 and blocks["beyond"]["tail_ratio"] == 0.8
    counts = blocks["test_users"]["train_interactions"]
    assert len(counts) == len(result.user_ids) == 943
    first = int(result.user_ids[0])
    assert counts[0] == int(ml100k.history[first].nnz) == train.user_counter[first]


def test_a_lightgcn_model_is_evaluated_beside_its_sparse_adjacency(ml100k):
    """LightGCN keeps its normalised adjacency as a CSR tensor attribute, which has no storage of its
    own: the pass must not ask it for one (it raised NotImplementedError on torch 2.13)."""
    model = build_model(BackboneSpec.parse("LightGCN:8"), ml100k)
    assert model.norm_adj_matrix.layout == torch.sparse_csr
    result = full_ranking(model, ml100k.valid, ml100k.config)
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0
