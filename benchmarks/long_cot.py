"""Long chains of thought: how fast a 30 000-token thought is cut into steps and into how many,
and what 100 such traces do to the report and its viewer.

1. Builds ``--traces`` traces in DeepSeek-R1's format (the text starts inside the thought and
   closes it with ``</think>``, then the answer) from the hand-written paragraphs of
   ``tests/data/thoughts/r1_closed.txt``, repeated, numbered and varied, from half to one and
   a half times ``--tokens`` tokens (counted by the embedded model's tokenizer).
2. Times ``split_continuation`` (the thought cut into merged-paragraph steps) on each, and
   counts their steps.
3. Writes them as the records of a real run (the runner, majority@1 over as many GSM8K
   problems, a policy that replays the traces), builds ``ttscale report`` on it, and notes the
   report's size.
4. Opens the report in headless Chromium (``make install-browser``; skipped without it) and
   times opening one problem's tree, unfolding all its nodes and opening a thought.

Writes ``benchmarks/results/long_cot.json`` and ``long_cot.md``.

Usage: python benchmarks/long_cot.py [--traces 100] [--tokens 30000] [--out runs/long-cot]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from ttscale.engines.base import Continuation, ModelInfo
from ttscale.engines.embedded import embedded_model_path
from ttscale.prompts import PromptFormat
from ttscale.run.runner import DatasetSelection, RunConfig, run
from ttscale.search.steps_from_text import split_continuation
from ttscale.thoughts import THINK_TAGS

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
FIXTURE = REPO / "tests" / "data" / "thoughts" / "r1_closed.txt"
RECHECKS = ("Wait, let me double-check that.", "Hmm, is that right?",
            "Let me recompute this part another way.", "Actually, hold on.")


def count_tokens():
    from llama_cpp import Llama

    vocab = Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def build_trace(index: int, tokens: int, count) -> str:
    """A thought of about ``tokens`` tokens, then the fixture's answer part."""
    thought, answer = FIXTURE.read_text().split("</think>", 1)
    paragraphs = [p for p in thought.split("\n\n") if p.strip()]
    body: list[str] = []
    per_round = count("\n\n".join(paragraphs)) + 40
    for k in range(max(1, tokens // per_round)):
        for j, paragraph in enumerate(paragraphs):
            body.append(f"{RECHECKS[(index + k + j) % len(RECHECKS)]} (pass {k + 1}) "
                        f"{paragraph}")
    return "\n\n".join(body) + "\n</think>" + answer


class ReplayPolicy:
    """A policy that answers every prompt with one of the given traces (by the prompt), so
    the runner writes the records a reasoning model's long traces would make."""

    def __init__(self, traces: list[str], tokens: list[int]) -> None:
        self.traces, self.tokens = traces, tokens

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="replayed-long-thoughts", parameters=1_500_000_000)

    async def extend(self, prefixes, n, stop, max_tokens, temperature, top_p, seed,
                     first_sample=0):
        replies = []
        for prefix in prefixes:
            k = sum(prefix.encode()) % len(self.traces)
            replies.append([Continuation(self.traces[k], "eos", len(prefix) // 4, 0,
                                         self.tokens[k]) for _ in range(n)])
        return replies

    async def close(self) -> None:
        return None


def time_viewer(html: Path) -> dict | None:
    sys.path.insert(0, str(REPO / "tests"))
    from browser import chromium, find_browser

    if find_browser() is None:
        return None
    from selenium.webdriver.common.by import By

    def wait(driver, script: str) -> None:
        deadline = time.monotonic() + 600
        while not driver.execute_script(script):
            if time.monotonic() > deadline:
                raise TimeoutError(script)
            time.sleep(0.02)

    with chromium() as driver:
        started = time.perf_counter()
        driver.get(html.resolve().as_uri())
        wait(driver, "return window.ttscaleReport && window.ttscaleReport.ready")
        loaded = time.perf_counter() - started
        driver.find_element(By.CSS_SELECTOR, '[data-tab="trees"]').click()
        item = driver.find_element(By.CSS_SELECTOR, "#problems li.problem-item")
        started = time.perf_counter()
        item.click()
        wait(driver, "var v = document.getElementById('problem-view');"
                     "return v.getAttribute('aria-busy') === 'false' && v.querySelector('li.node')")
        opened = time.perf_counter() - started
        started = time.perf_counter()
        driver.execute_script(
            "document.querySelectorAll('#problem-view li.node[aria-expanded=\"false\"]')"
            ".forEach(function (li) { li.querySelector('.node-row').dispatchEvent("
            "new MouseEvent('click', {shiftKey: true, bubbles: true})); });")
        wait(driver, "return document.querySelectorAll('details.thought-fold').length > 0")
        unfolded = time.perf_counter() - started
        folds = driver.execute_script("return document.querySelectorAll('details.thought-fold')"
                                      ".length")
        started = time.perf_counter()
        driver.execute_script("document.querySelector('details.thought-fold').open = true")
        wait(driver, "return document.querySelector('details.thought-fold').open")
        thought_open = time.perf_counter() - started
    return {"load_s": loaded, "open_problem_s": opened, "expand_tree_s": unfolded,
            "thought_folds": folds, "open_thought_s": thought_open}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=Path("runs/long-cot"))
    args = parser.parse_args()
    count = count_tokens()
    # lengths spread from half to one and a half times --tokens
    traces = [build_trace(i, int(args.tokens * (0.5 + i / args.traces)), count)
              for i in range(args.traces)]
    tokens = [count(t) for t in traces]

    seconds, steps, thought_steps = [], [], []
    for text, n in zip(traces, tokens, strict=True):
        continuation = Continuation(text, "eos", 0, 0, n)
        started = time.perf_counter()
        split = split_continuation(continuation, "\n\n", THINK_TAGS)
        seconds.append(time.perf_counter() - started)
        steps.append(len(split))
        thought_steps.append(sum(s.thought for s in split))

    run_dir = args.out / "run"
    config = RunConfig(dataset=DatasetSelection(name="gsm8k", limit=args.traces),
                       methods=("majority",), budgets=(1,), scorer="none")
    prompt = PromptFormat(thinking="on")
    asyncio.run(run(config, ReplayPolicy(traces, tokens), None, run_dir, prompt, parallel=8))
    html = args.out / "report.html"
    from typer.testing import CliRunner

    from ttscale.cli.main import app

    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(html)])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    viewer = time_viewer(html)

    summary = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "traces": args.traces,
        "tokens": {"min": min(tokens), "median": statistics.median(tokens), "max": max(tokens)},
        "characters_median": statistics.median(len(t) for t in traces),
        "segmentation_s": {"median": statistics.median(seconds), "max": max(seconds)},
        "steps": {"min": min(steps), "median": statistics.median(steps), "max": max(steps)},
        "thought_steps_median": statistics.median(thought_steps),
        "records_mib": (run_dir / "records.jsonl").stat().st_size / 2**20,
        "report_mib": html.stat().st_size / 2**20,
        "viewer": viewer,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "long_cot.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "long_cot.md").write_text(markdown(summary))
    print(markdown(summary))


