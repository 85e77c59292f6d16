"""One turn of the continuous-batching loop: admit what fits, plan the batch (the next token of
every live sample, then chunks of admitted prefixes), decode it in calls of a bounded number of
rows, and hand the logits rows to the sampler."""

from __future__ import annotations

import numpy as np

from ttscale.engines.batch_sampling import BatchSampler
from ttscale.engines.batch_schedule import BatchSchedule
from ttscale.engines.batch_work import LiveSample, Unit
from ttscale.engines.decode_backend import DecodeBackend
from ttscale.engines.kv_slots import KVSlots
from ttscale.errors import ContextLengthError, EngineError

Owner = tuple[Unit, LiveSample | None]  # who reads a logits row: a sample, or a prefix's unit


class DecodeStep:
    def __init__(self, backend: DecodeBackend, slots: KVSlots, schedule: BatchSchedule,
                 sampler: BatchSampler, rows_per_call: int, prefill_tokens: int,
                 stats: dict[str, int]) -> None:
        """``rows_per_call``: tokens per llama_decode call; ``prefill_tokens``: prefix tokens
        computed per turn at most."""
        self.backend = backend
        self.slots = slots
        self.schedule = schedule
        self.sampler = sampler
        self.rows_per_call = rows_per_call
        self.prefill_tokens = prefill_tokens
        self.stats = stats

    def turn(self) -> None:
        self.schedule.drop_abandoned()
        self.schedule.admit()
        entries, owners = self._plan()
        if not entries:
            return
        # decode in calls of at most ``rows_per_call`` rows: the CPU kernels then compute each
        # row alike whatever shares its call, so results do not depend on the batch
        read: list[Owner] = []
        rows: list[np.ndarray] = []
        owner_of = iter(owners)
        for start in range(0, len(entries), self.rows_per_call):
            chunk = entries[start:start + self.rows_per_call]
            status, logits = self._decode(chunk)
            if status == 1:  # the cache could not place the call (and is as it was)
                if start == 0 and not self.schedule.make_room():
                    raise self._cache_full()
                break  # what is left goes in the next turn
            if status != 0:
                raise EngineError(f"llama_decode failed with status {status}")
            self.stats["batches"] += 1
            wanted = 0
            for token, position, seq, wants, unit in chunk:
                self.slots.tree.append(seq, token)
                if unit is not None:  # a prefix token: the unit's prefill moves on
                    unit.cursor = position + 1
                    self.stats["computed_prompt_tokens"] += 1
                if wants:
                    read.append(next(owner_of))
                    rows.append(np.array(logits[wanted]))
                    wanted += 1
        if read:
            self.sampler.after_decode(read, np.stack(rows))
        self.schedule.trim_idle()

    def _decode(self, chunk: list[tuple]) -> tuple[int, np.ndarray]:
        """One llama_decode call of the chunk's entries; returns its status and logits."""
        calls = [e[:4] for e in chunk]
        scratch = self.slots.scratch_seq
        if len(calls) == 1:
            # with several threads llama.cpp attends a lone query another way (splitting
            # the cache between threads), which rounds differently: a throwaway second
            # row keeps a lone sample's numbers those of any batch
            calls.append((calls[0][0], 0, scratch, False))
        status, logits = self.backend.decode(calls)
        if len(calls) > len(chunk):
            self.backend.seq_remove(scratch, 0)
        return status, logits

    def _plan(self) -> tuple[list[tuple], list[Owner]]:
        """Entries (token, position, sequence, wants logits, prefilling unit or None) to
        decode this turn — the next token of every live sample, then prefix tokens up to
        ``prefill_tokens`` — and, for each entry that wants logits, who reads them."""
        while True:
            entries: list[tuple] = []
            owners: list[Owner] = []
            admitted = self.schedule.admitted
            for unit in admitted:
                for sample in unit.live:
                    if sample.finish is None:
                        entries.append((sample.tokens[-1], sample.position, sample.seq, True,
                                        None))
                        owners.append((unit, sample))
            room = self.prefill_tokens
            for unit in admitted:
                if room <= 0:
                    break
                if not unit.prefilling:
                    continue
                tokens = unit.prefix.tokens
                end = min(len(tokens), unit.cursor + room)
                for position in range(unit.cursor, end):
                    last = position == len(tokens) - 1
                    entries.append((tokens[position], position, unit.seq, last, unit))
                    if last:
                        owners.append((unit, None))
                room -= end - unit.cursor
            if self.slots.tree.cells + len(entries) + 1 <= self.backend.n_ctx:  # + padding
                return entries, owners
            if not self.schedule.make_room():
                raise self._cache_full()

    def _cache_full(self) -> ContextLengthError:
        return ContextLengthError(
            f"the KV cache ({self.backend.n_ctx} tokens) is full; lower max_tokens "
            "or the number of samples per call, or give the engine a larger n_ctx")
