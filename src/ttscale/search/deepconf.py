"""DeepConf: votes of the policy's most confident traces (Fu, Wang, Tian, Zhao, "Deep Think
with Confidence", arXiv 2508.15260, 2025; reference code facebookresearch/deepconf:
``helper.py``, ``analysis_offline.py``, ``deepconf-online.py``). Model-free: no scorer, only
the log-probabilities the policy returns with its tokens.

Confidence
    The paper's token confidence is the negative mean log-prob of the top-k tokens (k = 20 in
    the reference); optillm's plugin computes the same from local logits. ttscale's engines
    return only the sampled token's log-prob under the untempered distribution, so here the
    token confidence is that log-prob, ``l``: the k = 1 measure at hand. Deviation: its sign
    is the paper's opposite (with top-k, a peaked distribution raises the score because the
    runner-up tokens' log-probs fall; with the sampled token alone it raises ``l`` towards
    0), so a group's confidence is ``exp(mean l)`` over its tokens, the group's geometric-mean
    token probability (``rewards/confidence.py``'s read-out, over a token window instead of a
    step): higher is surer, positive so it can weight a vote, in [0, 1] so it can stand as a
    step score. Groups are windows of ``GROUP_WINDOW`` = 2048 tokens sliding by one token (the
    paper's and the reference's); a trace of at most one window has one group, the whole trace
    (the reference's ``compute_least_grouped``); a trace without tokens has confidence 0. A
    trace's confidence is its lowest group confidence (``TRACE_MEASURE = "lowest_group"``), or
    the confidence of its last window (``"tail"``, the paper's tail confidence).

``deepconf`` (offline)
    N whole solutions, the root's samples 0..N-1 as majority vote's (``reuse_or_sample``, so
    the method is answered from the shared pool). Traces that wrote a final answer are ranked
    (all of them when none did: the reference ranks only answered traces); the threshold is
    the (100 - eta)-th percentile of their confidences, linear interpolation as numpy's default
    that the reference calls, and a trace is kept when its confidence is at least the
    threshold. With distinct confidences that keeps exactly the ``R - ceil((100 - eta)(R -
    1) / 100)`` most confident of the R ranked traces; traces tied at the threshold are all
    kept. eta = ``KEEP_PERCENT`` = ``DEEPCONF_LOW`` = 10 (the paper's DeepConf-low, the
    reference's default ``CONFIDENCE_PERCENTILE = 90``); ``DEEPCONF_HIGH`` = 90 keeps the top
    90 %. Each answer receives the sum of its kept traces' confidences, and the heaviest wins.
    All N traces are returned as candidates: a kept trace has every step scored with its
    confidence, the others 0, so ``prm_vote`` under ``last``, ``min`` or ``mean`` step
    aggregation (the defaults are ``last`` and ``prm_vote``) is exactly DeepConf's vote;
    ``prm_max`` reads the most confident trace, ``majority`` the plain vote, ``prod`` weighs by
    confidence to the power of the step count. The filter lives in the scores and in
    ``details``, not in the tree: a pooled job shares its tree with the pool's other methods,
    so the method never changes it.

``deepconf_online``
    W = ``min(WARMUP_TRACES, N - 1)`` warm-up traces (16, the paper's N_init; at least one;
    the root's samples 0..W-1, as majority vote's) set the threshold s, the (100 - eta)-th
    percentile of their confidences (all of them, as the reference's online code). Capping at
    N - 1 rather than N keeps one trace or more for the online phase at every budget above 1:
    at ttscale's usual budgets (N <= 16) a cap at N would leave only the warm-up, the offline
    filter again. The other N - W traces (the root's samples W..N-1) grow step by step: each
    round extends every live trace by one step (prefix = the trace so far; identical prefixes
    merged into one request; seed offset depth - 1, as beam search; the last round, at
    ``max_depth``, runs to the end of the solution). After each step the lowest confidence of
    the groups the step completed is checked (while the trace holds at most one window: the
    trace so far, the one group it would have if it ended there); below s the trace stops,
    its last node ``truncated`` with finish reason ``low_confidence``, and it does not vote.
    Deviations: the reference stops inside the engine at the token, here at the end of the
    step, so the rest of that step is generated and charged; the reference checks full
    windows only, so a trace shorter than the window (most of ttscale's solutions) could never
    stop early. A trace that finishes has thus no group below s. The vote is weighted by
    confidence over the warm-up traces at or above s (the reference's "warmup traces above
    threshold"; those below are ``pruned``) and the finished traces; the candidates are
    exactly these voters, scored as above. The paper's consensus stop (adaptive sampling) is
    not part of this method: it spends all N traces.

Neither method draws randomness of its own: every sample comes from the policy's seeded
streams. A policy that returns no log-probabilities cannot be ranked: ``ConfigError``."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import ClassVar, Literal

from ttscale.engines.base import Continuation
from ttscale.errors import ConfigError
from ttscale.search.beam_search import BeamGroup, add_step_node
from ttscale.search.best_of_n import reuse_or_sample
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.steps_from_text import single_step
from ttscale.search.tree import Node
from ttscale.steps import Step

GROUP_WINDOW = 2048  # tokens per group (the paper's and the reference's WINDOW_SIZE)
DEEPCONF_LOW = 10  # keep the top 10 % (the paper's DeepConf-low, the reference's default)
DEEPCONF_HIGH = 90  # keep the top 90 % (DeepConf-high)
KEEP_PERCENT = DEEPCONF_LOW  # eta
WARMUP_TRACES = 16  # the paper's N_init (the reference's WARMUP_TRACES)
TRACE_MEASURE: Literal["lowest_group", "tail"] = "lowest_group"  # offline ranking and weights
LOW_CONFIDENCE = "low_confidence"  # finish reason of a trace stopped online

NO_LOGPROBS = ("DeepConf ranks traces by the policy's token log-probabilities, and this policy "
               "returned none: use an engine that gives them (llama.cpp, hf or vllm), or an "
               "OpenAI-compatible server that returns completion logprobs (--engine openai)")

# online traces are single paths: beam search's step helper sees them as groups of one
_ONE_PATH = BeamGroup(index=0, keep=1, width=1, active=[])


# --------------------------------------------------------------------------------------------
# Confidence
# --------------------------------------------------------------------------------------------


def step_logprobs(step: Step) -> tuple[float, ...]:
    """A step's token log-probs; a step with text but none means the policy gives none."""
    if step.token_logprobs is None:
        if step.text:
            raise ConfigError(NO_LOGPROBS)
        return ()
    return step.token_logprobs


