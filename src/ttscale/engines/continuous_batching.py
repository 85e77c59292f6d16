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

import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Sequence

from ttscale.engines.batch_results import BatchResults
from ttscale.engines.batch_sampling import BatchSampler
from ttscale.engines.batch_schedule import BatchSchedule
from ttscale.engines.batch_work import Call, PrefixWork, SampleSettings
from ttscale.engines.decode_backend import DecodeBackend
from ttscale.engines.decode_step import DecodeStep
from ttscale.engines.kv_slots import KVSlots
from ttscale.engines.kv_tree import KVTree
from ttscale.errors import EngineError

logger = logging.getLogger(__name__)


class ContinuousBatcher:
    """The front of the loop: callers submit work from any thread; one worker thread takes it
    in and runs turns (:class:`~ttscale.engines.decode_step.DecodeStep`) while there is any."""

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
        self.stats = {"computed_prompt_tokens": 0, "generated_tokens": 0, "batches": 0,
                      "pushed_back": 0}
        self.slots = KVSlots(backend, n_seq, idle_cells)
        self.schedule = BatchSchedule(self.slots, max_live, self.stats)
        sampler = BatchSampler(backend, self.slots, BatchResults(self.schedule, self.tree),
                               self.stats)
        self.step = DecodeStep(backend, self.slots, self.schedule, sampler, rows_per_call,
                               prefill_tokens, self.stats)
        self._inbox: deque[PrefixWork] = deque()
        self._staged: list[PrefixWork] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clear_requested = False

    @property
    def tree(self) -> KVTree:
        return self.slots.tree

    # -- submitting (any thread) ---------------------------------------------------------------
    def submit(self, prefixes: Sequence[tuple[str, list[int]]], settings: SampleSettings | None,
               read_ids: dict[str, int] | None = None, staged: bool = False
               ) -> concurrent.futures.Future:
        """Queue sampling (``settings``) or next-token reads (``read_ids``) for prefixes;
        the future gives one row of continuations (or one read) per prefix. ``staged`` work
        waits for :meth:`flush`, so that calls made together reach the loop together."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        width = settings.n if settings else 1
        call = Call(future, [[None] * width if settings else None for _ in prefixes],
                    len(prefixes))
        items = [PrefixWork(call, i, text, tokens, settings, read_ids or {}, width)
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
            self._wake_worker()
        return future

    def flush(self) -> None:
        """Hand every staged call to the loop at once."""
        with self._cond:
            if not self._staged or self._stopping:
                return
            self._inbox.extend(self._staged)
            self._staged.clear()
            self._wake_worker()

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
                self.slots.release_idle()
            else:
                self._clear_requested = True
                self._cond.notify()

    def _wake_worker(self) -> None:
        """Start the worker on first use, and tell it there is work (holding ``_cond``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ttscale-decode",
                                            daemon=True)
            self._thread.start()
        self._cond.notify()

    # -- the worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._inbox or self.schedule.has_work() or self._stopping
                           or self._clear_requested):
                    self._cond.wait()
                if self._stopping:
                    self._fail_all(EngineError("the engine was closed"))
                    return
                if self._clear_requested:
                    self.slots.release_idle()
                    self._clear_requested = False
                self._take_inbox()
            try:
                self.step.turn()
            except Exception as error:  # the model itself failed: every call in flight fails
                logger.exception("decoding failed")
                with self._cond:
                    self._fail_all(error if isinstance(error, EngineError)
                                   else EngineError(f"decoding failed: {error}"))

    def _take_inbox(self) -> None:
        while self._inbox:
            prefix = self._inbox.popleft()
            if not prefix.call.dropped:
                self.schedule.enqueue(prefix)

    def _fail_all(self, error: BaseException) -> None:
        calls = {id(call): call for call in self.schedule.calls()}
        calls.update({id(p.call): p.call for p in [*self._inbox, *self._staged]})
        for call in calls.values():
            call.fail(error)
        self.schedule.clear()
        self._inbox.clear()
        self._staged.clear()
        self.slots.clear()
