"""What ttscale's two servers (``ttscale serve`` and the PRM server) share: refusals with an
HTTP status, a size-capped body read, and the API-key check."""

from __future__ import annotations

import hmac

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class RequestError(Exception):
    """A request the server refuses: its HTTP status, a message saying what was wrong and what
    to do, the error type clients read, and the request field at fault (if one is)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.param, self.headers = param, headers or {}

    def body(self) -> dict:
        """OpenAI's error body (vLLM's too): clients read ``error.message``."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.status}}


async def read_body(request, limit: int) -> bytes:
    """The body, refused once past ``limit`` bytes (whether or not Content-Length says so)."""
    length = request.headers.get("content-length", "")
    too_large = RequestError(413, f"the request body is over {limit} bytes; send a shorter "
                                  "request", "request_too_large")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def check_api_key(headers, api_key: str | None) -> None:
    """Refuse (401) unless ``Authorization: Bearer <api_key>``; compared in constant time so
    that response times say nothing about how much of a guess was right."""
    if api_key is None:
        return
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             api_key.encode()):
        raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                           "authentication_error")
