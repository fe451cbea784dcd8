"""Protocol presets: the ordered split puts exactly the expected items in each part, the reference's
test masking, and the protocol as part of a result's identity (random records stay current)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdbench.run.cells import Cell, cell_from_record
from kdbench.data.loading import PROTOCOL
from kdbench.errors import KdbenchError
from kdbench.families import PROTOCOLS, BackboneSpec, get_protocol, load_data
from kdbench.families.general import ordered_cut_points, ordered_split_indices
from kdbench.run.record import RunStore, base_record, identity, stale_fields

# users interleaved in the file; ids chosen so that file order, id order and timestamp order differ
HAND_FILE = [  # (user, item, timestamp)
    ("a", "i10", 5), ("b", "i1", 1), ("a", "i3", 4), ("c", "i7", 9), ("a", "i8", 3),
    ("b", "i2", 2), ("a", "i1", 2), ("b", "i3", 3), ("a", "i5", 1), ("b", "i4", 4), ("b", "i5", 5),
    ("c", "i1", 8), ("c", "i2", 7), ("c", "i3", 6), ("c", "i4", 5), ("c", "i5", 4), ("c", "i6", 3),
    ("c", "i8", 2), ("c", "i9", 1), ("c", "i10", 0), ("c", "i11", 10),
    ("d", "i16", 1), ("d", "i12", 2), ("d", "i13", 3), ("d", "i14", 4), ("d", "i15", 0),  # items c never saw
    *((("e", f"i{k}", 0) for k in range(17, 27))),  # tied timestamps: file order; 27 items > top 20
]
# file order per user: a: i10 i3 i8 i1 i5 (5 items -> 4/0/1); b: i1..i5 (5 -> 4/0/1);
# c: i7 i1 i2 i3 i4 i5 i6 i8 i9 i10 i11 (11 -> 8/1/2)
BY_FILE = {
    "a": (["i10", "i3", "i8", "i1"], [], ["i5"]),
    "b": (["i1", "i2", "i3", "i4"], [], ["i5"]),
    "c": (["i7", "i1", "i2", "i3", "i4", "i5", "i6", "i8"], ["i9"], ["i10", "i11"]),
    "d": (["i16", "i12", "i13", "i14"], [], ["i15"]),
    "e": ([f"i{k}" for k in range(17, 25)], ["i25"], ["i26"]),
}
# timestamp order per user: a: i5 i1 i8 i3 i10; b: i1..i5; c: i10 i9 i8 i6 i5 i4 i3 i2 i1 i7 i11
BY_TIME = {
    "a": (["i5", "i1", "i8", "i3"], [], ["i10"]),
    "b": (["i1", "i2", "i3", "i4"], [], ["i5"]),
    "c": (["i10", "i9", "i8", "i6", "i5", "i4", "i3", "i2"], ["i1"], ["i7", "i11"]),
    "d": (["i15", "i16", "i12", "i13"], [], ["i14"]),
    "e": ([f"i{k}" for k in range(17, 25)], ["i25"], ["i26"]),
}


def _write(folder, with_time: bool):
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token" + ("\ttimestamp:float" if with_time else "")
    rows = [f"{u}\t{i}" + (f"\t{t}" if with_time else "") for u, i, t in HAND_FILE]
    (folder / "hand.inter").write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(folder)


def _parts(data) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Per user token: the item tokens of train, valid and test, in the order the split keeps."""
    ds = data.dataset
    user_token, item_token = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
    found: dict[str, list[list[str]]] = {}
    for part, split in enumerate((data.train.dataset, data.valid._dataset, data.test._dataset)):
        inter = split.inter_feat
        for u, i in zip(inter[ds.uid_field].tolist(), inter[ds.iid_field].tolist()):
            found.setdefault(user_token[u], [[], [], []])[part].append(item_token[i])
    return {u: tuple(parts) for u, parts in found.items()}


def test_cut_points_are_the_references_not_recboles():
    assert ordered_cut_points(5) == (4, 4)     # 4 train, 0 valid, 1 test (RecBole RS: 3/1/1)
    assert ordered_cut_points(10) == (8, 9)
    assert ordered_cut_points(11) == (8, 9)    # 8/1/2 (RecBole RS: 9/1/1)
    assert ordered_cut_points(20) == (16, 18)
    assert ordered_cut_points(1) == (1, 1)     # train only, never in train and test at once


