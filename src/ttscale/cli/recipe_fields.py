"""What each recipe key takes: the type of its option, read from the command's annotations, as
a pydantic type and in words for an error; and the figures a recipe's source reports."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ttscale.cli.parsing import BudgetsByMethod, CommaList

SCALARS: dict[Any, tuple[Any, str]] = {  # option type -> (what pydantic checks, in words)
    bool: (bool, "true or false"),
    int: (int, "an integer"),
    float: (float, "a number"),
    str: (str, "text"),
    Path: (str, "a path"),  # kept as text: it becomes a command-line default, and JSON
}


@dataclass(frozen=True)
class OptionField:
    type: Any  # what pydantic checks the value against (None always allowed: the default)
    expected: str  # what an error says the key takes


def option_field(annotation: Any) -> OptionField:
    base, marks = _split(annotation)
    for mark in marks:
        if isinstance(mark, CommaList):
            words = "integers" if mark.item is int else "a list or comma-separated text"
            return OptionField(Annotated[str | None, BeforeValidator(_comma_list(mark.item))],
                               words)
        if isinstance(mark, BudgetsByMethod):
            return OptionField(Annotated[list[str] | None, BeforeValidator(_by_method)],
                               "a mapping of methods to budgets, e.g. {beam: [4, 16]}")
    if typing.get_origin(base) is list:  # a repeatable option
        kind, words = SCALARS.get(typing.get_args(base)[0], (str, "text"))
        return OptionField(Annotated[list[kind] | None, BeforeValidator(_listed)],
                           f"{words}, or a list of it")
    kind, words = SCALARS.get(base, (str, "text"))
    return OptionField(kind | None, words)


def _split(annotation: Any) -> tuple[Any, tuple]:
    """(the option's value type without None, the marks in its Annotated metadata)."""
    marks: tuple = ()
    if typing.get_origin(annotation) is Annotated:
        annotation, *metadata = typing.get_args(annotation)
        marks = tuple(metadata)
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = arguments[0]
    return annotation, marks


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str)
                                      and value.strip().lstrip("+-").isdigit())


def _comma_list(item: type):
    """A YAML list, or text with commas, as the comma-separated text the option takes."""

    def join(value: Any) -> str | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        if isinstance(value, (dict, bool)) or any(isinstance(v, (list, dict)) for v in items):
            raise ValueError("not a list")
        if item is int and not all(_is_integer(v) for v in items):
            raise ValueError("not integers")
        return ",".join(str(v).strip() for v in items)

    return join


def _by_method(value: Any) -> list[str] | None:
    """{beam: [4, 16]} (or METHOD=N,N... texts) as the repeated --method-n values."""
    if value is None:
        return None
    if isinstance(value, dict):
        return [f"{method}={_comma_list(int)(budgets)}" for method, budgets in value.items()]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("not a mapping of methods to budgets")


def _listed(value: Any) -> Any:
    return value if value is None or isinstance(value, list) else [value]


def _fraction(value: Any) -> float:
    """An accuracy as a fraction: 0.756 as it is, '75.6%' divided by 100."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            percent = -1.0
        if 0 <= percent <= 100:
            return round(percent / 100, 6)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ValueError("give a fraction from 0 to 1 (0.756) or a percent ('75.6%')")


class Expected(BaseModel):
    """An accuracy the recipe's source reports: ``method`` at budget ``n`` on ``dataset``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    method: str
    n: int = Field(ge=1)
    accuracy: Annotated[float, BeforeValidator(_fraction)]  # a fraction
    note: str | None = None
