"""The registry side panel in a real JupyterLab and a real Chromium, over a real store:
a person finds a model, moves an alias through the dialog, is told why a promotion is
refused, removes an alias, and opens the notebook (or its snapshot) behind a version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser import ARTIFACTS, CONTRAST_JS, SERVER_EXTENSION_OFF, browser_page, chromium_path, jupyterlab, set_theme
from helpers import make_notebook

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
PANEL = "#mlops-nb-registry"


def _train(root: Path, notebook: str, versions: list[tuple[str, float, str | None]]) -> None:
    """Register real scikit-learn versions from runs of ``root/notebook`` (captured)."""
    from sklearn.linear_model import LogisticRegression

    path = make_notebook(
        root / notebook, [("code", "%load_ext mlops_nb", []), ("code", f"print('trained in {notebook}')", [])]
    )
    tracker = Tracker(notebook=NotebookLocation(path, "test"), config=resolve_config(root, environ={}))
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for name, accuracy, alias in versions:
        handle = tracker.start_cell_run(f"fit-{accuracy}", autolog=False)
        tracker.log_params({"C": "1.0"})
        tracker.log_metric("accuracy", accuracy)
        tracker.flush()
        tracker.register_model(model, name, alias, input_example=np.array([[0.0, 1.0]]))
        tracker.end_run(handle)
    tracker.close()


@pytest.fixture
def seeded_root(tmp_path: Path):
    """'cancer' v1 @champion (0.90), v2 @challenger (0.85), v3 (0.95) from train.ipynb;
    'moved' v1 from a notebook deleted since; 30 more models, so the list has two pages."""
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    _train(root, "train.ipynb", [("cancer", 0.90, "champion"), ("cancer", 0.85, "challenger"), ("cancer", 0.95, None)])
    _train(root, "old/gone.ipynb", [("moved", 0.7, None)])
    (root / "old" / "gone.ipynb").unlink()
    from mlops_nb.store import get_client

    client = get_client(resolve_config(root, environ={}))
    for i in range(30):
        client.create_registered_model(f"zz-filler-{i:02d}")
    return root, client


def _show_panel(page, lab) -> None:
    """Open JupyterLab and click the registry panel's tab in the left sidebar."""
    page.goto(lab.url("/lab"))
    page.wait_for_selector(PANEL_TAB, timeout=60_000)
    page.click(PANEL_TAB)


def _open_panel(page, lab) -> None:
    _show_panel(page, lab)
    page.wait_for_selector(f"{PANEL} .jp-mlops-model", timeout=30_000)


def _wait_count(page, selector: str, count: int) -> None:
    page.wait_for_function(
        "([s, n]) => document.querySelectorAll(s).length === n", arg=[selector, count], timeout=10_000
    )


def _dialog_button(page, label: str) -> None:
    dialog = page.locator(".jp-Dialog").element_handle(timeout=10_000)
    page.locator(".jp-Dialog button", has_text=label).click()
    dialog.wait_for_element_state("hidden", timeout=10_000)


