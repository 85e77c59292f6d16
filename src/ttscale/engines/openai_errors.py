"""One-line ttscale errors for what the ``openai`` client raises against a policy server,
each saying what went wrong and what to do (start the server, fix --base-url, ...)."""

from __future__ import annotations

import json

import openai

from ttscale.errors import (
    ContextLengthError,
    EngineError,
    ModelLoadError,
    RetryableEngineError,
)
from ttscale.http_client import (
    API_KEY_ENV_VARS,
    CONTEXT_PATTERN,
    AttemptTimeoutError,
    after_retries,
    cause_text,
    is_connect_failure,
    one_line,
    status_message,
)


def unreachable_message(base_url: str, reason: object, model: str | None = None) -> str:
    hint = f"vllm serve {model}" if model else "vllm serve MODEL"
    return (
        f"cannot reach the OpenAI-compatible server at {base_url}: {one_line(reason)}; "
        f"start it (e.g. `{hint}`) or check --base-url"
    )


def translate_error(exc: Exception, base_url: str, model: str | None,
                    retries: int | None = None) -> Exception:
    """Map what a request to the server raised (after ``retries`` retries) to a ttscale
    error: one line naming the server and the cause."""
    after = after_retries(retries)
    if isinstance(exc, openai.APIConnectionError) and is_connect_failure(exc):
        # Could not open a connection at all (refused, unknown host, connect timeout): the
        # server is not there, and retrying inside a search will not bring it back.
        return ModelLoadError(unreachable_message(base_url, f"{cause_text(exc)} ({after})",
                                                  model))
    if isinstance(exc, openai.APITimeoutError | AttemptTimeoutError):
        return RetryableEngineError(
            f"request to {base_url} timed out ({one_line(exc)}, {after}); the server may be "
            "overloaded or stuck: lower --concurrency or raise the timeout"
        )
    if isinstance(exc, openai.APIConnectionError):
        return RetryableEngineError(
            f"connection to {base_url} failed mid-request ({after}): "
            f"{one_line(cause_text(exc))}"
        )
    if isinstance(exc, json.JSONDecodeError):
        return RetryableEngineError(f"the server at {base_url} answered with a body that is "
                                    f"not JSON ({after}): {one_line(exc)}")
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, base_url, model, after)
    if isinstance(exc, openai.APIError):
        return EngineError(f"bad answer from the server at {base_url}: {one_line(exc)}")
    return exc


def _status_error(exc: openai.APIStatusError, base_url: str, model: str | None,
                  after: str = "after retries") -> Exception:
    """The error for an HTTP error answer, by what the status and the message say."""
    status = exc.status_code
    message = status_message(exc)
    code = exc.code if isinstance(exc.code, str) else ""
    if status in (401, 403):
        return EngineError(
            f"the server at {base_url} rejected the API key (HTTP {status}: {message}); "
            f"set {API_KEY_ENV_VARS[0]} (or {API_KEY_ENV_VARS[1]}) or pass --api-key"
        )
    if CONTEXT_PATTERN.search(message) or CONTEXT_PATTERN.search(code):
        return ContextLengthError(
            f"prompt plus max_tokens does not fit the context window of the model at "
            f"{base_url} (HTTP {status}: {message}); shorten the prompt, lower max_tokens "
            "or serve the model with a longer context"
        )
    if status == 404:
        return ModelLoadError(
            f"HTTP 404 from {base_url} for model {model!r}: {message}; check --base-url "
            "(it usually ends in /v1) and --model (see the server's GET /v1/models)"
        )
    if status in (408, 409, 429) or status >= 500:
        return RetryableEngineError(
            f"the server at {base_url} kept failing (HTTP {status}, {after}): {message}"
        )
    return EngineError(
        f"the server at {base_url} refused the request (HTTP {status}): {message}"
    )


def listing_error(exc: Exception, base_url: str) -> Exception:
    """The error for a failed ``GET /models``: nothing answering there is a load error."""
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        text = cause_text(exc)
        if isinstance(exc, openai.APITimeoutError):
            text = "no answer to GET /models in time"
        return ModelLoadError(unreachable_message(base_url, text))
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 404:
        return ModelLoadError(
            f"{base_url} answered GET /models with HTTP 404; check --base-url "
            "(for an OpenAI-compatible server it usually ends in /v1)"
        )
    return translate_error(exc, base_url, None)
