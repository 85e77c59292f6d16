"""A run's recipe against its results: the accuracy the recipe's source reports (the paper's)
beside the accuracy the run's records give at the same dataset, method and budget.

`ttscale run --config FILE` leaves the recipe in the run folder as ``recipe.json``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from ttscale.report.runs import RunData
from ttscale.report.tables import Table, runs_footer
from ttscale.stats import bootstrap_mean

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"

EXPECTED_COLUMNS = ("run", "dataset", "method", "N", "accuracy (expected)",
                    "accuracy (measured)", "low", "high", "problems", "note")


def read_recipe(run: RunData) -> dict | None:
    """The recipe a run was started from, or None (none, or unreadable: then a warning)."""
    path = run.path / RECIPE_FILE
    if not path.exists():
        return None
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("%s is unreadable (%s): the report leaves out what it expects",
                       path, error)
        return None
    return recipe if isinstance(recipe, dict) else None


def measured(run: RunData, dataset: str, method: str, n: int) -> list[float]:
    """1.0 or 0.0 per problem the run answered with ``method`` at budget ``n`` on
    ``dataset``."""
    if run.dataset != dataset:
        return []
    return [float(bool(record["correct"])) for record in run.records
            if record["method"] == method and record["n"] == n]


def expected_table(runs: Sequence[RunData]) -> Table | None:
    """One row per figure a run's recipe expects; None when no run has one."""
    rows, sources, members = [], [], []
    for run in runs:
        recipe = read_recipe(run)
        if not recipe or not recipe.get("expected"):
            continue
        members.append(run)
        sources.append(f"{run.run_id}: recipe {recipe.get('name')}"
                       + (f" ({recipe['source']})" if recipe.get("source") else ""))
        for item in recipe["expected"]:
            outcomes = measured(run, item["dataset"], item["method"], item["n"])
            estimate = bootstrap_mean(outcomes) if outcomes else None
            shown = (estimate.value, estimate.low, estimate.high) if estimate else (None,) * 3
            rows.append((run.run_id, item["dataset"], item["method"], item["n"],
                         item["accuracy"], *shown, len(outcomes), item.get("note")))
    if not rows:
        return None
    return Table("Expected (the recipe's source) against measured accuracy", EXPECTED_COLUMNS,
                 tuple(rows), runs_footer(members),
                 "Expected: the accuracy the recipe's source reports; measured: this run's "
                 "records at the same dataset, method and N, with a 95 % bootstrap interval "
                 "over the problems answered so far (a subset of the dataset measures fewer "
                 "problems than the source did). " + "; ".join(sources) + ".")
