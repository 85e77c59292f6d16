"""Particle filtering's weight temperature with a coarse scorer, on the embedded policy.

The method study found particle filtering with the ``arith`` scorer below greedy decoding on
ladder level 1: ``arith`` scores a step 0, 0.5 or 1, its odds weights at the paper's
temperature 1 differ by about 10⁷, and resampling copies one particle into every slot. This
study reruns the particle methods on the same problems with the same seeds and settings at
higher temperatures (``--particle-temperature``), and sets each against the study's run at
temperature 1, paired over the problems both answered.

1. Runs (``ttscale run``, resumable): ``--methods`` (``pf``) at every budget of ``--n``, with
   ``arith`` and the method study's step settings, one run per temperature of
   ``--temperatures``, ``--workers`` runs at once.
2. Per method, N and temperature (the study's run as temperature 1): accuracy with a 95 %
   bootstrap interval; the paired difference to temperature 1; pass@N of the final particles
   (a right answer among them); the effective sample size of the weights (1 / Σw², as a
   share of the particles weighed), averaged over every resampling round; the share of
   rounds in which every particle drawn has one ancestor; the lineages left (the first steps
   the final particles descend from); and FLOPs.

Writes ``benchmarks/results/particle-temperature.json`` and ``.md``; every figure comes from
the records. The runs are kept gzipped under ``--archive``; the baseline is read from the
method study's run folder, unpacked from its archive when missing.

Usage: python benchmarks/particle_temperature.py [--temperatures 4,16,64] [--methods pf]
       [--n 4,16] [--per-level 100] [--workers 2] [--parallel 4] [--tables-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ttscale.compute import format_flops
from ttscale.records import read_records
from ttscale.stats import bootstrap_mean, paired_difference

sys.path.insert(0, str(Path(__file__).parent))
from methods import ARCHIVE as STUDY_ARCHIVE  # noqa: E402 - beside this file
from methods import STEP_AGGREGATION, STEP_SETTINGS, _pct, _signed, ttscale  # noqa: E402
from run_archive import archive_run, restore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ARCHIVE = RESULTS / "particle-temperature-runs"
SCORER = "arith"
LEVEL = 1
BASELINE_TEMPERATURE = 1.0  # the study's run: the paper's default


def run_folder(run_dir: Path, temperature: float) -> Path:
    return run_dir / f"ladder-level-{LEVEL}-{SCORER}-pt{temperature:g}"


def make_run(args, temperature: float, threads: int) -> Path:
    out = run_folder(args.run_dir, temperature)
    restore(out, args.archive)
    if not args.tables_only:
        ttscale("run", "--dataset", "ladder", "--levels", str(LEVEL),
                "--limit", str(args.per_level), "--method", ",".join(args.methods),
                "--n", ",".join(map(str, args.n)), "--prm", SCORER,
                "--step-agg", STEP_AGGREGATION[SCORER], *STEP_SETTINGS,
                "--particle-temperature", f"{temperature:g}",
                "--parallel", str(args.parallel), "--out", str(out),
                "--threads", str(threads))
    if (out / "records.jsonl").exists():  # with --tables-only too: what is done is kept
        archive_run(out, args.archive)
    return out


def _records(folder: Path, methods, budgets) -> dict[tuple[str, int], dict[str, dict]]:
    """{(method, N): {problem id: record}} of the run's particle records."""
    table: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    if not (folder / "records.jsonl").exists():
        return table
    for record in read_records(folder / "records.jsonl").records:
        if record["method"] in methods and record["n"] in budgets:
            table[record["method"], record["n"]][record["problem_id"]] = record
    return table


def lineages(record: dict) -> int:
    """The first steps the final particles descend from: 1 when resampling left a single
    lineage, up to N when every particle kept its own."""
    parent = {node["id"]: node["parent"] for node in record["tree"]}
    depth = {node["id"]: node["depth"] for node in record["tree"]}
    firsts = set()
    for sweep in record["particles"]["sweeps"]:
        for leaf in sweep["final"]:
            while depth[leaf] > 1:
                leaf = parent[leaf]
            firsts.add(leaf)
    return len(firsts)


def resampling_health(records) -> dict:
    """Over every resampling round of the records: the mean effective sample size of the
    weights as a share of the particles weighed, and the share of rounds whose draws all
    fell on one ancestor; per problem, the mean lineages of the final particles."""
    shares, collapsed, rounds, kept = [], 0, 0, []
    for record in records:
        sweeps = record["particles"]["sweeps"]
        kept.append(lineages(record))
        for sweep in sweeps:
            for r in sweep["rounds"]:
                shares.append(1 / sum(w * w for w in r["weights"]) / len(r["weights"]))
                if r["ancestors"] is not None:
                    rounds += 1
                    collapsed += len(set(r["ancestors"])) == 1
    return {"effective_share": sum(shares) / len(shares) if shares else None,
            "rounds": rounds, "one_ancestor": collapsed / rounds if rounds else None,
            "lineages": sum(kept) / len(kept) if kept else None}


def read_runs(runs: dict[float, Path], methods, budgets
              ) -> dict[float, dict[tuple[str, int], dict[str, dict]]]:
    """{temperature: {(method, N): {problem id: record}}}, each run read once."""
    return {t: _records(folder, methods, budgets) for t, folder in runs.items()}


