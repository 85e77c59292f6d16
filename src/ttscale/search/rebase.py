"""REBASE, reward-balanced search: Wu et al., "Inference Scaling Laws: An Empirical Analysis of
Compute-Optimal Inference for Problem-Solving with Language Models" (arXiv 2408.00724, 2024).

A tree grown one depth a round under a budget of N whole solutions. Every round, each node of
the frontier (the open partial solutions of the last depth) is allotted children by a softmax
of the scorer's scores over the frontier,

    W_i ~ B * exp(R_i / T) / sum_j exp(R_j / T),

where B is the budget still to spend: N less the solutions already ended. A node allotted no
child is pruned; the others are expanded (kept) and their children scored. A child that ends
its solution (``\\boxed``, end of text, a solution-ending stop) leaves the frontier and takes
one solution off the budget. The search stops when the budget is spent (the frontier is then
empty too) or at the depth limit. The first round gives the root all N samples.

Followed from the paper's implementation (thu-wyz/inference_scaling, also published as
thu-wyz/rebase: ``rebase.py``'s ``Tree.select_softmax`` and ``select_and_expand``, and
``hype-parameters/rebase.yaml``):

- the softmax temperature T = :data:`SOFTMAX_TEMPERATURE` = 0.2;
- the rounding rule: the frontier is sorted best first and each node in turn takes
  ``ceil(b * e_i / s)``, with b the budget not yet allotted and s the sum of ``e_j`` over the
  nodes not yet served; so a round allots exactly B children, the best nodes get their share
  rounded up, and the tail of the frontier may get none (:func:`allot`);
- a path that ends, or is cut by a token limit, counts against the budget; the candidates are
  the solutions that ended, and a path cut by a token limit is not one (it stays in the tree,
  ``truncated``).

Where this differs, and why:

- R_i is the path's score aggregated by ``settings.step_aggregation``; its default, ``last``,
  is the reference's (the scorer's score of the node's last step). The root's score is 1.0 as
  in the reference; alone on the first frontier, it takes all N.
- Ties are broken by node id, earliest first (the reference's sort puts the later node first);
  the softmax is computed with the best score subtracted and each rest sum summed afresh, so
  the allotment is not at the mercy of rounding error.
- The depth limit is ``settings.max_depth`` and, as in ttscale's beam search, the round at the
  limit writes each path to the end of its solution (solution stops, ``max_solution_tokens``),
  so the budget is spent on whole solutions; the reference stops at depth 25 and drops the
  paths still open. Only that last round cuts a path by tokens (the reference also ends a path
  whose tokens pass 1024).
- A path ends by ttscale's rules (those of beam search), not the reference's "The answer is";
  the sampling temperature is the study's (``settings.temperature``; the reference samples at
  1.0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.beam_search import BeamGroup, expand_round
from ttscale.search.context import SearchContext
from ttscale.search.result import SearchResult, candidate_from_leaf
from ttscale.search.tree import Node

SOFTMAX_TEMPERATURE = 0.2  # the reference's ``softmax_temperature``
ROOT_SCORE = 1.0  # the reference scores the root 1.0; alone on the frontier it takes all


def allot(scores: Sequence[float], budget: int, temperature: float = SOFTMAX_TEMPERATURE
          ) -> list[int]:
    """Children for each node (in the order given) from ``budget`` samples: the reference's
    sequential ceiling of the softmax of ``scores / temperature``, best score first (ties to
    the earlier node). The counts sum to ``budget`` (none when it is not positive)."""
    if not scores or budget <= 0:
        return [0] * len(scores)
    top = max(scores)
    weights = [math.exp((score - top) / temperature) for score in scores]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    counts = [0] * len(scores)
    left = budget
    for rank, i in enumerate(order):
        rest = math.fsum(weights[j] for j in order[rank:])
        counts[i] = min(left, math.ceil(left * weights[i] / rest))
        left -= counts[i]
    return counts


@dataclass(frozen=True)
class RebaseRound:
    """One round: the budget still to spend, the frontier's nodes, scores and allotment."""

    depth: int  # the depth of the children this round generates
    budget: int
    nodes: tuple[int, ...]
    scores: tuple[float | None, ...]  # None for the root, which has no score
    allotment: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"depth": self.depth, "budget": self.budget, "nodes": list(self.nodes),
                "scores": list(self.scores), "allotment": list(self.allotment)}


@dataclass
class RebaseDetails:
    """Every round's frontier scores and the children each node was allotted."""

    record_key: ClassVar[str] = "rebase"

    temperature: float = SOFTMAX_TEMPERATURE
    rounds: list[RebaseRound] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"softmax_temperature": self.temperature,
                "rounds": [r.to_dict() for r in self.rounds]}


@dataclass
class _Search:
    """What the search carries from round to round."""

    budget: int
    frontier: list[Node]
    ended: list[Node] = field(default_factory=list)
    path_scores: dict[int, list[float]] = field(default_factory=dict)
    details: RebaseDetails = field(default_factory=RebaseDetails)


def _frontier_score(search: _Search, node: Node, mode: str) -> float:
    if node.parent is None:
        return ROOT_SCORE
    return aggregate_step_scores(search.path_scores[node.id], mode)  # type: ignore[arg-type]


async def _round(ctx: SearchContext, search: _Search, depth: int) -> None:
    """Allot the budget over the frontier, expand it, score the children and sort them into
    the ended and the next frontier."""
    settings = ctx.settings
    scores = [_frontier_score(search, node, settings.step_aggregation)
              for node in search.frontier]
    counts = allot(scores, search.budget)
    search.details.rounds.append(RebaseRound(
        depth, search.budget, tuple(n.id for n in search.frontier),
        tuple(n.score if n.parent is not None else None for n in search.frontier),
        tuple(counts)))
    for node, count in zip(search.frontier, counts, strict=True):
        node.status = "kept" if count else "pruned"
    # one single-beam group per expanded node, so each is expanded its own number of times
    # (group index 0 throughout: REBASE has no subtrees)
    groups = [BeamGroup(0, keep=1, width=count, active=[node])
              for node, count in zip(search.frontier, counts, strict=True) if count]
    children = await expand_round(ctx, groups, depth, depth == settings.max_depth,
                                   ctx.reuse)
    all_scores = await ctx.score([ctx.tree.steps(child) for child in children])
    frontier = []
    for child, path_scores in zip(children, all_scores, strict=True):
        child.score = path_scores[-1]
        search.path_scores[child.id] = path_scores
        if child.status == "open":
            frontier.append(child)
        else:  # finished or truncated: one whole solution spent
            search.ended.append(child)
            search.budget -= 1
    search.frontier = frontier


async def rebase(ctx: SearchContext, n: int) -> SearchResult:
    """REBASE with a budget of ``n`` whole solutions; the candidates are those that ended
    (a path cut by a token limit is spent but is no candidate, as in the reference)."""
    if n < 1:
        raise ValueError(f"the budget must be at least 1, got {n}")
    search = _Search(budget=n, frontier=[ctx.tree.root])
    depth = 0
    while search.budget > 0 and search.frontier and depth < ctx.settings.max_depth:
        depth += 1
        await _round(ctx, search, depth)
    candidates = [candidate_from_leaf(ctx.tree, leaf, search.path_scores[leaf.id])
                  for leaf in search.ended if leaf.status == "finished"]
    return SearchResult("rebase", n, None, tuple(candidates), ctx.tree, ctx.ledger,
                        details=search.details)
