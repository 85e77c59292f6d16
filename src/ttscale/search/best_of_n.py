"""Best-of-N and its relatives: N whole solutions sampled independently, then (optionally)
scored step by step. Majority vote is the same samples with no scorer; greedy is one sample
at temperature 0."""

from __future__ import annotations

from dataclasses import replace

from ttscale.compute import TokenCount
from ttscale.errors import ConfigError
from ttscale.prompts import NEEDS_A_THOUGHT
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.steps_from_text import split_continuation
from ttscale.search.thinking_budget import sample_with_thinking_budget
from ttscale.steps import Step


async def sample_solutions(
    ctx: SearchContext, n: int, temperature: float | None = None, first_sample: int = 0
) -> list[Candidate]:
    """N whole solutions from the root, each stored in the tree as a chain of step nodes.

    They are samples ``first_sample`` to ``first_sample + n - 1`` of the root, so a caller
    holding the first ``k`` solutions draws the next ones with ``first_sample=k``."""
    settings = ctx.settings
    if settings.thinks_in_chunks:
        if ctx.thinking is None:  # a context built by hand, past PromptFormat.apply
            raise ConfigError(NEEDS_A_THOUGHT)
        samples = await sample_with_thinking_budget(ctx, ctx.thinking, n, temperature,
                                                    first_sample)
        drawn = [(s.continuation, s.tokens, s.thinking) for s in samples]
    else:
        [continuations] = await ctx.extend(
            [ctx.prompt], n, settings.end_stops, settings.max_solution_tokens, temperature,
            first_sample=first_sample,
        )
        drawn = [(c, TokenCount(c.prompt_tokens, c.cached_prompt_tokens, c.generated_tokens),
                  None) for c in continuations]
    tree = ctx.tree
    leaves = []
    for continuation, tokens, thinking in drawn:
        node = tree.root
        steps = split_continuation(continuation, settings.delimiter, ctx.thinking)
        for step in steps:
            node = tree.add_child(node, step)
            node.status = "kept"
        if node is tree.root:  # an empty solution still counts as one generated path
            node = tree.add_child(node, Step("", continuation.generated_tokens, None))
        node.status = "finished"
        node.finish_reason = continuation.finish_reason
        node.thinking = thinking
        leaves.append((node, tokens))
    return [candidate_from_leaf(tree, leaf, policy_tokens=tokens) for leaf, tokens in leaves]


async def score_candidates(ctx: SearchContext, candidates: list[Candidate]) -> list[Candidate]:
    """Score every step of every candidate in one scorer call, and note the scores in the tree."""
    if not candidates:
        return candidates
    all_scores = await ctx.score([list(c.steps) for c in candidates])
    scored = []
    for candidate, scores in zip(candidates, all_scores, strict=True):
        for node, score in zip(ctx.tree.path(ctx.tree.nodes[candidate.node_id]), scores,
                               strict=False):
            node.score = score
        scored.append(replace(candidate, step_scores=tuple(scores)))
    return scored


async def reuse_or_sample(ctx: SearchContext, n: int) -> list[Candidate]:
    """N whole solutions: the context's reusable ones first (``ctx.reuse``: a shared pool, or
    the planner's probe), then fresh samples that continue the root's streams after them."""
    pool = list(ctx.reuse[:n])
    if n > len(pool):
        pool += await sample_solutions(ctx, n - len(pool), first_sample=len(pool))
    return pool


async def best_of_n(ctx: SearchContext, n: int) -> SearchResult:
    candidates = await reuse_or_sample(ctx, n)
    if ctx.scorer is not None and ctx.scorer.pointwise:
        # reused solutions keep their scores: score the new ones only
        fresh = [c for c in candidates if c.step_scores is None]
        scored = iter(await score_candidates(ctx, fresh))
        candidates = [c if c.step_scores is not None else next(scored) for c in candidates]
    elif ctx.scorer is not None:  # scores depend on the whole batch: score these together
        candidates = await score_candidates(
            ctx, [replace(c, step_scores=None) for c in candidates])
    return SearchResult("bon", n, None, tuple(candidates), ctx.tree, ctx.ledger)


async def majority_vote(ctx: SearchContext, n: int) -> SearchResult:
    candidates = [replace(c, step_scores=None) for c in await reuse_or_sample(ctx, n)]
    return SearchResult("majority", n, None, tuple(candidates), ctx.tree, ctx.ledger)


async def greedy(ctx: SearchContext, n: int = 1) -> SearchResult:
    candidates = await sample_solutions(ctx, 1, temperature=0.0)
    return SearchResult("greedy", 1, None, tuple(candidates), ctx.tree, ctx.ledger)
