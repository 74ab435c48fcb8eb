"""Jobs on a Dask cluster against a shared MLflow server on PostgreSQL, all real and on
127.0.0.1: a private PostgreSQL cluster, `mlflow server` on it, a Dask scheduler and two
single-threaded workers (tests/services.py starts and stops them).

`--executor dask://HOST:PORT` on `mlops-nb run`, `sweep` and `pipeline run`, and the
project's `executor` setting for the scheduler; a worker killed mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import make_notebook
from services import dask_cluster, mlflow_server, postgres

from mlops_nb.config import resolve_config
from mlops_nb.jobs.batch.sweep import sweep
from mlops_nb.jobs.run.executors import KEY_TAG, LOST_TAG, WORKER_TAG, DaskExecutor
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """A project pointed at `mlflow server` on a private PostgreSQL, and a Dask cluster."""
    base = tmp_path_factory.mktemp("cluster")
    with postgres(base) as pg, mlflow_server(pg.url("mlflow"), base / "artifacts") as server:
        root = base / "proj"
        (root / ".mlops").mkdir(parents=True)
        (root / "pyproject.toml").write_text(
            f"[project]\nname = 'p'\n\n[tool.mlops-nb]\ntracking_uri = '{server.uri}'\n"
        )
        make_notebook(
            root / "train.ipynb",
            [
                ("code", "n = 1\ndelay = 0.0", ["parameters"]),
                (
                    "code",
                    "import time, os\ntime.sleep(delay)\nimport mlops_nb as mnb\nmnb.log_metric('score', n * 2.0)",
                    [],
                ),
            ],
        )
        make_notebook(
            root / "broken.ipynb",
            [("code", "n = 1", ["parameters"]), ("code", "raise ValueError('no data for n=%d' % n)", [])],
        )
        with dask_cluster(n_workers=2, nthreads=1, cwd=root) as cluster:
            yield root, server, cluster


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_nb.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "MLOPS_NB_EXECUTOR"},
    )


def _runs(root: Path, experiment: str):
    client = get_client(resolve_config(root, environ={}))
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id], max_results=500) if exp else [])


def test_a_sweep_of_8_runs_across_both_workers_into_the_postgresql_store(shared):
    root, server, cluster = shared
    done = _cli(
        "sweep",
        "train.ipynb",
        "-p",
        "n=1,2,3,4,5,6,7,8",
        "--metric",
        "score",
        "--experiment",
        "sweep8",
        "--executor",
        cluster.address.replace("tcp://", "dask://"),
        "--json",
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [j["status"] for j in result["jobs"]] == ["FINISHED"] * 8
    assert result["jobs"][0]["metrics"]["score"] == 16.0  # best first
    client, runs = _runs(root, "sweep8")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result["parent_run_id"]]
    assert sorted(r.data.params["n"] for r in children) == [str(i) for i in range(1, 9)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags[WORKER_TAG] for r in children}) == 2  # both workers ran jobs
    # The store behind the server is PostgreSQL, and the executed notebooks are in its artifacts.
    assert server.backend_uri.startswith("postgresql://")
    files = [f.path for f in client.list_artifacts(children[0].info.run_id, "job")]
    assert "job/train.ipynb" in files


def test_run_on_the_cluster_prints_and_exits_as_a_local_run(shared):
    root, _, cluster = shared
    address = cluster.address.replace("tcp://", "dask://")
    ok = _cli("run", "train.ipynb", "-p", "n=21", "--executor", address, cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("mlops-nb: FINISHED in ")
    run_id = ok.stdout.split("run ")[1].split()[0]
    client = get_client(resolve_config(root, environ={}))
    run = client.get_run(run_id)
    assert run.data.metrics["score"] == 42.0 and run.data.tags[WORKER_TAG].startswith("tcp://127.0.0.1:")
    assert "executed notebook:" in ok.stdout

    failed = _cli("run", "broken.ipynb", "-p", "n=3", "--executor", address, cwd=root)
    assert failed.returncode == 1
    assert "cell 2 failed: ValueError: no data for n=3" in failed.stderr
    assert failed.stdout.startswith("mlops-nb: FAILED")


def test_bad_or_unreachable_executor_is_one_line(shared):
    root, _, _ = shared
    bad = _cli("run", "train.ipynb", "--executor", "spark://x:1", cwd=root)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "mlops-nb: error: --executor must be 'local' or dask://HOST:PORT (a Dask scheduler's address), not 'spark://x:1'"
    ]
    gone = _cli("sweep", "train.ipynb", "-p", "n=1,2", "--executor", "dask://127.0.0.1:9", cwd=root, timeout=120)
    assert gone.returncode == 1
    lines = gone.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "mlops-nb: error: cannot reach the Dask scheduler at dask://127.0.0.1:9"
    )


def test_pipeline_and_scheduled_jobs_run_on_the_cluster(shared, monkeypatch: pytest.MonkeyPatch):
    root, _, cluster = shared
    address = cluster.address.replace("tcp://", "dask://")
    (root / "pipe.yaml").write_text(
        "name: twostep\nsteps:\n  first:\n    notebook: train.ipynb\n    params: {n: 2}\n"
        "  second:\n    notebook: train.ipynb\n    needs: [first]\n    params: {n: 3}\n"
    )
    done = _cli("pipeline", "run", "pipe.yaml", "--executor", address, "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["state"] for s in result["steps"]] == ["ran", "ran"]
    client = get_client(resolve_config(root, environ={}))
    for step in result["steps"]:
        assert client.get_run(step["run_id"]).data.tags[WORKER_TAG].startswith("tcp://")

    # The scheduler follows the project's `executor` setting.
    from mlops_nb.jobs.schedules.scheduler import run_now
    from mlops_nb.jobs.schedules.store import ScheduleStore, scheduler_url

    monkeypatch.setenv("MLOPS_NB_EXECUTOR", address)
    config = resolve_config(root)
    assert config.executor == address
    store = ScheduleStore(scheduler_url(config), project_root=config.project_root)
    store.add("nightly", "0 3 * * *", "train.ipynb", params={"n": "5"})
    record = run_now(store, config, "nightly", wait=True)
    assert record.state == "succeeded", record.error
    run = client.get_run(record.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["score"] == 10.0
    assert run.data.tags[WORKER_TAG].startswith("tcp://") and run.data.tags["mlops_nb.schedule"] == "nightly"


def test_sigterm_stops_the_job_on_its_worker(shared):
    root, _, cluster = shared
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_nb.cli",
            "run",
            "train.ipynb",
            "-p",
            "delay=120",
            "--experiment",
            "stopped",
            "--executor",
            cluster.address.replace("tcp://", "dask://"),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = get_client(resolve_config(root, environ={}))
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name("stopped")
        running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
        time.sleep(0.3)
    assert running, "the job never started"
    time.sleep(2)  # inside the notebook's long cell
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert out.startswith("mlops-nb: KILLED")
    assert client.get_run(running[0].info.run_id).info.status == "KILLED"


def test_a_worker_killed_mid_sweep_is_retried_and_nothing_is_left_running(shared):
    """Last in this module: it leaves the cluster with one worker."""
    root, _, cluster = shared
    config = resolve_config(root, environ={})
    client = get_client(config)
    outcome: dict = {}

    def go() -> None:
        with DaskExecutor(cluster.address) as executor:
            outcome["result"] = sweep(
                root / "train.ipynb",
                {"n": "1,2,3,4,5,6,7,8", "delay": "3"},
                experiment="lost",
                metric="score",
                config=config,
                executor=executor,
            )

    from distributed import Client

    with Client(cluster.address, set_as_default=False) as dask:
        pids = {pid: addr for addr, pid in dask.run(os.getpid).items()}
    addresses = [pids[pid] for pid in cluster.worker_pids()]
    thread = threading.Thread(target=go)
    thread.start()
    # Wait until the first worker is inside a job, then kill it (and its kernel).
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        exp = client.get_experiment_by_name("lost")
        running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
        busy = {r.data.tags.get(WORKER_TAG) for r in running if r.data.tags.get(WORKER_TAG)}
        victim = next((i for i, addr in enumerate(addresses) if addr in busy), None)
        time.sleep(0.3)
    assert victim is not None, "no job started on a worker"
    cluster.kill_worker(victim)
    thread.join(600)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result.status == "FINISHED" and [j.status for j in result.jobs] == ["FINISHED"] * 8, [
        (j.status, j.error) for j in result.jobs
    ]
    assert sorted(j.params["n"] for j in result.jobs) == list(range(1, 9))
    _, runs = _runs(root, "lost")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # The lost attempt ended FAILED (or KILLED, when a tracker on its host found its
    # process gone first), saying why.
    lost = [r for r in runs if r.info.status != "FINISHED"]
    assert lost and all("worker lost mid-job" in r.data.tags[LOST_TAG] for r in lost)
    assert {r.data.tags[WORKER_TAG] for r in lost} == {addresses[victim]}
    # The lost attempt and its retry are the same job (one key), retried on the other worker.
    finished_keys = {r.data.tags[KEY_TAG] for r in runs if r.info.status == "FINISHED" and KEY_TAG in r.data.tags}
    assert {r.data.tags[KEY_TAG] for r in lost} <= finished_keys
