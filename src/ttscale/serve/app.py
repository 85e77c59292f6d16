"""``ttscale serve``: an OpenAI-compatible server that answers with test-time scaling behind it.

Point any OpenAI client at it: each request's problem is solved by a search (Best-of-N, beam
search, DVTS, majority vote, or ``auto``: the planner's choice) over the server's policy and
scorer, and the response's content is the chosen solution.

* ``POST /v1/chat/completions`` and ``POST /v1/completions``: the standard fields, plus the
  search's settings as extra fields or a model-name prefix (see :mod:`ttscale.serve.requests`);
  ``stream`` sends the answer as server-sent events once the search ends;
* ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus).

Every search runs as a task in the server's event loop, so concurrent requests' engine calls
batch together (the scheduler's engines and coalescers). At most ``max_running`` searches run
and ``max_waiting`` wait; past that a request gets 429. A request's search is cancelled when
its client disconnects or its time runs out. The server binds 127.0.0.1 unless told
otherwise."""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations, whose
# types are imported inside create_app
import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.engines.base import Policy
from ttscale.errors import ConfigError, ContextLengthError, TTScaleError
from ttscale.planner.auto import AUTO
from ttscale.planner.plan import Plan, load_plan
from ttscale.prompts import PromptFormat
from ttscale.rewards import canonical_spec, load_scorer, scorer_kind
from ttscale.rewards.base import Scorer
from ttscale.run.scheduler import batch_across_calls, batch_scorer_across_calls
from ttscale.run.solve import SolveResult, solve_async
from ttscale.search import METHODS
from ttscale.serve.admission import MAX_RETRY_AFTER_S, AdmissionGate
from ttscale.serve.http import LOCAL_HOSTS, RequestError, check_api_key, read_body
from ttscale.serve.requests import (
    SearchRequest,
    ServerDefaults,
    ServerLimits,
    bad,
    parse_request,
)
from ttscale.serve.responses import Answered, completion_body, event_stream
from ttscale.settings import SearchSettings

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 * 2**20
DISCONNECT_POLL_S = 0.2
KEEP_ALIVE_S = MAX_RETRY_AFTER_S + 15
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}  # metric labels
# scorers a request may name without the server having been started with them: they run on
# the policy, need no model, or ship with ttscale, so loading one is cheap and names no path
_LOADABLE_KINDS = ("model-free", "policy", "shipped")


@dataclass(frozen=True)
class ServerConfig:
    """How the server searches, what it accepts and how much it takes on."""

    defaults: ServerDefaults = field(default_factory=ServerDefaults)
    limits: ServerLimits = field(default_factory=ServerLimits)
    max_step_tokens: int = 256
    max_depth: int = 12
    max_running: int = 4  # searches at once; their engine calls share batches
    max_waiting: int = 32
    request_timeout_s: float = 600.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_key: str | None = None
    served_model_name: str | None = None  # default: the policy's name


class SearchService:
    """The policy, the scorers and the prompt format that every request's search uses."""

    def __init__(self, policy: Policy, prompt: PromptFormat, config: ServerConfig,
                 scorers: dict[str, Scorer | None] | None = None,
                 plan: Plan | None = None) -> None:
        self.policy = batch_across_calls(policy)
        self.prompt = prompt
        self.config = config
        self.plan = plan
        self._scorers: dict[str, Scorer | None] = {
            canonical_spec(spec): batch_scorer_across_calls(scorer)
            for spec, scorer in (scorers or {}).items()}
        self._scorers.setdefault("none", None)
        self.delimiter = prompt.apply(SearchSettings()).delimiter

    @property
    def model_name(self) -> str:
        return self.config.served_model_name or self.policy.info.name

    def scorer_for(self, request: SearchRequest) -> tuple[str, Scorer | None]:
        """The scorer the request names (as run records name it), loading the cheap ones on
        first use; a checkpoint or URL the server was not started with is refused."""
        uses_scorer = request.method == AUTO or METHODS[request.method].uses_scorer
        if not uses_scorer:
            return "none", None
        try:
            spec = canonical_spec(request.prm)
        except ConfigError as exc:
            raise bad(str(exc), "prm") from exc
        if spec not in self._scorers:
            if scorer_kind(spec) not in _LOADABLE_KINDS:
                raise bad(f"the scorer {spec!r} is not loaded on this server; it has "
                          f"{', '.join(sorted(self._scorers))}. Start the server with "
                          f"--prm {request.prm} to serve it", "prm")
            try:
                loaded = load_scorer(spec, policy=self.policy)
            except TTScaleError as exc:
                raise bad(f"the scorer {spec!r} could not be loaded: {exc}", "prm") from exc
            self._scorers[spec] = batch_scorer_across_calls(loaded)
        scorer = self._scorers[spec]
        if scorer is None:
            raise bad(f"{request.method} needs a scorer; 'prm' is none. Name one, e.g. "
                      f"\"confidence\", or use method majority", "prm")
        return spec, scorer

    def settings(self, request: SearchRequest) -> SearchSettings:
        return SearchSettings(
            temperature=request.temperature, top_p=request.top_p,
            max_step_tokens=min(self.config.max_step_tokens, request.max_tokens),
            max_depth=self.config.max_depth, max_solution_tokens=request.max_tokens,
            width=request.width, step_aggregation=request.step_aggregation,
            answer_aggregation=request.aggregation, seed=request.seed)

    async def solve(self, request: SearchRequest, scorer: Scorer | None) -> SolveResult:
        return await solve_async(
            request.problem, policy=self.policy, method=request.method, n=request.budget,
            scorer=scorer, settings=self.settings(request), prompt=self.prompt,
            plan=self.plan, keep=request.n)

    def model_ids(self) -> list[str]:
        """The served name, and the name with each search's prefix at the default budget."""
        name, budget = self.model_name, self.config.defaults.budget
        return [name, f"greedy/{name}",
                *(f"{m}-{budget}/{name}" for m in (*METHODS, AUTO) if m != "greedy")]

    async def close(self) -> None:
        await self.policy.close()


