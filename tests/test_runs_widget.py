"""The runs table and Compare, driven from Python against a real SQLite store."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.runs import metric_series
from mlops_nb.tracking import Tracker
from mlops_nb.widgets.runs import CompareView, RunsTable, better_direction, compact_time

LONG_NAME = "sweep-lr=0.001-depth=12-estimators=400-criterion=entropy"


@pytest.fixture
def store(tmp_path: Path):
    """Three runs with the user's metrics of different scales (accuracy, loss, fit_time_s),
    autologging's training_* metrics, fit_time_s missing on 'b', a loss series on 'a' and
    'c', and params of which only lr differs."""
    from mlflow.entities import Metric, Param

    (tmp_path / ".mlops").mkdir()
    client = Tracker(
        notebook=NotebookLocation(None, "test"), config=resolve_config(tmp_path, environ={}), fluent=False
    ).client
    eid = client.create_experiment("cmp")
    specs = [("a", 0.91, 42.0, "0.1"), ("b", 0.87, None, "0.01"), (LONG_NAME, 0.95, 120.5, "0.001")]
    for i, (name, acc, fit_time, lr) in enumerate(specs):
        run = client.create_run(eid, run_name=name, start_time=1_700_000_000_000 + i * 1000)
        metrics = [Metric("accuracy", acc, 0, 0)]
        metrics += [Metric(k, 0.5 + i / 10, 0, 0) for k in ("training_score", "training_log_loss", "training_f1_score")]
        steps = range(5) if name != "b" else range(1)
        metrics += [Metric("loss", 1.0 / (s + 1 + i), 1000 + s, s) for s in steps]
        if fit_time is not None:
            metrics.append(Metric("fit_time_s", fit_time, 0, 0))
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param("lr", lr), Param("seed", "0"), Param("depth", "12")]
        )
        client.set_terminated(run.info.run_id)
    return client


def by_name(table: RunsTable) -> dict[str, str]:
    return {r.name: r.run_id for r in table.rows}


def test_user_metrics_come_first_in_columns_and_sort_keys(store):
    table = RunsTable(store, "cmp")
    head = re.findall(r"<th><span class='mlops-nb-clip' title='([^']+)'", table.table.value)
    assert head[:3] == ["accuracy", "loss", "fit_time_s"]  # the user's own, most common first
    assert set(head[3:]) == {"training_score", "training_log_loss", "training_f1_score"}
    sorts = [o for o in table.sort.options if o.startswith("metrics.")]
    assert sorts[:4] == ["metrics.accuracy DESC", "metrics.accuracy ASC", "metrics.loss DESC", "metrics.loss ASC"]
    assert "metrics.training_log_loss ASC" in sorts
    table.sort.value = "metrics.fit_time_s DESC"
    assert [r.name for r in table.rows][:2] == [LONG_NAME, "a"]


def test_cells_do_not_wrap_long_names_are_cut_with_the_full_text_in_a_title(store):
    table = RunsTable(store, "cmp")
    value = table.table.value
    assert "white-space: nowrap" in value and "text-overflow: ellipsis" in value
    assert f"<span class='mlops-nb-clip' title='{LONG_NAME}'>{LONG_NAME}</span>" in value
    # November 2023 is not this year: the date alone, the full local time in the title
    assert re.search(r"<td title='2023-11-1\d \d\d:\d\d:\d\d[^']*'>2023-11-1\d</td>", value)


def test_compact_time():
    now = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
    assert re.fullmatch(r"\d\d:\d\d", compact_time(datetime(2026, 12, 1, 14, 5, tzinfo=timezone.utc), now))
    assert re.fullmatch(
        r"[A-Z][a-z]{2} \d\d? \d\d:\d\d", compact_time(datetime(2026, 6, 3, 9, 5, tzinfo=timezone.utc), now)
    )
    assert compact_time(datetime(2024, 3, 1, 9, 5, tzinfo=timezone.utc), now) == "2024-03-01"
    assert compact_time(None, now) == ""


def test_a_bad_filter_shows_the_error_alone(store):
    table = RunsTable(store, "cmp")
    assert len(table.rows) == 3 and len(table.check_column.children) == 3
    table.filter.value = "accuracy >>> 2"
    assert "cannot search runs with filter" in table.error.value
    assert table.rows == [] and table.table.value == "" and table.check_column.children == ()
    assert table.page_label.value == "no runs" and table.next_button.disabled
    table.filter.value = "metrics.accuracy > 0.9"
    assert table.error.value == "" and sorted(r.name for r in table.rows) == sorted(["a", LONG_NAME])


def test_ticked_runs_are_compared_and_picks_survive_paging(store):
    table = RunsTable(store, "cmp", page_size=2)
    assert table.compare_button.disabled
    first = table.rows[0]
    table.checks[first.run_id].value = True
    assert table.compare_button.disabled and table.compare_button.description == "compare 1 selected"
    table.next_button.click()
    table.checks[table.rows[0].run_id].value = True
    assert not table.compare_button.disabled and table.compare_button.description == "compare 2 selected"
    table.prev_button.click()
    assert table.checks[first.run_id].value  # still ticked when the page comes back
    view = table.compare()
    assert [r.name for r in view.rows] == [LONG_NAME, "a"]  # in the order ticked, across pages
    table.clear_button.click()
    assert table.selected == {} and table.compare_button.disabled


def compare(store, names: list[str]) -> CompareView:
    table = RunsTable(store, "cmp")
    ids = by_name(table)
    for name in names:
        table.checks[ids[name]].value = True
    table.compare_button.click()
    assert table.children[-1] is table.compare_view
    return table.compare_view


def test_compare_shows_each_metric_on_its_own_scale_and_a_missing_one_as_missing(store):
    view = compare(store, ["a", "b"])
    a, b = view.rows
    html = view.fallback_html()
    assert f"data-run-id='{a.run_id}' data-metric='fit_time_s' data-value='42.0'" in html
    assert (
        f"<td class='missing' data-run-id='{b.run_id}' data-metric='fit_time_s' data-missing='true'>missing</td>"
        in html
    )
    # each metric's bars are scaled to that metric's largest value: accuracy 0.91 vs 0.87
    bars = re.findall(r"data-metric='accuracy' data-value='([^']+)'><div class='cell'>.*?width:([\d.]+)%", html)
    assert [(float(v), float(w)) for v, w in bars] == [(0.91, 100.0), (0.87, pytest.approx(95.6, abs=0.1))]
    # the better run is marked where the name says which way is better
    assert re.search(rf"<td class='best' data-run-id='{a.run_id}' data-metric='accuracy'", html)
    assert re.search(rf"<td class='best' data-run-id='{a.run_id}' data-metric='loss'", html)  # 0.2 < 0.5
    assert not re.search(rf"<td class='best' data-run-id='{b.run_id}' data-metric='(accuracy|loss|fit_time_s)'", html)
    assert "3 metric(s) logged by autologging" in html  # training_* folded under the user's own
    assert "fit_time_s=missing" in view.fallback_text() and "=0.0 " not in view.fallback_text()


def test_compare_params_diff_and_series(store):
    view = compare(store, ["a", LONG_NAME])
    assert view.differing == ["lr"] and view.same == ["depth", "seed"]
    html = view.fallback_html()
    assert "<tr class='differs' data-param='lr'>" in html and "Params that differ (1)" in html
    assert "2 param(s) the same in every run" in html
    assert list(view.series) == ["loss"] and len(view.figures) == 1
    lines = {m.labels[0]: m for m in view.figures[0].marks}
    assert list(lines["a"].x) == [0, 1, 2, 3, 4] and list(lines["a"].y) == pytest.approx(
        [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]
    )
    assert next(iter(lines[LONG_NAME].y)) == pytest.approx(1 / 3)
    assert "mlops-nb-chart" in view.figures[0]._dom_classes  # themed from JupyterLab's variables


def test_metric_series_leaves_out_single_values(store):
    table = RunsTable(store, "cmp")
    ids = by_name(table)
    series = metric_series(store, [ids["a"], ids["b"]], ["accuracy", "loss", "fit_time_s"])
    assert list(series) == ["loss"]
    assert series["loss"][ids["b"]] == [(0, 0.5)] and len(series["loss"][ids["a"]]) == 5


def test_better_direction():
    assert better_direction("val_loss") == -1 and better_direction("fit_time_s") == -1
    assert better_direction("accuracy") == 1 and better_direction("roc_auc") == 1
    assert better_direction("n_trees") == 0


def test_nice_ticks_are_few_and_round():
    from mlops_nb.widgets.runs import nice_ticks

    assert nice_ticks([0.25, 0.9]) == [0.4, 0.6, 0.8]
    assert nice_ticks([0, 4], whole=True) == [0, 1, 2, 3, 4]
    assert nice_ticks([0, 999], whole=True) == [0, 200, 400, 600, 800]
    assert nice_ticks([7.0, 7.0]) == [7.0] and nice_ticks([float("nan")]) == []
