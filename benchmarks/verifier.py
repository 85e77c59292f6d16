"""Which verifier makes test-time scaling pay on the embedded policy: candidate verifiers
judged on the same sampled solutions, one chosen on a slice of the ladder's test split and
measured on another slice that played no part in the choice.

1. Pools (``ttscale run``, resumable): 16 solutions per problem of the ladder's test split,
   levels 1-3, and of GSM8K test's two-step problems (two calculator annotations in the
   reference), with the shipped prompt.
2. Every candidate verifier scores the choice slice's solutions (cached under
   ``--run-dir``/scores, so a rerun only scores what is missing): the exact arithmetic
   checker, the grounded checker, the value heads given with ``--head`` (the shipped
   Monte-Carlo one by default) and each head times the grounded checker. Only the chosen one
   scores the report slice and GSM8K.
3. Each verifier × step aggregation (min, prod, last, mean) × answer aggregation (``prm_max`` =
   Best-of-N, ``prm_vote`` = weighted vote) picks an answer from the first N = 8 and all 16
   solutions. The choice slice (problems 1-33 of each level) chooses the verifier and its
   aggregation by mean accuracy over both budgets, among the model-free verifiers (the
   shipped one must fit the demo's five minutes on two cores; heads are measured beside);
   the report slice (problems 34-100 of each level, 201 problems) measures it against
   majority vote over the same solutions, with the paired difference's 95 % bootstrap
   interval. Raw pass@N sits beside genuine pass@N (a
   solution whose every step is right by the ladder's recorded quantities).
4. With ``--searches beam,dvts`` the chosen verifier also drives beam search and DVTS on the
   report slice (``ttscale run``, resumable).

Writes ``benchmarks/results/verifier.json`` and ``verifier.md``; every figure comes from the
records and score files under ``--run-dir``.

Usage: python benchmarks/verifier.py [--run-dir runs/bench-verifier] [--head SPEC ...]
       [--searches beam,dvts] [--gsm8k-problems 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ttscale.datasets import Problem, load_dataset
from ttscale.prm_training.step_truth import genuine
from ttscale.records import read_records
from ttscale.search.aggregate import aggregate_step_scores, select_answer
from ttscale.stats import bootstrap_mean, paired_difference
from ttscale.steps import Step

RESULTS = Path(__file__).parent / "results"
LEVELS = (1, 2, 3)
BUDGETS = (8, 16)
CHOICE_PER_LEVEL = 33  # problems 1-33 of each level choose; the rest of the level reports
STEP_AGGREGATIONS = ("min", "prod", "last", "mean")
# both are ttscale's bon method; its answer aggregation differs
ANSWER_AGGREGATIONS = {"prm_max": "Best-of-N, highest score", "prm_vote": "Best-of-N, "
                       "weighted vote"}
POOL_SETTINGS = ["--max-step-tokens", "64", "--max-depth", "8", "--max-solution-tokens", "256"]
SHIPPED_HEAD = "ttscale-smollm2"
MODEL_FREE = ("arithmetic", "grounded")


def ttscale(*args: str) -> None:
    print("$ ttscale " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "ttscale.cli.main", *args], check=True)


def pool(run_dir: Path, dataset: str, selection: Sequence[str], threads: list[str]) -> Path:
    """16 solutions per problem (majority vote at 8 and 16 is recorded from the same pool)."""
    ttscale("run", "--dataset", dataset, *selection, "--method", "majority", "--n", "8,16",
            *POOL_SETTINGS, "--prm", "none", "--out", str(run_dir), *threads)
    return run_dir


def two_step_gsm8k(limit: int) -> list[str]:
    """GSM8K test problems whose reference solution makes exactly two calculations."""
    return [p.id for p in load_dataset("gsm8k") if (p.solution or "").count("<<") == 2][:limit]


# --------------------------------------------------------------------------------------------
# Candidates out of pool records
# --------------------------------------------------------------------------------------------

class Candidate:
    __slots__ = ("answer", "correct", "steps")

    def __init__(self, steps: list[str], answer: str | None, correct: bool) -> None:
        self.steps, self.answer, self.correct = steps, answer, correct


def candidates_by_problem(run_dir: Path) -> dict[str, list[Candidate]]:
    """The pool of each problem, in sampling order, from its largest-budget record."""
    pools: dict[str, list[Candidate]] = {}
    records = [r for r in read_records(run_dir / "records.jsonl").records
               if r["method"] == "majority"]
    for record in sorted(records, key=lambda r: r["n"]):
        nodes = {node["id"]: node for node in record["tree"]}
        found = []
        for entry in record["candidates"]:
            path, node = [], nodes[entry["node"]]
            while node["parent"] is not None:
                path.append(node["text"])
                node = nodes[node["parent"]]
            found.append(Candidate(path[::-1], entry["answer"], bool(entry["correct"])))
        pools[record["problem_id"]] = found
    return pools


# --------------------------------------------------------------------------------------------
# Scores, cached per verifier
# --------------------------------------------------------------------------------------------

def cached_scores(path: Path, scorer, problems: dict[str, Problem],
                  pools: dict[str, list[Candidate]]) -> dict[str, list[list[float]]]:
    """{problem id: step scores of each candidate}; problems already in ``path`` are read,
    the rest scored and appended one problem at a time."""
    done: dict[str, list[list[float]]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["id"]] = row["scores"]
    todo = [pid for pid in pools if pid not in done]
    if todo:
        print(f"scoring {len(todo)} problems with {path.stem}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for pid in todo:
                solutions = [[Step(text) for text in c.steps] for c in pools[pid]]
                batch = asyncio.run(scorer.score(problems[pid].problem, solutions))
                done[pid] = batch.scores
                handle.write(json.dumps({"id": pid, "scores": batch.scores}) + "\n")
                handle.flush()
    return done


def product(a: dict[str, list[list[float]]], b: dict[str, list[list[float]]]
            ) -> dict[str, list[list[float]]]:
    return {pid: [[x * y for x, y in zip(sa, sb, strict=True)]
                  for sa, sb in zip(a[pid], b[pid], strict=True)] for pid in a}


# --------------------------------------------------------------------------------------------
# Selection and statistics
# --------------------------------------------------------------------------------------------

Rule = tuple[str, str, str]  # verifier, step aggregation, answer aggregation


def correct_by_rule(pools, scores, rule: Rule, n: int, ids: Sequence[str]) -> list[float]:
    verifier, step_agg, answer_agg = rule
    hits = []
    for pid in ids:
        pool = pools[pid][:n]
        solution_scores = [aggregate_step_scores(s, step_agg) for s in scores[verifier][pid][:n]]
        chosen = select_answer([c.answer for c in pool], solution_scores, answer_agg)
        hits.append(float(chosen.index is not None and pool[chosen.index].correct))
    return hits


def correct_by_majority(pools, n: int, ids: Sequence[str]) -> list[float]:
    hits = []
    for pid in ids:
        pool = pools[pid][:n]
        chosen = select_answer([c.answer for c in pool], [1.0] * len(pool), "majority")
        hits.append(float(chosen.index is not None and pool[chosen.index].correct))
    return hits


def pass_at(pools, n: int, ids: Sequence[str], keep: Callable[[str, Candidate], bool]
            ) -> list[float]:
    return [float(any(keep(pid, c) for c in pools[pid][:n])) for pid in ids]


def estimate(values: Sequence[float]) -> dict:
    e = bootstrap_mean(values)
    return {"mean": e.value, "low": e.low, "high": e.high}


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def interval(e: dict) -> str:
    return f"{pct(e['mean'])} [{pct(e['low'])}, {pct(e['high'])}]"


def signed(low: float, mean: float, high: float) -> str:
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def rule_name(rule: Rule) -> str:
    verifier, step_agg, answer_agg = rule
    return f"{ANSWER_AGGREGATIONS[answer_agg]}, {verifier} ({step_agg} of steps)"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def ladder_slices(problems: Sequence[Problem]) -> tuple[list[str], list[str]]:
    choice, report = [], []
    for p in problems:
        index = int(re.search(r"(\d+)$", p.id).group(1))
        (choice if index <= CHOICE_PER_LEVEL else report).append(p.id)
    return choice, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-verifier"))
    parser.add_argument("--head", action="append", default=None,
                        help="value-head scorer spec (repeatable); default: the shipped head")
    parser.add_argument("--searches", default="", help="e.g. beam,dvts: online searches with "
                                                        "the chosen verifier on the report slice")
    parser.add_argument("--gsm8k-problems", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    started = time.perf_counter()

    from ttscale.rewards import load_scorer

    ladder = load_dataset("ladder", levels=list(LEVELS))
    gsm_ids = two_step_gsm8k(args.gsm8k_problems)
    gsm8k = load_dataset("gsm8k", ids=gsm_ids)
    pool(args.run_dir / "ladder-pool", "ladder", ["--levels", ",".join(map(str, LEVELS))],
         threads)
    pool(args.run_dir / "gsm8k-pool", "gsm8k", ["--ids", ",".join(gsm_ids)], threads)

    problems = {p.id: p for p in (*ladder, *gsm8k)}
    pools = {**candidates_by_problem(args.run_dir / "ladder-pool"),
             **candidates_by_problem(args.run_dir / "gsm8k-pool")}
    missing = [pid for pid in problems if pid not in pools]
    if missing:
        sys.exit(f"{len(missing)} problems have no pool record (e.g. {missing[0]}): rerun")

    heads = args.head if args.head is not None else [SHIPPED_HEAD]
    specs = {spec if ":" not in spec else Path(spec.split(":", 1)[1]).name: spec
             for spec in ("arithmetic", "grounded", *heads)}
    choice, report = ladder_slices(ladder)
    scorers: dict[str, object] = {}

    def scores_of(names: Sequence[str], ids: Sequence[str]) -> dict[str, dict]:
        """Step scores of each verifier named (a product "A × grounded" from its parts) on
        the problems ``ids``, scored where the cache lacks them."""
        found = {}
        for name in names:
            parts = name.split(" × ")
            for part in parts:
                if part not in scorers:
                    scorers[part] = load_scorer(specs[part])
            per_part = [cached_scores(args.run_dir / "scores" / f"{part}.jsonl",
                                      scorers[part], problems, {pid: pools[pid] for pid in ids})
                        for part in parts]
            combined = per_part[0] if len(parts) == 1 else product(*per_part)
            found[name] = {pid: combined[pid] for pid in ids}
        return found

    names = [*specs, *(f"{head} × grounded" for head in specs
                       if head not in ("arithmetic", "grounded"))]
    scores = scores_of(names, choice)  # every candidate on the choice slice only
    rules = [(v, s, a) for v in names for s in STEP_AGGREGATIONS for a in ANSWER_AGGREGATIONS]
    choice_table = []
    for rule in rules:
        accuracy = {str(n): sum(correct_by_rule(pools, scores, rule, n, choice)) / len(choice)
                    for n in BUDGETS}
        choice_table.append({"rule": rule_name(rule), "verifier": rule[0],
                             "model_free": rule[0] in MODEL_FREE,
                             "step_aggregation": rule[1], "answer_aggregation": rule[2],
                             "accuracy": accuracy})
    majority_choice = {str(n): sum(correct_by_majority(pools, n, choice)) / len(choice)
                       for n in BUDGETS}
    # the shipped verifier runs in the demo's five minutes on two cores: a value head reads
    # every candidate's whole text with the policy model, about doubling the demo's compute,
    # so heads are measured beside the model-free verifiers but only these can be chosen
    best = max((i for i in range(len(rules)) if rules[i][0] in MODEL_FREE), key=lambda i: (
        sum(choice_table[i]["accuracy"].values()), -i))
    chosen = rules[best]
    print(f"chosen on {len(choice)} choice problems: {rule_name(chosen)}", flush=True)
    # only the chosen verifier is scored on the report slice and GSM8K
    scores = scores_of([chosen[0]], [*report, *gsm_ids])
    for scorer in scorers.values():
        close = getattr(scorer, "close", None)
        if close is not None:
            asyncio.run(close())

    online = [m.strip() for m in args.searches.split(",") if m.strip()]
    online_records: dict[tuple[str, int], dict[str, bool]] = {}
    if online:
        spec = chosen[0] if chosen[0] in ("arithmetic", "grounded") else None
        if spec is None:
            print(f"online searches need a scorer spec; {chosen[0]} has none: skipped")
        else:
            folder = args.run_dir / "searches"
            ttscale("run", "--dataset", "ladder", "--ids", ",".join(report), "--method",
                    ",".join(online), "--n", ",".join(map(str, BUDGETS)), "--width", "4",
                    "--prm", spec, "--step-agg", chosen[1], "--answer-agg", chosen[2],
                    *POOL_SETTINGS, "--out", str(folder), *threads)
            for record in read_records(folder / "records.jsonl").records:
                online_records.setdefault((record["method"], record["n"]), {})[
                    record["problem_id"]] = bool(record["correct"])

    def genuine_keep(pid: str, c: Candidate) -> bool:
        return genuine(problems[pid], c.steps, c.correct)

    result = {"policy": "SmolLM2-135M-Instruct (embedded, Q4_1)", "prompt": "shipped few-shot",
              "levels": list(LEVELS), "choice_problems": len(choice),
              "verifier": {"name": chosen[0], "step_aggregation": chosen[1],
                           "answer_aggregation": chosen[2], "rule": rule_name(chosen)},
              "budgets": {}, "by_level": {}, "online": {}, "choice": choice_table,
              "choice_majority": majority_choice}
    for n in BUDGETS:
        mine = correct_by_rule(pools, scores, chosen, n, report)
        majority = correct_by_majority(pools, n, report)
        diff = paired_difference(mine, majority)
        result["budgets"][str(n)] = {
            "method": "bon", "answer_aggregation": chosen[2],
            "step_aggregation": chosen[1], "verifier": chosen[0],
            "accuracy": sum(mine) / len(mine), "accuracy_interval": estimate(mine),
            "majority": sum(majority) / len(majority), "majority_interval": estimate(majority),
            "diff": diff.value, "diff_low": diff.low, "diff_high": diff.high,
            "problems": len(report),
            "pass_at_n": sum(pass_at(pools, n, report, lambda _, c: c.correct)) / len(report),
            "genuine_pass_at_n": sum(pass_at(pools, n, report, genuine_keep)) / len(report),
        }
        for method, budget in online_records:
            if budget != n:
                continue
            hits = [float(online_records[(method, n)].get(pid, False)) for pid in report]
            d = paired_difference(hits, majority)
            result["online"][f"{method}@{n}"] = {
                "accuracy": sum(hits) / len(hits), "diff": d.value, "diff_low": d.low,
                "diff_high": d.high, "problems": len(report)}
        for level in LEVELS:
            ids = [pid for pid in report if problems[pid].level == level]
            entry = result["by_level"].setdefault(str(level), {"problems": len(ids)})
            entry[str(n)] = {
                "verifier": sum(correct_by_rule(pools, scores, chosen, n, ids)) / len(ids),
                "majority": sum(correct_by_majority(pools, n, ids)) / len(ids),
                "greedy_free_pass_at_n": sum(pass_at(pools, n, ids, lambda _, c: c.correct))
                / len(ids),
                "genuine_pass_at_n": sum(pass_at(pools, n, ids, genuine_keep)) / len(ids)}
    gsm = {}
    for n in BUDGETS:
        mine = correct_by_rule(pools, scores, chosen, n, gsm_ids)
        majority = correct_by_majority(pools, n, gsm_ids)
        diff = paired_difference(mine, majority)
        gsm[str(n)] = {"accuracy": sum(mine) / len(mine), "majority": sum(majority) / len(mine),
                       "diff": diff.value, "diff_low": diff.low, "diff_high": diff.high,
                       "pass_at_n": sum(pass_at(pools, n, gsm_ids, lambda _, c: c.correct))
                       / len(gsm_ids), "problems": len(gsm_ids)}
    result["gsm8k_two_step"] = gsm
    result["seconds"] = time.perf_counter() - started
    result["machine"] = {"python": platform.python_version(), "processor": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "verifier.json").write_text(json.dumps(result, indent=2) + "\n",
                                           encoding="utf-8")
    (RESULTS / "verifier.md").write_text(markdown(result), encoding="utf-8")
    print((RESULTS / "verifier.md").read_text(encoding="utf-8"))


def markdown(result: dict) -> str:
    chosen = result["verifier"]
    lines = [
        "# Verifier benchmark: the embedded SmolLM2-135M on the difficulty ladder",
        "",
        f"Written by `python benchmarks/verifier.py`. Policy: {result['policy']}, "
        f"{result['prompt']} prompt, 16 solutions per problem sampled once "
        "(temperature 0.7, steps ≤ 64 tokens); N = 8 uses the first 8.",
        "",
        f"**Chosen verifier**: {chosen['rule']} — chosen among the model-free verifiers on "
        f"{result['choice_problems']} problems (1-33 of each level 1-3 of the ladder's test "
        "split) by mean accuracy over N = 8 and 16; measured below on the other problems of "
        "those levels, which played no part in the choice or in training any head.",
        "",
        "## Held-out ladder problems, levels 1-3",
        "",
        "| N | problems | verifier | majority vote | verifier − majority [95 % CI] | pass@N "
        "| genuine pass@N |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, row in result["budgets"].items():
        lines.append(
            f"| {n} | {row['problems']} | {interval(row['accuracy_interval'])} | "
            f"{interval(row['majority_interval'])} | "
            f"{signed(row['diff_low'], row['diff'], row['diff_high'])} | "
            f"{pct(row['pass_at_n'])} | {pct(row['genuine_pass_at_n'])} |")
    beats = [n for n, row in result["budgets"].items() if row["diff_low"] > 0]
    lines += ["", (f"The verifier beats majority vote at N = {', '.join(beats)}: the paired "
                   "difference's interval lies above zero." if beats else
                   "The verifier does not beat majority vote at any budget: every paired "
                   "interval reaches zero."),
              "", "Genuine pass@N counts a problem when one of its N solutions is right at "
              "every step by the ladder's recorded quantities; raw pass@N also counts lucky "
              "hits reached through a wrong step.", ""]
    if result["online"]:
        lines += ["## Step-wise searches with the chosen verifier (report slice)", "",
                  "| search | accuracy | minus majority vote [95 % CI] |", "|---|---|---|"]
        for key, row in result["online"].items():
            lines.append(f"| {key} | {pct(row['accuracy'])} | "
                         f"{signed(row['diff_low'], row['diff'], row['diff_high'])} |")
        lines.append("")
    lines += ["## By level (report slice)", "",
              "| level | problems | N | verifier | majority | pass@N | genuine pass@N |",
              "|---|---|---|---|---|---|---|"]
    for level, entry in result["by_level"].items():
        for n in result["budgets"]:
            row = entry[n]
            lines.append(f"| {level} | {entry['problems']} | {n} | {pct(row['verifier'])} | "
                         f"{pct(row['majority'])} | {pct(row['greedy_free_pass_at_n'])} | "
                         f"{pct(row['genuine_pass_at_n'])} |")
    lines += ["", "## GSM8K test, two-step problems (as it comes out)", "",
              "| N | problems | verifier | majority | verifier − majority [95 % CI] | pass@N |",
              "|---|---|---|---|---|---|"]
    for n, row in result["gsm8k_two_step"].items():
        lines.append(f"| {n} | {row['problems']} | {pct(row['accuracy'])} | "
                     f"{pct(row['majority'])} | "
                     f"{signed(row['diff_low'], row['diff'], row['diff_high'])} | "
                     f"{pct(row['pass_at_n'])} |")
    lines += ["", "## Every candidate on the choice slice", "",
              f"Majority vote: N = 8 {pct(result['choice_majority']['8'])}, N = 16 "
              f"{pct(result['choice_majority']['16'])}.", "",
              "| rule | N = 8 | N = 16 |", "|---|---|---|"]
    for row in sorted(result["choice"], key=lambda r: -sum(r["accuracy"].values())):
        mark = "" if row["model_free"] else " †"
        lines.append(f"| {row['rule']}{mark} | {pct(row['accuracy']['8'])} | "
                     f"{pct(row['accuracy']['16'])} |")
    lines += ["", "† reads every candidate with the policy model (a value head): measured here, "
                  "not eligible to ship, since the demo's five minutes on two cores leave no "
                  "room for a second pass over every candidate."]
    lines += ["", f"Benchmark time: {result['seconds'] / 60:.1f} min (pools resumed from "
                  "disk are not re-sampled)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
