"""The leaderboard page in a real browser (headless Chromium through Selenium), on the committed
results: it loads from file:// with no console error and no network request, and its table, CSV,
sorting, filters, URL hash, plot and detail view do what the page says.

Needs Debian's `chromium` and `chromium-driver` (CI installs them in .ci/run) and `selenium`;
without them every test here is skipped, saying which is missing. With KDBENCH_SCREENSHOT=PATH the
run also saves a screenshot of the page's first screen there (results/index.png in the README).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from kdbench.report.page import PAGE_NAME, render_page

RESULTS = Path(__file__).resolve().parents[1] / "results"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium on PATH (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    if not (RESULTS / "leaderboard.json").is_file():
        return f"no committed leaderboard in {RESULTS}"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"browser tests skipped: {_missing()}")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The page the current code renders from the committed leaderboard and runs."""
    board = json.loads((RESULTS / "leaderboard.json").read_text())
    path = tmp_path_factory.mktemp("page") / PAGE_NAME
    path.write_text(render_page(board["rows"], board["columns"], board["header"], RESULTS,
                                cross_dataset=board["cross_dataset"], compute=board["compute"]))
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="kdbench-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(browser, page: Path, fragment: str = ""):
    browser.get("about:blank")  # a new document even when only the fragment differs
    browser.get_log("browser"), browser.get_log("performance")  # drop what came before
    browser.get(page.as_uri() + fragment)
    return browser


def css(browser, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def visible_keys(browser) -> list[str]:
    return browser.execute_script("return Array.from(document.querySelectorAll('#board tbody tr'), tr => tr.dataset.key)")


def committed_csv() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((RESULTS / "leaderboard.csv").read_text())))


