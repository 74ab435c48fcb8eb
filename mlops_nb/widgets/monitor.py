"""The verdict of one monitor run under the cell that asked for it (``%mlops monitor``).

What it shows comes from the core, drawn once: the verdict and its reason, the window
and its performance where labels were fed back, one row a feature (drifted ones first)
with the reference's and the window's histograms side by side, and the past monitor
runs of the same alias (or version) as a chart of the drifted share and the accuracy.

The histograms are the monitor report's own SVG (:func:`mlops_nb.monitoring.report.
histogram_svg`, from :func:`~mlops_nb.monitoring.report.feature_rows`) inside an
``ipywidgets.HTML``: one drawing, in the report and here, and each bar carries its rows
(``data-count``) and a tooltip. Text takes JupyterLab's theme colours, the SVG draws its
labels in ``currentColor``, so both read in light and dark themes. The chart is bqplot
styled by :mod:`mlops_nb.widgets.theme`. Where widgets cannot render, the text and HTML
renderings carry the same content (:class:`~mlops_nb.widgets.FallbackMixin`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from mlops_nb.monitoring.report import VERDICT_COLORS, feature_rows, histogram_svg, score_text, unseen_text
from mlops_nb.tables import aligned_lines
from mlops_nb.widgets import TABLE_CSS, FallbackMixin
from mlops_nb.widgets.theme import SERIES_COLORS, css_widget, style_figure

if TYPE_CHECKING:  # pragma: no cover
    from mlops_nb.monitoring.monitor import MonitorResult

__all__ = ["HISTORY_SHOWN", "SERIES", "MonitorView", "same_target"]

#: Past runs listed under the chart (the chart itself draws every run it is given).
HISTORY_SHOWN = 8
#: The chart's series and their colours. Their legend is HTML above the chart: inside
#: it, bqplot's legend box would hide the points of its corner.
SERIES = {"drifted share": SERIES_COLORS[3], "accuracy": SERIES_COLORS[0]}

esc = html.escape

MONITOR_CSS = """<style>
.mlops-nb-monitor { color: var(--jp-ui-font-color1, inherit); font-size: var(--jp-ui-font-size1, 13px); }
.mlops-nb-monitor p { margin: 4px 0; }
.mlops-nb-monitor .mlops-nb-muted { color: var(--jp-ui-font-color2, gray); }
.mlops-nb-monitor .mlops-nb-verdict { display: inline-block; padding: 0 8px; border-radius: 8px; line-height: 18px;
  color: white; font-weight: 600; font-size: var(--jp-ui-font-size0, 11px); }
