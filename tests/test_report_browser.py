"""The HTML report in a real browser: a report of a real run on the embedded model, opened in
headless Debian Chromium. The plot must have drawn, a tree node must open, and the score it
shows must be the record's. The screenshot lands in the test output folder
(``$TTSCALE_TEST_OUTPUT``, default ``test-output/`` at the repository root).

Without Chromium the test is skipped, unless ``TTSCALE_REQUIRE_BROWSER=1`` (CI sets it), where
a missing browser is a failure."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ttscale.cli.main import app

sys.path.insert(0, str(Path(__file__).parent))
from browser import chromium, find_browser  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("TTSCALE_TEST_OUTPUT", REPO / "test-output"))
TINY = ("--max-step-tokens", "24", "--max-solution-tokens", "72", "--max-depth", "3",
        "--width", "2")


def _need_browser() -> None:
    if find_browser() is not None:
        return
    if os.environ.get("TTSCALE_REQUIRE_BROWSER") == "1":
        pytest.fail("TTSCALE_REQUIRE_BROWSER=1 but Debian chromium / chromium-driver are "
                    "missing: run `make install-browser`")
    pytest.skip("no Debian chromium + chromium-driver (make install-browser)")


def _shown(driver, index: str):
    """Wait until problem ``index`` of the list is open and drawn (opening is asynchronous)."""
    _wait_for(driver, "var view = document.getElementById('problem-view');"
                      "var current = document.querySelector('.problem-item.current');"
                      f"return current && current.getAttribute('data-index') === '{index}'"
                      " && view.getAttribute('aria-busy') === 'false'"
                      " && view.querySelector('.search-tab') !== null")


def _wait_for(driver, script: str, timeout_s: float = 300.0):
    """Poll ``script`` until it is truthy. Drawing takes a second here and far longer on a
    slow, busy machine: the limit only stops a page that will never get there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


