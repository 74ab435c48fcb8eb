"""A tracking server that goes away and comes back while a kernel, a command or a Jupyter
server runs: `%mlops status` and `mlops-nb status` say whether it answers, nothing breaks
the user's cells meanwhile, and tracking resumes with no restart. A real `mlflow server`
(on a SQLite backend in a temporary folder) is stopped and started on the same port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from services import free_port, mlflow_server

pytestmark = pytest.mark.slow

#: The status line while the server is down. The reason is the socket's: "connection
#: refused", or "connection reset by peer" when the probe meets the dying process.
DOWN = (
    r"UNREACHABLE — cannot reach the tracking server at {uri} \(connection [a-z ]+\); "
    r"tracking resumes by itself when it answers"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `mlflow server` for the module; a test that stops it starts it again."""
    base = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(f"sqlite:///{base / 'mlflow.db'}", base / "artifacts") as srv:
        yield srv


@pytest.fixture
def restarts(server):
    """The server, started again after the test whatever happened in it."""
    yield server
    server.start()


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def connection(table) -> str:
    """The `connection` line of a status table as printed (one line, or this fails)."""
    (line,) = [line for line in str(table).splitlines() if line.startswith("connection ")]
    return line.split(None, 1)[1]


def test_status_says_when_the_server_is_down_cells_keep_working_and_tracking_resumes(ip, restarts, monkeypatch, capsys):
    server = restarts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    from mlops_nb import magics

    magics.unload(ip)
    magics.load(ip)

    status = run(ip, "%mlops status")
    assert status.success and connection(status.result) == "reachable"
    assert run(ip, "%mlops track --no-autolog --experiment recovery").success
    from mlflow import MlflowClient

    import mlops_nb

    session_id = mlops_nb.get_tracker().session.run_id
    capsys.readouterr()

    server.stop()
    status = run(ip, "%mlops status")
    assert status.success
    assert re.fullmatch(DOWN.format(uri=re.escape(server.uri)), connection(status.result))

    # Logging into the open run and a tracked cell: warnings, never a broken cell.
    result = run(
        ip,
        """
        import mlops_nb as mnb
        for step in range(3):
            mnb.log_metric("loss", 1.0 / (step + 1))
        label = "offline"
        %mlops log label
        done = True
        """,
    )
    assert result.success and ip.user_ns["done"] is True
    result = run(ip, "%%mlops track --name while-down\nworked = 'yes'")
    assert result.success and ip.user_ns["worked"] == "yes"
    err = capsys.readouterr().err
    assert "Traceback" not in err and "runs untracked" in err and server.uri in err
    assert all(line.startswith("mlops-nb: ") for line in err.splitlines()), err

    # Back: the next status says so, and the next tracked cell is recorded, no restart.
    server.start()
    assert connection(run(ip, "%mlops status").result) == "reachable"
    result = run(ip, "%%mlops track --name back\naccuracy = 0.93\n%mlops log accuracy")
    assert result.success
    assert run(ip, "%mlops end").success

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name("recovery")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"train", "back"}  # the cell run while down was not recorded
    back, notebook = runs["back"], runs["train"]
    assert back.info.status == "FINISHED" and back.data.metrics == {"accuracy": 0.93}
    assert back.data.tags["mlflow.parentRunId"] == session_id == notebook.info.run_id
    # Metrics logged while the server was down were kept and written when it came back.
    assert [m.value for m in client.get_metric_history(session_id, "loss")] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert notebook.info.status == "FINISHED"


def cli_status(project: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_nb", "status", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=120,
    )


def test_cli_status_and_logging_without_a_run_while_the_server_is_down_and_back(
    ip, project: Path, restarts, monkeypatch, capsys
):
    server = restarts
    up = cli_status(project, server.uri)
    assert up.returncode == 0, up.stderr
    assert connection(up.stdout) == "reachable"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    from mlops_nb import magics

    magics.unload(ip)
    magics.load(ip)

    server.stop()
    down = cli_status(project, server.uri)
    assert "Traceback" not in down.stderr
    assert re.fullmatch(DOWN.format(uri=re.escape(server.uri)), connection(down.stdout))
    data = json.loads(cli_status(project, server.uri, "--json").stdout)
    assert data["store_reachable"] is False and data["store_health"].startswith("UNREACHABLE — ")
    # A value logged with no run open: one warning, the cell goes on.
    assert run(ip, "import mlops_nb as mnb\nmnb.log(acc=0.5)\nfirst = True").success
    err = capsys.readouterr().err
    assert err.count("values logged from now on are not recorded until a run can start") == 1
    assert f"cannot reach the tracking server at {server.uri}" in err and "Traceback" not in err

    server.start()
    assert json.loads(cli_status(project, server.uri, "--json").stdout)["store_reachable"] is True
    # The next status finds the server answering, so the next value starts a run.
    assert connection(run(ip, "%mlops status").result) == "reachable"
    assert run(ip, "mnb.log(acc=0.75)\nmnb.end()").success
    assert "started run" in capsys.readouterr().err
    from mlflow import MlflowClient

    client = MlflowClient(server.uri)
    (r,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert r.data.metrics == {"acc": 0.75} and r.info.status == "FINISHED"


def test_cli_status_exits_1_while_the_store_does_not_answer(project: Path):
    assert cli_status(project, f"http://127.0.0.1:{free_port()}").returncode == 1


# ----------------------------------------------------------------- the REST API


async def test_rest_api_is_503_naming_the_server_while_it_is_down_and_200_once_back(
    jp_fetch, jp_root_dir: Path, restarts
):
    import tornado.httpclient
    from mlflow import MlflowClient

    server = restarts
    (jp_root_dir / "pyproject.toml").write_text(f'[tool.mlops-nb]\ntracking_uri = "{server.uri}"\n')
    MlflowClient(server.uri).create_registered_model("rest-recovery")

    async def models() -> tuple[int, dict]:
        try:
            response = await jp_fetch("mlops-nb", "api", "models", params={"q": "rest-recovery"})
        except tornado.httpclient.HTTPClientError as exc:
            return exc.code, json.loads(exc.response.body)
        return response.code, json.loads(response.body)

    code, body = await models()
    assert code == 200 and [m["name"] for m in body["models"]] == ["rest-recovery"]

    server.stop()  # the server extension's client had just seen it answer
    code, body = await models()
    assert code == 503
    assert re.fullmatch(
        rf"cannot reach the tracking server at {re.escape(server.uri)} \(connection [a-z ]+\); "
        "start it or point MLFLOW_TRACKING_URI at a running one",
        body["error"],
    )

    server.start()
    code, body = await models()
    assert code == 200 and [m["name"] for m in body["models"]] == ["rest-recovery"]