def test_ordered_split_indices_follow_rows_or_times_per_user():
    users = np.array([0, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    train, valid, test = ordered_split_indices(users)
    assert train.tolist() == [0, 2, 3, 4, 1, 6, 7, 8] and valid.tolist() == [] and test.tolist() == [5, 9]
    times = np.array([5, 0, 4, 3, 2, 1, 0, 0, 0, 0])  # user 0 reversed; user 1 all tied: row order
    train, valid, test = ordered_split_indices(users, times)
    assert train.tolist() == [5, 4, 3, 2, 1, 6, 7, 8] and test.tolist() == [0, 9]


@pytest.mark.parametrize("with_time, expected", [(False, BY_FILE), (True, BY_TIME)], ids=["file-order", "timestamp"])
def test_the_ordered_protocol_puts_exactly_the_expected_items_in_each_part(tmp_path, with_time, expected):
    data = load_data("hand", _write(tmp_path / "hand", with_time), protocol="ordered", work_dir=tmp_path / "w")
    assert _parts(data) == {u: tuple(parts) for u, parts in expected.items()}
    # the training history is exactly the train part
    ds = data.dataset
    for user, (train, _, _) in expected.items():
        uid = ds.token2id(ds.uid_field, user)
        items = data.history[uid].indices
        assert sorted(ds.field2id_token[ds.iid_field][items].tolist()) == sorted(train)


def test_recboles_random_split_rounds_a_five_item_user_3_1_1(tmp_path):
    """Why `ordered` has its own cut points: RecBole's RS gives 3/1/1 where the reference gives 4/0/1."""
    data = load_data("hand", _write(tmp_path / "hand", False), protocol="random", work_dir=tmp_path / "w")
    sizes = {u: tuple(len(p) for p in parts) for u, parts in _parts(data).items()}
    assert sizes == {"a": (3, 1, 1), "b": (3, 1, 1), "c": (9, 1, 1), "d": (3, 1, 1), "e": (8, 1, 1)}


def _test_history(data) -> dict[str, set[str]]:
    ds = data.dataset
    tokens = ds.field2id_token[ds.iid_field]
    return {ds.field2id_token[ds.uid_field][uid]: set(tokens[data.test.uid2history_item[uid].numpy()].tolist())
            for uid in data.test.uid_list.tolist()}


def test_ordered_mask_train_masks_only_training_items_at_test(tmp_path):
    folder = _write(tmp_path / "hand", False)
    recbole = _test_history(load_data("hand", folder, protocol="ordered", work_dir=tmp_path / "w1"))
    reference = _test_history(load_data("hand", folder, protocol="ordered-mask-train", work_dir=tmp_path / "w2"))
    for user, (train, valid, _) in BY_FILE.items():
        assert reference[user] == set(train)              # validation items stay rankable
        assert recbole[user] == set(train) | set(valid)   # RecBole masks every earlier part
    assert recbole["c"] - reference["c"] == {"i9"}


def test_ordered_mask_train_scores_a_validation_item_ranked_first_as_a_miss(tmp_path):
    """A model that ranks c's validation item i9 first and its test items next: under the reference's
    masking i9 takes rank 1 and the test items ranks 2 and 3; under RecBole's it is masked."""
    import torch

    from kdbench.evaluation.evaluator import full_ranking

    folder = _write(tmp_path / "hand", False)
    results = {}
    for protocol in ("ordered", "ordered-mask-train"):
        data = load_data("hand", folder, protocol=protocol, work_dir=tmp_path / protocol)
        ds = data.dataset
        order = [ds.token2id(ds.iid_field, t) for t in ("i9", "i10", "i11")]

        class Fixed(torch.nn.Module):
            n_items = data.n_items

            def full_sort_predict(self, interaction):
                users = interaction[ds.uid_field]
                scores = torch.zeros(len(users), data.n_items)
                for rank, item in enumerate(order):
                    scores[:, item] = 10.0 - rank
                return scores.view(-1)

        c = ds.token2id(ds.uid_field, "c")
        ranking = full_ranking(Fixed(), data.test, data.config)
        results[protocol] = ranking.per_user["ndcg@10"][ranking.user_ids.tolist().index(c)]
    ideal = 1 + 1 / np.log2(3)
    assert results["ordered"] == pytest.approx(1.0)
    assert results["ordered-mask-train"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / ideal)


def test_an_unknown_protocol_is_refused_naming_the_presets():
    with pytest.raises(KdbenchError, match="unknown protocol 'shuffled': valid: leave-one-out, ordered, ordered-mask-train, random"):
        get_protocol("shuffled")


# -- identity --------------------------------------------------------------------------------
LEGACY_PROTOCOL = {  # what every record made before presets holds in config.protocol
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
    "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "NDCG@10", "valid_metric_bigger": True,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                              "candidate_num": 0},
}


def _cell(protocol: str = "random") -> Cell:
    return Cell("ml-100k", BackboneSpec("BPR", 64), BackboneSpec("BPR", 5), "scratch", 0, protocol=protocol)


def test_the_random_protocol_keeps_the_identity_of_records_made_before_presets():
    assert get_protocol("random").identity() == LEGACY_PROTOCOL == PROTOCOL
    assert identity(_cell(), "cpu")["protocol"] == LEGACY_PROTOCOL


def test_the_protocol_is_part_of_a_results_identity_and_path(tmp_path):
    identities = [json.dumps(identity(_cell(p), "cpu"), sort_keys=True) for p in PROTOCOLS]
    assert len(set(identities)) == len(PROTOCOLS)
    store = RunStore(tmp_path)
    assert store.path("ml-100k", "BPR:64->BPR:5", "scratch", 0) == tmp_path / "runs/ml-100k/BPR-64_to_BPR-5/scratch/seed0.json"
    assert store.path("ml-100k", "BPR:64->BPR:5", "scratch", 0, "ordered") == \
        tmp_path / "runs/ml-100k@ordered/BPR-64_to_BPR-5/scratch/seed0.json"


def test_a_record_without_a_protocol_field_is_read_as_random_and_current():
    record = base_record(_cell(), "cpu") | {"status": "ok", "test": {}}
    assert record["protocol"] == "random"
    del record["protocol"]  # as records made before presets
    rebuilt = cell_from_record(record)
    assert rebuilt.protocol == "random"
    assert stale_fields(rebuilt, json.loads(json.dumps(record["config"]))) == []


def test_an_ordered_record_rebuilds_its_cell_and_is_current():
    record = base_record(_cell("ordered-mask-train"), "cpu") | {"status": "ok", "test": {}}
    rebuilt = cell_from_record(json.loads(json.dumps(record)))
    assert rebuilt.protocol == "ordered-mask-train"
    assert stale_fields(rebuilt, json.loads(json.dumps(record["config"]))) == []
    assert stale_fields(_cell("ordered"), json.loads(json.dumps(record["config"]))) == ["protocol"]
