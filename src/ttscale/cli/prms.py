"""``ttscale prms``: the step scorers and PRM formats that --prm accepts."""

from __future__ import annotations

from ttscale.cli.console import out


def prms() -> None:
    """List the step scorers and PRM formats that --prm accepts, with how each reads a step."""
    from rich.table import Table

    from ttscale.rewards import CATALOGUE, PATH_KINDS

    table = Table("--prm", "kind", "input format and read-out", title="step scorers and PRMs")
    for entry in CATALOGUE:
        if entry.kind in PATH_KINDS:
            spec = f"{entry.name}:PATH"
        elif entry.kind == "http":
            spec = "http://HOST:PORT"
        else:
            spec = " | ".join((*entry.aliases, entry.name))
        table.add_row(spec, entry.kind, entry.summary)
    table.add_row("none", "-", "no scorer (greedy, majority vote)")
    out.print(table)
