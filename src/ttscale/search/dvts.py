"""Diverse verifier tree search (DVTS): N/M independent subtrees, each a beam search that
keeps one path and expands it M times; final answers are pooled across subtrees. Splitting
the budget into subtrees keeps the search from collapsing onto one early, PRM-favoured step."""

from __future__ import annotations

from ttscale.search.beam_search import check_budget, grouped_beam_search
from ttscale.search.context import SearchContext
from ttscale.search.result import SearchResult


async def dvts(ctx: SearchContext, n: int) -> SearchResult:
    width = ctx.settings.width
    check_budget(n, width)
    candidates = await grouped_beam_search(ctx, groups=n // width, keep=1, width=width,
                                           reuse=ctx.reuse)
    return SearchResult("dvts", n, width, tuple(candidates), ctx.tree, ctx.ledger)
