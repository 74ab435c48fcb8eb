"""The mlops-nb command, run as a user runs it: a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_nb", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def store_with_runs(project: Path) -> Path:
    nb = NotebookLocation(project / "analysis" / "train.ipynb", "test")
    tracker = Tracker(notebook=nb, fluent=False)
    for i in range(3):
        h = tracker.start_cell_run(f"run-{i}", autolog=False)
        tracker.log_metric("accuracy", 0.8 + i / 100)
        tracker.end_run(h)
    return project


def test_runs_lists_the_project_store_newest_first(store_with_runs: Path):
    out = cli("runs", cwd=store_with_runs / "analysis")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert str(store_with_runs / ".mlops" / "mlflow.db") in lines[0]
    names = [line.split()[1] for line in lines[3:6]]
    assert names == ["run-2", "run-1", "run-0"]
    assert "accuracy=0.82" in out.stdout and "analysis/train.ipynb" in out.stdout


def test_runs_json_and_limit(store_with_runs: Path):
    out = cli("runs", "-n", "2", "--json", cwd=store_with_runs)
    data = json.loads(out.stdout)
    assert [r["name"] for r in data["runs"]] == ["run-2", "run-1"]
    assert data["more"] is True
    assert data["runs"][0]["metrics"] == {"accuracy": pytest.approx(0.82)}


def test_status_says_why(project: Path):
    out = cli("status", "--json", cwd=project / "analysis")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["store"] == f"sqlite:///{project / '.mlops' / 'mlflow.db'}"
    assert "holds .git" in status["store_reason"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["runs", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["runs", "-n", "0"], 2, "-n must be at least 1"),
        (["runs", "--experiment", "nope"], 2, "no experiment named 'nope'"),
    ],
)
def test_bad_usage_exits_2_with_one_line(store_with_runs: Path, args, code, message):
    out = cli(*args, cwd=store_with_runs)
    assert out.returncode == code
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unreachable_server_exits_1_naming_it(project: Path):
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    out = subprocess.run(
        [sys.executable, "-m", "mlops_nb", "runs"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=60,
    )
    assert out.returncode == 1
    assert uri in out.stderr and out.stderr.count("\n") == 1
