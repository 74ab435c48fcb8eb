"""The side panel in a real JupyterLab and a real Chromium when the project's tracking
server (a real `mlflow server`) goes away and comes back: the panel says the store cannot
be reached and that it retries by itself, and shows the models and jobs again when the
server answers, with nobody clicking Retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import ARTIFACTS, browser_page, chromium_path, jupyterlab
from services import mlflow_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
PANEL = "#mlops-nb-registry"
MODEL = f"{PANEL} [data-model='recovery-model']"
REGISTRY_ALERT = f"{PANEL} .jp-mlops-registry [role=alert]"
JOBS_ALERT = f"{PANEL} #mlops-nb-jobs [role=alert]"


def test_panel_says_the_store_is_down_and_comes_back_by_itself(tmp_path: Path):
    from mlflow import MlflowClient

    root = tmp_path / "proj"
    root.mkdir()
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts") as server:
        MlflowClient(server.uri).create_registered_model("recovery-model")
        (root / "pyproject.toml").write_text(f'[tool.mlops-nb]\ntracking_uri = "{server.uri}"\n')
        # No auto-refresh, so only the panel's own retries can bring the list back; the
        # first retry after 1 s instead of 5 s (the user's setting, as a person could set it).
        settings = tmp_path / "settings" / "mlops-nb"  # the JUPYTERLAB_SETTINGS_DIR jupyterlab() uses
        settings.mkdir(parents=True)
        (settings / "registry.jupyterlab-settings").write_text(json.dumps({"autoRefreshSeconds": 0, "retrySeconds": 1}))
        with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "store-recovery") as page:
            page.goto(lab.url("/lab"))
            page.wait_for_selector(PANEL_TAB, timeout=60_000)
            page.click(PANEL_TAB)
            page.wait_for_selector(MODEL, timeout=60_000)
            page.wait_for_selector(f"{PANEL} .jp-mlops-jobs-empty", timeout=30_000)

            server.stop()
            page.locator(f"{PANEL} .jp-Toolbar [title='Refresh the registry and jobs']").click()
            alert = page.locator(REGISTRY_ALERT)
            alert.wait_for(timeout=60_000)
            page.wait_for_selector(f"{REGISTRY_ALERT}:has-text('Retrying by itself')", timeout=30_000)
            text = alert.inner_text()
            assert "The model store cannot be reached" in text
            assert f"cannot reach the tracking server at {server.uri}" in text
            assert "show again as soon as the store answers" in text
            assert alert.locator("button", has_text="Retry").count() == 1
            assert page.locator(MODEL).count() == 0
            jobs_alert = page.locator(JOBS_ALERT).first
            jobs_alert.wait_for(timeout=30_000)
            assert "The job store cannot be reached" in jobs_alert.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "store-unreachable.png"))

            server.start()
            page.wait_for_selector(MODEL, timeout=90_000)
            page.wait_for_selector(REGISTRY_ALERT, state="detached", timeout=10_000)
            page.wait_for_selector(JOBS_ALERT, state="detached", timeout=90_000)
            assert page.locator(f"{PANEL} .jp-mlops-jobs-empty").count() == 1