def trace_logprobs(steps: Sequence[Step]) -> list[float]:
    return [value for step in steps for value in step_logprobs(step)]


def group_confidence(logprobs: Sequence[float]) -> float:
    """The geometric-mean probability of a group's tokens, exp(mean log-prob); 0 if empty."""
    if not logprobs:
        return 0.0
    return math.exp(_running_sums(logprobs)[-1] / len(logprobs))


def _running_sums(logprobs: Sequence[float]) -> list[float]:
    """Sums of the first 0, 1, .. tokens, added left to right: every group's sum is read off
    them (not ``sum()``, which compensates), so a window read as a whole trace or as a window
    has the very same value and a finished online trace is never below the bar it passed."""
    return [0.0, *accumulate(logprobs)]


def _lowest_window_mean(logprobs: Sequence[float], window: int, first_end: int) -> float:
    """The lowest mean log-prob of the full windows ending at tokens ``first_end``..end."""
    sums = _running_sums(logprobs)
    return min(sums[end] - sums[end - window]
               for end in range(max(first_end, window), len(logprobs) + 1)) / window


def lowest_group_confidence(logprobs: Sequence[float], window: int = GROUP_WINDOW) -> float:
    """The trace's lowest group confidence; a trace of at most one window is one group."""
    if len(logprobs) <= window:
        return group_confidence(logprobs)
    return math.exp(_lowest_window_mean(logprobs, window, window))


def tail_confidence(logprobs: Sequence[float], window: int = GROUP_WINDOW) -> float:
    """The confidence of the trace's last window (the whole trace if shorter)."""
    return group_confidence(logprobs[-window:])


def trace_confidence(logprobs: Sequence[float], measure: str = "lowest_group",
                     window: int = GROUP_WINDOW) -> float:
    if measure == "lowest_group":
        return lowest_group_confidence(logprobs, window)
    if measure == "tail":
        return tail_confidence(logprobs, window)
    raise ValueError(f"unknown trace confidence {measure!r}; expected lowest_group or tail")


def newest_group_confidence(logprobs: Sequence[float], start: int,
                            window: int = GROUP_WINDOW) -> float | None:
    """The lowest confidence of the groups completed by tokens ``start``.. (the online check):
    the full windows ending there, or, while the trace holds at most one window, the trace so
    far. None when no token was added."""
    if len(logprobs) <= start:
        return None
    if len(logprobs) <= window:
        return group_confidence(logprobs)
    return math.exp(_lowest_window_mean(logprobs, window, start + 1))


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (q an integer in 0..100) by linear interpolation between the
    closest ranks, numpy's default; the rank is computed exactly."""
    if not values:
        raise ValueError("the percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile must be in 0..100, got {q}")
    ordered = sorted(values)
    low, rest = divmod(q * (len(ordered) - 1), 100)
    if rest == 0:
        return ordered[low]
    return ordered[low] + (ordered[low + 1] - ordered[low]) * rest / 100


