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
otherwise.

The routes are in :mod:`ttscale.serve.routes`; the policy, scorers and settings they search
with in :mod:`ttscale.serve.service`."""

from __future__ import annotations

import logging

from ttscale.errors import ConfigError
from ttscale.serve.admission import MAX_RETRY_AFTER_S
from ttscale.serve.http import LOCAL_HOSTS
from ttscale.serve.service import SearchService, ServerConfig, load_service

__all__ = ["SearchService", "ServerConfig", "create_app", "load_service", "serve"]

logger = logging.getLogger(__name__)

KEEP_ALIVE_S = MAX_RETRY_AFTER_S + 15


def create_app(service: SearchService):
    """The FastAPI app that serves ``service``."""
    # imported here: fastapi is the server extra's, and this module is read without it
    from ttscale.serve.routes import build_app

    return build_app(service)


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
