"""Option text into values: comma-separated lists, escapes, per-method budgets; and the marks
that tell a recipe file which options take such lists."""

from __future__ import annotations

from dataclasses import dataclass

from ttscale.cli.console import fail


@dataclass(frozen=True)
class CommaList:
    """Marks a text option that holds a comma-separated list of ``item`` values; a recipe may
    give it as a YAML list."""

    item: type = str


@dataclass(frozen=True)
class BudgetsByMethod:
    """Marks the repeatable METHOD=N,N... option; a recipe may give it as a mapping."""


def as_text(values: tuple | list) -> str:
    """A tuple of defaults as the comma-separated text the option takes."""
    return ",".join(str(value) for value in values)


def parse_csv(value: str, kind: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        fail(f"{kind} is empty; give a comma-separated list")
    return items


def parse_ints(value: str, kind: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in parse_csv(value, kind))
    except ValueError:
        fail(f"{kind} must be comma-separated integers, got {value!r}")
    raise AssertionError  # unreachable


def unescape(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8").decode("unicode_escape")


def parse_method_budgets(values: list[str] | None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    pairs = []
    for value in values or ():
        method, sign, budgets = value.partition("=")
        if not sign or not method.strip():
            fail(f"--method-n takes METHOD=N,N..., e.g. beam=4,16; got {value!r}")
        pairs.append((method.strip(), parse_ints(budgets, f"--method-n {method.strip()}")))
    return tuple(pairs)
