"""Reading an OpenAI-style request into one search: which problem, which method and budget,
which scorer, what limits. Every refusal is a 400 (or 404 for the model) that names the field
at fault and says what would be accepted.

Test-time scaling settings come in the body's extra fields (``method``, ``budget``, ``width``,
``prm``, ``aggregation``, ``step_aggregation``), or, for clients that cannot send extra fields,
in the model name: ``beam-16/MODEL`` (beam search, N = 16), ``dvts-16x4/MODEL`` (DVTS, N = 16,
M = 4), ``greedy/MODEL``."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from ttscale.planner.auto import AUTO
from ttscale.search import METHODS
from ttscale.serve.http import RequestError
from ttscale.settings import ANSWER_AGGREGATIONS, STEP_AGGREGATIONS

logger = logging.getLogger(__name__)

Endpoint = Literal["chat", "completion"]
SERVED_METHODS = (*METHODS, AUTO)
_PREFIX = re.compile(r"^(?P<method>[a-z]+)(?:-(?P<budget>\d+)(?:x(?P<width>\d+))?)?$")
# fields a client may send that this server cannot honour: refused, not silently ignored
_UNSUPPORTED = {
    "tools": "tool calls", "functions": "function calls", "tool_choice": "tool calls",
    "function_call": "function calls", "logit_bias": "logit_bias", "suffix": "suffix",
    "audio": "audio output", "prediction": "predicted outputs",
}
# fields read here, and fields clients commonly send that do not change a search's answer
_KNOWN_FIELDS = {
    "user", "metadata", "store", "service_tier", "parallel_tool_calls", "presence_penalty",
    "frequency_penalty", "modalities", "reasoning_effort", "stream_options", "echo",
    "logprobs", "top_logprobs", "stop", "best_of", "response_format", "max_tokens",
    "max_completion_tokens", "messages", "prompt", "model", "temperature", "top_p", "seed",
    "n", "stream", "method", "budget", "width", "prm", "aggregation", "step_aggregation",
}


@dataclass(frozen=True)
class ServerDefaults:
    """What a request gets for the settings it does not send."""

    method: str = AUTO
    budget: int = 8
    width: int = 4
    prm: str = "confidence"
    max_tokens: int = 512  # per solution
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    aggregation: str = "prm_vote"
    step_aggregation: str = "last"


@dataclass(frozen=True)
class ServerLimits:
    """The most one request may ask for."""

    max_budget: int = 64
    max_tokens: int = 4096
    max_problem_chars: int = 32_000


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
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    n: int
    stream: bool
    include_usage: bool


def bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, "invalid_request_error", param)


def parse_model(model: Any, served: str) -> tuple[str | None, int | None, int | None]:
    """(method, budget, width) that the model name's prefix sets, each None when unset."""
    if not isinstance(model, str) or not model:
        raise bad(f"'model' is required: send \"{served}\", or \"beam-16/{served}\" to choose "
                  "the search in the name", "model")
    if model == served:
        return None, None, None
    prefix, _, rest = model.partition("/")
    match = _PREFIX.match(prefix)
    if rest != served or match is None:
        raise RequestError(404, f"The model `{model}` does not exist. This server serves "
                                f"`{served}`, optionally prefixed with a search: "
                                f"`beam-16/{served}`, `dvts-16x4/{served}`, `greedy/{served}`.",
                           "not_found_error", "model")
    method = match["method"]
    if method not in SERVED_METHODS:
        raise bad(f"unknown method `{method}` in the model name; use one of "
                  f"{', '.join(SERVED_METHODS)}, e.g. beam-16/{served}", "model")
    budget = int(match["budget"]) if match["budget"] else None
    width = int(match["width"]) if match["width"] else None
    return method, budget, width


def parse_request(raw: bytes, endpoint: Endpoint, served: str, defaults: ServerDefaults,
                  limits: ServerLimits) -> SearchRequest:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise bad("the body must be a JSON object")
    _refuse_unsupported(payload)
    unknown = sorted(set(payload) - _KNOWN_FIELDS - set(_UNSUPPORTED))
    if unknown:
        logger.info("ignoring request fields %s", ", ".join(unknown))
    prefix_method, prefix_budget, prefix_width = parse_model(payload.get("model"), served)

    method = _merged(payload, "method", prefix_method, defaults.method)
    if not isinstance(method, str) or method not in SERVED_METHODS:
        raise bad(f"unknown method {method!r}; use one of {', '.join(SERVED_METHODS)}",
                  "method")
    budget = _integer(_merged(payload, "budget", prefix_budget, defaults.budget), "budget", 1,
                      limits.max_budget, "lower it, or start the server with a larger "
                                         "--max-budget")
    width = _integer(_merged(payload, "width", prefix_width, defaults.width), "width", 1,
                     limits.max_budget)
    spec = METHODS.get(method)
    if spec is not None and spec.uses_width and (width > budget or budget % width):
        raise bad(f"{method} needs the budget ({budget}) to be a multiple of the width "
                  f"({width}); e.g. budget {max(width, budget // width * width)} or width "
                  f"{_largest_divisor(budget, width)}", "width")
    prm = payload.get("prm", defaults.prm)
    if not isinstance(prm, str) or not prm.strip():
        raise bad("'prm' must name a scorer this server has, e.g. \"confidence\"", "prm")
    aggregation = _choice(payload, "aggregation", defaults.aggregation, ANSWER_AGGREGATIONS)
    step_aggregation = _choice(payload, "step_aggregation", defaults.step_aggregation,
                               STEP_AGGREGATIONS)

    max_tokens = _max_tokens(payload, defaults, limits)
    temperature = _number(payload, "temperature", defaults.temperature, 0.0, 2.0)
    top_p = _number(payload, "top_p", defaults.top_p, 0.0, 1.0)
    if top_p == 0:
        raise bad("'top_p' must be above 0", "top_p")
    seed = payload.get("seed")
    seed = defaults.seed if seed is None else _integer(seed, "seed", 0, 2**63 - 1)
    n = payload.get("n")
    n = 1 if n is None else _integer(
        n, "n", 1, budget, f"n returns the n best distinct solutions of one search, so it "
                           f"cannot exceed the budget ({budget})")
    if method == "greedy" and n > 1:
        raise bad("greedy search writes one solution: send n = 1, or a sampling method", "n")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad("'stream' must be true or false", "stream")
    options = payload.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object such as {\"include_usage\": true}",
                  "stream_options")
    problem = _chat_problem(payload) if endpoint == "chat" else _prompt_problem(payload)
    if len(problem) > limits.max_problem_chars:
        raise bad(f"the problem is {len(problem)} characters; at most "
                  f"{limits.max_problem_chars} are accepted",
                  "messages" if endpoint == "chat" else "prompt")
    return SearchRequest(
        endpoint=endpoint, model=payload["model"], problem=problem, method=method,
        budget=budget, width=width, prm=prm.strip(), aggregation=aggregation,
        step_aggregation=step_aggregation, max_tokens=max_tokens, temperature=temperature,
        top_p=top_p, seed=seed, n=n, stream=bool(stream),
        include_usage=bool(options.get("include_usage", False)))


