"""`%mlops runs` and Compare in a real JupyterLab and Chromium, in the light and dark
themes: runs are ticked in the table, and Compare draws each metric's bars with the
stored values on its own scale, says "missing" where a run lacks a metric, shows the
params that differ and overlays the step curves of a series."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import ARTIFACTS, CONTRAST_JS, browser_page, chromium_path, jupyterlab, set_theme, wait_for_kernel
from helpers import make_notebook

from mlops_nb.config import resolve_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

#: name -> (accuracy, log_loss, fit_time_s or None, lr, loss over steps)
RUNS = {
    "baseline": (0.87, 0.41, 12.0, "0.1", [0.9, 0.7, 0.6, 0.55, 0.5]),
    "tuned": (0.93, 0.22, None, "0.01", [0.8, 0.5, 0.35, 0.3, 0.25]),
    "other": (0.5, 0.9, 3.0, "1.0", [1.0]),
}


def _make_runs(root: Path) -> dict[str, str]:
    from mlflow.entities import Metric, Param

    from mlops_nb.store import get_client

    client = get_client(resolve_config(root, environ={}))
    eid = client.create_experiment("compare-demo")
    ids = {}
    for i, (name, (acc, log_loss, fit_time, lr, losses)) in enumerate(RUNS.items()):
        run = client.create_run(eid, run_name=name, start_time=1_700_000_000_000 + i * 1000)
        metrics = [Metric("accuracy", acc, 0, 0), Metric("log_loss", log_loss, 0, 0)]
        metrics += [Metric("loss", v, 1000 + s, s) for s, v in enumerate(losses)]
        if fit_time is not None:
            metrics.append(Metric("fit_time_s", fit_time, 0, 0))
        params = [Param("lr", lr), Param("seed", "0"), Param("max_depth", "8")]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id
    return ids


def _check_runs_table(page, ids: dict[str, str]) -> None:
    """Every run is listed, and its checkbox sits on its row."""
    rows = page.locator("table.mlops-nb-runs tbody tr")
    boxes = page.locator(".mlops-nb-pick input[type=checkbox]")
    assert rows.count() == len(RUNS) == boxes.count()
    for i in range(rows.count()):
        row, box = rows.nth(i).bounding_box(), boxes.nth(i).bounding_box()
        middle = box["y"] + box["height"] / 2
        assert middle == pytest.approx(row["y"] + row["height"] / 2, abs=3), f"checkbox {i} is off its row"
        assert row["height"] < 40  # one line: nothing wraps
    head = page.locator("table.mlops-nb-runs thead").inner_text()
    assert head.index("accuracy") < head.index("fit_time_s")


def _check_compare(page, ids: dict[str, str]) -> None:
    """Bars drawn with the stored values, each metric on its own scale; missing said."""
    view = page.locator("table.mlops-nb-metrics")
    for metric, col in (("accuracy", 0), ("log_loss", 1)):
        values = {n: RUNS[n][col] for n in ("baseline", "tuned")}
        top = max(values.values())
        for name, value in values.items():
            cell = view.locator(f"td[data-run-id='{ids[name]}'][data-metric='{metric}']")
            assert float(cell.get_attribute("data-value")) == value
            assert cell.locator(".value").inner_text() == f"{value:.4g}"
            bar, track = cell.locator(".bar").bounding_box(), cell.locator(".track").bounding_box()
            assert bar["height"] > 4 and bar["width"] == pytest.approx(track["width"] * value / top, abs=2)
    missing = view.locator(f"td[data-run-id='{ids['tuned']}'][data-metric='fit_time_s']")
    assert missing.inner_text() == "missing" and missing.locator(".bar").count() == 0
    assert view.locator(f"td.best[data-run-id='{ids['tuned']}'][data-metric='log_loss']").count() == 1
    # Params: only lr differs; it is highlighted, the others are folded away.
    differs = page.locator("table.mlops-nb-params tr.differs")
    assert differs.count() == 1 and "lr" in differs.inner_text()
    assert "0.1" in differs.inner_text() and "0.01" in differs.inner_text()
    assert "2 param(s) the same in every run" in page.locator(".mlops-nb-compare summary").inner_text()
    # The series: one chart for loss, a drawn line per run.
    chart = page.locator(".bqplot.mlops-nb-chart:has-text('loss')")
    chart.wait_for(timeout=30_000)
    # a line of 5 vertices (5 steps) per run; the legend's small icons are path.line too
    drawn = chart.evaluate("c => [...c.querySelectorAll('path.line')].map(p => p.getAttribute('d') || '')")
    assert len([d for d in drawn if d.startswith("M") and d.count("L") == 4]) == 2, drawn
    ticks = " ".join(chart.locator(".axis text").all_text_contents())
    assert "step" in ticks and ("0.8" in ticks or "0.9" in ticks), ticks  # a real y range, not a collapsed 0.00


def test_runs_table_and_compare_in_both_themes(tmp_path: Path):
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    ids = _make_runs(root)
    make_notebook(
        root / "runs.ipynb",
        [("code", "%load_ext mlops_nb", []), ("code", "%mlops runs", []), ("code", "print('ALL' + '-DONE')", [])],
    )
    errors: list[str] = []
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "compare") as page:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(lab.url("/lab/tree/runs.ipynb"))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('ALL-DONE')", timeout=120_000)
        page.wait_for_selector("table.mlops-nb-runs tbody tr", timeout=30_000)
        _check_runs_table(page, ids)
        widget = page.locator(".jp-OutputArea-output:has(table.mlops-nb-runs)")
        ARTIFACTS.mkdir(exist_ok=True)
        widget.screenshot(path=str(ARTIFACTS / "runs-table-light.png"))

        names = [t.strip() for t in page.locator("table.mlops-nb-runs tbody tr td:nth-child(2)").all_inner_texts()]
        for name in ("baseline", "tuned"):
            page.locator(".mlops-nb-pick input[type=checkbox]").nth(names.index(name)).check()
        page.locator("button:has-text('compare 2 selected')").click()
        page.wait_for_selector("table.mlops-nb-metrics", timeout=30_000)
        _check_compare(page, ids)
        _check_runs_table(page, ids)  # the compare view's styles leave the table's rows as they were
        compare = page.locator(".widget-vbox.mlops-nb-compare")
        compare.scroll_into_view_if_needed()
        compare.screenshot(path=str(ARTIFACTS / "compare-light.png"))

        for theme, light in (("JupyterLab Dark", "false"), ("JupyterLab Light", "true")):
            set_theme(page, theme, light)
            for selector in ("table.mlops-nb-metrics td .value", "table.mlops-nb-params td", "table.mlops-nb-runs td"):
                ratio = page.locator(selector).first.evaluate(CONTRAST_JS)
                assert ratio >= 4.5, f"{selector} in {theme}: contrast {ratio:.2f}"
            title = page.locator(".bqplot.mlops-nb-chart text.mainheading").first
            assert title.evaluate("e => getComputedStyle(e).fill") != "rgb(255, 165, 0)"  # not bqplot's orange
            if light == "false":
                page.locator(".widget-hbox:has(table.mlops-nb-runs)").screenshot(
                    path=str(ARTIFACTS / "runs-table-dark.png")
                )
                compare.screenshot(path=str(ARTIFACTS / "compare-dark.png"))

        assert page.locator(":text('Error displaying widget')").count() == 0
    assert not [e for e in errors if "Error setting state" in e or "Cannot set properties" in e], errors
