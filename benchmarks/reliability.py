"""What ttscale survives, measured: one command runs the fault, number and fuzz tests (with
what each case met logged), the kill soak and the server's load benchmark, and writes one
table of every fault and input class tried, how many cases, and what happened.

- ``tests/test_faults.py``: the fault proxy between ttscale and real servers (llama.cpp's on
  the embedded model; ttscale's PRM server on a tiny random PRM);
- ``tests/test_numbers.py``, ``tests/test_prm_formats.py``: NaN, infinities and out-of-range
  values from engines and scorers; PRM inputs past the PRM's context;
- ``tests/test_retries.py``, ``tests/test_run_lock.py``: the retry rule; one writer per folder;
- ``tests/test_fuzz.py``: generated inputs to grading, the dataset reader and the server;
- ``benchmarks/kill_soak.py``: real jobs SIGKILLed at random moments and resumed;
- ``benchmarks/server_load.py``: 200 requests from 50 clients, idle and loaded.

Writes ``benchmarks/results/reliability.json`` and ``reliability.md``. ``--reuse-soak`` and
``--reuse-load`` table the kill soak's and the load benchmark's last results instead of
running them again (they take the longest).

Usage: python benchmarks/reliability.py [--reuse-soak] [--reuse-load] [--kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TESTS = ["tests/test_faults.py", "tests/test_numbers.py", "tests/test_retries.py",
         "tests/test_run_lock.py", "tests/test_prm_formats.py", "tests/test_fuzz.py"]
COUNTS = ("lost", "duplicated", "crashes", "server_errors")


def run_tests(scratch: Path) -> tuple[list[dict], dict]:
    """The cases the tests logged, and pytest's own tally (passed, failed, ...)."""
    log, junit = scratch / "cases.jsonl", scratch / "junit.xml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TTSCALE_RELIABILITY_LOG": str(log)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *TESTS], cwd=ROOT, env=env)
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tally = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    tally["exit_code"] = done.returncode
    cases = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for case in cases:  # a test's name, read as words
        case["case"] = case["case"].removeprefix("test_").replace("_", " ")
    return cases, tally


def soak_rows(args) -> list[dict]:
    path = RESULTS / "kill_soak.json"
    if not args.reuse_soak:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_soak.py"),
                        "--kills", str(args.kills)], cwd=ROOT, check=True)
    soak = json.loads(path.read_text())
    rows = []
    for outcome in soak["jobs"].values():
        c = outcome["comparison"]
        rows.append({"area": "kill soak (SIGKILL, resume)", "case": f"`{outcome['command']}`",
                     "cases": outcome["kills"], "lost": c["lost"],
                     "duplicated": c["duplicated"], "crashes": outcome["crashes"],
                     "result": f"{c['records']} records, {c['differing']} differing "
                               f"({outcome['mode']}) from the uninterrupted run; seed "
                               f"{soak['seed']}"})
    return rows


def load_rows(args) -> list[dict]:
    path = RESULTS / "server_load.json"
    if not args.reuse_load:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "server_load.py")],
                       cwd=ROOT, check=True)
    load = json.loads(path.read_text())
    s = load["settings"]
    rows = []
    for run in load["runs"]:
        statuses = run["statuses"]
        others = sum(v for k, v in statuses.items() if k not in ("200", "429"))
        rows.append({"area": "server load", "case": f"{s['requests']} requests from "
                     f"{s['clients']} clients, {run.get('label', '')}, --max-running "
                     f"{run['max_running']}", "cases": s["requests"],
                     "lost": s["requests"] - sum(statuses.values()),
                     "server_errors": sum(v for k, v in statuses.items() if k.startswith("5")),
                     "result": f"{run['answered']} answered, {statuses.get('429', 0)} refused "
                               f"(429) after {s['retries']} retries, {others} other; p50 "
                               f"{run['p50_s']:.1f} s, p99 {run['p99_s']:.1f} s"})
    return rows


def markdown(rows: list[dict], tally: dict) -> str:
    lines = ["# Reliability: what ttscale survives", "",
             "Produced by `python benchmarks/reliability.py`. Each row is a fault or input class; "
             "*cases* is how many were tried; the counts are what the test or benchmark measured "
             "(records lost or duplicated, crashes of ttscale, HTTP 5xx from its server); "
             "*result* is what ttscale did. A count left blank does not apply to that class.",
             "", f"Tests: {tally['tests']} run, {tally['failures']} failed, {tally['errors']} "
             f"errors, {tally['skipped']} skipped.", "",
             "| area | case | cases | lost | duplicated | crashes | 5xx | result |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        counts = " | ".join("" if r.get(k) is None else str(r[k]) for k in COUNTS)
        lines.append(f"| {r['area']} | {r['case']} | {r['cases']} | {counts} "
                     f"| {r.get('result', '')} |")
    totals = {k: sum(r.get(k) or 0 for r in rows) for k in COUNTS}
    lines += ["", "Totals: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in totals.items())
              + f" over {sum(r['cases'] for r in rows)} cases.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse-soak", action="store_true")
    parser.add_argument("--reuse-load", action="store_true")
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cases, tally = run_tests(Path(scratch))
    rows = cases + soak_rows(args) + load_rows(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps({"tests": tally, "rows": rows},
                                                         indent=2) + "\n")
    (RESULTS / "reliability.md").write_text(markdown(rows, tally))
    print(markdown(rows, tally))
    if tally["failures"] or tally["errors"]:
        sys.exit("some reliability tests failed: see above")


if __name__ == "__main__":
    main()
