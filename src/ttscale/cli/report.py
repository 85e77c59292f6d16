"""``ttscale report``: curves, tables and the search-tree viewer from run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import console, fail, out, setup_logging
from ttscale.cli.parsing import parse_csv
from ttscale.errors import TTScaleError


def report(
    runs: Annotated[list[Path], typer.Argument(
        help="Run folders written by `ttscale run` (several: one line per run and method).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write; "
                                         "images and tables go to a folder beside it.")
                      ] = Path("report.html"),
    compare: Annotated[bool, typer.Option(
        "--compare", help="Two runs side by side (e.g. two PRMs): a paired table, and both "
                          "runs' trees of each problem next to each other.")] = False,
    figure_format: Annotated[str, typer.Option(
        "--format", help="Image files of the curves: png, svg, pdf, several as png,svg, or "
                         "none.")] = "png",
    bins: Annotated[str, typer.Option(
        help="Difficulty facets: absolute (pass@1 > 50 % easy, 10-50 % medium, < 10 % hard), "
             "quantile:K, level (the dataset's own, MATH), or none.")] = "absolute",
    difficulty_run: Annotated[Path | None, typer.Option(
        help="A run whose samples give pass@1 for the bins (default: the runs' own Best-of-N "
             "or majority samples).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Run id (folder name) of the model the others are compared with in the models "
             "table (default: the largest policy).")] = None,
    title: Annotated[str | None, typer.Option(help="The report's title.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Write an HTML report (accuracy vs budget and FLOPs, the paper's tables, every search
    tree), the curves as images, and the tables as Markdown and CSV."""
    setup_logging(verbose)
    formats = [] if figure_format.strip() == "none" else parse_csv(figure_format, "--format")
    try:
        from ttscale.report import build_report

        with console.status("building the report"):
            files = build_report(runs, output, formats=formats, bins=bins,
                                 difficulty_run=difficulty_run, reference=reference,
                                 compare=compare, title=title)
    except TTScaleError as error:
        fail(str(error))
    for line in files.warnings[:10]:
        console.print(f"[yellow]skipped:[/] {line}", highlight=False)
    if len(files.warnings) > 10:
        console.print(f"[yellow]skipped:[/] {len(files.warnings) - 10} more records",
                      highlight=False)
    out.print(f"report: {files.html} ({files.html.stat().st_size / 1e6:.1f} MB)")
    for path in files.figures + files.tables:
        out.print(f"  {path}")
