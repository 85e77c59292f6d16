"""The retry rule every ttscale client of a server follows, on a clock the test controls: what
is retried, how long it waits, when it gives up, and the deadline on one attempt."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from ttscale.http_client import (
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    MAX_RETRY_AFTER_S,
    AttemptTimeoutError,
    RetryRule,
    is_retryable,
    with_retries,
)


class HTTPError(Exception):
    """What the HTTP client raises for an error answer: a status and the answer's headers."""

    def __init__(self, status: int, **headers: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = SimpleNamespace(headers={k.replace("_", "-"): v
                                                 for k, v in headers.items()})


class Script:
    """An attempt that fails with the given errors in turn, then answers ``"ok"``."""

    def __init__(self, *failures: BaseException | str) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                await asyncio.Event().wait()
            raise failure
        return "ok"


def _run(attempt, rule):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def go():
        return await with_retries(attempt, rule, sleep=sleep)

    return asyncio.run(go()), waits


def test_retryable_failures_are_retried_with_growing_backoff():
    attempt = Script(HTTPError(503), HTTPError(500), HTTPError(429), HTTPError(408))
    result, waits = _run(attempt, RetryRule(retries=4, deadline=5))
    assert result == "ok" and attempt.calls == 5
    for k, wait in enumerate(waits):
        full = min(FIRST_BACKOFF_S * 2**k, MAX_BACKOFF_S)
        assert 0.75 * full <= wait <= full


def test_the_servers_retry_after_is_the_wait():
    attempt = Script(HTTPError(429, retry_after="7"), HTTPError(503, retry_after_ms="250"))
    result, waits = _run(attempt, RetryRule(retries=2, deadline=5))
    assert result == "ok" and waits == [7.0, 0.25]


def test_a_wait_longer_than_the_limit_or_a_server_that_says_no_is_not_retried():
    too_long = HTTPError(429, retry_after=str(MAX_RETRY_AFTER_S + 1))
    too_long_ms = HTTPError(429, retry_after_ms=str((MAX_RETRY_AFTER_S + 1) * 1000))
    told_not_to = HTTPError(503, x_should_retry="false")
    for error in (too_long, too_long_ms, told_not_to):
        attempt = Script(error)
        with pytest.raises(HTTPError):
            _run(attempt, RetryRule(retries=3, deadline=5))
        assert attempt.calls == 1
    assert is_retryable(HTTPError(400, x_should_retry="true"))


def test_a_wait_that_is_no_usable_number_gets_the_usual_backoff():
    for header in ("-5", "inf", "nan", "Wed, 21 Oct 2026 07:28:00 GMT"):
        attempt = Script(HTTPError(503, retry_after=header))
        result, [wait] = _run(attempt, RetryRule(retries=1, deadline=5))
        assert result == "ok" and 0.75 * FIRST_BACKOFF_S <= wait <= FIRST_BACKOFF_S, header


def test_client_errors_are_raised_at_once():
    for status in (400, 401, 404, 422):
        attempt = Script(HTTPError(status))
        with pytest.raises(HTTPError, match=str(status)):
            _run(attempt, RetryRule(retries=3, deadline=5))
        assert attempt.calls == 1


def test_it_gives_up_after_its_retries_with_the_last_failure():
    attempt = Script(HTTPError(500), HTTPError(502), HTTPError(503), HTTPError(504))
    with pytest.raises(HTTPError, match="503"):
        _run(attempt, RetryRule(retries=2, deadline=5))
    assert attempt.calls == 3


def test_an_attempt_that_never_ends_meets_its_deadline_and_is_retried():
    attempt = Script("hang", "hang")
    result, waits = _run(attempt, RetryRule(retries=2, deadline=0.05))
    assert result == "ok" and attempt.calls == 3 and len(waits) == 2
    attempt = Script("hang", "hang")
    with pytest.raises(AttemptTimeoutError, match="within 0.05s"):
        _run(attempt, RetryRule(retries=1, deadline=0.05))


def test_an_answer_cut_off_is_retried():
    try:
        json.loads('{"choices": [')
    except json.JSONDecodeError as cut:
        attempt = Script(cut)
    assert _run(attempt, RetryRule(retries=1, deadline=5))[0] == "ok"
