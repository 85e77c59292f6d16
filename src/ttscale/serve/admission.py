"""How many searches the server runs at once and how many may wait: a bounded queue in front
of the scheduler. A request that finds both full is refused at once with 429 and a
Retry-After, never parked in an unbounded queue."""

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
    """At most ``max_running`` searches run and ``max_waiting`` wait for a slot."""

    def __init__(self, max_running: int, max_waiting: int) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ConfigError(f"the server needs at least 1 running search and 0 or more "
                              f"waiting; got {max_running} and {max_waiting}")
        self.max_running, self.max_waiting = max_running, max_waiting
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
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        start = time.monotonic()
        try:
            return await work()
        finally:
            self.running -= 1
            self._slots.release()
            self._observe(time.monotonic() - start)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, drained at the rate that
        slots have been freeing up."""
        if self._mean_s is None:
            return 1
        ahead = self.waiting + 1
        return max(1, min(MAX_RETRY_AFTER_S,
                          math.ceil(self._mean_s * ahead / self.max_running)))

    def _observe(self, seconds: float) -> None:
        self._mean_s = seconds if self._mean_s is None else 0.8 * self._mean_s + 0.2 * seconds
