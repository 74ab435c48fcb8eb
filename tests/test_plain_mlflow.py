"""Notebooks that call MLflow directly, as MLflow's own example notebooks do: in a job
(``mlops-nb run``, ``run_notebook``) their params, metrics and models land in the job's
run in the project store; interactively after ``%load_ext mlops_nb`` they land in the
project store; nothing is written beside the notebook. Real kernels, papermill, SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
from helpers import git, make_notebook, new_project

from mlops_nb.config import resolve_config
from mlops_nb.jobs.run.execution import run_notebook
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow

IMPORTS = (
    "import mlflow\nimport mlflow.sklearn\nfrom sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\nX, y = load_iris(return_X_y=True)"
)
# MLflow's scikit-learn example, as a notebook: one run with params, metrics and a model.
EXAMPLE = """\
with mlflow.start_run():
    mlflow.log_param("C", C)
    model = LogisticRegression(C=C, max_iter=500).fit(X, y)
    mlflow.log_metric("accuracy", model.score(X, y))
    mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])"""
# A loop of runs: after the first, each is a child of the job's run.
LOOP = """\
for c in (0.1, 1.0):
    with mlflow.start_run():
        mlflow.log_param("c", c)
        mlflow.log_metric("c_accuracy", LogisticRegression(C=c, max_iter=500).fit(X, y).score(X, y))"""


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What %load_ext sets in this process's environment is undone after each test."""
    monkeypatch.setenv("MLFLOW_RUN_CONTEXT", "{}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")


def _project(tmp_path: Path, *cells: tuple[str, str, list[str]]) -> tuple[Path, Path]:
    root = new_project(tmp_path)
    nb = make_notebook(root / "nbs" / "wine.ipynb", [("code", "C = 0.5", ["parameters"]), *cells])
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root, nb


def _stray(folder: Path) -> list[str]:
    """MLflow's defaults written into ``folder`` (the user's tree)."""
    return sorted(p.name for p in folder.iterdir() if p.name in ("mlflow.db", "mlruns", "mlartifacts"))


def _models_of(client, run) -> list:
    return list(client.search_logged_models([run.info.experiment_id]))