def keep_threshold(confidences: Sequence[float], keep_percent: int) -> float:
    """The confidence a trace needs to be among the top ``keep_percent`` %."""
    return percentile(confidences, 100 - keep_percent)


# --------------------------------------------------------------------------------------------
# What the record stores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceNote:
    """One trace as DeepConf saw it."""

    node: int  # its leaf in the tree
    sample: int  # the root's sample stream it started from
    confidence: float
    answer: str | None
    votes: bool
    phase: str = "offline"  # offline | warmup | online
    stopped_at_depth: int | None = None  # online: the step after which it was stopped

    def to_dict(self) -> dict:
        return {"node": self.node, "sample": self.sample, "confidence": self.confidence,
                "answer": self.answer, "votes": self.votes, "phase": self.phase,
                "stopped_at_depth": self.stopped_at_depth}


@dataclass(frozen=True)
class DeepConfDetails:
    """Every trace's confidence, the threshold and which traces voted."""

    record_key: ClassVar[str] = "deepconf"

    mode: str  # offline | online
    keep_percent: int
    window: int
    measure: str
    threshold: float | None  # None when no trace could be ranked
    traces: tuple[TraceNote, ...]
    warmup: int | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode, "keep_percent": self.keep_percent, "window": self.window,
                "measure": self.measure, "threshold": self.threshold, "warmup": self.warmup,
                "kept": [t.node for t in self.traces if t.votes],
                "traces": [t.to_dict() for t in self.traces]}


def _scored(candidate: Candidate, score: float) -> Candidate:
    """Every step scored ``score``: last, min and mean all read it back."""
    return replace(candidate, step_scores=(score,) * len(candidate.steps))


# --------------------------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------------------------


def kept_offline(answers: Sequence[str | None], confidences: Sequence[float],
                 keep_percent: int) -> tuple[list[bool], float | None]:
    """Which traces the offline filter keeps, and the threshold: the top ``keep_percent`` %
    of the traces with an answer (of all, when none has one)."""
    ranked = [i for i, answer in enumerate(answers) if answer is not None]
    ranked = ranked or list(range(len(answers)))
    if not ranked:
        return [], None
    threshold = keep_threshold([confidences[i] for i in ranked], keep_percent)
    keep = set(ranked)
    return [i in keep and confidences[i] >= threshold for i in range(len(answers))], threshold


async def deepconf(ctx: SearchContext, n: int) -> SearchResult:
    traces = await reuse_or_sample(ctx, n)
    confidences = [trace_confidence(trace_logprobs(t.steps), TRACE_MEASURE, GROUP_WINDOW)
                   for t in traces]
    answers = [t.answer for t in traces]
    kept, threshold = kept_offline(answers, confidences, KEEP_PERCENT)
    candidates = [_scored(t, c if keep else 0.0)
                  for t, c, keep in zip(traces, confidences, kept, strict=True)]
    notes = tuple(TraceNote(t.node_id, j, c, a, keep) for j, (t, c, a, keep) in
                  enumerate(zip(traces, confidences, answers, kept, strict=True)))
    details = DeepConfDetails("offline", KEEP_PERCENT, GROUP_WINDOW, TRACE_MEASURE, threshold,
                              notes)
    return SearchResult("deepconf", n, None, tuple(candidates), ctx.tree, ctx.ledger,
                        details=details)


# --------------------------------------------------------------------------------------------
# Online
# --------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """An online trace growing step by step."""

    sample: int
    leaf: Node
    logprobs: list[float] = field(default_factory=list)
    stopped_at_depth: int | None = None

    @property
    def live(self) -> bool:
        return self.leaf.status == "open"


async def _extend_live(ctx: SearchContext, live: list[_Trace], depth: int, first_sample: int
                       ) -> list[tuple[_Trace, Continuation]]:
    """One step for every live trace: one request per distinct prefix (traces that wrote the
    same steps draw distinct samples of it), one engine call per request size."""
    settings = ctx.settings
    last_round = depth >= settings.max_depth
    stop = settings.end_stops if last_round else settings.step_stops
    max_tokens = settings.max_solution_tokens if last_round else settings.max_step_tokens
    by_prefix: dict[str, list[_Trace]] = defaultdict(list)
    for trace in live:
        by_prefix[ctx.prefix(ctx.tree.steps(trace.leaf))].append(trace)
    by_size: dict[int, list[str]] = defaultdict(list)
    for prefix, traces in by_prefix.items():
        by_size[len(traces)].append(prefix)
    sizes = sorted(by_size)
    replies = await asyncio.gather(*(
        ctx.extend(by_size[size], size, stop, max_tokens, seed_offset=depth - 1,
                   first_sample=first_sample) for size in sizes))
    grown = []
    for size, reply in zip(sizes, replies, strict=True):
        for prefix, continuations in zip(by_size[size], reply, strict=True):
            grown += zip(by_prefix[prefix], continuations, strict=True)
    return grown


