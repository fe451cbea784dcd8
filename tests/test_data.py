"""The RecBole bridge: the KD protocol's config, offline datasets, a seeded split, local atomic files."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import INTER_HEADER, write_interactions
from kdbench.data.loading import build_config, check_dataset, isolated_argv, validate_atomic_file
from kdbench.families import load_data
from kdbench.errors import KdbenchError


def _pairs(loader) -> set[tuple[int, int]]:
    """The (user, item) interactions of a RecBole loader's split."""
    feat = loader.dataset.inter_feat
    uid, iid = loader.dataset.uid_field, loader.dataset.iid_field
    return set(zip(feat[uid].tolist(), feat[iid].tolist()))


# -- the protocol ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return build_config("BPR", "ml-100k", work_dir=tmp_path_factory.mktemp("work"))


def test_config_splits_each_users_interactions_80_10_10_at_random(config):
    eval_args = config["eval_args"]
    assert eval_args["split"] == {"RS": [0.8, 0.1, 0.1]}
    assert eval_args["order"] == "RO"
    assert eval_args["group_by"] == "user"


def test_config_ranks_the_full_catalogue_for_validation_and_test(config):
    assert config["eval_args"]["mode"] in ("full", {"valid": "full", "test": "full"})


def test_config_reports_recall_and_ndcg_at_10_and_20_and_selects_on_ndcg_at_10(config):
    assert config["metrics"] == ["Recall", "NDCG"]
    assert config["topk"] == [10, 20]
    assert config["valid_metric"] == "NDCG@10"
    assert config["valid_metric_bigger"] is True


def test_config_runs_on_the_requested_device_without_touching_the_gpu(config):
    assert str(config["device"]) == "cpu"
    assert config["use_gpu"] is False


