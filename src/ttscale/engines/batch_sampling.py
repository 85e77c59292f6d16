"""The continuous-batching loop's reading of a decoded batch: a computed prefix forks into its
samples, every live sample draws its next token from its own stream (:mod:`sampling`), and a
sample finishes at the end of sequence, a stop string or its token budget."""

from __future__ import annotations

import numpy as np

from ttscale.engines.batch_results import BatchResults
from ttscale.engines.batch_work import LiveSample, Unit
from ttscale.engines.decode_backend import DecodeBackend
from ttscale.engines.kv_slots import KVSlots
from ttscale.engines.sampling import sample_rng, sample_rows


class BatchSampler:
    def __init__(self, backend: DecodeBackend, slots: KVSlots, results: BatchResults,
                 stats: dict[str, int]) -> None:
        self.backend = backend
        self.slots = slots
        self.results = results
        self.stats = stats

    def after_decode(self, owners: list[tuple[Unit, LiveSample | None]],
                     logits: np.ndarray) -> None:
        """Read the logits rows of a batch: ``owners[k]`` is who asked for row ``k`` (a live
        sample, or a unit whose prefix was just computed)."""
        rows: list[int] = []
        samples: list[LiveSample] = []
        for k, (unit, sample) in enumerate(owners):
            if sample is not None:
                samples.append(sample)
                rows.append(k)
                continue
            unit.charged += len(unit.prefix.tokens) - unit.reused
            if unit.prefix.settings is None:
                self.results.answer_read(unit, logits[k])
                continue
            for new in self._fork(unit):
                samples.append(new)
                rows.append(k)
        if samples:
            self._sample(samples, logits[rows])
        self.results.retire()

    def _fork(self, unit: Unit) -> list[LiveSample]:
        """The prefix is computed: each sample gets its own sequence holding it."""
        prefix, settings = unit.prefix, unit.prefix.settings
        assert settings is not None
        length = len(prefix.tokens)
        self.slots.copy_prefix(unit)
        budget = max(1, min(settings.max_tokens, self.backend.n_ctx - length - 1))
        unit.live = [
            LiveSample(j, seq, length,
                       sample_rng(settings.seed, prefix.text, settings.first_sample + j),
                       budget, settings)
            for j, seq in zip(unit.samples, [unit.seq, *unit.extra_seqs], strict=True)]
        return unit.live

    def _sample(self, samples: list[LiveSample], logits: np.ndarray) -> None:
        groups: dict[tuple[float, float], list[int]] = {}
        for row, sample in enumerate(samples):
            key = (sample.settings.temperature, sample.settings.top_p)
            groups.setdefault(key, []).append(row)
        for (temperature, top_p), rows in groups.items():
            picked = logits if len(rows) == len(samples) else logits[rows]
            tokens, logprobs = sample_rows(picked, [samples[r].rng for r in rows],
                                           temperature, top_p)
            for k, r in enumerate(rows):
                sample = samples[r]
                if sample.tokens:
                    sample.position += 1  # the previous token is now in the cache
                self._accept(sample, int(tokens[k]), float(logprobs[k]))

    def _accept(self, sample: LiveSample, token: int, logprob: float) -> None:
        """Take a sampled token and decide whether the sample is finished."""
        self.stats["generated_tokens"] += 1
        sample.tokens.append(token)
        if self.backend.is_end_of_generation(token):
            sample.finish = "eos"
            return
        sample.logprobs.append(logprob)
        piece = self.backend.piece(token)
        previous = sample.byte_length
        sample.pieces.append(piece)
        sample.byte_length += len(piece)
        stop = sample.settings.stop
        if stop:
            # only the bytes a new stop string could span: the new piece plus the longest
            # stop string's length before it
            window = max(0, previous - max(len(s) for s in stop) + 1)
            tail, tail_start = _tail(sample.pieces, sample.byte_length, window)
            hits = [(at, s) for s in stop if (at := tail.find(s)) >= 0]
            if hits:
                at, hit = min(hits)
                sample.cut = tail_start + at
                sample.finish = "stop"
                sample.stop_string = hit.decode("utf-8")
                return
        if len(sample.tokens) >= sample.budget:
            sample.finish = "length"


def _tail(pieces: list[bytes], total: int, start: int) -> tuple[bytes, int]:
    """The bytes of ``pieces`` from byte ``start`` (rounded down to a piece), and where they
    begin; ``total`` is their summed length."""
    taken: list[bytes] = []
    begin = total
    for piece in reversed(pieces):
        if begin <= start:
            break
        taken.append(piece)
        begin -= len(piece)
    return b"".join(reversed(taken)), begin
