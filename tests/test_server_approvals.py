"""Approvals and monitor reports over the REST API, on a real Jupyter server (pytest-jupyter)
and a real store: a promotion of a protected alias waits, is listed with its evidence,
is approved (the alias moves; the audit trail names the Jupyter user and the reason) or
rejected (a reason is required); a monitor run's report is served as a locked-down page,
and nothing else is; every route refuses unauthenticated requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tornado.httpclient
from helpers import call, server_config
from jupyter_server.auth.identity import IdentityProvider, User
from test_server_deployments import _conforms

from mlops_nb import tags
from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.registry import audit_trail
from mlops_nb.store import get_or_create_experiment
from mlops_nb.tracking import Tracker

pytestmark = pytest.mark.slow

MODEL = "cancer"
#: The holder's last monitor verdict, as `mlops-nb monitor` leaves it on the version.
DRIFT = {
    "verdict": "drift",
    "reason": "2 of 4 features drifted (share 0.5 >= 0.5)",
    "drifted": ["radius", "texture"],
    "when": "2026-12-01T08:00:00+00:00",
    "run_id": "0123456789abcdef0123456789abcdef",
    "rows": 500,
}


def _register(root: Path, accuracies: list[tuple[float, str | None]]):
    """Versions of MODEL in the server root's store, one a (accuracy, alias) pair; the
    store's client."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(root / "train.ipynb", "test"), config=config)
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for accuracy, alias in accuracies:
        handle = tracker.start_cell_run(f"fit-{accuracy}", autolog=False)
        tracker.log_metric("accuracy", accuracy)
        tracker.flush()
        tracker.register_model(model, MODEL, alias, input_example=np.array([[0.0, 1.0]]))
        tracker.end_run(handle)
    tracker.close()
    return tracker.client


@pytest.fixture
def protected(jp_root_dir: Path):
    """A project whose pyproject.toml protects @champion: MODEL v1 @champion (accuracy
    0.90, monitored: drift) and v2 @challenger (0.95)."""
    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    client = _register(jp_root_dir, [(0.90, "champion"), (0.95, "challenger")])
    # Protected after v1 took @champion: a registration into a protected alias waits too.
    (jp_root_dir / "pyproject.toml").write_text(
        "[project]\nname = 'p'\n\n[tool.mlops-nb]\napproval_aliases = ['champion']\n"
    )
    client.set_model_version_tag(MODEL, "1", tags.MONITOR_LAST, json.dumps(DRIFT))
    return client, jp_root_dir


class TeamIdentity(IdentityProvider):
    """Jupyter's token check, with a named user behind it (as JupyterHub's identity
    provider gives each person their name)."""

    def generate_anonymous_user(self, handler) -> User:
        return User(username="alice", name="Alice Liddell")


@pytest.fixture
def jp_server_config(jp_root_dir: Path) -> dict:
    config = server_config()
    config["ServerApp"]["identity_provider_class"] = TeamIdentity
    return config


async def _jupyter_user(jp_fetch) -> str:
    """The user name Jupyter gives this client (what the audit trail must name)."""
    resp = await jp_fetch("api", "me")
    username = json.loads(resp.body)["identity"]["username"]
    assert username == "alice"
    return username


async def test_a_protected_promotion_waits_is_listed_with_its_evidence_and_approval_moves_the_alias(
    jp_fetch, protected
):
    client, root = protected
    code, promoted = await call(jp_fetch, "models", MODEL, "promotions", method="POST", body={"metric": "accuracy"})
    assert code == 202, promoted
    assert (promoted["pending"], promoted["version"], promoted["previous_version"]) == (True, "2", "1")
    assert "waits for a person's approval" in promoted["message"]
    _conforms(promoted, "Promotion")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"  # nothing moved

    code, listed = await call(jp_fetch, "approvals")
    assert code == 200, listed
    [request] = listed["approvals"]
    _conforms(request, "PendingApproval")
    assert {k: request[k] for k in ("name", "version", "alias", "current_version")} == {
        "name": MODEL,
        "version": "2",
        "alias": "champion",
        "current_version": "1",
    }
    user = await _jupyter_user(jp_fetch)
    assert request["requested_by"] == user
    evidence = request["evidence"]
    assert evidence["metrics"] == {"accuracy": {"candidate": 0.95, "current": 0.9}}
    assert "accuracy 0.95 vs 0.9" in evidence["comparison"]
    assert evidence["drift"] == DRIFT  # the holder's last verdict
    assert evidence["lineage"]["notebook"] == "train.ipynb" and len(evidence["lineage"]["run_id"]) == 32

    # Bad decisions: no reason to reject, an unknown request, a decision that is neither.
    code, data = await call(jp_fetch, "approvals", MODEL, "2", "champion", method="POST", body={"decision": "reject"})
    needs_reason = 'a rejection needs a reason (kept in the audit trail): give "reason", e.g. {"decision": "reject", '
    assert code == 400 and data["error"].startswith(needs_reason), data
    code, data = await call(
        jp_fetch, "approvals", MODEL, "2", "champion", method="POST", body={"decision": "reject", "reason": "  "}
    )
    assert code == 400 and data["error"].startswith(needs_reason), data
    code, data = await call(jp_fetch, "approvals", MODEL, "2", "prod", method="POST", body={"decision": "approve"})
    assert code == 404 and data["error"].startswith("no pending request to move @prod to cancer v2"), data
    code, data = await call(jp_fetch, "approvals", "nope", "1", "champion", method="POST", body={"decision": "approve"})
    assert code == 404, data
    code, data = await call(jp_fetch, "approvals", MODEL, "2", "champion", method="POST", body={"decision": "ok"})
    assert code == 400 and data["error"].startswith('decision must be "approve" or "reject"'), data
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    body = {"decision": "approve", "reason": "better on the holdout set"}
    code, done = await call(jp_fetch, "approvals", MODEL, "2", "champion", method="POST", body=body)
    assert code == 200, done
    _conforms(done, "ApprovalDecision")
    assert {k: v for k, v in done.items() if k != "message"} == {
        "decision": "approved",
        "name": MODEL,
        "version": "2",
        "alias": "champion",
        "who": user,
        "reason": "better on the holdout set",
        "previous_version": "1",
    }
    assert done["message"].startswith("cancer v2 is now @champion (was v1)")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    [approved] = [e for e in audit_trail(client, MODEL, "2") if e["action"] == "approved"]
    assert (approved["who"], approved["why"], approved["alias"]) == (user, "better on the holdout set", "champion")
    assert (await call(jp_fetch, "approvals"))[1] == {"approvals": []}
    code, data = await call(jp_fetch, "approvals", MODEL, "2", "champion", method="POST", body={"decision": "approve"})
    assert code == 404 and f"{user} approved it at" in data["error"], data

    # The next candidate is rejected, with a reason: @champion stays.
    _register(root, [(0.97, "challenger")])
    code, promoted = await call(jp_fetch, "models", MODEL, "promotions", method="POST", body={"metric": "accuracy"})
    assert (code, promoted["version"], promoted["pending"]) == (202, "3", True), promoted
    body = {"decision": "reject", "reason": "drifts on last week's data"}
    code, done = await call(jp_fetch, "approvals", MODEL, "3", "champion", method="POST", body=body)
    assert code == 200, done
    assert (done["decision"], done["who"], done["previous_version"]) == ("rejected", user, "2")
    assert done["message"] == "rejected: cancer v3 does not take @champion, which stays v2 (drifts on last week's data)"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    [rejected] = [e for e in audit_trail(client, MODEL, "3") if e["action"] == "rejected"]
    assert (rejected["who"], rejected["why"]) == (user, "drifts on last week's data")
    assert (await call(jp_fetch, "approvals"))[1] == {"approvals": []}