@pytest.fixture(scope="module")
def report_of_a_real_run(tmp_path_factory):
    _need_browser()
    folder = tmp_path_factory.mktemp("report-browser")
    run_dir = folder / "run"
    result = CliRunner().invoke(app, ["run", "--dataset", "gsm8k", "--limit", "2", "--method",
                                      "bon,beam", "--n", "4", "--prm", "self", *TINY,
                                      "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    html = folder / "report.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(html)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    return html, records


def test_report_draws_plots_and_opens_a_tree_node(report_of_a_real_run):
    from selenium.webdriver.common.by import By

    html, records = report_of_a_real_run
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with chromium() as driver:
        driver.get(html.as_uri())
        _wait_for(driver, "return window.ttscaleReport && window.ttscaleReport.ready")
        # both figures drawn by plotly, with a line per search
        drawn = driver.execute_script(
            "return Array.from(document.querySelectorAll('.figure')).map(function (div) {"
            "  return [div.getAttribute('data-drawn'),"
            "          div.querySelectorAll('.scatterlayer .trace').length]; })")
        assert len(drawn) == 2 and all(flag == "1" and traces > 0 for flag, traces in drawn)
        driver.save_screenshot(str(OUTPUT / "report-curves.png"))
        # the inlined KaTeX loaded (no network here) and renders
        assert driver.execute_script(
            "var box = document.createElement('span');"
            "box.textContent = '\\\\(\\\\frac{1}{2}\\\\)'; renderMathInElement(box);"
            "return box.querySelectorAll('.katex .mfrac').length")

        driver.find_element(By.CSS_SELECTOR, '[data-tab="trees"]').click()
        items = driver.find_elements(By.CSS_SELECTOR, "#problems li.problem-item")
        assert len(items) == 2
        problem_id = items[0].get_attribute("data-index")
        items[0].click()
        _shown(driver, problem_id)
        driver.find_element(By.CSS_SELECTOR, '.search-tab[data-search="beam@4"]').click()
        shown_id = driver.execute_script(
            "return JSON.parse(document.getElementById('ttscale-index').textContent)"
            ".problems[arguments[0]].id", int(problem_id))
        assert driver.find_element(By.CSS_SELECTOR, ".problem-head").text.startswith(shown_id)
        beam = next(r for r in records if r["key"] == f"{shown_id}|beam|4")
        scores = {node["id"]: node["score"] for node in beam["tree"]}
        # open a closed node that has children, then read a child's score
        closed = _wait_for(driver, "return document.querySelector("
                           "'#problem-view li.node[aria-expanded=\"false\"]')")
        closed.find_element(By.CSS_SELECTOR, ".node-row").click()
        assert closed.get_attribute("aria-expanded") == "true"
        child = closed.find_element(By.CSS_SELECTOR, ":scope > ul > li.node")
        node_id = int(child.get_attribute("data-node"))
        shown = child.find_element(By.CSS_SELECTOR, ":scope > .node-row .score")
        assert shown.text == f"{scores[node_id]:.3f}"
        assert float(shown.get_attribute("data-score")) == pytest.approx(scores[node_id])
        # keyboard: j moves to the next problem
        driver.find_element(By.TAG_NAME, "body").send_keys("j")
        _wait_for(driver, "return document.querySelector('.problem-item.current')"
                          f".getAttribute('data-index') !== '{problem_id}'")
        driver.find_element(By.TAG_NAME, "body").send_keys("k")
        _shown(driver, problem_id)
        closed = _wait_for(driver, "return document.querySelector("
                           "'#problem-view li.node[aria-expanded=\"false\"]')")
        closed.find_element(By.CSS_SELECTOR, ".node-row").click()
        # the outcome filter lists exactly the problems whose beam@4 answer was wrong
        wrong = sorted(r["problem_id"] for r in records if r["key"].endswith("|beam|4")
                       and not r["correct"])
        driver.execute_script("document.getElementById('filter-search').value = 'beam@4';"
                              "var s = document.getElementById('filter-outcome');"
                              "s.value = 'wrong'; s.dispatchEvent(new Event('change'));")
        listed = [item.find_element(By.CSS_SELECTOR, ".problem-id").text for item in
                  driver.find_elements(By.CSS_SELECTOR, "#problems li.problem-item")]
        assert sorted(listed) == wrong
        driver.execute_script("var s = document.getElementById('filter-outcome');"
                              "s.value = 'all'; s.dispatchEvent(new Event('change'));")
        screenshot = OUTPUT / "report-tree.png"
        driver.save_screenshot(str(screenshot))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert screenshot.stat().st_size > 10_000
    assert not errors, errors


THINKING_FEWSHOT = Path(__file__).parent / "data" / "thoughts" / "fewshot_thinking.txt"


def test_thoughts_are_folded_with_their_size_and_the_budget_cut_is_shown(tmp_path):
    """A real run of the embedded model thinking between <think> markers (its few-shot
    examples do), under a thinking budget small enough to cut some thoughts."""
    from selenium.webdriver.common.by import By

    _need_browser()
    run_dir, html = tmp_path / "run", tmp_path / "report.html"
    result = CliRunner().invoke(app, [
        "run", "--dataset", "ladder", "--levels", "1", "--limit", "1", "--method", "majority",
        "--n", "4", "--prm", "none", "--prompt", f"fewshot:{THINKING_FEWSHOT}",
        "--thinking", "on", "--thinking-budget", "12", "--max-solution-tokens", "96",
        "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    ends = {c["thought"]["end"] for c in record["candidates"] if "thought" in c}
    assert ends and ends <= {"closed", "budget"}
    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(html)])
    assert result.exit_code == 0, result.output
    with chromium() as driver:
        driver.get(html.as_uri())
        _wait_for(driver, "return window.ttscaleReport && window.ttscaleReport.ready")
        driver.find_element(By.CSS_SELECTOR, '[data-tab="trees"]').click()
        item = driver.find_element(By.CSS_SELECTOR, "#problems li.problem-item")
        item.click()
        _shown(driver, item.get_attribute("data-index"))
        # open every node (shift-click expands a subtree)
        driver.execute_script(
            "document.querySelectorAll('#problem-view li.node[aria-expanded=\"false\"]')"
            ".forEach(function (li) { li.querySelector('.node-row').dispatchEvent("
            "new MouseEvent('click', {shiftKey: true, bubbles: true})); });")
        folds = _wait_for(driver, "var f = document.querySelectorAll("
                                  "'#problem-view li.node.thought details.thought-fold');"
                                  "return f.length ? Array.from(f) : null")
        thought_nodes = {n["id"]: n for n in record["tree"] if n.get("thought")}
        assert len(folds) == len(thought_nodes)
        for fold in folds:
            node = thought_nodes[int(fold.find_element(By.XPATH, "ancestor::li[1]")
                                     .get_attribute("data-node"))]
            assert fold.get_attribute("open") is None  # folded by default
            summary = fold.find_element(By.CSS_SELECTOR, "summary").text
            assert summary == f"thought · {node['tokens']} tok"
        badges = [b.text for b in driver.find_elements(By.CSS_SELECTOR, ".badge.thinking")]
        cut = [c for c in record["candidates"] if c.get("thought", {}).get("end") == "budget"]
        assert sum(b.startswith("thought cut by the budget at 12") for b in badges) == len(cut)
        folds[0].find_element(By.CSS_SELECTOR, "summary").click()
        assert folds[0].get_attribute("open") is not None
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
