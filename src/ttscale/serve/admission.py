"""How many searches the server runs at once and how many may wait: a bounded queue in front
of the scheduler, as vLLM's and SGLang's servers queue a burst rather than refuse it.

A request is refused at once with 429 and a Retry-After, never parked without bound, in two
cases of real overload: the queue is full (its bound is one of memory: a waiting request holds
only its body), or the wait it would face (the queue ahead, drained at the rate searches have
been ending) is longer than its time limit, so it would only time out in the queue."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ttscale.errors import ConfigError
from ttscale.serve.http import RequestError

T = TypeVar("T")
MAX_RETRY_AFTER_S = 60


class AdmissionGate:
    """At most ``max_running`` searches run and ``max_waiting`` wait for a slot; with
    ``timeout_s``, a request that would wait longer than that is refused instead of queued.
    ``clock`` measures how long searches hold a slot (a test's own clock, where it controls
    time)."""

    def __init__(self, max_running: int, max_waiting: int, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ConfigError(f"the server needs at least 1 running search and 0 or more "
                              f"waiting; got {max_running} and {max_waiting}")
        self.max_running, self.max_waiting = max_running, max_waiting
        self.timeout_s, self.clock = timeout_s, clock
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_running)
        self._mean_s: float | None = None  # moving average of how long a search holds a slot

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` once a slot is free; 429 at once when every slot and queue place is
        taken. Everything up to the first ``await`` runs in one step, so a request cancelled
        before it starts holds nothing."""
        if self.running + self.waiting >= self.max_running + self.max_waiting:
            raise RequestError(
                429, f"the server is busy: {self.running} searches running and {self.waiting} "
                     f"waiting, its limit; retry after the Retry-After header's seconds",
                "rate_limit_error", headers={"Retry-After": str(self.retry_after())})
        wait = self.expected_wait()
        if self.timeout_s is not None and wait is not None and wait > self.timeout_s:
            raise RequestError(
                429, f"the server is busy: a new search would wait about {wait:.0f}s for a "
                     f"slot ({self.waiting} waiting), past the {self.timeout_s:g}s a request "
                     "may take; retry after the Retry-After header's seconds",
                "rate_limit_error", headers={"Retry-After": str(self.retry_after())})
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        start = self.clock()
        try:
            return await work()
        finally:
            self.running -= 1
            self._slots.release()
            self._observe(self.clock() - start)

    def expected_wait(self) -> float | None:
        """Seconds a request arriving now would likely wait for a slot: the queue ahead,
        drained at the rate that slots have been freeing up (None before any search ended;
        0 while a slot is free)."""
        if self._mean_s is None:
            return None
        if self.running + self.waiting < self.max_running:
            return 0.0
        return self._mean_s * (self.waiting + 1) / self.max_running

    def retry_after(self) -> int:
        """Seconds until a place is likely free (see :meth:`expected_wait`)."""
        wait = self.expected_wait()
        return 1 if wait is None else max(1, min(MAX_RETRY_AFTER_S, math.ceil(wait)))

    def _observe(self, seconds: float) -> None:
        self._mean_s = seconds if self._mean_s is None else 0.8 * self._mean_s + 0.2 * seconds
