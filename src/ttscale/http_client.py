"""What every client of an OpenAI-compatible server shares: the API key it sends, and how it
reads a failed request (could a connection be opened at all, what the server said, whether the
prompt was too long) so that each failure can be told to the user in one line."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # only for annotations: importing the floor should not load the client
    import openai

logger = logging.getLogger(__name__)
T = TypeVar("T")

API_KEY_ENV_VARS = ("TTSCALE_API_KEY", "OPENAI_API_KEY")
DEFAULT_API_KEY = "EMPTY"

# what servers (vLLM, SGLang, llama.cpp, OpenAI) say when a prompt does not fit the context
CONTEXT_PATTERN = re.compile(
    r"context[ _-]?(length|window|size)|max_model_len|maximum (context|sequence) length"
    r"|too many tokens|prompt is too long|exceed_context|context_length_exceeded",
    re.IGNORECASE,
)


def resolve_api_key(api_key: str | None) -> str:
    """The key given, else the first one set in the environment, else a placeholder (local
    servers accept any key, but the client insists on one)."""
    if api_key:
        return api_key
    for var in API_KEY_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return DEFAULT_API_KEY


def after_retries(retries: int | None) -> str:
    """How many retries a failure came after, in words: "after 1 retry", "after 3 retries"."""
    if retries is None:
        return "after retries"
    return f"after {retries} {'retry' if retries == 1 else 'retries'}"


def one_line(reason: object) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= 300 else text[:297] + "..."


def root_cause(exc: BaseException) -> BaseException:
    """The most telling cause of a client error: the deepest OS error in its chain (e.g.
    ``ConnectionRefusedError``), else the last explicit cause."""
    deepest_os: BaseException | None = None
    last = exc
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            deepest_os = current
        if current.__cause__ is not None:
            last = current.__cause__
        current = current.__cause__ or current.__context__
    return deepest_os or last


def cause_text(exc: BaseException) -> str:
    """``"ConnectionRefusedError: [Errno 111] ..."``: the root cause's type and message."""
    cause = root_cause(exc)
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def is_connect_failure(exc: BaseException) -> bool:
    """True when no connection could be opened (as opposed to one that broke mid-request).

    Judged from the chain of causes: the HTTP library's ``ConnectError`` (httpx or httpx2,
    depending on the ``openai`` version) or the OS error beneath it."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return True
        if type(current).__name__ in ("ConnectError", "ConnectTimeout"):
            return True
        current = current.__cause__ or current.__context__
    return False


def status_message(exc: openai.APIStatusError) -> str:
    """The server's own words in an HTTP error answer, wherever its JSON body puts them."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return one_line(inner["message"])
        if isinstance(inner, str):
            return one_line(inner)
        if body.get("message"):
            return one_line(body["message"])
        if body.get("detail"):
            return one_line(body["detail"])
    return one_line(exc.message)


def extra_fields(obj: Any) -> dict[str, Any]:
    """The fields of a client response object that the OpenAI API does not define (a server's
    own additions, such as vLLM's ``stop_reason`` or ``max_model_len``)."""
    extra = getattr(obj, "model_extra", None)
    return dict(extra) if isinstance(extra, dict) else {}


# -- retries -------------------------------------------------------------------------------------
# The retry rule of every ttscale client of a server (policy, PRM): as the ``openai`` client's
# own (which ttscale turns off), plus a deadline on each attempt as a whole. A server that
# drips its answer a few bytes at a time never trips the per-read timeout of the HTTP library;
# the deadline bounds it.
RETRY_STATUSES = frozenset({408, 409, 429})
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0  # a server asking for a longer wait is not waited for


class AttemptTimeoutError(TimeoutError):
    """One attempt got no complete answer within its deadline."""


@dataclass(frozen=True)
class RetryRule:
    retries: int  # attempts after the first
    deadline: float  # seconds for one attempt, from sending the request to its last byte

    def backoff(self, retry: int, exc: BaseException) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): the server's Retry-After
        where it gives one, else exponential backoff with up to 25 % jitter."""
        after = retry_after(exc)
        if after is not None:
            return after
        return min(FIRST_BACKOFF_S * 2.0**retry, MAX_BACKOFF_S) * (1 - 0.25 * random.random())


def asked_wait(exc: BaseException) -> float | None:
    """The wait an HTTP error answer asks for, in seconds (``retry-after-ms``, else
    ``Retry-After``); None where it asks none or gives no usable number (an HTTP date,
    garbage, a negative or infinite one)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after") is not None:
            seconds = float(headers["retry-after"])
        else:
            return None
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after(exc: BaseException) -> float | None:
    """The wait an HTTP error answer asks for, when it is at most ``MAX_RETRY_AFTER_S``."""
    seconds = asked_wait(exc)
    return seconds if seconds is not None and seconds <= MAX_RETRY_AFTER_S else None


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt: no answer in time, a connection refused or broken, an answer
    that is not JSON (cut off on the way), or HTTP 408/409/429/5xx unless the server says not
    to retry (``x-should-retry: false``, or a Retry-After longer than we wait)."""
    if isinstance(exc, AttemptTimeoutError | json.JSONDecodeError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        if headers.get("x-should-retry") in ("true", "false"):
            return headers["x-should-retry"] == "true"
        asked = asked_wait(exc)
        if asked is not None and asked > MAX_RETRY_AFTER_S:
            return False  # asks for a wait longer than we wait
        return status in RETRY_STATUSES or status >= 500
    # the client's connection and timeout errors (openai.APIConnectionError and its
    # subclass APITimeoutError), and an answer it could not parse
    return type(exc).__name__ in ("APIConnectionError", "APITimeoutError",
                                  "APIResponseValidationError")


async def with_retries(attempt: Callable[[], Awaitable[T]], rule: RetryRule,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """``await attempt()`` under ``rule``: each try within its deadline, retryable failures
    tried again after a backoff; the last failure is raised as it is (``AttemptTimeoutError`` for a
    deadline) for the caller to word."""
    for retry in range(rule.retries + 1):
        try:
            try:
                async with asyncio.timeout(rule.deadline):
                    return await attempt()
            except TimeoutError as exc:
                raise AttemptTimeoutError(f"no complete answer within {rule.deadline:g}s") from exc
        except Exception as exc:
            if retry == rule.retries or not is_retryable(exc):
                raise
            delay = rule.backoff(retry, exc)
            logger.info("attempt %d failed (%s); retrying in %.1fs", retry + 1,
                        one_line(cause_text(exc)), delay)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
