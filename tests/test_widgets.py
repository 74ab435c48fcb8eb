"""Widgets: state and callbacks driven from Python, against a real store."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker
from mlops_nb.widgets.runs import CompareView, RunsTable


@pytest.fixture
def store(tmp_path: Path):
    """60 runs in 'exp-a' (accuracy rising, depth alternating) and 5 in 'exp-b'."""
    from mlflow.entities import Metric, Param

    (tmp_path / ".mlops").mkdir()
    client = Tracker(notebook=NotebookLocation(None, "test"), config=resolve_config(tmp_path, environ={}), fluent=False).client
    for exp, count in (("exp-a", 60), ("exp-b", 5)):
        eid = client.create_experiment(exp)
        for i in range(count):
            run = client.create_run(eid, run_name=f"{exp}-{i:02d}", start_time=1_700_000_000_000 + i * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric("accuracy", i / 100, 0, 0), Metric("loss", 1 - i / 100, 0, 0)],
                params=[Param("depth", str(3 + i % 2)), Param("seed", "0")],
            )
            client.set_terminated(run.info.run_id)
    return client


def names(table: RunsTable) -> list[str]:
    return [r.name for r in table.rows]


def test_pages_forward_and_back(store):
    table = RunsTable(store, "exp-a", page_size=25)
    assert names(table)[:2] == ["exp-a-59", "exp-a-58"] and len(table.rows) == 25
    assert table.prev_button.disabled and not table.next_button.disabled
    assert table.page_label.value == "page 1 · runs 1–25"
    table.next_button.click()
    table.next_button.click()
    assert table.page_label.value == "page 3 · runs 51–60" and table.next_button.disabled
    assert names(table)[-1] == "exp-a-00"
    table.prev_button.click()
    assert table.page_label.value == "page 2 · runs 26–50" and names(table)[0] == "exp-a-34"
    assert "exp-a-34" in table.table.value and "<td>0.34</td>" in table.table.value


def test_filter_sort_and_experiment(store):
    table = RunsTable(store, "exp-a", page_size=25)
    table.filter.value = "metrics.accuracy > 0.5 and params.depth = '4'"
    assert names(table) == [f"exp-a-{i:02d}" for i in range(59, 50, -2)]
    assert "metrics.accuracy ASC" in table.sort.options
    table.sort.value = "metrics.accuracy ASC"
    assert names(table) == [f"exp-a-{i:02d}" for i in range(51, 60, 2)]
    table.filter.value = "accuracy >>> 2"
    assert "cannot search runs with filter" in table.error.value
    assert len(table.rows) == 5  # the last good page stays
    table.filter.value = ""
    table.experiment.value = "exp-b"
    assert {r.experiment for r in table.rows} == {"exp-b"} and len(table.rows) == 5
    table.experiment.value = "(all experiments)"
    assert len(table.rows) == 25 and table.page_label.value == "page 1 · runs 1–25"


def test_compare_picked_runs(store):
    table = RunsTable(store, "exp-a", page_size=10)
    assert table.compare() is None and "Pick two or more" in table.error.value
    table.picker.value = tuple(r.run_id for r in table.rows[:2])
    table.compare_button.click()
    view = table.children[-1]
    assert isinstance(view, CompareView) and view is table.compare_view
    assert view.metric_keys == ["accuracy", "loss"]
    assert view.differing == ["depth"] and view.same == ["seed"]
    assert "exp-a-59: accuracy=0.59" in view.fallback_text()
    bars = view.figure.marks[0]
    assert [list(v) for v in bars.y] == [[0.59, pytest.approx(0.41)], [0.58, pytest.approx(0.42)]]


def test_fallback_is_readable_without_widgets(store):
    table = RunsTable(store, "exp-b", page_size=3)
    bundle = table._repr_mimebundle_()
    assert "exp-b-04" in bundle["text/plain"] and "more exist" in bundle["text/plain"]
    assert "<table" in bundle["text/html"] and "exp-b-04" in bundle["text/html"]


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def test_live_chart_follows_a_tracked_cell(ip, capsys):
    code = """
    %%mlops track --name curve --no-autolog
    import mlops_nb as mnb
    for step in range(100):
        mnb.log_metric("loss", 1 / (step + 1), step=step)
    """
    assert run(ip, code).success
    out = capsys.readouterr().out
    assert "curve (live)" in out  # the chart was displayed under the cell
    tracker = __import__("mlops_nb").get_tracker()
    assert tracker._listeners == []  # detached when the run ended
    assert run(ip, code.replace("--name curve", "--name quiet --no-chart")).success
    assert "quiet (live)" not in capsys.readouterr().out


def test_live_chart_holds_every_point_and_draws_last_values():
    from mlops_nb.widgets.live import LiveChart

    chart = LiveChart("t", interval=3600)  # the real clock: whatever this machine's uptime
    for step in range(500):
        chart.add("loss", 1 / (step + 1), step)
        chart.add("acc", step / 500, step)
    assert chart.draws == 1  # the first point draws; the rest wait for the interval
    chart.draw()
    assert chart.draws == 2
    lines = {m.labels[0]: m for m in chart.figure.marks}
    assert len(lines["loss"].x) == 500 and lines["acc"].y[-1] == pytest.approx(499 / 500)
    assert "loss: 0.002 at step 499 (500 points)" in chart.fallback_text()


@pytest.mark.parametrize("uptime", [0.0, 3.0, 1e6])
def test_live_chart_draws_the_first_point_on_a_freshly_booted_machine(uptime):
    """time.monotonic() counts from boot: a machine up for less than the interval must
    still draw the first point at once, and then at most once an interval."""
    from mlops_nb.widgets.live import LiveChart

    now = [uptime]
    chart = LiveChart("t", interval=10.0, clock=lambda: now[0])
    chart.add("loss", 1.0, 0)
    assert chart.draws == 1 and len(chart.figure.marks) == 1  # the first point is on the chart
    now[0] += 9.0
    chart.add("loss", 0.5, 1)
    assert chart.draws == 1  # within the interval: waits
    now[0] += 1.0
    chart.add("loss", 0.25, 2)
    assert chart.draws == 2 and list(chart.figure.marks[0].y) == [1.0, 0.5, 0.25]


def test_registry_browser_shows_versions_lineage_and_history(ip, client):
    setup = """
    from sklearn.linear_model import LogisticRegression
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    """
    assert run(ip, setup).success
    for alias in ("champion", "challenger"):
        assert run(ip, f"%%mlops track --name fit --no-chart\n%mlops register model --name tiny --alias {alias}").success
    run(ip, "%mlops alias tiny@champion 2")
    browser = run(ip, "%mlops models tiny").result
    assert [v.version for v in browser.versions] == ["2", "1"]
    assert "@challenger @champion" in browser.versions_html.value or "@champion @challenger" in browser.versions_html.value
    browser.version.value = "1"
    assert "analysis/train.ipynb" in browser.detail.value
    assert "moved away @champion" in browser.detail.value


def test_sort_choice_stays_and_a_bad_filter_keeps_paging_consistent(store):
    table = RunsTable(store, "exp-a", page_size=25)
    table.sort.value = "name"
    assert table.sort.value == "name" and names(table) == sorted(names(table))
    table.sort.value = "metrics.accuracy ASC"
    table.experiment.value = "exp-b"
    assert table.sort.value == "metrics.accuracy ASC" and names(table)[0] == "exp-b-00"
    table.experiment.value = "exp-a"
    table.next_button.click()
    table.next_button.click()
    assert table.page_label.value == "page 3 · runs 51–60"
    table.filter.value = "metrics.accuracy >>> 3"
    assert "cannot search runs" in table.error.value
    assert table.page_label.value == "page 3 · runs 51–60" and len(table.rows) == 10
    table.prev_button.click()  # the bad filter is still in the box: same error, same page
    assert "cannot search runs" in table.error.value and table.page_label.value == "page 3 · runs 51–60"
    table.filter.value = ""
    assert table.error.value == "" and table.page_label.value == "page 1 · runs 1–25"
    table.next_button.click()
    table.prev_button.click()
    assert table.page_label.value == "page 1 · runs 1–25"
