"""Adaptive sampling: draw whole solutions a few at a time and stop once they agree; the budget
N is the most samples a problem may take. Sample j is the root's stream j, as in majority vote
and Best-of-N, so the first k samples of an adaptive run are exactly majority vote's first k.
Answers vote together when the grader finds them equivalent (``group_answers``); a sample
without a final answer does not vote. The candidates are exactly the samples drawn (solutions
already in ``ctx.reuse`` are taken first) and ``details`` (record key ``adaptive``) tells how
many were drawn, in which windows, and why sampling stopped.

- ``esc``: Early-Stopping Self-Consistency (Li et al., "Escape Sky-high Cost: Early-stopping
  Self-Consistency for Multi-step Reasoning", ICLR 2024). Windows of ``ESC_WINDOW`` = 5
  samples (the paper's and the reference code's default, Yiwei98/ESC); stop after the first
  window whose answers are all the same (zero entropy); the answer is the majority over every
  sample drawn. Deviations: the reference draws whole windows only (N // w of them), here a
  last, shorter window spends the rest of N (it cannot stop sampling: N does); a window
  holding a sample without an answer does not agree (the reference counts an empty
  extraction as an answer); the reference answers with the unanimous window's answer, here
  aggregation reads all samples, which differs only when earlier windows outvote it.
- ``adaptive_sc``: Adaptive-Consistency (Aggarwal et al., "Let's Sample Step by Step:
  Adaptive-Consistency for Efficient Reasoning and Coding with LLMs", EMNLP 2023; reference
  pranjal2041/AdaptiveConsistency). After each sample, a stopping criterion on the answer
  counts; stop once it reaches ``ADAPTIVE_SC_THRESHOLD`` = 0.95. The default is the Beta
  criterion, the reference's default (``AC(stop_criteria=BetaStoppingCriteria)``) and the one
  the paper recommends for its cost: P(x > 1/2) for x ~ Beta(a + 1, b + 1), a and b the two
  largest counts. The reference integrates it numerically; here it is the exact binomial sum.
  The Dirichlet criterion (``ADAPTIVE_SC_CRITERION = "dirichlet"``, or the
  ``adaptive_consistency_dirichlet`` coroutine) applies from three distinct answers, as the
  reference's, over the ``DIRICHLET_TOP_K`` = 5 most frequent: the probability that the
  leader's share is the largest under Dirichlet(counts + 1). The reference estimates it by an
  unseeded Monte Carlo over approximate integration limits; here it is exact (a sum over the
  Erlang form of the Dirichlet), so a run is reproducible. Both are exact rationals.
- ``adaptive_bon``: adaptive Best-of-N. Samples are scored as they come; stop once the
  PRM-weighted vote's leader (``prm_vote`` over the configured step aggregation, scores in
  [0, 1]) could not be overtaken, not even tied, if every sample left in the budget went to the
  runner-up with weight 1. The guarantee holds for pointwise scorers; a scorer whose scores
  depend on the batch re-scores every sample drawn at each window.

Both stopping rules are checked after every sample, yet samples are drawn in windows: each
window is the fewest samples after which the rule could hold (all of them going to the
leader, with weight 1), so no sample inside a window could have stopped the run, and each
run stops at the very sample its rule names, with fewer engine calls."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import combinations
from typing import ClassVar

from ttscale.grading import group_answers
from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.best_of_n import sample_solutions, score_candidates
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult
from ttscale.settings import StepAggregation

ESC_WINDOW = 5  # samples per ESC window (Li et al. 2024)
ADAPTIVE_SC_THRESHOLD = 0.95  # the reference's conf_thresh
ADAPTIVE_SC_CRITERION = "beta"  # "beta" or "dirichlet"
DIRICHLET_TOP_K = 5  # answers the Dirichlet criterion looks at (the reference's top_k_elements)
CRITERIA = ("beta", "dirichlet")


@dataclass(frozen=True)
class AdaptiveDetails:
    """How an adaptive run spent its budget, as the run record stores it."""

    record_key: ClassVar[str] = "adaptive"

    method: str
    budget: int
    drawn: int  # samples in the result, reused ones included
    reused: int  # of which taken from ctx.reuse
    windows: tuple[int, ...]  # samples per draw, in order
    stopped_by: str  # "agreement", "criterion", "leader_safe" or "budget"
    evidence: dict = field(default_factory=dict)  # the rule's figures at the last check

    def to_dict(self) -> dict:
        return {"method": self.method, "budget": self.budget, "drawn": self.drawn,
                "reused": self.reused, "windows": list(self.windows),
                "stopped_by": self.stopped_by, **self.evidence}


# --------------------------------------------------------------------------------------------
# Stopping criteria
# --------------------------------------------------------------------------------------------


def answer_counts(candidates: Sequence[Candidate]) -> list[int]:
    """Votes per group of equivalent answers, largest first."""
    return sorted((len(g) for g in group_answers([c.answer for c in candidates])), reverse=True)


def beta_probability(a: int, b: int) -> Fraction:
    """P(x > 1/2) for x ~ Beta(a + 1, b + 1): the reference's integral of x^a (1 - x)^b over
    [1/2, 1] divided by that over [0, 1], which for whole counts is P(Binomial(a + b + 1,
    1/2) <= a)."""
    trials = a + b + 1
    return Fraction(sum(math.comb(trials, i) for i in range(a + 1)), 2 ** trials)


def dirichlet_probability(counts: Sequence[int]) -> Fraction:
    """P(p_0 > p_j for every j > 0) for p ~ Dirichlet(counts + 1), ``counts[0]`` the leader's.

    With p_i = G_i / sum(G), G_i ~ Gamma(c_i + 1) independent, this is the integral of the
    leader's density times prod_j P(G_j < x), P(G_j < x) = 1 - e^-x sum_{m<=c_j} x^m / m!;
    expanding the product over subsets S of the others leaves integrals of x^k e^-(1+|S|)x,
    whole numbers over powers of 1 + |S|. Polynomials are kept in the basis x^k / k!, where
    they have whole coefficients."""
    leader, others = counts[0], counts[1:]
    total = Fraction(0)
    for size in range(len(others) + 1):
        for subset in combinations(others, size):
            poly = [1]
            for c in subset:
                poly = _multiply_exponential(poly, [1] * (c + 1))
            rate = 1 + size
            term = sum(Fraction(coef * math.comb(leader + k, k), rate ** (leader + k + 1))
                       for k, coef in enumerate(poly))
            total += -term if size % 2 else term
    return total


def _multiply_exponential(a: list[int], b: list[int]) -> list[int]:
    """The product of two polynomials written in the basis x^k / k!."""
    product = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            product[i + j] += x * y * math.comb(i + j, i)
    return product


def criterion_probability(counts: Sequence[int], criterion: str) -> Fraction:
    """The chosen criterion's confidence that the leading answer is the majority answer."""
    _check_criterion(criterion)
    if criterion == "dirichlet" and len(counts) >= 3:
        return dirichlet_probability(counts[:DIRICHLET_TOP_K])
    a, b = [*counts, 0, 0][:2]
    return beta_probability(a, b)


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown stopping criterion {criterion!r}; expected one of {CRITERIA}")


