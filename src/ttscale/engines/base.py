"""The policy-engine protocol shared by every backend.

An engine continues text: given prefixes, it samples ``n`` continuations of each. Search code
sees only this protocol, never a backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from ttscale.errors import EngineError

FinishReason = Literal["stop", "eos", "length"]

# The rule for log-probs that are not log-probabilities, applied to every continuation of every
# engine: -inf (a token the engine calls impossible, e.g. one its top-p mask removed) reads as
# LOGPROB_FLOOR, vLLM's own stand-in for it, so the trace's confidence is the lowest there is
# rather than undefined; a value above 0 by no more than rounding in reduced precision reads as
# 0; NaN, +inf and larger positive values are refused (EngineError naming the token), since any
# number put in their place would be a confidence the model never gave.
LOGPROB_FLOOR = -9999.0
LOGPROB_ROUNDING = 1e-3


def checked_logprobs(values: Iterable[float]) -> tuple[float, ...]:
    """``values`` under the rule above (-inf, like any value below the floor, becomes it)."""
    checked = []
    for position, value in enumerate(values):
        value = float(value)
        if 0.0 < value <= LOGPROB_ROUNDING:
            value = 0.0
        elif not value <= 0.0:  # NaN, +inf, or a positive number: no log-probability
            raise EngineError(
                f"the engine gave generated token {position} the log-prob {value}, which is no "
                "log-probability (finite and <= 0; -inf is read as the floor "
                f"{LOGPROB_FLOOR:g}): the engine or its server is faulty; check its logprobs "
                "output, or use a scorer that needs no log-probs")
        checked.append(max(value, LOGPROB_FLOOR))
    return tuple(checked)


@dataclass(frozen=True)
class Continuation:
    """One sampled continuation of one prefix.

    ``prompt_tokens`` is the prefix length in tokens; ``cached_prompt_tokens`` how many of them
    this continuation did not have to compute (served from a prefix/KV cache or shared with a
    sibling sample). ``token_logprobs`` are the log-probabilities, under the model's untempered
    distribution, of the generated tokens (``None`` where the engine gives none);
    ``token_offsets`` the character offset in ``text`` where each of those tokens starts, so
    that a whole solution's log-probabilities can be split by step."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    cached_prompt_tokens: int
    generated_tokens: int
    token_logprobs: tuple[float, ...] | None = None
    token_offsets: tuple[int, ...] | None = None
    stop_string: str | None = None

    def __post_init__(self) -> None:
        if self.token_logprobs is not None:  # every engine's log-probs pass the one rule
            object.__setattr__(self, "token_logprobs", checked_logprobs(self.token_logprobs))

    @property
    def computed_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_prompt_tokens

    def then(self, more: Continuation) -> Continuation:
        """This continuation followed by ``more`` (drawn after its text): one text, the
        tokens of both, ``more``'s ending; log-probs and offsets only where both have them."""
        logprobs = offsets = None
        if None not in (self.token_logprobs, more.token_logprobs, self.token_offsets,
                        more.token_offsets):
            logprobs = self.token_logprobs + more.token_logprobs  # type: ignore[operator]
            offsets = self.token_offsets + tuple(  # type: ignore[operator]
                len(self.text) + o for o in more.token_offsets)  # type: ignore[union-attr]
        return Continuation(text=self.text + more.text, finish_reason=more.finish_reason,
                            prompt_tokens=self.prompt_tokens,
                            cached_prompt_tokens=self.cached_prompt_tokens,
                            generated_tokens=self.generated_tokens + more.generated_tokens,
                            token_logprobs=logprobs, token_offsets=offsets,
                            stop_string=more.stop_string)


