"""``auto``: per problem, a chooser (the planner, given as ``ctx.chooser``) picks the method
and budget; the chosen method runs in the same tree and ledger and takes the samples the
chooser drew to decide as its first ones, so deciding costs only what it draws."""

from __future__ import annotations

from dataclasses import replace

from ttscale.errors import ConfigError
from ttscale.search.context import SearchContext
from ttscale.search.result import SearchResult


async def auto(ctx: SearchContext, n: int) -> SearchResult:
    from ttscale.search.methods import solve  # the registry lists this method itself

    if ctx.chooser is None:
        raise ConfigError("method auto needs a plan to choose by (a plan file from `ttscale "
                          "plan calibrate`, or the prior rules)")
    if n < 1:
        raise ValueError(f"the budget must be at least 1, got {n}")
    choice = await ctx.chooser.choose(ctx, n)
    width = choice.width or ctx.settings.width
    settings, reuse = replace(ctx.settings, width=width), choice.reuse
    if choice.thinking_budget is not None:  # the probe drew without it: nothing to reuse
        settings, reuse = replace(settings, thinking_budget=choice.thinking_budget), ()
    chosen = replace(ctx, settings=settings, reuse=reuse, chooser=None)  # same tree and ledger
    result = await solve(chosen, choice.method, choice.n)
    return SearchResult("auto", n, choice.width, result.candidates, ctx.tree, ctx.ledger,
                        details=choice.explanation)