def samples_until_criterion(counts: Sequence[int], threshold: float) -> int:
    """The fewest further samples after which the criterion could reach ``threshold``: all of
    them going to the leader. Either criterion is at most the Beta one of the two largest
    counts, which more samples can raise only by adding to the largest."""
    a, b = [*counts, 0, 0][:2]
    more = 1
    while beta_probability(a + more, b) < Fraction(threshold):
        more += 1
    return more


def vote_weights(candidates: Sequence[Candidate], step_mode: StepAggregation
                 ) -> list[Fraction]:
    """PRM-vote weight per answer group (the sum of its solutions' scores), largest first;
    exact, so that a margin equal to the samples left reads as a possible tie."""
    scores = [Fraction(aggregate_step_scores(c.step_scores or (), step_mode))
              for c in candidates]
    groups = group_answers([c.answer for c in candidates])
    return sorted((sum((scores[i] for i in g), Fraction(0)) for g in groups), reverse=True)


def leader_margin(weights: Sequence[Fraction]) -> Fraction:
    """How far the leading answer's weight is ahead of the runner-up's (0 without answers)."""
    top = [*weights, Fraction(0), Fraction(0)]
    return top[0] - top[1]


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


async def draw(ctx: SearchContext, start: int, count: int) -> list[Candidate]:
    """The root's samples ``start`` to ``start + count - 1``: from ``ctx.reuse`` where it holds
    them, the rest sampled (streams fixed by the seed and the index, as majority vote's)."""
    taken = list(ctx.reuse[start:start + count])
    if count > len(taken):
        taken += await sample_solutions(ctx, count - len(taken), first_sample=start + len(taken))
    return taken


def _check_budget(n: int) -> None:
    if n < 1:
        raise ValueError(f"the budget must be at least 1, got {n}")


def _unanimous(window: Sequence[Candidate]) -> bool:
    answers = [c.answer for c in window]
    return None not in answers and len(group_answers(answers)) == 1


