"""`%mlops monitor` as a person sees it, in a real JupyterLab and Chromium over a real
store and a real request log: a served version whose traffic moved on one feature gets
the "drift" verdict and its reason; the features table lists the drifted feature first,
with the reference's and the window's histograms side by side as SVG bars whose rows
and heights are the ones the monitor run stored in its monitor.json; after three runs the
chart of past runs draws a point a run for the drifted share and the accuracy. Both
themes read well, and no widget fails to display."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import ARTIFACTS, CONTRAST_JS, browser_page, chromium_path, jupyterlab, set_theme, wait_for_kernel
from helpers import make_notebook, new_project
from sklearn.linear_model import LogisticRegression

from mlops_nb.config import resolve_config
from mlops_nb.monitoring.monitor import monitor_history
from mlops_nb.monitoring.profile import build_profile
from mlops_nb.monitoring.profiles import save_profile
from mlops_nb.provenance import NotebookLocation
from mlops_nb.serving.requestlog import RequestLog, log_url
from mlops_nb.store import get_client
from mlops_nb.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

MODEL = "tumour-classifier"
COLUMNS = ["radius", "texture"]
RUNS = 3  # monitor cells in the notebook: the last one's chart has a point a run
THEMES = (("JupyterLab Light", "light", "true"), ("JupyterLab Dark", "dark", "false"))
#: The histogram SVG the widget draws (MonitorView._feature_tr): its height less the label line.
BARS_HEIGHT = 64 - 14


def _data(rng: np.random.Generator, rows: int, texture_mean: float) -> pd.DataFrame:
    return pd.DataFrame({"radius": rng.normal(14.0, 3.0, rows), "texture": rng.normal(texture_mean, 4.0, rows)})


def _served_version(root: Path) -> str:
    """v1 @champion trained on 400 rows, its reference profile stored (what
    `%mlops register --reference X` stores), and 30 answered requests of 10 rows whose
    texture moved by 3 standard deviations, 20 of them with their true labels fed back."""
    rng = np.random.default_rng(5)
    X = _data(rng, 400, 19.0)
    y = (X["radius"] > 14.0).astype(int)
    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(root / "train.ipynb", "test"), config=config)
    try:
        handle = tracker.start_cell_run("fit", autolog=False)
        tracker.log_metric("accuracy", 0.95)
        tracker.flush()
        model = LogisticRegression().fit(X, y)
        registered = tracker.register_model(model, MODEL, "champion", input_example=X[:2])
        tracker.end_run(handle)
        save_profile(tracker.client, MODEL, registered.version, build_profile(X, model.predict(X)), config=config)
    finally:
        tracker.close()
    now = time.time()
    with RequestLog(log_url(config)) as log:
        for i in range(30):
            window = _data(rng, 10, 31.0)
            predictions = model.predict(window).tolist()
            body = {"dataframe_split": {"columns": COLUMNS, "data": window.round(6).values.tolist()}}
            log.record(
                request_id=f"r{i:03d}",
                model=MODEL,
                version=registered.version,
                status=200,
                latency_ms=3.0,
                inputs=json.dumps(body),
                outputs=json.dumps({"predictions": predictions}),
                time=now - 300 + i,
            )
            if i % 3:  # labels arrive for some requests only
                log.feedback(f"r{i:03d}", (window["radius"] > 14.0).astype(int).tolist(), time=now - 200 + i)
        assert log.flush(timeout=60)
    return registered.version


#: Each histogram bar of a feature's row as drawn: its side, rows, height attribute and box.
BARS_JS = """row => [...row.querySelectorAll('svg.mlops-nb-hist rect')].map(r => {
  const b = r.getBoundingClientRect();
  return {side: r.getAttribute('class'), count: Number(r.dataset.count), height: Number(r.getAttribute('height')),
          drawn: b.height, left: b.left, right: b.right};
})"""
#: The box of each side's group of bars.
SIDES_JS = """row => Object.fromEntries(['reference', 'current'].map(s => {
  const b = row.querySelector(`svg.mlops-nb-hist g.${s}`).getBoundingClientRect();
  return [s, {left: b.left, right: b.right, top: b.top, bottom: b.bottom}];
}))"""
#: Each line of the chart as drawn: whether its path is there, and its points' values read
#: back through the vertical axis' own ticks (label -> pixel position).
DOTS_JS = """fig => {
  const yAxis = [...fig.querySelectorAll('g.axis')].find(a => a.querySelector('.tick') &&
      new Set([...a.querySelectorAll('.tick')].map(t => t.getAttribute('transform').match(/,\\s*([-\\d.e]+)/)?.[1])).size > 1);
  const ticks = [...yAxis.querySelectorAll('.tick')].map(t => [parseFloat(t.textContent) / 100,
      Number(t.getAttribute('transform').match(/,\\s*([-\\d.e]+)/)[1])]);
  const [[v0, p0], [v1, p1]] = [ticks[0], ticks[ticks.length - 1]];
  const at = d => d.getAttribute('transform').match(/\\(\\s*([-\\d.e]+)[ ,]+([-\\d.e]+)/).slice(1).map(Number);
  return [...fig.querySelectorAll('g.curve')].map(c => ({
    line: c.querySelectorAll('path.line').length,
    xs: [...c.querySelectorAll('path.dot')].map(d => at(d)[0]),
    values: [...c.querySelectorAll('path.dot')].map(d => v0 + (at(d)[1] - p0) * (v1 - v0) / (p1 - p0)),
  }));
}"""
#: Resolves a CSS variable to the colour it gives (as getComputedStyle writes colours).
RESOLVE_JS = """(name) => { const d = document.createElement('div'); d.style.color = `var(${name})`;
  document.body.appendChild(d); const c = getComputedStyle(d).color; d.remove(); return c; }"""


def _check_histograms(row, stored: dict) -> None:
    """The row's bars carry the stored run's counts on both sides, at the heights of their
    shares on one scale, drawn side by side: the reference left, the window right."""
    bars = row.evaluate(BARS_JS)
    ref_hist, cur_hist = stored["reference_hist"]["counts"], stored["current_hist"]["counts"]
    assert [b["count"] for b in bars if b["side"] == "reference"] == ref_hist
    assert [b["count"] for b in bars if b["side"] == "current"] == cur_hist
    totals = {"reference": sum(ref_hist), "current": sum(cur_hist)}
    top = max(max(ref_hist) / totals["reference"], max(cur_hist) / totals["current"])
    for bar in bars:
        expected = BARS_HEIGHT * bar["count"] / totals[bar["side"]] / top
        if bar["count"] > 0:
            expected = max(expected, 1.0)  # a bin with rows is always at least a pixel tall
        assert bar["height"] == pytest.approx(expected, abs=0.006), bar
        assert bar["drawn"] == pytest.approx(bar["height"], abs=0.01), bar  # unscaled: the SVG is drawn at its size
    sides = row.evaluate(SIDES_JS)
    ref, cur = sides["reference"], sides["current"]
    assert ref["right"] < cur["left"], sides  # side by side, not overlapping
    assert ref["top"] < cur["bottom"] and cur["top"] < ref["bottom"], sides  # on one line
    assert max(b["right"] for b in bars if b["side"] == "reference") < min(
        b["left"] for b in bars if b["side"] == "current"
    )


def _readable(locator, what: str, theme: str) -> None:
    ratio = locator.evaluate(CONTRAST_JS, {"blend": True})
    assert ratio >= 4.5, f"{what} in {theme}: contrast {ratio:.2f}"


def test_monitor_widget_shows_the_verdict_histograms_and_past_runs(tmp_path: Path):
    root = new_project(tmp_path)
    version = _served_version(root)
    make_notebook(
        root / "watch.ipynb",
        [
            ("code", "%load_ext mlops_nb", []),
            *[("code", f"%mlops monitor models:/{MODEL}@champion --since 1h", [])] * RUNS,
            ("code", "print('ALL' + '-DONE')", []),
        ],
    )
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "monitor-widget") as page:
        page.goto(lab.url("/lab/tree/watch.ipynb"))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('ALL-DONE')", timeout=120_000)
        cells = page.locator(".jp-Notebook .jp-Cell")
        first, last = cells.nth(1).locator(".mlops-nb-monitor-view"), cells.nth(RUNS).locator(".mlops-nb-monitor-view")
        last.locator(".bqplot.mlops-nb-chart").wait_for(timeout=30_000)

        # The runs the cells logged, oldest first, as the store has them.
        client = get_client(resolve_config(root, environ={}))
        history = monitor_history(client, MODEL)[::-1]
        assert [h["verdict"] for h in history] == ["drift"] * RUNS and {h["alias"] for h in history} == {"champion"}

        # The verdict, and why, of the first cell; the run it names is the first one logged.
        assert first.locator(".mlops-nb-verdict").inner_text() == "drift"
        assert f"{MODEL} v{version} @champion" in first.locator("p").first.inner_text()
        reason = first.locator(".mlops-nb-reason").inner_text()
        assert reason.startswith("300 rows from ") and ": 1 of 2 features drifted (texture)" in reason, reason
        assert "on 200 labelled rows against 0.950 at training" in reason, reason
        summary = first.locator(".mlops-nb-monitor").first.inner_text()
        assert "300 rows from 30 requests" in summary, summary
        assert "performance: accuracy 0.98 on 200 labelled rows (0.95 at training)" in summary, summary
        named = re.search(r"monitor run ([0-9a-f]{32}) · report runs:/\1/report.html", summary)
        assert named and named.group(1) == history[0]["run_id"], summary
        run_id = named.group(1)

        # The features table: the drifted one first (the profile lists it second), then the
        # stable one, then the prediction; each with the stored run's histograms.
        stored = json.loads(Path(client.download_artifacts(run_id, "monitor.json", str(tmp_path))).read_text())
        assert stored["performance"]["rows"] == 200 and stored["performance"]["value"] == pytest.approx(0.98)
        by_name = {f["feature"]: f for f in stored["drift"]["features"]}
        assert list(by_name) == COLUMNS and by_name["texture"]["drifted"] and not by_name["radius"]["drifted"]
        rows = first.locator("table.mlops-nb-features tbody tr")
        assert rows.evaluate_all("rs => rs.map(r => [r.dataset.feature, r.className])") == [
            ["texture", "mlops-nb-drifted"],
            ["radius", "mlops-nb-stable"],
            ["(prediction)", "mlops-nb-stable"],
        ]
        assert rows.nth(0).locator("td").first.inner_text() == "texture ⚠"
        for n, stored_row in enumerate((by_name["texture"], by_name["radius"], stored["drift"]["prediction"])):
            _check_histograms(rows.nth(n), stored_row)

        # Past runs: the last cell's chart draws a point a run for both series; its table lists them.
        chart = last.locator(".bqplot.mlops-nb-chart")
        assert chart.locator("text.mainheading").text_content() == f"past monitor runs of {MODEL} @champion"
        keys = last.locator(".mlops-nb-legend p > span").all_text_contents()
        assert keys == ["● drifted share", "● accuracy"], keys
        page.wait_for_function(
            f"el => el.querySelectorAll('.dot').length >= {2 * RUNS}", arg=chart.element_handle(), timeout=30_000
        )
        drawn = chart.evaluate(DOTS_JS)  # the series in the legend's order
        assert [d["line"] for d in drawn] == [1, 1], drawn
        for series, key in zip(drawn, ("share", "accuracy")):
            assert series["values"] == pytest.approx([h[key] for h in history], abs=0.01), (key, drawn)
            assert series["xs"] == sorted(series["xs"]), drawn  # oldest run leftmost
        past = last.locator("table.mlops-nb-history tbody tr")
        assert past.count() == RUNS
        assert [c.split("\t")[2] for c in past.all_inner_texts()] == ["drift"] * RUNS
        assert page.locator(":text('Error displaying widget')").count() == 0

        # Nothing runs past the cell's right edge.
        area = cells.nth(1).locator(".jp-OutputArea").bounding_box()
        for part in (first, first.locator("table.mlops-nb-features"), first.locator("svg.mlops-nb-hist").first):
            box = part.bounding_box()
            assert box["x"] + box["width"] <= area["x"] + area["width"] + 1, part

        ARTIFACTS.mkdir(exist_ok=True)
        page.set_viewport_size({"width": 1400, "height": 1800})  # each widget whole in its screenshot
        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            for view, parts in (
                (first, (".mlops-nb-reason", ".mlops-nb-muted", "table.mlops-nb-features th",
                         "tr.mlops-nb-drifted td", "tr.mlops-nb-stable td", "svg.mlops-nb-hist text")),
                (last, (".mlops-nb-legend p", "table.mlops-nb-history td")),
            ):  # fmt: skip
                for part in parts:
                    _readable(view.locator(part).first, part, theme)
            text = page.evaluate(RESOLVE_JS, "--jp-ui-font-color1")
            assert chart.locator("text.mainheading").evaluate("e => getComputedStyle(e).fill") == text, theme
            first.scroll_into_view_if_needed()
            first.screenshot(path=str(ARTIFACTS / f"monitor-widget-{slug}.png"))
            last.scroll_into_view_if_needed()
            last.screenshot(path=str(ARTIFACTS / f"monitor-history-{slug}.png"))
