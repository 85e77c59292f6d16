"""``--method auto``'s chooser: probe the problem, predict its difficulty bin, and pick what
the plan chooses for that bin and budget; the chosen method (run by ``search``'s ``auto``)
reuses the probe's samples.

The probe's ``p`` samples are the first ``p`` of the problem's sample streams and count toward
the budget: Best-of-N and majority vote at ``n >= p`` draw only samples ``p..n-1`` and answer
from all ``n``; at ``n < p`` they answer from the probe's first ``n``; beam search and DVTS
take the probe's first steps as ``p`` of their first round's ``n`` samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from ttscale.planner.plan import Decision, Plan, prior_plan
from ttscale.planner.probe import ProbeFeatures, probe_features
from ttscale.search import Choice, SearchContext, SearchResult, solve
from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.best_of_n import sample_solutions, score_candidates
from ttscale.search.result import Candidate
from ttscale.settings import SearchSettings

AUTO = "auto"


@dataclass(frozen=True)
class AutoDecision:
    """What the planner chose for one problem and why, as the run record stores it."""

    record_key: ClassVar[str] = "plan"

    plan_source: str
    plan_identity: dict
    predicted_bin: str
    predictor: str
    probe: ProbeFeatures
    probe_nodes: tuple[int, ...]
    decision: Decision

    def to_dict(self) -> dict:
        return {"plan": self.plan_source, "plan_identity": self.plan_identity,
                "predicted_bin": self.predicted_bin, "predictor": self.predictor,
                "probe": {**self.probe.to_dict(), "nodes": list(self.probe_nodes)},
                **self.decision.to_dict()}


@dataclass(frozen=True)
class PlanChooser:
    """Chooses by ``plan``; ``scorer_spec`` names the scorer in use as plans do
    (``confidence``, ``qwen-prm:PATH``); a calibrated plan for another policy or scorer gives
    way to the prior rules."""

    plan: Plan
    scorer_spec: str | None
    dataset: str | None = None

    async def choose(self, ctx: SearchContext, budget: int) -> Choice:
        info = ctx.policy.info
        plan = self.plan
        notes = plan_warnings(plan, info.name, info.parameters, self.scorer_spec)
        if notes and plan.source == "calibrated":
            plan = prior_plan(info.parameters, info.name, plan.scorer, plan.width,
                              plan.probe_size, self.dataset)
        probe = await sample_solutions(ctx, min(plan.probe_size, budget))
        if ctx.scorer is not None:
            probe = await score_candidates(ctx, probe)
        features = _features(ctx, probe)
        difficulty = plan.predictor.predict(features)
        decision = plan.decide(difficulty, budget, parameters=info.parameters,
                               model_name=info.name, dataset=self.dataset, notes=notes,
                               thinks=ctx.thinking is not None)
        explanation = AutoDecision(self.plan.source, self.plan.identity, difficulty,
                                   plan.predictor.source, features,
                                   tuple(c.node_id for c in probe), decision)
        return Choice(decision.method, decision.n, decision.width, tuple(probe), explanation,
                      decision.thinking_budget)


async def auto_search(ctx: SearchContext, budget: int, plan: Plan, *,
                      scorer_spec: str | None, dataset: str | None = None
                      ) -> tuple[SearchResult, dict]:
    """``auto`` under ``plan``: the chosen method's result (named ``auto``) and what was
    chosen and why."""
    chooser = PlanChooser(plan, scorer_spec, dataset)
    result = await solve(replace(ctx, chooser=chooser), AUTO, budget)
    return result, result.details.to_dict()


def plan_warnings(plan: Plan, model_name: str, parameters: int | None,
                  scorer_spec: str | None) -> list[str]:
    """Why a calibrated plan does not apply to this policy and scorer (empty when it does)."""
    if plan.source != "calibrated":
        return []
    problems = []
    planned = plan.policy
    if planned.get("name") != model_name or planned.get("parameters") != parameters:
        problems.append(f"the plan was calibrated for policy {planned.get('name')} "
                        f"({planned.get('parameters')} parameters), not {model_name} "
                        f"({parameters}); the prior rules decide")
    if (plan.scorer or "none") != (scorer_spec or "none"):
        problems.append(f"the plan was calibrated with scorer {plan.scorer or 'none'}, not "
                        f"{scorer_spec or 'none'}; the prior rules decide")
    return problems


SETTINGS_THAT_MATTER = ("temperature", "top_p", "max_step_tokens", "max_depth",
                        "max_solution_tokens", "step_aggregation", "answer_aggregation")


def plan_notices(plan: Plan, budgets: Sequence[int], model_name: str,
                 parameters: int | None, scorer_spec: str | None,
                 settings: SearchSettings | None = None) -> list[str]:
    """Everything about a plan a user should hear once before a run, rather than read in each
    record: a plan for another policy or scorer, search settings other than those it was
    calibrated under, budgets it did not calibrate, and bins where the prior rules decide."""
    notices = plan_warnings(plan, model_name, parameters, scorer_spec)
    if plan.source != "calibrated" or notices:
        return notices
    calibrated = plan.info.get("study", {}).get("settings", {})
    differing = [f"{key} {getattr(settings, key)!r} (calibrated: {calibrated[key]!r})"
                 for key in SETTINGS_THAT_MATTER
                 if settings is not None and key in calibrated
                 and getattr(settings, key) != calibrated[key]]
    if differing:
        notices.append("this run's search settings differ from the plan's, so its measured "
                       "choices may not carry over: " + ", ".join(differing))
    low, high = min(plan.budgets), max(plan.budgets)
    outside = [b for b in budgets if not low <= b <= high]
    if outside:
        notices.append(f"budgets {outside} are outside the plan's calibrated budgets "
                       f"{list(plan.budgets)}; the prior rules decide there")
    between = [b for b in budgets if low <= b <= high and b not in plan.budgets]
    if between:
        notices.append(f"budgets {between} were not calibrated; the plan for the largest "
                       "calibrated budget within each is used")
    for name, why in plan.fallbacks.items():
        notices.append(f"bin {name}: {why}; the prior rules decide there")
    return notices


def _features(ctx: SearchContext, probe: list[Candidate]) -> ProbeFeatures:
    scored = probe and all(c.step_scores is not None for c in probe)
    scores = [aggregate_step_scores(c.step_scores or (), ctx.settings.step_aggregation)
              for c in probe] if scored else None
    return probe_features([c.answer for c in probe], scores)
