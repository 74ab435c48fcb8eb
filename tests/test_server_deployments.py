"""The deployments REST API on a real Jupyter server (pytest-jupyter) over real model
servers: it lists the project's servers with what they serve, their live numbers and
the served version's last monitor verdict, lists a server that does not answer as such
without waiting on it, stops one, and refuses unauthenticated requests."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import psutil
import pytest
from helpers import call
from services import free_port

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.serving.announce import list_servers, start_server, stop_server, write_announcement
from mlops_nb.tracking import Tracker

pytestmark = pytest.mark.slow


@pytest.fixture
def served(jp_root_dir: Path):
    """'cancer' v1 @champion in the server root's store, served by a real server on a
    free port; every server of the project is stopped after the test."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    config = resolve_config(jp_root_dir, environ={})
    tracker = Tracker(notebook=NotebookLocation(jp_root_dir / "train.ipynb", "test"), config=config)
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    handle = tracker.start_cell_run("fit", autolog=False)
    tracker.register_model(model, "cancer", "champion", input_example=np.array([[0.0, 1.0]]))
    tracker.end_run(handle)
    tracker.close()
    server = start_server(config, "models:/cancer@champion", port=free_port())
    yield config, server
    for running in list_servers(config):
        stop_server(config, running["id"])


def _conforms(value: dict, schema_name: str) -> None:
    """``value`` is what openapi.yaml says ``schema_name`` is (OpenAPI 3.0's ``nullable``
    read as JSON Schema's null type, as schemathesis reads it)."""
    import yaml
    from jsonschema import Draft4Validator

    from mlops_nb.server.handlers import SPEC_PATH

    def nullable(node):
        if isinstance(node, dict):
            node = {k: nullable(v) for k, v in node.items()}
            if node.pop("nullable", False):
                return {"anyOf": [node, {"type": "null"}]}
            return node
        return [nullable(v) for v in node] if isinstance(node, list) else node

    components = nullable(yaml.safe_load(SPEC_PATH.read_text())["components"])
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    errors = [e.message for e in Draft4Validator(schema).iter_errors(value)]
    assert not errors, (schema_name, errors, value)


