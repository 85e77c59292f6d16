"""Continuous batching for an in-process engine: every caller's samples decode in one batch.

Callers (the searches of many problems, through ``extend`` and ``next_token_logprobs``) submit
work from any thread; one worker thread owns the model. Each turn it

1. admits waiting work while sequence slots, batch room and KV cells allow: a prefix is matched
   against every cell the cache holds (:mod:`ttscale.engines.kv_tree`), the matched cells are
   taken over or copied, and only the rest of the prefix is computed;
2. decodes one batch: the next token of every live sample plus chunks of admitted prefixes;
3. samples the next token of every live sample, and finishes those that hit a stop string, the
   end of sequence or their token budget. A finished sample's sequence stays in the cache, so
   the next step of a search (its prefix ends with this step) computes only the delimiter.

A sample draws from its own random stream (seed, prefix, index), so what it generates does not
depend on when it was admitted or what shared its batch; work pushed out of the cache when the
cells run short (the most recently admitted first) is redone the same way. An error in one
caller's request fails that call alone."""

from __future__ import annotations

import codecs
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ttscale.engines.base import Continuation, FinishReason, NextTokenLogprobs
from ttscale.engines.kv_tree import KVTree, common_prefix_length
from ttscale.engines.sampling import sample_rng, sample_rows
from ttscale.errors import ContextLengthError, EngineError

logger = logging.getLogger(__name__)

Entry = tuple[int, int, int, bool]  # token, position, sequence, wants logits


class DecodeBackend(Protocol):
    """What the loop needs of a model with a multi-sequence KV cache."""

    n_ctx: int

    def decode(self, entries: Sequence[Entry]) -> tuple[int, np.ndarray]:
        """Decode one batch; returns llama_decode's status and the logits rows of the entries
        that asked for them, in order (valid until the next decode)."""
        ...

    def seq_copy(self, source: int, target: int, start: int, end: int) -> None: ...

    def seq_remove(self, seq: int, start: int) -> None: ...

    def memory_clear(self) -> None: ...

    def piece(self, token: int) -> bytes: ...

    def is_end_of_generation(self, token: int) -> bool: ...


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
class _Call:
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


@dataclass
class _Prefix:
    call: _Call
    index: int  # in the call
    text: str
    tokens: list[int]
    settings: SampleSettings | None  # None: read next-token log-probs only
    read_ids: dict[str, int] = field(default_factory=dict)
    remaining: int = 0  # samples (or reads) still to finish


@dataclass
class _Sample:
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
class _Unit:
    """Samples of one prefix that share one computation of it (or one read)."""

    prefix: _Prefix
    samples: tuple[int, ...]  # sample indices; empty for a read
    seq: int = -1  # the sequence the prefix is computed in
    cursor: int = 0  # next prefix position to compute
    reused: int = 0  # prefix tokens taken from the cache
    charged: int = 0  # prefix tokens computed for it, also by earlier pushed-back tries
    extra_seqs: list[int] = field(default_factory=list)
    live: list[_Sample] = field(default_factory=list)
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


# an idle sequence is taken over (not copied) only when little of it would be cut away
ADOPT_SLACK = 4
# a prefix waits one batch for one being computed when that shares this many more tokens
WAIT_GAIN = 8