async def test_an_unprotected_promotion_moves_at_once(jp_fetch, jp_root_dir: Path):
    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    client = _register(jp_root_dir, [(0.90, "champion"), (0.95, "challenger")])
    code, promoted = await call(jp_fetch, "models", MODEL, "promotions", method="POST", body={"metric": "accuracy"})
    assert (code, promoted["pending"], promoted["version"]) == (200, False, "2"), promoted
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"


def _report_run(client, config, kind: str, html: str | None) -> str:
    """A finished run tagged ``kind`` in the project's monitoring experiment that kept
    ``html`` as report.html (as a monitor run does)."""
    run = client.create_run(get_or_create_experiment(client, config, "monitoring"), tags={tags.KIND: kind})
    if html is not None:
        client.log_text(run.info.run_id, html, "report.html")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


async def test_a_monitor_report_is_served_as_a_locked_down_page_and_nothing_else_is(jp_fetch, jp_root_dir: Path):
    """A real monitor run's report (here an empty window: "insufficient data"), then runs
    and ids that must not be served."""
    import pandas as pd

    from mlops_nb.monitoring.monitor import monitor
    from mlops_nb.monitoring.profile import build_profile
    from mlops_nb.monitoring.profiles import save_profile

    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    config = resolve_config(jp_root_dir, environ={})
    client = _register(jp_root_dir, [(0.90, "champion")])
    save_profile(client, MODEL, "1", build_profile(pd.DataFrame({"0": [0.0, 1.0], "1": [1.0, 0.0]})), config=config)
    watched = monitor(client, config, f"models:/{MODEL}@champion", since="1h")
    assert watched.verdict == "insufficient data" and watched.run_id

    resp = await jp_fetch("mlops-nb", "api", "monitor-reports", watched.run_id)
    html = resp.body.decode()
    assert resp.code == 200 and f"<title>monitor {MODEL} v1: insufficient data</title>" in html, html[:300]
    assert "<script" not in html
    assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
    csp = [part.strip() for part in resp.headers["Content-Security-Policy"].split(";")]
    for directive in ("default-src 'none'", "style-src 'unsafe-inline'", "img-src data:", "sandbox"):
        assert directive in csp, csp
    assert not any("script" in part for part in csp), csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"

    job_run = _report_run(client, config, "job", "<p>not a report</p>")
    bare_monitor = _report_run(client, config, "monitor", None)
    for run_id, status, words in (
        (job_run, 404, f"run {job_run} is not a monitor run (a job run)"),
        (bare_monitor, 404, f"monitor run {bare_monitor} kept no report.html"),
        ("0" * 32, 404, f"no run {'0' * 32} in the project's store"),
        ("..%2F..%2Fetc%2Fpasswd", 400, "is not a run id"),
        ("xyz", 400, "is not a run id"),
    ):
        try:
            await jp_fetch("mlops-nb", "api", "monitor-reports", run_id)
            raise AssertionError(f"{run_id} was served")
        except tornado.httpclient.HTTPClientError as err:
            data = json.loads(err.response.body)
            assert (err.code, data["status"]) == (status, status) and words in data["error"], (run_id, data)


async def test_approvals_and_reports_refuse_unauthenticated_requests(jp_serverapp, http_server_client):
    for method, path, body in (
        ("GET", "approvals", None),
        ("POST", f"approvals/{MODEL}/2/champion", json.dumps({"decision": "approve"})),
        ("GET", "monitor-reports/0123456789abcdef0123456789abcdef", None),
    ):
        resp = await http_server_client.fetch(
            jp_serverapp.base_url + f"mlops-nb/api/{path}", method=method, body=body, raise_error=False
        )
        assert resp.code == 403, (method, path, resp.code)
