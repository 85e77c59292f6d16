"""Whole solutions from a reasoning policy under a thinking budget, with an early exit.

* **Budget forcing** (Muennighoff et al. 2025, "s1: Simple test-time scaling"): the thought
  gets at most ``thinking_budget`` tokens; a thought still open then is closed for the model
  (``\\n</think>\\n\\n``) and the model writes its answer part after it.
* **Early exit** (Fu et al. 2025, Dynasor-CoT, "Efficiently Serving LLM Reasoning Programs
  with Certaindex"): every ``probe_every`` thought tokens the model is asked for its answer
  now — the thought so far, then Dynasor's probe text ending in ``\\boxed{`` — greedily, in a
  few tokens; when the last ``probe_agreement`` probes give the same answer the thought stops
  there and that answer is the solution's (Dynasor-CoT's rule; it answers without a second
  generation). Probes are charged to the ledger like any call; their text is not part of the
  solution.

Deviation: Dynasor-CoT probes at fixed token counts of one stream; here each chunk of
``probe_every`` tokens is one engine call continuing the sample's text, so the chunks of a
sample are drawn from the stream of its text so far (reproducible under a seed, but not the
same tokens as one uninterrupted call).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from ttscale.compute import TokenCount
from ttscale.engines.base import Continuation
from ttscale.grading import extract_boxed, normalize_answer
from ttscale.search.context import SearchContext
from ttscale.thoughts import ThinkingFormat

# Dynasor-CoT's probe: the thought so far, then this, then the model's answer and "}"
PROBE = "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
PROBE_TOKENS = 20
PROBE_STOPS = ("\\]", "\n")  # the end of the display the probe opened


@dataclass
class _Trace:
    """One sample so far: its calls' continuations joined, with what ttscale wrote between
    them (a closed thought, the probed answer)."""

    sample: int
    so_far: Continuation | None = None
    tokens: TokenCount = TokenCount(0, 0, 0)  # every call of the sample, probes included
    thought_tokens: int = 0
    end: str | None = None  # closed | budget | early_exit; None while open (or never closed)
    probes: list[str | None] = field(default_factory=list)  # each probe's answer, normalized
    probe_tokens: int = 0
    last_probe: str | None = None  # the last probe's answer as the model wrote it

    @property
    def text(self) -> str:
        return self.so_far.text if self.so_far is not None else ""

    @property
    def generated(self) -> int:
        return self.so_far.generated_tokens if self.so_far is not None else 0

    def append(self, continuation: Continuation) -> None:
        self.so_far = continuation if self.so_far is None else self.so_far.then(continuation)
        self.charge(continuation)

    def write(self, text: str, finish: str | None = None) -> None:
        """Text ttscale adds to the solution (no tokens generated); ``finish`` ends it."""
        assert self.so_far is not None
        self.so_far = replace(self.so_far, text=self.so_far.text + text,
                              finish_reason=finish or self.so_far.finish_reason)

    def charge(self, continuation: Continuation) -> None:
        self.tokens = self.tokens + TokenCount(continuation.prompt_tokens,
                                               continuation.cached_prompt_tokens,
                                               continuation.generated_tokens)

    def continuation(self) -> Continuation:
        assert self.so_far is not None  # every trace makes at least one call
        return self.so_far

    def outcome(self) -> dict:
        """What the record keeps of how the thought ended."""
        entry: dict = {"end": self.end or "open", "thought_tokens": self.thought_tokens}
        if self.probes:
            entry |= {"probes": self.probes, "probe_tokens": self.probe_tokens}
        return entry


@dataclass(frozen=True)
class BudgetedSample:
    continuation: Continuation  # the whole solution, as one call would have returned it
    tokens: TokenCount  # every call of this sample, probes included
    thinking: dict  # how its thought ended (the record's entry)


async def sample_with_thinking_budget(ctx: SearchContext, fmt: ThinkingFormat, n: int,
                                      temperature: float | None,
                                      first_sample: int) -> list[BudgetedSample]:
    """Samples ``first_sample`` … ``first_sample + n - 1`` of the root, each thinking in chunks
    under the settings' thinking budget and early exit, then answering."""
    traces = [_Trace(first_sample + i) for i in range(n)]
    await asyncio.gather(*(_think_and_answer(ctx, fmt, t, temperature) for t in traces))
    return [BudgetedSample(t.continuation(), t.tokens, t.outcome()) for t in traces]


async def _think_and_answer(ctx: SearchContext, fmt: ThinkingFormat, trace: _Trace,
                            temperature: float | None) -> None:
    settings = ctx.settings
    budget = settings.thinking_budget or settings.max_solution_tokens
    chunk = settings.probe_every or budget
    while trace.end is None:
        room = budget - trace.thought_tokens
        piece = await _call(ctx, trace, min(chunk, room), (fmt.close, *settings.end_stops),
                            temperature)
        trace.append(piece)
        trace.thought_tokens += piece.generated_tokens
        if piece.stop_string == fmt.close:  # the model closed its thought itself
            trace.write(fmt.close)
            trace.end = "closed"
        elif piece.finish_reason != "length":
            return  # it ended without closing the thought (eos or an end stop): no answer
        elif settings.probe_every and await _answer_settled(ctx, trace):
            trace.end = "early_exit"
            trace.write(f"\n{fmt.close}\n\n**Final Answer**\n\\boxed{{{trace.last_probe}}}",
                        finish="stop")
            return
        elif trace.thought_tokens >= budget:
            trace.write(f"\n{fmt.close}\n\n")
            trace.end = "budget"
    room = settings.max_solution_tokens - trace.generated
    if room > 0:
        trace.append(await _call(ctx, trace, room, settings.end_stops, temperature))


async def _call(ctx: SearchContext, trace: _Trace, max_tokens: int, stop, temperature):
    """One continuation of the trace's text, from its own sample stream."""
    [[piece]] = await ctx.extend([ctx.prompt + trace.text], 1, list(stop), max(1, max_tokens),
                                 temperature, first_sample=trace.sample)
    return piece


async def _answer_settled(ctx: SearchContext, trace: _Trace) -> bool:
    """Probe the answer now; True when the last ``probe_agreement`` probes agree."""
    [[probe]] = await ctx.extend([ctx.prompt + trace.text + PROBE], 1, list(PROBE_STOPS),
                                 PROBE_TOKENS, 0.0)
    trace.charge(probe)
    trace.probe_tokens += probe.generated_tokens
    # the box the probe opened, closed by the model within the probe's tokens (else no answer)
    answer = extract_boxed("\\boxed{" + probe.text)
    trace.last_probe = answer
    trace.probes.append(normalize_answer(answer) if answer else None)
    last = trace.probes[-ctx.settings.probe_agreement:]
    return (len(last) == ctx.settings.probe_agreement and last[0] is not None
            and all(a == last[0] for a in last))
