"""A live training curve under a tracked cell.

Charts are for series: a metric appears on the chart from its second point on, and the
chart itself appears under the cell with the first series. A value logged once (a test
score) is no curve: the line that closes the cell lists it (``name = value``; see
:mod:`mlops_nb.magics`), and a chart of single values would be axes and a legend with
nothing drawn.

Fed by the tracker's metric listener; drawing is throttled (at most one update every
``interval`` seconds, plus a final one when the run ends) so that a training loop does
not wait on the browser.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from mlops_nb.widgets import FallbackMixin
from mlops_nb.widgets.theme import SERIES_COLORS, css_widget, style_figure

__all__ = ["LiveChart", "attach"]

#: Up to this many points a line also marks each point (a short series reads as points).
MARKED_POINTS = 25


class LiveChart(FallbackMixin, W.VBox):
    """One line per metric series of one run, redrawn at most every ``interval`` seconds.

    The title is the run's name and its state: "running" until :meth:`finish` gives
    how the run ended. The first point always draws. ``clock`` (seconds, any origin) is
    injectable so a test can stand where a freshly booted machine stands:
    ``time.monotonic()`` counts from boot, so it may be smaller than ``interval`` when the
    first point arrives.
    """

    def __init__(
        self, title: str, interval: float = 0.5, clock: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        import bqplot as bq  # here, with numpy in draw(): a tracked cell that logs no series never needs them

        self._bq = bq
        self._x_scale = bq.LinearScale()
        self._y_scale = bq.LinearScale()
        self.figure = style_figure(
            bq.Figure(
                marks=[],
                axes=[
                    bq.Axis(scale=self._x_scale, label="step", tick_format="d"),
                    bq.Axis(scale=self._y_scale, side="left", tick_format=".3~g"),
                ],
                title=f"{title} · running",
                legend_location="top-right",
                fig_margin={"top": 36, "bottom": 44, "left": 60, "right": 20},
                layout=W.Layout(height="260px", width="100%"),
            )
        )
        super().__init__([css_widget(), self.figure], **kwargs)
        self.add_class("mlops-nb-live")
        self.title = title
        self.status: str | None = None
        self.interval = interval
        self.points: dict[str, tuple[list[int], list[float]]] = {}
        self._lines: dict[str, Any] = {}
        self._clock = clock
        # -inf, not 0.0: "never drawn" must be older than any interval, whatever the clock's origin.
        self._last_draw = -math.inf
        self._dirty = False
        self.draws = 0

    @property
    def series(self) -> dict[str, tuple[list[int], list[float]]]:
        """The metrics with more than one point: the ones drawn."""
        return {k: v for k, v in self.points.items() if len(v[0]) > 1}

    def add(self, key: str, value: float, step: int) -> None:
        """Record one point; redraw when the last drawing is older than ``interval``."""
        xs, ys = self.points.setdefault(key, ([], []))
        xs.append(step)
        ys.append(value)
        self._dirty = True
        if self._clock() - self._last_draw >= self.interval:
            self.draw()

    def draw(self) -> None:
        """Push the series to the chart now (if anything changed)."""
        if not self._dirty:
            return
        import numpy as np

        with self.figure.hold_sync():
            new = False
            for key, (xs, ys) in self.series.items():
                line = self._lines.get(key)
                if line is None:
                    line = self._bq.Lines(
                        scales={"x": self._x_scale, "y": self._y_scale},
                        labels=[key],
                        display_legend=True,
                        colors=[SERIES_COLORS[len(self._lines) % len(SERIES_COLORS)]],
                        marker_size=24,
                        stroke_width=2,
                    )
                    self._lines[key] = line
                    new = True
                marker = "circle" if len(xs) <= MARKED_POINTS else None
                if line.marker != marker:
                    line.marker = marker
                line.x = np.asarray(xs)
                line.y = np.asarray(ys)
            if new:
                self.figure.marks = list(self._lines.values())
        self._dirty = False
        self._last_draw = self._clock()
        self.draws += 1

    def finish(self, status: str | None) -> None:
        """The run ended (``status``: FINISHED, FAILED, KILLED): draw the last points and
        say so in the title instead of "running"."""
        self.status = status
        self.figure.title = f"{self.title} · {status.lower()}" if status else self.title
        self.draw()

    def _summary(self) -> list[tuple[str, int, float, int]]:
        return [(k, len(xs), ys[-1], xs[-1]) for k, (xs, ys) in self.series.items()]

    def fallback_text(self) -> str:
        rows = self._summary()
        if not rows:
            return f"{self.figure.title}: no series yet"
        return f"{self.figure.title}\n" + "\n".join(f"  {k}: {v:.6g} at step {s} ({n} points)" for k, n, v, s in rows)

    def fallback_html(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td><td>{s}</td><td>{n}</td></tr>"
            for k, n, v, s in self._summary()
        )
        return (
            f"<p><b>{html.escape(self.figure.title)}</b></p><table class='mlops-nb-table'><thead><tr><th>metric</th>"
            f"<th>last</th><th>step</th><th>points</th></tr></thead><tbody>{rows}</tbody></table>"
        )


def attach(tracker: Any, run_id: str, title: str, display: Any) -> Callable[[str | None], LiveChart | None]:
    """Show a :class:`LiveChart` under the current cell once ``run_id`` logs a series
    (a metric's second point).

    ``display`` is IPython's: the chart is shown with a display id and updated when
    the run ends, so a notebook saved headless keeps the final values in its text and
    HTML renderings, not the chart as the first points left it.
    Returns ``detach(status)``: it draws the last points, titles the chart with how the
    run ended and stops following the run.
    """
    # Points wait here until a metric has two: most tracked cells log single values only,
    # and a widget created is a comm opened with the browser even if never shown.
    early: list[tuple[str, float, int]] = []
    seen: set[str] = set()
    state: dict[str, Any] = {}

    def on_metric(rid: str, key: str, value: float, step: int) -> None:
        if rid != run_id:
            return
        chart = state.get("chart")
        if chart is not None:
            chart.add(key, value, step)
            return
        early.append((key, value, step))
        if key not in seen:
            seen.add(key)
            return
        chart = state["chart"] = LiveChart(title)
        for point in early:
            chart.add(*point)
        early.clear()
        chart.draw()
        state["handle"] = display(chart, display_id=True)

    tracker.add_metric_listener(on_metric)

    def detach(status: str | None = None) -> LiveChart | None:
        tracker.remove_metric_listener(on_metric)
        chart, handle = state.get("chart"), state.get("handle")
        if chart is None:
            return None
        chart.finish(status)
        if handle is not None:
            handle.update(chart)
        return chart

    return detach