def test_command_line_arguments_do_not_leak_into_the_config(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=7", "--learning_rate=9", "--embedding_size=3"])
    config = build_config("BPR", "ml-100k", work_dir=tmp_path)
    assert config["epochs"] != 7
    assert config["learning_rate"] != 9
    assert config["embedding_size"] != 3
    assert sys.argv == ["pytest", "--epochs=7", "--learning_rate=9", "--embedding_size=3"]


def test_overrides_do_reach_the_config(tmp_path):
    config = build_config("BPR", "ml-100k", overrides={"embedding_size": 5, "train_batch_size": 128},
                          work_dir=tmp_path)
    assert config["embedding_size"] == 5
    assert config["train_batch_size"] == 128


def test_isolated_argv_hides_the_arguments_and_restores_them_even_on_error(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--epochs=7"])
    with pytest.raises(RuntimeError):
        with isolated_argv():
            assert sys.argv == ["prog"]
            raise RuntimeError
    assert sys.argv == ["prog", "--epochs=7"]


# -- the bundled dataset ---------------------------------------------------------------------


def test_ml100k_loads_offline_with_943_users_plus_padding(ml100k):
    assert ml100k.n_users == 943 + 1
    assert ml100k.n_items == 1682 + 1
    assert ml100k.dataset.inter_num == 100_000


def test_ml100k_is_split_about_80_10_10(ml100k):
    sizes = [len(loader.dataset) for loader in (ml100k.train, ml100k.valid, ml100k.test)]
    assert sum(sizes) == 100_000
    train, valid, test = (size / 100_000 for size in sizes)
    assert train == pytest.approx(0.8, abs=0.02)
    assert valid == pytest.approx(0.1, abs=0.01)
    assert test == pytest.approx(0.1, abs=0.01)


def test_splits_are_disjoint_and_every_user_is_evaluated(ml100k):
    train, valid, test = _pairs(ml100k.train), _pairs(ml100k.valid), _pairs(ml100k.test)
    assert not train & valid and not train & test and not valid & test
    assert {user for user, _ in test} == set(range(1, 944))


def test_history_holds_the_training_interactions_only(ml100k):
    history = ml100k.history
    assert history.shape == (ml100k.n_users, ml100k.n_items)
    assert history.nnz == len(ml100k.train.dataset)
    rows, cols = history.nonzero()
    assert set(zip(rows.tolist(), cols.tolist())) == _pairs(ml100k.train)
    held_out = np.array(sorted(_pairs(ml100k.valid) | _pairs(ml100k.test)))
    assert not np.asarray(history[held_out[:, 0], held_out[:, 1]]).any()


def test_item_popularity_counts_training_interactions(ml100k):
    popularity = ml100k.item_popularity()
    assert popularity.shape == (ml100k.n_items,)
    assert popularity.sum() == len(ml100k.train.dataset)
    assert popularity[0] == 0  # padding item


@pytest.mark.slow
def test_the_same_split_seed_gives_the_same_split(ml100k, ml100k_large_batches):
    again = ml100k_large_batches  # loaded separately, with another batch size (not part of the split)
    assert again.fingerprint == ml100k.fingerprint
    assert _pairs(again.test) == _pairs(ml100k.test)
    assert _pairs(again.valid) == _pairs(ml100k.valid)


@pytest.mark.slow
def test_another_split_seed_gives_another_split(ml100k, tmp_path):
    other = load_data("ml-100k", batch_size=4096, split_seed=7, work_dir=tmp_path)
    assert other.fingerprint != ml100k.fingerprint
    assert _pairs(other.test) != _pairs(ml100k.test)


# -- local atomic files ----------------------------------------------------------------------


def test_a_local_dataset_loads_from_a_subfolder_named_after_it(toy):
    assert toy.n_users == 50 + 1
    assert toy.n_items == 40 + 1
    assert toy.dataset.inter_num == 50 * 20
    # 20 interactions per user split 16 / 2 / 2
    assert [len(loader.dataset) for loader in (toy.train, toy.valid, toy.test)] == [800, 100, 100]


def test_a_local_dataset_loads_from_a_flat_folder(tmp_path, toy):
    write_interactions(tmp_path / "mine" / "toy.inter")  # DIR/toy.inter, DIR not named after the dataset
    flat = load_data("toy", str(tmp_path / "mine"), work_dir=tmp_path / "work")
    assert (flat.n_users, flat.n_items, flat.dataset.inter_num) == (51, 41, 1000)
    assert flat.fingerprint == toy.fingerprint  # same file, same split


def test_a_local_file_named_like_the_bundled_dataset_is_the_one_loaded(tmp_path):
    write_interactions(tmp_path / "ml-100k.inter", n_users=30, n_items=25, per_user=10)
    data = load_data("ml-100k", str(tmp_path), work_dir=tmp_path / "work")
    assert data.dataset.inter_num == 300


def test_unknown_dataset_is_refused_naming_the_bundled_one():
    with pytest.raises(KdbenchError, match="unknown dataset 'no-such-data'.*ml-100k"):
        check_dataset("no-such-data", None)


def test_known_downloadable_and_bundled_datasets_pass_the_check():
    check_dataset("ml-100k", None)
    check_dataset("ml-1m", None)


def test_a_data_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(KdbenchError, match="does not exist"):
        check_dataset("toy", str(tmp_path / "missing"))


def test_a_data_path_without_the_datasets_file_is_refused(tmp_path):
    with pytest.raises(KdbenchError, match="no 'toy.inter'"):
        check_dataset("toy", str(tmp_path))


@pytest.mark.parametrize(
    "content, problem",
    [
        ("user_id:banana\titem_id:token\n1\t2\n", "user_id:banana"),
        ("user_id\titem_id:token\n1\t2\n", "'user_id'"),
        ("user_id:token\trating:float\n1\t2\n", "lacks a 'item_id'"),
        (INTER_HEADER + "\n1\t2\t3\n", "line 2 has 3 fields, header has 4"),
        (INTER_HEADER + "\n1\t2\t3\t4\n1\t3\tfive\t5\n", "line 3, column 'rating' is not a float"),
        (INTER_HEADER + "\n", "no interactions"),
    ],
    ids=["bad-type", "no-type", "no-item-column", "short-row", "non-numeric-float", "empty"],
)
def test_a_malformed_atomic_file_is_refused_naming_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.inter"
    path.write_text(content)
    with pytest.raises(KdbenchError, match="malformed atomic file") as error:
        validate_atomic_file(path)
    assert problem in str(error.value)
    assert "\n" not in str(error.value)


def test_a_well_formed_atomic_file_passes_validation(toy_dir):
    validate_atomic_file(toy_dir / "toy" / "toy.inter")
