"""Tables from run records: every figure is computed from records on disk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ttscale.compute import format_flops
from ttscale.search import METHODS

METHOD_ORDER = tuple(METHODS)  # the registry's order


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method: the registry's order, unknown methods last by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else 99, method)


@dataclass(frozen=True)
class SummaryRow:
    method: str
    n: int
    problems: int
    accuracy: float
    pass_at_n: float
    generated_tokens: float  # mean per problem
    flops: float | None  # mean per problem, policy + scorer
    seconds: float  # mean per problem


def summarize(records: Iterable[dict], keys: Sequence[tuple[str, int]] | None = None
              ) -> list[SummaryRow]:
    grouped: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for record in records:
        grouped[(record["method"], record["n"])].append(record)
    wanted = list(keys) if keys is not None else sorted(
        grouped, key=lambda k: (method_rank(k[0]), k[1]))
    rows = []
    for method, n in wanted:
        group = grouped.get((method, n), [])
        if not group:
            continue
        count = len(group)
        flops = [r["ledger"]["total_flops"] for r in group]
        rows.append(SummaryRow(
            method=method, n=n, problems=count,
            accuracy=sum(bool(r["correct"]) for r in group) / count,
            pass_at_n=sum(bool(r["pass_at_n"]) for r in group) / count,
            generated_tokens=sum(r["ledger"]["policy_tokens"]["generated"] for r in group) / count,
            flops=None if any(f is None for f in flops) else sum(flops) / count,
            seconds=sum(r["seconds"] for r in group) / count,
        ))
    return rows


def render_table(rows: Sequence[SummaryRow], title: str):
    from rich.table import Table

    table = Table(title=title, caption="tokens, FLOPs and seconds are means per problem")
    for column in ("method", "N", "problems", "accuracy", "pass@N", "tokens", "FLOPs",
                   "seconds"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(row.method, str(row.n), str(row.problems), f"{row.accuracy:.1%}",
                      f"{row.pass_at_n:.1%}", f"{row.generated_tokens:.0f}",
                      format_flops(row.flops), f"{row.seconds:.1f}")
    return table
