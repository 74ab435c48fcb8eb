"""`%mlops models` in a real JupyterLab and Chromium, in the light and dark themes: a
version is shown from the start and another can be chosen, the table stays inside the
cell, and an alias moved from outside the notebook (here: this test process, as the
panel, the CLI or another kernel would) is redrawn without touching the widget."""

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


REGISTER = (
    "%%mlops track --name fit-{alias} --no-chart\n"
    "import mlops_nb as mnb\n"
    "mnb.log_metric('test_accuracy', {acc})\n"
    "mnb.log(**{{'validation_balanced_accuracy_score': 0.8, 'training_precision_score_weighted': 0.9, 'fit_time_seconds': 1.5}})\n"
    "%mlops register model --name tiny --alias {alias}"
)


#: A deep folder: a long path and long metric names must not push the table past the cell.
NOTEBOOK = "experiments/breast-cancer-screening-2026/tumour-classifier-candidates/models.ipynb"


def _rows(page) -> dict[str, str]:
    """The versions table as drawn: version -> its aliases cell."""
    cells = page.locator("table.mlops-nb-versions tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].innerText, r.cells[1].innerText])"
    )
    return {v: a.strip() for v, a in cells}


def _chosen(select) -> str:
    return select.evaluate("s => s.options[s.selectedIndex].text").replace("\u00a0", " ")


def test_models_widget_version_details_alias_moves_and_themes(tmp_path: Path):
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    make_notebook(
        root / NOTEBOOK,
        [
            ("code", "%load_ext mlops_nb", []),
            (
                "code",
                "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression().fit([[0.0], [1.0]], [0, 1])",
                [],
            ),
            ("code", REGISTER.format(alias="champion", acc=0.81), []),
            ("code", REGISTER.format(alias="challenger", acc=0.87), []),
            ("code", "%mlops models tiny", []),
            ("code", "print('ALL' + '-DONE')", []),
        ],
    )
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "models-widget") as page:
        page.goto(lab.url(f"/lab/tree/{NOTEBOOK}"))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('ALL-DONE')", timeout=180_000)
        page.wait_for_selector("table.mlops-nb-versions tbody tr", timeout=30_000)
        cell = page.locator(".jp-Notebook .jp-Cell").nth(4)
        widget = cell.locator(".mlops-nb-models")
        detail = widget.locator(".mlops-nb-lineage")
        assert _rows(page) == {"v2": "@challenger", "v1": "@champion"}

        # A version is chosen from the start, and the choice says what it is for.
        version = widget.locator(".widget-dropdown:has-text('version') select")
        assert _chosen(version) == "v2 @challenger"
        assert "Choose a version to see its lineage" in widget.inner_text()
        assert "tiny v2" in widget.inner_text() and "0.87" in widget.inner_text()
        # Choosing another version shows its details: lineage from the registry, no JSON.
        version.select_option(label="v1\u00a0@champion")  # ipywidgets writes spaces as no-break spaces
        page.wait_for_selector(".mlops-nb-models :text('tiny v1')", timeout=30_000)
        shown = widget.inner_text()
        assert "source run" in shown and NOTEBOOK in shown and "test_accuracy = 0.81" in shown
        assert '{"test_accuracy"' not in shown and "metrics" in detail.evaluate("t => t.parentElement.innerText")
        assert 'mnb.load("models:/tiny@champion")' in shown

        # Nothing runs past the cell's right edge.
        area = cell.locator(".jp-OutputArea").bounding_box()
        for part in (widget, widget.locator("table.mlops-nb-versions"), detail):
            box = part.bounding_box()
            assert box["x"] + box["width"] <= area["x"] + area["width"] + 1, part

        ARTIFACTS.mkdir(exist_ok=True)
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(ARTIFACTS / "models-widget-light.png"))

        # An alias moved from outside: the widget redraws by itself (its periodic check).
        from mlops_nb.registry import set_alias
        from mlops_nb.store import get_client

        set_alias(get_client(resolve_config(root, environ={})), "tiny", "champion", "2", why="moved by the test")
        page.wait_for_function(
            "() => [...document.querySelectorAll('table.mlops-nb-versions tbody tr')]"
            ".some(r => r.cells[0].innerText === 'v2' && r.cells[1].innerText.includes('@champion'))",
            timeout=60_000,
        )
        rows = _rows(page)
        assert "@challenger" in rows["v2"] and "@champion" in rows["v2"] and rows["v1"] == ""
        page.wait_for_selector(".mlops-nb-models :text('moved away @champion')", timeout=30_000)
        assert "changed elsewhere" in widget.inner_text()
        assert _chosen(version) == "v1"  # still the one chosen

        for theme, light, name in (("JupyterLab Dark", "false", "dark"), ("JupyterLab Light", "true", "light")):
            set_theme(page, theme, light)
            for selector in (
                "table.mlops-nb-versions td",
                "table.mlops-nb-lineage td",
                ".mlops-nb-alias",
                ".mlops-nb-history li",
            ):
                ratio = widget.locator(selector).first.evaluate(CONTRAST_JS)
                assert ratio >= 4.5, f"{selector} in {theme}: contrast {ratio:.2f}"
            widget.screenshot(path=str(ARTIFACTS / f"models-widget-moved-{name}.png"))
        assert page.locator(":text('Error displaying widget')").count() == 0
