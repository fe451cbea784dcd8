"""The dataset catalogue: entries, the data folder, `data list`, and the four files imported as the
papers report them (when ../shared/data holds them; skipped otherwise)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdbench.data.catalogue import CATALOGUE
from kdbench.data.fetch import sha256_of
from kdbench.data.location import default_data_dir, recorded_data_path
from kdbench.data.importer import FORMATS, convert

from conftest import run_cli


def _shared_data() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return None


SHARED = _shared_data()
PAPERS = {  # the statistics of each folder's README (users, items, interactions)
    "citeulike-t": (5_219, 25_181, 125_580),
    "foursquare": (24_941, 28_593, 717_086),
    "amazon-beauty": (22_363, 12_101, 198_502),
    "yelp": (30_431, 20_033, 316_354),
}


def test_the_catalogue_holds_the_four_datasets_with_the_papers_statistics():
    assert sorted(CATALOGUE.names()) == sorted(PAPERS)
    for name, statistics in PAPERS.items():
        assert CATALOGUE.get(name).statistics == statistics


def test_each_entry_pins_a_file_by_commit_and_hash_and_names_a_registered_format():
    for name in CATALOGUE.names():
        entry = CATALOGUE.get(name)
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", entry.url), name
        assert entry.url.endswith("/" + entry.filename)
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), name
        assert entry.format in FORMATS


def test_filters_and_time_order_are_the_readmes():
    assert CATALOGUE.get("citeulike-t").filter == "--min-user-interactions 5"
    assert [CATALOGUE.get(n).filter for n in ("foursquare", "amazon-beauty", "yelp")] == ["none"] * 3
    assert [n for n in CATALOGUE.names() if CATALOGUE.get(n).time_ordered] == ["amazon-beauty", "yelp"]


def test_the_data_folder_is_kdbench_data_else_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("KDBENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "kdbench" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "kdbench" / "data"


def test_a_record_keeps_no_absolute_folder_for_a_catalogue_dataset():
    assert recorded_data_path("citeulike-t", "/work/main/data") is None
    assert recorded_data_path("citeulike-t", "~/data") is None
    assert recorded_data_path("citeulike-t", "data") == "data"  # a suite's relative folder
    assert recorded_data_path("citeulike-t", None) is None
    assert recorded_data_path("my-own", "/home/me/data") == "/home/me/data"  # the only way to find it


def test_data_list_shows_sources_hashes_statistics_and_what_is_here(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path))
    (tmp_path / "amazon-beauty").mkdir()
    (tmp_path / "amazon-beauty" / "amazon-beauty.inter").write_text("user_id:token\titem_id:token\n1\t1\n")
    code, out, err = run_cli(capsys, "data", "list")
    assert code == 0, err
    assert f"Data folder: {tmp_path}" in out and "ml-100k" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in PAPERS}
    assert rows["amazon-beauty"][-1] == "yes" and rows["citeulike-t"][-1] == "no"
    assert rows["citeulike-t"][4:7] == ["5,219", "25,181", "125,580"]
    for name in PAPERS:
        entry = CATALOGUE.get(name)
        assert entry.url in out and entry.sha256 in out


@pytest.mark.skipif(SHARED is None, reason="../shared/data is not here")
@pytest.mark.parametrize("name", list(PAPERS))
def test_the_shared_file_has_the_catalogue_hash_and_imports_to_the_papers_statistics(name):
    entry = CATALOGUE.get(name)
    source = SHARED / name / entry.filename
    if not source.is_file():
        pytest.skip(f"{source} is not here")
    assert sha256_of(source) == entry.sha256
    converted = convert(entry.format, source, entry.min_user_interactions)
    assert (converted.users, converted.items, converted.interactions) == PAPERS[name]
