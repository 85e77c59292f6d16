"""The OpenAI-compatible server's routes, each a method of one :class:`Routes` that holds what
they share: the search service, the admission gate and the metrics.

A completion request is read and checked, its scorer chosen, and its search run through the
gate, watched for its client leaving and its time running out; every ending is counted with its
status.

The app publishes its OpenAPI document at ``GET /openapi.json``, with the request bodies the
two completion routes read (:func:`ttscale.serve.bodies.body_schema`)."""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ttscale import __version__
from ttscale.serve.admission import AdmissionGate
from ttscale.serve.bodies import ChatRequest, CompletionRequest, body_schema
from ttscale.serve.http import RequestError, check_api_key, read_body
from ttscale.serve.metrics import ServerMetrics
from ttscale.serve.requests import parse_request
from ttscale.serve.responses import Answered, completion_body, event_stream
from ttscale.serve.service import SearchService
from ttscale.serve.watch import watched

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}  # metric labels
BODIES = {"/v1/chat/completions": ChatRequest, "/v1/completions": CompletionRequest}


def error_response(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def not_routed(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's error body."""
    return error_response(RequestError(exc.status_code, f"{request.method} {request.url.path}: "
                                                        f"{exc.detail}",
                                       "invalid_request_error"))


class Routes:
    """The routes of one app, and the state they share."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.gate = AdmissionGate(service.config.max_running, service.config.max_waiting,
                                  service.config.request_timeout_s)
        self.metrics = ServerMetrics()
        self.metrics.running.set_function(lambda: self.gate.running)
        self.metrics.queue_depth.set_function(lambda: self.gate.waiting)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        yield
        await self.service.close()

    def authorized(self, request: Request) -> None:
        check_api_key(request.headers, self.service.config.api_key)

    async def refused(self, request: Request, exc: RequestError) -> JSONResponse:
        """A refusal raised before a handler ran (the API-key check)."""
        endpoint = ENDPOINTS.get(request.url.path, "other")
        self.metrics.requests.labels(endpoint, str(exc.status)).inc()
        return error_response(exc)

    async def chat_completions(self, request: Request) -> Response:
        return await self.answer(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self.answer(request, "completions")

    async def models(self):
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "ttscale"}
            for name in self.service.model_ids()]}

    async def model(self, model: str):
        if model not in self.service.model_ids():
            return error_response(RequestError(404, f"The model `{model}` does not exist.",
                                               "not_found_error", "model"))
        return {"id": model, "object": "model", "created": int(time.time()),
                "owned_by": "ttscale"}

    async def health(self):
        return {"status": "ok", "running": self.gate.running, "waiting": self.gate.waiting}

    async def prometheus(self) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def answer(self, request: Request, endpoint: str) -> Response:
        """The response to a completion request, its status and latency counted."""
        start = time.monotonic()
        status = 200
        try:
            return await self._search(request, endpoint, start)
        except RequestError as exc:
            status = exc.status
            if status == 499:  # the client is gone: no one reads a body
                return Response(status_code=499)
            return error_response(exc)
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.count_request(endpoint, status, time.monotonic() - start)

    async def _search(self, request: Request, endpoint: str, start: float) -> Response:
        """Read and check the request, run its search through the gate, and answer."""
        service, config = self.service, self.service.config
        raw = await read_body(request, config.max_body_bytes)
        search = parse_request(raw, "chat" if endpoint == "chat" else "completion",
                               service.model_name, config.defaults, config.limits)
        scorer_name, scorer = service.scorer_for(search)
        result = await watched(request, lambda: self.gate.run(
            lambda: service.solve(search, scorer)), config.request_timeout_s, self.metrics)
        self.metrics.count_spend(result.ledger)
        done = Answered(search, result, scorer_name, service.delimiter,
                        time.monotonic() - start,
                        f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}",
                        int(time.time()), service.prompt.thinking_format)
        if not result.ranked:  # only a search that answers with ended solutions (REBASE)
            raise RequestError(400, f"every solution the search ({search.method}) wrote was "
                                    f"cut off at max_tokens ({search.max_tokens}) before it "
                                    "ended, and it answers only with solutions that ended; "
                                    "send a larger max_tokens", "invalid_request_error",
                               "max_tokens")
        if search.stream:
            return StreamingResponse(event_stream(done), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return JSONResponse(completion_body(done))


def publish_bodies(app: FastAPI, service: SearchService) -> None:
    """Describe the bodies the completion routes read in the app's OpenAPI document: the
    handlers read the raw body themselves, so FastAPI does not know them."""
    generate = app.openapi

    def openapi() -> dict:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for path, shape in BODIES.items():
            schema = body_schema(shape, service.model_name, service.config.limits)
            schemas.update(schema.pop("$defs", {}))
            schemas[shape.__name__] = schema
            document["paths"][path]["post"]["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {
                    "$ref": f"#/components/schemas/{shape.__name__}"}}}}
        return document

    app.openapi = openapi


def build_app(service: SearchService) -> FastAPI:
    """The FastAPI app that serves ``service``."""
    routes = Routes(service)
    app = FastAPI(title="ttscale", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=routes.lifespan)
    publish_bodies(app, service)
    app.add_exception_handler(RequestError, routes.refused)
    app.add_exception_handler(HTTPException, not_routed)
    authorized = [Depends(routes.authorized)]
    app.add_api_route("/v1/chat/completions", routes.chat_completions, methods=["POST"],
                      dependencies=authorized)
    app.add_api_route("/v1/completions", routes.completions, methods=["POST"],
                      dependencies=authorized)
    app.add_api_route("/v1/models", routes.models, methods=["GET"], dependencies=authorized)
    app.add_api_route("/v1/models/{model:path}", routes.model, methods=["GET"],
                      dependencies=authorized)
    app.add_api_route("/health", routes.health, methods=["GET"])  # open, for probes
    app.add_api_route("/metrics", routes.prometheus, methods=["GET"], dependencies=authorized)
    return app
