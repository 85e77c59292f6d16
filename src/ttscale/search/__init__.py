"""Search methods. Each is a coroutine ``method(ctx, n) -> SearchResult`` over a tree, listed
in the registry (:mod:`ttscale.search.methods`) and run through ``solve``; none imports an
engine."""

from __future__ import annotations

from ttscale.search.context import Choice, MethodChooser, SearchContext
from ttscale.search.methods import METHODS, JobResult, MethodSpec, get_method, solve, solve_jobs
from ttscale.search.result import Candidate, SearchResult
from ttscale.settings import SearchSettings

__all__ = ["METHODS", "Candidate", "Choice", "JobResult", "MethodChooser", "MethodSpec",
           "SearchContext", "SearchResult", "SearchSettings", "get_method", "solve",
           "solve_jobs"]
