"""The %mlops magics on a real IPython shell against a real SQLite store."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import artifact_text, git, runs_of
from services import free_port


def run(ip, source: str):
    """Run one cell as the notebook would; return IPython's ExecutionResult."""
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def test_notebook_run_records_params_code_git_and_environment(ip, project: Path, client, capsys):
    run(ip, "alpha = 0.5\nlabel = 'baseline'\nepochs = 3")
    assert run(ip, "%mlops track").success
    run(ip, "secret = 'hunter2'")  # tagged mlops:no-capture in the saved notebook
    run(ip, "score = alpha * 2\n%mlops log score label")
    run(ip, "# mlops:no-capture\nhidden = 1")
    assert run(ip, "%mlops end").success

    (r,) = runs_of(client)
    assert r.info.status == "FINISHED"
    assert r.info.run_name == "train"
    assert r.data.params == {"alpha": "0.5", "label": "baseline", "epochs": "3"}
    assert r.data.metrics == {"score": 1.0}
    tags = r.data.tags
    assert tags["mlops_nb.notebook"] == "analysis/train.ipynb"
    assert tags["mlflow.source.name"] == "analysis/train.ipynb"
    assert tags["mlflow.source.git.commit"] == git(project, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlops_nb.git.dirty"] == "false"  # the store's own folder is not dirt
    assert tags["mlops_nb.pid"].isdigit() and tags["mlops_nb.host"]

    cells = artifact_text(client, r.info.run_id, "code/cells.py")
    assert cells.index("%mlops track") < cells.index("score = alpha * 2")
    assert "hunter2" not in cells and "hidden = 1" not in cells
    snapshot = artifact_text(client, r.info.run_id, "code/train.ipynb")
    assert "hunter2" not in snapshot and "alpha = 0.5" in snapshot
    env = artifact_text(client, r.info.run_id, "environment/requirements.txt")
    assert "mlflow==" in env and env.startswith("# python 3.")


def test_dirty_tree_records_diff(ip, project: Path, client):
    (project / "helpers.py").write_text("X = 1\n")
    git(project, "add", "helpers.py")
    git(project, "commit", "-q", "-m", "helpers")
    (project / "helpers.py").write_text("X = 2\n")
    run(ip, "%%mlops track --name dirty\nvalue = 1")
    (r,) = runs_of(client)
    assert r.data.tags["mlops_nb.git.dirty"] == "true"
    diff = artifact_text(client, r.info.run_id, "code/git.diff")
    assert "-X = 1" in diff and "+X = 2" in diff


def test_cell_runs_nest_under_the_notebook_run_and_rerun_makes_new_runs(ip, client):
    run(ip, "%mlops track --no-autolog")
    for lr in ("0.1", "0.01"):
        run(ip, f"lr = '{lr}'")
        result = run(ip, "%%mlops track --name fit\n%mlops log lr\nloss = float(lr) * 10\n%mlops log loss\nloss")
        assert result.success
        assert result.result == pytest.approx(float(lr) * 10)  # the last expression is the cell's value
    run(ip, "%mlops end")
    runs = runs_of(client)
    parent = [r for r in runs if r.data.tags["mlops_nb.kind"] == "notebook"]
    children = [r for r in runs if r.data.tags["mlops_nb.kind"] == "cell"]
    assert len(parent) == 1 and len(children) == 2
    assert {r.data.params["lr"] for r in children} == {"0.1", "0.01"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "%%mlops track --name fit" in artifact_text(client, children[0].info.run_id, "code/cells.py")


def test_changed_param_in_one_run_warns_and_never_raises(ip, client, capsys):
    run(ip, "%mlops track --no-autolog")
    run(ip, "mode = 'a'\n%mlops log mode")
    result = run(ip, "mode = 'b'\n%mlops log mode\nafter = True")
    assert result.success and ip.user_ns["after"] is True
    assert "param 'mode' is already 'a'" in capsys.readouterr().err
    run(ip, "%mlops end")
    (r,) = runs_of(client)
    assert r.data.params["mode"] == "a"


def test_exception_ends_the_cell_run_failed_and_next_cells_work(ip, client, capsys):
    import mlflow

    result = run(ip, "%%mlops track --name boom --no-autolog\nx = 1\n1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert mlflow.active_run() is None
    assert run(ip, "%%mlops track --name fine --no-autolog\ny = 2").success
    assert run(ip, "z = 3").success
    boom, fine = runs_of(client)
    assert boom.info.status == "FAILED"
    assert boom.data.tags["mlops_nb.error"] == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in artifact_text(client, boom.info.run_id, "error.txt")
    assert fine.info.status == "FINISHED"


def test_a_tracked_cell_ends_with_one_line_saying_how_its_run_ended(ip, project: Path, client, capsys):
    """Run name and id, status, duration and where to see it; then the values logged."""
    import re

    code = """
    %%mlops track --name fit --no-autolog --no-chart
    import time
    import mlops_nb as mnb
    time.sleep(0.3)
    mnb.log_metric("accuracy", 0.9312)
    """
    assert run(ip, code).success
    (fit,) = runs_of(client)
    lines = capsys.readouterr().out.splitlines()
    store = __import__("mlops_nb").get_tracker().config.tracking_uri
    assert store == f"sqlite:///{project / '.mlops' / 'mlflow.db'}"
    line = re.fullmatch(
        rf"mlops-nb: run {fit.info.run_id} \(fit\) ended FINISHED in (\d+\.\d) s · see it: %mlops runs, "
        rf"or mlflow ui --backend-store-uri {re.escape(store)}",
        lines[-2],
    )
    assert line, lines
    assert float(line.group(1)) == pytest.approx((fit.info.end_time - fit.info.start_time) / 1000, abs=0.051)
    assert float(line.group(1)) >= 0.3
    assert lines[-1] == "  accuracy = 0.9312"

    assert not run(ip, "%%mlops track --name boom --no-autolog\n1 / 0").success
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"mlops-nb: run [0-9a-f]{32} \(boom\) ended FAILED after \d+\.\d s · see it: .*", last), last


def test_keyboard_interrupt_ends_the_run_killed(ip, client):
    result = run(ip, "%%mlops track --name stop --no-autolog\nraise KeyboardInterrupt")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert run(ip, "%%mlops track --name again --no-autolog\npass").success
    stop, again = runs_of(client)
    assert stop.info.status == "KILLED"
    assert again.info.status == "FINISHED"


def test_user_mlflow_run_left_open_inside_a_tracked_cell_is_closed(ip, client):
    import mlflow

    result = run(ip, "%%mlops track --name outer --no-autolog\nimport mlflow\nmlflow.start_run(nested=True)\n1/0")
    assert not result.success
    assert mlflow.active_run() is None
    assert run(ip, "%%mlops track --name next --no-autolog\npass").success
    assert {r.info.status for r in runs_of(client)} >= {"FAILED", "FINISHED"}
    assert not [r for r in runs_of(client) if r.info.status == "RUNNING"]


def test_autolog_logs_a_fit_into_the_cell_run(ip, client):
    code = """
    %%mlops track --name forest
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier
    X, y = load_iris(return_X_y=True)
    DecisionTreeClassifier(max_depth=2).fit(X, y)
    """
    assert run(ip, code).success
    assert run(ip, code.replace("--name forest", "--name plain --no-autolog")).success
    forest, plain = runs_of(client)
    assert forest.data.params["max_depth"] == "2"
    assert "training_accuracy_score" in forest.data.metrics
    assert "max_depth" not in plain.data.params


def test_log_metric_from_a_loop_loses_nothing(ip, client):
    code = """
    %%mlops track --name loop --no-autolog
    import mlops_nb as mnb
    for step in range(3000):
        mnb.log_metric("loss", 1.0 / (step + 1), step=step)
        mnb.log_metric("acc", step / 3000)
    """
    assert run(ip, code).success
    (r,) = runs_of(client)
    loss = client.get_metric_history(r.info.run_id, "loss")
    acc = client.get_metric_history(r.info.run_id, "acc")
    assert len(loss) == 3000 and len(acc) == 3000
    assert sorted(m.step for m in loss) == list(range(3000))
    assert sorted(m.step for m in acc) == list(range(3000))  # steps count up by themselves


def test_runs_and_status(ip, project: Path, capsys):
    run(ip, "%%mlops track --name listed --no-autolog\npass")
    table = run(ip, "%mlops runs -n 5").result
    assert "listed" in str(table) and "FINISHED" in str(table)
    bundle = table._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the widget, where it renders
    assert "<table" in bundle["text/html"] and "listed" in bundle["text/plain"]  # and the fallback
    status = str(run(ip, "%mlops status").result)
    assert str(project / ".mlops" / "mlflow.db") in status
    assert "embedded store of the project" in status and "holds .git" in status
    assert "analysis/train.ipynb" in status
    assert "notebook snapshot" in status
    run(ip, "%mlops capture off")
    assert "code capture is off" in str(run(ip, "%mlops status").result)


def test_capture_off_leaves_code_out(ip, client):
    run(ip, "%mlops capture off")
    run(ip, "%%mlops track --name quiet --no-autolog\nprivate = 42")
    (r,) = runs_of(client)
    paths = [a.path for a in client.list_artifacts(r.info.run_id)]
    assert "code" not in paths and "environment" in paths


@pytest.mark.parametrize(
    "line, expected",
    [
        ("%mlops frobnicate", "invalid choice: 'frobnicate'"),
        ("%mlops runs --bogus", "unrecognized arguments: --bogus"),
        ("%mlops runs -n zero", "invalid int value"),
        ("%mlops log", "the following arguments are required: NAME"),
        ("%mlops log no_such_variable", "no variable named 'no_such_variable'"),
        ("%mlops runs --experiment nope", "no experiment named 'nope'"),
        ("%mlops capture maybe", "invalid choice: 'maybe'"),
        ("%%mlops log x\npass", "%%mlops on a cell takes 'track' only"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(ip, capsys, line, expected):
    result = run(ip, line)
    assert not result.success
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ") and expected in err
    assert "Traceback" not in err
    assert run(ip, "still_fine = 1").success


def test_logging_a_non_scalar_is_refused_before_anything_is_logged(ip, client, capsys):
    run(ip, "%mlops track --no-autolog")
    result = run(ip, "good = 1.5\nbad = [1, 2]\n%mlops log good bad")
    assert not result.success
    assert "bad is a list" in capsys.readouterr().err
    run(ip, "%mlops end")
    (r,) = runs_of(client)
    assert "good" not in r.data.metrics


def test_unreachable_server_is_one_line_and_cells_still_run(ip, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ip.run_line_magic("unload_ext", "mlops_nb")
    from mlops_nb import magics

    magics.unload(ip)
    magics.load(ip)

    result = run(ip, "%mlops track")
    err = capsys.readouterr().err
    assert not result.success
    assert err.strip().count("\n") == 0 and uri in err and "cannot reach the tracking server" in err

    result = run(ip, "%%mlops track --name offline\nworked = 'yes'")
    assert result.success and ip.user_ns["worked"] == "yes"
    err = capsys.readouterr().err
    assert uri in err and "runs untracked" in err and "Traceback" not in err


def test_metric_write_failure_is_a_warning_not_an_error(ip, project: Path, capsys):
    run(ip, "%mlops track --no-autolog")
    db = project / ".mlops" / "mlflow.db"
    db.rename(db.with_suffix(".moved"))
    db.mkdir()  # the store is gone: every write now fails
    try:
        result = run(ip, "import mlops_nb as mnb\nfor i in range(10):\n    mnb.log_metric('m', i)\nok = True")
        assert result.success and ip.user_ns["ok"] is True
        assert run(ip, "%mlops end").success
        err = capsys.readouterr().err
        assert "could not write 10 metric values" in err
        assert "Traceback" not in err
        assert run(ip, "after = 1").success
    finally:
        db.rmdir()
        db.with_suffix(".moved").rename(db)


def test_runs_of_a_dead_kernel_are_marked_killed(ip, project: Path, client, capsys):
    # Another "kernel" starts a run in this project and dies without ending it.
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, sys.argv[1])
        from mlops_nb.tracking import Tracker
        t = Tracker()
        h = t.start_cell_run("doomed", autolog=False)
        print(h.run_id, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).resolve().parents[1])],
        cwd=project / "analysis",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL
    doomed = proc.stdout.split()[0]
    assert client.get_run(doomed).info.status == "RUNNING"

    run(ip, "%%mlops track --name survivor --no-autolog\npass")
    dead = client.get_run(doomed)
    assert dead.info.status == "KILLED"
    assert "was gone" in dead.data.tags["mlops_nb.ended_by"]
    assert "marked 1 run(s) left RUNNING by a dead kernel as KILLED" in capsys.readouterr().err


def test_python_api_matches_the_magics(ip, client):
    import mlops_nb as mnb

    ip.user_ns["alpha"] = 0.25
    run_id = ip.run_cell("import mlops_nb as mnb\nrid = mnb.track(autolog=False)").success and ip.user_ns["rid"]
    mnb.log(quality=0.9, note="ok")
    mnb.log_params(batch=32)
    assert mnb.end() == run_id
    (r,) = runs_of(client)
    assert r.data.metrics["quality"] == 0.9
    assert r.data.params["note"] == "ok" and r.data.params["batch"] == "32"
    assert r.data.params["alpha"] == "0.25"  # from the notebook's parameters cell


def test_ending_the_cell_run_from_inside_the_cell_leaves_the_notebook_run_alone(ip, client):
    import mlflow

    run(ip, "%mlops track --no-autolog")
    assert run(ip, "%%mlops track --name inner --no-autolog\nimport mlops_nb as mnb\nmnb.end()").success
    active = mlflow.active_run()
    assert active is not None and active.info.run_name == "train"
    run(ip, "x = 2.0\n%mlops log x")
    run(ip, "%mlops end")
    statuses = {r.info.run_name: r.info.status for r in runs_of(client)}
    assert statuses == {"train": "FINISHED", "inner": "FINISHED"}
    (train,) = [r for r in runs_of(client) if r.info.run_name == "train"]
    assert train.data.metrics["x"] == 2.0


def test_users_own_start_run_nests_instead_of_already_active(ip, client):
    run(ip, "%mlops track --no-autolog")
    result = run(ip, "import mlflow\nwith mlflow.start_run(run_name='mine'):\n    mlflow.log_metric('own', 1.0)")
    assert result.success, result.error_in_exec
    result = run(ip, "%%mlops track --name cell --no-autolog\nwith mlflow.start_run(run_name='mine2'):\n    pass")
    assert result.success, result.error_in_exec
    run(ip, "%mlops end")
    by_name = {r.info.run_name: r for r in runs_of(client)}
    assert by_name["mine"].data.tags["mlflow.parentRunId"] == by_name["train"].info.run_id
    assert by_name["mine2"].data.tags["mlflow.parentRunId"] == by_name["cell"].info.run_id
    assert {r.info.status for r in by_name.values()} == {"FINISHED"}


def test_no_autolog_on_a_cell_wins_over_the_notebook_run(ip, client):
    run(ip, "%mlops track")
    code = "%%mlops track --name plain --no-autolog\nfrom sklearn.tree import DecisionTreeClassifier\nDecisionTreeClassifier(max_depth=2).fit([[0], [1]], [0, 1])"
    assert run(ip, code).success
    run(ip, "%mlops end")
    plain = next(r for r in runs_of(client) if r.info.run_name == "plain")
    assert "max_depth" not in plain.data.params and not plain.data.metrics


def test_a_bad_metric_name_fails_at_the_call_and_loses_no_good_values(ip, client, capsys):
    code = "%%mlops track --name names --no-autolog\nimport mlops_nb as mnb\nfor i in range(5):\n    mnb.log_metric('loss', i)\nmnb.log_metric('top@1', 0.5)"
    result = run(ip, code)
    assert not result.success
    assert "metric name 'top@1' is not allowed" in str(result.error_in_exec)
    (r,) = runs_of(client)
    assert r.info.status == "FAILED"
    assert len(client.get_metric_history(r.info.run_id, "loss")) == 5


def test_quoted_names_are_one_argument(ip, client):
    assert run(ip, '%%mlops track --name "my fit" --experiment "My Exp" --no-autolog\npass').success
    (r,) = runs_of(client, "My Exp")
    assert r.info.run_name == "my fit"
    result = run(ip, '%mlops runs --experiment "unclosed')
    assert not result.success


def test_logging_with_an_unreachable_store_never_breaks_the_cell(ip, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: refused
    from mlops_nb import magics

    magics.unload(ip)
    magics.load(ip)
    code = "%%mlops track --name offline\nimport mlops_nb as mnb\nfor i in range(3):\n    mnb.log_metric('m', i)\nmnb.log(acc=0.5)\ndone = True"
    result = run(ip, code)
    assert result.success and ip.user_ns["done"] is True
    err = capsys.readouterr().err
    assert "Traceback" not in err and "http://127.0.0.1:9" in err
    assert err.count("values logged from now on are not recorded") == 1


def test_recovery_marks_every_dead_run_across_pages(ip, project: Path, client):
    from mlops_nb.tracking import Tracker

    tracker = Tracker(fluent=False)
    dead = []
    for i in range(25):
        h = tracker.start_cell_run(f"dead-{i}", autolog=False)
        client.set_tag(h.run_id, "mlops_nb.pid", "999999999")  # a pid that cannot exist
        dead.append(h.run_id)
    found = tracker.recover_dead_runs(page_size=10)
    assert sorted(found) == sorted(dead)
    assert {client.get_run(rid).info.status for rid in dead} == {"KILLED"}


def test_help_lists_every_sub_command(ip, capsys):
    assert run(ip, "%mlops help").success
    out = capsys.readouterr().out
    for sub in ("track", "%%mlops track", "log", "end", "status", "runs", "capture", "mlops:no-capture", "--reference",
                "%mlops monitor", "%mlops approvals", "%mlops approve", "%mlops reject"):  # fmt: skip
        assert sub in out


def test_autolog_is_paused_outside_tracked_runs(ip, client):
    fit = "from sklearn.tree import DecisionTreeClassifier\nDecisionTreeClassifier().fit([[0], [1]], [0, 1])"
    assert run(ip, "%%mlops track --name tracked\n" + fit).success
    assert run(ip, fit).success  # no run is active: autolog must not start one
    assert run(ip, "%%mlops track --name again\n" + fit).success
    runs = runs_of(client)
    assert [r.info.run_name for r in runs] == ["tracked", "again"]
    assert all("max_depth" in r.data.params for r in runs)
    default = client.search_runs(["0"])
    assert default == []


#: A fresh IPython shell whose import of mlflow waits at a gate: only the cell that says
#: "loading MLflow" opens it, so the test needs no timing (a magic that imported MLflow
#: synchronously at %load_ext would block there and never print the first line).
_GATED_SHELL = """
import sys, threading
from IPython.core.interactiveshell import InteractiveShell

gate = threading.Event()

class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow":
            gate.wait(120)
        return None

class Watch:
    def __init__(self, out):
        self.out = out
    def write(self, text):
        if "loading MLflow" in text:
            gate.set()
        return self.out.write(text)
    def flush(self):
        self.out.flush()

sys.meta_path.insert(0, Gate())
sys.stdout = Watch(sys.stdout)
shell = InteractiveShell.instance()
for cell in CELLS:
    shell.run_cell(cell, store_history=True)
    imported = "mlflow" in sys.modules and not getattr(sys.modules["mlflow"].__spec__, "_initializing", False)
    print("after cell:", "mlflow imported" if imported else "mlflow not imported", flush=True)
"""


@pytest.mark.parametrize(
    "cells",
    [["%load_ext mlops_nb", "%mlops status"], ["%load_ext mlops_nb\n%mlops status"]],
    ids=["next-cell", "same-cell"],
)
def test_load_ext_leaves_mlflow_to_a_background_import_and_a_waiting_cell_says_so(tmp_path: Path, cells):
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    script = f"CELLS = {cells!r}\n{_GATED_SHELL}"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if k not in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME")},
    ).stdout
    lines = out.splitlines()
    if len(cells) == 2:
        assert lines[0] == "after cell: mlflow not imported"  # %load_ext returned, MLflow still waiting
        lines = lines[1:]
    assert lines[0] == "mlops-nb: loading MLflow…"  # the waiting cell says what it waits for, first
    assert "mlops-nb status" in out and lines[-1] == "after cell: mlflow imported"
