"""Search methods. Each is a coroutine ``method(ctx, n) -> SearchResult`` over a tree; none
imports an engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ttscale.errors import ConfigError
from ttscale.registry import unknown_name_message
from ttscale.search.beam_search import beam_search
from ttscale.search.best_of_n import best_of_n, greedy, majority_vote
from ttscale.search.context import SearchContext
from ttscale.search.dvts import dvts
from ttscale.search.result import Candidate, SearchResult
from ttscale.settings import SearchSettings

__all__ = ["METHODS", "Candidate", "MethodSpec", "SearchContext", "SearchResult",
           "SearchSettings", "get_method"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Callable[[SearchContext, int], Awaitable[SearchResult]]
    uses_scorer: bool  # the scorer guides or selects
    uses_width: bool  # budget N must be a multiple of the width M
    pooled: bool  # answered from one pool of whole-solution samples shared with other budgets
    summary: str


METHODS: dict[str, MethodSpec] = {
    spec.name: spec for spec in (
        MethodSpec("greedy", greedy, False, False, False,
                   "one solution at temperature 0 (the budget is ignored)"),
        MethodSpec("majority", majority_vote, False, False, True,
                   "N sampled solutions, the most frequent answer"),
        MethodSpec("bon", best_of_n, True, False, True,
                   "Best-of-N: N sampled solutions, scored, answer by aggregation"),
        MethodSpec("beam", beam_search, True, True, False,
                   "beam search: keep the N/M best steps, expand each M times"),
        MethodSpec("dvts", dvts, True, True, False,
                   "diverse verifier tree search: N/M independent beam searches of width M"),
    )
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(unknown_name_message("method", name, METHODS))
    return METHODS[name]
