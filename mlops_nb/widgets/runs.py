"""The runs table: sort, filter by param or metric, page through every run, compare.

Sorting, filtering and paging are done by the store (``runs_page``), page by page, so
an experiment of 100,000 runs is browsed as easily as one of ten, and nothing is cut
at 1,000. Runs are picked for comparison with a checkbox per row, as in MLflow's UI;
picks survive paging, so runs of different pages can be compared.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import ipywidgets as W

from mlops_nb.exceptions import MlopsError, UsageError
from mlops_nb.runs import RunRow, experiment_ids, metric_series, runs_page
from mlops_nb.tables import runs_table
from mlops_nb.widgets import TABLE_CSS, FallbackMixin
from mlops_nb.widgets.theme import SERIES_COLORS, css_widget, style_figure

__all__ = [
    "CompareView",
    "RunsTable",
    "better_direction",
    "compact_time",
    "metric_order",
    "nice_ticks",
    "runs_browser",
]

_ALL = "(all experiments)"
_SORTS = {
    "newest first": "attributes.start_time DESC",
    "oldest first": "attributes.start_time ASC",
    "name": "attributes.run_name ASC",
}
_MAX_METRIC_COLUMNS = 6
#: One row's height in px: rows never wrap, so the checkbox column beside the table
#: lines up with them by construction.
_ROW_PX = 30

# Metrics that autologging writes on its own (sklearn's ``training_*`` and
# ``<Estimator>_score_X_test``, Keras' ``val_*`` aside): the user's own come first.
_AUTOLOG = re.compile(r"^(training_|system/)|_score_X_|^[A-Z]\w*_(score|accuracy)")
_LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|mape|time|duration|latency|seconds|perplexity", re.I)
_HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|precision|recall|score|r2|iou|bleu|map\b", re.I)

_RUNS_CSS = f"""<style>
.mlops-nb-table.mlops-nb-runs {{ border-collapse: separate; border-spacing: 0; margin: 0; }}
.mlops-nb-table.mlops-nb-runs th, .mlops-nb-table.mlops-nb-runs td {{ height: {_ROW_PX}px; box-sizing: border-box;
  padding: 0 10px; line-height: 20px; white-space: nowrap; vertical-align: middle; }}
.mlops-nb-runs .mlops-nb-clip {{ display: inline-block; max-width: 22ch; overflow: hidden;
  text-overflow: ellipsis; vertical-align: middle; }}
