"""`kdbench data import --format users-dat`: order kept, the user filter, malformed lines refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.families import load_data
from kdbench.errors import KdbenchError
from kdbench.data.importer import import_dataset

CITEULIKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-t" / "users.dat"

USERS_DAT = (
    "3 9 2 7\n"         # user 0: 3 items, dropped by a 5-item minimum
    "5 40 3 11 1 8\n"   # user 1: kept, in this (unsorted) order
    "0\n"               # user 2: no items
    "6 1 2 3 4 5 6"     # user 3: kept; no newline at the end of the file
)


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_the_import_keeps_the_files_order_and_ids(tmp_path):
    source = tmp_path / "users.dat"
    source.write_text(USERS_DAT)
    summary = import_dataset("users-dat", source, "cite", tmp_path / "out")
    rows = _rows(tmp_path / "out" / "cite" / "cite.inter")
    assert rows[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    assert rows[1:] == [["0", "9", "0"], ["0", "2", "1"], ["0", "7", "2"],
                        ["1", "40", "3"], ["1", "3", "4"], ["1", "11", "5"], ["1", "1", "6"], ["1", "8", "7"],
                        *[["3", str(k), str(7 + k)] for k in range(1, 7)]]
    assert (summary.users, summary.items, summary.interactions, summary.dropped_users) == (3, 11, 14, 0)  # items 1-9, 11, 40


def test_the_user_filter_keeps_users_with_at_least_n_items(tmp_path):
    source = tmp_path / "users.dat"
    source.write_text(USERS_DAT)
    summary = import_dataset("users-dat", source, "cite", tmp_path / "out", min_user_interactions=5)
    rows = _rows(tmp_path / "out" / "cite" / "cite.inter")[1:]
    assert [r[0] for r in rows] == ["1"] * 5 + ["3"] * 6
    assert [r[1] for r in rows[:5]] == ["40", "3", "11", "1", "8"]
    assert (summary.users, summary.items, summary.interactions, summary.dropped_users) == (2, 9, 11, 1)


def test_an_imported_file_splits_in_file_order_under_the_ordered_protocol(tmp_path):
    lines = [f"{n} " + " ".join(str(100 - 7 * u - k) for k in range(n)) for u, n in enumerate([10, 5, 11, 20])]
    source = tmp_path / "users.dat"
    source.write_text("\n".join(lines) + "\n")
    import_dataset("users-dat", source, "cite", tmp_path / "out")
    data = load_data("cite", str(tmp_path / "out"), protocol="ordered", work_dir=tmp_path / "w")
    ds = data.dataset
    tokens = ds.field2id_token[ds.iid_field]
    user = ds.token2id(ds.uid_field, "0")
    test = data.test.uid2positive_item[user].tolist()
    assert sorted(int(tokens[i]) for i in test) == [91]        # user 0's last item (10 -> 8/1/1)
    assert sorted(int(tokens[i]) for i in data.valid.uid2positive_item[user].tolist()) == [92]


@pytest.mark.parametrize("text, message", [
    ("3 1 2 3\n2 5\n", "line 2 says 2 items but lists 1"),
    ("3 1 2 3\n\n1 4\n", "line 2 is empty"),
    ("2 1 x\n", "line 1: 'x' is not a non-negative integer"),
    ("2 1 -4\n", "line 1: '-4' is not a non-negative integer"),
    ("", "the file is empty"),
], ids=["count-mismatch", "empty-line", "not-a-number", "negative", "empty-file"])
def test_a_malformed_line_is_refused_naming_it(tmp_path, text, message):
    source = tmp_path / "users.dat"
    source.write_text(text)
    with pytest.raises(KdbenchError, match=message):
        import_dataset("users-dat", source, "cite", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_import_exits_2_with_one_line_on_a_malformed_file(tmp_path, capsys):
    source = tmp_path / "users.dat"
    source.write_text("1 4\n3 1 2\n")
    code = main(["data", "import", "--format", "users-dat", str(source), "--name", "cite", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "line 2 says 3 items but lists 2" in err


def test_the_cli_import_writes_and_says_how_to_use_it(tmp_path, capsys):
    source = tmp_path / "users.dat"
    source.write_text(USERS_DAT)
    code = main(["data", "import", "--format", "users-dat", str(source), "--name", "cite",
                 "--min-user-interactions", "5", "--out", str(tmp_path / "o")])
    assert code == 0
    assert "2 users, 9 items, 11 interactions" in capsys.readouterr().out


@pytest.mark.skipif(not CITEULIKE.is_file(), reason="citeulike-t users.dat not present")
def test_citeulike_with_5_item_users_has_the_papers_statistics(tmp_path):
    summary = import_dataset("users-dat", CITEULIKE, "citeulike-t", tmp_path, min_user_interactions=5)
    assert (summary.users, summary.items, summary.interactions) == (5219, 25181, 125580)
