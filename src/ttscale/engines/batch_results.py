"""The answers the continuous-batching loop hands back: a finished sample's
:class:`~ttscale.engines.base.Continuation` (its text cut before a stop string, with the
log-prob and offset of each kept token) and a prefix's next-token log-probs; a call's future
is settled once all its prefixes are answered. Finished sequences stay in the cache, idle."""

from __future__ import annotations

import codecs

import numpy as np

from ttscale.engines.base import Continuation, NextTokenLogprobs
from ttscale.engines.batch_schedule import BatchSchedule
from ttscale.engines.batch_work import LiveSample, Unit
from ttscale.engines.kv_tree import KVTree


class BatchResults:
    def __init__(self, schedule: BatchSchedule, tree: KVTree) -> None:
        self.schedule = schedule
        self.tree = tree

    def answer_read(self, unit: Unit, row: np.ndarray) -> None:
        """A read unit's answer, from the logits row of its prefix's last token."""
        values = row.astype(np.float64)
        top = values.max()
        log_normaliser = top + np.log(np.exp(values - top).sum())
        prefix = unit.prefix
        total = len(prefix.tokens)
        prefix.call.results[prefix.index] = NextTokenLogprobs(
            logprobs={c: float(values[t] - log_normaliser) for c, t in prefix.read_ids.items()},
            prompt_tokens=total, cached_prompt_tokens=max(0, total - unit.charged))
        self.schedule.admitted.remove(unit)
        self.tree.set_idle(unit.seq)
        prefix.call.remaining -= 1
        prefix.call.settle()

    def retire(self) -> None:
        """Hand back finished samples; a unit whose samples are all done leaves the batch and
        its sequences stay as cache."""
        admitted = self.schedule.admitted
        for unit in [u for u in admitted
                     if u.live and all(s.finish is not None for s in u.live)]:
            prefix = unit.prefix
            row = prefix.call.results[prefix.index]
            total = len(prefix.tokens)
            for k, sample in enumerate(unit.live):
                computed = unit.charged if k == 0 else 0
                row[sample.index] = continuation(sample, total, max(0, total - computed))
                self.tree.set_idle(sample.seq)
            admitted.remove(unit)
            prefix.remaining -= len(unit.live)
            if prefix.remaining == 0:
                prefix.call.remaining -= 1
                prefix.call.settle()


def continuation(sample: LiveSample, prompt_tokens: int, cached: int) -> Continuation:
    data = b"".join(sample.pieces)
    keep = len(data) if sample.cut is None else sample.cut
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offsets: list[int] = []
    kept_logprobs: list[float] = []
    chars = 0
    consumed = 0
    for piece, logprob in zip(sample.pieces, sample.logprobs, strict=True):
        if consumed >= keep:  # tokens wholly inside or after the stop string are dropped
            break
        offsets.append(chars)
        kept_logprobs.append(logprob)
        chars += len(decoder.decode(piece[: max(0, keep - consumed)]))
        consumed += len(piece)
    return Continuation(
        text=data[:keep].decode("utf-8", errors="replace"),
        finish_reason=sample.finish or "length",
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached,
        generated_tokens=len(sample.tokens),
        token_logprobs=tuple(kept_logprobs),
        token_offsets=tuple(offsets),
        stop_string=sample.stop_string,
    )
