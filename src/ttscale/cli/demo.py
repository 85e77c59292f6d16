"""``ttscale demo``: every search on the embedded model over the difficulty ladder, a table per
level, what they show, and the run's HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, out, setup_logging
from ttscale.cli.options import ModelOpt, ThreadsOpt, VerboseOpt, load_engine, prompt_format
from ttscale.cli.parsing import parse_ints
from ttscale.cli.progress import run_with_progress
from ttscale.cli.summary import print_run_note
from ttscale.engines import EngineSpec
from ttscale.errors import TTScaleError
from ttscale.prompts import PromptFormat
from ttscale.settings import SearchSettings

DEMO_LEVELS = "1,2,3"
DEMO_PER_LEVEL = "10,1,1"
DEMO_BUDGETS = "4,16"  # majority vote and Best-of-N: one pool of 16 answers both
DEMO_TREE_BUDGETS = "4,8"  # beam search and DVTS: their cost grows with the tree
DEMO_SCORER = "grounded"  # the verifier benchmarks/verifier.py chose (benchmarks/results)
DEMO_STEP_AGGREGATION = "min"
DEMO_PARALLEL = 16  # every problem at once: fuller batches
DEMO_CONTEXT = EngineSpec.n_ctx  # KV cells for every problem in flight, sharing prompts
# a ladder step is one short sentence, a solution a few of them
DEMO_STEP_TOKENS = 48
DEMO_DEPTH = 6
DEMO_SOLUTION_TOKENS = 192
DEMO_METHODS = ("greedy", "majority", "bon", "beam", "dvts")
DEMO_OUT = Path("runs/demo")


def demo(
    levels: Annotated[str, typer.Option(help="ladder levels (operations per problem)")] =
        DEMO_LEVELS,
    per_level: Annotated[str, typer.Option(
        help="test problems per level: one count, or one per level")] = DEMO_PER_LEVEL,
    n: Annotated[str, typer.Option("--n", help="budgets N of majority vote and Best-of-N")] =
        DEMO_BUDGETS,
    tree_n: Annotated[str, typer.Option("--tree-n", help="budgets N of beam search and DVTS")] =
        DEMO_TREE_BUDGETS,
    width: Annotated[int, typer.Option(help="beam width M")] = SearchSettings.width,
    out_dir: Annotated[Path, typer.Option("--out")] = DEMO_OUT,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    parallel: Annotated[int, typer.Option(
        help="problems searched at once (their samples share the engine's batches)")] =
        DEMO_PARALLEL,
    report: Annotated[bool, typer.Option(help="Write the run's HTML report beside it.")] = True,
    prm: Annotated[str, typer.Option(
        help="the verifier of Best-of-N, beam search and DVTS (default: the grounded "
             "checker, the best measured on the embedded model)")] = DEMO_SCORER,
    verbose: VerboseOpt = False,
) -> None:
    """The main job on the embedded model: greedy vs majority vote vs Best-of-N vs beam search
    vs DVTS on the difficulty ladder's test problems, at two budgets, a table per level and a
    paragraph computed from the records; a saved resumable run and its HTML report (curves,
    tables, every search tree)."""
    setup_logging(verbose)
    try:
        from ttscale.rewards import load_scorer

        config = demo_config(levels, per_level, n, tree_n, width, prm)
        if parallel < 1:
            raise ValueError(f"--parallel must be at least 1 (got {parallel})")
        policy = load_engine(model=model, n_ctx=DEMO_CONTEXT, threads=threads)
        chosen_prompt = prompt_format(PromptFormat.kind, None, policy)
        outcome = run_with_progress(config, policy, load_scorer(prm, policy=policy),
                                    out_dir, chosen_prompt, parallel=parallel)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_level_tables(outcome, config, f"{policy.info.name}, verifier {prm}, M = {width}")
    if report:
        _write_report(out_dir)


def demo_config(levels: str, per_level: str, n: str, tree_n: str, width: int, prm: str):
    """The demo's run: every search over the chosen ladder test problems."""
    from ttscale.run.runner import DatasetSelection, RunConfig

    ids = _problem_ids(levels, per_level)
    budgets, tree_budgets = parse_ints(n, "--n"), parse_ints(tree_n, "--tree-n")
    settings = SearchSettings(max_step_tokens=DEMO_STEP_TOKENS, max_depth=DEMO_DEPTH,
                              max_solution_tokens=DEMO_SOLUTION_TOKENS, width=width,
                              step_aggregation=DEMO_STEP_AGGREGATION)
    return RunConfig(dataset=DatasetSelection("ladder", ids=ids), methods=DEMO_METHODS,
                     budgets=budgets, scorer=prm, settings=settings,
                     method_budgets=(("beam", tree_budgets), ("dvts", tree_budgets)))


def _problem_ids(levels: str, per_level: str) -> tuple[str, ...]:
    """The first test problems of each level, as many as --per-level asks."""
    from ttscale.datasets.ladder import SHIPPED_LEVELS, SHIPPED_PER_LEVEL, parse_levels

    chosen_levels = parse_levels(levels)
    if not set(chosen_levels) <= set(SHIPPED_LEVELS):
        raise ValueError(f"the ladder's test split has levels {SHIPPED_LEVELS[0]}-"
                         f"{SHIPPED_LEVELS[-1]}; got --levels {levels}")
    counts = parse_ints(per_level, "--per-level")
    if len(counts) == 1:
        counts = counts * len(chosen_levels)
    most = SHIPPED_PER_LEVEL["ladder_test"]
    if len(counts) != len(chosen_levels) or not all(1 <= c <= most for c in counts):
        raise ValueError(f"--per-level takes one count from 1 to {most} (the test "
                         f"split's problems per level) or one per level "
                         f"({len(chosen_levels)}); got {per_level}")
    return tuple(f"ladder-test-L{level}-{k:04d}"
                 for level, count in zip(chosen_levels, counts, strict=True)
                 for k in range(1, count + 1))


def _print_level_tables(outcome, config, title: str) -> None:
    """One table per level, then what they show, from the run's records."""
    from ttscale.report.findings import findings_paragraph, tables_by_level
    from ttscale.report.summary import render_table

    for level, rows in tables_by_level(outcome.records, config.jobs()).items():
        operations = "operation" if level == 1 else "operations"
        out.print(render_table(rows, f"ladder level {level}: {level} {operations} — {title}"))
    out.print(findings_paragraph(outcome.records), highlight=False)
    print_run_note(outcome)


def _write_report(out_dir: Path) -> None:
    from ttscale.report import build_report

    try:
        files = build_report([out_dir], out_dir / "report.html", formats=("png",), bins="level")
    except TTScaleError as error:
        fail(f"the run finished but its report could not be written: {error}")
    out.print(f"report: {files.html} (open it in a browser; tables and figures in "
              f"{files.html.with_name('report-files')})")
