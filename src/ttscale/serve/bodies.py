"""The bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions`` as pydantic models:
OpenAI's fields and ttscale's extra ones (``method``, ``budget``, ``width``, ``prm``,
``aggregation``, ``step_aggregation``, ``particle_temperature``), each validated into the value
the search uses.

Fields are declared in the order they are checked, and a request is refused for its first
fault. A field's checks may read the fields declared before it (``info.data``, which holds
those that passed); when one of those was refused, the request already is, and the checks
that need it are skipped. An absent field is None, which its validator turns into the server's
default; the defaults, the limits and the served name come in the validation context.

:func:`body_schema` describes each body as JSON Schema, for the server's OpenAPI document."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.json_schema import GenerateJsonSchema

from ttscale.errors import ConfigError
from ttscale.search import METHODS
from ttscale.serve.defaults import ServerDefaults, ServerLimits
from ttscale.serve.model_names import SERVED_METHODS, ModelName, read_model_name
from ttscale.serve.problems import chat_problem, prompt_problem
from ttscale.serve.refusals import invalid
from ttscale.settings import (
    ANSWER_AGGREGATIONS,
    MAX_PARTICLE_TEMPERATURE,
    STEP_AGGREGATIONS,
    AnswerAggregation,
    StepAggregation,
)


@dataclass(frozen=True)
class Context:
    """What the checks read beside the body."""

    served: str
    defaults: ServerDefaults
    limits: ServerLimits


_UNSUPPORTED = {
    "tools": "tool calls", "functions": "function calls", "tool_choice": "tool calls",
    "function_call": "function calls", "logit_bias": "logit_bias", "suffix": "suffix",
    "audio": "audio output", "prediction": "predicted outputs",
}
# per field: the values that ask for nothing this server lacks, and the refusal of the others
_REFUSALS: dict[str, tuple[tuple[Any, ...], str]] = {
    **{field: ((None, [], {}, ""), f"{what} are not supported: this server answers math "
                                   f"problems with a search; remove '{field}'")
       for field, what in _UNSUPPORTED.items()},
    "logprobs": ((None, False, 0), "log-probabilities are not returned: a search's answer is "
                                   "chosen among many samples; remove 'logprobs'"),
    "echo": ((None, False), "'echo' is not supported; remove it"),
    "stop": ((None, [], ""), "'stop' is not supported: the search decides where a solution "
                             "ends; use max_tokens to bound its length"),
    "best_of": ((None, 1), "'best_of' is not used here: send 'budget' (the number of samples "
                           "the search may draw) and 'method'"),
    "response_format": ((None, {}, {"type": "text"}),
                        "only text responses are served; remove 'response_format'"),
}
# fields clients commonly send that do not change a search's answer, and the other endpoint's
# problem field: accepted without a word; any other unknown field is logged
_IGNORED = {
    "user", "metadata", "store", "service_tier", "parallel_tool_calls", "presence_penalty",
    "frequency_penalty", "modalities", "reasoning_effort", "top_logprobs", "messages",
    "prompt",
}
_NUMBER_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
                  "particle_temperature": (0.0, MAX_PARTICLE_TEMPERATURE)}
_AGGREGATIONS = {"aggregation": ANSWER_AGGREGATIONS, "step_aggregation": STEP_AGGREGATIONS}
_MAX_TOKENS_HINT = "start the server with a larger --max-tokens-limit"
_ABSENT: Any = object()  # a field not sent, where sending null is a fault of its own


class OpenAIRequest(BaseModel):
    """The fields both endpoints share, typed as the search gets them. Pydantic checks the
    types of the integer, number and boolean fields, strictly (``"8"`` is no budget); the
    validators check the rest."""

    model_config = ConfigDict(strict=True, extra="allow", validate_default=True, frozen=True)

    # fields a client may send that this server cannot honour: refused, not silently ignored
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    function_call: Any = None
    logit_bias: Any = None
    suffix: Any = None
    audio: Any = None
    prediction: Any = None
    logprobs: Any = None
    echo: Any = None
    stop: Any = None
    best_of: Any = None
    response_format: Any = None
    # the search: from the body, the model name's prefix, or the server's defaults
    model: ModelName = None
    method: str = None
    budget: int = None
    width: int = None
    prm: str = _ABSENT
    aggregation: AnswerAggregation = None
    step_aggregation: StepAggregation = None
    particle_temperature: float | int = None  # pf and pgibbs: softmax(logit(score) / this)
    # sampling and the response
    max_completion_tokens: int | None = None  # OpenAI's newer name for max_tokens
    max_tokens: int = None
    # any JSON number; an integer too large for a float stays exact, to be refused as out of
    # range rather than as no number
    temperature: float | int = None
    top_p: float | int = None
    seed: int = None
    n: int = None
    stream: bool | None = None
    stream_options: dict = None

    def unknown_fields(self) -> list[str]:
        return sorted(set(self.model_extra or {}) - _IGNORED)

    @field_validator(*_REFUSALS)
    @classmethod
    def _refuse_unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        accepted, refusal = _REFUSALS[info.field_name]
        if value not in accepted:
            raise invalid(refusal)
        return value

    @field_validator("model", mode="plain")
    @classmethod
    def _model_name(cls, value: Any, info: ValidationInfo) -> ModelName:
        return read_model_name(value, _context(info).served)

    @field_validator("method", mode="plain")
    @classmethod
    def _method(cls, value: Any, info: ValidationInfo) -> str:
        method = _merged(value, info)
        if not isinstance(method, str) or method not in SERVED_METHODS:
            raise invalid(f"unknown method {method!r}; use one of {', '.join(SERVED_METHODS)}")
        return method

    @field_validator("budget", mode="wrap")
    @classmethod
    def _budget(cls, value: Any, handler, info: ValidationInfo) -> int:
        return _within(handler(_merged(value, info)), "budget", 1,
                       _context(info).limits.max_budget,
                       "lower it, or start the server with a larger --max-budget")

    @field_validator("width", mode="wrap")
    @classmethod
    def _width(cls, value: Any, handler, info: ValidationInfo) -> int:
        width = _within(handler(_merged(value, info)), "width", 1,
                        _context(info).limits.max_budget)
        method, budget = info.data.get("method"), info.data.get("budget")
        if method is None or budget is None:
            return width
        spec = METHODS.get(method)
        try:
            if spec is not None:
                spec.check_budget(budget, width)
        except ConfigError:
            raise invalid(f"{method} needs the budget ({budget}) to be a multiple of the width "
                          f"({width}); e.g. budget {max(width, budget // width * width)} or "
                          f"width {_largest_divisor(budget, width)}") from None
        return width

    @field_validator("prm", mode="plain")
    @classmethod
    def _prm(cls, value: Any, info: ValidationInfo) -> str:
        prm = _context(info).defaults.prm if value is _ABSENT else value
        if not isinstance(prm, str) or not prm.strip():
            raise invalid("'prm' must name a scorer this server has, e.g. \"confidence\"")
        return prm.strip()

    @field_validator("aggregation", "step_aggregation", mode="plain")
    @classmethod
    def _aggregation(cls, value: Any, info: ValidationInfo) -> str:
        field, choices = info.field_name, _AGGREGATIONS[info.field_name]
        if value is None:
            return getattr(_context(info).defaults, field)
        if value not in choices:
            raise invalid(f"unknown {field} {value!r}; use one of {', '.join(choices)}")
        return value

    @field_validator("max_completion_tokens", mode="wrap")
    @classmethod
    def _max_completion_tokens(cls, value: Any, handler, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        return _within(handler(value), "max_completion_tokens", 1,
                       _context(info).limits.max_tokens, _MAX_TOKENS_HINT)

    @field_validator("max_tokens", mode="wrap")
    @classmethod
    def _max_tokens(cls, value: Any, handler, info: ValidationInfo) -> int:
        """The tokens per solution: max_completion_tokens when sent, max_tokens unread."""
        if info.data.get("max_completion_tokens") is not None:
            return info.data["max_completion_tokens"]
        limits = _context(info).limits
        if value is None:
            return min(_context(info).defaults.max_tokens, limits.max_tokens)
        return _within(handler(value), "max_tokens", 1, limits.max_tokens, _MAX_TOKENS_HINT)

    @field_validator("particle_temperature", "temperature", "top_p", mode="wrap")
    @classmethod
    def _number(cls, value: Any, handler, info: ValidationInfo) -> float:
        field = info.field_name
        if value is None:
            return getattr(_context(info).defaults, field)
        number = handler(value)
        low, high = _NUMBER_RANGES[field]
        if not low <= number <= high:
            raise invalid(f"'{field}' is {value}; it must be between {low} and {high}")
        return float(number)

    @field_validator("particle_temperature", "top_p")
    @classmethod
    def _above_zero(cls, number: float, info: ValidationInfo) -> float:
        if number == 0:
            raise invalid(f"'{info.field_name}' must be above 0")
        return number

    @field_validator("seed", mode="wrap")
    @classmethod
    def _seed(cls, value: Any, handler, info: ValidationInfo) -> int:
        if value is None:
            return _context(info).defaults.seed
        return _within(handler(value), "seed", 0, 2**63 - 1)

    @field_validator("n", mode="wrap")
    @classmethod
    def _n(cls, value: Any, handler, info: ValidationInfo) -> int:
        """How many of the search's best distinct solutions to return."""
        budget = info.data.get("budget")
        if budget is None:
            return 1
        n = 1 if value is None else _within(
            handler(value), "n", 1, budget, f"n returns the n best distinct solutions of one "
                                            f"search, so it cannot exceed the budget ({budget})")
        method = info.data.get("method")
        if method in METHODS and METHODS[method].fixed_budget == 1 and n > 1:
            raise invalid(f"{method} search writes one solution: send n = 1, or a sampling "
                          "method")
        return n

    @field_validator("stream_options", mode="plain")
    @classmethod
    def _stream_options(cls, value: Any) -> dict:
        options = value or {}
        if not isinstance(options, dict):
            raise invalid("'stream_options' must be an object such as "
                          "{\"include_usage\": true}")
        return options