def create_app(service: SearchService):
    """The FastAPI app that serves ``service``."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    from ttscale.serve.metrics import ServerMetrics

    config = service.config
    gate = AdmissionGate(config.max_running, config.max_waiting)
    metrics = ServerMetrics()
    metrics.running.set_function(lambda: gate.running)
    metrics.queue_depth.set_function(lambda: gate.waiting)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await service.close()

    app = FastAPI(title="ttscale", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    def authorized(request: Request) -> None:
        check_api_key(request.headers, config.api_key)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):  # raised before a handler ran
        endpoint = ENDPOINTS.get(request.url.path, "other")
        metrics.requests.labels(endpoint, str(exc.status)).inc()
        return error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(RequestError(exc.status_code, f"{request.method} {request.url.path}: "
                                                   f"{exc.detail}", "invalid_request_error"))

    async def answer(request: Request, endpoint: str):
        start = time.monotonic()
        status = 200
        try:
            raw = await read_body(request, config.max_body_bytes)
            search = parse_request(raw, "chat" if endpoint == "chat" else "completion",
                                   service.model_name, config.defaults, config.limits)
            scorer_name, scorer = service.scorer_for(search)
            result = await _watched(request, lambda: gate.run(
                lambda: service.solve(search, scorer)), config.request_timeout_s, metrics)
            metrics.count_spend(result.ledger)
            done = Answered(search, result, scorer_name, service.delimiter,
                            time.monotonic() - start,
                            f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-"
                            f"{uuid.uuid4().hex}", int(time.time()))
            if not result.ranked:
                raise RequestError(500, "the search ended without a solution", "server_error")
            if search.stream:
                return StreamingResponse(event_stream(done), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            return JSONResponse(completion_body(done))
        except RequestError as exc:
            status = exc.status
            if status == 499:
                return Response(status_code=499)
            return error(exc)
        except Exception:
            status = 500
            raise
        finally:
            metrics.count_request(endpoint, status, time.monotonic() - start)

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(request: Request):
        return await answer(request, "chat")

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(request: Request):
        return await answer(request, "completions")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models():
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "ttscale"}
            for name in service.model_ids()]}

    @app.get("/v1/models/{model:path}", dependencies=[Depends(authorized)])
    async def model(model: str):
        if model not in service.model_ids():
            return error(RequestError(404, f"The model `{model}` does not exist.",
                                      "not_found_error", "model"))
        return {"id": model, "object": "model", "created": int(time.time()),
                "owned_by": "ttscale"}

    @app.get("/health")  # open, for load balancers' and orchestrators' probes
    async def health():
        return {"status": "ok", "running": gate.running, "waiting": gate.waiting}

    @app.get("/metrics", dependencies=[Depends(authorized)])
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


async def _watched(request, search: Callable[[], Awaitable[SolveResult]], timeout_s: float,
                   metrics) -> SolveResult:
    """Run the search as a task; cancel it when the client goes away or time runs out."""
    task = asyncio.ensure_future(search())
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            except asyncio.CancelledError:  # the server let go of the request
                metrics.searches.labels("cancelled").inc()
                raise
            if done:
                break
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


def load_service(*, engine, prm: list[str], prompt: PromptFormat, config: ServerConfig,
                 plan_path: Path | None = None, scorer_options=None) -> SearchService:
    """Load every scorer named on the command line (the first is the default) beside the
    policy."""
    scorers = {spec: load_scorer(spec, policy=engine, options=scorer_options) for spec in prm}
    plan = load_plan(plan_path) if plan_path is not None else None
    return SearchService(engine, prompt, config, scorers, plan)


def serve(service: SearchService, *, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("ttscale serve needs fastapi and uvicorn: "
                          "pip install 'ttscale[server]'") from exc
    if service.config.api_key is None and host not in LOCAL_HOSTS:
        logger.warning("serving on %s without an API key: anyone who can reach it can use "
                       "it; give --api-key", host)
    app = create_app(service)
    # idle connections stay open past any Retry-After: a client that waits as told and then
    # reuses its connection must not race the server closing it
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                timeout_keep_alive=KEEP_ALIVE_S)
