"""One JSONL row, already parsed into a JSON object, checked field by field and turned into a
:class:`~ttscale.datasets.problem.Problem`. A row that cannot be used raises
:class:`RowError`, whose message says why."""

from __future__ import annotations

import math
import re
from typing import Any

from ttscale.datasets.problem import Problem

__all__ = ["RowError", "problem_from_row"]


class RowError(ValueError):
    """This row is skipped; the message is the reason shown to the user."""


def problem_from_row(row: dict[str, Any], *, dataset: str, line_no: int) -> Problem:
    """The problem a JSON object describes; its id defaults to ``<dataset>-<line_no>``."""
    return Problem(
        id=_row_id(row, f"{dataset}-{line_no}"),
        problem=_required_text(row, "problem"),
        answer=_required_text(row, "answer"),
        dataset=dataset,
        level=_optional_level(row),
        subject=_optional_text(row, "subject"),
        solution=_optional_text(row, "solution"),
        quantities=_optional_quantities(row),
    )


def _fields_found(row: dict[str, Any]) -> str:
    names = ", ".join(sorted(row)[:12])
    return f"fields found: {names}" if names else "the object is empty"


def _required_text(row: dict[str, Any], field: str) -> str:
    if field not in row or row[field] is None:
        raise RowError(f"missing {field!r} ({_fields_found(row)})")
    value = row[field]
    if field == "answer" and isinstance(value, int | float) and not isinstance(value, bool):
        return _numeric_answer(value)
    if not isinstance(value, str):
        expected = "a string or a number" if field == "answer" else "a string"
        raise RowError(f"{field!r} is {type(value).__name__}, expected {expected}")
    if not value.strip():
        raise RowError(f"{field!r} is empty")
    return value.strip() if field == "answer" else value


def _numeric_answer(value: int | float) -> str:
    """A numeric answer as text: ``3.0`` -> ``"3"``, ``2.5`` -> ``"2.5"``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(f"'answer' is {value!r}, not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _optional_text(row: dict[str, Any], field: str) -> str | None:
    value = row.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"{field!r} is {type(value).__name__}, expected a string")
    return value


_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


def _optional_level(row: dict[str, Any]) -> int | None:
    value = row.get("level")
    if value is None:
        return None
    if isinstance(value, bool):
        raise RowError("'level' is a boolean, expected an integer such as 3")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _LEVEL_TEXT.match(value)
        if match is not None:
            return int(match.group(1))
    raise RowError(f"'level' is {value!r}, expected an integer such as 3")


def _optional_quantities(row: dict[str, Any]) -> tuple[str, ...]:
    values = row.get("quantities")
    if values is None:
        return ()
    if not isinstance(values, list):
        raise RowError(f"'quantities' is {type(values).__name__}, expected a list of numbers")
    found = []
    for value in values:
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise RowError(f"'quantities' holds {value!r}, expected numbers or objects with "
                           "a numeric 'value'")
        found.append(str(value).strip())
    return tuple(found)


def _row_id(row: dict[str, Any], default: str) -> str:
    value = row.get("id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowError(f"'id' is {type(value).__name__}, expected a string")
    value = str(value).strip()
    if not value:
        raise RowError("'id' is empty")
    return value