class ChatRequest(OpenAIRequest):
    """A chat completion: the problem is the last user message."""

    messages: str = None

    @field_validator("messages", mode="plain")
    @classmethod
    def _problem(cls, value: Any, info: ValidationInfo) -> str:
        return _short_enough(chat_problem(value), info)

    @property
    def problem(self) -> str:
        return self.messages


class CompletionRequest(OpenAIRequest):
    """A text completion: the problem is the prompt."""

    prompt: str = None

    @field_validator("prompt", mode="plain")
    @classmethod
    def _problem(cls, value: Any, info: ValidationInfo) -> str:
        return _short_enough(prompt_problem(value), info)

    @property
    def problem(self) -> str:
        return self.prompt


def _context(info: ValidationInfo) -> Context:
    return info.context


def _merged(value: Any, info: ValidationInfo) -> Any:
    """A setting from the body, the model-name prefix, or the default; body and prefix must
    agree when both are given."""
    field = info.field_name
    from_prefix = getattr(info.data.get("model", ModelName("")), field)
    if value is not None and from_prefix is not None and value != from_prefix:
        raise invalid(f"'{field}' is {value!r} but the model name says {from_prefix!r}; send "
                      "one or make them agree")
    if value is not None:
        return value
    return from_prefix if from_prefix is not None else getattr(_context(info).defaults, field)


