"""``ttscale methods``: the search methods that --method accepts, from the registry."""

from __future__ import annotations

from ttscale.cli.console import out


def methods() -> None:
    """List the search methods --method accepts: what each does and what it needs."""
    from rich.table import Table

    from ttscale.search import METHODS

    table = Table("--method", "scorer", "budget", "what it does", title="search methods")
    for name, spec in METHODS.items():
        budget = (f"always {spec.fixed_budget}" if spec.fixed_budget
                  else "N, a multiple of the width M" if spec.uses_width
                  else "N, one pool for every budget" if spec.pooled else "N")
        table.add_row(name, "yes" if spec.uses_scorer else "-", budget, spec.summary)
    out.print(table)