def _unscored(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    return tuple(replace(c, step_scores=None) for c in candidates)


def _details(ctx: SearchContext, method: str, n: int, candidates: Sequence[Candidate],
             windows: list[int], stopped_by: str, evidence: dict) -> AdaptiveDetails:
    reused = min(len(ctx.reuse), len(candidates))
    return AdaptiveDetails(method, n, len(candidates), reused, tuple(windows), stopped_by,
                           evidence)


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


async def early_stopping_sc(ctx: SearchContext, n: int) -> SearchResult:
    """ESC: windows of ``ESC_WINDOW`` samples until one window's answers all agree."""
    _check_budget(n)
    candidates: list[Candidate] = []
    windows: list[int] = []
    stopped_by = "budget"
    while len(candidates) < n:
        size = min(ESC_WINDOW, n - len(candidates))
        window = await draw(ctx, len(candidates), size)
        candidates += window
        windows.append(size)
        if size == ESC_WINDOW and _unanimous(window):
            stopped_by = "agreement"
            break
    details = _details(ctx, "esc", n, candidates, windows, stopped_by, {"window": ESC_WINDOW})
    return SearchResult("esc", n, None, _unscored(candidates), ctx.tree, ctx.ledger,
                        details=details)


async def adaptive_consistency(ctx: SearchContext, n: int,
                               criterion: str = ADAPTIVE_SC_CRITERION,
                               name: str = "adaptive_sc") -> SearchResult:
    """Adaptive-Consistency: sample until the stopping criterion reaches its threshold."""
    _check_budget(n)
    _check_criterion(criterion)  # before any sampling
    candidates: list[Candidate] = []
    windows: list[int] = []
    counts: list[int] = []
    probability = Fraction(0)
    while len(candidates) < n:
        size = min(samples_until_criterion(counts, ADAPTIVE_SC_THRESHOLD), n - len(candidates))
        candidates += await draw(ctx, len(candidates), size)
        windows.append(size)
        counts = answer_counts(candidates)
        probability = criterion_probability(counts, criterion)
        if probability >= Fraction(ADAPTIVE_SC_THRESHOLD):
            break
    stopped_by = "criterion" if probability >= Fraction(ADAPTIVE_SC_THRESHOLD) else "budget"
    evidence = {"criterion": criterion, "probability": float(probability),
                "threshold": ADAPTIVE_SC_THRESHOLD, "counts": counts}
    details = _details(ctx, name, n, candidates, windows, stopped_by, evidence)
    return SearchResult(name, n, None, _unscored(candidates), ctx.tree, ctx.ledger,
                        details=details)


async def adaptive_consistency_dirichlet(ctx: SearchContext, n: int) -> SearchResult:
    """Adaptive-Consistency with the Dirichlet criterion."""
    return await adaptive_consistency(ctx, n, "dirichlet", "adaptive_sc_dirichlet")


async def adaptive_best_of_n(ctx: SearchContext, n: int) -> SearchResult:
    """Best-of-N that stops once the PRM-weighted vote's leader cannot be overtaken."""
    _check_budget(n)
    step_mode = ctx.settings.step_aggregation
    candidates: list[Candidate] = []
    windows: list[int] = []
    margin = Fraction(0)
    while len(candidates) < n:
        remaining = n - len(candidates)
        # safe needs margin + m > remaining - m after m more samples of weight at most 1
        size = min(max(1, math.floor((remaining - margin) / 2) + 1), remaining)
        candidates = await _scored(ctx, candidates, await draw(ctx, len(candidates), size))
        windows.append(size)
        margin = leader_margin(vote_weights(candidates, step_mode))
        if margin > n - len(candidates):
            break
    remaining = n - len(candidates)
    evidence = {"leader_margin": float(margin), "remaining": remaining,
                "step_aggregation": step_mode}
    stopped_by = "leader_safe" if margin > remaining else "budget"
    details = _details(ctx, "adaptive_bon", n, candidates, windows, stopped_by, evidence)
    return SearchResult("adaptive_bon", n, None, tuple(candidates), ctx.tree, ctx.ledger,
                        details=details)


async def _scored(ctx: SearchContext, scored: list[Candidate], window: list[Candidate]
                  ) -> list[Candidate]:
    """The samples so far with the window's added, every one scored: a pointwise scorer scores
    only the new ones (reused ones keep their scores), any other scorer all of them together."""
    if ctx.scorer is not None and not ctx.scorer.pointwise:
        return await score_candidates(ctx, [replace(c, step_scores=None)
                                            for c in [*scored, *window]])
    fresh = iter(await score_candidates(ctx, [c for c in window if c.step_scores is None]))
    return scored + [c if c.step_scores is not None else next(fresh) for c in window]
