"""A request's search, watched while it runs: cancelled when its client goes away or its time
runs out, and its failure reported to its client alone, each outcome counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ttscale.errors import ContextLengthError
from ttscale.run.solve import SolveResult
from ttscale.serve.http import RequestError
from ttscale.serve.metrics import ServerMetrics
from ttscale.serve.refusals import bad

logger = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.2


async def watched(request, search: Callable[[], Awaitable[SolveResult]], timeout_s: float,
                  metrics: ServerMetrics) -> SolveResult:
    """Run the search as a task; cancel it when the client goes away or time runs out."""
    task = asyncio.ensure_future(search())
    try:
        await _until_done(task, request, time.monotonic() + timeout_s, timeout_s, metrics)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    try:
        result = task.result()
    except RequestError:
        raise  # the gate's 429
    except ContextLengthError as exc:
        metrics.searches.labels("failed").inc()
        raise bad(str(exc)) from exc
    except Exception as exc:  # the search's own failure, reported to its client alone
        metrics.searches.labels("failed").inc()
        logger.exception("a search failed")
        raise RequestError(500, f"the search failed: {exc}", "server_error") from exc
    metrics.searches.labels("done").inc()
    return result


async def _until_done(task: asyncio.Future, request, deadline: float, timeout_s: float,
                      metrics: ServerMetrics) -> None:
    """Wait for the task, looking in on its client between waits."""
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        except asyncio.CancelledError:  # the server let go of the request
            metrics.searches.labels("cancelled").inc()
            raise
        if done:
            return
        if await request.is_disconnected():
            metrics.searches.labels("cancelled").inc()
            logger.info("client went away: its search is cancelled")
            raise RequestError(499, "the client closed the connection", "cancelled")
        if time.monotonic() > deadline:
            metrics.searches.labels("timeout").inc()
            raise RequestError(504, f"the search took longer than the server's request "
                                    f"timeout ({timeout_s:g} s): lower the budget or "
                                    f"max_tokens, or ask for a longer --request-timeout",
                               "timeout_error")