def compare(tables: dict[float, dict[tuple[str, int], dict[str, dict]]], methods,
            budgets) -> list[dict]:
    """A row per method, N and temperature, paired with temperature 1 over the problems
    every temperature answered."""
    rows = []
    for method in methods:
        for n in budgets:
            by_temperature = {t: table.get((method, n), {}) for t, table in tables.items()}
            if not all(by_temperature.values()):
                continue
            common = sorted(set.intersection(*(set(r) for r in by_temperature.values())))
            baseline = [float(by_temperature[BASELINE_TEMPERATURE][p]["correct"])
                        for p in common]
            for temperature, records in sorted(by_temperature.items()):
                chosen = [records[p] for p in common]
                correct = [float(r["correct"]) for r in chosen]
                flops = [r["ledger"]["total_flops"] or 0.0 for r in chosen]
                rows.append({
                    "method": method, "n": n, "temperature": temperature,
                    "count": len(common),
                    "accuracy": bootstrap_mean(correct).to_dict(),
                    "versus_temperature_1": (
                        None if temperature == BASELINE_TEMPERATURE
                        else paired_difference(correct, baseline).to_dict()),
                    "pass_at_n": sum(bool(r["pass_at_n"]) for r in chosen) / len(chosen),
                    "flops": sum(flops) / len(flops),
                    **resampling_health(chosen),
                })
    return rows


def markdown(rows: list[dict], setup: dict) -> str:
    lines = ["# Particle filtering's weight temperature with a coarse scorer", "",
             f"Machine: {setup['machine']}. Ladder level {LEVEL}, scorer `{SCORER}` (a step "
             "scores 0, 0.5 or 1), the method study's settings "
             f"`{' '.join(setup['settings'])}`; temperature 1 is the method study's run "
             f"(`{setup['baseline']}`), the others `--particle-temperature T`, same seeds. "
             "Accuracy in %, 95 % bootstrap interval over problems; versus temperature 1: "
             "the paired difference in points. pass@N: a right answer among the final "
             "particles. Effective share: the weights' effective sample size (1 / Σw²) as a "
             "share of the particles, averaged over rounds; one ancestor: the rounds whose "
             "draws all fell on one particle. Lineages: the first steps the final particles "
             "descend from, per problem (1: resampling left one lineage; N: none was "
             "lost).", ""]
    if setup.get("short"):
        lines += [f"**Not finished**: {setup['short']}.", ""]
    lines += ["| method | N | temperature | problems | accuracy | versus temperature 1 "
              "| pass@N | effective share | one ancestor | lineages | FLOPs |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n']} | {r['temperature']:g} | {r['count']} "
            f"| {_pct(r['accuracy'])} "
            f"| {_signed(r['versus_temperature_1']) if r['versus_temperature_1'] else ''} "
            f"| {r['pass_at_n']:.0%} | {_share(r['effective_share'])} "
            f"| {_share(r['one_ancestor'])} of {r['rounds']} "
            f"| {r['lineages']:.1f} | {format_flops(r['flops'])} |")
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-pf-temperature"))
    parser.add_argument("--baseline", type=Path,
                        default=Path("runs/bench-methods") / f"ladder-level-{LEVEL}-{SCORER}",
                        help="the method study's run of the same problems at temperature 1")
    parser.add_argument("--temperatures", type=lambda s: [float(v) for v in s.split(",")],
                        default=[4.0, 16.0, 64.0])
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["pf"])
    parser.add_argument("--n", type=lambda s: [int(v) for v in s.split(",")], default=[4, 16])
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1,
                        help="runs made at once (each its own process)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads of each run (default: the CPUs ÷ --workers)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: tables from the run folders as far as they got")
    args = parser.parse_args()
    if BASELINE_TEMPERATURE in args.temperatures:
        parser.error("temperature 1 is the method study's run (--baseline); leave it out")
    restore(args.baseline, STUDY_ARCHIVE)
    if not (args.baseline / "records.jsonl").exists():
        parser.error(f"no records in {args.baseline}: run benchmarks/methods.py first")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    with ThreadPoolExecutor(args.workers) as pool:
        made = list(pool.map(lambda t: make_run(args, t, threads), args.temperatures))
    runs = {BASELINE_TEMPERATURE: args.baseline, **dict(zip(args.temperatures, made,
                                                            strict=True))}
    tables = read_runs(runs, args.methods, args.n)
    rows = compare(tables, args.methods, args.n)
    answered = {t: len({p for records in table.values() for p in records})
                for t, table in tables.items()}
    setup = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
             "settings": STEP_SETTINGS, "n": args.n, "methods": args.methods,
             "baseline": str(args.baseline),
             "runs": {f"{t:g}": str(folder) for t, folder in runs.items()},
             "short": "; ".join(f"temperature {t:g}: {count} of {args.per_level} problems"
                                for t, count in answered.items() if count < args.per_level)}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "particle-temperature.json").write_text(
        json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    (args.results / "particle-temperature.md").write_text(markdown(rows, setup))
    print(f"wrote {args.results / 'particle-temperature.md'}")


if __name__ == "__main__":
    main()
