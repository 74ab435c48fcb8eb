"""``%mlops serve`` on a real IPython shell, a real store and a real model server: it
starts a server that answers MLflow's scoring protocol in a process of its own, shows a
status widget (URL, version, numbers, a curl and a Python example that work), reuses a
server already serving the model, survives the magics being reloaded (a kernel
restart), asks which to stop when several run, follows an alias move, and stops; bad
input is one line."""

from __future__ import annotations

import json
import os
import textwrap
import time
import urllib.request
from typing import Any

import psutil
import pytest
from services import free_port

from mlops_nb.config import resolve_config
from mlops_nb.serving.announce import list_servers, stop_server

pytestmark = pytest.mark.slow

TRAIN = """
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X = X.iloc[:, :4]
X_example = X.iloc[:3]
"""


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def register(ip, c: float, alias: str | None = None) -> None:
    flag = f" --alias {alias}" if alias else ""
    result = run(
        ip,
        f"""
        %%mlops track --name fit-{c} --no-autolog
        model = make_pipeline(StandardScaler(), LogisticRegression(C={c}, max_iter=1000)).fit(X, y)
        %mlops register model --name cancer --input-example X_example{flag}
        """,
    )
    assert result.success, result.error_in_exec


def post(url: str, body: dict) -> tuple[int, Any, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers, json.loads(response.read())


@pytest.fixture
def served_project(ip, project, client):
    """The shell with 'cancer' v1 @champion registered (a DataFrame input example of
    four named columns); every server of the project is stopped after the test."""
    assert run(ip, TRAIN).success
    register(ip, 1.0, "champion")
    config = resolve_config(project)
    yield ip, config
    for server in list_servers(config):
        stop_server(config, server["id"])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_serve_shows_a_live_status_reuses_survives_a_reload_follows_the_alias_and_stops(served_project, capsys):
    from mlops_nb import magics

    ip, config = served_project
    assert run(ip, "%mlops serve").success
    assert "no model server of this project is running" in capsys.readouterr().out

    port = free_port()
    result = run(ip, f"%mlops serve models:/cancer@champion --port {port}")
    assert result.success, result.error_in_exec
    status = result.result
    url = f"http://127.0.0.1:{port}"
    out = capsys.readouterr().out
    assert f"serving models:/cancer@champion v1 at {url}" in out and "%mlops serve --stop" in out
    [server] = list_servers(config)
    pid = server["pid"]
    # A process of its own, in a session of its own: a kernel restart does not end it.
    assert pid != os.getpid() and os.getsid(pid) != os.getsid(0)

    # The widget: where it answers, what it serves, and examples built from the input example.
    assert status.url == url and status.version == "1"
    assert url in status.status_html.value and "models:/cancer@champion</b> → <b>v1</b>" in status.status_html.value
    examples = status.examples_html.value
    assert "mean radius" in examples and "dataframe_split" in examples and f"{url}/invocations" in examples
    assert status.example["dataframe_split"]["columns"] == [
        "mean radius",
        "mean texture",
        "mean perimeter",
        "mean area",
    ]
    assert "curl -s" in str(status) and url in str(status)

    # The example body is a request the server answers, from v1.
    for _ in range(3):
        code, headers, answer = post(url, status.example)
        assert code == 200 and headers["X-Model-Version"] == "1" and len(answer["predictions"]) == 1
    assert status.refresh() is True
    assert status.health["requests"] >= 3 and status.health["p50_ms"] is not None
    assert "requests/s" in status.status_html.value and ">0<" in status.status_html.value  # no errors
    assert "3 requests" in status.status_line() or f"{status.health['requests']} requests" in status.status_line()

    # The same model again: the running server is shown, none is started.
    again = run(ip, "%mlops serve models:/cancer@champion")
    assert again.success and again.result.url == url
    assert f"already served at {url}" in capsys.readouterr().out
    assert [s["pid"] for s in list_servers(config)] == [pid]

    # A kernel restart forgets nothing: the server is found again from its announcement.
    magics.unload(ip)
    magics.load(ip)
    listed = run(ip, "%mlops serve")
    assert listed.success
    table = str(listed.result)
    assert server["id"] in table and url in table and "models:/cancer@champion" in table and "v1" in table

    # A second server (a pinned version): --stop alone no longer knows which, and says so.
    pinned = free_port()
    assert run(ip, f"%mlops serve models:/cancer/1 --port {pinned}").success
    capsys.readouterr()
    assert not run(ip, "%mlops serve --stop").success
    err = capsys.readouterr().err
    assert "2 model servers of this project are running: say which" in err and "Traceback" not in err
    assert url in err and f"http://127.0.0.1:{pinned}" in err
    assert run(ip, f"%mlops serve --stop {pinned}").success  # a port does too
    assert [s["pid"] for s in list_servers(config)] == [pid]

    # The alias moves: the server follows, and the widget says which version it serves now.
    register(ip, 0.5)
    assert run(ip, "%mlops alias cancer@champion 2").success
    deadline = time.monotonic() + 90
    while status.refresh() and status.version != "2" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status.version == "2", status.status_line()
    assert "v1 → v2" in status.status_html.value
    assert post(url, status.example)[1]["X-Model-Version"] == "2"

    # Stop: one server, so no id is needed; the process is gone and the widget says so.
    capsys.readouterr()
    assert run(ip, "%mlops serve --stop").success
    assert f"stopped server {server['id']} at {url}" in capsys.readouterr().out
    assert _gone(pid)
    assert list_servers(config) == []
    assert status.refresh() is False and status.gone
    assert "has stopped" in status.status_line() and "has stopped" in status.status_html.value
    assert status.examples_html.value == ""


BAD_INPUT = [
    ("%mlops serve models:/nope@champion", "no registered model named 'nope'"),
    ("%mlops serve models:/cancer", "is not a model reference"),
    ("%mlops serve cancer", "neither a model reference nor a folder holding an MLflow model"),
    ("%mlops serve models:/cancer@champion --port 0", "'0' is not a port"),
    ("%mlops serve models:/cancer@champion --port http", "'http' is not a port"),
    ("%mlops serve --port 5000", "--port needs a model to serve"),
    ("%mlops serve models:/cancer@champion --stop", "either a model to serve or --stop, not both"),
    ("%mlops serve --stop nosuch", "no server 'nosuch' runs for this project"),
    ("%mlops serve models:/cancer@champion --workers 2", "unrecognized arguments: --workers 2"),
]


def test_bad_input_is_one_line_and_starts_nothing(ip, project, client, capsys):
    config = resolve_config(project)
    for line, expected in BAD_INPUT:
        capsys.readouterr()
        result = run(ip, line)
        assert not result.success, line
        err = capsys.readouterr().err
        assert err.startswith("UsageError: ") and expected in err, (line, err)
        assert "Traceback" not in err
    assert list_servers(config) == []  # nothing was started
    assert run(ip, "still_fine = 1").success
