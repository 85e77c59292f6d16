"""The Python API for one problem: ``ttscale.solve("problem text")``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ttscale.compute import Ledger
from ttscale.datasets import Problem
from ttscale.engines import EngineSpec, load_policy
from ttscale.engines.base import Policy
from ttscale.evaluation import choose
from ttscale.prompts import PromptFormat
from ttscale.rewards import load_scorer
from ttscale.rewards.base import Scorer
from ttscale.search import get_method
from ttscale.search.context import SearchContext, SearchSettings


@dataclass(frozen=True)
class SolveResult:
    answer: str | None
    steps: tuple[str, ...]
    score: float | None
    method: str
    n: int
    candidates: int
    ledger: dict


async def solve_async(
    problem: str,
    *,
    policy: Policy,
    method: str = "beam",
    n: int = 8,
    scorer: Scorer | str | None = "confidence",
    settings: SearchSettings | None = None,
    prompt: PromptFormat | None = None,
) -> SolveResult:
    spec = get_method(method)
    scorer_obj = load_scorer(scorer, policy=policy) if isinstance(scorer, str) else scorer
    prompt = prompt or PromptFormat()
    settings = prompt.apply(settings or SearchSettings())
    ctx = SearchContext(
        problem=problem, prompt=prompt.render(problem), policy=policy,
        scorer=scorer_obj if spec.uses_scorer else None, settings=settings,
        ledger=Ledger(policy.info.parameters, getattr(scorer_obj, "parameters", None)))
    result = await spec.run(ctx, n)
    selection, scores = choose(result.candidates, settings.step_aggregation,
                               settings.answer_aggregation)
    if selection.index is None:
        return SolveResult(None, (), None, method, n, 0, ctx.ledger.to_dict())
    chosen = result.candidates[selection.index]
    return SolveResult(
        answer=selection.answer,
        steps=tuple(s.text for s in chosen.steps),
        score=scores[selection.index] if chosen.step_scores is not None else None,
        method=method, n=n, candidates=len(result.candidates), ledger=ctx.ledger.to_dict())


def solve(
    problem: str,
    *,
    method: str = "beam",
    n: int = 8,
    scorer: Scorer | str | None = "confidence",
    engine: EngineSpec | Policy | None = None,
    settings: SearchSettings | None = None,
    prompt: PromptFormat | None = None,
) -> SolveResult:
    """Solve one problem with test-time scaling and return the best answer and its steps.

    ``engine`` is a loaded policy or an ``EngineSpec`` (default: the embedded SmolLM2-135M on
    llama.cpp)."""
    if not problem or not problem.strip():
        raise ValueError("the problem text is empty")
    policy = engine if isinstance(engine, Policy) else load_policy(engine or EngineSpec())
    return asyncio.run(solve_async(problem, policy=policy, method=method, n=n, scorer=scorer,
                                   settings=settings, prompt=prompt))


__all__ = ["Problem", "SolveResult", "solve", "solve_async"]
