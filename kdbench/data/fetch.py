"""`python -m kdbench data fetch NAME`: download a catalogue file, verify it, import it, write it.

Steps, each of which stops with one line (a `KdbenchError`) before anything is written:
1. the file comes from the catalogue's URL (or `--url`, a mirror), streamed to a scratch folder
   outside the data folder with a progress bar, or from `--from-file PATH` (placed by hand);
2. a download shorter than the server's Content-Length is refused as truncated; an HTTP error, a
   refused connection or a timeout is named with the URL;
3. its SHA-256 must be the catalogue's;
4. the import (the entry's format and filter) must give the catalogue's users, items, interactions;
5. `DATA/NAME/NAME.inter`, the source file (`DATA/NAME/source/FILE`) and the record of what was
   fetched (`DATA/NAME/source/fetched.json`) are replaced together (`atomic.atomic_paths`).
Every download error says how to place the file by hand: `--from-file PATH`, checked the same way.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kdbench.store import atomic
from kdbench.data.catalogue import CatalogueEntry
from kdbench.data.location import data_dir
from kdbench.errors import KdbenchError
from kdbench.data.importer import ImportSummary, convert
from kdbench.store.paths import check_file, check_folder

CHUNK_BYTES = 1 << 16
TIMEOUT_S = 60.0  # seconds without a byte before a download is given up
MANIFEST = "fetched.json"


@dataclass(frozen=True)
class Fetched:
    entry: CatalogueEntry
    summary: ImportSummary
    already_present: bool  # the folder held this very file's import: nothing was downloaded


def targets(entry: CatalogueEntry, data_path: str | Path | None) -> tuple[Path, Path, Path]:
    """(atomic file, source copy, manifest) of `entry` in the data folder."""
    folder = data_dir(data_path) / entry.name
    return folder / f"{entry.name}.inter", folder / "source" / entry.filename, folder / "source" / MANIFEST


def by_hand(entry: CatalogueEntry, data_path: str | Path | None, url: str) -> str:
    where = f" --data-path {data_path}" if data_path is not None else ""
    return (f"download {url} by hand (a browser, curl) and run `python -m kdbench data fetch {entry.name} "
            f"--from-file PATH{where}` (checked against the same SHA-256)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, progress: bool = True) -> None:
    """Stream `url` into `target`; one line (KdbenchError) on an HTTP error, no connection, a
    timeout, or fewer bytes than the server announced."""
    from tqdm import tqdm

    from kdbench import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"kdbench/{__version__}"})
    received, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            # on a terminal only (disable=None): a log or a pipe gets the one line of the outcome
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None if progress else True,
                      dynamic_ncols=True, leave=False) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise KdbenchError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        why = getattr(reason, "strerror", None) or str(reason)
        raise KdbenchError(f"cannot reach {url} ({why}; offline?)") from None
    except (socket.timeout, TimeoutError):
        raise KdbenchError(f"the download of {url} timed out after {received:,} bytes") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise KdbenchError(f"the download of {url} broke off after {received:,} bytes "
                           f"({type(exc).__name__})") from None
    if total is not None and received < total:
        raise KdbenchError(f"the download of {url} is truncated: {received:,} of {total:,} bytes")


def _current(entry: CatalogueEntry, data_path: str | Path | None) -> ImportSummary | None:
    """The summary of a previous fetch of this very file, if the folder holds it whole."""
    inter, _, manifest = targets(entry, data_path)
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != entry.sha256 or not inter.is_file():
        return None
    return ImportSummary(inter, entry.users, entry.items, entry.interactions, int(record.get("dropped_users", 0)))


def fetch(entry: CatalogueEntry, data_path: str | Path | None = None, from_file: str | Path | None = None,
          url: str | None = None, force: bool = False, progress: bool = True) -> Fetched:
    """Fetch `entry` into the data folder (`data_path`, else `location.default_data_dir()`)."""
    url = url or entry.url
    folder = check_folder(data_dir(data_path), "--data-path")
    inter, source_copy, manifest = targets(entry, data_path)
    if not force:
        current = _current(entry, data_path)
        if current is not None:
            return Fetched(entry, current, True)
        if inter.exists():
            raise KdbenchError(f"{inter} exists but was not fetched from {entry.name}'s catalogue file; "
                               f"pass --force to replace it")
    with tempfile.TemporaryDirectory(prefix="kdbench-fetch-") as scratch:
        if from_file is not None:
            source = check_file(from_file, "--from-file")
            origin = f"{source}"
        else:
            source = Path(scratch) / entry.filename
            try:
                download(url, source, progress)
            except KdbenchError as exc:
                raise KdbenchError(f"{exc}; nothing was written to {folder}; {by_hand(entry, data_path, url)}") from None
            origin = url
        digest = sha256_of(source)
        if digest != entry.sha256:
            advice = "" if from_file is not None else f"; {by_hand(entry, data_path, url)}"
            raise KdbenchError(f"{origin} has SHA-256 {digest}, not the catalogue's {entry.sha256} for "
                               f"{entry.name} (another or a damaged file); nothing was written to {folder}{advice}")
        converted = convert(entry.format, source, entry.min_user_interactions)
        got = (converted.users, converted.items, converted.interactions)
        if got != entry.statistics:
            raise KdbenchError(f"importing {origin} as {entry.format} ({entry.filter}) gives {got[0]:,} users, "
                               f"{got[1]:,} items, {got[2]:,} interactions, not the catalogue's "
                               f"{entry.users:,} / {entry.items:,} / {entry.interactions:,}; nothing was written")
        record = {"name": entry.name, "url": entry.url, "sha256": entry.sha256, "format": entry.format,
                  "min_user_interactions": entry.min_user_interactions, "users": entry.users,
                  "items": entry.items, "interactions": entry.interactions,
                  "dropped_users": converted.dropped_users, "time_ordered": entry.time_ordered}
        with atomic.atomic_paths([inter, source_copy, manifest]) as (tmp_inter, tmp_source, tmp_manifest):
            tmp_inter.write_text(converted.text)
            shutil.copyfile(source, tmp_source)
            tmp_manifest.write_text(atomic.dumps(record))
    return Fetched(entry, converted.summary(inter), False)
