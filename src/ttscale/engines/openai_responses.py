"""How an OpenAI-compatible server's completions answers map to
:class:`~ttscale.engines.base.Continuation` and
:class:`~ttscale.engines.base.NextTokenLogprobs`.

* ``finish_reason``: most servers report ``"stop"`` both for the end-of-sequence token and for
  a stop string, so the two are told apart as follows, first match wins:

  1. A server that left a stop string in the text: the text is cut before the first one ->
     ``"stop"``.
  2. ``"length"`` stays ``"length"``.
  3. vLLM (and SGLang) add ``stop_reason``: a string is the stop string that was hit; ``None``
     or an integer (a stop token id) means end of sequence -> ``"eos"``.
  4. No stop strings were requested -> ``"eos"``.
  5. The per-token log-prob listing (always requested): if the generated tokens run past the
     returned text and that overhang starts with a stop string, the server cut the text at that
     stop string -> ``"stop"``; otherwise -> ``"eos"``. (llama-cpp-python's server lists a
     stop string's tokens but no end-of-sequence token.)
  6. Nothing tells: ``"stop"`` with ``stop_string=None`` (the server stopped of its own accord;
     which way is unknown).

* ``prompt_tokens`` / ``generated_tokens`` come from ``usage``. ``cached_prompt_tokens`` comes
  from ``usage.prompt_tokens_details.cached_tokens`` when the server reports it, else 0: a
  server that does not say may still have cached, but we do not claim savings we cannot see.
* ``token_logprobs`` come from ``choices[0].logprobs.token_logprobs`` (``None`` entries, e.g. for
  a first token some servers do not score, are skipped); ``None`` when the server gives none.
  ``token_offsets`` come from ``text_offset``, shifted to start at 0 (llama-cpp-python counts
  from the start of the prompt) and capped at ``len(text)`` (a stop string's tokens lie past
  the text). Whether log-probs are tempered depends on the server: vLLM and llama.cpp report
  the model's raw distribution by default.

A next-token read (LLM-as-judge) is one greedy one-token answer: a candidate's log-prob is that
of the ``top_logprobs`` entry whose text equals it exactly, ``-inf`` when none does."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ttscale.engines.base import Continuation, FinishReason, NextTokenLogprobs
from ttscale.errors import EngineError
from ttscale.http_client import extra_fields


def next_token_from_response(response: Any, candidates: Sequence[str]) -> NextTokenLogprobs:
    """Read the candidates' log-probs off the first generated token's ``top_logprobs``."""
    choice = _first_choice(response)
    listing = getattr(choice, "logprobs", None)
    tops = getattr(listing, "top_logprobs", None) if listing is not None else None
    if not tops or tops[0] is None:
        raise EngineError("the server gave no top_logprobs for the next token; it must support "
                          "the completions API's logprobs option to score candidates")
    top = {str(token): float(value) for token, value in dict(tops[0]).items()}
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    return NextTokenLogprobs(
        logprobs={c: top.get(c, -math.inf) for c in candidates},
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=_cached_tokens(usage, prompt_tokens),
    )


def continuation_from_response(response: Any, stops: Sequence[str]) -> Continuation:
    """Turn one ``n=1`` completions response into a :class:`Continuation` (see module doc)."""
    choice = _first_choice(response)
    text = choice.text or ""
    raw_reason = choice.finish_reason
    extra = extra_fields(choice)
    tokens, token_logprobs, offsets = _logprob_listing(getattr(choice, "logprobs", None))
    text, finish_reason, stop_string = _finish(text, raw_reason, extra, stops, tokens)

    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    if usage is not None and getattr(usage, "completion_tokens", None) is not None:
        generated_tokens = int(usage.completion_tokens)
    else:
        generated_tokens = len(token_logprobs) if token_logprobs is not None else 0

    return Continuation(
        text=text,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=_cached_tokens(usage, prompt_tokens),
        generated_tokens=generated_tokens,
        token_logprobs=token_logprobs,
        token_offsets=None if offsets is None else tuple(min(o, len(text)) for o in offsets),
        stop_string=stop_string,
    )


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EngineError("the server answered a completions request with no choices")
    return choices[0]


def _cached_tokens(usage: Any, prompt_tokens: int) -> int:
    """The prompt tokens the server says it served from its cache (0 when it does not say)."""
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return max(0, min(cached, prompt_tokens))


def _finish(text: str, raw_reason: Any, extra: dict[str, Any], stops: Sequence[str],
            tokens: list[str] | None) -> tuple[str, FinishReason, str | None]:
    """The text, cut before a stop string left in it, why it ended and at which stop string
    (the rules of the module doc, in order)."""
    cut = _first_stop(text, stops)
    if cut is not None:
        # The server left a stop string in the text: cut before it.
        position, stop_string = cut
        return text[:position], "stop", stop_string
    if raw_reason == "length":
        return text, "length", None
    if "stop_reason" in extra:
        reason = extra["stop_reason"]
        if isinstance(reason, str):
            return text, "stop", reason
        return text, "eos", None
    if not stops:
        return text, "eos", None
    if tokens is not None:
        hit = _stop_in_overhang(text, tokens, stops)
        if hit is not None:
            return text, "stop", hit
        return text, "eos", None
    return text, "stop", None


def _logprob_listing(
    logprobs: Any,
) -> tuple[list[str] | None, tuple[float, ...] | None, tuple[int, ...] | None]:
    """``(tokens, token_logprobs, token_offsets)`` of a choice's legacy ``logprobs`` object.

    Entries whose log-prob is ``None`` are dropped from all three alike. Offsets are made
    relative to the continuation's first character: servers differ on whether ``text_offset``
    counts the prompt (llama-cpp-python does), and the first generated token starts the text
    in either case. Without ``text_offset``, offsets are running sums of the tokens' lengths."""
    if logprobs is None:
        return None, None, None
    raw_tokens = getattr(logprobs, "tokens", None)
    raw_logprobs = getattr(logprobs, "token_logprobs", None)
    raw_offsets = getattr(logprobs, "text_offset", None)
    tokens = [t or "" for t in raw_tokens] if raw_tokens is not None else None
    if raw_logprobs is None:
        return tokens, None, None
    count = len(raw_logprobs)
    if raw_offsets is not None and len(raw_offsets) == count and count:
        first = raw_offsets[0]
        all_offsets: list[int] | None = [max(0, int(o) - first) for o in raw_offsets]
    elif tokens is not None and len(tokens) == count:
        all_offsets, position = [], 0
        for token in tokens:
            all_offsets.append(position)
            position += len(token)
    else:
        all_offsets = None
    keep = [k for k, value in enumerate(raw_logprobs) if value is not None]
    values = tuple(float(raw_logprobs[k]) for k in keep)
    offsets = None if all_offsets is None else tuple(all_offsets[k] for k in keep)
    return tokens, values, offsets


def _first_stop(text: str, stops: Iterable[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        position = text.find(s)
        if position >= 0 and (best is None or position < best[0]):
            best = (position, s)
    return best


def _stop_in_overhang(text: str, tokens: Sequence[str], stops: Sequence[str]) -> str | None:
    """The stop string the server cut the text at, read from the generated tokens' text.

    A server that stops on a stop string has generated the tokens holding it, and lists them,
    but returns the text only up to it. ``None`` when the tokens add nothing past the text
    (or add something that is no stop string, such as an end-of-sequence marker)."""
    # Tokens that do not detokenize piecewise (a character split across tokens) may not start
    # with the text exactly; the overhang is still what lies past the text's length.
    overhang = "".join(tokens)[len(text) :]
    hits = [s for s in stops if overhang and overhang.startswith(s)]
    return max(hits, key=len) if hits else None
