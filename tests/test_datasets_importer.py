"""The importer's formats registry and the one-line-per-user sequence format (Beauty.txt, Yelp.txt):
rows in file order, a timestamp that increases along each user's sequence, so that the sequential
family's leave-one-out and the `ordered` protocols follow each line's (time) order."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.errors import KdbenchError
from kdbench.families import load_data
from kdbench.data.importer import FORMATS, import_dataset

from conftest import run_cli

SEQUENCES = (
    "1 30 10 20 10\n"   # user 1: item 10 visited twice (Yelp has repeats), last item 10
    "2 5 4 3 2 1 9\n"   # user 2: ids descending, last item 9
    "3 7 8 6"           # user 3: no newline at the end of the file
)


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_both_formats_are_registered_and_an_unknown_one_lists_them(tmp_path):
    assert set(FORMATS.names()) == {"users-dat", "user-sequences"}
    source = tmp_path / "s.txt"
    source.write_text(SEQUENCES)
    with pytest.raises(KdbenchError, match="unknown format 'csv': valid: user-sequences, users-dat"):
        import_dataset("csv", source, "s", tmp_path / "out")


def test_a_sequence_file_is_imported_in_line_order_with_increasing_timestamps(tmp_path):
    source = tmp_path / "Beauty.txt"
    source.write_text(SEQUENCES)
    summary = import_dataset("user-sequences", source, "beauty", tmp_path / "out")
    rows = _rows(tmp_path / "out" / "beauty" / "beauty.inter")
    assert rows[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    assert rows[1:] == [["1", "30", "0"], ["1", "10", "1"], ["1", "20", "2"], ["1", "10", "3"],
                        ["2", "5", "4"], ["2", "4", "5"], ["2", "3", "6"], ["2", "2", "7"], ["2", "1", "8"],
                        ["2", "9", "9"], ["3", "7", "10"], ["3", "8", "11"], ["3", "6", "12"]]
    # 13 pairs (the repeat counts twice, as in the README's interaction counts), 12 distinct items
    assert (summary.users, summary.items, summary.interactions, summary.dropped_users) == (3, 12, 13, 0)


def test_the_user_filter_applies_to_sequences(tmp_path):
    source = tmp_path / "s.txt"
    source.write_text(SEQUENCES)
    summary = import_dataset("user-sequences", source, "s", tmp_path / "out", min_user_interactions=4)
    assert [r[0] for r in _rows(tmp_path / "out" / "s" / "s.inter")[1:]] == ["1"] * 4 + ["2"] * 6
    assert (summary.users, summary.dropped_users) == (2, 1)


@pytest.mark.parametrize("text, message", [
    ("1 2 3\n\n2 4\n", "line 2 is empty"),
    ("1 2 x\n", "line 1: 'x' is not a non-negative integer"),
    ("1 2 -3\n", "line 1: '-3' is not a non-negative integer"),
    ("1 2 3\n2 4\n1 5\n", "line 3 repeats user 1 of line 1"),
    ("", "the file is empty"),
    ("1 2 ²\n", "line 1: '²' is not a non-negative integer"),
], ids=["empty-line", "not-a-number", "negative", "user-twice", "empty-file", "unicode-digit"])
def test_a_malformed_sequence_file_is_refused_naming_the_line(tmp_path, text, message):
    source = tmp_path / "s.txt"
    source.write_text(text)
    with pytest.raises(KdbenchError, match=message):
        import_dataset("user-sequences", source, "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_imports_a_sequence_file(tmp_path, capsys):
    source = tmp_path / "s.txt"
    source.write_text(SEQUENCES)
    code, out, err = run_cli(capsys, "data", "import", "--format", "user-sequences", str(source), "--name", "s",
                             "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "3 users, 12 items, 13 interactions" in out


def _long_sequences(tmp_path: Path) -> Path:
    """10 users of 10 items each, every line's ids in an order unrelated to their values."""
    lines = [f"{u} " + " ".join(str((7 * k + 3 * u) % 23 + 1) for k in range(10)) for u in range(1, 11)]
    source = tmp_path / "seq.txt"
    source.write_text("\n".join(lines) + "\n")
    import_dataset("user-sequences", source, "seq", tmp_path / "out")
    return tmp_path / "out"


def _items(data, ids) -> list[int]:
    tokens = data.dataset.field2id_token[data.dataset.iid_field]
    return [int(tokens[i]) for i in ids]


def test_leave_one_out_takes_each_lines_last_item_as_test_and_the_one_before_as_validation(tmp_path):
    out = _long_sequences(tmp_path)
    data = load_data("seq", str(out), model="SASRec", protocol="leave-one-out", batch_size=64,
                     work_dir=tmp_path / "w")
    for loader, offset in ((data.test, 9), (data.valid, 8)):
        interaction = loader.dataset.inter_feat
        users = data.dataset.field2id_token[data.dataset.uid_field][interaction[data.uid_field].numpy()]
        expected = {str(u): (7 * offset + 3 * u) % 23 + 1 for u in range(1, 11)}
        targets = _items(data, interaction[data.iid_field].tolist())
        assert dict(zip(users, targets)) == expected


def test_the_ordered_protocol_splits_each_sequence_in_line_order(tmp_path):
    out = _long_sequences(tmp_path)
    data = load_data("seq", str(out), protocol="ordered", batch_size=64, work_dir=tmp_path / "w")
    user = data.dataset.token2id(data.uid_field, "4")
    # 10 items -> 8 train / 1 validation / 1 test, in the line's order
    assert _items(data, data.test.uid2positive_item[user].tolist()) == [(7 * 9 + 12) % 23 + 1]
    assert _items(data, data.valid.uid2positive_item[user].tolist()) == [(7 * 8 + 12) % 23 + 1]
