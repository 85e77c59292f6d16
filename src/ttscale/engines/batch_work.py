"""The work the continuous-batching loop carries: a caller's call, each of its prefixes, the
units that compute a prefix once for some of its samples, and each sample being decoded."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

import numpy as np

from ttscale.engines.base import FinishReason


@dataclass(frozen=True)
class SampleSettings:
    n: int
    first_sample: int
    stop: tuple[bytes, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int


@dataclass
class Call:
    """One caller's request: several prefixes, answered together."""

    future: concurrent.futures.Future
    results: list
    remaining: int
    failed: bool = False

    @property
    def dropped(self) -> bool:
        return self.failed or self.future.cancelled()

    def settle(self) -> None:
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.results)

    def fail(self, error: BaseException) -> None:
        self.failed = True  # its other units are dropped at the next turn
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class PrefixWork:
    call: Call
    index: int  # in the call
    text: str
    tokens: list[int]
    settings: SampleSettings | None  # None: read next-token log-probs only
    read_ids: dict[str, int] = field(default_factory=dict)
    remaining: int = 0  # samples (or reads) still to finish


@dataclass
class LiveSample:
    index: int  # in the call's row for this prefix (the stream is first_sample + index)
    seq: int
    position: int  # where the last sampled token goes in the cache
    rng: np.random.Generator
    budget: int
    settings: SampleSettings
    tokens: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    byte_length: int = 0
    finish: FinishReason | None = None
    stop_string: str | None = None
    cut: int | None = None  # byte length to keep when a stop string was hit


@dataclass
class Unit:
    """Samples of one prefix that share one computation of it (or one read)."""

    prefix: PrefixWork
    samples: tuple[int, ...]  # sample indices; empty for a read
    seq: int = -1  # the sequence the prefix is computed in
    cursor: int = 0  # next prefix position to compute
    reused: int = 0  # prefix tokens taken from the cache
    charged: int = 0  # prefix tokens computed for it, also by earlier pushed-back tries
    extra_seqs: list[int] = field(default_factory=list)
    live: list[LiveSample] = field(default_factory=list)
    order: int = 0  # admission order, for pushing back the newest

    @property
    def slots(self) -> int:
        return max(1, len(self.samples))

    @property
    def prefilling(self) -> bool:
        return self.cursor < len(self.prefix.tokens)

    @property
    def seqs(self) -> set[int]:
        return {self.seq, *self.extra_seqs, *(s.seq for s in self.live)} - {-1}


def units_of(prefix: PrefixWork, n_ctx: int, max_live: int, n_seq: int) -> list[Unit]:
    """The units a prefix's work is split into: one for a read; for sampling, as many samples
    per unit as fit the cache alone, each at full length after the prefix."""
    settings = prefix.settings
    if settings is None:
        return [Unit(prefix, ())]
    room = n_ctx - len(prefix.tokens)
    size = max(1, min(max_live, n_seq, room // (settings.max_tokens + 1)))
    return [Unit(prefix, tuple(range(start, min(settings.n, start + size))))
            for start in range(0, settings.n, size)]