class ContinuousBatcher:
    def __init__(self, backend: DecodeBackend, n_seq: int, max_live: int,
                 idle_cells: int | None = None, rows_per_call: int = 16,
                 prefill_tokens: int = 512) -> None:
        """``max_live``: samples decoded at once at most; ``rows_per_call``: tokens per
        llama_decode call; ``prefill_tokens``: prefix tokens computed per turn at most;
        ``idle_cells``: cells that only finished sequences hold, kept for reuse (default:
        8192 or half the cache, whichever is less) — fewer cells in use keep attention
        cheap."""
        if rows_per_call < 1 or max_live < 1 or prefill_tokens < 1:
            raise ValueError("rows_per_call, max_live and prefill_tokens must be at least 1")
        self.backend = backend
        # the last sequence is scratch space for the padding row of one-row calls
        self.scratch_seq = n_seq - 1
        self.tree = KVTree(n_seq - 1)
        self.max_live = max_live
        self.rows_per_call = rows_per_call
        self.prefill_tokens = prefill_tokens
        self.idle_cells = min(8192, backend.n_ctx // 2) if idle_cells is None else idle_cells
        self._inbox: deque[_Prefix] = deque()
        self._staged: list[_Prefix] = []
        self._waiting: deque[_Unit] = deque()
        self._admitted: list[_Unit] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clear_requested = False
        self._order = 0
        self.stats = {"computed_prompt_tokens": 0, "generated_tokens": 0, "batches": 0,
                      "pushed_back": 0}

    # -- submitting (any thread) ---------------------------------------------------------------
    def submit(self, prefixes: Sequence[tuple[str, list[int]]], settings: SampleSettings | None,
               read_ids: dict[str, int] | None = None, staged: bool = False
               ) -> concurrent.futures.Future:
        """Queue sampling (``settings``) or next-token reads (``read_ids``) for prefixes;
        the future gives one row of continuations (or one read) per prefix. ``staged`` work
        waits for :meth:`flush`, so that calls made together reach the loop together."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        width = settings.n if settings else 1
        call = _Call(future, [[None] * width if settings else None for _ in prefixes],
                     len(prefixes))
        items = [_Prefix(call, i, text, tokens, settings, read_ids or {}, width)
                 for i, (text, tokens) in enumerate(prefixes)]
        with self._cond:
            if self._stopping:
                raise EngineError("the engine was closed")
            if not items:
                future.set_result([])
                return future
            if staged:
                self._staged.extend(items)
                return future
            self._inbox.extend(items)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ttscale-decode",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    def flush(self) -> None:
        """Hand every staged call to the loop at once."""
        with self._cond:
            if not self._staged or self._stopping:
                return
            self._inbox.extend(self._staged)
            self._staged.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ttscale-decode",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def clear(self) -> None:
        """Forget every cached prefix. Work in flight keeps its cells; work submitted after
        this call sees an empty cache."""
        with self._cond:
            if self._thread is None:
                self._release_idle()
            else:
                self._clear_requested = True
                self._cond.notify()

    # -- the worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._inbox or self._waiting or self._admitted or self._stopping
                           or self._clear_requested):
                    self._cond.wait()
                if self._stopping:
                    self._fail_all(EngineError("the engine was closed"))
                    return
                if self._clear_requested:
                    self._release_idle()
                    self._clear_requested = False
                self._take_inbox()
            try:
                self._turn()
            except Exception as error:  # the model itself failed: every call in flight fails
                logger.exception("decoding failed")
                with self._cond:
                    self._fail_all(error if isinstance(error, EngineError)
                                   else EngineError(f"decoding failed: {error}"))

    def _take_inbox(self) -> None:
        while self._inbox:
            prefix = self._inbox.popleft()
            if prefix.call.dropped:
                continue
            settings = prefix.settings
            if settings is None:
                self._waiting.append(_Unit(prefix, ()))
                continue
            # a unit must fit the cache alone: its prefix plus every sample at full length
            room = self.backend.n_ctx - len(prefix.tokens)
            size = max(1, min(self.max_live, self.tree.n_seq, room // (settings.max_tokens + 1)))
            for start in range(0, settings.n, size):
                samples = tuple(range(start, min(settings.n, start + size)))
                self._waiting.append(_Unit(prefix, samples))

    def _turn(self) -> None:
        self._drop_abandoned()
        self._admit()
        entries, owners = self._plan_batch()
        if not entries:
            return
        # decode in calls of at most ``rows_per_call`` rows: the CPU kernels then compute each
        # row alike whatever shares its call, so results do not depend on the batch
        read: list[tuple[_Unit, _Sample | None]] = []
        rows: list[np.ndarray] = []
        owner_of = iter(owners)
        for start in range(0, len(entries), self.rows_per_call):
            chunk = entries[start:start + self.rows_per_call]
            calls = [e[:4] for e in chunk]
            if len(calls) == 1:
                # with several threads llama.cpp attends a lone query another way (splitting
                # the cache between threads), which rounds differently: a throwaway second
                # row keeps a lone sample's numbers those of any batch
                calls.append((calls[0][0], 0, self.scratch_seq, False))
            status, logits = self.backend.decode(calls)
            if len(calls) > len(chunk):
                self.backend.seq_remove(self.scratch_seq, 0)
            if status == 1:  # the cache could not place the call (and is as it was)
                if start == 0 and not self._make_room():
                    raise ContextLengthError(
                        f"the KV cache ({self.backend.n_ctx} tokens) is full; lower max_tokens "
                        "or the number of samples per call, or give the engine a larger n_ctx")
                break  # what is left goes in the next turn
            if status != 0:
                raise EngineError(f"llama_decode failed with status {status}")
            self.stats["batches"] += 1
            wanted = 0
            for token, position, seq, wants, unit in chunk:
                self.tree.append(seq, token)
                if unit is not None:  # a prefix token: the unit's prefill moves on
                    unit.cursor = position + 1
                    self.stats["computed_prompt_tokens"] += 1
                if wants:
                    read.append(next(owner_of))
                    rows.append(np.array(logits[wanted]))
                    wanted += 1
        if read:
            self._after_decode(read, np.stack(rows))
        self._trim_idle()

    # -- admission -----------------------------------------------------------------------------
    def _live_count(self) -> int:
        return sum(len(u.samples) for u in self._admitted)

    def _admit(self) -> None:
        deferred: list[_Unit] = []
        while self._waiting:
            unit = self._waiting[0]
            if self._admitted and self._live_count() + len(unit.samples) > self.max_live:
                break
            if self._better_after_prefill(unit):
                deferred.append(self._waiting.popleft())
                continue
            if not self._place(unit):
                if not self._admitted:  # it cannot fit even alone: fail its call only
                    self._waiting.popleft()
                    self._fail(unit.prefix.call, ContextLengthError(
                        f"a prefix of {len(unit.prefix.tokens)} tokens with "
                        f"{len(unit.samples)} samples does not fit the KV cache "
                        f"({self.backend.n_ctx} cells, {self.tree.n_seq} sequences)"))
                    continue
                break
            self._waiting.popleft()
            self._admitted.append(unit)
        self._waiting.extendleft(reversed(deferred))

    def _better_after_prefill(self, unit: _Unit) -> bool:
        """Whether a prefix now being computed shares much more with this one than the cache
        holds: waiting one batch then saves computing the shared part twice."""
        tokens = unit.prefix.tokens
        held = None
        for other in self._admitted:
            if other.prefilling:
                held = self.tree.match(tokens).length if held is None else held
                if common_prefix_length(other.prefix.tokens, tokens) > held + WAIT_GAIN:
                    return True
        return False

    def _place(self, unit: _Unit) -> bool:
        """Give the unit its sequences and its cached prefix; False when they do not fit.

        In order of preference: copy the cached prefix from the sequence holding it (taking
        that sequence over instead when little of it would be cut away), take it over anyway
        when slots are short, or start from nothing."""
        tree, tokens = self.tree, unit.prefix.tokens
        match = tree.match(tokens)
        # the last prefix token is always computed: its logits give the next token
        reuse = min(match.length, len(tokens) - 1)
        options: list[tuple[str, int]] = []
        if match.holder is not None:
            holder = tree.seqs[match.holder]
            if not holder.busy and len(holder.path) - reuse <= ADOPT_SLACK:
                options.append(("adopt", reuse))
            else:
                options.append(("copy", reuse))
                if not holder.busy:
                    options.append(("adopt", reuse))
        options.append(("fresh", 0))
        for how, reuse in options:
            need_slots = unit.slots - (how == "adopt")
            need_cells = len(tokens) - reuse + len(unit.samples) + self._live_count()
            if how == "adopt":  # cutting the taken-over sequence back frees its tail
                need_cells -= len(tree.seqs[match.holder].path) - reuse
            protect = {match.holder} if how != "fresh" else set()
            if self._evict_for(need_slots, need_cells, protect):
                break
        else:
            return False
        if how == "adopt":
            seq = match.holder
            tree.set_busy(seq)
            self.backend.seq_remove(seq, reuse)
            tree.truncate(seq, reuse)
        else:
            seq = tree.allocate()
            if reuse:
                self.backend.seq_copy(match.holder, seq, 0, reuse)
                tree.copy(match.holder, seq, reuse)
        unit.seq, unit.cursor, unit.reused = seq, reuse, reuse
        unit.extra_seqs = [tree.allocate() for _ in range(len(unit.samples) - 1)]
        self._order += 1
        unit.order = self._order
        return True

    def _evict_for(self, slots: int, cells: int, protect: set[int]) -> bool:
        """Evict idle sequences (least recently used first) until ``slots`` are free and
        ``cells`` more fit; False if that cannot be done."""
        def fits() -> bool:
            return self.tree.free_slots >= slots and self.tree.cells + cells <= self.backend.n_ctx

        for state in self.tree.idle():
            if fits():
                break
            if state.id not in protect:
                self._release(state.id)
        return fits()

    def _trim_idle(self) -> None:
        """Keep the cells that only finished sequences hold within ``idle_cells``: every cell
        in the cache is attended over (masked) by every row, so idle cells slow decoding
        (measured: 17k idle cells halve it). Sequences that waiting work would reuse stay."""
        if self.tree.cells <= self.idle_cells:
            return
        busy = len({id(c) for s in self.tree.seqs.values() if s.busy for c in s.path})
        if self.tree.cells - busy <= self.idle_cells:
            return
        soon = list(self._waiting)[:64]
        wanted = {self.tree.match(u.prefix.tokens).holder for u in soon}
        for state in self.tree.idle():
            if self.tree.cells - busy <= self.idle_cells:
                break
            if state.id not in wanted:
                self._release(state.id)

    def _release(self, seq: int) -> None:
        self.backend.seq_remove(seq, 0)
        self.tree.release(seq)

    def _release_idle(self) -> None:
        for state in self.tree.idle():
            self._release(state.id)

    def _make_room(self) -> bool:
        """Free cells: evict every idle sequence, else push back the most recently admitted
        unit. False when nothing can be freed."""
        if self.tree.idle():
            self._release_idle()
            return True
        if len(self._admitted) < 2:
            return False
        unit = max(self._admitted, key=lambda u: u.order)
        self._admitted.remove(unit)
        for seq in unit.seqs:
            self._release(seq)
        # all its samples are drawn again (their streams are fixed, so they come out the
        # same); the prefix tokens it computed stay charged
        again = _Unit(unit.prefix, unit.samples,
                      charged=unit.charged + max(0, unit.cursor - unit.reused))
        self._waiting.appendleft(again)
        self.stats["pushed_back"] += 1
        logger.info("KV cache full: pushed back a unit of %d samples", len(unit.samples))
        return True

    def _drop_abandoned(self) -> None:
        """Forget the work of calls that failed or whose caller stopped waiting."""
        for unit in [u for u in self._admitted if u.prefix.call.dropped]:
            self._admitted.remove(unit)
            for seq in unit.seqs:
                self._release(seq)
        if any(u.prefix.call.dropped for u in self._waiting):
            self._waiting = deque(u for u in self._waiting if not u.prefix.call.dropped)

    # -- one batch -----------------------------------------------------------------------------
    def _plan_batch(self) -> tuple[list[tuple], list[tuple[_Unit, _Sample | None]]]:
        """Entries (token, position, sequence, wants logits, prefilling unit or None) to
        decode this turn — the next token of every live sample, then prefix tokens up to
        ``prefill_tokens`` — and, for each entry that wants logits, who reads them."""
        while True:
            entries: list[tuple] = []
            owners: list[tuple[_Unit, _Sample | None]] = []
            for unit in self._admitted:
                for sample in unit.live:
                    if sample.finish is None:
                        entries.append((sample.tokens[-1], sample.position, sample.seq, True,
                                        None))
                        owners.append((unit, sample))
            room = self.prefill_tokens
            for unit in self._admitted:
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
            if self.tree.cells + len(entries) + 1 <= self.backend.n_ctx:  # + a padding row
                return entries, owners
            if not self._make_room():
                raise ContextLengthError(
                    f"the KV cache ({self.backend.n_ctx} tokens) is full; lower max_tokens "
                    "or the number of samples per call, or give the engine a larger n_ctx")

    def _after_decode(self, owners: list[tuple[_Unit, _Sample | None]],
                      logits: np.ndarray) -> None:
        rows: list[int] = []
        samples: list[_Sample] = []
        for k, (unit, sample) in enumerate(owners):
            if sample is not None:
                samples.append(sample)
                rows.append(k)
                continue
            unit.charged += len(unit.prefix.tokens) - unit.reused
            if unit.prefix.settings is None:
                self._finish_read(unit, logits[k])
                continue
            for new in self._fork(unit):
                samples.append(new)
                rows.append(k)
        if samples:
            self._sample(samples, logits[rows])
        self._retire()

    def _fork(self, unit: _Unit) -> list[_Sample]:
        """The prefix is computed: each sample gets its own sequence holding it."""
        prefix, settings = unit.prefix, unit.prefix.settings
        assert settings is not None
        length = len(prefix.tokens)
        for seq in unit.extra_seqs:
            self.backend.seq_copy(unit.seq, seq, 0, length)
            self.tree.copy(unit.seq, seq, length)
        budget = max(1, min(settings.max_tokens, self.backend.n_ctx - length - 1))
        unit.live = [
            _Sample(j, seq, length,
                    sample_rng(settings.seed, prefix.text, settings.first_sample + j),
                    budget, settings)
            for j, seq in zip(unit.samples, [unit.seq, *unit.extra_seqs], strict=True)]
        return unit.live

    def _finish_read(self, unit: _Unit, row: np.ndarray) -> None:
        values = row.astype(np.float64)
        top = values.max()
        log_normaliser = top + np.log(np.exp(values - top).sum())
        prefix = unit.prefix
        total = len(prefix.tokens)
        prefix.call.results[prefix.index] = NextTokenLogprobs(
            logprobs={c: float(values[t] - log_normaliser) for c, t in prefix.read_ids.items()},
            prompt_tokens=total, cached_prompt_tokens=max(0, total - unit.charged))
        self._admitted.remove(unit)
        self.tree.set_idle(unit.seq)
        prefix.call.remaining -= 1
        prefix.call.settle()

    def _sample(self, samples: list[_Sample], logits: np.ndarray) -> None:
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

    def _accept(self, sample: _Sample, token: int, logprob: float) -> None:
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

    def _retire(self) -> None:
        """Hand back finished samples; a unit whose samples are all done leaves the batch and
        its sequences stay as cache."""
        for unit in [u for u in self._admitted
                     if u.live and all(s.finish is not None for s in u.live)]:
            prefix = unit.prefix
            row = prefix.call.results[prefix.index]
            total = len(prefix.tokens)
            for k, sample in enumerate(unit.live):
                computed = unit.charged if k == 0 else 0
                row[sample.index] = _continuation(sample, total, max(0, total - computed))
                self.tree.set_idle(sample.seq)
            self._admitted.remove(unit)
            prefix.remaining -= len(unit.live)
            if prefix.remaining == 0:
                prefix.call.remaining -= 1
                prefix.call.settle()

    def _fail(self, call: _Call, error: BaseException) -> None:
        call.failed = True  # its other units are dropped at the next turn
        if not call.future.done():
            call.future.set_exception(error)

    def _fail_all(self, error: BaseException) -> None:
        calls = {id(u.prefix.call): u.prefix.call for u in [*self._admitted, *self._waiting]}
        calls.update({id(p.call): p.call for p in [*self._inbox, *self._staged]})
        for call in calls.values():
            call.failed = True
            if not call.future.done():
                call.future.set_exception(error)
        self._admitted.clear()
        self._waiting.clear()
        self._inbox.clear()
        self._staged.clear()
        self.backend.memory_clear()
        self.tree.clear()


def _continuation(sample: _Sample, prompt_tokens: int, cached: int) -> Continuation:
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

