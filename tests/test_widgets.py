"""Widgets: state and callbacks driven from Python, against a real store."""

from __future__ import annotations

import re
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
    client = Tracker(
        notebook=NotebookLocation(None, "test"), config=resolve_config(tmp_path, environ={}), fluent=False
    ).client
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
    assert table.rows == [] and table.table.value == ""  # no stale rows under the error
    table.filter.value = ""
    table.experiment.value = "exp-b"
    assert {r.experiment for r in table.rows} == {"exp-b"} and len(table.rows) == 5
    table.experiment.value = "(all experiments)"
    assert len(table.rows) == 25 and table.page_label.value == "page 1 · runs 1–25"


def test_compare_picked_runs(store):
    table = RunsTable(store, "exp-a", page_size=10)
    assert table.compare() is None and "Tick two or more" in table.error.value
    for r in table.rows[:2]:
        table.checks[r.run_id].value = True
    table.compare_button.click()
    view = table.children[-1]
    assert isinstance(view, CompareView) and view is table.compare_view
    assert view.metric_keys == ["accuracy", "loss"]
    assert view.differing == ["depth"] and view.same == ["seed"]
    assert "exp-a-59: accuracy=0.59" in view.fallback_text()
    html = view.fallback_html()
    assert "data-metric='accuracy' data-value='0.59'" in html
    loss = re.search(r"data-metric='loss' data-value='([^']+)'", html)
    assert loss and float(loss.group(1)) == pytest.approx(0.41)


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
    assert "curve · running" in out  # the chart was displayed under the cell
    assert "(live)" not in out
    tracker = __import__("mlops_nb").get_tracker()
    assert tracker._listeners == []  # detached when the run ended
    assert run(ip, code.replace("--name curve", "--name quiet --no-chart")).success
    out = capsys.readouterr().out
    assert "quiet ·" not in out  # no chart
    assert re.search(r"run [0-9a-f]{32} \(quiet\) ended FINISHED in", out)  # the cell's closing line


def test_a_value_logged_once_is_a_summary_not_a_chart(ip, capsys):
    """Charts are for series: a cell logging single values shows no chart at all; the
    values are in the cell's closing line. A series beside them is charted alone."""
    assert run(
        ip,
        """
    %%mlops track --name scores --no-autolog
    import mlops_nb as mnb
    mnb.log_metric("accuracy", 0.93)
    mnb.log_metric("f1", 0.875)
    """,
    ).success
    out = capsys.readouterr().out
    assert "scores ·" not in out  # no chart was displayed
    assert "  accuracy = 0.93 · f1 = 0.875" in out
    assert run(
        ip,
        """
    %%mlops track --name mixed --no-autolog
    import mlops_nb as mnb
    for step in range(3):
        mnb.log_metric("loss", 1 / (step + 1), step=step)
    mnb.log_metric("accuracy", 0.9)
    chart_shown = True
    """,
    ).success
    out = capsys.readouterr().out
    chart_text = out.split("mlops-nb: run")[0]
    assert "mixed · running" in chart_text and "loss: 0.333333 at step 2 (3 points)" in chart_text
    assert "accuracy" not in chart_text  # a single value is no line on the chart
    assert "  accuracy = 0.9 · loss = 0.3333" in out


def test_a_finished_chart_says_how_the_run_ended():
    from mlops_nb.widgets.live import LiveChart

    chart = LiveChart("fit", interval=3600)
    chart.add("accuracy", 0.9, 0)  # a single value: not drawn
    chart.add("loss", 1.0, 0)
    chart.add("loss", 0.5, 1)
    chart.draw()
    assert chart.figure.title == "fit · running"
    assert [m.labels[0] for m in chart.figure.marks] == ["loss"]
    chart.finish("FAILED")
    assert chart.figure.title == "fit · failed"
    assert chart.fallback_text().splitlines()[0] == "fit · failed"


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
    assert chart.draws == 1  # the first point draws at once (one point is no line yet)
    now[0] += 9.0
    chart.add("loss", 0.5, 1)
    assert chart.draws == 1 and chart.figure.marks == []  # within the interval: waits
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
        assert run(
            ip, f"%%mlops track --name fit --no-chart\n%mlops register model --name tiny --alias {alias}"
        ).success
    run(ip, "%mlops alias tiny@champion 2")
    browser = run(ip, "%mlops models tiny").result
    assert [v.version for v in browser.versions] == ["2", "1"]
    badges = re.findall(r"<tr><td>v(\d)</td><td>(.*?)</td>", browser.versions_html.value)
    assert [(v, re.findall(r"@(\w+)", cell)) for v, cell in badges] == [("2", ["challenger", "champion"]), ("1", [])]
    browser.version.value = "1"
    assert "analysis/train.ipynb" in browser.detail.value
    assert "moved away @champion" in browser.detail.value


