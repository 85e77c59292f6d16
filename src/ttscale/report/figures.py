"""Accuracy curves: plotly figure specs for the HTML report (drawn by the bundled plotly.js)
and matplotlib files (PNG, SVG, PDF) for papers. Both draw the same series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ttscale.compute import format_flops
from ttscale.report.curves import MAJORITY, PASS, Series

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
REFERENCE_STYLE = {PASS: ("#555555", "dot"), MAJORITY: ("#999999", "dash")}
X_AXES = {"n": "budget N (generations)", "flops": "FLOPs per problem"}
STATIC_FORMATS = ("png", "svg", "pdf")


def _x(point, axis: str) -> float | None:
    return point.n if axis == "n" else point.flops


# past ten lines the colours come round again, each round with a marker of its own
MARKERS = ("o", "s", "^", "D", "v")
PLOTLY_SYMBOLS = {"o": "circle", "s": "square", "^": "triangle-up", "D": "diamond",
                  "v": "triangle-down"}


def _styles(series: Sequence[Series]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(colour, marker) of each line that is not a reference: no two lines alike while
    there are fewer than 50 (a study of a dozen methods over a few runs has more than ten)."""
    keys: dict[tuple[str, str, str], None] = {}
    for line in series:
        if not line.reference:
            keys.setdefault((line.run_id, line.method, line.aggregation), None)
    return {key: (PALETTE[i % len(PALETTE)], MARKERS[i // len(PALETTE) % len(MARKERS)])
            for i, key in enumerate(keys)}


def _style(line: Series, styles: dict) -> tuple[str, str, str]:
    """(colour, dash, marker) of a line."""
    if line.reference:
        return (*REFERENCE_STYLE[line.method], "o")
    color, marker = styles[(line.run_id, line.method, line.aggregation)]
    return color, "solid", marker


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


# Log axes of the HTML figures, kept as readable as the static ones (ticks.py): at most ~4
# labels on FLOPs ("200G"), plotly choosing them as the view zooms; no labels at the other
# digits of a decade (plotly.js >= 3 reads minorloglabels, older ones ignore it).
PLOTLY_FLOPS_AXIS = {"exponentformat": "SI", "nticks": 4, "minorloglabels": "none"}
MAX_N_LABELS = 6


def _plotly_n_axis(series: Sequence[Series]) -> dict:
    """Budgets N at powers of 2, every ``stride``-th one so that at most ``MAX_N_LABELS``
    are labelled (1, 8, 64, 512, 4096 rather than all 13)."""
    budgets = [p.n for line in series for p in line.points if p.n > 0]
    doublings = math.log2(max(budgets) / min(budgets)) if budgets else 0.0
    stride = max(1, math.ceil((round(doublings) + 1) / MAX_N_LABELS))
    return {"dtick": stride * math.log10(2), "tickformat": "d"}


def plotly_figure(series: Sequence[Series], axis: str, facets: Sequence[str]) -> dict:
    """One figure, a column per difficulty facet; every line with its bootstrap band. Lines
    for other aggregations than the run's start hidden (click the legend to show them)."""
    several_runs = len({line.run_id for line in series}) > 1
    styles = _styles(series)
    traces: list[dict] = []
    shown: set[str] = set()
    width = 1.0 / len(facets)
    gap = 0.04 if len(facets) > 1 else 0.0
    layout: dict = {
        "height": 440, "margin": {"l": 60, "r": 10, "t": 60, "b": 50},
        "legend": {"orientation": "v", "x": 1.01, "y": 1, "font": {"size": 11}},
        "hovermode": "closest",
        "annotations": [],
        "template": {"layout": {"font": {"family": "system-ui, sans-serif", "size": 12}}},
    }
    for column, facet in enumerate(facets):
        suffix = "" if column == 0 else str(column + 1)
        layout[f"xaxis{suffix}"] = {
            "type": "log", "title": {"text": X_AXES[axis]},
            "domain": [column * width + (gap / 2 if column else 0),
                       (column + 1) * width - (gap / 2 if column < len(facets) - 1 else 0)],
            **(_plotly_n_axis(series) if axis == "n" else PLOTLY_FLOPS_AXIS),
        }
        layout[f"yaxis{suffix}"] = {"range": [-0.02, 1.02], "tickformat": ".0%",
                                    "anchor": f"x{suffix}",
                                    **({"title": {"text": "accuracy"}} if column == 0 else
                                       {"matches": "y", "showticklabels": False})}
        layout["annotations"].append({
            "text": f"<b>{facet}</b> problems",
            "xref": f"x{suffix} domain", "yref": "paper", "x": 0.5, "y": 1.08,
            "showarrow": False})
        for line in series:
            if line.bin != facet:
                continue
            points = [p for p in line.points if _x(p, axis) is not None]
            if not points:
                continue
            name = line.name(several_runs)
            color, dash, marker = _style(line, styles)
            visible = True if line.default else "legendonly"
            xs = [_x(p, axis) for p in points]
            hover = [f"{name}<br>N={p.n}: {p.accuracy.value:.1%} "
                     f"[{p.accuracy.low:.1%}, {p.accuracy.high:.1%}]<br>"
                     f"{format_flops(p.flops)} FLOPs/problem, {p.problems} problems"
                     for p in points]
            common = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "legendgroup": name,
                      "visible": visible}
            traces.append({
                "type": "scatter", "mode": "lines", "x": xs + xs[::-1],
                "y": [p.accuracy.high for p in points] + [p.accuracy.low for p in points][::-1],
                "fill": "toself", "fillcolor": _rgba(color, 0.12), "line": {"width": 0},
                "hoverinfo": "skip", "showlegend": False, "name": f"{name} 95% CI", **common})
            traces.append({
                "type": "scatter", "mode": "lines+markers", "x": xs,
                "y": [p.accuracy.value for p in points], "name": name,
                "line": {"color": color, "dash": dash, "width": 2},
                "marker": {"size": 6, "symbol": PLOTLY_SYMBOLS[marker]}, "text": hover,
                "hovertemplate": "%{text}<extra></extra>",
                "showlegend": name not in shown, **common})
            shown.add(name)
    title = "Accuracy vs budget" if axis == "n" else "Accuracy vs compute"
    layout["title"] = {"text": title, "x": 0.01}
    return {"data": traces, "layout": layout}


def draw_static(series: Sequence[Series], axis: str, facets: Sequence[str]):
    """The same curves as ``plotly_figure`` (the run's own aggregations): a matplotlib figure,
    to save (``save_static``) and close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ttscale.report.ticks import integer_label, readable_log_axis, si_label

    several_runs = len({line.run_id for line in series}) > 1
    styles = _styles(series)
    shown = [line for line in series if line.default and line.bin == facets[0]]
    columns = 2 if several_runs else 3  # long labels (run · method (aggregation)) need room
    legend_rows = math.ceil(len(shown) / columns)
    legend_height = 0.2 * legend_rows + 0.2 if legend_rows else 0.0
    figure, axes = plt.subplots(1, len(facets),
                                figsize=(4.2 * len(facets) + 1, 3.8 + legend_height),
                                sharey=True, squeeze=False)
    dash_styles = {"dot": ":", "dash": "--", "solid": "-"}
    for ax, facet in zip(axes[0], facets, strict=True):
        for line in series:
            if line.bin != facet or not line.default:
                continue
            points = [p for p in line.points if _x(p, axis) is not None]
            if not points:
                continue
            color, dash, marker = _style(line, styles)
            xs = [_x(p, axis) for p in points]
            ax.plot(xs, [p.accuracy.value for p in points], dash_styles[dash], color=color,
                    marker=marker, markersize=3.5, label=line.name(several_runs))
            ax.fill_between(xs, [p.accuracy.low for p in points],
                            [p.accuracy.high for p in points], color=color, alpha=0.12,
                            linewidth=0)
        ax.set_xscale("log", base=2 if axis == "n" else 10)
        if axis == "n":
            readable_log_axis(ax.xaxis, base=2, label=integer_label, integer=True)
        else:
            readable_log_axis(ax.xaxis, base=10, label=si_label)
        ax.set_title(f"{facet} problems")
        ax.set_xlabel(X_AXES[axis])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    drawn = [ax.get_xlim() for ax in axes[0] if ax.lines]
    for ax in axes[0]:
        if not ax.lines and drawn:  # no line in this facet: the others' range, not 1..10
            ax.set_xlim(min(low for low, _ in drawn), max(high for _, high in drawn))
    axes[0][0].set_ylabel("accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    bottom = legend_height / figure.get_figheight()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(columns, len(labels)),
                      fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, bottom, 1, 1))
    return figure


def save_static(series: Sequence[Series], axis: str, facets: Sequence[str], path: Path) -> Path:
    """``draw_static``'s figure written to ``path`` (PNG, SVG or PDF by its suffix)."""
    figure = draw_static(series, axis, facets)
    import matplotlib.pyplot as plt  # after draw_static has chosen the Agg backend

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=150, bbox_inches="tight")  # the legend whole, however long
    finally:
        plt.close(figure)
    return path
