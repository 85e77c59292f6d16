"""The paper's tables, as rows (for CSV) and Markdown: accuracy per method and budget; a
policy with test-time scaling against a larger model's chain of thought, with FLOPs ratios;
two runs side by side. Every number comes from the records; each table's footer names the
runs it came from."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ttscale.compute import format_flops
from ttscale.errors import ConfigError
from ttscale.report.curves import ALL, MAJORITY, PASS, Series
from ttscale.report.runs import RunData
from ttscale.report.summary import method_rank
from ttscale.stats import Estimate, bootstrap_mean, paired_difference


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]  # plain values: str, int, float or None
    footer: str
    note: str = ""

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if value is None else _csv_value(value) for value in row])
        return buffer.getvalue()

    def to_markdown(self, cell=None) -> str:
        cell = cell or _markdown_value
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            cells = (cell(column, value)
                     for column, value in zip(self.columns, row, strict=True))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", self.footer, ""]
        return "\n".join(lines)


def _csv_value(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _markdown_value(column: str, value) -> str:
    if value is None:
        return "—"
    if column == "parameters" and isinstance(value, int):
        return format_parameters(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if "FLOPs" in column and "÷" not in column:
            return format_flops(value)
        if "÷" in column:
            return f"{value:.3g}×"
        if column.startswith(("accuracy", "Δ", "low", "high")):
            return f"{value:.1%}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def format_parameters(count: int) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def runs_footer(runs: Sequence[RunData]) -> str:
    parts = [f"{run.run_id} (identity {run.digest}, {len(run.records)} records"
             + (f", {len(run.skipped)} skipped" if run.skipped else "") + ")" for run in runs]
    return "Runs: " + "; ".join(parts) + "."


def _fmt_pct(estimate: Estimate) -> str:
    if math.isnan(estimate.value):
        return "n/a"
    return (f"{estimate.value * 100:.1f} [{estimate.low * 100:.1f}, "
            f"{estimate.high * 100:.1f}]")


# -- method x budget ----------------------------------------------------------------------

ACCURACY_COLUMNS = ("run", "policy", "scorer", "bin", "method", "aggregation", "default", "N",
                    "problems", "accuracy", "low", "high", "FLOPs/problem")


def accuracy_table(series: Sequence[Series], runs: Sequence[RunData]) -> Table:
    """Long form, one row per (run, bin, method, aggregation, N): every line of every curve."""
    by_id = {run.run_id: run for run in runs}
    rows = []
    for line in series:
        run = by_id[line.run_id]
        for point in line.points:
            rows.append((line.run_id, run.policy, run.scorer, line.bin, line.method,
                         line.aggregation, line.default, point.n, point.problems,
                         point.accuracy.value, point.accuracy.low, point.accuracy.high,
                         point.flops))
    return Table("Accuracy by method and budget", ACCURACY_COLUMNS, tuple(rows),
                 runs_footer(runs), "95 % percentile-bootstrap intervals over problems.")


def accuracy_grid(series: Sequence[Series], runs: Sequence[RunData], facet: str = ALL) -> Table:
    """The paper's layout: one row per method (the run's own aggregation), one column per
    budget N; each cell is accuracy % [95 % CI] and FLOPs per problem."""
    lines = [line for line in series if line.bin == facet and line.default]
    budgets = sorted({point.n for line in lines for point in line.points})
    several = len({line.run_id for line in lines}) > 1
    rows = []
    for line in lines:
        cells = {point.n: point for point in line.points}
        row: list = [line.name(several)]
        for n in budgets:
            point = cells.get(n)
            row.append(None if point is None else
                       f"{_fmt_pct(point.accuracy)} · {format_flops(point.flops)}")
        rows.append(tuple(row))
    columns = ("method",) + tuple(f"N={n}" for n in budgets)
    title = "Accuracy (%) and FLOPs per problem" + ("" if facet == ALL else f": {facet} problems")
    return Table(title, columns, tuple(rows), runs_footer(runs),
                 "Each cell: accuracy % [95 % bootstrap CI] · mean FLOPs per problem.")


# -- small policy + TTS against a larger model --------------------------------------------

MODEL_COLUMNS = ("dataset", "run", "policy", "parameters", "setting", "problems", "accuracy",
                 "low", "high", "FLOPs/problem", "FLOPs ÷ reference", "Δ accuracy vs reference")


@dataclass(frozen=True)
class _Choice:
    run: RunData
    setting: str
    point_n: int
    accuracy: Estimate
    flops: float | None
    problems: int


def _run_choices(run: RunData, series: Sequence[Series]) -> tuple[_Choice | None, _Choice | None]:
    """(chain of thought, compute-optimal TTS) of one run: greedy, and the most accurate search
    at any budget (the cheaper in FLOPs on a tie)."""
    lines = [line for line in series
             if line.run_id == run.run_id and line.bin == ALL and line.default]
    cot = tts = None
    for line in lines:
        if line.method == PASS:  # an oracle, not a method anyone can run
            continue
        for point in line.points:
            setting = ("CoT (greedy)" if line.method == "greedy" else
                       f"majority@{point.n}" if line.method == MAJORITY else
                       f"{line.method}@{point.n}")
            choice = _Choice(run, setting, point.n, point.accuracy, point.flops, point.problems)
            if line.method == "greedy":
                cot = choice
            elif tts is None or _better(choice, tts):
                tts = choice
    return cot, tts


def _better(a: _Choice, b: _Choice) -> bool:
    if a.accuracy.value != b.accuracy.value:
        return a.accuracy.value > b.accuracy.value
    return (a.flops if a.flops is not None else math.inf) < (
        b.flops if b.flops is not None else math.inf)


def models_table(runs: Sequence[RunData], series: Sequence[Series],
                 reference: str | None = None) -> Table:
    """The paper's "can a small policy with TTS beat a larger one" table: per run its chain of
    thought and its best search, against the reference run's chain of thought (the run of the
    largest policy unless ``reference`` names one), with FLOPs ratios."""
    if reference is not None and reference not in {run.run_id for run in runs}:
        raise ConfigError(f"--reference {reference!r} is not one of the runs "
                          f"({', '.join(run.run_id for run in runs)})")
    datasets: dict[str | None, list[RunData]] = {}
    for run in runs:
        datasets.setdefault(run.dataset, []).append(run)
    rows = []
    notes = []
    for dataset, members in datasets.items():
        ref_run = next((run for run in members if run.run_id == reference), None) or max(
            members, key=lambda run: run.parameters or 0)
        ref_cot, ref_tts = _run_choices(ref_run, series)
        base = ref_cot or ref_tts
        if base is None:
            continue
        notes.append(f"{dataset}: reference is {ref_run.run_id} {base.setting}")
        for run in members:
            cot, tts = _run_choices(run, series)
            for choice in (cot, tts):
                if choice is None:
                    continue
                ratio = (choice.flops / base.flops if choice.flops is not None and base.flops
                         else None)
                rows.append((dataset, run.run_id, run.policy, run.parameters, choice.setting,
                             choice.problems, choice.accuracy.value, choice.accuracy.low,
                             choice.accuracy.high, choice.flops, ratio,
                             choice.accuracy.value - base.accuracy.value))
    return Table("Policy + test-time scaling against a reference model", MODEL_COLUMNS,
                 tuple(rows), runs_footer(runs),
                 "TTS is each run's most accurate search over every budget it ran (the cheaper "
                 "on a tie), chosen on these problems. Inference FLOPs only. "
                 + "; ".join(notes) + ".")


# -- two runs side by side -----------------------------------------------------------------

COMPARE_COLUMNS = ("method", "N", "shared problems", "accuracy A", "accuracy B",
                   "Δ accuracy (B − A)", "Δ low", "Δ high", "FLOPs A", "FLOPs B",
                   "FLOPs ÷ (B over A)")


def _outcomes(run: RunData) -> dict[tuple[str, int], dict[str, tuple[bool, float | None]]]:
    result: dict[tuple[str, int], dict[str, tuple[bool, float | None]]] = {}
    for record in run.records:
        result.setdefault((record["method"], record["n"]), {})[record["problem_id"]] = (
            bool(record["correct"]), record["ledger"].get("total_flops"))
    return result


def compare_table(a: RunData, b: RunData) -> Table:
    """Each method and budget both runs have, on the problems both answered: accuracies, the
    paired-bootstrap difference, and FLOPs."""
    first, second = _outcomes(a), _outcomes(b)
    rows = []
    for key in sorted(set(first) & set(second), key=lambda k: (method_rank(k[0]), k[1])):
        shared = sorted(set(first[key]) & set(second[key]))
        if not shared:
            continue
        ok_a = [float(first[key][pid][0]) for pid in shared]
        ok_b = [float(second[key][pid][0]) for pid in shared]
        delta = paired_difference(ok_b, ok_a)
        flops_a = _mean_or_none([first[key][pid][1] for pid in shared])
        flops_b = _mean_or_none([second[key][pid][1] for pid in shared])
        rows.append((key[0], key[1], len(shared), bootstrap_mean(ok_a).value,
                     bootstrap_mean(ok_b).value, delta.value, delta.low, delta.high, flops_a,
                     flops_b, flops_b / flops_a if flops_a and flops_b is not None else None))
    if not rows:
        raise ConfigError(f"runs {a.run_id} and {b.run_id} share no method, budget and problem "
                          "to compare: compare runs of the same dataset and methods")
    return Table(f"A = {a.run_id} against B = {b.run_id}", COMPARE_COLUMNS, tuple(rows),
                 runs_footer([a, b]),
                 "Δ is paired over the problems both runs answered: 95 % bootstrap interval.")


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)
