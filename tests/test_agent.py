"""The job agent on real kernels, real papermill and a real SQLite store: `mlops-nb run`
handed to a long-lived agent gives the same runs and results as a run in the command's
own process, with the command's environment; stopping, losing the agent and idling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import make_notebook, new_project, project_runs, run_cli, start_cli, train_notebook

pytestmark = pytest.mark.slow


@pytest.fixture
def agent_env():
    """Agents on (auto), outside CI, in a private runtime folder; every agent started
    there is stopped afterwards."""
    folder = tempfile.mkdtemp(prefix="mnb-")
    env = {"MLOPS_NB_AGENT": "auto", "XDG_RUNTIME_DIR": folder, "CI": "", "MLOPS_NB_AGENT_IDLE": "300"}
    yield env
    for lock in Path(folder).glob("mlops-nb-*/*.log"):
        for line in lock.read_text().splitlines():
            if " serving " in line:
                pid = int(line.split()[2])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    shutil.rmtree(folder, ignore_errors=True)


def _status(root: Path, env: dict) -> dict | None:
    done = run_cli("agent", "status", "--json", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["agent"]


def _wait(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_jobs_through_the_agent_store_what_a_run_in_the_command_stores(tmp_path: Path, agent_env: dict):
    root = new_project(tmp_path)
    train_notebook(root, body="import os\nscore = float(os.environ['SCORE'])\n%mlops log score")
    (root / "sub").mkdir()
    started = run_cli("agent", "start", cwd=root, env=agent_env)
    assert started.returncode == 0, started.stderr
    assert "job agent" in started.stdout and "running" in started.stdout
    pid = _status(root, agent_env)["pid"]

    # From another folder, with relative paths: they mean what they mean to the command.
    done = run_cli(
        "run",
        "../train.ipynb",
        "-p",
        "n_steps=2",
        "--output",
        "out.ipynb",
        "--json",
        cwd=root / "sub",
        env={**agent_env, "SCORE": "0.25"},
    )
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["status"] == "FINISHED" and first["params"] == {"n_steps": 2}
    assert first["output"] == str(root / "sub" / "out.ipynb") and (root / "sub" / "out.ipynb").is_file()
    status = _status(root, agent_env)
    assert status["pid"] == pid and status["jobs_done"] == 1  # the agent ran it

    # The kernel gets the environment of the command that sent the job, not the agent's.
    done = run_cli("run", "train.ipynb", "--json", cwd=root, env={**agent_env, "SCORE": "0.5"})
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout)
    assert _status(root, agent_env)["jobs_done"] == 2

    client, runs = project_runs(root)
    by_id = {r.info.run_id: r for r in runs}
    assert set(by_id) == {first["run_id"], second["run_id"]}  # %mlops track joined each job's run
    one, two = by_id[first["run_id"]], by_id[second["run_id"]]
    assert one.info.status == two.info.status == "FINISHED"
    assert one.data.params["n_steps"] == "2" and one.data.metrics["score"] == 0.25
    assert two.data.metrics["score"] == 0.5 and second["metrics"]["score"] == 0.5
    assert [m.value for m in client.get_metric_history(one.info.run_id, "loss")] == [0.5, 0.25]
    assert {"job/out.ipynb", "job/out.html"} <= {a.path for a in client.list_artifacts(one.info.run_id, "job")}

    # Bad input: one line, exit code 2, no run.
    bad = run_cli("run", "train.ipynb", "-p", "n_stepz=3", cwd=root, env=agent_env)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "n_stepz" in bad.stderr and "n_steps" in bad.stderr
    # A failing cell: exit code 1, the failing cell named, the run FAILED.
    failing = run_cli("run", "train.ipynb", "--json", cwd=root, env={**agent_env, "SCORE": "not a number"})
    assert failing.returncode == 1
    result = json.loads(failing.stdout)
    assert result["status"] == "FAILED" and result["failed_cell"]["index"] == 4
    assert "ValueError" in result["error"] and result["retryable"] is False  # a cell's error is not retried
    assert len(project_runs(root)[1]) == 3

    stopped = run_cli("agent", "stop", cwd=root, env=agent_env)
    assert stopped.returncode == 0 and f"job agent {pid} stopped" in stopped.stdout
    _wait(lambda: not _alive(pid), "the agent did not exit")
    assert _status(root, agent_env) is None


def test_sigterm_on_the_command_stops_the_job_in_the_agent(tmp_path: Path, agent_env: dict):
    root = new_project(tmp_path)
    train_notebook(root, body="import time\ntime.sleep(120)")
    assert run_cli("agent", "start", cwd=root, env=agent_env).returncode == 0
    proc = start_cli("run", "train.ipynb", "--json", cwd=root, env=agent_env)
    try:
        _wait(
            lambda: (runs := project_runs(root)[1]) and runs[0].data.metrics.get("loss") is not None,
            "the job never got going",
            90,
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert json.loads(out)["status"] == "KILLED"
    _, (run,) = project_runs(root)
    assert run.info.status == "KILLED"
    status = _status(root, agent_env)
    assert status is not None and status["jobs_running"] == 0  # the agent lives on


def test_an_agent_killed_mid_job_leaves_no_run_running(tmp_path: Path, agent_env: dict):
    root = new_project(tmp_path)
    train_notebook(root, body="import time\ntime.sleep(120)")
    assert run_cli("agent", "start", cwd=root, env=agent_env).returncode == 0
    pid = _status(root, agent_env)["pid"]
    proc = start_cli("run", "train.ipynb", cwd=root, env=agent_env)
    try:
        _wait(
            lambda: (runs := project_runs(root)[1]) and runs[0].data.metrics.get("loss") is not None,
            "the job never got going",
            90,
        )
        os.kill(pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0 and "job agent stopped during the job" in err
    _, (run,) = project_runs(root)
    assert run.info.status == "FAILED"


def test_a_run_starts_an_agent_for_the_next_one_which_exits_when_idle(tmp_path: Path, agent_env: dict):
    root = new_project(tmp_path)
    make_notebook(root / "small.ipynb", [("code", "x = 1", ["parameters"]), ("code", "y = x * 2", [])])

    # Under CI, and with MLOPS_NB_AGENT=off, no agent is started.
    for env in ({**agent_env, "CI": "true"}, {**agent_env, "MLOPS_NB_AGENT": "off"}):
        assert run_cli("run", "small.ipynb", cwd=root, env=env).returncode == 0
        assert not list(Path(agent_env["XDG_RUNTIME_DIR"]).glob("mlops-nb-*/*.log"))

    env = {**agent_env, "MLOPS_NB_AGENT_IDLE": "4"}
    done = run_cli("run", "small.ipynb", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    _wait(lambda: _status(root, env) is not None, "no agent was started after the run")
    pid = _status(root, env)["pid"]
    done = run_cli("run", "small.ipynb", "-p", "x=5", "--json", cwd=root, env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["params"] == {"x": 5}
    assert _status(root, env)["jobs_done"] == 1
    _wait(lambda: not _alive(pid), "the idle agent did not exit", 60)
    # It shut its waiting kernel down on the way out.
    kernels = subprocess.run(["pgrep", "-f", "mlops-nb-kernels-"], capture_output=True, text=True).stdout.split()
    assert not [
        k for k in kernels if Path(f"/proc/{k}").exists() and f"PPid:\t{pid}\n" in Path(f"/proc/{k}/status").read_text()
    ]
    assert len(project_runs(root)[1]) == 4

    bad = run_cli("run", "small.ipynb", cwd=root, env={**agent_env, "MLOPS_NB_AGENT": "sometimes"})
    assert bad.returncode == 2 and "MLOPS_NB_AGENT" in bad.stderr


def test_an_agent_running_other_code_steps_aside(tmp_path: Path, agent_env: dict):
    from mlops_nb.jobs.run import agent

    root = new_project(tmp_path)
    assert run_cli("agent", "start", cwd=root, env=agent_env).returncode == 0
    pid = _status(root, agent_env)["pid"]
    sock_dir = next(Path(agent_env["XDG_RUNTIME_DIR"]).glob("mlops-nb-*"))
    (sock_path,) = sock_dir.glob("*.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(sock_path))
        conn.sendall(json.dumps({"op": "run", "build": "another version", "job": {}}).encode() + b"\n")
        answer = json.loads(conn.makefile().readline())
    assert answer["event"] == "mismatch"  # the command then runs the job itself
    _wait(lambda: not _alive(pid), "the outdated agent did not exit")
    assert agent.agent_mode({"MLOPS_NB_AGENT": "off"}) == "off"
