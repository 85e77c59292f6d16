"""The few-shot prompt's share of every method's accuracy: greedy decoding and majority vote
with the former two-step-only examples (``benchmarks/prompts/fewshot_two_step.txt``) and with
the shipped examples of one, two and three steps, on the same ladder and GSM8K problems.

Runs ``ttscale run`` (resumable: rerun to finish an interrupted study) per prompt and dataset
and writes ``benchmarks/results/prompt.json`` and ``prompt.md``; every figure comes from the
run records under ``--out``.

Usage: python benchmarks/prompt.py [--out runs/bench-prompt] [--ladder 45] [--gsm8k 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ttscale.datasets import load_dataset
from ttscale.records import read_records
from ttscale.stats import paired_difference

RESULTS = Path(__file__).parent / "results"
PROMPTS = {"two-step": f"fewshot:{Path(__file__).parent / 'prompts' / 'fewshot_two_step.txt'}",
           "shipped": "fewshot"}
SETTINGS = ["--method", "greedy,majority", "--n", "8", "--max-step-tokens", "64",
            "--max-depth", "8", "--max-solution-tokens", "256"]


def ttscale(*args: str) -> None:
    print("$ ttscale " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "ttscale.cli.main", "run", *args], check=True)


def hits(folder: Path, method: str) -> dict[str, float]:
    return {r["problem_id"]: float(bool(r["correct"]))
            for r in read_records(folder / "records.jsonl").records if r["method"] == method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-prompt"))
    parser.add_argument("--ladder", type=int, default=45,
                        help="ladder test problems, levels 1-3, shuffled with seed 1")
    parser.add_argument("--gsm8k", type=int, default=16,
                        help="GSM8K test problems whose reference makes two calculations")
    args = parser.parse_args()
    started = time.perf_counter()
    gsm_ids = [p.id for p in load_dataset("gsm8k")
               if (p.solution or "").count("<<") == 2][:args.gsm8k]
    selections = {
        "ladder": ["--dataset", "ladder", "--levels", "1,2,3", "--limit", str(args.ladder),
                   "--shuffle-seed", "1"],
        "gsm8k-two-step": ["--dataset", "gsm8k", "--ids", ",".join(gsm_ids)],
    }
    result: dict = {"settings": " ".join(SETTINGS), "datasets": {}}
    for dataset, selection in selections.items():
        for prompt, spec in PROMPTS.items():
            ttscale(*selection, *SETTINGS, "--prompt", spec, "--out",
                    str(args.out / f"{dataset}-{prompt}"))
        entry = result["datasets"].setdefault(dataset, {})
        for method in ("greedy", "majority"):
            before = hits(args.out / f"{dataset}-two-step", method)
            after = hits(args.out / f"{dataset}-shipped", method)
            shared = sorted(set(before) & set(after))
            diff = paired_difference([after[p] for p in shared], [before[p] for p in shared])
            entry[method] = {"problems": len(shared),
                             "two_step": sum(before[p] for p in shared) / len(shared),
                             "shipped": sum(after[p] for p in shared) / len(shared),
                             "diff": diff.value, "diff_low": diff.low,
                             "diff_high": diff.high}
    result["seconds"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prompt.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["# The few-shot prompt: two-step examples only vs one, two and three steps", "",
             "Written by `python benchmarks/prompt.py`: the embedded SmolLM2-135M, greedy "
             "decoding and majority vote at N = 8 (temperature 0.7, steps ≤ 64 tokens), the "
             "same problems under both prompts; the difference is paired by problem (95 % "
             "bootstrap interval, points).", "",
             "| problems | method | two-step examples | shipped examples | shipped − two-step |",
             "|---|---|---|---|---|"]
    for dataset, entry in result["datasets"].items():
        for method, row in entry.items():
            lines.append(f"| {dataset} ({row['problems']}) | {method} | "
                         f"{100 * row['two_step']:.1f}% | {100 * row['shipped']:.1f}% | "
                         f"{100 * row['diff']:+.1f} [{100 * row['diff_low']:+.1f}, "
                         f"{100 * row['diff_high']:+.1f}] |")
    (RESULTS / "prompt.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
