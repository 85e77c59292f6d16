"""The Python API for one problem: ``ttscale.solve("problem text")``."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from ttscale.compute import Ledger
from ttscale.datasets import Problem
from ttscale.engines import EngineSpec, load_policy
from ttscale.engines.base import Policy
from ttscale.planner.auto import AutoDecision, PlanChooser
from ttscale.planner.plan import Plan, load_plan, prior_plan
from ttscale.prompts import PromptFormat
from ttscale.rewards import canonical_spec, load_scorer
from ttscale.rewards.base import Scorer
from ttscale.search import get_method
from ttscale.search import solve as solve_method
from ttscale.search.aggregate import choose
from ttscale.search.context import SearchContext
from ttscale.settings import SearchSettings
from ttscale.thoughts import THINK_TAGS, ThinkingFormat


@dataclass(frozen=True)
class Solution:
    """One whole solution of a search: its steps, answer, score and why it ended."""

    steps: tuple[str, ...]
    answer: str | None
    score: float | None
    finish_reason: str  # stop | eos | length | truncated
    thought_steps: int = 0  # a reasoning policy's thought: the first steps (markers included)

    @property
    def answer_steps(self) -> tuple[str, ...]:
        return self.steps[self.thought_steps:]

    @property
    def ends_in_thought(self) -> bool:
        """It never left its thought: no answer part (cut off, or closed with nothing after)."""
        return bool(self.thought_steps) and not self.answer_steps

    def thought(self, fmt: ThinkingFormat = THINK_TAGS) -> str | None:
        """The thought without its markers, as reasoning parsers return it; None when the
        solution has none."""
        if not self.thought_steps:
            return None
        text = "\n\n".join(self.steps[:self.thought_steps]).strip()
        text = text.removeprefix(fmt.open).removesuffix(fmt.close)
        return text.strip()


@dataclass(frozen=True)
class SolveResult:
    answer: str | None
    steps: tuple[str, ...]
    score: float | None
    method: str
    n: int
    candidates: int
    ledger: Ledger  # every token the search spent, the policy's and the scorer's
    plan: AutoDecision | None = None  # method="auto": what the planner chose and why
    # with keep=k: the k best distinct solutions, the chosen one first
    ranked: tuple[Solution, ...] = ()

    def to_dict(self) -> dict:
        """As JSON: the ledger and the plan as run records write them."""
        return {"answer": self.answer, "steps": list(self.steps), "score": self.score,
                "method": self.method, "n": self.n, "candidates": self.candidates,
                "ledger": self.ledger.to_dict(),
                "plan": self.plan.to_dict() if self.plan is not None else None,
                "ranked": [asdict(s) for s in self.ranked]}


async def solve_async(
    problem: str,
    *,
    policy: Policy,
    method: str = "beam",
    n: int = 8,
    scorer: Scorer | str | None = "confidence",
    settings: SearchSettings | None = None,
    prompt: PromptFormat | None = None,
    plan: Plan | str | Path | None = None,
    keep: int = 0,
) -> SolveResult:
    """``solve`` inside a running event loop, with a loaded policy. ``keep`` asks for the
    ``keep`` best distinct solutions in ``SolveResult.ranked``."""
    spec = get_method(method)
    scorer_spec = canonical_spec(scorer) if isinstance(scorer, str) else getattr(
        scorer, "name", None)
    scorer_obj = load_scorer(scorer, policy=policy) if isinstance(scorer, str) else scorer
    if spec.chooses and scorer_obj is None:
        raise ValueError(f'method="{method}" chooses among scored searches; give a scorer')
    prompt = prompt or PromptFormat()
    settings = prompt.apply(settings or SearchSettings())
    ctx = SearchContext(
        problem=problem, prompt=prompt.render(problem), policy=policy,
        scorer=scorer_obj if spec.uses_scorer else None, settings=settings,
        ledger=Ledger(policy.info.parameters, getattr(scorer_obj, "parameters", None)),
        chooser=_chooser(plan, policy, scorer_spec, settings) if spec.chooses else None,
        thinking=prompt.thinking_format)
    result = await solve_method(ctx, method, n)
    decision = result.details if isinstance(result.details, AutoDecision) else None
    selection, scores = choose(result.candidates, settings.step_aggregation,
                               settings.answer_aggregation)
    if selection.index is None:
        return SolveResult(None, (), None, method, n, 0, ctx.ledger, decision)
    chosen = result.candidates[selection.index]
    return SolveResult(
        answer=selection.answer,
        steps=tuple(s.text for s in chosen.steps),
        score=scores[selection.index] if chosen.step_scores is not None else None,
        method=method, n=n, candidates=len(result.candidates), ledger=ctx.ledger,
        plan=decision, ranked=_ranked(result.candidates, selection.index, scores, keep))


def _chooser(plan: Plan | str | Path | None, policy: Policy, scorer_spec: str | None,
             settings: SearchSettings) -> PlanChooser:
    """The planner that ``auto`` asks: ``plan`` (a Plan or a plan file), else the prior rules
    for the policy's size."""
    if plan is None:
        plan = prior_plan(policy.info.parameters, policy.info.name, scorer_spec, settings.width)
    elif not isinstance(plan, Plan):
        plan = load_plan(Path(plan))
    return PlanChooser(plan, scorer_spec)


def _ranked(candidates, chosen: int, scores: list[float], keep: int) -> tuple[Solution, ...]:
    """The chosen solution, then the others by score (unscored: by how many share their
    answer), each text once."""
    if keep < 1:
        return ()
    scored = candidates[chosen].step_scores is not None
    counts = Counter(c.answer for c in candidates if c.answer is not None)
    order = sorted(range(len(candidates)), key=lambda i: (
        i != chosen, -(scores[i] if scored else counts.get(candidates[i].answer, 0)), i))
    ranked: list[Solution] = []
    seen: set[tuple[str, ...]] = set()
    for i in order:
        steps = tuple(s.text for s in candidates[i].steps)
        if steps in seen:
            continue
        seen.add(steps)
        ranked.append(Solution(steps, candidates[i].answer, scores[i] if scored else None,
                               candidates[i].finish_reason,
                               sum(s.thought for s in candidates[i].steps)))
        if len(ranked) == keep:
            break
    return tuple(ranked)


def solve(
    problem: str,
    *,
    method: str = "beam",
    n: int = 8,
    scorer: Scorer | str | None = "confidence",
    engine: EngineSpec | Policy | None = None,
    settings: SearchSettings | None = None,
    prompt: PromptFormat | None = None,
    plan: Plan | str | Path | None = None,
) -> SolveResult:
    """Solve one problem with test-time scaling and return the best answer and its steps.

    ``engine`` is a loaded policy or an ``EngineSpec`` (default: the embedded SmolLM2-135M on
    llama.cpp). ``method="auto"`` lets the planner choose per problem, within the budget
    ``n``: it follows ``plan`` (a ``Plan`` or a plan file from ``ttscale plan calibrate``) or,
    without one, the paper's prior rules for the policy's size; ``SolveResult.plan`` says
    what it chose and why."""
    if not problem or not problem.strip():
        raise ValueError("the problem text is empty")
    policy = engine if isinstance(engine, Policy) else load_policy(engine or EngineSpec())
    return asyncio.run(solve_async(problem, policy=policy, method=method, n=n, scorer=scorer,
                                   settings=settings, prompt=prompt, plan=plan))


__all__ = ["Problem", "Solution", "SolveResult", "solve", "solve_async"]
