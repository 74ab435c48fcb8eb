"""Approvals and model health as a person sees them, in a real JupyterLab and Chromium
over a real store and a real model server: a promotion of the protected @champion waits
in the panel's Approvals section with its evidence (the metric comparison, the drift a
real monitor run found in the version in service, the lineage); a reason typed and
Approve clicked, the alias badge moves in the registry and the server follows; the next
one is rejected, which needs a reason. The Deployments section shows the served
version's health as a monitor run over the server's request log found it (the verdict,
the drifted features, when) and opens its report in a new tab. Both themes read well."""

from __future__ import annotations

import getpass
import json
import re
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from browser import ARTIFACTS, CONTRAST_JS, browser_page, chromium_path, jupyterlab, set_theme
from helpers import new_project
from services import free_port
from sklearn.linear_model import LogisticRegression

from mlops_nb.config import resolve_config
from mlops_nb.monitoring.monitor import MonitorPolicy, MonitorResult, monitor
from mlops_nb.monitoring.profile import build_profile
from mlops_nb.monitoring.profiles import save_profile
from mlops_nb.provenance import NotebookLocation
from mlops_nb.registry import audit_trail, promote
from mlops_nb.serving.announce import list_servers, start_server, stop_server
from mlops_nb.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
PANEL = "#mlops-nb-registry"
APPROVALS = "#mlops-nb-approvals"
DEPLOYMENTS = "#mlops-nb-deployments"
THEMES = (("JupyterLab Light", "light", "true"), ("JupyterLab Dark", "dark", "false"))
MODEL = "tumour-classifier"
#: The training data of every version (and so their reference profile).
RNG = np.random.default_rng(17)
X = pd.DataFrame({"radius": RNG.normal(14.0, 3.0, 300), "texture": RNG.normal(19.0, 4.0, 300)})
Y = (X["radius"] > 14.0).astype(int)


def _register(tracker: Tracker, config, accuracy: float, alias: str) -> str:
    """A version trained on X, with its reference profile (what `%mlops register --reference X` stores)."""
    handle = tracker.start_cell_run(f"fit-{accuracy}", autolog=False)
    tracker.log_metric("accuracy", accuracy)
    tracker.flush()
    model = LogisticRegression(C=accuracy).fit(X, Y)
    registered = tracker.register_model(model, MODEL, alias, input_example=X[:2])
    tracker.end_run(handle)
    save_profile(tracker.client, MODEL, registered.version, build_profile(X, model.predict(X)), config=config)
    return registered.version