.mlops-nb-runs td:nth-child(n+6), .mlops-nb-runs th:nth-child(n+6) {{ text-align: right; }}
.mlops-nb-error {{ color: var(--jp-error-color1, #c00); }}
</style>"""


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def metric_order(rows: list[RunRow]) -> list[str]:
    """The metrics of ``rows``, the user's own before autologging's, each group by how
    many runs have it (most first), then by name."""
    return _user_first(Counter(k for r in rows for k in r.metrics))


def _user_first(counts: Mapping[str, int]) -> list[str]:
    return sorted(counts, key=lambda k: (bool(_AUTOLOG.search(k)), -counts[k], k))


def better_direction(key: str) -> int:
    """+1 when a higher value of metric ``key`` is better, -1 when lower is, 0 when the
    name does not say (then no run is called best)."""
    if _LOWER_IS_BETTER.search(key):
        return -1
    if _HIGHER_IS_BETTER.search(key):
        return 1
    return 0


def compact_time(value: datetime | None, now: datetime | None = None) -> str:
    """``05:31`` today, ``Nov 30 05:31`` this year, ``2025-11-30`` before: one short line."""
    if value is None:
        return ""
    local = value.astimezone()
    now = (now or datetime.now(local.tzinfo)).astimezone(local.tzinfo)
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return f"{local:%b} {local.day} {local:%H:%M}"
    return local.strftime("%Y-%m-%d")


def nice_ticks(values: list[float], count: int = 5, whole: bool = False) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten)
    within the range of ``values``; whole numbers only when ``whole``."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return []
    lo, hi = min(finite), max(finite)
    if hi == lo:
        return [lo]
    raw = (hi - lo) / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    if whole:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    ticks = [round(i * step, 12) for i in range(first, math.floor(hi / step + 1e-9) + 1)]
    return ticks


def _clip(text: str) -> str:
    """A cell that never wraps: cut with an ellipsis, the full text in its title."""
    esc = html.escape(text)
    return f"<span class='mlops-nb-clip' title='{esc}'>{esc}</span>"


def _rows_html(rows: list[RunRow], metric_keys: list[str], now: datetime | None = None) -> str:
    esc = html.escape
    head = "".join(f"<th>{c}</th>" for c in ["run", "name", "status", "started", "notebook"])
    head += "".join(f"<th>{_clip(k)}</th>" for k in metric_keys)  # metric columns: right-aligned by CSS
    body = []
    for r in rows:
        full = r.start_time.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if r.start_time else ""
        cells = [
            f"<td title='{esc(r.run_id)}'><code>{esc(r.run_id[:8])}</code></td>",
            f"<td>{_clip(r.name)}</td>",
            f"<td>{esc(r.status)}</td>",
            f"<td title='{esc(full)}'>{esc(compact_time(r.start_time, now))}</td>",
            f"<td>{_clip(r.notebook)}</td>",
        ]
        cells += [f"<td>{_fmt(r.metrics[k]) if k in r.metrics else ''}</td>" for k in metric_keys]
        body.append(f"<tr data-run-id='{esc(r.run_id)}'>" + "".join(cells) + "</tr>")
    return (
        TABLE_CSS
        + _RUNS_CSS
        + "<table class='mlops-nb-table mlops-nb-runs'><thead><tr>"
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


def _error_html(message: str) -> str:
    esc = html.escape(message)
    return f"{_RUNS_CSS}<span class='mlops-nb-error'>{esc}</span>"


def runs_browser(client: Any, experiment: str | None = None, n: int = 20) -> RunsTable:
    """``%mlops runs`` and ``mlops_nb.runs()``: the runs table, ``n`` runs a page (1 to 1,000)."""
    if not 1 <= n <= 1000:
        raise UsageError(f"-n must be between 1 and 1000, not {n}")
    return RunsTable(client, experiment, page_size=n)


class RunsTable(FallbackMixin, W.VBox):
    """Browse the runs of an experiment (or all), a page at a time; tick runs to compare."""

    children: tuple[W.Widget, ...]  # ipywidgets' trait, which mypy cannot infer

    def __init__(self, client: Any, experiment: str | None = None, page_size: int = 25, **kwargs: Any) -> None:
        self.client = client
        self.page_size = page_size
        self._experiments = experiment_ids(client, None)  # id -> name, looked up once
        names = sorted(self._experiments.values())
        if experiment and experiment not in names:
            experiment_ids(client, [experiment])  # raises NotFoundError naming the known ones
        self.experiment = W.Dropdown(
            options=[_ALL, *names], value=experiment if experiment in names else _ALL, description="experiment"
        )
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
        self.table = W.HTML(layout=W.Layout(margin="0"))
        # One checkbox per row, stacked beside the table at the rows' fixed height.
        self.check_column = W.VBox(layout=W.Layout(margin="0", padding=f"{_ROW_PX}px 0 0 0", flex="0 0 auto"))
        self.checks: dict[str, W.Checkbox] = {}  # this page's boxes by run id
        self._boxes: list[W.Checkbox] = []
        self._quiet_boxes = False  # set while a page re-points the boxes
        self.selected: dict[str, RunRow] = {}  # run id -> row, in the order ticked
        self.compare_button = W.Button(
            description="compare selected", disabled=True, icon="columns", layout=W.Layout(width="auto")
        )
        self.clear_button = W.Button(description="clear selection", disabled=True, layout=W.Layout(width="auto"))
        self.compare_view: CompareView | None = None
        self.rows: list[RunRow] = []
        self.page_number = 0
        self._tokens: list[str | None] = [None]
        self._next: str | None = None
        self._metric_counts: dict[str, int] = {}  # every metric seen on any page: sort keys

        self._quiet = False  # set while the table itself changes a control
        for control in (self.experiment, self.sort, self.filter):
            control.observe(lambda _change: None if self._quiet else self.first_page(), names="value")
        self.prev_button.on_click(lambda _b: self.previous_page())
        self.next_button.on_click(lambda _b: self.next_page())
        self.compare_button.on_click(lambda _b: self.compare())
        self.clear_button.on_click(lambda _b: self.clear_selection())
        super().__init__(
            [
                W.HBox([self.experiment, self.sort, self.filter], layout=W.Layout(flex_flow="row wrap")),
                self.error,
                W.HBox(
                    [self.check_column, self.table], layout=W.Layout(overflow="auto hidden", align_items="flex-start")
                ),
                W.HBox([self.prev_button, self.page_label, self.next_button, self.compare_button, self.clear_button]),
            ],
            **kwargs,
        )
        self.first_page()

    # -- paging ---------------------------------------------------------------

    def _load(self, token: str | None) -> bool:
        """Fetch one page into ``rows``; on bad input show the one-line error and no rows
        (rows under an error would look like its result)."""
        chosen = self.experiment.value
        ids = {i: n for i, n in self._experiments.items() if chosen == _ALL or n == chosen}
        order = _SORTS.get(self.sort.value, self.sort.value)
        try:
            page = runs_page(
                self.client, None, self.filter.value.strip() or None, order, self.page_size, token, resolved=ids
            )
        except MlopsError as exc:
            self.error.value = _error_html(str(exc))
            self.rows, self._next, self._tokens, self.page_number = [], None, [None], 0
            self._render(failed=True)
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
        return metric_order(self.rows)[:_MAX_METRIC_COLUMNS]

    def _render(self, failed: bool = False) -> None:
        keys = metric_order(self.rows)
        shown = keys[:_MAX_METRIC_COLUMNS]
        if failed:
            self.table.value = ""
        elif not self.rows:
            self.table.value = "<p>No runs match.</p>"
        else:
            hidden = keys[_MAX_METRIC_COLUMNS:]
            more = (
                f"<p style='color:var(--jp-ui-font-color2, gray)'>{len(hidden)} more metric(s) not shown as columns: "
                f"{html.escape(', '.join(hidden))} (sort by any of them)</p>"
                if hidden
                else ""
            )
            self.table.value = _rows_html(self.rows, shown) + more
        first = self.page_number * self.page_size
        self.page_label.value = (
            f"page {self.page_number + 1} · runs {first + 1}–{first + len(self.rows)}" if self.rows else "no runs"
        )
        self.prev_button.disabled = self.page_number == 0
        self.next_button.disabled = self._next is None
        self._render_checks()
        self._offer_sorts()

    def _render_checks(self) -> None:
        """One checkbox per row. The boxes are kept and re-pointed at each page's rows
        (creating 25 widgets a page was a third of a page load, README: Figures); a box
        beyond this page's rows is hidden from the column."""
        while len(self._boxes) < len(self.rows):
            i = len(self._boxes)
            box = W.Checkbox(
                indent=False,
                description="",
                layout=W.Layout(height=f"{_ROW_PX}px", width="28px", margin="0", align_items="center"),
            )
            box.add_class("mlops-nb-pick")
            box.observe(lambda change, i=i: self._box_changed(i, change["new"]), names="value")
            self._boxes.append(box)
        self.checks = {}
        self._quiet_boxes = True
        try:
            for r, box in zip(self.rows, self._boxes):
                box.value = r.run_id in self.selected
                box.tooltip = f"compare {r.name or r.run_id[:8]}"
                self.checks[r.run_id] = box
        finally:
            self._quiet_boxes = False
        children = self._boxes[: len(self.rows)]
        if list(self.check_column.children) != children:
            self.check_column.children = children
        self._update_compare_button()

    def _box_changed(self, i: int, on: bool) -> None:
        if not self._quiet_boxes and i < len(self.rows):
            self._pick(self.rows[i], on)

    def _offer_sorts(self) -> None:
        """Offer sorting by every metric seen, the user's own first; options only grow,
        and the choice stays."""
        for k, n in Counter(k for r in self.rows for k in r.metrics).items():
            self._metric_counts[k] = max(n, self._metric_counts.get(k, 0))  # pages seen again count once
        keys = _user_first(self._metric_counts)
        options = list(_SORTS) + [f"metrics.{k} {d}" for k in keys for d in ("DESC", "ASC")]
        if options != list(self.sort.options):
            chosen = self.sort.value
            self._quiet = True
            try:
                self.sort.options = options
                self.sort.value = chosen
            finally:
                self._quiet = False

    # -- compare --------------------------------------------------------------

    def _pick(self, row: RunRow, on: bool) -> None:
        if on:
            self.selected[row.run_id] = row
        else:
            self.selected.pop(row.run_id, None)
        self._update_compare_button()

    def _update_compare_button(self) -> None:
        n = len(self.selected)
        self.compare_button.description = f"compare {n} selected" if n else "compare selected"
        self.compare_button.disabled = n < 2
        self.compare_button.tooltip = "" if n >= 2 else "tick two or more runs to compare them"
        self.clear_button.disabled = n == 0

    def clear_selection(self) -> None:
        self.selected.clear()
        for box in self.checks.values():
            box.value = False
        self._update_compare_button()

    def compare(self) -> CompareView | None:
        """Show the ticked runs side by side under the table."""
        if len(self.selected) < 2:
            self.error.value = "<span>Tick two or more runs to compare.</span>"
            return None
        self.error.value = ""
        view = CompareView(list(self.selected.values()), client=self.client)
        if self.compare_view is not None:
            self.compare_view.close()
        self.compare_view = view
        self.children = (*(c for c in self.children if not isinstance(c, CompareView)), view)
        return view

    def fallback_text(self) -> str:
        return str(runs_table(self.rows, self._next is not None, self.client.tracking_uri))

    def fallback_html(self) -> str:
        return _rows_html(self.rows, self._metric_keys())


_COMPARE_CSS = """<style>
.mlops-nb-compare td, .mlops-nb-compare th { white-space: nowrap; vertical-align: middle; }
.mlops-nb-compare .mlops-nb-clip { display: inline-block; max-width: 24ch; overflow: hidden;
  text-overflow: ellipsis; vertical-align: middle; }
.mlops-nb-compare .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; vertical-align: middle; }
.mlops-nb-compare .cell { display: flex; align-items: center; gap: 8px; min-width: 170px; }
.mlops-nb-compare .value { flex: 0 0 7ch; text-align: right; }
.mlops-nb-compare .track { flex: 1 1 auto; height: 10px; min-width: 90px;
  background: var(--jp-layout-color2, #eee); border-radius: 2px; }
.mlops-nb-compare .bar { display: block; height: 100%; border-radius: 2px; }
.mlops-nb-compare .missing { color: var(--jp-ui-font-color3, gray); font-style: italic; }
.mlops-nb-compare .best .value { font-weight: 700; }
.mlops-nb-compare .badge { font-size: var(--jp-ui-font-size0, 11px); color: var(--jp-ui-font-color2, gray); }
.mlops-nb-compare tr.differs td { background: rgba(255, 152, 0, 0.16); }
.mlops-nb-compare tr.differs td:first-child { box-shadow: inset 3px 0 0 var(--jp-warn-color1, #f57c00); }
.mlops-nb-compare h4 { margin: 10px 0 2px; font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, inherit); }
.mlops-nb-compare p { margin: 2px 0; color: var(--jp-ui-font-color2, gray); }
</style>"""


def _run_label(r: RunRow) -> str:
    return r.name or r.run_id[:8]


def _best(values: dict[str, float], direction: int) -> str | None:
    """The run id with the best value, when the metric's name says which way is better
    and the runs do not tie."""
    finite = {rid: v for rid, v in values.items() if not math.isnan(v)}
    if direction == 0 or len(finite) < 2 or len(set(finite.values())) == 1:
        return None
    pick = max if direction > 0 else min
    return pick(finite, key=lambda rid: finite[rid])


class CompareView(FallbackMixin, W.VBox):
    """Several runs side by side: each metric in its own row on its own scale (a bar per
    run, the best marked where the name says which way is better, a missing metric said
    as missing), the params that differ, and the step curves of metrics logged as series.
    """

    def __init__(self, rows: list[RunRow], client: Any = None, **kwargs: Any) -> None:
        self.rows = rows
        self.colors = {r.run_id: SERIES_COLORS[i % len(SERIES_COLORS)] for i, r in enumerate(rows)}
        self.metric_keys = metric_order(rows)
        param_keys = sorted({k for r in rows for k in r.params})
        self.differing = [k for k in param_keys if len({r.params.get(k) for r in rows}) > 1]
        self.same = [k for k in param_keys if k not in self.differing]
        # key -> run id -> [(step, value)]: only metrics some run logged at several steps.
        self.series = metric_series(client, [r.run_id for r in rows], self.metric_keys) if client is not None else {}
        self.figures = [self._series_figure(key, per_run) for key, per_run in self.series.items()]
        children: list[W.Widget] = [W.HTML(_COMPARE_CSS + self._tables_html())]
        if self.figures:
            children += [
                css_widget(),
                W.HTML("<b>Metrics logged over steps</b>"),
                W.HBox(self.figures, layout=W.Layout(flex_flow="row wrap")),
            ]
        super().__init__(children, **kwargs)
        self.add_class("mlops-nb-compare")

    def _series_figure(self, key: str, per_run: dict[str, list[tuple[int, float]]]) -> Any:
        import bqplot as bq  # here: only a comparison with series draws a chart

        x, y = bq.LinearScale(), bq.LinearScale()
        by_id = {r.run_id: r for r in self.rows}
        lines = [
            bq.Lines(
                x=[s for s, _ in points],
                y=[v for _, v in points],
                scales={"x": x, "y": y},
                colors=[self.colors[rid]],
                labels=[_run_label(by_id[rid])],
                display_legend=True,
                marker="circle" if len(points) == 1 else None,
            )
            for rid, points in per_run.items()
        ]
        fig = bq.Figure(
            marks=lines,
            # few round ticks: a 260 px chart reads at a glance (bqplot's default is a dozen)
            axes=[
                bq.Axis(
                    scale=x,
                    label="step",
                    tick_values=nice_ticks([s for p in per_run.values() for s, _ in p], whole=True),
                ),
                bq.Axis(
                    scale=y,
                    side="left",
                    tick_format=".3~g",
                    tick_values=nice_ticks([v for p in per_run.values() for _, v in p]),
                ),
            ],
            title=key,
            legend_location="top-right",
            fig_margin={"top": 40, "bottom": 45, "left": 60, "right": 20},
            layout=W.Layout(height="260px", width="420px"),
        )
        return style_figure(fig)

    def _header(self) -> str:
        esc = html.escape
        return "".join(
            f"<th data-run-id='{esc(r.run_id)}'><span class='swatch' style='background:{self.colors[r.run_id]}'></span>"
            f"{_clip(_run_label(r))} <code>{esc(r.run_id[:8])}</code></th>"
            for r in self.rows
        )

    def _metric_row(self, key: str) -> str:
        esc = html.escape
        values = {r.run_id: r.metrics[key] for r in self.rows if key in r.metrics}
        direction = better_direction(key)
        best = _best(values, direction)
        top = max((abs(v) for v in values.values() if not math.isnan(v)), default=0.0)
        hint = {1: "higher is better", -1: "lower is better", 0: ""}[direction]
        cells = [f"<td>{_clip(key)}<br><span class='badge'>{hint}</span></td>"]
        for r in self.rows:
            attrs = f"data-run-id='{esc(r.run_id)}' data-metric='{esc(key)}'"
            if r.run_id not in values:
                cells.append(f"<td class='missing' {attrs} data-missing='true'>missing</td>")
                continue
            v = values[r.run_id]
            width = 0.0 if math.isnan(v) or top == 0 else abs(v) / top * 100
            mark = " <span class='badge'>best</span>" if r.run_id == best else ""
            cells.append(
                f"<td class='{'best' if r.run_id == best else ''}' {attrs} data-value='{v!r}'><div class='cell'>"
                f"<span class='value'>{_fmt(v)}</span><span class='track'>"
                f"<span class='bar' style='width:{width:.1f}%;background:{self.colors[r.run_id]}'></span>"
                f"</span>{mark}</div></td>"
            )
        return "<tr>" + "".join(cells) + "</tr>"

    def _tables_html(self) -> str:
        esc = html.escape
        head = f"<thead><tr><th></th>{self._header()}</tr></thead>"
        own = [k for k in self.metric_keys if not _AUTOLOG.search(k)]
        auto = [k for k in self.metric_keys if k not in own]
        if not own:  # only autologging's: show them, nothing to fold away
            own, auto = auto, []
        metrics = "".join(self._metric_row(k) for k in own) or (
            f"<tr><td colspan='{len(self.rows) + 1}'>These runs logged no metrics.</td></tr>"
        )
        folded = (
            f"<details><summary>{len(auto)} metric(s) logged by autologging</summary>"
            f"<table class='mlops-nb-table mlops-nb-metrics mlops-nb-autolog'>{head}<tbody>"
            + "".join(self._metric_row(k) for k in auto)
            + "</tbody></table></details>"
            if auto
            else ""
        )

        def param_row(k: str, cls: str) -> str:
            cells = "".join(
                f"<td>{_clip(r.params[k])}</td>" if k in r.params else "<td class='missing'>missing</td>"
                for r in self.rows
            )
            return f"<tr class='{cls}' data-param='{esc(k)}'><td>{_clip(k)}</td>{cells}</tr>"

        differing = "".join(param_row(k, "differs") for k in self.differing)
        same = "".join(param_row(k, "same") for k in self.same)
        params = (
            f"<h4>Params that differ ({len(self.differing)})</h4>"
            + (
                f"<table class='mlops-nb-table mlops-nb-params'>{head}<tbody>{differing}</tbody></table>"
                if differing
                else "<p>None: every param is the same in these runs.</p>"
            )
            + (
                f"<details><summary>{len(self.same)} param(s) the same in every run</summary>"
                f"<table class='mlops-nb-table mlops-nb-params-same'>{head}<tbody>{same}</tbody></table></details>"
                if same
                else ""
            )
        )
        return (
            TABLE_CSS
            + f"<div class='mlops-nb-compare'><h4>Comparing {len(self.rows)} runs: each metric on its own scale</h4>"
            + f"<table class='mlops-nb-table mlops-nb-metrics'>{head}<tbody>{metrics}</tbody></table>{folded}{params}</div>"
        )

    def fallback_html(self) -> str:
        return _COMPARE_CSS + self._tables_html()

    def fallback_text(self) -> str:
        lines = ["metrics: " + ", ".join(self.metric_keys)]
        for r in self.rows:
            values = " ".join(f"{k}={_fmt(r.metrics[k]) if k in r.metrics else 'missing'}" for k in self.metric_keys)
            diffs = " ".join(f"{k}={r.params.get(k, 'missing')}" for k in self.differing)
            lines.append(f"  {_run_label(r)}: {values} | {diffs}")
        if self.series:
            lines.append("series (more than one step): " + ", ".join(self.series))
        return "\n".join(lines)
