"""In a real JupyterLab (and Notebook 7) and a real Chromium: a notebook runs, and a
person sees the live training chart and the runs table rendered as widgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import ARTIFACTS, browser_page, chromium_path, jupyterlab, set_theme, wait_for_kernel
from helpers import make_notebook

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]


@pytest.mark.parametrize("app, path", [("lab", "/lab/tree/demo.ipynb"), ("notebook", "/notebooks/demo.ipynb")])
def test_live_chart_and_runs_table_render(tmp_path: Path, app: str, path: str):
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    make_notebook(
        root / "demo.ipynb",
        [
            ("code", "%load_ext mlops_nb", []),
            (
                "code",
                "%%mlops track --name curve --no-autolog\n"
                "import time\nimport mlops_nb as mnb\n"
                "for step in range(40):\n"
                "    mnb.log_metric('loss', 1 / (step + 1), step=step)\n"
                "    time.sleep(0.05)",
                [],
            ),
            ("code", "%mlops runs", []),
            ("code", "print('ALL' + '-DONE')", []),
        ],
    )
    with jupyterlab(root, tmp_path, app) as lab, browser_page(tmp_path, f"widgets-{app}") as page:
        page.goto(lab.url(path))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('ALL-DONE')", timeout=120_000)

        # The live chart: a bqplot figure with a drawn line, titled after the run and how it ended.
        page.wait_for_selector(".bqplot svg .line", state="attached", timeout=30_000)
        assert page.locator(".bqplot:has-text('curve · finished')").count() == 1
        assert page.locator(".bqplot:has-text('(live)')").count() == 0

        # The runs table widget: the run is listed, with its metric.
        table = page.locator("table.mlops-nb-runs")
        table.wait_for(state="attached", timeout=30_000)
        text = table.inner_text()
        assert "curve" in text and "FINISHED" in text and "loss" in text

        assert page.locator(":text('Error displaying widget')").count() == 0
        page.locator(".bqplot").first.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".jp-Notebook").screenshot(path=str(ARTIFACTS / f"widgets-{app}.png"))


#: Resolves a CSS variable to the colour it gives (as getComputedStyle writes colours).
RESOLVE_JS = """(name) => { const d = document.createElement('div'); d.style.color = `var(${name})`;
  document.body.appendChild(d); const c = getComputedStyle(d).color; d.remove(); return c; }"""

#: The drawn polyline of a bqplot line, in the data's units: each vertex's pixel y is
#: turned back into a value through the vertical axis' own ticks (label -> position).
LINE_VALUES_JS = """(fig) => {
  const yAxis = [...fig.querySelectorAll('g.axis')].find(a => a.querySelector('.tick') &&
      new Set([...a.querySelectorAll('.tick')].map(t => t.getAttribute('transform').match(/,\\s*([-\\d.e]+)/)?.[1])).size > 1);
  const ticks = [...yAxis.querySelectorAll('.tick')].map(t => [Number(t.textContent),
      Number(t.getAttribute('transform').match(/,\\s*([-\\d.e]+)/)[1])]);
  const [[v0, p0], [v1, p1]] = [ticks[0], ticks[ticks.length - 1]];
  const d = [...fig.querySelectorAll('path.line')].find(p => !p.closest('[class*=legend]')).getAttribute('d');
  const ys = [...d.matchAll(/[ML]\\s*([-\\d.e]+)[ ,]([-\\d.e]+)/g)].map(m => Number(m[2]));
  return ys.map(y => v0 + (y - p0) * (v1 - v0) / (p1 - p0));
}"""


def test_live_chart_summary_line_and_theme_colours(tmp_path: Path):
    """A series is a line with the logged values; values logged once are in the cell's
    closing line, not on a chart; a finished chart says so; its text takes JupyterLab's
    colours in the light and the dark theme (not bqplot's orange)."""
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    make_notebook(
        root / "live.ipynb",
        [
            ("code", "%load_ext mlops_nb", []),
            (
                "code",
                "%%mlops track --name curve --no-autolog\n"
                "import mlops_nb as mnb\n"
                "for step in range(30):\n"
                "    mnb.log_metric('loss', 1 / (step + 1), step=step)\n"
                "mnb.log_metric('accuracy', 0.93)",
                [],
            ),
            (
                "code",
                "%%mlops track --name scores --no-autolog\nimport mlops_nb as mnb\nmnb.log_metric('accuracy', 0.9)\nmnb.log_metric('f1', 0.8)",
                [],
            ),
            ("code", "print('ALL' + '-DONE')", []),
        ],
    )
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "live-chart") as page:
        page.goto(lab.url("/lab/tree/live.ipynb"))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('ALL-DONE')", timeout=120_000)
        curve, scores = page.locator(".jp-Notebook .jp-Cell").nth(1), page.locator(".jp-Notebook .jp-Cell").nth(2)

        # The series: one line through the 30 logged values; the single value is no mark.
        fig = curve.locator(".bqplot.mlops-nb-chart")
        fig.locator("path.line").first.wait_for(state="attached", timeout=30_000)
        assert fig.locator("text.mainheading").text_content() == "curve · finished"
        assert fig.locator("text.legendtext").all_text_contents() == ["loss"]
        values = fig.evaluate(LINE_VALUES_JS)
        assert values == pytest.approx([1 / (s + 1) for s in range(30)], abs=0.01)
        # The closing line under it, and the single values.
        out = curve.locator(".jp-OutputArea").inner_text()
        assert "(curve) ended FINISHED in" in out and "see it: %mlops runs, or mlflow ui" in out
        assert "accuracy = 0.93 · loss = 0.03333" in out and "(live)" not in out
        # A cell that logged single values only: no chart, the values in its line.
        scores_out = scores.locator(".jp-OutputArea").inner_text()
        assert scores.locator(".bqplot").count() == 0
        assert "(scores) ended FINISHED in" in scores_out and "accuracy = 0.9 · f1 = 0.8" in scores_out

        ARTIFACTS.mkdir(exist_ok=True)
        for theme, light, name in (("JupyterLab Light", "true", "light"), ("JupyterLab Dark", "false", "dark")):
            set_theme(page, theme, light)
            text1, text2 = (
                page.evaluate(RESOLVE_JS, "--jp-ui-font-color1"),
                page.evaluate(RESOLVE_JS, "--jp-ui-font-color2"),
            )
            fill = "e => getComputedStyle(e).fill"
            assert fig.locator("text.mainheading").evaluate(fill) == text1, theme
            assert fig.locator("text.axislabel").first.evaluate(fill) == text1, theme
            assert fig.locator(".tick text").first.evaluate(fill) == text2, theme
            assert fig.locator("text.legendtext").first.evaluate(fill) == text1, theme
            family = "e => getComputedStyle(e).fontFamily"
            ui_font = page.evaluate(
                RESOLVE_JS.replace("style.color", "style.fontFamily").replace(").color", ").fontFamily"),
                "--jp-ui-font-family",
            )
            assert fig.locator("text.mainheading").evaluate(family) == ui_font, theme
            assert fig.locator(".tick text").first.evaluate(family) == ui_font, theme
            curve.scroll_into_view_if_needed()
            page.locator(".jp-Notebook .jp-Cell").nth(1).screenshot(path=str(ARTIFACTS / f"live-chart-{name}.png"))
            scores.screenshot(path=str(ARTIFACTS / f"cell-summary-{name}.png"))
        assert page.locator(":text('Error displaying widget')").count() == 0
