"""``ttscale report``: one self-contained HTML file (curves, tables, search trees; every
script, font and record inlined, so it opens offline), the curves as image files for papers,
and the tables as Markdown and CSV."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from markupsafe import Markup

from ttscale import __version__
from ttscale.errors import ConfigError
from ttscale.report.curves import Bins, all_series, difficulty_bins
from ttscale.report.expected import expected_table
from ttscale.report.figures import STATIC_FORMATS, plotly_figure, save_static
from ttscale.report.runs import RunData, load_run, load_runs
from ttscale.report.tables import (
    Table,
    accuracy_grid,
    accuracy_table,
    compare_table,
    models_table,
)
from ttscale.report.viewer_data import viewer_data

logger = logging.getLogger(__name__)

AXES = ("n", "flops")
FIGURE_NAMES = {"n": "accuracy_vs_n", "flops": "accuracy_vs_flops"}


@dataclass
class ReportFiles:
    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _asset(*parts: str) -> str:
    return resources.files("ttscale.report").joinpath("assets", *parts).read_text(encoding="utf-8")


def _script_safe(text: str) -> Markup:
    """Text placed inside <script>: a literal "</" would end the element early."""
    return Markup(text.replace("</", "<\\/"))


def _json_for_script(data) -> Markup:
    """JSON inside <script>: with <, > and & escaped, no text from a record can end the
    element or open a comment in it, and JSON.parse reads the same values."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


def _katex_css() -> str:
    """KaTeX's stylesheet with its WOFF2 fonts inlined as data URIs (other formats dropped:
    every browser that runs the viewer reads WOFF2)."""
    import base64

    css = _asset("katex", "katex.min.css")
    fonts = resources.files("ttscale.report").joinpath("assets", "katex", "fonts")

    def inline(match: re.Match) -> str:
        data = fonts.joinpath(match.group(1)).read_bytes()
        return (f"url(data:font/woff2;base64,{base64.b64encode(data).decode('ascii')}) "
                "format(\"woff2\")")

    css = re.sub(r"url\(fonts/([\w-]+\.woff2)\) format\(\"woff2\"\)", inline, css)
    # drop the woff and ttf fallbacks, which would point at files that are not there
    return re.sub(r",url\(fonts/[\w-]+\.(?:woff|ttf)\) format\(\"(?:woff|truetype)\"\)", "", css)


def _plotly_js() -> str:
    try:
        source = resources.files("plotly").joinpath("package_data/plotly.min.js")
        return source.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ConfigError("the report needs plotly's JavaScript bundle: pip install plotly "
                          f"({error})") from error


def _table_view(table: Table) -> dict:
    from ttscale.report.tables import _markdown_value

    return {"title": table.title, "note": table.note, "columns": table.columns,
            "footer": table.footer,
            "rows": [[_markdown_value(column, value)
                      for column, value in zip(table.columns, row, strict=True)]
                     for row in table.rows]}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def files_dir(output: Path) -> Path:
    return output.with_name(output.stem + "-files")


def build_report(
    run_dirs: Sequence[Path],
    output: Path,
    *,
    formats: Sequence[str] = ("png",),
    bins: str = "absolute",
    difficulty_run: Path | None = None,
    reference: str | None = None,
    compare: bool = False,
    title: str | None = None,
) -> ReportFiles:
    """Write the report for ``run_dirs``. ``compare`` takes exactly two runs and adds the
    side-by-side table; the viewer shows the two runs' searches of a problem side by side."""
    for name in formats:
        if name not in STATIC_FORMATS:
            raise ConfigError(f"unknown figure format {name!r}: use "
                              f"{', '.join(STATIC_FORMATS)} or none")
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the report is an HTML file: give -o a path ending in .html "
                          f"(got {output})")
    runs = load_runs([Path(path) for path in run_dirs])
    if compare and len(runs) != 2:
        raise ConfigError(f"--compare takes exactly two runs (got {len(runs)})")
    source = load_run(Path(difficulty_run)) if difficulty_run is not None else None
    binning: Bins = difficulty_bins(bins, runs, source)
    series = all_series(runs, binning)
    facets = binning.facets()

    tables = [accuracy_grid(series, runs, facet) for facet in facets]
    long_table = accuracy_table(series, runs)
    models = models_table(runs, series, reference)
    compared = compare_table(runs[0], runs[1]) if compare else None
    expected = expected_table(runs)  # runs started from a recipe that names its figures
    shown = [table for table in (compared, expected) if table] + tables + [models]

    report = ReportFiles(html=output)
    report.warnings = [line for run in runs for line in run.skipped]
    folder = files_dir(output)
    report.tables = _write_tables(folder, tables, long_table, models,
                                  {"compare": compared, "expected": expected})
    for name in formats:
        for axis in AXES:
            report.figures.append(save_static(series, axis, facets,
                                              folder / f"{FIGURE_NAMES[axis]}.{name}"))

    figures = [dict(plotly_figure(series, axis, facets), name=FIGURE_NAMES[axis])
               for axis in AXES]
    viewer = viewer_data(runs, binning)
    _render_html(output, runs, figures, viewer, shown, binning, report.warnings,
                 title or ("ttscale report: " + " vs ".join(run.run_id for run in runs)
                           if compare else "ttscale report"))
    return report


def _write_tables(folder: Path, grids: Sequence[Table], long_table: Table, models: Table,
                  optional: dict[str, Table | None]) -> list[Path]:
    """The tables as Markdown and CSV files: the accuracy grids, the models table, and those
    of ``optional`` (file name -> table) that this report has."""
    markdown = "\n".join(table.to_markdown() for table in grids)
    written = [_write(folder / "accuracy.md", markdown),
               _write(folder / "accuracy.csv", long_table.to_csv()),
               _write(folder / "models.md", models.to_markdown()),
               _write(folder / "models.csv", models.to_csv())]
    for name, table in optional.items():
        if table is not None:
            written += [_write(folder / f"{name}.md", table.to_markdown()),
                        _write(folder / f"{name}.csv", table.to_csv())]
    return written


def _render_html(output, runs: Sequence[RunData], figures, viewer, tables, binning: Bins,
                 warnings, title: str) -> None:
    from jinja2 import Environment

    environment = Environment(autoescape=True, keep_trailing_newline=True)
    template = environment.from_string(_asset("report.html.jinja"))
    runs_line = "Runs: " + "; ".join(f"{run.label}: {run.policy}"
                                     + (f" + {run.scorer}" if run.scorer else "")
                                     for run in runs)
    stream = template.generate(
        version=__version__, title=title, runs_line=runs_line,
        katex_css=Markup(_katex_css().replace("</", "<\\/")),
        viewer_css=Markup(_asset("viewer.css")),
        figures_json=_json_for_script(figures),
        index_json=_json_for_script(viewer.index),
        plotly_js=_script_safe(_plotly_js()),
        katex_js=_script_safe(_asset("katex", "katex.min.js")),
        autorender_js=_script_safe(_asset("katex", "auto-render.min.js")),
        viewer_js=_script_safe(_asset("viewer.js")),
        tables=[_table_view(table) for table in tables],
        bins_source=binning.source,
        warnings=[f"skipped: {line}" for line in warnings[:50]],
        chunks=[Markup(chunk) for chunk in viewer.chunks],  # base64: nothing to escape
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for piece in stream:
            handle.write(piece)
    temporary.replace(output)
