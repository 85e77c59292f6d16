"""The method registry: every way of answering a problem is one entry here, run through one
entry point, ``solve(ctx, method, n)``. Adding a method is one file and one entry.

``solve_jobs`` answers one problem at several (method, budget) pairs; the methods marked
``pooled`` are answered from one pool of whole solutions, so every smaller budget costs no new
generation (sample ``j`` of a prefix is fixed by the seed, the prefix and ``j``: the first k
of N samples are exactly a run with budget k)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from ttscale.compute import TokenCount
from ttscale.errors import ConfigError
from ttscale.registry import unknown_name_message
from ttscale.search.adaptive import (
    adaptive_best_of_n,
    adaptive_consistency,
    adaptive_consistency_dirichlet,
    early_stopping_sc,
)
from ttscale.search.auto import auto
from ttscale.search.beam_search import beam_search, check_budget
from ttscale.search.best_of_n import (
    best_of_n,
    greedy,
    majority_vote,
    sample_solutions,
    score_candidates,
)
from ttscale.search.context import SearchContext
from ttscale.search.deepconf import deepconf, deepconf_online
from ttscale.search.dvts import dvts
from ttscale.search.lookahead import lookahead_search
from ttscale.search.particle_filtering import particle_filtering, particle_gibbs
from ttscale.search.rebase import rebase
from ttscale.search.result import SearchResult


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Callable[[SearchContext, int], Awaitable[SearchResult]]
    uses_scorer: bool  # the scorer guides or selects
    uses_width: bool  # budget N must be a multiple of the width M
    pooled: bool  # answered from one pool of whole-solution samples shared with other budgets
    summary: str
    fixed_budget: int | None = None  # a method whose budget is always this one (greedy: 1)
    chooses: bool = False  # picks another method per problem (needs ctx.chooser and a scorer)
    stops_early: bool = False  # may stop before spending N (adaptive): N is the most it reads

    def check_budget(self, n: int, width: int) -> None:
        """Refuse a budget this method cannot spend (a tree search's N must be a multiple of
        its width M)."""
        if n < 1:
            raise ConfigError(f"the budget of {self.name} must be at least 1, got {n}")
        if self.uses_width:
            check_budget(n, width)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec for spec in (
        MethodSpec("greedy", greedy, False, False, False,
                   "one solution at temperature 0 (the budget is ignored)", fixed_budget=1),
        MethodSpec("majority", majority_vote, False, False, True,
                   "N sampled solutions, the most frequent answer"),
        MethodSpec("bon", best_of_n, True, False, True,
                   "Best-of-N: N sampled solutions, scored, answer by aggregation"),
        MethodSpec("beam", beam_search, True, True, False,
                   "beam search: keep the N/M best steps, expand each M times"),
        MethodSpec("dvts", dvts, True, True, False,
                   "diverse verifier tree search: N/M independent beam searches of width M"),
        MethodSpec("pf", particle_filtering, True, False, False,
                   "particle filtering: N particles step by step, resampled by their PRM "
                   "weights"),
        MethodSpec("pgibbs", particle_gibbs, True, False, False,
                   "particle Gibbs: N split into particle-filter sweeps, each keeping a "
                   "reference particle from the one before"),
        MethodSpec("rebase", rebase, True, False, False,
                   "REBASE: each frontier node gets children by a softmax of its score "
                   "(T = 0.2), under a budget of N whole solutions"),
        MethodSpec("lookahead", lookahead_search, True, True, False,
                   "lookahead search: beam search ranking each step by its k-step greedy "
                   "rollout's score"),
        MethodSpec("esc", early_stopping_sc, False, False, True,
                   "early-stopping self-consistency: windows of 5 samples until one window "
                   "agrees, then majority vote", stops_early=True),
        MethodSpec("adaptive_sc", adaptive_consistency, False, False, True,
                   "Adaptive-Consistency: sample until the Beta stopping criterion reaches "
                   "0.95, then majority vote", stops_early=True),
        MethodSpec("adaptive_sc_dirichlet", adaptive_consistency_dirichlet, False, False, True,
                   "Adaptive-Consistency with the Dirichlet stopping criterion",
                   stops_early=True),
        MethodSpec("adaptive_bon", adaptive_best_of_n, True, False, True,
                   "adaptive Best-of-N: sample and score until the PRM-weighted vote's leader "
                   "cannot be overtaken", stops_early=True),
        MethodSpec("deepconf", deepconf, False, False, True,
                   "DeepConf offline: N sampled solutions, the top 10 % by the policy's token "
                   "confidence vote, weighted by it (with prm_vote)"),
        MethodSpec("deepconf_online", deepconf_online, False, False, False,
                   "DeepConf online: up to 16 warm-up solutions set a confidence bar; the rest "
                   "grow step by step and stop once their confidence falls below it"),
        MethodSpec("auto", auto, True, False, False,
                   "the planner: probe the problem, predict its difficulty, run the method and "
                   "budget the plan chooses for it", chooses=True),
    )
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(unknown_name_message("method", name, METHODS))
    return METHODS[name]


async def solve(ctx: SearchContext, method: str, n: int) -> SearchResult:
    """Answer ``ctx``'s problem with ``method`` at budget ``n``."""
    return await get_method(method).run(ctx, n)


