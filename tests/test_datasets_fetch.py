"""`data fetch` against a local HTTP server on 127.0.0.1 (the real URLs are never contacted): a good
download is checked and imported; a changed file, a truncated download, a server error or no server
ends in one line naming the URL and `--from-file`, exit 2, and nothing in the data folder."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kdbench.data.catalogue import CATALOGUE, CatalogueEntry
from kdbench.data.fetch import fetch

from conftest import run_cli

TINY = b"1 30 10 20\n2 5 4 3 2\n3 7 8\n"  # user-sequences: 3 users, 9 items, 9 interactions
ROUTES: dict[str, tuple[int, bytes, int | None]] = {  # path -> (status, body, announced length)
    "/Tiny.txt": (200, TINY, None),
    "/changed.txt": (200, TINY.replace(b"30", b"31"), None),
    "/truncated.txt": (200, TINY[:10], len(TINY)),
    "/error.txt": (500, b"internal error", None),
}


class Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.requests.append(self.path)
        status, body, length = ROUTES.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """No test of this file may reach beyond 127.0.0.1."""
    original = urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", f"a test tried to reach {url}"
        return original(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.fixture
def tiny(server, monkeypatch):
    """A catalogue entry `tiny` served by the local server."""
    entry = CatalogueEntry(name="tiny", summary="test", url=f"{server}/Tiny.txt",
                           sha256=hashlib.sha256(TINY).hexdigest(), filename="Tiny.txt", format="user-sequences",
                           min_user_interactions=0, users=3, items=9, interactions=9, time_ordered=True,
                           reference="test")
    monkeypatch.setitem(CATALOGUE._items, "tiny", entry)
    return entry


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_a_good_download_is_checked_imported_and_written(tiny, tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path / "d"))
    assert code == 0, err
    assert "3 users, 9 items, 9 interactions" in out and "--dataset tiny --data-path" in out
    folder = tmp_path / "d" / "tiny"
    assert _files(tmp_path / "d") == ["tiny", "tiny/source", "tiny/source/Tiny.txt", "tiny/source/fetched.json",
                                      "tiny/tiny.inter"]
    assert (folder / "source" / "Tiny.txt").read_bytes() == TINY
    rows = (folder / "tiny.inter").read_text().splitlines()
    assert rows[1:4] == ["1\t30\t0", "1\t10\t1", "1\t20\t2"] and len(rows) == 10
    assert json.loads((folder / "source" / "fetched.json").read_text())["sha256"] == tiny.sha256


def test_a_second_fetch_finds_the_dataset_and_downloads_nothing(tiny, tmp_path, capsys):
    assert run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path))[0] == 0
    Handler.requests.clear()
    code, out, _ = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path))
    assert code == 0 and "already in" in out and Handler.requests == []
    assert run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path), "--force")[0] == 0
    assert Handler.requests == ["/Tiny.txt"]


def test_the_default_data_folder_is_kdbench_data(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path / "cache"))
    code, out, _ = run_cli(capsys, "data", "fetch", "tiny")
    assert code == 0 and "--dataset tiny;" not in out and out.rstrip().endswith("--dataset tiny")
    assert (tmp_path / "cache" / "tiny" / "tiny.inter").is_file()


@pytest.mark.parametrize("path, message", [
    ("/changed.txt", "has SHA-256 [0-9a-f]{64}, not the catalogue's [0-9a-f]{64} for tiny"),
    ("/truncated.txt", "is truncated: 10 of 27 bytes"),
    ("/error.txt", "answered HTTP 500"),
    ("/missing.txt", "answered HTTP 404"),
], ids=["hash-mismatch", "truncated", "server-error", "not-found"])
def test_a_bad_download_ends_in_one_line_and_writes_nothing(tiny, server, tmp_path, capsys, path, message):
    code, out, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path / "d"),
                             "--url", server + path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kdbench: error: ")
    assert re.search(message, err), err
    assert server + path in err and "--from-file PATH --data-path" in err
    assert _files(tmp_path / "d") == []


def test_no_server_ends_in_one_line_naming_the_url_and_how_to_place_the_file(tiny, tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/Tiny.txt"
    code, _, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path / "d"), "--url", url)
    assert code == 2 and err.count("\n") == 1
    assert f"cannot reach {url} (Connection refused; offline?)" in err
    assert f"download {url} by hand" in err and "data fetch tiny --from-file PATH" in err
    assert _files(tmp_path / "d") == []


def test_a_failed_fetch_leaves_a_previous_fetch_as_it_was(tiny, server, tmp_path, capsys):
    assert run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path))[0] == 0
    before = {p: (tmp_path / p).read_bytes() for p in _files(tmp_path) if (tmp_path / p).is_file()}
    code, _, _ = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path), "--force",
                         "--url", server + "/truncated.txt")
    assert code == 2
    assert {p: (tmp_path / p).read_bytes() for p in _files(tmp_path) if (tmp_path / p).is_file()} == before


def test_a_file_placed_by_hand_is_checked_against_the_same_hash(tiny, tmp_path, capsys):
    good, bad = tmp_path / "Tiny.txt", tmp_path / "other.txt"
    good.write_bytes(TINY)
    bad.write_bytes(TINY + b"4 1 2\n")
    code, _, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path / "d"), "--from-file", str(bad))
    assert code == 2 and err.count("\n") == 1 and f"{bad} has SHA-256" in err
    assert _files(tmp_path / "d") == []
    Handler.requests.clear()
    code, out, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path / "d"), "--from-file", str(good))
    assert code == 0, err
    assert Handler.requests == [] and (tmp_path / "d" / "tiny" / "tiny.inter").is_file()


def test_an_import_with_other_statistics_than_the_catalogues_is_refused(tiny, tmp_path, monkeypatch):
    from dataclasses import replace

    from kdbench.errors import KdbenchError

    wrong = replace(tiny, items=10)
    with pytest.raises(KdbenchError, match="gives 3 users, 9 items, 9 interactions, not the catalogue's 3 / 10 / 9"):
        fetch(wrong, tmp_path, progress=False)
    assert _files(tmp_path) == []


def test_a_folder_holding_another_import_is_not_replaced_without_force(tiny, tmp_path, capsys):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "tiny.inter").write_text("user_id:token\titem_id:token\n1\t1\n")
    code, _, err = run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path))
    assert code == 2 and "was not fetched from tiny's catalogue file; pass --force" in err
    assert run_cli(capsys, "data", "fetch", "tiny", "--data-path", str(tmp_path), "--force")[0] == 0


def test_unknown_and_bundled_names_are_refused_in_one_line(capsys):
    code, _, err = run_cli(capsys, "data", "fetch", "movielens")
    assert code == 2 and "unknown catalogue dataset 'movielens': valid: amazon-beauty, citeulike-t" in err
    code, _, err = run_cli(capsys, "data", "fetch", "ml-100k")
    assert code == 2 and "ml-100k is bundled with RecBole: nothing to fetch" in err


def _shared(name: str) -> Path | None:
    for parent in Path(__file__).resolve().parents:
        path = parent / "shared" / "data" / name / CATALOGUE.get(name).filename
        if path.is_file():
            return path
    return None


@pytest.mark.skipif(_shared("citeulike-t") is None, reason="../shared/data/citeulike-t is not here")
def test_the_real_catalogue_entry_fetches_from_a_mirror_with_the_papers_statistics(server, tmp_path, capsys):
    ROUTES["/users.dat"] = (200, _shared("citeulike-t").read_bytes(), None)
    code, out, err = run_cli(capsys, "data", "fetch", "citeulike-t", "--data-path", str(tmp_path),
                             "--url", server + "/users.dat")
    assert code == 0, err
    assert "5,219 users, 25,181 items, 125,580 interactions" in out


def test_a_download_shows_a_progress_bar_on_a_terminal(server, tmp_path, monkeypatch):
    import io
    import sys

    from kdbench.data.fetch import download

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    download(server + "/Tiny.txt", tmp_path / "Tiny.txt")
    assert (tmp_path / "Tiny.txt").read_bytes() == TINY
    assert "Tiny.txt:" in terminal.getvalue() and "/27.0 [" in terminal.getvalue()  # named, with its size
