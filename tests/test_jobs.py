"""Headless notebook jobs on real kernels, real papermill and a real SQLite store:
`mlops-nb run` and `run_notebook`, bad input, failures, timeouts, signals, parallel jobs."""

from __future__ import annotations

import json
import signal
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import make_notebook, new_project, project_runs, run_cli, start_cli, train_notebook

from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow


def test_run_is_one_mlflow_run_with_params_metrics_and_the_executed_notebook(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root)
    done = run_cli("run", "train.ipynb", "-p", "n_steps=4", "-p", "label=1.10", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "FINISHED" and result["ok"] is True
    assert result["params"] == {"n_steps": 4, "label": "1.10"}  # no quoting, no coercion of "1.10"

    client, runs = project_runs(root)
    assert [r.info.run_id for r in runs] == [result["run_id"]]  # %mlops track joined the job's run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["n_steps"] == "4" and run.data.params["label"] == "1.10"
    assert run.data.metrics["score"] == 0.75
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.5, 0.25, 0.5 / 3, 0.125]
    assert run.data.tags["mlops_nb.kind"] == "job"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "job")}
    assert {"job/train.ipynb", "job/train.html"} <= artifacts
    executed = json.loads(Path(result["output"]).read_text())
    assert any("label is 1.10" in "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))


def test_a_failing_notebook_ends_failed_with_its_cell_and_a_junit_report(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root, body="x = 1\nraise ValueError('bad data in fold 3')")
    done = run_cli("run", "train.ipynb", "-p", "n_steps=2", "--junit", "report.xml", cwd=root)  # an injected cell too
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "cell 4 failed: ValueError: bad data in fold 3" in done.stderr
    _, (run,) = project_runs(root)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlops_nb.job.failed_cell"] == "4"
    assert "bad data in fold 3" in run.data.tags["mlops_nb.error"]
    suite = ET.parse(root / "report.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert "cell 4" in failure.get("message") and "raise ValueError" in failure.text


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.ipynb"], "notebook missing.ipynb not found"),
        (["train.ipynb", "-p", "n_step=4"], "n_steps (int"),
        (["train.ipynb", "-p", "n_steps=1.5"], "n_steps"),
        (["train.ipynb", "-p", "n_steps"], "NAME=VALUE"),
        (["train.ipynb", "--timeout", "-5"], "--timeout must be more than 0"),
        (["train.ipynb", "--timeout", "soon"], "--timeout must be a number"),
        (["train.ipynb", "-f", "bad.yaml"], "bad.yaml"),
        (["plain.ipynb", "-p", "a=1"], "parameters"),
        (["train.ipynb", "--kernel", "nope"], "no kernel named 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run(tmp_path: Path, args, message):
    root = new_project(tmp_path)
    train_notebook(root)
    make_notebook(root / "plain.ipynb", [("code", "print(1)", [])])
    (root / "bad.yaml").write_text("n_steps: [1, 2\n")
    done = run_cli("run", *args, cwd=root, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlops-nb: error:") and message in lines[0], lines
    assert project_runs(root)[1] == []


def test_whole_job_timeout_kills_the_kernel_and_keeps_the_partial_notebook(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root, body="import time\nprint('started the long part', flush=True)\ntime.sleep(120)")
    done = run_cli("run", "train.ipynb", "--timeout", "20", "--json", cwd=root)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "FAILED" and "timed out after 20 s" in result["error"]
    assert result["retryable"] is True  # a scheduler may try it again
    _, (run,) = project_runs(root)
    assert run.info.status == "FAILED"
    assert Path(result["output"]).exists()


def test_a_kernel_killed_mid_job_fails_the_job_and_leaves_nothing_running(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root, body="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    done = run_cli("run", "train.ipynb", "--json", cwd=root)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "FAILED"
    assert "dead" in result["error"].lower() or "died" in result["error"].lower(), result["error"]
    assert result["retryable"] is True
    _, runs = project_runs(root)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert Path(result["output"]).exists()


def test_sigterm_shuts_the_kernel_down_and_ends_the_run_killed(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root, body="import os, time\nprint('kernel pid', os.getpid(), flush=True)\ntime.sleep(120)")
    proc = start_cli("run", "train.ipynb", "--json", cwd=root)
    try:
        deadline = time.monotonic() + 90
        while True:
            runs = project_runs(root)[1]
            if runs and runs[0].info.status == "RUNNING" and runs[0].data.metrics.get("loss") is not None:
                break
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert json.loads(out)["status"] == "KILLED"
    _, (run,) = project_runs(root)
    assert run.info.status == "KILLED"


def test_eight_parallel_jobs_on_the_embedded_store_lose_nothing(tmp_path: Path):
    from mlops_nb.jobs.run.execution import run_notebook

    root = new_project(tmp_path)
    make_notebook(
        root / "many.ipynb",
        [
            ("code", "job = 0", ["parameters"]),
            ("code", "import mlops_nb as mnb\nfor i in range(50):\n    mnb.log_metric('m', job * 100 + i)", []),
        ],
    )
    get_client(resolve_config(root, environ={}))  # the store is created once, before fanning out
    results: list = []

    def one(job: int) -> None:
        results.append(run_notebook(root / "many.ipynb", {"job": job}, experiment="parallel"))

    threads = [threading.Thread(target=one, args=(j,)) for j in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(r.status for r in results) == ["FINISHED"] * 8, [r.error for r in results]
    client, runs = project_runs(root)
    assert len(runs) == 8
    assert sorted(int(r.data.params["job"]) for r in runs) == list(range(8))
    for r in runs:
        job = int(r.data.params["job"])
        history = client.get_metric_history(r.info.run_id, "m")
        assert sorted(m.value for m in history) == [job * 100 + i for i in range(50)]


def test_sweep_runs_the_grid_as_child_runs_and_names_the_best(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root, body="final = rate * n_steps\n%mlops log final")
    done = run_cli(
        "sweep",
        "train.ipynb",
        "-p",
        "n_steps=1,2",
        "-p",
        "rate=0.5,1.0",
        "--workers",
        "2",
        "--metric",
        "final",
        "--junit",
        "sweep.xml",
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["n_steps", "rate", "final", "status", "run"]
    assert [line.split()[2] for line in lines[1:5]] == ["2", "1", "1", "0.5"]  # best first
    client, runs = project_runs(root)
    parent = next(r for r in runs if r.data.tags.get("mlops_nb.kind") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert sorted((r.data.params["n_steps"], r.data.params["rate"]) for r in children) == [
        ("1", "0.5"),
        ("1", "1.0"),
        ("2", "0.5"),
        ("2", "1.0"),
    ]
    best = parent.data.tags["mlops_nb.sweep.best_run_id"]
    assert client.get_run(best).data.metrics["final"] == 2.0
    assert f"best: run {best} with final=2" in done.stdout
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_final"] == 2.0
    assert ET.parse(root / "sweep.xml").getroot().get("tests") == "4"


def test_reproduce_from_the_command_line_says_yes_and_exits_0(tmp_path: Path):
    root = new_project(tmp_path)
    train_notebook(root)
    first = json.loads(run_cli("run", "train.ipynb", "-p", "n_steps=2", "--json", cwd=root).stdout)
    done = run_cli("reproduce", first["run_id"], cwd=root, timeout=240)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "score" in done.stdout and "reproduces: yes" in done.stdout
    client, _ = project_runs(root)
    original = client.get_run(first["run_id"])
    assert original.data.tags["mlops_nb.reproduced"] == "yes"
    again = client.get_run(original.data.tags["mlops_nb.reproduced_by"])
    assert again.data.params["n_steps"] == "2" and again.data.tags["mlops_nb.reproduces"] == first["run_id"]


def test_the_example_notebooks_train_then_evaluate_the_champion(tmp_path: Path):
    """What `make demo` runs, on a fresh project: training registers and promotes a model;
    evaluation loads the champion and logs its held-out metrics into its job's run."""
    import shutil

    from mlops_nb.jobs.run.execution import run_notebook

    root = new_project(tmp_path)
    for name in ("train.ipynb", "evaluate.ipynb"):
        shutil.copy(Path(__file__).resolve().parents[1] / "notebooks" / name, root / name)
    trained = run_notebook(root / "train.ipynb", {"n_estimators": 10, "epochs": 3})
    assert trained.status == "FINISHED", trained.error
    evaluated = run_notebook(root / "evaluate.ipynb", texts={"model": "models:/tumour-classifier@champion"})
    assert evaluated.status == "FINISHED", evaluated.error
    assert evaluated.params == {"model": "models:/tumour-classifier@champion"}
    assert evaluated.metrics["eval_accuracy"] > 0.85 and 0.5 < evaluated.metrics["eval_roc_auc"] <= 1.0
    client = get_client(resolve_config(root, environ={}))
    assert str(client.get_model_version_by_alias("tumour-classifier", "champion").version) == "1"


def test_mlops_run_from_a_cell_runs_in_the_background_with_a_status_widget(ip, project: Path):
    from IPython.core.error import UsageError as IPythonUsageError

    from mlops_nb.widgets.job import JobStatus

    make_notebook(
        project / "analysis" / "child.ipynb",
        [("code", "n = 1", ["parameters"]), ("code", "import mlops_nb as mnb\nmnb.log(child_n=n)", [])],
    )
    with pytest.raises(IPythonUsageError, match="unknown parameter 'm' for child.ipynb"):
        ip.run_line_magic("mlops", "run child.ipynb -p m=2")
    with pytest.raises(IPythonUsageError, match="notebook nope.ipynb not found"):
        ip.run_line_magic("mlops", "run nope.ipynb")

    status = ip.run_line_magic("mlops", "run child.ipynb -p n=7")
    assert isinstance(status, JobStatus)
    ip.run_cell("still_usable = 1 + 1")  # the kernel is not blocked by the job
    assert ip.user_ns["still_usable"] == 2
    result = status.wait(180)
    assert result is not None and result.status == "FINISHED", status.status_line()
    assert result.metrics["child_n"] == 7.0 and result.params == {"n": 7}
    assert "FINISHED" in str(status) and result.run_id in str(status)

    waited = ip.run_line_magic("mlops", "run child.ipynb -p n=8 --wait")
    assert waited.status == "FINISHED" and waited.metrics["child_n"] == 8.0


def test_the_stop_button_ends_a_background_job_killed(ip, project: Path):
    make_notebook(project / "analysis" / "slow.ipynb", [("code", "import time\ntime.sleep(120)", [])])
    status = ip.run_line_magic("mlops", "run slow.ipynb")
    deadline = time.monotonic() + 60
    client = get_client(resolve_config(project, environ={}))
    while not [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.info.run_name == "slow"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    status._stop.click()
    result = status.wait(60)
    assert result.status == "KILLED" and "KILLED" in str(status)
    (run,) = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.info.run_name == "slow"
    ]
    assert run.info.status == "KILLED"
