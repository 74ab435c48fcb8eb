"""Model servers as a person sees them, in a real JupyterLab and Chromium, over a real
store and a real server: the panel's Deployments section shows the server's model, the
alias it follows and the version it serves (linked to the version's details), its
request rate, latency and errors, follows an alias move to the new version with its
swap, stops it, and then says how to start one; and ``%mlops serve`` in a notebook
shows its status widget, readable in both themes."""

from __future__ import annotations

import json
import re
import urllib.request

import psutil
import pytest
from browser import ARTIFACTS, CONTRAST_JS, browser_page, chromium_path, jupyterlab, set_theme, wait_for_kernel
from helpers import make_notebook, new_project
from services import free_port

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.registry import set_alias
from mlops_nb.serving.announce import list_servers, start_server, stop_server
from mlops_nb.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
PANEL = "#mlops-nb-registry"
SECTION = "#mlops-nb-deployments"
THEMES = (("JupyterLab Light", "light", "true"), ("JupyterLab Dark", "dark", "false"))
MODEL = "tumour-classifier"
REQUESTS = 5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A project with 'tumour-classifier' v1 @champion and v2 (a DataFrame input example
    of four named columns), and JupyterLab on it; every server of the project is stopped
    at the end."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("deployments")
    root = new_project(tmp)
    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(root / "train.ipynb", "test"), config=config)
    X = pd.DataFrame({"radius": [10.0, 20.0, 12.0, 22.0], "texture": [1.0, 3.0, 1.5, 2.5]})
    for c, alias in ((1.0, "champion"), (0.5, None)):
        handle = tracker.start_cell_run(f"fit-{c}", autolog=False)
        model = LogisticRegression(C=c).fit(X, [0, 1, 0, 1])
        tracker.register_model(model, MODEL, alias, input_example=X.iloc[:2])
        tracker.end_run(handle)
    tracker.close()
    make_notebook(
        root / "serve.ipynb",
        [
            ("code", "%load_ext mlops_nb", []),
            ("code", f"%mlops serve models:/{MODEL}@champion", []),
            ("code", "print('SERVE-' + 'SHOWN')", []),
        ],
    )
    with jupyterlab(root, tmp) as server:
        try:
            yield config, tracker.client, server, tmp
        finally:
            for running in list_servers(config):
                stop_server(config, running["id"])