def choose(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(css(browser, f"#{select_id}")[0]).select_by_value(value)


def test_the_page_loads_from_file_with_no_console_error_and_no_network_request(browser, page):
    open_page(browser, page)
    assert len(css(browser, "#board tbody tr")) > 0
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []  # a refused fetch or a policy violation would be logged here
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    requested = {e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"}
    assert requested <= {page.as_uri()}
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    screenshot = os.environ.get("KDBENCH_SCREENSHOT")
    if screenshot:  # the first screen of the default view: the answer across datasets, the filters
        size = browser.get_window_size()
        browser.set_window_size(1400, 1500)
        browser.save_screenshot(screenshot)
        browser.set_window_size(size["width"], size["height"])


def test_the_rows_are_the_csvs_and_the_download_holds_the_filtered_view(browser, page):
    open_page(browser, page)
    expected = committed_csv()
    assert len(css(browser, "#board tbody tr")) == len(expected)
    css(browser, "#download")[0].click()
    downloaded = _wait_for_file(browser.downloads / "kdbench-leaderboard-view.csv")
    assert downloaded.read_text() == (RESULTS / "leaderboard.csv").read_text()  # unfiltered: the same file
    downloaded.unlink()
    choose(browser, "f-var", "tuned")
    css(browser, "#download")[0].click()
    rows = list(csv.DictReader(io.StringIO(_wait_for_file(downloaded).read_text())))
    assert len(rows) == len(css(browser, "#board tbody tr")) == sum(r["variant"] == "tuned" for r in expected) > 0
    assert {r["variant"] for r in rows} == {"tuned"}
    downloaded.unlink()


def _wait_for_file(path: Path, timeout: float = 10.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            return path
        time.sleep(0.05)
    raise AssertionError(f"{path.name} was not downloaded")


def test_sorting_by_ndcg_orders_the_rows_both_ways(browser, page):
    open_page(browser, page)
    means = {f"{r['dataset']}|{r['pairing']}|{r['variant']}|{r['strategy']}": float(r["ndcg@10_mean"])
             for r in committed_csv()}
    button = css(browser, '#board th button[data-sort="ndcg10"]')[0]
    button.click()
    descending = [means[k] for k in visible_keys(browser)]
    assert descending == sorted(means.values(), reverse=True)
    assert css(browser, '#board th[aria-sort="descending"] button[data-sort="ndcg10"]')
    css(browser, '#board th button[data-sort="ndcg10"]')[0].click()
    assert [means[k] for k in visible_keys(browser)] == sorted(means.values())
    css(browser, '#board th button[data-sort="pairing"]')[0].click()  # text sorts naturally: BPR:5 before BPR:10
    pairings = list(dict.fromkeys(k.split("|")[1] for k in visible_keys(browser)))
    assert pairings == sorted(pairings, key=_natural)


def _natural(text: str) -> list:
    """BPR:64->BPR:5 before BPR:64->BPR:10: digit runs compare as numbers."""
    import re

    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]


def test_filters_hide_exactly_the_rows_they_should(browser, page):
    open_page(browser, page)
    rows = committed_csv()
    dataset = min({r["dataset"] for r in rows}, key=lambda d: sum(r["dataset"] == d for r in rows))
    choose(browser, "f-ds", dataset)
    keys = visible_keys(browser)
    assert len(keys) == sum(r["dataset"] == dataset for r in rows) < len(rows)
    assert {k.split("|")[0] for k in keys} == {dataset}
    choose(browser, "f-ds", "")
    css(browser, "#f-sig")[0].click()
    significant = [r for r in rows if r["p_value_holm"] and float(r["p_value_holm"]) < 0.05]
    assert len(visible_keys(browser)) == len(significant) < len(rows)
    column = [th.text for th in css(browser, "#board thead th")].index("NDCG@10")
    marks = browser.execute_script("return Array.from(document.querySelectorAll('#board tbody tr'), "
                                   "tr => tr.cells[arguments[0]].textContent.slice(-1))", column)
    assert set(marks) <= {"†", "‡"}
    css(browser, "#f-sig")[0].click()
    css(browser, "#f-q")[0].send_keys("rrd")
    assert visible_keys(browser) and all("rrd" in k.split("|")[3] for k in visible_keys(browser))


def test_the_url_hash_restores_a_view(browser, page):
    open_page(browser, page)
    choose(browser, "f-var", "defaults")
    choose(browser, "f-fam", "ranking")
    css(browser, '#board th button[data-sort="ms_user"]')[0].click()
    css(browser, "#column-chooser summary")[0].click()
    css(browser, "#c-recall20")[0].click()
    choose(browser, "x-axis", "train")
    keys, url = visible_keys(browser), browser.current_url
    assert "var=defaults" in url and "fam=ranking" in url and "sort=ms_user" in url and "x=train" in url
    headers = [th.text for th in css(browser, "#board thead th")]
    open_page(browser, page, "#" + url.split("#", 1)[1])
    assert visible_keys(browser) == keys
    assert [th.text for th in css(browser, "#board thead th")] == headers and any("Recall@20" in h for h in headers)
    assert css(browser, "#f-fam")[0].get_attribute("value") == "ranking"
    assert css(browser, "#x-axis")[0].get_attribute("value") == "train"


def plotted_keys(browser) -> list[str]:
    return browser.execute_script("return Array.from(document.querySelectorAll('#plot .pt'), g => g.dataset.key)")


def test_the_plot_has_one_point_per_row_on_every_cost_axis(browser, page):
    """Every row with a value on the axis is a point. The one gap allowed: a compressed format's
    latency, which only `kdbench cost` gives (its runs score through dense tables, not its kernel);
    until then its row is listed and not placed on that axis. A dense shape is never missing."""
    from kdbench.evaluation.compressed_cost import is_compressed_shape

    rows = {"|".join((r["dataset"], r["pairing"], r["variant"], r["strategy"])): r for r in committed_csv()}
    open_page(browser, page)
    for axis, column in (("bytes", "size_bytes"), ("latency", "latency_p50_ms"), ("train", "train_s_per_epoch")):
        choose(browser, "x-axis", axis)
        listed = visible_keys(browser)
        assert sorted(plotted_keys(browser)) == sorted(key for key in listed if rows[key][column])
        assert all(is_compressed_shape(rows[key]["model"]) for key in listed if not rows[key][column]), axis
    choose(browser, "f-var", "tuned")
    assert len(css(browser, "#plot .pt")) == len(visible_keys(browser)) < len(committed_csv())
    points = browser.execute_script("return Array.from(document.querySelectorAll('#plot .pt'), g => g.dataset.key)")
    assert sorted(points) == sorted(visible_keys(browser))
    assert css(browser, "#plot .pt:not(.hollow)")  # a Pareto front is marked


def test_hovering_a_point_names_it_and_clicking_it_selects_its_row(browser, page):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    open_page(browser, page, "#var=tuned&x=latency")
    # points can overlap: hover the centre of the fourth, on a whole pixel, and expect the one on top there
    x, y, key = browser.execute_script("""
        document.getElementById('plot').scrollIntoView();
        const box = document.querySelectorAll('#plot .pt')[3].getBoundingClientRect();
        const x = Math.round(box.x + box.width / 2), y = Math.round(box.y + box.height / 2);
        return [x, y, document.elementFromPoint(x, y).closest('.pt').dataset.key];""")
    point = css(browser, f'#plot .pt[data-key="{key}"]')[0]
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(x, y)
    actions.perform()
    strategy = key.split("|")[3]
    assert strategy in css(browser, "#plot-caption")[0].text
    assert strategy in css(browser, "#tip")[0].text
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(x, y).click()
    actions.perform()
    assert point.get_attribute("aria-pressed") == "true"
    row = css(browser, '#board tbody tr[aria-current="true"]')
    assert [r.get_attribute("data-key") for r in row] == [key]
    assert browser.switch_to.active_element.get_attribute("data-key") == key
    assert "sel=" in browser.current_url


def test_a_row_opens_its_details_with_the_rerun_command_by_mouse_and_by_keyboard(browser, page):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page)
    row = css(browser, "#board tbody tr")[1]
    key = row.get_attribute("data-key")
    row.click()
    assert css(browser, "#detail")[0].get_attribute("open") is not None
    commands = [c.text for c in css(browser, "#detail code.command")]
    assert commands and all(c.startswith("python -m kdbench reproduce results/runs/") for c in commands)
    assert all((RESULTS.parent / c.split()[-1]).is_file() for c in commands)
    links = [a.get_dom_attribute("href") for a in css(browser, "#detail-body a")]
    runs = [link for link in links if link.startswith("runs/") and link.endswith(".json")]
    assert len(runs) == len(commands) and all((RESULTS / link).is_file() for link in runs)  # relative to the page
    assert all(link.removesuffix(".json") + ".log" in links for link in runs)
    assert "NDCG@10" in css(browser, "#detail-body")[0].text
    css(browser, "#detail-close")[0].send_keys(Keys.ESCAPE)
    assert css(browser, "#detail")[0].get_attribute("open") is None
    assert browser.switch_to.active_element.get_attribute("data-key") == key  # focus back on its row
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    below = browser.switch_to.active_element
    assert below.get_attribute("data-key") == css(browser, "#board tbody tr")[2].get_attribute("data-key")
    below.send_keys(Keys.ENTER)
    assert css(browser, "#detail")[0].get_attribute("open") is not None
    title = css(browser, "#detail-title")[0].get_attribute("textContent")
    assert below.get_attribute("aria-label") == title + ". Press Enter for details."
    assert below.get_attribute("aria-current") == "true"  # and it is the selected row
