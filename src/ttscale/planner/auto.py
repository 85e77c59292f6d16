"""``--method auto``: probe the problem, predict its difficulty bin, and run what the plan
chooses for that bin and budget, reusing the probe's samples.

The probe's ``p`` samples are the first ``p`` of the problem's sample streams and count toward
the budget: Best-of-N and majority vote at ``n >= p`` draw only samples ``p..n-1`` and answer
from all ``n``; at ``n < p`` they answer from the probe's first ``n``; beam search and DVTS
take the probe's first steps as ``p`` of their first round's ``n`` samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ttscale.planner.plan import Decision, Plan, prior_plan
from ttscale.planner.probe import ProbeFeatures, probe_features
from ttscale.search import METHODS
from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.beam_search import grouped_beam_search
from ttscale.search.best_of_n import sample_solutions, score_candidates
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult
from ttscale.settings import SearchSettings

AUTO = "auto"


async def auto_search(ctx: SearchContext, budget: int, plan: Plan, *,
                      scorer_spec: str | None, dataset: str | None = None
                      ) -> tuple[SearchResult, dict]:
    """The chosen method's result (named ``auto``) and what was chosen and why.
    ``scorer_spec`` names the scorer in ``ctx`` as plans do (``confidence``, ``qwen-prm:PATH``)."""
    if budget < 1:
        raise ValueError(f"the budget must be at least 1, got {budget}")
    info = ctx.policy.info
    notes = plan_warnings(plan, info.name, info.parameters, scorer_spec)
    source_plan = plan
    if notes and plan.source == "calibrated":
        plan = prior_plan(info.parameters, info.name, plan.scorer, plan.width, plan.probe_size,
                          dataset)
    probe_size = min(plan.probe_size, budget)
    probe = await sample_solutions(ctx, probe_size)
    if ctx.scorer is not None:
        probe = await score_candidates(ctx, probe)
    features = _features(ctx, probe)
    difficulty = plan.predictor.predict(features)
    decision = plan.decide(difficulty, budget, parameters=info.parameters,
                           model_name=info.name, dataset=dataset, notes=notes)
    candidates = await _run_choice(ctx, decision, probe)
    result = SearchResult(AUTO, budget, decision.width, tuple(candidates), ctx.tree, ctx.ledger)
    return result, {
        "plan": source_plan.source,
        "plan_identity": source_plan.identity,
        "predicted_bin": difficulty,
        "predictor": plan.predictor.source,
        "probe": {**features.to_dict(),
                  "nodes": [c.node_id for c in probe]},
        **decision.to_dict(),
    }


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


async def _run_choice(ctx: SearchContext, decision: Decision, probe: list[Candidate]
                      ) -> list[Candidate]:
    method, n = decision.method, decision.n
    spec = METHODS[method]
    if spec.pooled:
        pool = list(probe[:n])
        if n > len(probe):
            pool += await sample_solutions(ctx, n - len(probe), first_sample=len(probe))
        if method != "bon" or ctx.scorer is None:
            return [replace(c, step_scores=None) for c in pool]
        if ctx.scorer.pointwise:  # the probe's scores stand; score the new samples only
            fresh = [c for c in pool if c.step_scores is None]
            scored = iter(await score_candidates(ctx, fresh))
            return [c if c.step_scores is not None else next(scored) for c in pool]
        return await score_candidates(ctx, [replace(c, step_scores=None) for c in pool])
    width = decision.width or ctx.settings.width
    search_ctx = replace(ctx, settings=replace(ctx.settings, width=width))  # same tree, ledger
    if method == "beam":
        return await grouped_beam_search(search_ctx, 1, n // width, width, reuse=probe)
    if method == "dvts":
        return await grouped_beam_search(search_ctx, n // width, 1, width, reuse=probe)
    result = await spec.run(search_ctx, n)  # a method that cannot reuse the probe
    return list(result.candidates)
