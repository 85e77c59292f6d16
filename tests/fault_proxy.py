"""A fault-injecting HTTP proxy: a real TCP server on 127.0.0.1 between ttscale and a real
OpenAI-compatible server (a policy or a PRM server), which breaks chosen requests the ways
networks and servers break.

    python tests/fault_proxy.py --upstream 127.0.0.1:8000 --port 9000

Requests are passed through unchanged, one per connection, until a fault rule matches. Rules
are set over the proxy's own port (paths under ``/_proxy/``, never forwarded):

- ``POST /_proxy/faults`` with ``{"kind": K, "match": TEXT, "times": N, ...}`` adds a rule: the
  next ``N`` requests (``-1``: every one, until cleared) whose body holds ``TEXT`` (default: any)
  meet fault ``K``:

  ``refuse``     the proxy stops listening for ``seconds`` (connections are refused), then
                 listens again; ``times`` does not apply
  ``reset``      half the upstream's answer, then a TCP reset
  ``stall``      no answer for ``seconds`` (default 3600), then the connection closes
  ``status``     HTTP ``status`` (429, 500, 503, ...) in OpenAI's error shape, with a
                 ``Retry-After: retry_after`` header when given
  ``truncate``   the upstream's answer cut to half its JSON body (Content-Length says so)
  ``malformed``  HTTP 200 with a body that is not JSON
  ``drip``       the upstream's answer, ``bytes`` bytes every ``interval`` seconds
  ``nan``        the upstream's answer with every fractional number under the keys
                 ``token_logprobs`` (completions) or ``data`` (pooling) replaced by JSON
                 ``value`` (NaN, Infinity, -Infinity, or a number)

- ``DELETE /_proxy/faults`` clears the rules and the log; ``GET /_proxy/log`` lists what each
  request met: ``{"path", "body", "fault", "time"}`` (``body`` a digest of the request body, the
  same for a retry; ``fault`` null when passed through)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

CONTROL = "/_proxy/"
HEAD_END = b"\r\n\r\n"


@dataclass
class Rule:
    kind: str
    match: str = ""
    times: int = -1
    params: dict[str, Any] = field(default_factory=dict)

    def applies(self, path: str, body: bytes) -> bool:
        return (self.times != 0 and not path.startswith(CONTROL)
                and self.match.encode() in body)


@dataclass
class Request:
    method: str
    path: str
    head: bytes  # request line and headers, without the blank line
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(HEAD_END)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    head = head[: -len(HEAD_END)]
    method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    length = int(_header(head, "content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, path, head, body)


def _header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _with_close(head: bytes) -> bytes:
    """``head`` asking for one exchange per connection (no keep-alive to keep in step)."""
    lines = [line for line in head.split(b"\r\n")
             if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"])


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def _response(status: int, body: bytes, reason: str = "", extra: dict[str, str] | None = None,
              content_type: str = "application/json") -> bytes:
    headers = [f"HTTP/1.1 {status} {reason or 'Fault'}", f"Content-Type: {content_type}",
               f"Content-Length: {len(body)}", "Connection: close",
               *(f"{k}: {v}" for k, v in (extra or {}).items())]
    return "\r\n".join(headers).encode() + HEAD_END + body


def _replace_numbers(value: Any, keys: set[str], new: float, inside: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _replace_numbers(v, keys, new, inside or k in keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_numbers(v, keys, new, inside) for v in value]
    if inside and isinstance(value, float):  # scores and log-probs; not indices or counts
        return new
    return value


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str, port: int) -> None:
        self.upstream, self.host, self.port = upstream, host, port
        self.rules: list[Rule] = []
        self.log: list[dict[str, Any]] = []
        self.server: asyncio.base_events.Server | None = None

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.host, self.port,
                                                 reuse_address=True)

    async def refuse(self, seconds: float) -> None:
        assert self.server is not None
        self.server.close()  # the listening socket goes: connections are refused
        await asyncio.sleep(seconds)
        await self.listen()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader)
            if request is None:
                return
            if request.path.startswith(CONTROL):
                writer.write(await self.control(request))
            else:
                await self.serve(request, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def control(self, request: Request) -> bytes:
        if request.path == CONTROL + "faults" and request.method == "POST":
            spec = json.loads(request.body)
            kind = spec.pop("kind")
            if kind == "refuse":
                asyncio.get_running_loop().create_task(self.refuse(float(spec["seconds"])))
                return _response(200, b'{"refusing": true}', "OK")
            self.rules.append(Rule(kind, spec.pop("match", ""), int(spec.pop("times", -1)),
                                   spec))
            return _response(200, json.dumps({"rules": len(self.rules)}).encode(), "OK")
        if request.path == CONTROL + "faults" and request.method == "DELETE":
            self.rules.clear()
            self.log.clear()
            return _response(200, b'{"rules": 0}', "OK")
        if request.path == CONTROL + "log":
            return _response(200, json.dumps(self.log).encode(), "OK")
        return _response(404, b'{"error": "unknown control path"}', "Not Found")

    async def serve(self, request: Request, writer: asyncio.StreamWriter) -> None:
        rule = next((r for r in self.rules if r.applies(request.path, request.body)), None)
        if rule is not None and rule.times > 0:
            rule.times -= 1
        self.log.append({"path": request.path,
                         "body": hashlib.sha256(request.body).hexdigest()[:16],
                         "fault": rule.kind if rule else None, "time": time.time()})
        if rule is None:
            await self.pipe(request, writer)
            return
        p = rule.params
        if rule.kind == "stall":
            await asyncio.sleep(float(p.get("seconds", 3600)))
        elif rule.kind == "status":
            status = int(p["status"])
            extra = {"Retry-After": str(p["retry_after"])} if "retry_after" in p else {}
            body = {"error": {"message": f"injected fault: HTTP {status}", "type": "fault",
                              "param": None, "code": status}}
            writer.write(_response(status, json.dumps(body).encode(), extra=extra))
        elif rule.kind == "malformed":
            writer.write(_response(200, p.get("body", '{"id": "x", "choices": [}').encode(),
                                   "OK"))
        elif rule.kind == "reset":
            answer = await self.fetch(request)
            writer.write(answer[: len(answer) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            status, head, body = _split(await self.fetch(request))
            if rule.kind == "truncate":
                writer.write(_response(status, body[: len(body) // 2], "OK"))
            elif rule.kind == "nan":
                value = float(p.get("value", "NaN"))
                data = _replace_numbers(json.loads(body), {"token_logprobs", "data"}, value)
                writer.write(_response(status, json.dumps(data).encode(), "OK"))
            elif rule.kind == "drip":
                answer = _response(status, body, "OK")
                size, interval = int(p.get("bytes", 16)), float(p.get("interval", 0.5))
                for start in range(0, len(answer), size):
                    writer.write(answer[start:start + size])
                    await writer.drain()
                    await asyncio.sleep(interval)
            else:
                writer.write(_response(500, json.dumps(
                    {"error": {"message": f"fault proxy: unknown fault {rule.kind!r}"}}
                ).encode()))

    async def _open(self, request: Request):
        reader, writer = await asyncio.open_connection(*self.upstream)
        writer.write(_with_close(request.head) + HEAD_END + request.body)
        await writer.drain()
        return reader, writer

    async def pipe(self, request: Request, client: asyncio.StreamWriter) -> None:
        """Pass the request through and stream the answer back as it comes (SSE included)."""
        reader, writer = await self._open(request)
        try:
            while chunk := await reader.read(65536):
                client.write(chunk)
                await client.drain()
        finally:
            writer.close()

    async def fetch(self, request: Request) -> bytes:
        reader, writer = await self._open(request)
        try:
            return await reader.read(-1)
        finally:
            writer.close()


def _split(answer: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = answer.partition(HEAD_END)
    status = int(head.split(b" ", 2)[1])
    if (_header(head, "transfer-encoding") or "").lower() == "chunked":
        body = _dechunk(body)
    return status, head, body


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = FaultProxy((host, int(port)), args.host, args.port)
    await proxy.listen()
    print(f"fault proxy on {args.host}:{args.port} -> {args.upstream}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
