"""In a real JupyterLab (and Notebook 7) and a real Chromium: a notebook runs, and a
person sees the live training chart and the runs table rendered as widgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import ARTIFACTS, browser_page, chromium_path, jupyterlab, wait_for_kernel
from conftest import make_notebook

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

        # The live chart: a bqplot figure with a drawn line, titled after the run.
        page.wait_for_selector(".bqplot svg .line", state="attached", timeout=30_000)
        assert page.locator(".bqplot:has-text('curve (live)')").count() == 1

        # The runs table widget: the run is listed, with its metric.
        table = page.locator("table.mlops-nb-runs")
        table.wait_for(state="attached", timeout=30_000)
        text = table.inner_text()
        assert "curve" in text and "FINISHED" in text and "loss" in text

        assert page.locator(":text('Error displaying widget')").count() == 0
        page.locator(".bqplot").first.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".jp-Notebook").screenshot(path=str(ARTIFACTS / f"widgets-{app}.png"))