def _within(value: int, field: str, low: int, high: int, hint: str = "") -> int:
    if not low <= value <= high:
        limit = f"at least {low}" if value < low else f"at most {high}"
        raise invalid(f"'{field}' is {value}; it must be {limit}" + (f": {hint}" if hint and
                                                                      value > high else ""))
    return value


def _largest_divisor(budget: int, width: int) -> int:
    return max(d for d in range(1, min(width, budget) + 1) if budget % d == 0)


def _short_enough(problem: str, info: ValidationInfo) -> str:
    limit = _context(info).limits.max_problem_chars
    if len(problem) > limit:
        raise invalid(f"the problem is {len(problem)} characters; at most {limit} are accepted")
    return problem


class _BodySchema(GenerateJsonSchema):
    # 'prm' defaults to a sentinel with no JSON form; body_schema describes that field itself
    ignored_warning_kinds = {*GenerateJsonSchema.ignored_warning_kinds, "non-serializable-default"}


def _nullable(kind: str, **constraints: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **constraints}


_TEXT_PART = {"type": "object", "required": ["type", "text"],
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_PROBLEM_FIELDS: dict[type[OpenAIRequest], tuple[str, dict[str, Any]]] = {
    ChatRequest: ("messages", {
        "type": "array", "minItems": 1,
        "items": {"type": "object", "required": ["role"], "properties": {
            "role": {"type": "string"},
            "content": {"anyOf": [{"type": "string"},
                                  {"type": "array", "items": _TEXT_PART}]}}},
        "description": "The problem is the last message, which must be the user's, with "
                       "text content: at most {chars} characters once stripped."}),
    CompletionRequest: ("prompt", {
        "anyOf": [{"type": "string", "pattern": r"\S"},
                  {"type": "array", "items": {"type": "string", "pattern": r"\S"},
                   "minItems": 1, "maxItems": 1}],
        "description": "The problem: at most {chars} characters once stripped."}),
}


def _regex_literal(text: str) -> str:
    """``text`` as a regular expression that matches it (in Python's and ECMA-262's syntax)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


def body_schema(shape: type[OpenAIRequest], served: str, limits: ServerLimits) -> dict[str, Any]:
    """The JSON Schema (OpenAPI 3.1's dialect) of the bodies ``shape`` reads on a server that
    serves ``served`` within ``limits``. Checks across fields (the budget a multiple of the
    width, n at most the budget, a model-name prefix agreeing with the fields) are described,
    not enforced. Definitions it refers to, if any, are in its ``$defs``, referred to where an
    OpenAPI document keeps them (``#/components/schemas/NAME``)."""
    schema = shape.model_json_schema(schema_generator=_BodySchema,
                                     ref_template="#/components/schemas/{model}")
    problem_field, problem = _PROBLEM_FIELDS[shape]
    prefix = f"(?:{'|'.join(SERVED_METHODS)})(?:-[0-9]+(?:x[0-9]+)?)?/"
    budget = _nullable("integer", minimum=1, maximum=limits.max_budget)
    tokens = _nullable("integer", minimum=1, maximum=limits.max_tokens)
    fields: dict[str, dict[str, Any]] = {
        **{field: {"enum": list(accepted), "description": refusal}
           for field, (accepted, refusal) in _REFUSALS.items()},
        "model": {"type": "string", "pattern": f"^(?:{prefix})?{_regex_literal(served)}$",
                  "description": f"'{served}', or behind a search prefix: "
                                 f"'beam-16/{served}', 'dvts-16x4/{served}', "
                                 f"'greedy/{served}'"},
        "method": {"enum": [*SERVED_METHODS, None]},
        "budget": {**budget, "description": "the samples the search may draw"},
        "width": {**budget, "description": "the beams kept; a tree search needs the "
                                           "budget to be a multiple of it"},
        "prm": {"type": "string", "pattern": r"\S",
                "description": "the scorer; absent: the server's default"},
        "aggregation": {"enum": [*ANSWER_AGGREGATIONS, None]},
        "step_aggregation": {"enum": [*STEP_AGGREGATIONS, None]},
        "particle_temperature": {
            **_nullable("number", exclusiveMinimum=0,
                        maximum=_NUMBER_RANGES["particle_temperature"][1]),
            "description": "particle filtering and Gibbs weigh a particle by softmax(logit("
                           "score) / this); raise it for a coarse scorer"},
        "max_completion_tokens": tokens,
        "max_tokens": tokens,
        "temperature": _nullable("number", minimum=_NUMBER_RANGES["temperature"][0],
                                 maximum=_NUMBER_RANGES["temperature"][1]),
        "top_p": _nullable("number", exclusiveMinimum=0, maximum=_NUMBER_RANGES["top_p"][1]),
        "seed": _nullable("integer", minimum=0, maximum=2**63 - 1),
        "n": {**budget, "description": "the best distinct solutions returned (at most the "
                                       "budget)"},
        "stream": _nullable("boolean"),
        "stream_options": _nullable("object"),
        problem_field: {**problem,
                        "description": problem["description"].format(
                            chars=limits.max_problem_chars)},
    }
    properties = schema["properties"]
    for field, described in fields.items():
        title = properties[field].get("title")
        properties[field] = {"title": title, **described} if title else described
    schema["required"] = ["model", problem_field]
    return schema