def _take_step(ctx: SearchContext, trace: _Trace, continuation: Continuation,
               threshold: float) -> None:
    """Add the step to the trace and stop the trace if a group it completed is below s."""
    parent = trace.leaf
    last_round = parent.depth + 1 >= ctx.settings.max_depth
    child = add_step_node(ctx, _ONE_PATH, parent, continuation, last_round)
    if parent.parent is not None:
        parent.status = "kept"
    start = len(trace.logprobs)
    trace.logprobs += step_logprobs(single_step(continuation))
    trace.leaf = child
    child.score = newest_group_confidence(trace.logprobs, start, GROUP_WINDOW)
    if child.score is not None and child.score < threshold:
        child.status, child.finish_reason = "truncated", LOW_CONFIDENCE
        trace.stopped_at_depth = child.depth


async def _grow_online(ctx: SearchContext, first: int, count: int, threshold: float
                       ) -> list[_Trace]:
    """The root's samples ``first``..``first + count - 1``, grown step by step until each
    finishes, is stopped, or reaches the depth limit."""
    traces = [_Trace(first + k, ctx.tree.root) for k in range(count)]
    for depth in range(1, ctx.settings.max_depth + 1):
        live = traces if depth == 1 else [t for t in traces if t.live]
        if not live:
            break
        # the first steps continue the root's streams after the warm-up samples
        grown = await _extend_live(ctx, live, depth, first if depth == 1 else 0)
        for trace, continuation in grown:
            _take_step(ctx, trace, continuation, threshold)
    return traces


def _warmup_notes(ctx: SearchContext, warmup: list[Candidate], confidences: list[float],
                  threshold: float) -> tuple[list[Candidate], list[TraceNote]]:
    """The warm-up traces that vote (confidence at least s); the others are pruned."""
    voters, notes = [], []
    for j, (trace, confidence) in enumerate(zip(warmup, confidences, strict=True)):
        votes = confidence >= threshold
        notes.append(TraceNote(trace.node_id, j, confidence, trace.answer, votes, "warmup"))
        if votes:
            voters.append(_scored(trace, confidence))
        else:
            for node in ctx.tree.path(ctx.tree.nodes[trace.node_id]):
                node.status = "pruned"
    return voters, notes


def _online_notes(ctx: SearchContext, traces: list[_Trace], threshold: float
                  ) -> tuple[list[Candidate], list[TraceNote]]:
    """The online traces that vote: not stopped, confidence at least s."""
    voters, notes = [], []
    for trace in traces:
        confidence = lowest_group_confidence(trace.logprobs, GROUP_WINDOW)
        votes = trace.stopped_at_depth is None and confidence >= threshold
        candidate = candidate_from_leaf(ctx.tree, trace.leaf,
                                        scores=[confidence] * trace.leaf.depth)
        if votes:
            voters.append(candidate)
        elif trace.stopped_at_depth is None:  # an empty trace: nothing to be confident of
            trace.leaf.status = "pruned"
        notes.append(TraceNote(trace.leaf.id, trace.sample, confidence, candidate.answer,
                               votes, "online", trace.stopped_at_depth))
    return voters, notes


async def deepconf_online(ctx: SearchContext, n: int) -> SearchResult:
    warmup_size = min(WARMUP_TRACES, max(1, n - 1))  # leave the online phase a trace
    warmup = await reuse_or_sample(ctx, warmup_size)
    confidences = [lowest_group_confidence(trace_logprobs(t.steps), GROUP_WINDOW)
                   for t in warmup]
    threshold = keep_threshold(confidences, KEEP_PERCENT)
    voters, notes = _warmup_notes(ctx, warmup, confidences, threshold)
    if n > warmup_size:
        traces = await _grow_online(ctx, warmup_size, n - warmup_size, threshold)
        online_voters, online_notes = _online_notes(ctx, traces, threshold)
        voters += online_voters
        notes += online_notes
    details = DeepConfDetails("online", KEEP_PERCENT, GROUP_WINDOW, "lowest_group", threshold,
                              tuple(notes), warmup=warmup_size)
    return SearchResult("deepconf_online", n, None, tuple(voters), ctx.tree, ctx.ledger,
                        details=details)
