"""bqplot charts that look like the rest of JupyterLab, in light and dark themes alike.

bqplot's own stylesheet paints titles, axis labels and bar outlines orange whenever
JupyterLab's theme is dark (``[data-jp-theme-light='false'] { --bq-content-font-color:
orange }``) and draws text in its own fonts. The fix here is Python-side only, so it works
in JupyterLab and Notebook 7 without our labextension:

- :func:`style_figure` sets the figure's and its axes' style traits to JupyterLab's CSS
  variables (``var(--jp-ui-font-color1)``, ...). The browser resolves them when it draws,
  so a chart follows a live theme switch without a redraw. The fallbacks after the comma
  keep charts readable where the variables are undefined (VS Code, nbconvert HTML).
- :data:`CHART_CSS` (shown by :func:`css_widget`) retunes bqplot's own ``--bq-*``
  variables for figures carrying :data:`CHART_CLASS`: the axis label font, which no trait
  reaches, and the default outline of bars. A ``<style>`` block rendered anywhere on the
  page applies to the whole page, so one per chart container is enough.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W

__all__ = [
    "CHART_CLASS",
    "CHART_CSS",
    "FONT",
    "MUTED_TEXT",
    "SERIES_COLORS",
    "TEXT",
    "css_widget",
    "style_axis",
    "style_figure",
    "style_mark",
]

#: Text colours and fonts of JupyterLab's UI (the panel, menus), which charts share.
TEXT = "var(--jp-ui-font-color1, currentColor)"
MUTED_TEXT = "var(--jp-ui-font-color2, currentColor)"
FONT = "var(--jp-ui-font-family, sans-serif)"
FONT_SIZE = "var(--jp-ui-font-size1, 13px)"
SMALL_FONT_SIZE = "var(--jp-ui-font-size0, 11px)"
#: Colour-trait values: ipywidgets only accepts a colour (not currentColor) as fallback.
LINE = "var(--jp-border-color1, gray)"
BACKGROUND = "var(--jp-layout-color0, white)"

#: Tableau 10: each colour keeps its contrast on a white and on a near-black background.
SERIES_COLORS = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]

#: The class :func:`style_figure` gives a figure, which :data:`CHART_CSS` targets.
CHART_CLASS = "mlops-nb-chart"

# Two classes outrank bqplot's one-class theme rules (.classic, .gg) on the same element.
CHART_CSS = f"""<style>
.bqplot.{CHART_CLASS} {{
  --bq-content-font-color: var(--jp-ui-font-color1);
  --bq-mainheading-fill: var(--jp-ui-font-color1);
  --bq-axislabel-fill: var(--jp-ui-font-color1);
  --bq-axis-tick-text-fill: var(--jp-ui-font-color2);
  --bq-font: var(--jp-ui-font-size0) var(--jp-ui-font-family);
  --bq-axislabel-font: var(--jp-ui-font-size1) var(--jp-ui-font-family);
  --bq-mainheading-font: 600 var(--jp-ui-font-size1) var(--jp-ui-font-family);
  --bq-mainheading-font-size: var(--jp-ui-font-size1);
  --bq-default-stroke: var(--jp-layout-color0);
}}
.bqplot.{CHART_CLASS} > svg text.legendtext {{ font: var(--jp-ui-font-size1) var(--jp-ui-font-family); }}
</style>"""


def css_widget() -> W.HTML:
    """An invisible widget carrying :data:`CHART_CSS`: put it beside the figure(s)."""
    return W.HTML(CHART_CSS, layout=W.Layout(display="none"))


def style_axis(axis: Any) -> Any:
    """Axis line, tick labels and axis label in the theme's text colours and font."""
    axis.color = "var(--jp-ui-font-color2, gray)"
    axis.label_color = "var(--jp-ui-font-color1, black)"
    axis.tick_style = {"fill": MUTED_TEXT, "font-family": FONT, "font-size": SMALL_FONT_SIZE}
    return axis


def style_mark(mark: Any) -> Any:
    """Bars get the background as outline (bqplot's default is orange in dark themes)."""
    if type(mark).__name__ == "Bars" and getattr(mark, "stroke", "unset") is None:
        mark.stroke = BACKGROUND
    return mark


def style_figure(fig: Any) -> Any:
    """Make ``fig`` (a bqplot Figure) follow JupyterLab's theme; returns ``fig``.

    Axes and marks added later are styled as they arrive.
    """
    fig.theme = "classic"  # "gg"'s grey plot area stands out from every other output
    fig.title_style = {"fill": TEXT, "font-family": FONT, "font-size": FONT_SIZE, "font-weight": "600"}
    fig.legend_text = {"fill": TEXT, "font-family": FONT, "font-size": FONT_SIZE}
    fig.legend_style = {"fill": BACKGROUND, "stroke": LINE, "stroke-width": "1px"}
    for axis in fig.axes:
        style_axis(axis)
    for mark in fig.marks:
        style_mark(mark)
    if not getattr(fig, "_mlops_nb_styled", False):
        fig.observe(lambda change: [style_axis(a) for a in change["new"]], names="axes")
        fig.observe(lambda change: [style_mark(m) for m in change["new"]], names="marks")
        fig._mlops_nb_styled = True
    if CHART_CLASS not in fig._dom_classes:
        fig.add_class(CHART_CLASS)
    return fig
