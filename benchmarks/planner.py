"""The planner study on the embedded model: GSM8K test split into calibration and evaluation
halves, every method × budget on both, a plan calibrated on one half and evaluated on the
other against every fixed method.

Runs ``ttscale plan calibrate`` then ``ttscale plan evaluate`` (both resumable: rerun this to
finish an interrupted study) and copies the evaluation, the plan and the settings to
``benchmarks/results/planner.json`` and ``planner.md``. Every figure comes from the run records
under ``--out``.

``--methods`` widens the menu the plan chooses from (e.g. with the registry's newer methods,
``ttscale methods``) and ``--name`` writes the results under another name, so a study with the
wider menu stands beside the first.

Usage: python benchmarks/planner.py [--limit 24] [--out runs/plan-bench] [--threads 2]
       [--methods majority,bon,beam,dvts] [--name planner]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def ttscale(*args: str) -> None:
    command = [sys.executable, "-m", "ttscale.cli.main", *args]
    print("$ ttscale " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/plan-bench"))
    parser.add_argument("--limit", type=int, default=24, help="GSM8K test problems (both halves)")
    parser.add_argument("--n", default="4,16,32", help="budgets")
    parser.add_argument("--tree-n", default="4,16", help="budgets of beam search and DVTS")
    parser.add_argument("--probe", type=int, default=4)
    parser.add_argument("--difficulty-samples", type=int, default=8)
    parser.add_argument("--min-problems", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--methods", default="majority,bon,beam,dvts",
                        help="the fixed methods the plan chooses among")
    parser.add_argument("--name", default="planner", help="results file name")
    args = parser.parse_args()
    tree_methods = [m for m in args.methods.split(",") if m in ("beam", "dvts")]
    settings = ["--max-step-tokens", "48", "--max-depth", "8", "--max-solution-tokens", "192",
                "--width", "4", "--prm", "self"]
    threads = ["--threads", str(args.threads)] if args.threads else []
    started = time.perf_counter()
    ttscale("plan", "calibrate", "--out", str(args.out), "--dataset", "gsm8k", "--limit",
            str(args.limit), "--methods", args.methods, "--n", args.n,
            *(f for m in tree_methods for f in ("--method-n", f"{m}={args.tree_n}")),
            "--probe", str(args.probe), "--difficulty-samples", str(args.difficulty_samples),
            "--min-problems", str(args.min_problems), *settings, *threads)
    ttscale("plan", "evaluate", "--plan", str(args.out / "plan.json"), *threads)
    seconds = time.perf_counter() - started
    plan = json.loads((args.out / "plan.json").read_text())
    evaluation = json.loads((args.out / "evaluation.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "settings": {"dataset": "gsm8k", "limit": args.limit, "methods": args.methods,
                     "budgets": args.n,
                     "tree_budgets": args.tree_n, "probe": args.probe,
                     "difficulty_samples": args.difficulty_samples,
                     "min_problems": args.min_problems, "search": settings},
        "seconds_this_invocation": round(seconds, 1),
        "plan": {k: plan[k] for k in ("policy", "scorer", "budgets", "bins", "bin_ranges",
                                      "probe", "choices", "fallbacks")},
        "plan_info": {k: plan["info"][k] for k in ("bin_counts",
                                                   "predictor_accuracy_on_calibration")},
        "evaluation": evaluation,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copyfile(args.out / "evaluation.md", RESULTS / f"{args.name}.md")
    print(f"written: {RESULTS / f'{args.name}.json'}, {RESULTS / f'{args.name}.md'}")


if __name__ == "__main__":
    main()
