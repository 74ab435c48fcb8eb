"""The mlops-nb command, run as a user runs it: a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from services import free_port

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

    uri = f"http://127.0.0.1:{free_port()}"
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


def test_project_may_come_after_the_command_too(store_with_runs: Path, tmp_path: Path):
    """Issue 13: `mlops-nb runs --project DIR` was refused ("unrecognized arguments")."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = str(store_with_runs / ".mlops" / "mlflow.db")
    for args in (["runs", "--project", str(store_with_runs)], ["--project", str(store_with_runs), "runs"]):
        out = cli(*args, "--json", cwd=elsewhere)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert store in data["store"] and [r["name"] for r in data["runs"]] == ["run-2", "run-1", "run-0"]
    out = cli("status", "--json", "--project", str(store_with_runs / "analysis"), cwd=elsewhere)
    assert out.returncode == 0 and store in json.loads(out.stdout)["store"], out.stderr
    out = cli("schedule", "list", "--project", str(store_with_runs), cwd=elsewhere)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("args", [["runs", "--json"], ["runs"], ["status"], ["schedule", "list", "--json"], ["--help"]])
def test_a_closed_stdout_ends_the_command_quietly(store_with_runs: Path, args, unbuffered):
    """Issue 13: `mlops-nb runs --json | head -c 400` printed a BrokenPipeError traceback.
    Here the reader is gone before the command writes anything, so every write fails: in
    the command (unbuffered) or in the last flush (buffered)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mlops_nb", *args],
            cwd=store_with_runs,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        os.close(write)
    assert proc.stderr == ""
    if args != ["--help"]:  # argparse ignores a failed write of its help itself, and exits 0 when it can
        assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a command whose reader left


def test_runs_piped_into_head_prints_no_traceback(store_with_runs: Path):
    out = subprocess.run(
        f"'{sys.executable}' -m mlops_nb runs --json | head -c 40",
        shell=True,
        cwd=store_with_runs,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.startswith("{") and len(out.stdout) == 40
    assert out.stderr == ""
