"""A plan as a table: the prior rules per difficulty bin, or a calibrated plan's choice per bin
and budget with the accuracy and FLOPs behind it."""

from __future__ import annotations

from pathlib import Path

from ttscale.cli.console import out
from ttscale.planner.prior import RULES

SHOWN_BUDGET = 16  # the prior rules do not depend on the budget; any one shows them


def print_plan(plan, path: Path | None) -> None:
    from rich.table import Table

    policy = plan.policy
    billions = (f"{policy['parameters'] / 1e9:.2f}B" if policy.get("parameters")
                else "unknown size")
    title = f"{plan.source} plan for {policy.get('name')} ({billions}), scorer {plan.scorer}"
    table = Table(title=title, caption=RULES if plan.source == "prior" else _caption(plan))
    if plan.source == "prior":
        _prior_rows(table, plan)
    else:
        _calibrated_rows(table, plan)
    out.print(table)
    for name, why in plan.fallbacks.items():
        out.print(f"bin {name}: {why}; the prior rules decide there", highlight=False)
    if path is not None:
        out.print(f"plan: {path}", highlight=False)


def _caption(plan) -> str:
    predictor = plan.predictor
    fitted = plan.info.get("predictor_accuracy_on_calibration")
    return (f"probe: {plan.probe_size} samples; bin predicted from {predictor.weight:g} × "
            f"agreement + {1 - predictor.weight:g} × score, thresholds "
            f"{', '.join(f'{t:.3g}' for t in predictor.thresholds)}"
            + ("" if fitted is None else f" ({fitted:.0%} right on the calibration problems)"))


def _prior_rows(table, plan) -> None:
    ranges = plan.binning.describe()
    table.add_column("bin")
    table.add_column("method")
    table.add_column("rule")
    for name in plan.binning.names:
        decision = plan.decide(name, SHOWN_BUDGET, parameters=plan.policy.get("parameters"),
                               model_name=plan.policy.get("name") or "")
        table.add_row(f"{name} ({ranges[name]})", decision.method, decision.reason)


def _calibrated_rows(table, plan) -> None:
    from ttscale.compute import format_flops

    ranges = plan.binning.describe()
    table.add_column("bin")
    table.add_column("problems", justify="right")
    for budget in plan.budgets:
        table.add_column(f"budget {budget}")
    counts = plan.info.get("bin_counts", {})
    for name in plan.binning.names:
        cells = []
        for budget in plan.budgets:
            choice = plan.choices.get(name, {}).get(budget)
            if name in plan.fallbacks:
                cells.append("prior rules")
            elif choice is None:
                cells.append("-")
            else:
                best = choice.candidates[0]
                cells.append(f"{choice.method}@{choice.n}: {best.accuracy:.0%} "
                             f"[{best.low:.0%}, {best.high:.0%}], {format_flops(best.flops)}")
        table.add_row(f"{name} ({ranges[name]})", str(counts.get(name, "")), *cells)
