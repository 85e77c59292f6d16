"""Beam search over steps, guided by the scorer.

N beams of width M: the first step is sampled N times from the problem; after every step the
N/M best unfinished partial solutions (by aggregated step score) are kept and each is expanded
M times, so every round generates N steps. A step that writes ``\\boxed``, ends the text, or
hits a solution-ending stop finishes its path; the search ends when N paths have finished, no
beam is left, or the depth limit is reached, where the last step may run to the end of the
answer. This is search-and-learn's beam search (and the paper's).

The loop is written over *groups* of beams so that DVTS — N/M independent subtrees, each a
beam search keeping 1 path of width M — is the same code, with every subtree's calls batched
together."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from ttscale.engines.base import Continuation
from ttscale.errors import ConfigError
from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.steps_from_text import single_step
from ttscale.search.tree import Node
from ttscale.steps import writes_final_answer


def check_budget(n: int, width: int) -> None:
    if width < 1:
        raise ConfigError(f"beam width M must be at least 1, got {width}")
    if n < width or n % width:
        raise ConfigError(
            f"budget N={n} is not a multiple of the beam width M={width}; "
            f"choose N in {width}, {2 * width}, {4 * width}, ... or change --width"
        )


@dataclass
class _Group:
    """One beam search: its live beams, the paths it finished and its path scores."""

    index: int
    keep: int
    width: int
    active: list[Node]
    finished: list[Node] = field(default_factory=list)
    path_scores: dict[int, list[float]] = field(default_factory=dict)

    @property
    def target(self) -> int:
        return self.keep * self.width

    @property
    def done(self) -> bool:
        return not self.active or len(self.finished) >= self.target


def _expansion_counts(group: _Group) -> list[tuple[Node, int]]:
    """Spread the group's N generations over its live beams (M each when all N/M live)."""
    live = group.active
    base, extra = divmod(group.target, len(live))
    return [(node, base + (1 if i < extra else 0)) for i, node in enumerate(live)
            if base + (1 if i < extra else 0) > 0]


async def _expand_round(
    ctx: SearchContext, groups: list[_Group], depth: int, last_round: bool
) -> list[Node]:
    """Generate one step for every planned expansion of every live group; return new nodes.

    Identical prefixes (two beams that wrote the same steps) are merged into one request for
    their summed samples, so they share a prefix computation and still draw distinct samples.
    Requests with the same sample count go out as one batched engine call."""
    settings = ctx.settings
    by_prefix: dict[str, list[tuple[_Group, Node, int]]] = defaultdict(list)
    for group in groups:
        for node, count in _expansion_counts(group):
            by_prefix[ctx.prefix(ctx.tree.steps(node))].append((group, node, count))
    by_total: dict[int, list[str]] = defaultdict(list)
    for prefix, plans in by_prefix.items():
        by_total[sum(count for _, _, count in plans)].append(prefix)
    stop = settings.end_stops if last_round else settings.step_stops
    max_tokens = settings.max_solution_tokens if last_round else settings.max_step_tokens
    totals = sorted(by_total)
    replies = await asyncio.gather(*(
        ctx.extend(by_total[total], total, stop, max_tokens, seed_offset=depth)
        for total in totals
    ))
    children = []
    for total, reply in zip(totals, replies, strict=True):
        for prefix, continuations in zip(by_total[total], reply, strict=True):
            taken = 0
            for group, node, count in by_prefix[prefix]:
                for continuation in continuations[taken: taken + count]:
                    children.append(_add_child(ctx, group, node, continuation, last_round))
                taken += count
    return children


def _add_child(
    ctx: SearchContext, group: _Group, node: Node, continuation: Continuation, last_round: bool
) -> Node:
    settings = ctx.settings
    child = ctx.tree.add_child(node, single_step(continuation), group=group.index)
    child.finish_reason = continuation.finish_reason
    ends = (continuation.finish_reason == "eos"
            or (continuation.stop_string is not None
                and continuation.stop_string in settings.end_stops)
            or writes_final_answer(continuation.text)
            # a blank line stopped at the delimiter is a pause, not the end of the solution
            or (not continuation.text.strip() and continuation.stop_string is None))
    child.status = "finished" if ends else "open"
    if not ends and (last_round or child.depth >= settings.max_depth):
        child.status = "truncated"
    return child


async def grouped_beam_search(
    ctx: SearchContext, groups: int, keep: int, width: int
) -> list[Candidate]:
    """Run ``groups`` independent beam searches in lockstep; return each group's candidates."""
    settings = ctx.settings
    # every group starts at the root: its first round samples its N (or M) first steps
    state = [_Group(g, keep, width, [ctx.tree.root]) for g in range(groups)]
    depth = 0
    while any(not g.done for g in state) and depth < settings.max_depth:
        depth += 1
        last_round = depth == settings.max_depth
        live = [g for g in state if not g.done]
        children = await _expand_round(ctx, live, depth, last_round)
        if ctx.scorer is not None:
            paths = [ctx.tree.steps(child) for child in children]
            scores = await ctx.score(paths)
        else:
            scores = [[0.5] * child.depth for child in children]
        by_group: dict[int, list[Node]] = defaultdict(list)
        for child, path_scores in zip(children, scores, strict=True):
            child.score = path_scores[-1]
            state[child.group].path_scores[child.id] = path_scores
            by_group[child.group].append(child)
        for group in live:
            new = by_group[group.index]
            group.finished += [c for c in new if c.status in ("finished", "truncated")]
            open_children = [c for c in new if c.status == "open"]
            open_children.sort(key=lambda c: (-aggregate_step_scores(
                group.path_scores[c.id], settings.step_aggregation), c.id))
            group.active = open_children[: group.keep]
            for child in open_children[group.keep:]:
                child.status = "pruned"
            for child in group.active:
                child.status = "kept"
    candidates = []
    for group in state:
        for leaf in group.finished:
            candidates.append(candidate_from_leaf(ctx.tree, leaf, group.path_scores.get(leaf.id)))
    return candidates


async def beam_search(ctx: SearchContext, n: int) -> SearchResult:
    width = ctx.settings.width
    check_budget(n, width)
    candidates = await grouped_beam_search(ctx, groups=1, keep=n // width, width=width)
    return SearchResult("beam", n, width, tuple(candidates), ctx.tree, ctx.ledger)
