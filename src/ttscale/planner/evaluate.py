"""How a plan does on problems it was not calibrated on, against every fixed method.

Replayed from the evaluation half's records: each method's records of a problem come from the
same seeded sample streams, so the probe a live ``--method auto`` run draws is the first
samples of the problem's pool, and what the planner would answer is the record of the method
and budget it chooses. Rows per budget: every fixed method at that budget, the planner with
predicted bins (what a user gets), the planner with the true (oracle) bins, and the prior
rules; accuracies with percentile-bootstrap intervals over problems, mean FLOPs per problem
(the probe included), and the paired difference to the best fixed method."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ttscale.compute import format_flops
from ttscale.planner.difficulty import PassRate
from ttscale.planner.outcomes import ProblemOutcomes
from ttscale.planner.plan import Plan, prior_plan
from ttscale.stats import Estimate, bootstrap_mean, paired_difference

PLANNER_ROWS = ("planner", "planner (oracle bins)", "prior rules")


@dataclass
class Row:
    curve: str  # a method ("bon") or a planner row ("planner", "prior rules", ...)
    budget: int
    accuracy: Estimate
    flops: float | None
    problems: int
    missing: int = 0  # problems whose chosen option was never measured: left out
    versus_best: Estimate | None = None
    choices: dict[str, int] = field(default_factory=dict)  # planner rows: method@n -> count
    n: int | None = None  # a fixed method's own budget

    @property
    def name(self) -> str:
        return self.curve if self.n is None else f"{self.curve}@{self.n}"

    def to_dict(self) -> dict:
        return {"name": self.name, "budget": self.budget, "accuracy": self.accuracy.to_dict(),
                "flops": self.flops, "problems": self.problems, "missing": self.missing,
                "versus_best_fixed": None if self.versus_best is None else
                self.versus_best.to_dict(), "choices": self.choices}


@dataclass
class Evaluation:
    rows: list[Row]
    predictor_accuracy: float | None
    confusion: dict[str, dict[str, int]]  # true bin -> predicted bin -> count
    bin_counts: dict[str, int]
    flops_to_target: dict[str, float | None]
    target: dict
    problems: int

    def to_dict(self) -> dict:
        return {"problems": self.problems, "rows": [r.to_dict() for r in self.rows],
                "predictor_accuracy": self.predictor_accuracy, "confusion": self.confusion,
                "bin_counts": self.bin_counts, "target": self.target,
                "flops_to_target": self.flops_to_target}


def _fixed_rows(problems: Sequence[ProblemOutcomes], budget: int, seed: int) -> list[Row]:
    options = set.intersection(*(set(p.outcomes) for p in problems))
    rows = []
    for method, n in sorted(options):
        if n != budget:
            continue
        flops = [p.outcomes[(method, n)].flops for p in problems]
        rows.append(Row(method, budget,
                        bootstrap_mean([float(p.outcomes[(method, n)].correct)
                                        for p in problems], seed=seed),
                        None if any(f is None for f in flops) else
                        sum(flops) / len(flops), len(problems), n=n))  # type: ignore[arg-type]
    return rows


def _planner_row(name: str, plan: Plan, problems: Sequence[ProblemOutcomes],
                 bins: dict[str, str], budget: int, seed: int) -> tuple[Row, list[float | None]]:
    """The planner's row; also its correctness per problem (None where not replayable)."""
    correct: list[float | None] = []
    costs: list[float] = []
    choices: Counter[str] = Counter()
    cost_known = True
    for problem in problems:
        decision = plan.decide(bins[problem.problem_id], budget,
                               parameters=plan.policy.get("parameters"),
                               model_name=plan.policy.get("name") or "")
        key = (decision.option, decision.n)
        choices[f"{decision.option}@{decision.n}"] += 1
        if key not in problem.outcomes:
            correct.append(None)
            continue
        correct.append(float(problem.outcomes[key].correct))
        cost = problem.cost(decision.option, decision.n, plan.probe_size)
        if cost is None:
            cost_known = False
        else:
            costs.append(cost)
    known = [c for c in correct if c is not None]
    row = Row(name, budget, bootstrap_mean(known, seed=seed),
              sum(costs) / len(costs) if cost_known and costs else None, len(known),
              missing=len(correct) - len(known), choices=dict(choices))
    return row, correct