def markdown(s: dict) -> str:
    lines = [
        "# Long chains of thought: segmentation, report and viewer", "",
        f"Written by `python benchmarks/long_cot.py`. Machine: {s['machine']}. "
        f"{s['traces']} traces in DeepSeek-R1's format of {s['tokens']['min']:,}–"
        f"{s['tokens']['max']:,} tokens (median {s['tokens']['median']:,.0f}, the embedded "
        f"model's tokenizer; median {s['characters_median']:,.0f} characters); thoughts cut "
        "into paragraphs merged up to 2000 characters, at most 40 steps.", "",
        "| measure | value |", "|---|---|",
        f"| segmentation per trace, median / max | {s['segmentation_s']['median'] * 1e3:.1f} ms"
        f" / {s['segmentation_s']['max'] * 1e3:.1f} ms |",
        f"| steps per trace, min / median / max | {s['steps']['min']} / "
        f"{s['steps']['median']:.0f} / {s['steps']['max']} |",
        f"| of which thought steps (median) | {s['thought_steps_median']:.0f} |",
        f"| run records | {s['records_mib']:.1f} MiB |",
        f"| HTML report | {s['report_mib']:.1f} MiB |",
    ]
    viewer = s["viewer"]
    if viewer is None:
        lines.append("| viewer | not timed: no Chromium (make install-browser) |")
    else:
        lines += [
            f"| report loaded and ready | {viewer['load_s']:.2f} s |",
            f"| one problem's tree opened | {viewer['open_problem_s']:.2f} s |",
            f"| its tree unfolded ({viewer['thought_folds']} thought folds) | "
            f"{viewer['expand_tree_s']:.2f} s |",
            f"| a thought opened | {viewer['open_thought_s']:.3f} s |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
