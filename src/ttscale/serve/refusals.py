"""How a request is refused. The checks that validate a body raise pydantic errors, each with
the message the client reads as written; the request is refused for its first error, as an
HTTP error whose ``param`` is the field at fault (the error's ``loc``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from ttscale.serve.http import RequestError

_INVALID = "invalid_request"
_MODEL_NOT_FOUND = "model_not_found"  # answered 404, as OpenAI answers an unknown model
# pydantic's own errors, for the fields whose type it checks
_TYPE_MESSAGES = {
    "int_type": "'{field}' must be an integer, got {input!r}",
    "float_type": "'{field}' must be a number, got {input!r}",
    "bool_type": "'{field}' must be true or false",
}


def bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, "invalid_request_error", param)


def invalid(message: str) -> PydanticCustomError:
    """A check's refusal, raised inside validation: a 400."""
    return PydanticCustomError(_INVALID, message)


def model_not_found(message: str) -> PydanticCustomError:
    return PydanticCustomError(_MODEL_NOT_FOUND, message)


def first_refusal(exc: ValidationError) -> RequestError:
    """The HTTP error for a body's first validation error."""
    error = exc.errors()[0]
    param = str(error["loc"][0]) if error["loc"] else None
    return refusal(error["type"], error["msg"], param, error["input"])


def refusal(error_type: str, message: str, param: str | None, value: Any = None
            ) -> RequestError:
    """The HTTP error for one validation error: its type, message, field and value."""
    if error_type == _MODEL_NOT_FOUND:
        return RequestError(404, message, "not_found_error", param)
    if error_type == "model_type":  # the body as a whole
        return bad("the body must be a JSON object")
    template = _TYPE_MESSAGES.get(error_type)
    if template is None:
        return bad(message, param)
    return bad(template.format(field=param, input=value), param)