def test_mlflow_example_notebook_through_the_cli_lands_in_the_job_run_and_reproduces(tmp_path: Path):
    root, nb = _project(tmp_path, ("code", IMPORTS, []), ("code", EXAMPLE, []), ("code", LOOP, []))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-m", "mlops_nb", "run", str(nb.relative_to(root)), "-p", "C=0.3", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    client = get_client(resolve_config(root, environ={}))
    run = client.get_run(job["run_id"])

    # The notebook's own run is the job's run: its params and metrics are there.
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.3"
    assert 0.5 < run.data.metrics["accuracy"] <= 1.0
    assert run.data.tags["mlflow.source.name"] == "nbs/wine.ipynb"
    # The loop's runs are children of the job's run, in its experiment.
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert sorted(r.data.params["c"] for r in children) == ["0.1", "1.0"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.tags["mlflow.source.name"] == "nbs/wine.ipynb" for r in children)
    # The model names the notebook as its source, not ipykernel_launcher.py.
    (model,) = _models_of(client, run)
    assert model.source_run_id == run.info.run_id
    assert model.tags["mlflow.source.name"] == "nbs/wine.ipynb"
    assert Path(model.artifact_location.removeprefix("file://")).is_relative_to(root / ".mlops")
    # Nothing beside the notebook or in the project: the user's git tree stays clean.
    assert _stray(nb.parent) == [] and _stray(root) == []
    assert git(root, "status", "--porcelain") == ""

    # reproduce compares the notebook's own metrics.
    again = subprocess.run(
        [sys.executable, "-m", "mlops_nb", "reproduce", run.info.run_id, "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    verdict = json.loads(again.stdout)
    assert again.returncode == 0 and verdict["reproduced"] is True, again.stdout + again.stderr
    assert "accuracy" in [m["name"] for m in verdict["metrics"]]


def test_autologging_and_a_failing_cell_in_a_job_the_runner_status_wins(tmp_path: Path):
    root, nb = _project(
        tmp_path,
        ("code", IMPORTS + "\nimport warnings\nmlflow.sklearn.autolog(log_models=False)", []),
        # A user's `with` block ends; the job's run stays active for what follows.
        (
            "code",
            "with mlflow.start_run() as mine:\n    LogisticRegression(C=C, max_iter=500).fit(X, y)\n"
            "assert mlflow.active_run().info.run_id == mine.info.run_id\n"
            "warnings.warn(FutureWarning('the user warns'))",
            [],
        ),
        ("code", "mlflow.log_metric('after', 1.0)\nraise RuntimeError('data missing')", []),
    )
    result = run_notebook(nb, {}, config=resolve_config(root, environ={}))
    assert result.status == "FAILED" and "data missing" in (result.error or "")
    run = get_client(resolve_config(root, environ={})).get_run(result.run_id)
    assert run.info.status == "FAILED"  # not FINISHED by the user's `with` block
    assert run.data.params["C"] == "0.5"  # autologged by the fit
    assert "training_accuracy_score" in run.data.metrics and run.data.metrics["after"] == 1.0
    executed = nbformat.read(result.output, as_version=4)
    stderr = "".join(
        o.get("text", "") for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"
    )
    assert "the user warns" in stderr  # the user's own warning is shown
    assert "y_pred" not in stderr  # autologging's own metric calls warn no more
    assert _stray(nb.parent) == []


def test_plain_mlflow_after_load_ext_goes_to_the_project_store(ip, project: Path, client):
    import mlflow

    import mlops_nb

    mlflow.set_tracking_uri(None)  # as in a new kernel: nothing set yet
    mlops_nb.load_ipython_extension(ip)  # what %load_ext does in a new kernel
    code = (
        f"{IMPORTS}\nmlflow.set_experiment('wine-quality')\n"
        "with mlflow.start_run() as r:\n    mlflow.log_metric('accuracy', 0.9)\n"
        "    mlflow.sklearn.log_model(LogisticRegression(max_iter=500).fit(X, y), name='model',"
        " pip_requirements=['scikit-learn'])\n"
    )
    assert ip.run_cell(code).success
    run_id = ip.user_ns["r"].info.run_id
    run = client.get_run(run_id)
    assert run.data.metrics == {"accuracy": 0.9}
    assert run.data.tags["mlflow.source.name"] == "analysis/train.ipynb"
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.tags["mlflow.source.name"] == "analysis/train.ipynb"
    # The new experiment keeps its artifacts in the project's store, not ./mlruns.
    assert Path(model.artifact_location.removeprefix("file://")).is_relative_to(project / ".mlops")
    assert _stray(project / "analysis") == [] and _stray(project) == []


def test_autologging_by_mlops_hides_its_own_warnings_and_keeps_the_users(ip, client):
    code = """
%%mlops track --name fit
import warnings
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
LogisticRegression(max_iter=500).fit(X, y)
warnings.warn(FutureWarning("mine"))
"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ip.run_cell(code).success
    texts = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert "mine" in texts
    assert not [t for t in texts if "y_pred" in t], texts
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="attributes.run_name = 'fit'"
    )
    assert "training_log_loss" in run.data.metrics  # the metric whose computation warned


def test_parameters_the_notebook_logs_itself_match_what_the_job_recorded(tmp_path: Path):
    # The job records -p values as MLflow's log_param writes them (str()): a notebook that
    # logs its own parameters into the job's run must not hit "Changing param values is
    # not allowed" for a bool, None or a list of text.
    root = new_project(tmp_path)
    nb = make_notebook(
        root / "nbs" / "flags.ipynb",
        [
            ("code", "flag = True\nnames = ['a', 'b']\nlimit: int | None = None", ["parameters"]),
            (
                "code",
                "import mlflow\nwith mlflow.start_run():\n"
                "    mlflow.log_params({'flag': flag, 'names': names, 'limit': limit})\n"
                "    mlflow.log_metric('n', len(names))",
                [],
            ),
        ],
    )
    config = resolve_config(root, environ={})
    result = run_notebook(nb, {"flag": False, "names": ["x"], "limit": None}, config=config)
    assert result.status == "FINISHED", result.error
    params = get_client(config).get_run(result.run_id).data.params
    assert params["flag"] == "False" and params["names"] == "['x']" and params["limit"] == "None"
