"""`results/index.html`: the leaderboard as one self-contained page (data, script and style inline).

The page is a pure function of the leaderboard's rows, the stored runs and the tuning studies, so
`report` rebuilds it byte for byte and `verify` compares it like the other leaderboard files: no
clock, sorted keys, one JSON value per line for rows and runs (a diff shows what changed).

Nothing it loads comes from the network: a Content-Security-Policy meta tag allows no source but
the page's own inline script (by its SHA-256 hash) and inline style, so a reference to any URL,
a font or an image is refused by the browser rather than fetched. The script (assets/js/*.js,
plain JavaScript, no library) builds the filters, table, plot and detail view from the embedded
JSON; without JavaScript the page says where the same numbers are (leaderboard.md).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from kdbench.report.page.collect import page_data
from kdbench.report.page.summaries import answer_html, compute_html

PAGE_NAME = "index.html"
# concatenated in this order into one inline script (one closure: they share its names)
SCRIPTS = ("format.js", "columns.js", "state.js", "table.js", "plot.js", "detail.js", "main.js")


def render_page(rows: list[dict[str, Any]], columns: list[str], header: dict[str, Any],
                runs_dir: str | Path, records: Iterable[tuple[Path, dict[str, Any]]] | None = None,
                cross_dataset: list[dict[str, Any]] = (), compute: list[dict[str, Any]] = ()) -> str:
    """The page for these leaderboard rows (`leaderboard.json`'s `rows`, `columns`, `header`), with
    the runs and tuning studies stored under `runs_dir` (the results folder the page is written to);
    `records` as in `page_data`; the answer across datasets above the table and the compute per
    dataset below it (`leaderboard.json`'s `cross_dataset` and `compute`; none: left out)."""
    data = page_data(rows, columns, header, runs_dir, records)
    script = '"use strict";\n(function () {\n' + "".join(_asset(f"js/{n}") for n in SCRIPTS) + "})();\n"
    style = _asset("page.css")
    policy = ("default-src 'none'; "
              f"script-src '{_sha256(script)}'; style-src 'unsafe-inline'; img-src data: blob:; "
              "base-uri 'none'; form-action 'none'")
    title = "kdbench leaderboard" + (" (QUICK)" if header.get("quick") else "")
    parts = {"POLICY": html.escape(policy, quote=False), "TITLE": html.escape(title), "STYLE": style, "SCRIPT": script,
             "ANSWER": answer_html(list(cross_dataset)), "COMPUTE": compute_html(list(compute)),
             "DATA": _embedded_json(data)}
    page = _asset("page.html")
    # DATA last: its text is never searched
    for name in ("POLICY", "TITLE", "ANSWER", "COMPUTE", "STYLE", "SCRIPT", "DATA"):
        page = page.replace("{{" + name + "}}", parts[name], 1 if name == "DATA" else -1)
    return page


def write_page(results_dir: str | Path) -> Path:
    """(Re)write `results_dir/index.html` from `leaderboard.json` and the runs beside it."""
    from kdbench.store import atomic
    from kdbench.store.reading import read_mapping

    results_dir = Path(results_dir)
    board = read_mapping(results_dir / "leaderboard.json", "run `python -m kdbench report` to rebuild it")
    path = results_dir / PAGE_NAME
    atomic.write_text(path, render_page(board["rows"], board["columns"], board["header"], results_dir,
                                        cross_dataset=board.get("cross_dataset") or [],
                                        compute=board.get("compute") or []))
    return path


def _asset(name: str) -> str:
    return resources.files("kdbench.report.page").joinpath("assets", *name.split("/")).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _embedded_json(data: dict[str, Any]) -> str:
    """JSON safe inside <script type="application/json">: `<` escaped (no `</script>`, no `<!--`);
    the long lists one item per line."""
    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    lines = ["{"]
    keys = sorted(data)
    for i, key in enumerate(keys):
        value = data[key]
        end = "," if i < len(keys) - 1 else ""
        if isinstance(value, list) and value:
            items = [dump(v) for v in value]
            lines.append(f"{dump(key)}:[\n" + ",\n".join(items) + f"\n]{end}")
        elif isinstance(value, dict) and value and key == "studies":
            items = [f"{dump(k)}:{dump(value[k])}" for k in sorted(value)]
            lines.append(f"{dump(key)}:{{\n" + ",\n".join(items) + f"\n}}{end}")
        else:
            lines.append(f"{dump(key)}:{dump(value)}{end}")
    lines.append("}")
    return "\n".join(lines).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
