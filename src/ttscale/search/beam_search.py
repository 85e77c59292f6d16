"""Beam search over steps, guided by the scorer.

N beams of width M: the first step is sampled N times from the problem; after every step the
N/M best unfinished partial solutions (by aggregated step score) are kept and each is expanded
M times, so every round generates N steps. A step that writes ``\\boxed``, ends the text, or
hits a solution-ending stop finishes its path; the search ends when N paths have finished, no
beam is left, or the depth limit is reached, where the last step may run to the end of the
answer. This is search-and-learn's beam search (and the paper's).

The loop is written over *groups* of beams so that DVTS — N/M independent subtrees, each a
beam search keeping 1 path of width M — is the same code, with every subtree's calls batched
together. ``BeamGroup``, ``expand_round`` and ``add_step_node`` are the step-wise searches'
shared parts (lookahead, REBASE and particle filtering expand their frontiers with them)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ttscale.engines.base import Continuation
from ttscale.errors import ConfigError
from ttscale.search.aggregate import aggregate_step_scores
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.steps_from_text import single_step
from ttscale.search.tree import Node
from ttscale.steps import writes_final_answer
from ttscale.thoughts import DEFAULT_SEGMENTATION, step_in_thought


def check_budget(n: int, width: int) -> None:
    if width < 1:
        raise ConfigError(f"beam width M must be at least 1, got {width}")
    if n < width or n % width:
        raise ConfigError(
            f"budget N={n} is not a multiple of the beam width M={width}; "
            f"choose N in {width}, {2 * width}, {4 * width}, ... or change --width"
        )


@dataclass
class BeamGroup:
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


def _expansion_counts(group: BeamGroup) -> list[tuple[Node, int]]:
    """Spread the group's N generations over its live beams (M each when all N/M live)."""
    live = group.active
    base, extra = divmod(group.target, len(live))
    return [(node, base + (1 if i < extra else 0)) for i, node in enumerate(live)
            if base + (1 if i < extra else 0) > 0]


async def expand_round(
    ctx: SearchContext, groups: list[BeamGroup], depth: int, last_round: bool,
    reuse: Sequence[Candidate] = (),
) -> list[Node]:
    """Generate one step for every planned expansion of every live group; return new nodes.

    Identical prefixes (two beams that wrote the same steps) are merged into one request for
    their summed samples, so they share a prefix computation and still draw distinct samples.
    Requests with the same sample count go out as one batched engine call. In the first
    round, the first steps of ``reuse`` (whole solutions already sampled from the root, the
    first samples of its streams) stand for that many of the root's samples."""
    settings = ctx.settings
    by_prefix: dict[str, list[tuple[BeamGroup, Node, int]]] = defaultdict(list)
    for group in groups:
        for node, count in _expansion_counts(group):
            by_prefix[ctx.prefix(ctx.tree.steps(node))].append((group, node, count))
    stop = settings.end_stops if last_round else settings.step_stops
    max_tokens = settings.max_solution_tokens if last_round else settings.max_step_tokens
    reused: dict[str, list[Continuation]] = {}
    if depth == 1 and reuse and ctx.prompt in by_prefix:
        total = sum(count for _, _, count in by_prefix[ctx.prompt])
        reused[ctx.prompt] = _first_steps(reuse, settings, last_round)[:total]
    by_total: dict[int, list[str]] = defaultdict(list)
    for prefix, plans in by_prefix.items():
        fresh = sum(count for _, _, count in plans) - len(reused.get(prefix, ()))
        if fresh > 0:
            by_total[fresh].append(prefix)
    totals = sorted(by_total)
    # the root's fresh samples continue its streams after every reused solution's
    first = len(reuse) if reused else 0
    replies = await asyncio.gather(*(
        ctx.extend(by_total[total], total, stop, max_tokens, seed_offset=depth - 1,
                   first_sample=first if ctx.prompt in by_total[total] and reused else 0)
        for total in totals
    ))
    continuations_of = {prefix: list(reused.get(prefix, ())) for prefix in by_prefix}
    for total, reply in zip(totals, replies, strict=True):
        for prefix, continuations in zip(by_total[total], reply, strict=True):
            continuations_of[prefix] += continuations
    if ctx.thinking is not None and not last_round:
        await _merge_thought_paragraphs(ctx, by_prefix, continuations_of, depth, max_tokens)
    children = []
    for prefix, plans in by_prefix.items():
        continuations = continuations_of[prefix]
        taken = 0
        for group, node, count in plans:
            for continuation in continuations[taken: taken + count]:
                children.append(add_step_node(ctx, group, node, continuation, last_round))
            taken += count
    return children


def _first_steps(solutions: Sequence[Candidate], settings, last_round: bool
                 ) -> list[Continuation]:
    """Sampled whole solutions as the first-step samples they begin with: a solution of one
    step ended where it stopped; a longer one's first step ended at the step delimiter. Already
    paid for, so they charge no tokens again."""
    steps = []
    for solution in solutions:
        if not solution.steps:
            continue  # an empty sample has no first step to offer; a fresh one is drawn
        parts = solution.steps if last_round else solution.steps[:1]
        whole = last_round or len(solution.steps) == 1
        logprobs = [s.token_logprobs for s in parts]
        end = settings.end_stops[0] if settings.end_stops else None
        steps.append(Continuation(
            text=settings.delimiter.join(s.text for s in parts),
            finish_reason=solution.finish_reason if whole else "stop",
            prompt_tokens=0, cached_prompt_tokens=0,
            generated_tokens=sum(s.generated_tokens for s in parts),
            token_logprobs=None if any(lp is None for lp in logprobs) else tuple(
                value for lp in logprobs for value in lp),  # type: ignore[union-attr]
            stop_string=(end if whole and solution.finish_reason == "stop"
                         else None if whole else settings.delimiter)))
    return steps


