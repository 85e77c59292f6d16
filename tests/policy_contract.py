"""Checks every in-process policy engine must pass the same way (llama.cpp, hf): the shape of
a continuation, how stop strings and ``max_tokens`` cut it, and which samples
``first_sample`` picks (a check the HTTP engine passes too)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import pytest

from ttscale.engines.base import Continuation


def extend(engine, prefixes: Sequence[str], n: int = 1, *, stop: Sequence[str] = (),
           max_tokens: int = 12, temperature: float = 0.8, top_p: float = 1.0,
           seed: int = 0, first_sample: int = 0) -> list[list[Continuation]]:
    return asyncio.run(engine.extend(prefixes, n, stop, max_tokens, temperature, top_p, seed,
                                     first_sample=first_sample))


def texts(rows: list[list[Continuation]]) -> list[list[str]]:
    return [[c.text for c in row] for row in rows]


def check_continuation(engine, prefix: str, c: Continuation, max_tokens: int) -> None:
    assert c.prompt_tokens == len(engine.tokenize(prefix))
    assert 0 <= c.cached_prompt_tokens <= c.prompt_tokens
    assert 1 <= c.generated_tokens <= max_tokens
    assert c.token_logprobs is not None and c.token_offsets is not None
    assert len(c.token_logprobs) == len(c.token_offsets) <= c.generated_tokens
    if c.finish_reason == "length":
        assert len(c.token_logprobs) == c.generated_tokens == max_tokens
    elif c.finish_reason == "eos":  # the end-of-sequence token has no text and no logprob
        assert len(c.token_logprobs) == c.generated_tokens - 1
    else:
        assert c.finish_reason == "stop" and c.stop_string
    assert all(math.isfinite(lp) and lp <= 0 for lp in c.token_logprobs)
    offsets = c.token_offsets
    assert all(a <= b for a, b in zip(offsets, offsets[1:], strict=False))
    if c.text:
        assert offsets and offsets[0] == 0 and offsets[-1] < len(c.text)
    else:
        assert all(o == 0 for o in offsets)


def check_stop_string_cuts_the_text(engine, prompt: str, greedy: Continuation,
                                    max_tokens: int, tolerance: float) -> None:
    """A stop string that starts inside one token and spans the next: the text ends before
    it; kept are the tokens that start before it, generated those up to the one ending it."""
    text, offsets = greedy.text, greedy.token_offsets
    k = len(offsets) // 2
    stop = text[offsets[k] + 1:offsets[k + 2]]
    at = text.find(stop)
    assert 0 < at and len(stop) >= 2
    [[c]] = extend(engine, [prompt], stop=[stop], max_tokens=max_tokens, temperature=0.0)
    assert c.text == text[:at]
    assert c.finish_reason == "stop" and c.stop_string == stop
    check_continuation(engine, prompt, c, max_tokens)
    kept = sum(o < at for o in offsets)
    assert c.token_offsets == offsets[:kept]
    assert c.token_logprobs == pytest.approx(greedy.token_logprobs[:kept], abs=tolerance)
    assert c.generated_tokens == sum(o < at + len(stop) for o in offsets) > kept


def check_max_tokens_ends_with_length(engine, prompt: str, greedy: Continuation,
                                      tolerance: float) -> None:
    [[c]] = extend(engine, [prompt], max_tokens=5, temperature=0.0)
    assert c.finish_reason == "length" and c.generated_tokens == 5 and c.stop_string is None
    assert c.text == greedy.text[:greedy.token_offsets[5]]
    assert c.token_logprobs == pytest.approx(greedy.token_logprobs[:5], abs=tolerance)


def check_first_sample_picks_the_later_samples(
        engine, prefixes: Sequence[str], *, max_tokens: int = 8, seed: int = 5,
        extend_with: Callable[..., list[list[Continuation]]] = extend) -> None:
    """Samples ``first_sample`` onwards of each prefix are the tail of a bigger call, so a
    caller holding the first samples can draw only the next ones; greedy ignores the index.
    ``extend_with(engine, prefixes, n, **settings)`` runs one call."""
    def run(n: int, **settings) -> list[list[Continuation]]:
        return extend_with(engine, list(prefixes), n, max_tokens=max_tokens, **settings)

    whole = run(5, temperature=0.8, seed=seed)
    assert all(len(set(row)) > 1 for row in texts(whole))  # the samples differ
    tail = run(2, temperature=0.8, seed=seed, first_sample=3)
    assert texts(tail) == [row[3:] for row in texts(whole)]
    assert [[c.finish_reason for c in row] for row in tail] == [
        [c.finish_reason for c in row[3:]] for row in whole]
    assert texts(tail) != [row[:2] for row in texts(whole)]  # not the first samples again
    greedy = texts(run(1, temperature=0.0, seed=seed))
    assert texts(run(2, temperature=0.0, seed=seed, first_sample=4)) == [
        row * 2 for row in greedy]
    with pytest.raises(ValueError, match="first_sample.*-1"):
        run(1, temperature=0.8, seed=seed, first_sample=-1)


def check_concurrent_calls_from_one_event_loop(engine, prefixes: Sequence[str],
                                               max_tokens: int) -> None:
    """Two calls gathered on one event loop give what each gives alone: the engine's worker
    thread serialises them and neither sees the other's sequences."""
    first, second = prefixes

    async def both() -> tuple[list[list[Continuation]], list[list[Continuation]]]:
        return await asyncio.gather(
            engine.extend([first], 2, [], max_tokens, 0.8, 1.0, 21),
            engine.extend([second], 2, [], max_tokens, 0.8, 1.0, 22),
        )

    a, b = asyncio.run(both())
    assert texts(a) == texts(extend(engine, [first], 2, max_tokens=max_tokens, seed=21))
    assert texts(b) == texts(extend(engine, [second], 2, max_tokens=max_tokens, seed=22))
