"""What a calibrated plan chooses among: a method, or a method whose whole solutions think
under a thinking budget (``bon+think512``: Best-of-N, each thought cut at 512 tokens). The
label is how outcomes, plan cells and evaluation tables name an option; ``split_option``
reads it back into the method and the budget."""

from __future__ import annotations

from ttscale.errors import ConfigError

THINK_MARK = "+think"


def option_label(method: str, thinking_budget: int | None = None) -> str:
    return method if thinking_budget is None else f"{method}{THINK_MARK}{thinking_budget}"


def split_option(label: str) -> tuple[str, int | None]:
    """(method, thinking budget) of an option label."""
    method, mark, budget = label.partition(THINK_MARK)
    if not mark:
        return label, None
    if not budget.isdigit() or int(budget) < 1:
        raise ConfigError(f"option {label!r}: a thinking budget is a positive number of tokens "
                          f"after {THINK_MARK!r}, e.g. bon{THINK_MARK}512")
    return method, int(budget)