@dataclass(frozen=True)
class JobResult:
    """One (method, budget) answer of a problem, with the seconds it took (a pooled job's
    share of its pool's) and, for a pooled job, the size of the pool it was answered from."""

    method: str
    n: int
    result: SearchResult
    seconds: float
    pool_size: int | None = None


async def solve_jobs(ctx: SearchContext, jobs: Sequence[tuple[str, int]]) -> list[JobResult]:
    """Every (method, budget) job of ``ctx``'s problem, each in a context of its own (the
    scorer only where the method uses one). Jobs run in a fixed order, so a problem's records
    are the same in every run: choosing methods first, then the pool, then the rest."""
    specs = [(get_method(method), n) for method, n in jobs]
    results: list[JobResult] = []
    for spec, n in [(s, n) for s, n in specs if s.chooses]:
        results.append(await _timed(ctx.fresh(ctx.scorer), spec, n))
    pooled = [(s, n) for s, n in specs if s.pooled and not s.chooses]
    if pooled:
        results += await _answer_from_pool(ctx, pooled)
    for spec, n in [(s, n) for s, n in specs if not s.pooled and not s.chooses]:
        results.append(await _timed(ctx.fresh(ctx.scorer if spec.uses_scorer else None),
                                    spec, n))
    return results


async def _timed(ctx: SearchContext, spec: MethodSpec, n: int) -> JobResult:
    started = time.perf_counter()
    result = await spec.run(ctx, n)
    return JobResult(spec.name, n, result, time.perf_counter() - started)


async def _answer_from_pool(template: SearchContext, jobs: list[tuple[MethodSpec, int]]
                            ) -> list[JobResult]:
    """Pooled methods at every budget from one pool of samples. Each job's ledger charges the
    samples it reads, and, when the scorer scores each solution alone, its share of the
    scoring by steps; a scorer whose scores depend on the batch scores each subset alone."""
    ctx = template.fresh(template.scorer)
    pool_size = max(n for _, n in jobs)
    started = time.perf_counter()
    pool = await sample_solutions(ctx, pool_size)
    sample_seconds = time.perf_counter() - started
    scorer = ctx.scorer
    scored, score_seconds = pool, 0.0
    if scorer is not None and scorer.pointwise and any(s.uses_scorer for s, _ in jobs):
        started = time.perf_counter()
        scored = await score_candidates(ctx, pool)
        score_seconds = time.perf_counter() - started
    total_steps = sum(len(c.steps) for c in pool) or 1
    results = []
    for spec, n in sorted(jobs, key=lambda job: (job[1], job[0].name)):
        scoring = spec.uses_scorer and scorer is not None
        subset = (scored if scoring and scorer.pointwise else pool)[:n]
        ledger = ctx.new_ledger()
        job = await _timed(replace(ctx, ledger=ledger, reuse=tuple(subset)), spec, n)
        # charged for the solutions it read (an adaptive method may stop before n)
        read = job.result.candidates
        ledger.policy = TokenCount.total(c.policy_tokens or TokenCount() for c in read)
        ledger.policy_calls = 1
        seconds = sample_seconds * len(read) / pool_size
        if scoring and scorer.pointwise:
            steps = sum(len(c.steps) for c in read)
            whole = ctx.ledger.scorer
            ledger.scorer = TokenCount(*(round(v * steps / total_steps) for v in (
                whole.prompt, whole.cached_prompt, whole.generated)))
            ledger.scorer_calls = 1
            seconds += score_seconds * steps / total_steps
        results.append(replace(job, seconds=job.seconds + seconds, pool_size=pool_size))
    return results