def _watch(config, client, url: str) -> MonitorResult:
    """Traffic whose radius moved far from the training data, through the model server,
    then a monitor run over its request log: the served version's verdict."""
    shifted = pd.DataFrame({"radius": RNG.normal(24.0, 3.0, 60), "texture": RNG.normal(19.0, 4.0, 60)})
    for rows in (shifted[:30], shifted[30:]):
        body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": rows.values.tolist()}}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = response.headers["X-Model-Version"]
    deadline = time.monotonic() + 30
    while True:  # the server writes its request log in the background
        result = monitor(client, config, f"models:/{MODEL}/{served}", since="1h", policy=MonitorPolicy(min_rows=50))
        if result.verdict != "insufficient data" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.verdict == "drift" and "radius" in result.drifted, result.reason
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A project protecting @champion, with 'tumour-classifier' v1 @champion (accuracy
    0.90) served by a real model server, v2 @challenger (0.95), and JupyterLab on it."""
    tmp = tmp_path_factory.mktemp("approvals")
    root = new_project(tmp)
    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(root / "train.ipynb", "test"), config=config)
    _register(tracker, config, 0.90, "champion")
    _register(tracker, config, 0.95, "challenger")
    # Protected after v1 took @champion: a registration into a protected alias waits too.
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n\n[tool.mlops-nb]\napproval_aliases = ['champion']\n")
    config = resolve_config(root, environ={})
    assert config.approval_aliases == ("champion",)
    start_server(config, f"models:/{MODEL}@champion", port=free_port())
    try:
        with jupyterlab(root, tmp) as server:
            yield config, tracker, server, tmp
    finally:
        tracker.close()
        for running in list_servers(config):
            stop_server(config, running["id"])


def _readable(locator, what: str, theme: str) -> None:
    ratio = locator.evaluate(CONTRAST_JS, {"blend": True})
    assert ratio >= 4.5, f"{what} in {theme}: contrast {ratio:.2f}"


def _open_panel(page, server) -> None:
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(server.url("/lab"))
    page.wait_for_selector(PANEL_TAB, timeout=60_000)
    # The command shows the panel whether or not the restored layout already does (a click would fold it).
    page.evaluate("window.jupyterapp.commands.execute('mlops-nb:open-registry')")
    page.wait_for_selector(f"{PANEL} [data-model='{MODEL}']", timeout=30_000)


def _check_request(item, theme: str) -> None:
    """What a pending request says, readable: the move, who asked, the evidence."""
    head = item.locator(".jp-mlops-approval-head").inner_text()
    assert MODEL in head and "v2" in head and "@champion" in head and "now on v1" in head, head
    assert item.locator(".jp-mlops-approval-meta").inner_text().startswith("requested by pipeline")
    cells = [c.strip() for c in item.locator("[data-metric='accuracy'] td").all_inner_texts()]
    assert cells == ["accuracy", "0.9500", "0.9000", "+0.05"], cells
    table = item.locator(".jp-mlops-approval-metrics")
    assert "accuracy 0.95 vs 0.9 (higher is better)" in table.get_attribute("title")  # the guard's words
    drift = item.locator(".jp-mlops-approval-drift").inner_text()
    assert drift.startswith("v1 in service:") and "drift" in drift and "radius" in drift, drift
    assert "notebook train.ipynb" in item.locator(".jp-mlops-approval-lineage").inner_text()
    for part in (
        ".jp-mlops-approval-model",
        ".jp-mlops-approval-holder",
        ".jp-mlops-approval-meta",
        "[data-metric='accuracy'] td >> nth=1",
        ".jp-mlops-approval-metrics th >> nth=0",
        ".jp-mlops-approval-drift .jp-mlops-health",
        ".jp-mlops-approval-lineage code >> nth=0",
        ".jp-mlops-approval-reason",
        "button:has-text('Approve')",
    ):
        _readable(item.locator(part), part, theme)


def test_a_pending_promotion_is_approved_in_the_panel_and_the_next_one_rejected(lab):
    config, tracker, server, tmp = lab
    client = tracker.client
    # JupyterLab behind its one token knows no user name: decisions are the OS user's,
    # as they are from the command line.
    assert server.call("GET", "/api/me")["identity"]["name"].startswith("Anonymous ")
    user = getpass.getuser()
    holder = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert holder == "1", "this test starts from v1 @champion"
    [deployment] = list_servers(config)
    assert _watch(config, client, deployment["url"]).version == "1"  # v1 in service drifts
    waiting = promote(client, MODEL, "accuracy", approval=config.approval_aliases, who="pipeline")
    assert waiting.pending and waiting.version == "2"

    with browser_page(tmp, "approvals-panel") as page:
        _open_panel(page, server)
        item = page.locator(f"{APPROVALS} [data-approval='{MODEL}/2/champion']")
        item.wait_for(timeout=30_000)
        assert page.locator(f"{PANEL} .jp-AccordionPanel-title:has-text('Approvals (1)')").count() == 1
        approve, reject = item.locator("button:has-text('Approve')"), item.locator("button:has-text('Reject')")
        assert approve.is_enabled() and reject.is_disabled()  # a rejection needs a reason
        ARTIFACTS.mkdir(exist_ok=True)
        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            _check_request(item, theme)
            page.locator(PANEL).screenshot(path=str(ARTIFACTS / f"approvals-{slug}.png"))

        item.locator(".jp-mlops-approval-reason").fill("better on the holdout set")
        assert reject.is_enabled()
        approve.click()
        page.wait_for_selector(
            f".Toastify__toast:has-text('Approved: @champion of {MODEL} now points at v2')", timeout=30_000
        )
        item.wait_for(state="detached", timeout=10_000)
        # The registry shows the move at once; the server follows the alias and swaps.
        page.wait_for_selector(f"{PANEL} [data-model='{MODEL}'] [title='@champion → v2']", timeout=15_000)
        page.wait_for_selector(f"{DEPLOYMENTS} [data-version='2']", timeout=60_000)
        # Nothing waits now: the section folds to its title, which no longer counts one.
        title = page.locator(f"{PANEL} .jp-AccordionPanel-title[aria-expanded='false']", has_text="Approvals")
        title.wait_for(timeout=10_000)
        assert title.inner_text().strip().lower() == "approvals"
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
        [approved] = [e for e in audit_trail(client, MODEL, "2") if e["action"] == "approved"]
        assert (approved["who"], approved["why"]) == (user, "better on the holdout set")
        page.locator(PANEL).screenshot(path=str(ARTIFACTS / "approvals-approved-dark.png"))

        # The next candidate: rejected, with a reason; @champion stays.
        version = _register(tracker, config, 0.97, "challenger")
        assert promote(client, MODEL, "accuracy", approval=config.approval_aliases, who="pipeline").pending
        page.locator(f"{PANEL} .jp-Toolbar [title='Refresh the registry and jobs']").click()
        item = page.locator(f"{APPROVALS} [data-approval='{MODEL}/{version}/champion']")
        item.wait_for(timeout=30_000)  # the section unfolds by itself for it
        reject = item.locator("button:has-text('Reject')")
        assert reject.is_disabled()
        item.locator(".jp-mlops-approval-reason").fill("   ")
        assert reject.is_disabled()
        item.locator(".jp-mlops-approval-reason").fill("drifts on last week's data")
        reject.click()
        page.wait_for_selector(
            f".Toastify__toast:has-text('Rejected: @champion of {MODEL} stays on v2')", timeout=30_000
        )
        item.wait_for(state="detached", timeout=10_000)
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
        [rejected] = [e for e in audit_trail(client, MODEL, version) if e["action"] == "rejected"]
        assert (rejected["who"], rejected["why"]) == (user, "drifts on last week's data")


def test_a_served_version_shows_its_health_and_opens_its_report_in_a_new_tab(lab):
    config, tracker, server, tmp = lab
    client = tracker.client
    [deployment] = list_servers(config)
    watched = _watch(config, client, deployment["url"])
    run_id = watched.run_id

    with browser_page(tmp, "approvals-health") as page:
        _open_panel(page, server)
        row = page.locator(f"{DEPLOYMENTS} [data-deployment='{deployment['id']}']")
        health = row.locator(".jp-mlops-deployment-health[data-health='drift']")
        health.wait_for(timeout=30_000)
        assert row.locator(".jp-mlops-health").inner_text() == "drift"
        assert row.locator(".jp-mlops-drifted").inner_text() == f"drifted: {', '.join(watched.drifted)}"
        assert re.search(r"\bnow\b|seconds? ago|minutes? ago", health.inner_text()), health.inner_text()  # when
        link = row.locator("a.jp-mlops-report-link")
        assert link.inner_text() == "report"
        assert link.get_attribute("href") == f"/mlops-nb/api/monitor-reports/{run_id}"
        assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener noreferrer")
        ARTIFACTS.mkdir(exist_ok=True)
        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            for part in (".jp-mlops-health", ".jp-mlops-drifted", ".jp-mlops-deployment-health-label", "a"):
                _readable(health.locator(part).first, part, theme)
            row.screenshot(path=str(ARTIFACTS / f"deployment-health-{slug}.png"))

        # The report opens in a tab of its own, through the REST route (the login cookie),
        # under the route's locked-down policy.
        answers = []
        page.context.on("response", lambda r: answers.append(r) if "/monitor-reports/" in r.url else None)
        with page.context.expect_page(timeout=30_000) as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state("load", timeout=30_000)
        assert report.title() == f"monitor {MODEL} v{watched.version}: drift"
        assert "radius" in report.locator("body").inner_text()
        assert report.url == f"{server.base}/mlops-nb/api/monitor-reports/{run_id}"
        [answer] = answers
        assert answer.status == 200 and answer.headers["content-type"] == "text/html; charset=UTF-8"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
        report.screenshot(path=str(ARTIFACTS / "deployment-health-report.png"))