def evaluate_plan(plan: Plan, outcomes: dict[str, ProblemOutcomes],
                  pass_rates: dict[str, PassRate], budgets: Sequence[int] | None = None,
                  seed: int = 0) -> Evaluation:
    """The evaluation table from the evaluation half's outcomes and pass@1 estimates."""
    problems = [outcomes[pid] for pid in sorted(outcomes)
                if outcomes[pid].probe is not None and pid in pass_rates]
    if not problems:
        from ttscale.errors import ConfigError

        raise ConfigError("no evaluation problem has both its runs and its pass@1 samples; "
                          "run `ttscale plan evaluate` to the end")
    true_bins = {p.problem_id: plan.binning.assign(pass_rates[p.problem_id].value)
                 for p in problems}
    predicted = {p.problem_id: plan.predictor.predict(p.probe)  # type: ignore[arg-type]
                 for p in problems}
    prior = prior_plan(plan.policy.get("parameters"), plan.policy.get("name") or "",
                       plan.scorer, plan.width, plan.probe_size, plan.dataset)
    prior_bins = {p.problem_id: prior.predictor.predict(p.probe)  # type: ignore[arg-type]
                  for p in problems}
    rows: list[Row] = []
    for budget in budgets or plan.budgets:
        fixed = _fixed_rows(problems, budget, seed)
        best = min(fixed, key=lambda r: (-r.accuracy.value, r.flops or math.inf), default=None)
        planned = []
        for name, which_plan, bins in (("planner", plan, predicted),
                                       ("planner (oracle bins)", plan, true_bins),
                                       ("prior rules", prior, prior_bins)):
            row, correct = _planner_row(name, which_plan, problems, bins, budget, seed)
            if best is not None and row.missing == 0:
                baseline = [float(p.outcomes[(best.curve, best.n)].correct)  # type: ignore[index]
                            for p in problems]
                row.versus_best = paired_difference(correct, baseline, seed=seed)  # type: ignore[arg-type]
            planned.append(row)
        rows += fixed + planned
    confusion: dict[str, dict[str, int]] = {b: {c: 0 for c in plan.binning.names}
                                            for b in plan.binning.names}
    for pid, true_bin in true_bins.items():
        confusion[true_bin][predicted[pid]] += 1
    hits = sum(predicted[pid] == true_bins[pid] for pid in true_bins)
    target, needed = _flops_to_target(rows)
    return Evaluation(rows, hits / len(true_bins), confusion,
                      dict(Counter(true_bins.values())), needed, target, len(problems))


def _flops_to_target(rows: Sequence[Row]) -> tuple[dict, dict[str, float | None]]:
    """The accuracy of Best-of-N at the largest budget, and the least mean FLOPs with which
    each method (over its budgets) and each planner row reaches it."""
    bon = [r for r in rows if r.curve == "bon"]
    if not bon:
        return {}, {}
    reference = max(bon, key=lambda r: r.budget)
    target = {"name": reference.name, "accuracy": reference.accuracy.value,
              "flops": reference.flops}
    curves: dict[str, list[Row]] = {}
    for row in rows:
        curves.setdefault(row.curve, []).append(row)
    needed = {}
    for name, curve in curves.items():
        reaching = [r.flops for r in curve if r.flops is not None and r.missing == 0
                    and r.accuracy.value >= reference.accuracy.value]
        needed[name] = min(reaching) if reaching else None
    return target, needed


def markdown(evaluation: Evaluation, title: str) -> str:
    lines = [f"## {title}", "",
             f"{evaluation.problems} evaluation problems; accuracy with a 95 % bootstrap "
             "interval; FLOPs are means per problem (policy + scorer, the probe included for "
             "planner rows); Δ is the paired difference to the most accurate fixed method at "
             "that budget.", "",
             "| budget | method | accuracy | 95 % CI | FLOPs | Δ vs best fixed | chosen |",
             "|---|---|---|---|---|---|---|"]
    for row in evaluation.rows:
        delta = "" if row.versus_best is None else (
            f"{row.versus_best.value:+.1%} [{row.versus_best.low:+.1%}, "
            f"{row.versus_best.high:+.1%}]")
        chosen = ", ".join(f"{k} ×{v}" for k, v in sorted(row.choices.items()))
        if row.missing:
            chosen += f" ({row.missing} not replayable)"
        accuracy, interval = (f"{row.accuracy.value:.1%}",
                              f"[{row.accuracy.low:.1%}, {row.accuracy.high:.1%}]"
                              ) if row.problems else ("n/a", "")
        lines.append(f"| {row.budget} | {row.name} | {accuracy} | {interval} | "
                     f"{format_flops(row.flops)} | {delta} | {chosen} |")
    lines += ["", f"Difficulty predictor accuracy against the oracle bins: "
              f"{_percent(evaluation.predictor_accuracy)} "
              f"(true bins: {_counts(evaluation.bin_counts)})", "",
              "| true \\ predicted | " + " | ".join(evaluation.confusion) + " |",
              "|---" * (len(evaluation.confusion) + 1) + "|"]
    for true_bin, row in evaluation.confusion.items():
        lines.append(f"| {true_bin} | " + " | ".join(str(v) for v in row.values()) + " |")
    if evaluation.target:
        target = evaluation.target
        lines += ["", f"FLOPs to reach the accuracy of {target['name']} "
                  f"({target['accuracy']:.1%}, {format_flops(target['flops'])} per problem):",
                  "", "| method | FLOPs | ÷ " + target["name"] + " |", "|---|---|---|"]
        for name, value in evaluation.flops_to_target.items():
            ratio = "" if value is None or not target["flops"] else (
                f"{value / target['flops']:.2f}")
            lines.append(f"| {name} | {format_flops(value) if value is not None else 'not reached'}"
                         f" | {ratio} |")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
