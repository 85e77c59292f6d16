"""Accuracy against budget and FLOPs, per run, method, aggregation and difficulty bin, with
percentile-bootstrap intervals over problems. Every value is computed from the records."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ttscale.errors import ConfigError
from ttscale.planner.difficulty import (
    absolute_binning,
    parse_binning,
    quantile_binning,
)
from ttscale.report.runs import RunData
from ttscale.report.summary import method_rank
from ttscale.search import METHODS
from ttscale.stats import Estimate, bootstrap_mean

logger = logging.getLogger(__name__)

ALL = "all"
PASS = "pass@N"
MAJORITY = "majority@N"
# independent samples, answered from one pool: the basis of pass@1 and pass@N (not a method
# that stops early: when it stopped depends on what it drew)
POOLED_METHODS = tuple(name for name, spec in METHODS.items()
                       if spec.pooled and not spec.stops_early)


@dataclass(frozen=True)
class Point:
    n: int
    problems: int
    accuracy: Estimate
    flops: float | None  # mean per problem, policy + scorer; None when a record lacks it


@dataclass(frozen=True)
class Series:
    run_id: str
    method: str  # a search method, or PASS / MAJORITY for the reference lines
    aggregation: str  # "step/answer" as in the records' by_aggregation
    default: bool  # the aggregation the run chose (the others are for comparison)
    bin: str
    points: tuple[Point, ...]

    @property
    def reference(self) -> bool:
        return self.method in (PASS, MAJORITY)

    def name(self, with_run: bool) -> str:
        label = self.method if self.reference or self.method == "greedy" else (
            f"{self.method} ({self.aggregation})")
        return f"{self.run_id} · {label}" if with_run else label


@dataclass(frozen=True)
class Bins:
    kind: str  # "absolute", "quantile", "level" or "none"
    names: tuple[str, ...]  # easiest first
    of_problem: dict[str, str]
    source: str  # where the pass rates came from, in words

    def facets(self) -> tuple[str, ...]:
        return (ALL,) + tuple(name for name in self.names
                              if name in set(self.of_problem.values()))


def sampled_pass_rates(records: Iterable[dict]) -> dict[str, float]:
    """pass@1 per problem from the largest pool of independent samples (BoN or majority)."""
    best: dict[str, dict] = {}
    for record in records:
        if record["method"] not in POOLED_METHODS or not record["candidates"]:
            continue
        current = best.get(record["problem_id"])
        if current is None or len(record["candidates"]) > len(current["candidates"]):
            best[record["problem_id"]] = record
    return {pid: sum(bool(c["correct"]) for c in r["candidates"]) / len(r["candidates"])
            for pid, r in best.items()}


def difficulty_bins(spec: str, runs: Sequence[RunData], source: RunData | None = None
                    ) -> Bins:
    """Bins by the policy's pass@1 (``absolute`` as in the paper, ``quantile:K``), by the
    dataset's own ``level`` (MATH), or ``none``. Pass rates come from ``source`` when given
    (an independent sample set), else from the first run that sampled independently."""
    if spec == "none":
        return Bins("none", (), {}, "no bins")
    if spec == "level":
        levels = {r["problem_id"]: r.get("level") for run in runs for r in run.records}
        known = {pid: f"level {level}" for pid, level in levels.items() if level is not None}
        if not known:
            raise ConfigError("--bins level needs problems with a level (MATH-500 and the ladder "
                              "have them); "
                              "use --bins absolute or --bins none for this dataset")
        names = tuple(sorted(set(known.values()), key=lambda name: int(name.split()[1])))
        return Bins("level", names, known, "the dataset's levels")
    kind, count = parse_binning(spec)
    candidates = [source] if source is not None else list(runs)
    for run in candidates:
        rates = sampled_pass_rates(run.records)
        if rates:
            break
    else:
        where = "the difficulty run" if source is not None else "these runs"
        logger.warning("%s hold no Best-of-N or majority samples to estimate pass@1 from: "
                       "the report has no difficulty bins (run bon or majority, or give "
                       "--difficulty-run)", where)
        return Bins("none", (), {}, "no sampled solutions to bin by")
    if kind == "absolute":
        binning = absolute_binning()
    elif len(rates) < count:
        logger.warning("%d problems cannot fill %d quantile bins: no bins", len(rates), count)
        return Bins("none", (), {}, "too few problems for quantile bins")
    else:
        binning = quantile_binning(list(rates.values()), count)
    described = ", ".join(f"{name}: {text}" for name, text in binning.describe().items())
    return Bins(kind, binning.names, {pid: binning.assign(rate) for pid, rate in rates.items()},
                f"pass@1 from the samples of run {run.run_id} ({described})")


def _point(n: int, outcomes: list[tuple[bool, float | None]]) -> Point:
    accuracy = bootstrap_mean([float(ok) for ok, _ in outcomes])
    flops = [f for _, f in outcomes]
    mean_flops = None if any(f is None for f in flops) else sum(flops) / len(flops)
    return Point(n, len(outcomes), accuracy, mean_flops)


def _default_aggregation(record: dict) -> str:
    aggregation = record.get("aggregation") or {}
    step, answer = aggregation.get("step"), aggregation.get("answer") or "majority"
    return f"{step or '-'}/{answer}"


def run_series(run: RunData, bins: Bins) -> list[Series]:
    """Every line of one run: each method under each aggregation, then pass@N and majority@N."""
    # (method, aggregation) -> n -> problem -> (correct, flops)
    outcomes: dict[tuple[str, str], dict[int, dict[str, tuple[bool, float | None]]]] = (
        defaultdict(lambda: defaultdict(dict)))
    defaults: dict[str, str] = {}
    for record in run.records:
        method, n, pid = record["method"], record["n"], record["problem_id"]
        flops = record["ledger"].get("total_flops")
        if method == "majority":
            outcomes[(MAJORITY, "-/majority")][n][pid] = (bool(record["correct"]), flops)
            outcomes[(PASS, "-")][n].setdefault(pid, (bool(record["pass_at_n"]), flops))
            continue
        default = _default_aggregation(record)
        defaults.setdefault(method, default)
        outcomes[(method, default)][n][pid] = (bool(record["correct"]), flops)
        for key, choice in (record.get("by_aggregation") or {}).items():
            if key == "-/majority":
                if method == "bon":  # majority@N from the BoN pool when no majority run exists
                    outcomes[(MAJORITY, key)][n].setdefault(
                        pid, (bool(choice["correct"]), record["ledger"].get("policy_flops")))
                continue
            if key != default and method != "greedy":
                outcomes[(method, key)][n][pid] = (bool(choice["correct"]), flops)
        if method == "bon":  # pass@N costs only the samples, not their scoring
            outcomes[(PASS, "-")][n].setdefault(
                pid, (bool(record["pass_at_n"]), record["ledger"].get("policy_flops")))
    series = []
    def shown_first(key: tuple[str, str]) -> tuple:
        reference = key[0] in (PASS, MAJORITY)
        hidden = not reference and key[1] != defaults.get(key[0])
        return (hidden, reference, method_rank(key[0]), key[1])

    order = sorted(outcomes, key=shown_first)
    for facet in bins.facets():
        for method, aggregation in order:
            points = []
            for n in sorted(outcomes[(method, aggregation)]):
                by_problem = outcomes[(method, aggregation)][n]
                chosen = [value for pid, value in by_problem.items()
                          if facet == ALL or bins.of_problem.get(pid) == facet]
                if chosen:
                    points.append(_point(n, chosen))
            if points:
                is_default = method in (PASS, MAJORITY) or aggregation == defaults.get(method)
                series.append(Series(run.run_id, method, aggregation, is_default, facet,
                                     tuple(points)))
    return series


def all_series(runs: Sequence[RunData], bins: Bins) -> list[Series]:
    return [line for run in runs for line in run_series(run, bins)]


def fmt_estimate(estimate: Estimate) -> str:
    if math.isnan(estimate.value):
        return "n/a"
    return f"{estimate.value:.1%} [{estimate.low:.1%}, {estimate.high:.1%}]"
