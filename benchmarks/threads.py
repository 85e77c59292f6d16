"""llama.cpp's CPU threads on a shared machine: decode rate by thread count and OpenMP wait
policy, on an idle machine and with other CPU-bound processes running.

Each cell runs ``benchmarks/engine_throughput.py`` in a fresh process (libgomp reads
``OMP_WAIT_POLICY`` once, when it loads) while ``--load`` busy processes spin, all in one run,
so the ratios compare like with like. Writes ``benchmarks/results/threads.{json,md}``.

Usage: python benchmarks/threads.py [--loads 0,1,2] [--threads 1,2] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# libgomp's default when OMP_WAIT_POLICY is unset: spin 300,000 rounds, then sleep (given as
# GOMP_SPINCOUNT, which ttscale's engines leave alone, as they do OMP_WAIT_POLICY)
POLICIES = {"default": {"GOMP_SPINCOUNT": "300000"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "active": {"OMP_WAIT_POLICY": "ACTIVE"}}


def _spin() -> None:
    while True:
        pass


def measure(threads: int, policy: dict[str, str], max_tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(policy)
    done = subprocess.run([sys.executable, str(HERE / "engine_throughput.py"), "--threads",
                           str(threads), "--max-tokens", str(max_tokens), "--repeats", "2"],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", default="0,1,2", help="busy processes running beside")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--policies", default="default,passive")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "threads")
    args = parser.parse_args()
    rows = []
    for load in (int(x) for x in args.loads.split(",")):
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(load)]
        for spinner in spinners:
            spinner.start()
        try:
            for threads in (int(x) for x in args.threads.split(",")):
                for policy in args.policies.split(","):
                    result = measure(threads, POLICIES[policy], args.max_tokens)
                    row = {"busy_processes": load, "threads": threads, "wait_policy": policy,
                           **result}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        finally:
            for spinner in spinners:
                spinner.terminate()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"cpus": len(os.sched_getaffinity(0)), "max_tokens": args.max_tokens, "rows": rows},
        indent=2) + "\n")
    lines = [f"# llama.cpp threads on a shared machine ({len(os.sched_getaffinity(0))} CPUs)",
             "",
             "Generated tokens/s of the embedded model, one sequence and 2 prefixes × 16 "
             "samples, best of 2; `busy` other CPU-bound processes ran beside. "
             "`default` is libgomp's own wait policy (spin, then sleep); `passive` is what "
             "ttscale's engines set unless `OMP_WAIT_POLICY` is exported.",
             "",
             "| busy | threads | wait policy | 1 sequence tok/s | 32 samples tok/s |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['busy_processes']} | {row['threads']} | {row['wait_policy']} | "
                     f"{row['single_tok_per_s']} | {row['batch32_tok_per_s']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