def add_step_node(
    ctx: SearchContext, group: BeamGroup, node: Node, continuation: Continuation, last_round: bool
) -> Node:
    """The tree node of one sampled step under ``node``: finished when the step ends the
    solution, truncated when no round is left for it, else open. Shared by the step-wise
    searches (beam, DVTS, lookahead, REBASE, particle filtering, online DeepConf)."""
    settings = ctx.settings
    thought = _in_thought(ctx, node, continuation.text)
    child = ctx.tree.add_child(node, single_step(continuation, thought), group=group.index)
    child.finish_reason = continuation.finish_reason
    ends = (continuation.finish_reason == "eos"
            or (continuation.stop_string is not None
                and continuation.stop_string in settings.end_stops)
            # a box inside a thought is the policy checking itself, not its answer
            or (writes_final_answer(continuation.text) and not thought)
            # a blank line stopped at the delimiter is a pause, not the end of the solution
            or (not continuation.text.strip() and continuation.stop_string is None))
    child.status = "finished" if ends else "open"
    if not ends and (last_round or child.depth >= settings.max_depth):
        child.status = "truncated"
    return child


def _in_thought(ctx: SearchContext, parent: Node, text: str) -> bool:
    """Whether a reasoning policy's next step under ``parent`` lies in its thought."""
    if ctx.thinking is None:
        return False
    return step_in_thought(text, _inside_after(ctx, parent), ctx.thinking)[0]


def _inside_after(ctx: SearchContext, node: Node) -> bool:
    """Whether the text after ``node`` is inside the thought (``ctx.thinking`` is set)."""
    assert ctx.thinking is not None
    if node.step is None:  # the root: inside when the prompt opened the thought
        return ctx.thinking.opened_by_prompt
    return node.step.thought and ctx.thinking.close not in node.step.text


# inside a thought a step goes on through further paragraphs until it has this many
# characters: half the cap of a whole thought's segmentation, so that its steps are alike
THOUGHT_STEP_CHARS = DEFAULT_SEGMENTATION.max_step_chars // 2


async def _merge_thought_paragraphs(ctx: SearchContext, by_prefix, continuations_of,
                                    depth: int, max_tokens: int) -> None:
    """A reasoning policy thinks in short paragraphs; one paragraph a step would give a long
    thought thousands of steps. A step stopped at a paragraph break inside the thought is
    continued (each continuation charged like any call) until it has ``THOUGHT_STEP_CHARS``
    characters, its tokens run out, or the thought closes."""
    delimiter = ctx.settings.delimiter

    async def grow(prefix: str, parent: Node, continuation: Continuation) -> Continuation:
        while (continuation.stop_string == delimiter
               and len(continuation.text) < THOUGHT_STEP_CHARS
               and continuation.generated_tokens < max_tokens
               and step_in_thought(continuation.text, _inside_after(ctx, parent),
                                   ctx.thinking) == (True, True)):
            continuation = replace(continuation, text=continuation.text + delimiter)
            [[more]] = await ctx.extend([prefix + continuation.text], 1,
                                        ctx.settings.step_stops,
                                        max_tokens - continuation.generated_tokens,
                                        seed_offset=depth - 1)
            continuation = continuation.then(more)
        return continuation

    jobs = []
    for prefix, plans in by_prefix.items():
        taken = 0
        for _, node, count in plans:
            jobs += [(prefix, node, k) for k in range(taken, taken + count)]
            taken += count
    grown = await asyncio.gather(*(grow(prefix, node, continuations_of[prefix][k])
                                   for prefix, node, k in jobs))
    for (prefix, _, k), continuation in zip(jobs, grown, strict=True):
        continuations_of[prefix][k] = continuation


async def grouped_beam_search(
    ctx: SearchContext, groups: int, keep: int, width: int, reuse: Sequence[Candidate] = ()
) -> list[Candidate]:
    """Run ``groups`` independent beam searches in lockstep; return each group's candidates.
    ``reuse``: whole solutions already sampled from the root, whose first steps join the
    first round (see :func:`expand_round`)."""
    settings = ctx.settings
    # every group starts at the root: its first round samples its N (or M) first steps
    state = [BeamGroup(g, keep, width, [ctx.tree.root]) for g in range(groups)]
    depth = 0
    while any(not g.done for g in state) and depth < settings.max_depth:
        depth += 1
        last_round = depth == settings.max_depth
        live = [g for g in state if not g.done]
        children = await expand_round(ctx, live, depth, last_round, reuse)
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
    candidates = await grouped_beam_search(ctx, groups=1, keep=n // width, width=width,
                                           reuse=ctx.reuse)
    return SearchResult("beam", n, width, tuple(candidates), ctx.tree, ctx.ledger)
