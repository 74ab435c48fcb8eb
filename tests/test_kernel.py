"""Real kernels: the example notebook headless through papermill, a kernel that exits,
and a kernel that is killed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO, artifact_text, git, make_notebook, runs_of

pytestmark = pytest.mark.slow


@pytest.fixture
def train_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "train.ipynb", root / "notebooks" / "train.ipynb")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{root / '.mlops' / 'mlflow.db'}")


def test_train_notebook_headless_through_papermill(train_project: Path, monkeypatch):
    import papermill

    monkeypatch.setenv("MLOPS_NB_NOTEBOOK", "train.ipynb")
    papermill.execute_notebook(
        str(train_project / "notebooks" / "train.ipynb"),
        str(train_project / "out.ipynb"),
        parameters={"n_estimators": 7, "epochs": 5},
        cwd=str(train_project / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    client = _client(train_project)
    runs = runs_of(client)
    session = next(r for r in runs if r.data.tags["mlops_nb.kind"] == "notebook")
    forest = next(r for r in runs if r.info.run_name == "forest")
    assert session.info.status == forest.info.status == "FINISHED"
    assert session.data.params["n_estimators"] == "7"  # the injected value, not the default
    assert session.data.params["epochs"] == "5"
    assert session.data.tags["mlops_nb.notebook"] == "notebooks/train.ipynb"
    assert session.data.tags["mlflow.source.git.commit"] == git(train_project, "rev-parse", "HEAD")
    assert forest.data.tags["mlflow.parentRunId"] == session.info.run_id
    assert forest.data.params["n_estimators"] == "7"  # autologged by the fit
    assert 0.5 < forest.data.metrics["test_accuracy"] <= 1.0
    history = client.get_metric_history(session.info.run_id, "sgd_test_accuracy")
    assert [m.step for m in history] == list(range(5))
    cells = artifact_text(client, session.info.run_id, "code/cells.py")
    assert "partial_fit" in cells and "not captured" not in cells


def _kernel(cwd: Path, env: dict[str, str]):
    import os

    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name="python3", cwd=str(cwd), env={**os.environ, **env})


def _execute(kc, code: str) -> dict:
    reply = kc.execute_interactive(code, timeout=120)
    return reply["content"]


def test_kernel_exit_ends_the_run_and_flushes_metrics(train_project: Path):
    km, kc = _kernel(train_project / "notebooks", {"JPY_SESSION_NAME": "notebooks/train.ipynb"})
    try:
        assert _execute(kc, "%load_ext mlops_nb\n%mlops track --no-autolog")["status"] == "ok"
        code = "import mlops_nb as mnb\nfor i in range(500):\n    mnb.log_metric('loss', 1 / (i + 1), step=i)"
        assert _execute(kc, code)["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)  # a clean exit, as when the notebook is closed
    (run,) = runs_of(_client(train_project))
    assert run.info.status == "FINISHED"
    assert len(_client(train_project).get_metric_history(run.info.run_id, "loss")) == 500


def test_killed_kernel_run_is_marked_killed_by_the_next_kernel(train_project: Path):
    env = {"JPY_SESSION_NAME": "notebooks/train.ipynb"}
    km, kc = _kernel(train_project / "notebooks", env)
    try:
        assert _execute(kc, "%load_ext mlops_nb\n%mlops track --no-autolog")["status"] == "ok"
    finally:
        kc.stop_channels()
        import os
        import signal

        os.kill(km.provisioner.pid, signal.SIGKILL)  # no atexit: the run stays RUNNING
        km.shutdown_kernel(now=True)
    (left,) = runs_of(_client(train_project))
    assert left.info.status == "RUNNING"

    km, kc = _kernel(train_project / "notebooks", env)
    try:
        assert _execute(kc, "%load_ext mlops_nb\n%mlops track --no-autolog")["status"] == "ok"
        # The kernel survives a failing cell and a failing tracked cell.
        assert _execute(kc, "1/0")["status"] == "error"
        assert _execute(kc, "%%mlops track --name bad\nraise ValueError('nope')")["status"] == "error"
        assert _execute(kc, "ok = 1\nok")["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    client = _client(train_project)
    assert client.get_run(left.info.run_id).info.status == "KILLED"
    statuses = {r.info.run_name: r.info.status for r in runs_of(client)}
    assert statuses["bad"] == "FAILED"


def test_a_failing_headless_notebook_ends_its_run_failed(train_project: Path, monkeypatch):
    import papermill

    nb = make_notebook(
        train_project / "notebooks" / "broken.ipynb",
        [
            ("code", "threshold = 1", ["parameters"]),
            ("code", "%load_ext mlops_nb\n%mlops track --no-autolog", []),
            ("code", "raise RuntimeError('data missing')", []),
            ("code", "never = True", []),
        ],
    )
    monkeypatch.setenv("MLOPS_NB_NOTEBOOK", "broken.ipynb")
    with pytest.raises(papermill.PapermillExecutionError, match="data missing"):
        papermill.execute_notebook(
            str(nb),
            str(train_project / "broken.out.ipynb"),
            cwd=str(nb.parent),
            kernel_name="python3",
            progress_bar=False,
        )
    (run,) = runs_of(_client(train_project), "broken")
    assert run.info.status == "FAILED"
    assert "raise RuntimeError" in artifact_text(_client(train_project), run.info.run_id, "code/cells.py")


def test_headless_notebook_keeps_the_final_chart_values(train_project: Path, monkeypatch):
    import nbformat
    import papermill

    monkeypatch.setenv("MLOPS_NB_NOTEBOOK", "train.ipynb")
    out = train_project / "out.ipynb"
    papermill.execute_notebook(
        str(train_project / "notebooks" / "train.ipynb"),
        str(out),
        parameters={"epochs": 3},
        cwd=str(train_project / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    streams = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )
    # The forest cell logs test_accuracy once: the saved notebook keeps its final value in the
    # line that closes the tracked cell (a value logged once is not charted).
    assert re.search(r"\(forest\) ended FINISHED in .*\n  .*test_accuracy = 0\.\d", streams), streams
