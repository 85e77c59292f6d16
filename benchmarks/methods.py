"""The method study: every search method in the registry, on the embedded policy, at the same
budgets, on the difficulty ladder's levels and GSM8K test — which one is compute-optimal at
which difficulty and budget.

1. Runs (``ttscale run``, resumable): per problem set (each ladder level of ``--levels``,
   ``--per-level`` problems of the test split; ``--gsm8k`` problems of GSM8K test), the
   methods that use no scorer once (``--prm none``), and the methods that do once per scorer
   of ``--scorers`` (``grounded``, the shipped verifier, first; ``self``: the policy's
   confidence, step aggregation last; ``arith`` and ``grounded``: the model-free checkers,
   step aggregation min), every method at every budget of ``--n``. The first scorer runs on
   every set; the others only where the unscored samples leave a scorer room (pass@N at the
   largest budget at least ``--headroom``, 20 %), as no scorer lifts accuracy past pass@N.
2. Tables from the records: accuracy with a 95 % bootstrap interval over problems, mean FLOPs,
   generated tokens, seconds and solutions drawn per problem; per problem set and budget the
   most accurate method (ties: the cheaper), i.e. the compute-optimal choice at that
   difficulty.
   Per problem set, ``ttscale report``'s accuracy curves of its runs (against N and against
   FLOPs), as PNG files under ``methods-curves/``.
3. Adaptive methods (records with an ``adaptive`` entry): their FLOPs as a ratio to the fixed
   method they stop early from (majority vote, or Best-of-N with the same scorer) at the same
   N, with a paired bootstrap interval, beside the paired accuracy difference.

Writes ``benchmarks/results/methods.json`` and ``methods.md``; every figure comes from the
records under ``--run-dir`` (``ttscale report RUN_DIR ... --bins level`` draws their curves),
which are kept gzipped under ``--archive`` (``benchmarks/results/methods-runs``): a run folder
that is missing is unpacked from there and resumed, so the study can be stopped at any moment
(``--tables-only`` then tables and archives what is done) and finished later, elsewhere.

Usage: python benchmarks/methods.py [--run-dir runs/bench-methods] [--levels 1,2,3]
       [--per-level 100] [--gsm8k 100] [--n 4,16] [--scorers grounded,self,arith]
       [--methods greedy,majority,...] [--parallel 4] [--workers 2] [--threads N]
       [--headroom 0.2] [--flash-attn auto] [--tables-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ttscale.compute import format_flops
from ttscale.records import read_records
from ttscale.search import METHODS
from ttscale.stats import bootstrap_mean, paired_difference, ratio_of_means

sys.path.insert(0, str(Path(__file__).parent))
from run_archive import archive_run, restore  # noqa: E402 - beside this file

RESULTS = Path(__file__).parent / "results"
ARCHIVE = RESULTS / "methods-runs"
STEP_SETTINGS = ["--max-step-tokens", "64", "--max-depth", "8", "--max-solution-tokens", "256"]
STEP_AGGREGATION = {"self": "last", "arith": "min", "grounded": "min"}
ADAPTIVE_KEY = "adaptive"  # the record entry adaptive methods write
# A scorer can lift accuracy no higher than pass@N. Where N samples hold a right answer on
# fewer than this share of the problems, the scorers after the first (which runs everywhere)
# are not run: on 100 problems their accuracies could not be told apart.
HEADROOM = 0.2


def ttscale(*args: str, env: dict[str, str] | None = None) -> None:
    print("$ ttscale " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "ttscale.cli.main", *args], check=True,
                   env={**os.environ, **(env or {})})


def run_folder(run_dir: Path, set_name: str, scorer: str) -> Path:
    return run_dir / f"{set_name.replace(' ', '-')}-{scorer}"


def set_sizes(args) -> dict[str, int]:
    """{problem set: the problems it is meant to have}."""
    return {name: args.per_level if name.startswith("ladder") else args.gsm8k
            for name in problem_sets(args.levels, args.per_level, args.gsm8k)}


def problem_sets(levels: Sequence[int], per_level: int, gsm8k: int) -> dict[str, list[str]]:
    """{name: ttscale run's selection options}."""
    sets = {f"ladder level {level}": ["--dataset", "ladder", "--levels", str(level),
                                      "--limit", str(per_level)] for level in levels}
    if gsm8k:
        sets["gsm8k test"] = ["--dataset", "gsm8k", "--limit", str(gsm8k)]
    return sets


def run_all(args, methods: Sequence[str]) -> list[tuple[str, str, Path]]:
    """(problem set, scorer, run folder) of every run, each run made or resumed, ``--workers``
    runs at once."""
    unscored = [m for m in methods if not METHODS[m].uses_scorer]
    scored = [m for m in methods if METHODS[m].uses_scorer]
    # Breadth first: every problem set with the unscored methods and the first scorer, then
    # each further scorer over every set, so a study stopped early still covers each level.
    scorers = [(s, scored) for s in args.scorers if scored]
    phases = [([("none", unscored)] if unscored else []) + scorers[:1],
              *([one] for one in scorers[1:])]
    sets = problem_sets(args.levels, args.per_level, args.gsm8k)
    planned = []
    for phase in phases:
        for (set_name, selection), (scorer, chosen) in (
                (item, run) for item in sets.items() for run in phase):
            out = run_folder(args.run_dir, set_name, scorer)
            restore(out, args.archive)
            planned.append((set_name, scorer, out, selection, chosen))
    if args.tables_only:
        return [(s, c, out) for s, c, out, _, _ in planned if (out / "records.jsonl").exists()]
    sizes = set_sizes(args)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    failed = threading.Event()  # after a run fails no other starts
    futures: dict[tuple[str, str], Future] = {}

    def make(set_name, scorer, out, selection, chosen) -> None:
        if scorer in args.scorers[1:] and (set_name, "none") in futures:
            futures[set_name, "none"].result()  # started before this one: no deadlock
            room = left_out(args, set_name, scorer, sizes[set_name])
            if room is not None:
                print(f"skipped {set_name} / {scorer}: {_headroom_text(room)}", flush=True)
                return
        if failed.is_set():
            return
        try:
            ttscale("run", *selection, "--method", ",".join(chosen),
                    "--n", ",".join(map(str, args.n)), "--prm", scorer,
                    "--step-agg", STEP_AGGREGATION.get(scorer, "last"), *STEP_SETTINGS,
                    "--parallel", str(args.parallel), "--out", str(out),
                    "--threads", str(threads), env={"TTSCALE_FLASH_ATTN": args.flash_attn})
        except BaseException:
            failed.set()
            raise
        archive_run(out, args.archive)  # survives a lost checkout

    # Runs are independent (a folder each), and on a small machine two one-thread decoders
    # move more tokens than one of two threads (benchmarks/results/threads.md); they start
    # in the breadth-first order. The first failure is raised once the runs in flight end.
    with ThreadPoolExecutor(args.workers) as pool:
        for set_name, scorer, *rest in planned:
            futures[set_name, scorer] = pool.submit(make, set_name, scorer, *rest)
    for future in futures.values():
        future.result()
    return [(s, c, out) for s, c, out, _, _ in planned if (out / "records.jsonl").exists()]


def headroom(run_dir: Path, set_name: str, expected: int) -> dict | None:
    """pass@N of the set's unscored samples at the largest budget (majority vote's records:
    the share of problems one of whose N samples was right), the most a scorer can reach;
    ``None`` until that run has all ``expected`` problems."""
    records_file = run_folder(run_dir, set_name, "none") / "records.jsonl"
    if not records_file.exists():
        return None
    records = [r for r in read_records(records_file).records if r["method"] == "majority"]
    n = max((r["n"] for r in records), default=0)
    hits = [bool(r.get("pass_at_n")) for r in records if r["n"] == n]
    if not hits or len(hits) < expected:
        return None
    return {"n": n, "pass_at_n": sum(hits) / len(hits), "problems": len(hits)}


def left_out(args, set_name: str, scorer: str, expected: int) -> dict | None:
    """The set's headroom when ``--headroom`` leaves this scorer's run out (a run already
    begun is never left out), else ``None``."""
    if (run_folder(args.run_dir, set_name, scorer) / "records.jsonl").exists():
        return None
    room = headroom(args.run_dir, set_name, expected)
    return room if room is not None and room["pass_at_n"] < args.headroom else None


def _headroom_text(room: dict) -> str:
    return (f"pass@{room['n']} of the unscored samples {room['pass_at_n'] * 100:.0f} % "
            f"of {room['problems']} problems")


def archive_runs(runs, archive: Path) -> None:
    """Each run packed under ``archive``: the data behind the tables, and what a later
    invocation resumes from."""
    for _, _, out in runs:
        archive_run(out, archive)


def _records(runs) -> dict[tuple[str, str, str, int], dict[str, dict]]:
    """{(problem set, method, scorer, N): {problem id: record}}, the scorer named as the study
    names its run (``self``, not the registry's ``confidence`` the records carry)."""
    table: dict[tuple[str, str, str, int], dict[str, dict]] = defaultdict(dict)
    for set_name, scorer, folder in runs:
        for record in read_records(folder / "records.jsonl").records:
            key = (set_name, record["method"], scorer, record["n"])
            table[key][record["problem_id"]] = record
    return table


def _row(set_name: str, method: str, scorer: str, n: int, records: dict[str, dict]) -> dict:
    values = list(records.values())
    flops = [r["ledger"]["total_flops"] for r in values]
    return {
        "problems": set_name, "method": method, "scorer": scorer, "n": n,
        "count": len(values),
        "accuracy": bootstrap_mean([float(r["correct"]) for r in values]).to_dict(),
        "flops": None if None in flops else sum(flops) / len(values),
        "generated_tokens": sum(r["ledger"]["policy_tokens"]["generated"]
                                for r in values) / len(values),
        "seconds": sum(r["seconds"] for r in values) / len(values),
        "drawn": sum(len(r["candidates"]) for r in values) / len(values),
    }


def adaptive_ratios(table) -> list[dict]:
    """Each adaptive method's FLOPs and accuracy against the fixed method it stops early from,
    paired over the problems both answered."""
    rows = []
    for (set_name, method, scorer, n), records in sorted(table.items()):
        if not records or ADAPTIVE_KEY not in next(iter(records.values())):
            continue
        fixed = "bon" if METHODS[method].uses_scorer else "majority"
        baseline = table.get((set_name, fixed, scorer, n), {})
        shared = sorted(set(records) & set(baseline))
        if not shared:
            continue
        ours, theirs = [records[p] for p in shared], [baseline[p] for p in shared]
        rows.append({
            "problems": set_name, "method": method, "scorer": scorer, "n": n,
            "versus": fixed, "count": len(shared),
            "flops_ratio": ratio_of_means([r["ledger"]["total_flops"] or 0.0 for r in ours],
                                          [r["ledger"]["total_flops"] or 0.0 for r in theirs]
                                          ).to_dict(),
            "accuracy_difference": paired_difference([float(r["correct"]) for r in ours],
                                                     [float(r["correct"]) for r in theirs]
                                                     ).to_dict(),
        })
    return rows


def compute_optimal(table) -> list[dict]:
    """Per problem set and budget N, the most accurate option of budget N or less (ties:
    fewer FLOPs), as the planner chooses, and the options it cannot be told apart from: the
    paired 95 % interval of their accuracy difference reaches 0 (cheapest first). Options
    are compared on the problems all of the set's options answered: all of them once the
    study is finished; while a run is short of its problems, those it has."""
    def rank(row: dict) -> tuple[float, float]:
        return row["accuracy"]["value"], -(row["flops"] or float("inf"))

    chosen = []
    for set_name in sorted({key[0] for key in table}):
        options = {key: records for key, records in table.items()
                   if key[0] == set_name and records}
        common = sorted(set.intersection(*(set(records) for records in options.values())))
        if not common:
            continue
        shared = {key: {p: records[p] for p in common} for key, records in options.items()}
        rows = [_row(*key, records) for key, records in shared.items()]
        correct = {key: [float(r["correct"]) for r in records.values()]
                   for key, records in shared.items()}
        greedy = correct.get((set_name, "greedy", "none", 1))
        for budget in sorted({row["n"] for row in rows}):
            within = [row for row in rows if row["n"] <= budget]
            top = max(within, key=rank)
            mine = correct[_key(top)]
            tied = []
            for row in within:
                if row is top:
                    continue
                difference = paired_difference(mine, correct[_key(row)])
                if difference.low <= 0:
                    tied.append({"method": row["method"], "scorer": row["scorer"],
                                 "n": row["n"], "flops": row["flops"],
                                 "difference": difference.to_dict()})
            tied.sort(key=lambda t: t["flops"] or float("inf"))
            # what test-time scaling buys: the choice's paired difference to greedy decoding
            over_greedy = (paired_difference(mine, greedy).to_dict()
                           if greedy is not None and top["method"] != "greedy" else None)
            chosen.append({**top, "budget": budget, "tied": tied, "over_greedy": over_greedy})
    return chosen


def _key(row: dict) -> tuple[str, str, str, int]:
    return row["problems"], row["method"], row["scorer"], row["n"]


def _pct(estimate: dict) -> str:
    return (f"{estimate['value']:.1%} [{estimate['low']:.1%}, {estimate['high']:.1%}]"
            .replace("%", ""))


TIED_SHOWN = 5  # the cheapest few say what can stand in for the choice; methods.json has all


def markdown(rows: list[dict], ratios: list[dict], best: list[dict], setup: dict,
             curves: dict[str, list[Path]] | None = None) -> str:
    lines = ["# The method study on the embedded model", "",
             f"Machine: {setup['machine']}. Settings: `{' '.join(setup['settings'])}`; budgets "
             f"N = {', '.join(map(str, setup['n']))}. Accuracy in %, 95 % bootstrap interval "
             "over problems; FLOPs, tokens, seconds and solutions drawn are means per problem. "
             "Seconds are wall time on a machine shared by the problems a run solves at once "
             "and by the runs made at once (`--workers`): compare them within a run; FLOPs "
             "and tokens compare across runs.", ""]
    if setup.get("in_progress") or setup.get("not_begun"):
        lines += ["**The study is not finished** (`python benchmarks/methods.py` resumes it from "
                  "the archived records): " + "; ".join(
                      [f"{run}: {count}" for run, count in setup["in_progress"].items()]
                      + [f"{run}: not begun" for run in setup["not_begun"]]) + ".", ""]
    if setup.get("skipped"):
        lines += [f"**Not run**, as pass@N there is under {setup['headroom'] * 100:.0f} % "
                  "(`--headroom`; a scorer can lift accuracy no higher than pass@N, and on this "
                  "many problems scorers under it cannot be told apart): " + "; ".join(
                      f"{run} ({why})" for run, why in setup["skipped"].items()) + ".", ""]
    for set_name in dict.fromkeys(r["problems"] for r in rows):
        lines += [f"## {set_name}", "",
                  "| method | scorer | N | problems | accuracy | FLOPs | tokens | seconds | "
                  "drawn |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["problems"] == set_name):
            lines.append(f"| {r['method']} | {r['scorer']} | {r['n']} | {r['count']} "
                         f"| {_pct(r['accuracy'])} | {format_flops(r['flops'])} "
                         f"| {r['generated_tokens']:.0f} | {r['seconds']:.1f} "
                         f"| {r['drawn']:.1f} |")
        lines.append("")
        for image in (curves or {}).get(set_name, ()):  # beside methods.md
            lines += [f"![{image.stem}]({image.parent.name}/{image.name})", ""]
    lines += ["## Compute-optimal choice", "",
              "At each budget N the most accurate option of N or fewer solutions (the cheaper "
              "on a tie), as the planner chooses. "
              "Within noise: the options whose paired 95 % interval of the accuracy difference "
              "to the best reaches 0, cheapest first (the cheaper of them are as good a choice "
              f"on this evidence; the {TIED_SHOWN} cheapest are named, `methods.json` lists "
              "all). Over greedy: the paired accuracy difference to greedy "
              "decoding, in points, what test-time scaling buys at that budget. Every option "
              "of a set is compared on the problems all of them answered (column \"on\"; "
              "fewer than the set's while a run is short of its problems).", "",
              "| problems | budget | choice | scorer | on | accuracy | FLOPs | over greedy "
              "| within noise |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['problems']} | {r['budget']} | {r['method']}@{r['n']} | {r['scorer']} "
              f"| {r['count']} | {_pct(r['accuracy'])} | {format_flops(r['flops'])} "
              f"| {_signed(r['over_greedy']) if r.get('over_greedy') else ''} "
              f"| {_tied(r['tied'])} |" for r in best]
    if ratios:
        lines += ["", "## Adaptive methods against the fixed method they stop early from", "",
                  "| problems | method | scorer | N | versus | problems | FLOPs ratio | "
                  "accuracy difference (points) |", "|---|---|---|---|---|---|---|---|"]
        for r in ratios:
            f = r["flops_ratio"]
            lines.append(f"| {r['problems']} | {r['method']} | {r['scorer']} | {r['n']} "
                         f"| {r['versus']} | {r['count']} "
                         f"| {f['value']:.2f} [{f['low']:.2f}, {f['high']:.2f}] "
                         f"| {_signed(r['accuracy_difference'])} |")
    return "\n".join(lines) + "\n"


def _tied(tied: list[dict]) -> str:
    shown = ", ".join(f"{t['method']}@{t['n']}"
                      + (f"/{t['scorer']}" if t["scorer"] != "none" else "")
                      + f" ({format_flops(t['flops'])})" for t in tied[:TIED_SHOWN]) or "none"
    return shown + (f" and {len(tied) - TIED_SHOWN} more" if len(tied) > TIED_SHOWN else "")


def _signed(estimate: dict) -> str:
    return (f"{estimate['value'] * 100:+.1f} [{estimate['low'] * 100:+.1f}, "
            f"{estimate['high'] * 100:+.1f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-methods"))
    parser.add_argument("--levels", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 2, 3])
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--gsm8k", type=int, default=100)
    parser.add_argument("--n", type=lambda s: [int(v) for v in s.split(",")], default=[4, 16])
    parser.add_argument("--scorers", type=lambda s: s.split(","),
                        default=["grounded", "self", "arith"])
    parser.add_argument("--methods", type=lambda s: s.split(","),
                        default=[m for m, spec in METHODS.items() if not spec.chooses])
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads of each run (default: the CPUs ÷ --workers)")
    parser.add_argument("--headroom", type=float, default=HEADROOM,
                        help="the scorers after the first run on a problem set only where "
                             "pass@N of its unscored samples is at least this")
    # The plain kernel is faster only while the cache is small (benchmarks/results/
    # attention.md); the study's long runs keep it full of idle cells, where it is not.
    parser.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                        help="llama.cpp's attention kernel of the runs (TTSCALE_FLASH_ATTN)")
    parser.add_argument("--workers", type=int, default=1,
                        help="runs made at once (each its own process)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--archive", type=Path, default=ARCHIVE,
                        help="where the runs' records are kept, gzipped, and resumed from")
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: tables from the run folders that exist, as far as "
                             "they got")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    unknown = [m for m in args.methods if m not in METHODS or METHODS[m].chooses]
    if unknown:
        parser.error(f"not fixed methods of the registry: {', '.join(unknown)}")
    runs = run_all(args, args.methods)
    archive_runs(runs, args.archive)
    table = _records(runs)
    rows = [_row(*key, records) for key, records in table.items() if records]
    order = list(dict.fromkeys(set_name for set_name, _, _ in runs))  # the study's: by level

    def in_study_order(row: dict) -> int:
        return order.index(row["problems"])

    rows.sort(key=lambda r: (in_study_order(r), r["n"], list(METHODS).index(r["method"]),
                             r["scorer"]))
    ratios = sorted(adaptive_ratios(table), key=in_study_order)
    best = sorted(compute_optimal(table), key=in_study_order)
    planned = set_sizes(args)
    skipped = {f"{name} / {scorer}": _headroom_text(room) for name, size in planned.items()
               for scorer in args.scorers[1:]
               if (room := left_out(args, name, scorer, size)) is not None}
    done = {(set_name, scorer): len({r["problem_id"] for r in
                                     read_records(folder / "records.jsonl").records})
            for set_name, scorer, folder in runs}
    setup = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
             "settings": STEP_SETTINGS, "n": args.n, "scorers": args.scorers,
             "headroom": args.headroom,
             "runs": [str(folder) for _, _, folder in runs],
             # runs still short of their problems (the study resumes them), and runs not begun
             "in_progress": {f"{s} / {c}": f"{n} of {planned[s]} problems"
                             for (s, c), n in done.items() if n < planned[s]},
             "skipped": skipped,
             "not_begun": [f"{s} / {c}" for s in planned for c in ["none", *args.scorers]
                           if (s, c) not in done and f"{s} / {c}" not in skipped]}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "methods.json").write_text(json.dumps(
        {"setup": setup, "rows": rows, "adaptive": ratios, "compute_optimal": best},
        indent=2) + "\n")
    curves = draw_curves([run for run in runs if done[run[:2]]],  # a run just begun: none
                         args.results / "methods-curves")
    (args.results / "methods.md").write_text(markdown(rows, ratios, best, setup, curves))
    print(f"wrote {args.results / 'methods.md'}")


def draw_curves(runs, folder: Path) -> dict[str, list[Path]]:
    """Per problem set, ``ttscale report``'s accuracy curves (against N and against FLOPs)
    of all its runs (each with records), as PNG files under ``folder``: {problem set:
    [files]}."""
    by_set: dict[str, list[Path]] = defaultdict(list)
    for set_name, _, run_dir in runs:
        by_set[set_name].append(run_dir)
    drawn = {}
    for set_name, run_dirs in by_set.items():
        with tempfile.TemporaryDirectory() as scratch:
            report = Path(scratch) / "report.html"
            ttscale("report", *map(str, run_dirs), "-o", str(report), "--format", "png",
                    "--title", f"The method study: {set_name}")
            folder.mkdir(parents=True, exist_ok=True)
            drawn[set_name] = []
            for image in sorted((Path(scratch) / "report-files").glob("*.png")):
                target = folder / f"{set_name.replace(' ', '-')}-{image.name}"
                shutil.copyfile(image, target)
                drawn[set_name].append(target)
    return drawn


if __name__ == "__main__":
    main()