.mlops-nb-monitor .mlops-nb-scroll { overflow-x: auto; max-width: 100%; }
.mlops-nb-monitor .mlops-nb-features td { vertical-align: middle; }
.mlops-nb-monitor .mlops-nb-features td.mlops-nb-num { text-align: right; white-space: nowrap; }
.mlops-nb-monitor tr.mlops-nb-drifted td:first-child { font-weight: 600; color: var(--jp-error-color1, #cf222e); }
[data-jp-theme-light='false'] .mlops-nb-monitor tr.mlops-nb-drifted td:first-child { color: var(--jp-error-color2, #ff8182); }
.mlops-nb-monitor svg.mlops-nb-hist { display: block; color: var(--jp-ui-font-color2, gray); }
</style>"""


def same_target(result: MonitorResult, history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The past runs that watched what ``result`` watched: the same alias when it was
    asked for by alias (across the versions the alias pointed at), else the same version."""
    if result.alias:
        return [h for h in history if h.get("alias") == result.alias]
    return [h for h in history if str(h.get("version")) == str(result.version)]


def _local(iso: Any) -> datetime | None:
    """An ISO time as a naive local datetime (what a chart's axis and a person read)."""
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone().replace(tzinfo=None)
    except ValueError:
        return None


def _clock(iso: Any) -> str:
    when = _local(iso)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else str(iso or "")


def _share(value: Any) -> str:
    return f"{float(value):.0%}" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def _fraction(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _badge(verdict: str) -> str:
    color = VERDICT_COLORS.get(verdict, "#6e7781")
    return f"<span class='mlops-nb-verdict' style='background:{color}'>{esc(verdict)}</span>"


def _performance_text(perf: Mapping[str, Any] | None) -> str:
    if not perf:
        return "no labels fed back for this window (POST /feedback)"
    reference = perf.get("reference")
    versus = f" ({score_text(reference)} at training)" if reference is not None else ""
    return f"{perf['metric']} {score_text(perf['value'])} on {int(perf['rows'])} labelled rows{versus}"


class MonitorView(FallbackMixin, W.VBox):
    """One :class:`~mlops_nb.monitoring.monitor.MonitorResult` as a person reads it.

    ``history`` is :func:`~mlops_nb.monitoring.monitor.monitor_history` of the model
    (newest first); only the runs of the same alias or version are drawn (see
    :func:`same_target`). The widget draws once and reads nothing itself.
    """

    def __init__(self, result: MonitorResult, history: Sequence[Mapping[str, Any]] = ()) -> None:
        self.result = result
        self.history = same_target(result, history)
        self.rows = feature_rows(result)
        self.summary_html = W.HTML(self._summary_html(), layout=W.Layout(max_width="100%"))
        self.features_html = W.HTML(self._features_html(), layout=W.Layout(max_width="100%"))
        self.history_html = W.HTML(self._history_html(), layout=W.Layout(max_width="100%"))
        self.chart = self._history_chart()
        children: list[W.Widget] = [self.summary_html, self.features_html]
        if self.chart is not None:
            children += [css_widget(), W.HTML(self._legend_html()), self.chart]
        children.append(self.history_html)
        super().__init__(children, layout=W.Layout(width="100%", max_width="100%"))
        self.add_class("mlops-nb-monitor-view")

    # -- the verdict -------------------------------------------------------------

    def headline(self) -> str:
        """One line: what was watched, the verdict and why."""
        r = self.result
        alias = f" @{r.alias}" if r.alias else ""
        return f"{r.name} v{r.version}{alias}: {r.verdict}: {r.reason}"

    def _window_text(self) -> str:
        r = self.result
        span = f"{_clock(r.since)} to {_clock(r.until)}" if r.since else f"up to {_clock(r.until)}"
        unread = f", {r.unreadable} unreadable" if r.unreadable else ""
        return f"{r.rows} rows from {r.requests} requests{unread}, {span}"

    def _record_text(self) -> str:
        r = self.result
        if not r.run_id:
            return "not recorded (log=False)"
        return f"monitor run {r.run_id} · report {r.report_uri}"

    def _summary_html(self) -> str:
        r = self.result
        alias = f" <span class='mlops-nb-muted'>@{esc(r.alias)}</span>" if r.alias else ""
        notes = "".join(f"<p class='mlops-nb-muted'>note: {esc(n)}</p>" for n in r.notes)
        return (
            MONITOR_CSS + TABLE_CSS + "<div class='mlops-nb-monitor'>"
            f"<p><b>{esc(r.name)}</b> v{esc(str(r.version))}{alias} {_badge(r.verdict)}</p>"
            f"<p class='mlops-nb-reason'>{esc(r.reason)}</p>"
            f"<p class='mlops-nb-muted'>window: {esc(self._window_text())} · "
            f"performance: {esc(_performance_text(r.performance))}</p>"
            f"<p class='mlops-nb-muted'>{esc(self._record_text())}</p>{notes}</div>"
        )

    # -- the features ------------------------------------------------------------

    def _features_html(self) -> str:
        if not self.rows:
            return "<div class='mlops-nb-monitor'><p class='mlops-nb-muted'>no drift check: too few rows</p></div>"
        head = "".join(
            f"<th>{esc(h)}</th>"
            for h in ("feature", "method", "score", "threshold", "PSI", "missing (ref → cur)", "out of range",
                      "unseen", "reference | current")
        )  # fmt: skip
        body = "".join(self._feature_tr(row) for row in self.rows)
        return (
            "<div class='mlops-nb-monitor mlops-nb-scroll'><table class='mlops-nb-table mlops-nb-features'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )

    @staticmethod
    def _feature_tr(row: Mapping[str, Any]) -> str:
        drifted = bool(row["drifted"])
        name = esc(str(row["feature"])) + (" ⚠" if drifted else "")
        numbers = [score_text(row["score"]), score_text(row["threshold"]), score_text(row["psi"])]
        cells = (
            f"<td title='{'drifted' if drifted else 'stable'} ({esc(str(row['kind']))})'>{name}</td>"
            f"<td>{esc(str(row['method']))}</td>"
            + "".join(f"<td class='mlops-nb-num'>{n}</td>" for n in numbers)
            + f"<td class='mlops-nb-num'>{row['missing_reference']:.1%} → {row['missing_current']:.1%}</td>"
            f"<td class='mlops-nb-num'>{int(row['out_of_range'])}</td>"
            f"<td>{esc(unseen_text(row['unseen']))}</td>"
            f"<td>{histogram_svg(row['reference_hist'], row['current_hist'], width=260, height=64, drifted=drifted)}</td>"
        )
        cls = "mlops-nb-drifted" if drifted else "mlops-nb-stable"
        return f"<tr class='{cls}' data-feature='{esc(str(row['feature']), quote=True)}'>{cells}</tr>"

    # -- past runs -----------------------------------------------------------------

    def _history_chart(self) -> Any:
        """Drifted share and accuracy per past run on one 0-1 scale; None with nothing to draw."""
        runs = [(when, h) for h in reversed(self.history) if (when := _local(h.get("when"))) is not None]
        series = {
            label: [_fraction(h.get(key)) for _, h in runs]
            for label, key in (("drifted share", "share"), ("accuracy", "accuracy"))
        }
        series = {label: values for label, values in series.items() if any(v is not None for v in values)}
        if not series:
            return None
        import bqplot as bq  # here, with numpy: a verdict with no past runs needs neither
        import numpy as np

        times = np.array([when for when, _ in runs], dtype="datetime64[ms]")
        # A margin either side, so one run is a point in the middle rather than on an edge.
        span = times[-1] - times[0]
        pad = span / 20 if span > np.timedelta64(0, "ms") else np.timedelta64(5, "m")
        x = bq.DateScale(min=(times[0] - pad).astype(object), max=(times[-1] + pad).astype(object))
        y = bq.LinearScale(min=0.0, max=1.0)
        # Clock times within a day, dates beyond (bqplot's default is a 12-hour clock).
        # Seconds when the runs are minutes apart, so close runs are told apart.
        if span < np.timedelta64(10, "m"):
            tick_format = "%H:%M:%S"
        else:
            tick_format = "%H:%M" if span < np.timedelta64(1, "D") else "%b %d"
        marks = [
            bq.Lines(
                x=times,
                y=np.array([np.nan if v is None else v for v in values], dtype=float),
                scales={"x": x, "y": y},
                labels=[label],
                colors=[SERIES[label]],
                marker="circle",
                marker_size=28,
                stroke_width=2,
            )
            for label, values in series.items()
        ]
        target = f"@{self.result.alias}" if self.result.alias else f"v{self.result.version}"
        return style_figure(
            bq.Figure(
                marks=marks,
                axes=[
                    bq.Axis(scale=x, label="monitor run", tick_format=tick_format),
                    bq.Axis(scale=y, side="left", tick_format=".0%"),
                ],
                title=f"past monitor runs of {self.result.name} {target}",
                fig_margin={"top": 36, "bottom": 44, "left": 56, "right": 20},
                layout=W.Layout(height="220px", width="100%", max_width="720px"),
            )
        )

    def _legend_html(self) -> str:
        drawn = [mark.labels[0] for mark in self.chart.marks] if self.chart is not None else []
        keys = "".join(
            f"<span style='margin-right:14px'><span style='color:{SERIES[label]}'>●</span> {esc(label)}</span>"
            for label in drawn
        )
        return f"<div class='mlops-nb-monitor mlops-nb-legend'><p>{keys}</p></div>"

    def _history_lines(self) -> tuple[list[str], list[list[str]]]:
        header = ["when", "version", "verdict", "drifted", "share", "accuracy", "rows"]
        rows = [
            [
                _clock(h.get("when")),
                f"v{h.get('version')}",
                str(h.get("verdict") or ""),
                ", ".join(h.get("drifted") or []) or "—",
                _share(h.get("share")),
                score_text(h.get("accuracy")) or "—",
                str(h.get("rows") if h.get("rows") is not None else ""),
            ]
            for h in self.history[:HISTORY_SHOWN]
        ]
        return header, rows

    def _history_html(self) -> str:
        header, rows = self._history_lines()
        if not rows:
            return ""
        more = len(self.history) - len(rows)
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        foot = f"<p class='mlops-nb-muted'>and {more} older runs</p>" if more > 0 else ""
        return (
            "<div class='mlops-nb-monitor'><p class='mlops-nb-muted'>past monitor runs, newest first</p>"
            f"<table class='mlops-nb-table mlops-nb-history'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"{foot}</div>"
        )

    # -- renderings without widgets --------------------------------------------------

    def fallback_text(self) -> str:
        lines = [f"mlops-nb monitor: {self.headline()}", f"  window: {self._window_text()}"]
        lines.append(f"  performance: {_performance_text(self.result.performance)}")
        lines.append(f"  {self._record_text()}")
        lines += [f"  note: {n}" for n in self.result.notes]
        if self.rows:
            header = ["feature", "method", "score", "threshold", "drifted", "PSI", "out of range"]
            table = [
                [
                    str(r["feature"]),
                    str(r["method"]),
                    score_text(r["score"]),
                    score_text(r["threshold"]),
                    "yes" if r["drifted"] else "no",
                    score_text(r["psi"]),
                    str(r["out_of_range"]),
                ]
                for r in self.rows
            ]
            lines += ["", *(f"  {line}" for line in aligned_lines(header, table))]
        header, past = self._history_lines()
        if past:
            lines += ["", "  past monitor runs, newest first:", *(f"  {line}" for line in aligned_lines(header, past))]
        return "\n".join(lines)

    def fallback_html(self) -> str:
        return self.summary_html.value + self.features_html.value + self.history_html.value
