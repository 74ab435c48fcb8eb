"""Servers as stateless replicas (issue 16, "Beyond one machine"): two ``mlops-nb serve``
processes, each in its own copy of the project as on two machines, against one
``mlflow server`` on PostgreSQL, with one request log in a PostgreSQL database. After a
promotion both serve the new version (there is no alias-moves file between machines: they
see it at their next poll), and both write their requests to the one log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from services import free_port, mlflow_server, postgres
from serving_helpers import new_serving_project, register_iris, serve, split_body, store_client

from mlops_nb.registry import set_alias
from mlops_nb.serving.announce import server_id
from mlops_nb.serving.requestlog import read_log

pytestmark = pytest.mark.slow


def _project(tmp: Path, name: str, tracking: str, log: str) -> Path:
    root = new_serving_project(tmp / name)
    (root / "pyproject.toml").write_text(
        f"[project]\nname = 'serving'\n[tool.mlops-nb]\ntracking_uri = '{tracking}'\nrequest_log = '{log}'\n"
    )
    return root


SENT: dict[str, int] = {}


def _answer(url: str, body: str) -> tuple[str, list]:
    SENT[url] = SENT.get(url, 0) + 1
    resp = requests.post(url + "/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.headers["X-Model-Version"], resp.json()["predictions"]


def test_two_replicas_on_a_shared_server_both_swap_and_log_to_one_place(tmp_path: Path):
    with postgres(tmp_path) as pg, mlflow_server(pg.url("mlflow"), tmp_path / "artifacts") as tracking:
        log = pg.url("requests")
        first = _project(tmp_path, "machine-a", tracking.uri, log)
        second = _project(tmp_path, "machine-b", tracking.uri, log)
        made = register_iris(first, 2)
        body = split_body(made["rows"])
        replicas = [
            serve(root, "models:/iris@champion", free_port(), "--poll", "1", logdir=tmp_path / f"log-{i}")
            for i, root in enumerate((first, second))
        ]
        try:
            for r in replicas:
                r.wait_ready()
            for r in replicas:
                for _ in range(3):
                    assert _answer(r.url, body) == ("1", made["expected"]["1"])

            set_alias(store_client(first), "iris", "champion", "2")
            for r in replicas:
                deadline = time.monotonic() + 120  # a poll, then a load and a warm-up
                while _answer(r.url, body)[0] != "2":
                    assert time.monotonic() < deadline, f"{r.url} still serves v1:\n{r.output()}"
                    time.sleep(0.2)
                assert _answer(r.url, body) == ("2", made["expected"]["2"])
                health = requests.get(r.url + "/health", timeout=10).json()
                assert health["version"] == "2" and health["swaps"] == 1 and health["status"] == "ok"
        finally:
            codes = [r.stop() for r in replicas]  # SIGTERM: each writes what its log holds
        assert codes == [0, 0], [r.output() for r in replicas]

        rows = read_log(log, "iris")
        assert set(rows["version"]) == {"1", "2"} and (rows["status"] == 200).all()
        # One row per answered request, from each replica, in the one shared log.
        by_server = rows.groupby("server").size().to_dict()
        assert by_server == {server_id(int(r.url.rsplit(":", 1)[1])): SENT[r.url] for r in replicas}
