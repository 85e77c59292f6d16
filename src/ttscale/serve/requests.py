"""Reading an OpenAI-style request into one search: which problem, which method and budget, which
scorer, what limits. Every refusal is a 400 (or 404 for the model) that names the field at fault
and says what would be accepted.

Test-time scaling settings come in the body's extra fields (``method``, ``budget``, ``width``,
``prm``, ``aggregation``, ``step_aggregation``, ``particle_temperature``), or, for clients that
cannot send extra fields, in the model name: ``beam-16/MODEL`` (beam search, N = 16),
``dvts-16x4/MODEL`` (DVTS, N = 16, M = 4), ``greedy/MODEL``. The body's checks are in
:mod:`ttscale.serve.bodies`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from ttscale.serve.bodies import ChatRequest, CompletionRequest, Context
from ttscale.serve.defaults import ServerDefaults, ServerLimits
from ttscale.serve.model_names import SERVED_METHODS, read_model_name
from ttscale.serve.refusals import bad, first_refusal, refusal

__all__ = ["SERVED_METHODS", "Endpoint", "SearchRequest", "ServerDefaults", "ServerLimits",
           "parse_model", "parse_request"]

logger = logging.getLogger(__name__)

Endpoint = Literal["chat", "completion"]
_TOO_DEEP = "the body is nested too deeply: send the problem and settings as flat JSON"


@dataclass(frozen=True)
class SearchRequest:
    endpoint: Endpoint
    model: str  # as the client wrote it; echoed back
    problem: str
    method: str
    budget: int
    width: int
    prm: str
    aggregation: str
    step_aggregation: str
    particle_temperature: float
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    n: int
    stream: bool
    include_usage: bool


def parse_model(model: Any, served: str) -> tuple[str | None, int | None, int | None]:
    """(method, budget, width) that the model name's prefix sets, each None when unset."""
    try:
        name = read_model_name(model, served)
    except PydanticCustomError as exc:
        raise refusal(exc.type, exc.message(), "model", model) from exc
    return name.method, name.budget, name.width


def parse_request(raw: bytes, endpoint: Endpoint, served: str, defaults: ServerDefaults,
                  limits: ServerLimits) -> SearchRequest:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise bad(_TOO_DEEP) from None
    shape = ChatRequest if endpoint == "chat" else CompletionRequest
    try:
        body = shape.model_validate(payload, context=Context(served, defaults, limits))
    except ValidationError as exc:
        raise first_refusal(exc) from exc
    if unknown := body.unknown_fields():
        logger.info("ignoring request fields %s", ", ".join(unknown))
    return SearchRequest(
        endpoint=endpoint, model=body.model.name, problem=body.problem, method=body.method,
        budget=body.budget, width=body.width, prm=body.prm, aggregation=body.aggregation,
        step_aggregation=body.step_aggregation,
        particle_temperature=body.particle_temperature, max_tokens=body.max_tokens,
        temperature=body.temperature, top_p=body.top_p, seed=body.seed, n=body.n,
        stream=bool(body.stream),
        include_usage=bool(body.stream_options.get("include_usage", False)))
