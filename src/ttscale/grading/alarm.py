"""The time math-verify may take. It interrupts slow work with ``SIGALRM``, which Python
only allows in the main thread: there it gets :data:`MATH_VERIFY_TIMEOUT_S` seconds, and an
interval timer the caller already runs (``pytest-timeout``, its own alarm) is suspended
meanwhile and re-armed afterwards. Other threads get no timeout at all."""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MATH_VERIFY_TIMEOUT_S", "alarm_budget", "in_main_thread"]

MATH_VERIFY_TIMEOUT_S = 5
"""Seconds allowed for one ``math-verify`` parse or comparison (main thread only)."""


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def alarm_budget() -> Iterator[int | None]:
    """The timeout to give math-verify: None off the main thread. In the main thread an
    interval timer already running (pytest-timeout, a caller's own alarm) is suspended while
    math-verify uses SIGALRM and re-armed afterwards with the time it had left."""
    if not in_main_thread():
        yield None
        return
    try:
        remaining, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    except (AttributeError, ValueError, OSError):  # no interval timers on this platform
        yield MATH_VERIFY_TIMEOUT_S
        return
    started = time.monotonic()
    budget = MATH_VERIFY_TIMEOUT_S
    if remaining > 0:
        budget = max(1, min(budget, math.ceil(remaining)))
    # The alarm raises in whatever frame runs when it fires. If that is the finaliser of
    # some unrelated garbage run by the cyclic collector, Python swallows the exception and
    # math-verify runs on unbounded: keep the collector out of the timed window.
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield budget
    finally:
        if collecting:
            gc.enable()
        if remaining > 0:
            left = max(remaining - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)
