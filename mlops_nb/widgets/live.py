"""A live training curve under a tracked cell.

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

from . import FallbackMixin

__all__ = ["LiveChart"]


class LiveChart(FallbackMixin, W.VBox):
    """One line per metric of one run, redrawn at most every ``interval`` seconds.

    The first point always draws. ``clock`` (seconds, any origin) is injectable so a
    test can stand where a freshly booted machine stands: ``time.monotonic()`` counts
    from boot, so it may be smaller than ``interval`` when the first point arrives.
    """

    def __init__(
        self, title: str, interval: float = 0.5, clock: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        import bqplot as bq

        self._bq = bq
        self._x_scale = bq.LinearScale()
        self._y_scale = bq.LinearScale()
        self.figure = bq.Figure(
            marks=[],
            axes=[
                bq.Axis(scale=self._x_scale, label="step"),
                bq.Axis(scale=self._y_scale, orientation="vertical", tick_format=".3g"),
            ],
            title=title,
            legend_location="top-right",
            fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 20},
            layout=W.Layout(height="280px", width="100%"),
        )
        super().__init__([self.figure], **kwargs)
        self.title = title
        self.interval = interval
        self.points: dict[str, tuple[list[int], list[float]]] = {}
        self._lines: dict[str, Any] = {}
        self._clock = clock
        # -inf, not 0.0: "never drawn" must be older than any interval, whatever the clock's origin.
        self._last_draw = -math.inf
        self._dirty = False
        self.draws = 0

    def add(self, key: str, value: float, step: int) -> None:
        """Record one point; redraw when the last drawing is older than ``interval``."""
        xs, ys = self.points.setdefault(key, ([], []))
        xs.append(step)
        ys.append(value)
        self._dirty = True
        if self._clock() - self._last_draw >= self.interval:
            self.draw()

    def draw(self) -> None:
        """Push the points to the chart now (if anything changed)."""
        if not self._dirty:
            return
        import numpy as np

        colors = self._bq.CATEGORY10
        with self.figure.hold_sync():
            new = False
            for i, (key, (xs, ys)) in enumerate(self.points.items()):
                line = self._lines.get(key)
                if line is None:
                    line = self._bq.Lines(
                        scales={"x": self._x_scale, "y": self._y_scale},
                        labels=[key],
                        display_legend=True,
                        colors=[colors[i % len(colors)]],
                    )
                    self._lines[key] = line
                    new = True
                line.x = np.asarray(xs)
                line.y = np.asarray(ys)
            if new:
                self.figure.marks = list(self._lines.values())
        self._dirty = False
        self._last_draw = self._clock()
        self.draws += 1

    def _summary(self) -> list[tuple[str, int, float, int]]:
        return [(k, len(xs), ys[-1], xs[-1]) for k, (xs, ys) in self.points.items() if xs]

    def fallback_text(self) -> str:
        rows = self._summary()
        if not rows:
            return f"{self.title}: no metrics yet"
        return f"{self.title}\n" + "\n".join(f"  {k}: {v:.6g} at step {s} ({n} points)" for k, n, v, s in rows)

    def fallback_html(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td><td>{s}</td><td>{n}</td></tr>" for k, n, v, s in self._summary()
        )
        return (
            f"<p><b>{html.escape(self.title)}</b></p><table class='mlops-nb-table'><thead><tr><th>metric</th>"
            f"<th>last</th><th>step</th><th>points</th></tr></thead><tbody>{rows}</tbody></table>"
        )


def attach(tracker: Any, run_id: str, title: str, display: Any) -> Any:
    """Show a :class:`LiveChart` under the current cell once ``run_id`` logs a metric.

    ``display`` is IPython's: the chart is shown with a display id and updated when
    the run ends, so a notebook saved headless keeps the final values in its text and
    HTML renderings, not the empty chart of the first metric.
    Returns a function that draws the last points and detaches the chart.
    """
    state: dict[str, Any] = {}

    def on_metric(rid: str, key: str, value: float, step: int) -> None:
        if rid != run_id:
            return
        chart = state.get("chart")
        if chart is None:
            chart = state["chart"] = LiveChart(title)
            chart.add(key, value, step)
            state["handle"] = display(chart, display_id=True)
            return
        chart.add(key, value, step)

    tracker.add_metric_listener(on_metric)

    def detach() -> LiveChart | None:
        tracker.remove_metric_listener(on_metric)
        chart = state.get("chart")
        if chart is not None:
            chart.draw()
            handle = state.get("handle")
            if handle is not None:
                handle.update(chart)
        return chart

    return detach