def _refuse_unsupported(payload: dict) -> None:
    for field, what in _UNSUPPORTED.items():
        if payload.get(field) not in (None, [], {}, ""):
            raise bad(f"{what} are not supported: this server answers math problems with a "
                      f"search; remove '{field}'", field)
    if payload.get("logprobs") not in (None, False, 0):
        raise bad("log-probabilities are not returned: a search's answer is chosen among "
                  "many samples; remove 'logprobs'", "logprobs")
    if payload.get("echo") not in (None, False):
        raise bad("'echo' is not supported; remove it", "echo")
    if payload.get("stop") not in (None, [], ""):
        raise bad("'stop' is not supported: the search decides where a solution ends; "
                  "use max_tokens to bound its length", "stop")
    if payload.get("best_of") not in (None, 1):
        raise bad("'best_of' is not used here: send 'budget' (the number of samples the "
                  "search may draw) and 'method'", "best_of")
    response_format = payload.get("response_format")
    if response_format not in (None, {}) and response_format != {"type": "text"}:
        raise bad("only text responses are served; remove 'response_format'",
                  "response_format")


def _merged(payload: dict, field: str, from_prefix: Any, default: Any) -> Any:
    """A setting from the body, the model-name prefix, or the default; body and prefix must
    agree when both are given."""
    value = payload.get(field)
    if value is not None and from_prefix is not None and value != from_prefix:
        raise bad(f"'{field}' is {value!r} but the model name says {from_prefix!r}; send one "
                  "or make them agree", field)
    if value is not None:
        return value
    return from_prefix if from_prefix is not None else default


def _integer(value: Any, field: str, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{field}' must be an integer, got {value!r}", field)
    if not low <= value <= high:
        limit = f"at least {low}" if value < low else f"at most {high}"
        raise bad(f"'{field}' is {value}; it must be {limit}" + (f": {hint}" if hint and
                                                                  value > high else ""), field)
    return value


def _number(payload: dict, field: str, default: float, low: float, high: float) -> float:
    value = payload.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{field}' must be a number, got {value!r}", field)
    if not low <= value <= high:
        raise bad(f"'{field}' is {value}; it must be between {low} and {high}", field)
    return float(value)


def _choice(payload: dict, field: str, default: str, choices: tuple[str, ...]) -> str:
    value = payload.get(field, default)
    if value is None:
        return default
    if value not in choices:
        raise bad(f"unknown {field} {value!r}; use one of {', '.join(choices)}", field)
    return value


def _max_tokens(payload: dict, defaults: ServerDefaults, limits: ServerLimits) -> int:
    field = "max_completion_tokens" if payload.get("max_completion_tokens") is not None \
        else "max_tokens"
    value = payload.get(field)
    if value is None:
        return min(defaults.max_tokens, limits.max_tokens)
    return _integer(value, field, 1, limits.max_tokens,
                    "start the server with a larger --max-tokens-limit")


def _largest_divisor(budget: int, width: int) -> int:
    return max(d for d in range(1, min(width, budget) + 1) if budget % d == 0)


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise bad(f"{where}: only text parts ({{\"type\": \"text\", \"text\": ...}}) "
                          "are accepted", "messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad(f"{where}: 'content' must be a string or a list of text parts", "messages")


def _chat_problem(payload: dict) -> str:
    """The problem is the last user message; system messages and earlier turns are not part
    of it (the server's prompt format frames the problem for the policy)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' is required: a non-empty list such as "
                  "[{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}]", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad(f"messages[{index}] must be an object with 'role' and 'content'",
                      "messages")
    last = messages[-1]
    if last["role"] != "user":
        raise bad(f"the last message must be the user's problem; it has role "
                  f"{last['role']!r}", "messages")
    problem = _text_of(last.get("content"), f"messages[{len(messages) - 1}]").strip()
    if not problem:
        raise bad("the last user message is empty: send the problem to solve", "messages")
    return problem


def _prompt_problem(payload: dict) -> str:
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("'prompt' is required: the problem text, as one string (token ids and "
                  "several prompts per request are not accepted)", "prompt")
    if not prompt.strip():
        raise bad("'prompt' is empty: send the problem to solve", "prompt")
    return prompt.strip()
