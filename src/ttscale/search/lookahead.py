"""Lookahead search: Snell et al., "Scaling LLM Test-Time Compute Optimally can be More
Effective than Scaling Model Parameters" (arXiv 2408.03314, 2024), section 5.

Beam search (N beams of width M: keep the N/M best open paths, expand each M times; see
:mod:`ttscale.search.beam_search`, whose expansion and ending rules are reused here) in which a
candidate step is not judged by its own score: from it, the policy writes k more steps greedily
(temperature 0), and the scorer's scores of the path, rollout included, aggregated by
``settings.step_aggregation`` (``last`` by default: the score where the rollout ends), rank the
candidate. The rollout's steps are not kept as part of the solution, but its tokens are charged
to the ledger like any other generation.

Followed from huggingface/search-and-learn (``sal.utils.generate_k_steps`` and its search
loops, ``Config.lookahead``):

- k = :data:`LOOKAHEAD_STEPS` = 1, search-and-learn's default; the rollout is greedy after the
  sampled step;
- a rollout that ends the solution (end of text, a solution-ending stop, ``\\boxed``) stops
  early and is scored where it ends;
- the last round (at the depth limit, where each path is written to the end of its solution)
  looks no further ahead;
- the ranking aggregates the scores of the path with its rollout, as search-and-learn's DVTS
  scores ``current_text + lookahead_text`` (its beam search computes the rollout but scores
  ``current_text`` alone, which would leave the lookahead unused).

Where this differs: each rollout step is stopped at the step delimiter and kept as a step of
its own (search-and-learn joins the pieces without the delimiter); a rollout also stops at the
depth limit; identical candidates (same prefix) are rolled out once, as greedy rollouts of one
prefix are the same. A candidate's own step score (``node.score``, and the candidate
solution's step scores) is the scorer's score of that step.

The tree holds every rollout step, as a chain under the candidate it continues, with status
``pruned`` and its score; so a kept node's children are its M expansions plus the steps of
its own rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.beam_search import BeamGroup, add_step_node, check_budget, expand_round
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.tree import Node

LOOKAHEAD_STEPS = 1  # search-and-learn's ``Config.lookahead``


@dataclass
class _Rollout:
    """The greedy steps written after one candidate step (shared by identical candidates)."""

    start: Node
    steps: list[Node] = field(default_factory=list)
    running: bool = True

    @property
    def end(self) -> Node:
        return self.steps[-1] if self.steps else self.start


async def _roll_out(ctx: SearchContext, candidates: list[Node], depth: int, k: int
                    ) -> dict[int, _Rollout]:
    """Write k greedy steps after every candidate, one batched call per step; return each
    candidate's rollout. Rollout steps join the tree as ``pruned`` chains."""
    settings = ctx.settings
    by_prefix: dict[str, _Rollout] = {}
    rollout_of: dict[int, _Rollout] = {}
    for node in candidates:
        prefix = ctx.prefix(ctx.tree.steps(node))
        rollout_of[node.id] = by_prefix.setdefault(prefix, _Rollout(node))
    rollouts = list(by_prefix.values())
    group = BeamGroup(0, keep=1, width=1, active=[])
    for _ in range(k):
        running = [r for r in rollouts if r.running and r.end.depth < settings.max_depth]
        if not running:
            break
        prefixes = [ctx.prefix(ctx.tree.steps(r.end)) for r in running]
        replies = await ctx.extend(prefixes, 1, settings.step_stops, settings.max_step_tokens,
                                   temperature=0.0, seed_offset=depth - 1)
        for rollout, [continuation] in zip(running, replies, strict=True):
            step = add_step_node(ctx, group, rollout.end, continuation, last_round=False)
            rollout.running = step.status == "open"  # it ended the solution: score it here
            step.status = "pruned"  # not part of any solution
            rollout.steps.append(step)
    return rollout_of


async def _score_round(ctx: SearchContext, children: list[Node], rollout_of: dict[int, _Rollout]
                       ) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Score every child with its rollout in one scorer call: the child's path scores (its own
    steps) and its ranking score (the path with its rollout, aggregated)."""
    tree = ctx.tree
    rollout_steps = {c.id: [n.step for n in rollout_of[c.id].steps] if c.id in rollout_of
                     else [] for c in children}
    scores = await ctx.score([tree.steps(c) + rollout_steps[c.id] for c in children])
    path_scores, ranking = {}, {}
    for child, child_scores in zip(children, scores, strict=True):
        path_scores[child.id] = child_scores[: child.depth]
        ranking[child.id] = aggregate_step_scores(child_scores, ctx.settings.step_aggregation)
        child.score = child_scores[child.depth - 1]
        rollout = rollout_of.get(child.id)
        if rollout is not None and rollout.start is child:  # shared rollouts scored once
            for node, score in zip(rollout.steps, child_scores[child.depth:], strict=True):
                node.score = score
    return path_scores, ranking


def _select(group: BeamGroup, children: list[Node], ranking: dict[int, float]) -> None:
    """Ended children leave the beam; the N/M open ones ranked best by their rollouts stay."""
    group.finished += [c for c in children if c.status in ("finished", "truncated")]
    open_children = sorted((c for c in children if c.status == "open"),
                           key=lambda c: (-ranking[c.id], c.id))
    group.active = open_children[: group.keep]
    for child in open_children[group.keep:]:
        child.status = "pruned"
    for child in group.active:
        child.status = "kept"


async def lookahead_search(ctx: SearchContext, n: int) -> SearchResult:
    """Beam search of ``n`` beams of width ``settings.width``, ranking each step by the score
    of its k-step greedy rollout (k = :data:`LOOKAHEAD_STEPS`)."""
    settings = ctx.settings
    width = settings.width
    check_budget(n, width)
    group = BeamGroup(0, keep=n // width, width=width, active=[ctx.tree.root])
    depth = 0
    while not group.done and depth < settings.max_depth:
        depth += 1
        last_round = depth == settings.max_depth
        children = await expand_round(ctx, [group], depth, last_round, ctx.reuse)
        open_children = [c for c in children if c.status == "open"]
        rollout_of = ({} if last_round or not open_children
                      else await _roll_out(ctx, open_children, depth, LOOKAHEAD_STEPS))
        path_scores, ranking = await _score_round(ctx, children, rollout_of)
        group.path_scores.update(path_scores)
        _select(group, children, ranking)
    return SearchResult("lookahead", n, width, tuple(_candidates(ctx, group)), ctx.tree,
                        ctx.ledger)


def _candidates(ctx: SearchContext, group: BeamGroup) -> list[Candidate]:
    return [candidate_from_leaf(ctx.tree, leaf, group.path_scores[leaf.id])
            for leaf in group.finished]