def test_models_widget_shows_a_version_at_once_and_follows_alias_moves(ip, client):
    """A version is chosen from the start (the newest), its lineage is the registry's
    (no metrics JSON row), and an alias moved from outside this widget is redrawn on
    the next check; Refresh rereads at once."""
    from mlops_nb.registry import METRICS_TAG, set_alias, version_detail
    from mlops_nb.widgets.models import RegistryBrowser

    assert run(
        ip,
        "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression().fit([[0.0], [1.0]], [0, 1])",
    ).success
    for alias in ("champion", "challenger"):
        cell = f"%%mlops track --name fit --no-chart\nimport mlops_nb as mnb\nmnb.log_metric('test_accuracy', 0.91)\n%mlops register model --name tiny --alias {alias}"
        assert run(ip, cell).success
    browser = RegistryBrowser(client, "tiny", poll_s=0)
    assert browser.version.value == "2" and browser.version.options[0] == ("v2 @challenger", "2")
    assert browser.prompt.value  # says what the version choice is for
    detail = version_detail(client, "tiny", "2")
    assert METRICS_TAG[len("mlops_nb.") :] not in detail["lineage"]
    shown = browser.detail.value
    assert detail["run_id"] in shown and "analysis/train.ipynb" in shown
    assert "test_accuracy = 0.91" in shown and '"test_accuracy"' not in shown  # no JSON
    assert "mnb.load(&quot;models:/tiny@challenger&quot;)" in shown

    assert browser.check() is False  # nothing moved: nothing redrawn
    set_alias(client, "tiny", "champion", "2", why="from another kernel")  # not through this widget
    assert browser.check() is True
    assert browser.version.value == "2"  # the version shown stays shown
    assert browser.version.options[0] == ("v2 @challenger @champion", "2")
    assert "@champion" in browser.detail.value and "changed elsewhere" in browser.note.value
    browser.version.value = "1"
    assert "moved away @champion" in browser.detail.value and "from another kernel" in browser.detail.value

    set_alias(client, "tiny", "champion", "1")
    browser.refresh_button.click()
    assert browser.version.options[1] == ("v1 @champion", "1")
    assert "@champion=v1" in browser.fallback_text()


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
    assert table.page_label.value == "no runs" and table.rows == []  # the error alone, no stale rows
    assert table.prev_button.disabled and table.next_button.disabled
    table.prev_button.click()  # the bad filter is still in the box: same error, nothing shown
    assert "cannot search runs" in table.error.value and table.page_label.value == "no runs"
    table.filter.value = ""
    assert table.error.value == "" and table.page_label.value == "page 1 · runs 1–25"
    table.next_button.click()
    table.prev_button.click()
    assert table.page_label.value == "page 1 · runs 1–25"


def test_charts_take_jupyterlabs_theme_colours_and_fonts():
    """Title, axes and legend are styled with JupyterLab's CSS variables (resolved by
    the browser, so a theme switch restyles a drawn chart), for axes and bars added later
    too; the browser tests check the colours drawn."""
    import bqplot as bq

    from mlops_nb.widgets.theme import CHART_CLASS, CHART_CSS, style_figure

    x, y = bq.LinearScale(), bq.LinearScale()
    fig = style_figure(bq.Figure(axes=[bq.Axis(scale=x, label="step")]))
    assert CHART_CLASS in fig._dom_classes and f".bqplot.{CHART_CLASS}" in CHART_CSS
    assert fig.title_style["fill"].startswith("var(--jp-ui-font-color1")
    assert fig.title_style["font-family"].startswith("var(--jp-ui-font-family")
    assert fig.axes[0].label_color.startswith("var(--jp-ui-font-color1")
    fig.axes = [*fig.axes, bq.Axis(scale=y, side="left")]
    fig.marks = [bq.Bars(x=[0, 1], y=[1, 2], scales={"x": x, "y": y})]
    assert fig.axes[1].tick_style["fill"].startswith("var(--jp-ui-font-color2")
    assert fig.marks[0].stroke.startswith("var(--jp-layout-color0")  # not bqplot's orange outline
    assert style_figure(fig)._dom_classes.count(CHART_CLASS) == 1