def _predict(url: str, rows: list[list[float]]) -> None:
    body = json.dumps({"dataframe_split": {"columns": ["radius", "texture"], "data": rows}}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _readable(locator, what: str, theme: str) -> None:
    ratio = locator.evaluate(CONTRAST_JS, {"blend": True})
    assert ratio >= 4.5, f"{what} in {theme}: contrast {ratio:.2f}"


def _check_row(row, theme: str) -> None:
    """What a server's row says, readable: model, alias, version, address, numbers."""
    assert row.locator(".jp-mlops-deployment-model").inner_text() == MODEL
    assert row.locator("[data-alias='champion']").inner_text() == "@champion"
    assert row.locator(".jp-mlops-status").inner_text() == "serving"
    numbers = row.locator(".jp-mlops-deployment-numbers").inner_text()
    assert re.search(r"rate \d[\d.]*/s", numbers), numbers
    assert re.search(r"p50 \d[\d.]* ms", numbers) and re.search(r"p99 \d[\d.]* ms", numbers), numbers
    assert f"errors 0 of {REQUESTS}" in numbers, numbers
    for part in (
        ".jp-mlops-deployment-model",
        ".jp-mlops-deployment-version",
        ".jp-mlops-deployment-url code",
        "[data-number='p50'] b",
        "[data-number='p50']",
        ".jp-mlops-deployment-swap",
        ".jp-mlops-status",
        ".jp-ToolbarButtonComponent-label",
    ):
        _readable(row.locator(part), part, theme)


def test_panel_shows_the_server_follows_an_alias_move_links_the_version_and_stops_it(lab):
    config, client, server, tmp = lab
    running = list_servers(config)
    if not running:  # the first test of the module, or the notebook test stopped nothing
        running = [start_server(config, f"models:/{MODEL}@champion", port=free_port())]
    [deployment] = running
    set_alias(client, MODEL, "champion", "1", why="the test starts from v1")
    url, sid = deployment["url"], deployment["id"]
    for i in range(REQUESTS):
        _predict(url, [[10.0 + i, 1.0]])

    with browser_page(tmp, "deployments-panel") as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(server.url("/lab"))
        page.wait_for_selector(PANEL_TAB, timeout=60_000)
        page.click(PANEL_TAB)
        row = page.locator(f"{SECTION} [data-deployment='{sid}']")
        page.wait_for_selector(f"{SECTION} [data-deployment='{sid}'][data-version='1']", timeout=30_000)
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel)?.innerText.includes(`errors 0 of ${n}`)",
            arg=[f"{SECTION} [data-deployment='{sid}'] .jp-mlops-deployment-numbers", REQUESTS],
            timeout=30_000,
        )
        assert row.locator(".jp-mlops-deployment-version").inner_text() == "v1"
        assert row.locator(".jp-mlops-deployment-url code").inner_text() == url
        page.wait_for_selector(f"{PANEL} [data-model='{MODEL}']", timeout=30_000)  # the registry too, for the picture
        assert row.locator(".jp-mlops-deployment-swap").inner_text().startswith("no swap since it started")
        assert row.locator(".jp-ToolbarButtonComponent").inner_text().strip() == "Stop"
        ARTIFACTS.mkdir(exist_ok=True)
        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            _check_row(row, theme)
            page.locator(PANEL).screenshot(path=str(ARTIFACTS / f"deployments-{slug}.png"))

        # The alias moves: the server swaps to v2 by itself and the row follows.
        set_alias(client, MODEL, "champion", "2", why="the test moves it")
        page.wait_for_selector(f"{SECTION} [data-deployment='{sid}'][data-version='2']", timeout=60_000)
        assert row.locator(".jp-mlops-deployment-version").inner_text() == "v2"
        assert re.fullmatch(
            r"last swap: v1 → v2 .+, loaded in [\d.e-]+ s", row.locator(".jp-mlops-deployment-swap").inner_text()
        ), row.locator(".jp-mlops-deployment-swap").inner_text()
        # The registry above says so too, without waiting for its own refresh.
        page.wait_for_selector(f"{PANEL} [data-model='{MODEL}'] [title='@champion → v2']", timeout=15_000)
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "deployments-swapped.png"))

        # The version is a link to its details.
        row.locator(".jp-mlops-deployment-version").click()
        page.wait_for_function(
            f"() => window.jupyterapp.shell.currentWidget?.title.label === '{MODEL} v2'", timeout=30_000
        )

        # Stop, confirmed: the server exits and the section says how to start one.
        pid = deployment["pid"]
        row.locator(".jp-ToolbarButtonComponent", has_text="Stop").click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=10_000)
        assert url in dialog.inner_text() and f"models:/{MODEL}@champion (v2)" in dialog.inner_text()
        dialog.locator("button", has_text="Stop server").click()
        page.wait_for_selector(".Toastify__toast:has-text('Stopped the server')", timeout=30_000)
        empty = page.locator(f"{SECTION} .jp-mlops-deployments-empty")
        empty.wait_for(timeout=10_000)
        text = empty.inner_text()
        assert "No model server of this project is running" in text
        assert "%mlops serve models:/NAME@ALIAS" in text and "mlops-nb serve models:/NAME@ALIAS" in text
        assert list_servers(config) == []
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        _readable(empty.locator("p").first, "the empty state", "JupyterLab Dark")
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "deployments-empty-dark.png"))


def test_serve_magic_shows_its_status_widget_in_both_themes(lab):
    config, client, server, tmp = lab
    with browser_page(tmp, "deployments-widget") as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(server.url("/lab/tree/serve.ipynb"))
        wait_for_kernel(page)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea-output:has-text('SERVE-SHOWN')", timeout=180_000)
        [deployment] = list_servers(config)
        version = str(client.get_model_version_by_alias(MODEL, "champion").version)
        widget = page.locator(".mlops-nb-serve-status")
        widget.wait_for(timeout=30_000)
        assert page.locator(":text('Error displaying widget')").count() == 0
        text = widget.inner_text()
        assert f"models:/{MODEL}@champion → v{version}" in text and deployment["url"] in text
        assert "requests/s" in text and "p99" in text and "last swap" in text
        blocks = widget.locator("pre")
        assert blocks.count() == 2
        curl, python = blocks.nth(0).inner_text(), blocks.nth(1).inner_text()
        assert f"curl -s {deployment['url']}/invocations" in curl and '"columns": ["radius", "texture"]' in curl
        assert f'requests.post("{deployment["url"]}/invocations"' in python
        # The widget reads the server by itself: requests made now show without re-running the cell.
        cell = ".mlops-nb-serve-status table td:nth-child(4)"  # requests, redrawn with each read
        before = int(page.locator(cell).inner_text())
        for _ in range(3):
            _predict(deployment["url"], [[11.0, 2.0]])
        page.wait_for_function(
            "([sel, n]) => Number(document.querySelector(sel)?.textContent) >= n",
            arg=[cell, before + 3],
            timeout=30_000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            for part in ("table td", "table th", "pre", "p.mlops-nb-muted", "a"):
                _readable(widget.locator(part).first, f"the widget's {part}", theme)
            widget.screenshot(path=str(ARTIFACTS / f"deployments-widget-{slug}.png"))