def _predict(url: str) -> str:
    body = json.dumps({"inputs": [[0.0, 1.0]]}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.headers["X-Model-Version"]


async def test_deployments_lists_a_running_server_with_its_numbers_and_delete_stops_it(jp_fetch, served):
    config, server = served
    for _ in range(4):
        assert _predict(server["url"]) == "1"
    code, data = await call(jp_fetch, "deployments")
    assert code == 200, data
    [row] = data["deployments"]
    assert {k: row[k] for k in ("id", "url", "model", "name", "alias", "version", "reachable", "error", "status")} == {
        "id": server["id"],
        "url": server["url"],
        "model": "models:/cancer@champion",
        "name": "cancer",
        "alias": "champion",
        "version": "1",
        "reachable": True,
        "error": None,
        "status": "ok",
    }
    assert row["requests"] >= 4 and row["errors"] == 0
    assert row["requests_per_second"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["last_swap"] is None and row["pid"] == server["pid"]
    assert (row["health"], row["health_error"]) == (None, None)  # never monitored yet
    _conforms(row, "Deployment")

    code, stopped = await call(jp_fetch, "deployments", server["id"], method="DELETE")
    assert code == 200, stopped
    assert stopped["id"] == server["id"] and stopped["url"] == server["url"]
    _conforms(stopped, "Announcement")
    assert not psutil.pid_exists(server["pid"]) or psutil.Process(server["pid"]).status() == psutil.STATUS_ZOMBIE
    assert (await call(jp_fetch, "deployments"))[1] == {"deployments": []}
    assert list_servers(config) == []

    code, data = await call(jp_fetch, "deployments", server["id"], method="DELETE")
    assert code == 404 and data["error"] == (
        f'no model server of this project has the id "{server["id"]}"; running: none'
    )
    # A port is no id here (the CLI and the magic take either).
    code, data = await call(jp_fetch, "deployments", str(server["port"]), method="DELETE")
    assert code == 404


async def test_a_server_that_does_not_answer_is_listed_as_such(jp_fetch, jp_root_dir: Path):
    """Announced from another machine at an address that accepts connections and never
    answers: listed with reachable false and why, after one short timeout."""
    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    config = resolve_config(jp_root_dir, environ={})
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        write_announcement(
            config,
            {
                "id": f"elsewhere-{port}",
                "url": f"http://127.0.0.1:{port}",
                "host": "0.0.0.0",
                "port": port,
                "pid": 4242,
                "hostname": "elsewhere.invalid",
                "model": "models:/cancer@champion",
                "name": "cancer",
                "alias": "champion",
                "version": "7",
                "started": "2026-12-01T09:00:00+00:00",
                "auth": False,
                "log_file": None,
            },
        )
        code, data = await call(jp_fetch, "deployments")
    finally:
        silent.close()
    assert code == 200, data
    [row] = data["deployments"]
    assert (row["id"], row["version"], row["reachable"], row["alive"]) == (f"elsewhere-{port}", "7", False, False)
    assert "timed out" in row["error"]
    assert all(row[k] is None for k in ("status", "requests", "requests_per_second", "p50_ms", "p99_ms"))
    _conforms(row, "Deployment")
    # It runs elsewhere: this server cannot stop it, and says so.
    code, data = await call(jp_fetch, "deployments", f"elsewhere-{port}", method="DELETE")
    assert code == 400 and "runs on elsewhere.invalid: stop it there" in data["error"]


def _announce_elsewhere(config, port: int, version: str) -> str:
    """Announce a server of 'cancer' v``version`` on another machine (its address refuses
    connections here); its id."""
    sid = f"elsewhere-{port}-v{version}"
    write_announcement(
        config,
        {
            "id": sid,
            "url": f"http://127.0.0.1:{port}",
            "host": "0.0.0.0",
            "port": port,
            "pid": 4242,
            "hostname": "elsewhere.invalid",
            "model": "models:/cancer@champion",
            "name": "cancer",
            "alias": "champion",
            "version": version,
            "started": "2026-12-01T09:00:00+00:00",
            "auth": False,
            "log_file": None,
        },
    )
    return sid


async def test_each_served_version_shows_its_last_monitor_verdict_with_a_report_link(
    jp_fetch, jp_serverapp, jp_root_dir: Path
):
    """The verdict `mlops-nb monitor` leaves on the version (tag MONITOR_LAST): drift, the
    features, when, the run, a link to the report on this server; a version the store
    does not have says why it has no verdict, and the list still answers."""
    from sklearn.linear_model import LogisticRegression

    from mlops_nb import tags

    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    config = resolve_config(jp_root_dir, environ={})
    tracker = Tracker(notebook=NotebookLocation(jp_root_dir / "train.ipynb", "test"), config=config)
    handle = tracker.start_cell_run("fit", autolog=False)
    tracker.register_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "cancer", "champion")
    tracker.end_run(handle)
    tracker.close()
    verdict = {
        "verdict": "drift",
        "reason": "2 of 20 features drifted",
        "drifted": ["radius", "texture"],
        "when": "2026-12-01T10:00:00+00:00",
        "run_id": "0123456789abcdef0123456789abcdef",
        "rows": 1200,
    }
    tracker.client.set_model_version_tag("cancer", "1", tags.MONITOR_LAST, json.dumps(verdict))
    served, unknown = _announce_elsewhere(config, free_port(), "1"), _announce_elsewhere(config, free_port(), "7")

    code, data = await call(jp_fetch, "deployments")
    assert code == 200, data
    rows = {row["id"]: row for row in data["deployments"]}
    report = f"{jp_serverapp.base_url}mlops-nb/api/monitor-reports/{verdict['run_id']}"
    assert rows[served]["health"] == {**verdict, "report_url": report}
    assert rows[served]["health_error"] is None
    assert rows[unknown]["health"] is None
    assert rows[unknown]["health_error"].startswith("cannot read the monitor verdict of cancer v7: "), rows[unknown]
    for row in rows.values():
        assert row["reachable"] is False  # what it serves is read from the store all the same
        _conforms(row, "Deployment")


async def test_deployments_refuse_unauthenticated_requests(jp_serverapp, http_server_client, jp_root_dir):
    for method, path in (("GET", "deployments"), ("DELETE", "deployments/localhost-5000")):
        resp = await http_server_client.fetch(
            jp_serverapp.base_url + f"mlops-nb/api/{path}", method=method, raise_error=False
        )
        assert resp.code == 403, (method, path, resp.code)