def test_panel_search_alias_moves_promotion_guard_and_source_notebook(tmp_path: Path, seeded_root):
    root, client = seeded_root
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "registry-panel") as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.base)
        _open_panel(page, lab)
        panel = page.locator(PANEL)

        # Paging: 32 models, 25 a page.
        assert panel.locator(".jp-mlops-model").count() == 25
        panel.locator("button", has_text="Next").click()
        _wait_count(page, f"{PANEL} .jp-mlops-model", 7)
        assert "page 2" in panel.locator(".jp-mlops-pager").inner_text()
        assert panel.locator("[data-model='zz-filler-29']").count() == 1

        # Search by part of the name, case-insensitively.
        panel.locator("input[aria-label='Search models by name']").fill("CANC")
        _wait_count(page, f"{PANEL} .jp-mlops-model", 1)
        cancer = panel.locator("[data-model='cancer']")
        assert "@champion:v1" in cancer.inner_text() and "@challenger:v2" in cancer.inner_text()

        # Expand: versions newest first, alias badges, key metric.
        cancer.locator(".jp-mlops-model-head").click()
        page.wait_for_selector(f"{PANEL} [data-version='3']")
        assert [v.get_attribute("data-version") for v in cancer.locator(".jp-mlops-version").all()] == ["3", "2", "1"]
        v3 = cancer.locator("[data-version='3']")
        assert "accuracy 0.9500" in v3.inner_text()
        assert cancer.locator("[data-version='1'] [data-alias='champion']").count() == 1

        # Move @champion from v1 to v3 through the dialog, after confirming.
        v3.locator("[title='Set or move an alias']").click()
        page.locator(".jp-Dialog input").fill("champion")
        _dialog_button(page, "Next")
        confirm = page.locator(".jp-Dialog")
        assert "points at v1" in confirm.inner_text() and "Move it to v3" in confirm.inner_text()
        _dialog_button(page, "Move alias")
        page.wait_for_selector(f"{PANEL} [data-version='3'] [data-alias='champion']", timeout=10_000)
        assert str(client.get_model_version_by_alias("cancer", "champion").version) == "3"
        assert cancer.locator("[data-version='1'] [data-alias='champion']").count() == 0

        # The guard refuses @challenger (v2, 0.85) against @champion (v3, 0.95): shown, nothing moves.
        cancer.locator("[data-version='2'] [title='Promote if better']").click()
        form = page.locator(".jp-Dialog form.jp-mlops-promotion-form")
        assert form.locator("select[name=from]").input_value() == "challenger"
        form.locator("select[name=metric]").select_option("accuracy")
        _dialog_button(page, "Promote if better")
        refusal = page.locator(".jp-Dialog")
        refusal.wait_for()
        text = refusal.inner_text()
        assert "Promotion refused" in text and "0.85" in text and "0.95" in text
        _dialog_button(page, "Close")
        assert str(client.get_model_version_by_alias("cancer", "champion").version) == "3"

        # Remove @challenger from its badge, after confirming.
        cancer.locator("[data-version='2'] [aria-label='Remove @challenger']").click()
        assert "Remove @challenger from cancer v2?" in page.locator(".jp-Dialog").inner_text()
        _dialog_button(page, "Remove alias")
        page.wait_for_selector(
            f"{PANEL} [data-version='2'] [data-alias='challenger']", state="detached", timeout=10_000
        )
        assert "challenger" not in client.get_registered_model("cancer").aliases

        # Copy the load snippet of the champion.
        v3.locator("[title='Copy load snippet']").click()
        page.wait_for_selector(".Toastify__toast:has-text('models:/cancer@champion')", timeout=10_000)
        assert 'mnb.load("models:/cancer@champion")' in page.evaluate("navigator.clipboard.readText()")

        # Detail tab: lineage and the alias history written above.
        v3.locator(".jp-mlops-version-label").click()
        detail = page.locator(".jp-mlops-detail")
        detail.wait_for(timeout=10_000)
        page.wait_for_selector(".jp-mlops-detail:has-text('Alias history')")
        assert "train.ipynb" in detail.inner_text()
        assert "set @champion v1 → v3" in detail.inner_text() or "@champion v1 → v3" in detail.inner_text()

        # Open source notebook: the file under the server root opens as a notebook.
        v3.locator("[title='Open source notebook']").click()
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell:has-text('trained in train.ipynb')", timeout=30_000)
        assert page.evaluate("window.jupyterapp.shell.currentWidget.context.path") == "train.ipynb"

        # A version whose notebook is gone from the workspace opens its snapshot instead.
        panel.locator("input[aria-label='Search models by name']").fill("moved")
        page.wait_for_selector(f"{PANEL} [data-model='moved']", timeout=10_000)
        panel.locator("[data-model='moved'] .jp-mlops-model-head").click()
        panel.locator("[data-model='moved'] [data-version='1'] [title='Open source notebook']").click()
        frame = page.frame_locator(".jp-mlops-snapshot iframe")
        frame.locator("text=trained in old/gone.ipynb").first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "registry-panel.png"))

        # Readable in both themes: text against its background keeps a 4.5:1 contrast.
        panel.locator("input[aria-label='Search models by name']").fill("cancer")
        page.wait_for_selector(
            f"{PANEL} [data-model='cancer'] [data-version='3'] [data-alias='champion']", timeout=10_000
        )

        # An out-of-band change shows after the toolbar's refresh (auto-refresh is 30 s here).
        client.create_registered_model("cancer-late")
        page.locator(f"{PANEL} .jp-Toolbar [title='Refresh the registry and jobs']").click()
        page.wait_for_selector(f"{PANEL} [data-model='cancer-late']", timeout=10_000)
        for theme, light in (("JupyterLab Light", "true"), ("JupyterLab Dark", "false")):
            set_theme(page, theme, light)
            for selector in (
                ".jp-mlops-model-name",
                ".jp-mlops-badge",
                ".jp-mlops-metric b",
                ".jp-mlops-metric",
                ".jp-mlops-version-label",
            ):
                ratio = page.locator(f"{PANEL} {selector}").first.evaluate(CONTRAST_JS)
                assert ratio >= 4.5, f"{selector} in {theme}: contrast {ratio:.2f}"
            page.screenshot(path=str(ARTIFACTS / f"registry-panel-{light}.png"))


def test_panel_empty_state_auto_refresh_and_missing_server_extension(tmp_path: Path):
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    from mlops_nb.store import get_client

    client = get_client(resolve_config(root, environ={}))
    user_settings = tmp_path / "settings" / "mlops-nb"  # the JUPYTERLAB_SETTINGS_DIR jupyterlab() uses
    user_settings.mkdir(parents=True)
    (user_settings / "registry.jupyterlab-settings").write_text(json.dumps({"autoRefreshSeconds": 1}))
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "registry-empty") as page:
        _show_panel(page, lab)
        empty = page.locator(f"{PANEL} .jp-mlops-empty")
        empty.wait_for(timeout=30_000)
        assert "No registered models yet" in empty.inner_text()
        assert "%mlops register" in empty.inner_text()

        # A model registered elsewhere appears by itself (auto-refresh set to 1 s here).
        client.create_registered_model("first-model")
        page.wait_for_selector(f"{PANEL} [data-model='first-model']", timeout=15_000)
        assert page.locator(f"{PANEL} .jp-mlops-empty").count() == 0

    # The same front end with the server extension switched off says what to do.
    second = tmp_path / "second"
    with jupyterlab(root, second, config=SERVER_EXTENSION_OFF) as lab, browser_page(second, "registry-missing") as page:
        _show_panel(page, lab)
        alert = page.locator(f"{PANEL} .jp-mlops-registry [role=alert]")
        alert.wait_for(timeout=30_000)
        assert "not available" in alert.inner_text()
        assert "jupyter server extension list" in alert.inner_text()


def test_panel_store_unreachable(tmp_path: Path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.mlops-nb]\ntracking_uri = "http://127.0.0.1:9"\n')
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "registry-unreachable") as page:
        _show_panel(page, lab)
        alert = page.locator(f"{PANEL} .jp-mlops-registry [role=alert]")
        alert.wait_for(timeout=60_000)
        assert "cannot be reached" in alert.inner_text()
        assert "127.0.0.1:9" in alert.inner_text()
