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

``--from-study RUN_DIR`` builds the study on the method study's runs instead
(``benchmarks/methods.py``): the problems of ``--sets`` (its run folders
``RUN_DIR/SET-none`` and ``RUN_DIR/SET-SCORER``), their methods, budgets and search settings
read from those runs' manifests, and their records imported (``--import-runs``), so that only
the pass@1 samples that bin the problems are drawn.

The samples the study draws itself (with ``--from-study``, those pass@1 samples only: the rest
are the method study's archived records) are kept gzipped under
``benchmarks/results/NAME-runs``, and unpacked from there when their run folders are gone, so
the results rebuild elsewhere without drawing them again.

Usage: python benchmarks/planner.py [--limit 24] [--out runs/plan-bench] [--threads 2]
       [--methods majority,bon,beam,dvts] [--name planner]
       python benchmarks/planner.py --from-study runs/bench-methods
       [--sets ladder-level-1,ladder-level-2,ladder-level-3] [--scorer grounded]
       [--out runs/plan-wide] [--name planner-wide]
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

from ttscale.records import read_records
from ttscale.run.calibrate import difficulty_folder, half_folder

sys.path.insert(0, str(Path(__file__).parent))
from run_archive import archive_run, restore  # noqa: E402 - beside this file

RESULTS = Path(__file__).parent / "results"


def ttscale(*args: str) -> None:
    command = [sys.executable, "-m", "ttscale.cli.main", *args]
    print("$ ttscale " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


# search settings a run's manifest keeps, as `ttscale plan calibrate` options
SETTING_OPTIONS = {"temperature": "--temperature", "top_p": "--top-p",
                   "max_step_tokens": "--max-step-tokens", "max_depth": "--max-depth",
                   "max_solution_tokens": "--max-solution-tokens", "width": "--width",
                   "step_aggregation": "--step-agg", "answer_aggregation": "--answer-agg",
                   "seed": "--seed"}


def from_method_study(run_dir: Path, sets: list[str], scorer: str
                      ) -> tuple[list[str], list[str], list[Path]]:
    """(problem selection, study options, runs to import) of a planner study on the method
    study's runs: the problems of each of ``sets`` that both its runs (unscored, ``scorer``)
    finished, and the runs' methods (greedy aside: its one sample is no budget to plan),
    budgets and settings."""
    folders = [run_dir / f"{name}-{kind}" for name in sets for kind in ("none", scorer)]
    missing = [str(f) for f in folders if not (f / "records.jsonl").exists()]
    if missing:
        sys.exit(f"no method study runs at {', '.join(missing)}: run benchmarks/methods.py "
                 "first (or pick --sets it has finished)")
    manifests = [json.loads((f / "manifest.json").read_text()) for f in folders]
    scored = [m for f, m in zip(folders, manifests, strict=True) if f.name.endswith(scorer)]
    settings = scored[0]["identity"]["settings"]
    if any(m["identity"]["settings"] != settings for m in scored):
        sys.exit(f"the {scorer} runs of {', '.join(sets)} differ in their search settings")
    datasets = {m["identity"]["dataset"] for m in manifests}
    if len(datasets) != 1:
        sys.exit(f"the sets come from several datasets ({', '.join(sorted(datasets))}); a plan "
                 "is calibrated on one")
    # a problem's records are written together, so present means done; a set's problems are
    # those both its runs finished, and the sets (each its own problems) are joined
    ids: set[str] = set()
    for unscored, scored_run in zip(folders[::2], folders[1::2], strict=True):
        done = [{r["problem_id"] for r in read_records(folder / "records.jsonl").records}
                for folder in (unscored, scored_run)]
        ids |= done[0] & done[1]
    methods = [m for m in dict.fromkeys(m for manifest in manifests for m in manifest["methods"])
               if m != "greedy"]
    budgets = sorted({n for manifest in manifests for n in manifest["budgets"]})
    options = ["--methods", ",".join(methods), "--n", ",".join(map(str, budgets)),
               "--prm", scorer]
    for key, option in SETTING_OPTIONS.items():
        options += [option, str(settings[key])]
    if not ids:
        sys.exit(f"no problem of {', '.join(sets)} is finished in both its runs yet: resume "
                 "benchmarks/methods.py first")
    return ["--dataset", datasets.pop(), "--ids", ",".join(sorted(ids))], options, folders


def drawn_runs(out: Path, from_study: bool) -> list[Path]:
    """The run folders of the samples a planner study draws itself. With ``--from-study``
    its halves are the method study's records, imported (and archived with that study), so
    only the pass@1 samples that bin the problems."""
    halves = [] if from_study else [half_folder(out, h) for h in ("calibration", "evaluation")]
    return [difficulty_folder(out), *halves]


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
    parser.add_argument("--from-study", type=Path, default=None,
                        help="the method study's run folder (benchmarks/methods.py --run-dir)")
    parser.add_argument("--sets", default="ladder-level-1,ladder-level-2,ladder-level-3",
                        help="with --from-study: its problem sets")
    parser.add_argument("--scorer", default="grounded", help="with --from-study: its scorer")
    args = parser.parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    imports: list[Path] = []
    if args.from_study:
        selection, study, imports = from_method_study(args.from_study, args.sets.split(","),
                                                      args.scorer)
        description = {"from_study": str(args.from_study), "sets": args.sets,
                       "scorer": args.scorer, "problems": len(selection[3].split(",")),
                       "imported": [folder.name for folder in imports]}
    else:
        tree_methods = [m for m in args.methods.split(",") if m in ("beam", "dvts")]
        selection = ["--dataset", "gsm8k", "--limit", str(args.limit)]
        study = ["--methods", args.methods, "--n", args.n,
                 *(f for m in tree_methods for f in ("--method-n", f"{m}={args.tree_n}")),
                 "--max-step-tokens", "48", "--max-depth", "8", "--max-solution-tokens", "192",
                 "--width", "4", "--prm", "self"]
        description = {"dataset": "gsm8k", "limit": args.limit, "methods": args.methods,
                       "budgets": args.n, "tree_budgets": args.tree_n}
    # the drawn samples are kept under results/NAME-runs: unpacked here when their folders
    # are gone, so a rerun elsewhere rebuilds the results without drawing them again
    archive = RESULTS / f"{args.name}-runs"
    drawn = drawn_runs(args.out, bool(args.from_study))
    for folder in drawn:
        restore(folder, archive)
    started = time.perf_counter()
    ttscale("plan", "calibrate", "--out", str(args.out), *selection, *study,
            *(f for folder in imports for f in ("--import-runs", str(folder.resolve()))),
            "--probe", str(args.probe), "--difficulty-samples", str(args.difficulty_samples),
            "--min-problems", str(args.min_problems), *threads)
    ttscale("plan", "evaluate", "--plan", str(args.out / "plan.json"), *threads)
    seconds = time.perf_counter() - started
    for folder in drawn:
        archive_run(folder, archive)
    plan = json.loads((args.out / "plan.json").read_text())
    evaluation = json.loads((args.out / "evaluation.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "settings": {**description, "probe": args.probe,
                     "difficulty_samples": args.difficulty_samples,
                     "min_problems": args.min_problems,
                     "study": study},
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
