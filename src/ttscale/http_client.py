"""What every client of an OpenAI-compatible server shares: the API key it sends, and how it
reads a failed request (could a connection be opened at all, what the server said, whether the
prompt was too long) so that each failure can be told to the user in one line."""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: importing the floor should not load the client
    import openai

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
