"""``ttscale prm eval``: how good a value head is.

* Step level: AUROC of its scores against held-out Monte-Carlo labels (problems the head was
  trained on are left out, whatever labels folder is given).
* Search level: Best-of-N and beam-search accuracy on GSM8K test problems with the head as the
  scorer, beside the same searches with the policy's confidence and beside majority vote, with
  bootstrap intervals over problems and paired differences against majority vote, and each
  search's pass@N (a candidate was right: what a perfect verifier would have reached).

The searches are ordinary resumable runs (one folder per scorer under ``out_dir``); every
figure is computed from their records."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.prm_training.labels import read_labels
from ttscale.prm_training.train import metrics, step_table
from ttscale.records import write_json_atomic
from ttscale.settings import SearchSettings
from ttscale.stats import bootstrap_mean, paired_difference

logger = logging.getLogger(__name__)

BASELINE = "majority"


def held_out_step_metrics(scorer, labels: Path) -> dict:
    """The head's step metrics on ``labels``, without the problems it was trained on."""
    trained = set(scorer.manifest.get("data", {}).get("training_problems", []))
    every = read_labels(labels)
    records = [r for r in every if str(r.get("key")) not in trained]
    if not records:
        raise ConfigError(f"every labelled problem in {labels} was used to train this head; "
                          "label other problems (e.g. --offset past them) to evaluate it")
    table = step_table(records, scorer.reader)
    return {"excluded_training_problems": len(every) - len(records),
            **metrics(scorer.head, table)}


@dataclass(frozen=True)
class SearchArm:
    scorer: str  # a --prm spec
    methods: tuple[str, ...]


def search_accuracy(policy, prompt, head_spec: str, out_dir: Path, *, limit: int,
                    methods: tuple[str, ...] = ("bon", "beam"), offset: int = 0,
                    budget: int = 16, width: int = SearchSettings.width, parallel: int = 4,
                    seed: int = SearchSettings.seed, max_step_tokens: int = 64, max_depth: int = 10,
                    max_solution_tokens: int = 256) -> dict:
    """Runs ``methods`` (Best-of-N, beam search, DVTS) with the head and with the policy's
    confidence, and majority vote, on GSM8K test; returns the accuracy table with
    intervals."""
    from ttscale.rewards import load_scorer
    from ttscale.run.runner import DatasetSelection, RunConfig, run

    settings = SearchSettings(max_step_tokens=max_step_tokens, max_depth=max_depth,
                              max_solution_tokens=max_solution_tokens, width=width, seed=seed)
    unknown = set(methods) - {"bon", "beam", "dvts"}
    if unknown or not methods:
        raise ConfigError(f"the searches compared are bon, beam and dvts; got "
                          f"{', '.join(methods) or 'none'}")
    arms = (SearchArm(head_spec, (*methods, BASELINE)), SearchArm("confidence", methods))
    correct: dict[tuple[str, str], dict[str, float]] = {}
    reachable: dict[tuple[str, str], dict[str, float]] = {}
    runs = {}
    for arm in arms:
        scorer = load_scorer(arm.scorer, policy=policy)
        config = RunConfig(dataset=DatasetSelection("gsm8k", limit=limit, offset=offset),
                           methods=arm.methods, budgets=(budget,), scorer=arm.scorer,
                           settings=settings)
        folder = out_dir / _folder_name(arm.scorer)
        try:
            outcome = asyncio.run(run(config, policy, scorer, folder, prompt,
                                      parallel=parallel))
        finally:
            close = getattr(scorer, "close", None)
            if close is not None:
                asyncio.run(close())
        if outcome.failures:
            raise ConfigError(f"{len(outcome.failures)} problems failed in {folder}; rerun "
                              "to retry them")
        runs[arm.scorer] = str(folder)
        for record in outcome.records:
            if record["n"] != budget:
                continue
            name = record["method"] if record["method"] == BASELINE else \
                f"{record['method']} + {arm.scorer}"
            correct.setdefault((name, arm.scorer), {})[record["problem_id"]] = \
                float(bool(record["correct"]))
            # the ceiling of selection: any of the search's candidates was right
            reachable.setdefault((name, arm.scorer), {})[record["problem_id"]] = \
                float(bool(record["pass_at_n"]))
    baseline = next(v for (name, _), v in correct.items() if name == BASELINE)
    rows = []
    for (name, scorer_spec), by_problem in sorted(correct.items()):
        problems = sorted(by_problem)
        values = [by_problem[p] for p in problems]
        row = {"search": name, "scorer": scorer_spec if name != BASELINE else "none",
               "problems": len(values), "accuracy": bootstrap_mean(values).to_dict(),
               "pass_at_n": bootstrap_mean([reachable[(name, scorer_spec)][p]
                                            for p in problems]).to_dict()}
        if name != BASELINE:
            shared = [p for p in problems if p in baseline]
            row["minus_majority"] = paired_difference(
                [by_problem[p] for p in shared], [baseline[p] for p in shared]).to_dict()
        rows.append(row)
    return {"budget": budget, "width": width, "dataset": "gsm8k", "offset": offset,
            "limit": limit, "runs": runs, "rows": rows}


def _folder_name(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)[:80]


def evaluate(head_spec: str, out_dir: Path, *, labels: Path | None, policy=None, prompt=None,
             search: bool = True, **search_options) -> dict:
    """Both evaluations, written to ``out_dir/eval.json``."""
    from ttscale.rewards import load_scorer

    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"head": head_spec}
    scorer = load_scorer(head_spec)
    result["manifest"] = {k: scorer.manifest.get(k) for k in ("name", "base_model",
                                                              "label_method", "validation")}
    try:
        if labels is not None:
            result["steps"] = held_out_step_metrics(scorer, labels)
    finally:
        asyncio.run(scorer.close())
    if search:
        if policy is None or prompt is None:
            raise ConfigError("the search evaluation needs the policy and its prompt format")
        result["search"] = search_accuracy(policy, prompt, head_spec, out_dir,
                                           **search_options)
    write_json_atomic(out_dir / "eval.json", result)
    return result
