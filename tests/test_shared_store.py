"""A team's shared store: a private PostgreSQL cluster, an ``mlflow server`` on it with a
shared artifact folder, and the project pointed at it by an ``http://`` tracking URI.
Jobs, sweeps, pipelines, the registry and its REST API, the magics and the scheduler
(whose own database is a second database on the same PostgreSQL server) work unchanged;
each test reads back what the shared server stored.

One PostgreSQL cluster and one MLflow server serve the whole module: the server's first
start on a new PostgreSQL database runs MLflow's migrations (10-20 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import call, make_notebook, new_project, server_config
from services import MlflowServer, Postgres, mlflow_server, postgres

from mlops_nb.config import resolve_config

pytestmark = pytest.mark.slow


@dataclass
class Shared:
    pg: Postgres
    server: MlflowServer
    artifacts: Path

    @property
    def uri(self) -> str:
        return self.server.uri

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.server.uri)

    def sql(self, database: str, query: str, *args) -> list[tuple]:
        """Rows of ``query`` run on the PostgreSQL database itself (not through MLflow)."""
        import psycopg

        with psycopg.connect(self.pg.url(database)) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("shared-store")
    artifacts = base / "artifacts"
    with postgres(base) as pg, mlflow_server(pg.url("mlflow"), artifacts) as server:
        yield Shared(pg, server, artifacts)


@pytest.fixture(autouse=True)
def _forget_the_server():
    """A tracker in this process calls ``mlflow.set_tracking_uri``, which also sets
    ``MLFLOW_TRACKING_URI`` in ``os.environ``: later modules' fixtures must not inherit a
    server that stops with this module."""
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def _project(tmp_path: Path, shared: Shared, name: str) -> Path:
    """A project whose pyproject.toml points at the shared server, with a tiny notebook
    ``<name>.ipynb`` (parameters x and label; logs y = 2x)."""
    root = new_project(tmp_path)
    (root / "pyproject.toml").write_text(f"[project]\nname = 'p'\n[tool.mlops-nb]\ntracking_uri = '{shared.uri}'\n")
    make_notebook(
        root / f"{name}.ipynb",
        [
            ("code", "x = 1.0\nlabel = 'base'", ["parameters"]),
            ("code", "%load_ext mlops_nb\n%mlops track --no-autolog", []),
            ("code", "y = x * 2\n%mlops log y\nprint('y is', y)", []),
        ],
    )
    return root


def _download_json(shared: Shared, run_id: str, path: str, dst: Path) -> dict:
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, tracking_uri=shared.uri, dst_path=str(dst)
    )
    return json.loads(Path(local).read_text())


def _printed(nb: dict) -> str:
    return "".join(
        "".join(o.get("text", ""))
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )


# ---------------------------------------------------------------- jobs and sweeps


def test_a_cli_run_and_a_sweep_log_their_runs_into_the_shared_store(
    shared: Shared, tmp_path: Path, monkeypatch
) -> None:
    root = _project(tmp_path, shared, "tiny")
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")  # the environment variable points instead
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared.uri)
    done = subprocess.run(
        [sys.executable, "-m", "mlops_nb.cli", "run", "tiny.ipynb", "-p", "x=1.5", "-p", "label=cli", "--json"],
        cwd=root, capture_output=True, text=True, timeout=240, env={**os.environ, "MLOPS_NB_AGENT": "off"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Nothing but the JSON object, though MLflow prints a "View run" link for http:// stores.
    assert len(done.stdout.splitlines()) == 1, done.stdout
    result = json.loads(done.stdout)
    client = shared.client()
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["x"] == "1.5" and run.data.params["label"] == "cli"
    assert run.data.metrics["y"] == 3.0
    assert run.data.tags["mlops_nb.kind"] == "job"
    # The runs live in PostgreSQL, and their artifacts in the server's shared folder.
    assert shared.sql("mlflow", "SELECT status FROM runs WHERE run_uuid = %s", run.info.run_id) == [("FINISHED",)]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    executed = _download_json(shared, run.info.run_id, "job/tiny.ipynb", tmp_path / "dl")
    assert "y is 3.0" in _printed(executed)
    assert list(shared.artifacts.glob(f"**/{run.info.run_id}/artifacts/job/tiny.ipynb"))

    from mlops_nb.jobs.batch.sweep import sweep

    swept = sweep(root / "tiny.ipynb", {"x": "1,3"}, workers=2, metric="y", config=resolve_config(root))
    assert swept.ok and len(swept.jobs) == 2
    parent = client.get_run(swept.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_y"] == 6.0
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{swept.parent_run_id}'")
    assert sorted((r.data.params["x"], r.data.metrics["y"], r.info.status) for r in children) == [
        ("1.0", 2.0, "FINISHED"),
        ("3.0", 6.0, "FINISHED"),
    ]  # fmt: skip (x is declared a float)
    best = client.get_run(parent.data.tags["mlops_nb.sweep.best_run_id"])
    assert best.data.params["x"] == "3.0"
    assert "y is 6" in _printed(_download_json(shared, best.info.run_id, "job/tiny.ipynb", tmp_path / "dl2"))


# ---------------------------------------------------------------- registry and the panel's REST API


@pytest.fixture
def jp_server_config(jp_root_dir: Path, shared: Shared):
    # The server's root is a project whose pyproject.toml points at the shared server.
    (jp_root_dir / "pyproject.toml").write_text(
        f"[project]\nname = 'p'\n[tool.mlops-nb]\ntracking_uri = '{shared.uri}'\n"
    )
    return server_config()


async def test_a_model_registered_in_the_shared_store_is_served_by_the_panels_api(
    jp_fetch, jp_root_dir: Path, shared: Shared
) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.provenance import NotebookLocation
    from mlops_nb.registry import set_alias
    from mlops_nb.tracking import Tracker

    config = resolve_config(jp_root_dir)
    assert config.tracking_uri == shared.uri
    tracker = Tracker(notebook=NotebookLocation(jp_root_dir / "train.ipynb", "test"), config=config)
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    versions = []
    for accuracy in (0.8, 0.9):
        handle = tracker.start_cell_run(f"fit-{accuracy}", autolog=False)
        tracker.log_params({"C": str(accuracy)})
        tracker.log_metric("accuracy", accuracy)
        tracker.flush()
        versions.append(tracker.register_model(model, "shared-clf", "challenger", input_example=np.array([[0.0, 1.0]])))
        tracker.end_run(handle)
    tracker.close()
    set_alias(tracker.client, "shared-clf", "champion", versions[0].version, why="first model")

    code, data = await call(jp_fetch, "models", params={"q": "shared-clf"})
    assert code == 200, data
    assert [m["name"] for m in data["models"]] == ["shared-clf"]
    assert data["models"][0]["aliases"] == {"champion": "1", "challenger": "2"}
    code, data = await call(jp_fetch, "models", "shared-clf", "versions", "2")
    assert code == 200, data
    assert data["metrics"] == {"accuracy": 0.9} and data["run_id"] == versions[1].run_id
    assert data["signature"]["inputs"] and data["lineage"]["notebook"] == "train.ipynb"

    # The panel's promotion writes to the shared store: every client sees the move.
    code, data = await call(jp_fetch, "models", "shared-clf", "promotions", method="POST", body={"metric": "accuracy"})
    assert code == 200 and data["version"] == "2", data
    client = shared.client()
    assert str(client.get_model_version_by_alias("shared-clf", "champion").version) == "2"
    assert shared.sql("mlflow", "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
                      "shared-clf", "champion") == [(2,)]  # fmt: skip
    # The model files went through the server into the shared artifact folder.
    from mlops_nb.registry import model_files

    assert Path(model_files(client, client.get_model_version("shared-clf", "2")), "MLmodel").is_file()


# ---------------------------------------------------------------- pipelines

PIPELINE = """
params:
  x: 2