@dataclass(frozen=True)
class ModelInfo:
    """What an engine knows of its model. ``parameters`` is read from the model itself
    (GGUF metadata, a config file, or the user's flag); ``None`` when nothing states it."""

    name: str
    parameters: int | None
    context_length: int | None = None
    chat_template: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """A text-continuation engine. Every knob is in the signature; lists in, lists out."""

    @property
    def info(self) -> ModelInfo: ...

    async def extend(
        self,
        prefixes: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        """Return ``n`` continuations for each prefix, in order: samples ``first_sample`` to
        ``first_sample + n - 1`` of it.

        Sample ``j`` of a prefix is drawn from a random stream determined by
        ``(seed, prefix, j)`` alone where the backend allows, so the first ``k`` samples of a
        call with ``n > k`` equal those of a call with ``n = k``, and a call with
        ``first_sample=k`` returns what follows them: a caller holding ``k`` samples of a
        prefix draws only the next ones. ``temperature == 0`` means greedy decoding (the same
        text whatever the sample index). Text stops before the first stop string (which is not
        included)."""
        ...

    async def close(self) -> None: ...


def validate_extend_args(
    prefixes: Sequence[str], n: int, max_tokens: int, temperature: float, top_p: float,
    first_sample: int = 0,
) -> None:
    """Shared argument checks for engines, so every backend rejects the same bad calls."""
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings, not one string")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if first_sample < 0:
        raise ValueError(f"first_sample must be >= 0, got {first_sample}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


class ThreadedEngine:
    """The async protocol methods of an in-process engine whose work blocks: it runs in a
    worker thread (``extend_sync`` / ``next_token_logprobs_sync``), so the event loop that
    drives many searches stays free while the model computes."""

    async def extend(
        self,
        prefixes: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        validate_extend_args(prefixes, n, max_tokens, temperature, top_p, first_sample)
        if not prefixes:
            return []
        return await asyncio.to_thread(self.extend_sync, list(prefixes), n, list(stop),
                                       max_tokens, temperature, top_p, seed, first_sample)

    async def next_token_logprobs(
        self, prefixes: Sequence[str], candidates: Sequence[str]
    ) -> list[NextTokenLogprobs]:
        if isinstance(prefixes, str) or isinstance(candidates, str):
            raise TypeError("prefixes and candidates must be lists of strings, not one string")
        if not prefixes:
            return []
        return await asyncio.to_thread(self.next_token_logprobs_sync, list(prefixes),
                                       list(candidates))

    def extend_sync(self, prefixes: list[str], n: int, stop: list[str], max_tokens: int,
                    temperature: float, top_p: float, seed: int,
                    first_sample: int = 0) -> list[list[Continuation]]:
        raise NotImplementedError

    def next_token_logprobs_sync(self, prefixes: list[str],
                                 candidates: list[str]) -> list[NextTokenLogprobs]:
        raise NotImplementedError


@runtime_checkable
class CacheClearing(Protocol):
    """An engine whose results depend on what its prefix cache held before; ``clear_cache``
    returns it to a fixed state so that each problem is reproducible on its own."""

    def clear_cache(self) -> None: ...


@dataclass(frozen=True)
class NextTokenLogprobs:
    """Log-probabilities of candidate next tokens after one prefix.

    ``logprobs[c]`` is log P(first token of candidate ``c`` | prefix) under the model's
    untempered distribution over the whole vocabulary (``-inf`` where the engine cannot see
    it, e.g. outside a server's top-k). ``prompt_tokens`` / ``cached_prompt_tokens`` count
    the prefix as in ``Continuation``, for the ledger."""

    logprobs: dict[str, float]
    prompt_tokens: int
    cached_prompt_tokens: int = 0


@runtime_checkable
class NextTokenScoring(Protocol):
    """An engine that can read the next-token distribution after a prefix (LLM-as-judge)."""

    async def next_token_logprobs(
        self, prefixes: Sequence[str], candidates: Sequence[str]
    ) -> list[NextTokenLogprobs]:
        """One result per prefix, in order. A candidate is a short string such as ``" yes"``;
        its first token (without BOS) is the one read."""
        ...
