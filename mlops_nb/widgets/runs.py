"""The runs table: sort, filter by param or metric, page through every run, compare.

Sorting, filtering and paging are done by the store (``runs_page``), page by page, so
an experiment of 100,000 runs is browsed as easily as one of ten, and nothing is cut
at 1,000.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..tracking import RunRow, experiment_ids, runs_page
from . import TABLE_CSS, FallbackMixin

__all__ = ["RunsTable", "CompareView"]

_ALL = "(all experiments)"
_SORTS = {
    "newest first": "attributes.start_time DESC",
    "oldest first": "attributes.start_time ASC",
    "name": "attributes.run_name ASC",
}
_MAX_METRIC_COLUMNS = 6


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _rows_html(rows: list[RunRow], metric_keys: list[str]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ["run", "name", "status", "started", "notebook", *metric_keys])
    body = []
    for r in rows:
        started = r.start_time.astimezone().strftime("%Y-%m-%d %H:%M") if r.start_time else ""
        cells = [r.run_id[:8], r.name, r.status, started, r.notebook]
        cells += [_fmt(r.metrics[k]) if k in r.metrics else "" for k in metric_keys]
        body.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    return (
        TABLE_CSS
        + "<table class='mlops-nb-table mlops-nb-runs'><thead><tr>"
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


class RunsTable(FallbackMixin, W.VBox):
    """Browse the runs of an experiment (or all), a page at a time."""

    def __init__(self, client: Any, experiment: str | None = None, page_size: int = 25, **kwargs: Any) -> None:
        self.client = client
        self.page_size = page_size
        self._experiments = experiment_ids(client, None)  # id -> name, looked up once
        names = sorted(self._experiments.values())
        if experiment and experiment not in names:
            experiment_ids(client, [experiment])  # raises NotFoundError naming the known ones
        self.experiment = W.Dropdown(options=[_ALL, *names], value=experiment if experiment in names else _ALL, description="experiment")
        self.filter = W.Text(
            placeholder="metrics.accuracy > 0.9 and params.max_depth = '5'",
            description="filter",
            continuous_update=False,
            layout=W.Layout(width="420px"),
        )
        self.sort = W.Dropdown(options=list(_SORTS), value="newest first", description="sort")
        self.prev_button = W.Button(description="◀ previous", disabled=True)
        self.next_button = W.Button(description="next ▶", disabled=True)
        self.page_label = W.Label()
        self.error = W.HTML()
        self.table = W.HTML()
        self.picker = W.SelectMultiple(description="compare", rows=5, layout=W.Layout(width="420px"))
        self.compare_button = W.Button(description="compare selected")
        self.rows: list[RunRow] = []
        self.page_number = 0
        self._tokens: list[str | None] = [None]
        self._next: str | None = None

        self._quiet = False  # set while the table itself changes a control
        for control in (self.experiment, self.sort, self.filter):
            control.observe(lambda _change: None if self._quiet else self.first_page(), names="value")
        self.prev_button.on_click(lambda _b: self.previous_page())
        self.next_button.on_click(lambda _b: self.next_page())
        self.compare_button.on_click(lambda _b: self.compare())
        super().__init__(
            [
                W.HBox([self.experiment, self.sort, self.filter], layout=W.Layout(flex_flow="row wrap")),
                self.error,
                self.table,
                W.HBox([self.prev_button, self.page_label, self.next_button, self.picker, self.compare_button]),
            ],
            **kwargs,
        )
        self.first_page()

    # -- paging ---------------------------------------------------------------

    def _load(self, token: str | None) -> bool:
        """Fetch one page into ``rows``; on bad input show the error and keep the page shown."""
        from ..exceptions import MlopsError

        chosen = self.experiment.value
        ids = {i: n for i, n in self._experiments.items() if chosen == _ALL or n == chosen}
        order = _SORTS.get(self.sort.value, self.sort.value)
        try:
            page = runs_page(
                self.client, None, self.filter.value.strip() or None, order, self.page_size, token, resolved=ids
            )
        except MlopsError as exc:
            self.error.value = f"<span style='color:var(--jp-error-color1, #c00)'>{html.escape(str(exc))}</span>"
            return False
        self.error.value = ""
        self.rows = page.rows
        self._next = page.next_token
        return True

    def first_page(self) -> None:
        """Reload from the first page (after a change of experiment, sort or filter)."""
        if self._load(None):
            self._tokens = [None]
            self.page_number = 0
            self._render()

    def next_page(self) -> None:
        if self._next is None:
            return
        token = self._next
        if self._load(token):
            self._tokens.append(token)
            self.page_number += 1
            self._render()

    def previous_page(self) -> None:
        if self.page_number == 0:
            return
        if self._load(self._tokens[self.page_number - 1]):
            self._tokens.pop()
            self.page_number -= 1
            self._render()

    def _metric_keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r.metrics:
                seen.setdefault(k, None)
        return list(seen)[:_MAX_METRIC_COLUMNS]

    def _render(self) -> None:
        keys = self._metric_keys()
        self.table.value = _rows_html(self.rows, keys) if self.rows else "<p>No runs match.</p>"
        first = self.page_number * self.page_size
        self.page_label.value = (
            f"page {self.page_number + 1} · runs {first + 1}–{first + len(self.rows)}" if self.rows else "no runs"
        )
        self.prev_button.disabled = self.page_number == 0
        self.next_button.disabled = self._next is None
        self.picker.options = [(f"{r.name} ({r.run_id[:8]})", r.run_id) for r in self.rows]
        # Offer sorting by the metrics seen; options only grow, and the choice stays.
        extra = [f"metrics.{k} DESC" for k in keys] + [f"metrics.{k} ASC" for k in keys]
        options = list(self.sort.options) + [o for o in extra if o not in self.sort.options]
        if len(options) != len(self.sort.options):
            chosen = self.sort.value
            self._quiet = True
            try:
                self.sort.options = options
                self.sort.value = chosen
            finally:
                self._quiet = False

    # -- compare --------------------------------------------------------------

    def compare(self) -> CompareView | None:
        """Show the runs picked in ``picker`` side by side."""
        ids = list(self.picker.value)
        if len(ids) < 2:
            self.error.value = "<span>Pick two or more runs to compare.</span>"
            return None
        view = CompareView([r for r in self.rows if r.run_id in ids])
        self.compare_view = view
        self.children = [*(c for c in self.children if not isinstance(c, CompareView)), view]
        return view

    def fallback_text(self) -> str:
        from ..tables import runs_table

        return str(runs_table(self.rows, self._next is not None, self.client.tracking_uri))

    def fallback_html(self) -> str:
        return _rows_html(self.rows, self._metric_keys())


class CompareView(FallbackMixin, W.VBox):
    """Metrics of several runs side by side in a chart, and their params as a diff."""

    def __init__(self, rows: list[RunRow], **kwargs: Any) -> None:
        import bqplot as bq

        self.rows = rows
        self.metric_keys = sorted({k for r in rows for k in r.metrics})
        param_keys = sorted({k for r in rows for k in r.params})
        self.differing = [k for k in param_keys if len({r.params.get(k) for r in rows}) > 1]
        self.same = [k for k in param_keys if k not in self.differing]
        x = bq.OrdinalScale()
        y = bq.LinearScale()
        bars = bq.Bars(
            x=self.metric_keys,
            y=[[r.metrics.get(k, 0.0) for k in self.metric_keys] for r in rows],
            scales={"x": x, "y": y},
            type="grouped",
            labels=[r.name or r.run_id[:8] for r in rows],
            display_legend=True,
            colors=bq.CATEGORY10[: len(rows)],
        )
        self.figure = bq.Figure(
            marks=[bars],
            axes=[bq.Axis(scale=x), bq.Axis(scale=y, orientation="vertical", tick_format=".3g")],
            title="metrics",
            legend_location="top-right",
            layout=W.Layout(height="300px", width="100%"),
        )
        super().__init__([self.figure, W.HTML(self.fallback_html())], **kwargs)

    def fallback_html(self) -> str:
        esc = html.escape
        head = "<tr><th></th>" + "".join(f"<th>{esc(r.name or r.run_id[:8])}</th>" for r in self.rows) + "</tr>"
        metric_rows = "".join(
            f"<tr><td>{esc(k)}</td>" + "".join(f"<td>{_fmt(r.metrics[k]) if k in r.metrics else ''}</td>" for r in self.rows) + "</tr>"
            for k in self.metric_keys
        )
        param_rows = "".join(
            f"<tr style='font-weight:bold'><td>{esc(k)}</td>" + "".join(f"<td>{esc(r.params.get(k, '—'))}</td>" for r in self.rows) + "</tr>"
            for k in self.differing
        )
        same = f"<p>{len(self.same)} params are the same in every run.</p>" if self.same else ""
        return (
            f"<table class='mlops-nb-table'><thead>{head}</thead><tbody>{metric_rows}</tbody></table>"
            f"<p><b>params that differ</b></p><table class='mlops-nb-table'><thead>{head}</thead><tbody>{param_rows}</tbody></table>{same}"
        )

    def fallback_text(self) -> str:
        lines = ["metrics: " + ", ".join(self.metric_keys)]
        for r in self.rows:
            values = " ".join(f"{k}={_fmt(r.metrics[k])}" for k in self.metric_keys if k in r.metrics)
            diffs = " ".join(f"{k}={r.params.get(k, '-')}" for k in self.differing)
            lines.append(f"  {r.name or r.run_id[:8]}: {values} | {diffs}")
        return "\n".join(lines)