steps:
  first:
    notebook: first.ipynb
    params: {x: "${params.x}"}
  second:
    notebook: second.ipynb
    params: {y: "${steps.first.metrics.y}"}
"""


def test_a_pipeline_runs_then_is_cached_against_the_shared_store(shared: Shared, tmp_path: Path) -> None:
    from mlops_nb.jobs.batch.pipeline import run_pipeline

    root = _project(tmp_path, shared, "first")
    make_notebook(
        root / "second.ipynb",
        [("code", "y = 0.0", ["parameters"]), ("code", "%load_ext mlops_nb\n%mlops track --no-autolog", []),
         ("code", "z = y + 1\n%mlops log z", [])],
    )  # fmt: skip
    (root / "p.yaml").write_text(PIPELINE)
    config = resolve_config(root)
    first = run_pipeline(root / "p.yaml", params={"x": "5"}, config=config)
    assert first.ok and {s.name: s.state for s in first.steps} == {"first": "ran", "second": "ran"}, first.to_dict()
    client = shared.client()
    pipeline_run = client.get_run(first.run_id)
    assert pipeline_run.info.status == "FINISHED" and pipeline_run.data.tags["mlops_nb.kind"] == "pipeline"
    steps = {s.name: client.get_run(s.run_id) for s in first.steps}
    assert all(
        r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == first.run_id for r in steps.values()
    )
    assert steps["first"].data.metrics["y"] == 10.0
    assert steps["second"].data.params["y"] == "10.0" and steps["second"].data.metrics["z"] == 11.0

    again = run_pipeline(root / "p.yaml", params={"x": "5"}, config=config)
    assert {s.name: s.state for s in again.steps} == {"first": "cached", "second": "cached"}
    assert [s.run_id for s in again.steps] == [s.run_id for s in first.steps]
    jobs = client.search_runs([pipeline_run.info.experiment_id], "tags.mlops_nb.kind = 'job'")
    assert len(jobs) == 2  # the cached run started no job


# ---------------------------------------------------------------- the scheduler's database on the same PostgreSQL


def test_the_scheduler_database_on_the_same_postgresql_runs_a_job_into_the_shared_store(
    shared: Shared, tmp_path: Path, monkeypatch
) -> None:
    from mlops_nb.jobs.schedules.scheduler import run_now
    from mlops_nb.jobs.schedules.store import ScheduleStore, scheduler_url

    root = _project(tmp_path, shared, "nightly")
    url = shared.pg.url("scheduler")
    monkeypatch.setenv("MLOPS_NB_SCHEDULER_DB", url)
    config = resolve_config(root)
    assert scheduler_url(config) == url
    store = ScheduleStore.for_project(config)
    try:
        store.add("nightly", "0 2 * * *", "nightly.ipynb", params={"x": "4"})
        record = run_now(store, config, "nightly", wait=True)
        assert record.state == "succeeded" and record.trigger == "manual" and record.error is None, record
    finally:
        store.close()

    # A fresh store (another scheduler or the Jupyter server) reads the same records.
    again = ScheduleStore(url, project_root=root)
    try:
        [job] = again.history("nightly")
        assert job.state == "succeeded" and job.run_id == record.run_id
        assert again.get("nightly").last_state == "succeeded"
    finally:
        again.close()
    assert shared.sql("scheduler", "SELECT state, run_id FROM mlops_nb_jobs") == [("succeeded", record.run_id)]
    run = shared.client().get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["x"] == "4.0" and run.data.metrics["y"] == 8.0
    assert run.data.tags["mlops_nb.schedule"] == "nightly"


# ---------------------------------------------------------------- magics


def test_mlops_track_in_a_notebook_logs_into_the_shared_store(shared: Shared, monkeypatch, ip, project: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared.uri)

    def cell(source: str):
        return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)

    cell("alpha = 0.5\nlabel = 'baseline'\nepochs = 3")
    assert cell("%mlops track --experiment magic-shared").success
    assert cell("score = alpha * 2\n%mlops log score").success
    assert cell("%mlops end").success

    client = shared.client()
    exp = client.get_experiment_by_name("magic-shared")
    assert exp is not None
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.5", "label": "baseline", "epochs": "3"}
    assert run.data.metrics == {"score": 1.0}
    assert run.data.tags["mlops_nb.notebook"] == "analysis/train.ipynb"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "code")}
    assert "code/train.ipynb" in artifacts
