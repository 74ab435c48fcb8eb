"""The notebook side of monitoring and approval, on a real IPython shell, a real SQLite
store and a real request log in the test's project: ``%mlops register --reference``
stores the reference profile, ``%mlops monitor`` shows the verdict with both histograms
of the drifted features, and a protected alias moves only when a person approves."""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest
from helpers import git, make_notebook

from mlops_nb.config import resolve_config
from mlops_nb.serving.requestlog import RequestLog, log_url

COLUMNS = ["a", "b", "c"]

DATA = """
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(7)
X_train = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
y_train = (X_train["a"] + X_train["b"] > 0).astype(int)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One committed git project for the module (its store is made once: a new SQLite
    store costs seconds of migrations); each test registers a model of its own name."""
    root = tmp_path_factory.mktemp("monitor-magic") / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_notebook(root / "analysis" / "train.ipynb", [("code", "alpha = 0.5", ["parameters"])])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture(autouse=True)
def _in_project(_clean_env, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs where conftest's ``project`` puts a test: in the notebook's folder,
    with the kernel environment naming the notebook."""
    monkeypatch.chdir(project / "analysis")
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis/train.ipynb")


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def register(ip, name: str, *, c: float = 1.0, accuracy: float = 0.8, flags: str = "--reference X_train") -> None:
    """Fit a model in a tracked cell, log its accuracy and register it as ``name``."""
    code = f"""
    %%mlops track --name fit-{c} --no-autolog --no-chart
    model = LogisticRegression(C={c}).fit(X_train, y_train)
    accuracy = {accuracy}
    %mlops log accuracy
    %mlops register model --name {name} {flags}
    """
    result = run(ip, code)
    assert result.success, result.error_in_exec


@pytest.fixture
def data(ip):
    assert run(ip, DATA).success
    return ip


# ---------------------------------------------------------------- the reference profile


def test_register_with_reference_stores_the_profile_of_that_data(data, client, capsys):
    from mlops_nb.monitoring.profiles import load_profile

    register(data, "ref", flags="--reference X_train --alias champion")
    out = capsys.readouterr().out
    assert "registered ref v1 as @champion" in out
    assert "reference profile: 400 rows x 3 features, from X_train" in out

    profile = load_profile(client, "ref", "1")
    assert list(profile.columns) == COLUMNS and profile.rows == 400
    assert profile.feature("a").count == 400 and profile.feature("a").kind == "numeric"
    assert profile.prediction is not None  # the model's predictions on the reference
    assert sum(profile.feature("b").hist_counts) == 400

    # From Python: a version's profile replaced from other data with the registered model
    # itself; a new version registered with an input example only is profiled from that.
    import mlops_nb as mnb

    X = data.user_ns["X_train"]
    assert mnb.store_profile("ref", 1, reference=X.iloc[:50]).rows == 50
    replaced = load_profile(client, "ref", "1")
    assert replaced.rows == 50 and replaced.prediction is not None
    v2 = mnb.register(data.user_ns["model"], "ref", input_example=X.iloc[:5])
    assert load_profile(client, "ref", v2.version).rows == 5


def test_a_missing_reference_variable_is_one_line_and_registers_nothing(data, client, capsys):
    result = run(
        data,
        "model = LogisticRegression().fit(X_train, y_train)\n%mlops register model --name miss --reference X_trian",
    )
    assert not result.success
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ") and "no variable named 'X_trian'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert client.search_registered_models(filter_string="name = 'miss'") == []
    assert run(data, "still_fine = 1").success


def test_a_profile_that_cannot_be_built_never_fails_the_registration(data, client, capsys):
    run(data, "odd = object()")
    register(data, "odd", flags="--reference odd")
    out = capsys.readouterr().out
    assert "registered odd v1" in out
    line = next(line for line in out.splitlines() if "no reference profile was stored" in line)
    assert "odd v1" in line and "mlops-nb profile models:/odd/1 --data FILE" in line
    assert str(client.get_model_version("odd", "1").version) == "1"


# ---------------------------------------------------------------- %mlops monitor


def _traffic(project, *, requests: int = 30, rows: int = 10, shift: float = 3.0) -> None:
    """Requests v1 answered in the last minutes: 'a' and 'b' shifted by ``shift``."""
    import numpy as np

    rng = np.random.default_rng(11)
    now = time.time()
    with RequestLog(log_url(resolve_config(project))) as log:
        for i in range(requests):
            x = rng.normal(size=(rows, 3))
            x[:, :2] += shift
            body = {"dataframe_split": {"columns": COLUMNS, "data": x.round(6).tolist()}}
            log.record(
                request_id=f"r{i:03d}",
                model="drifty",
                version="1",
                status=200,
                latency_ms=2.0,
                inputs=json.dumps(body),
                outputs=json.dumps({"predictions": [1] * rows}),
                time=now - 300 + i,
            )
        assert log.flush(timeout=60)


def _counts(row_html: str, side: str) -> list[int]:
    return [int(n) for n in re.findall(rf'<rect class="{side}"[^>]*data-count="(\d+)"', row_html)]


def test_monitor_shows_the_verdict_and_both_histograms_of_the_drifted_features(data, project, client, capsys, tmp_path):
    from mlops_nb.monitoring.profiles import load_profile
    from mlops_nb.widgets.monitor import MonitorView

    register(data, "drifty", flags="--reference X_train --alias champion")
    _traffic(project)
    capsys.readouterr()
    result = run(data, "%mlops monitor models:/drifty@champion --since 1h --min-rows 50")
    assert result.success, result.error_in_exec
    view = result.result
    assert isinstance(view, MonitorView)
    assert view.result.verdict == "drift" and view.result.rows == 300
    summary = view.summary_html.value
    assert ">drift</span>" in summary and "2 of 3 features drifted" in summary

    # The drifted feature's row: the reference bars carry the stored profile's counts,
    # the current bars the window's, as the run's stored monitor.json has them.
    path = client.download_artifacts(view.result.run_id, "monitor.json", str(tmp_path))
    stored = json.loads(Path(path).read_text(encoding="utf-8"))
    by_name = {f["feature"]: f for f in stored["drift"]["features"]}
    html = view.features_html.value
    for name in ("a", "b"):
        row = re.search(rf"<tr class='mlops-nb-drifted' data-feature='{name}'>.*?</tr>", html, re.S)
        assert row, f"no drifted row for {name}"
        assert _counts(row.group(0), "reference") == load_profile(client, "drifty", "1").feature(name).hist_counts
        assert _counts(row.group(0), "reference") == by_name[name]["reference_hist"]["counts"]
        assert _counts(row.group(0), "current") == by_name[name]["current_hist"]["counts"]
        assert sum(_counts(row.group(0), "current")) == 300
    assert "<tr class='mlops-nb-stable' data-feature='c'>" in html
    text = str(view)
    assert text.startswith("mlops-nb monitor: drifty v1 @champion: drift: ") and "past monitor runs" in text

    # Logged as the CLI logs it, and the next run draws both runs on the history chart.
    run(data, "%mlops monitor models:/drifty@champion --since 1h --min-rows 50")
    second = run(data, "%mlops monitor models:/drifty@champion --since 1h --min-rows 50").result
    assert len(second.history) == 3 and {h["verdict"] for h in second.history} == {"drift"}
    assert second.chart is not None and len(second.chart.marks[0].x) == 3
    assert list(second.chart.marks[0].y) == pytest.approx([2 / 3] * 3)


def test_monitor_bad_usage_and_a_version_without_profile_are_one_line(data, client, capsys):
    register(data, "bare", flags="--alias champion")  # no reference, no input example: no profile
    for line, expected in (
        ("%mlops monitor models:/bare@champion", "has no reference profile"),
        ("%mlops monitor models:/bare@champion --min-rows 0", "is not a number of rows"),
        ("%mlops monitor models:/nope@champion", "nope"),
    ):
        capsys.readouterr()
        result = run(data, line)
        assert not result.success
        err = capsys.readouterr().err
        assert err.startswith("UsageError: ") and expected in err and "Traceback" not in err
    assert run(data, "still_fine = 1").success


# ---------------------------------------------------------------- approval


@pytest.fixture
def protected(monkeypatch):
    """The project protects @champion: promotions to it wait for a person."""
    monkeypatch.setenv("MLOPS_NB_APPROVAL_ALIASES", "champion")


def test_a_protected_alias_moves_only_on_approve_and_the_audit_says_who_and_why(protected, data, client, capsys):
    import getpass

    import mlops_nb as mnb
    from mlops_nb.registry import audit_trail

    def champion() -> str:
        return str(client.get_model_version_by_alias("appr", "champion").version)

    # A registration straight into the protected alias waits too, until someone approves it.
    register(data, "appr", c=1.0, accuracy=0.80, flags="--alias champion")
    assert "champion" not in client.get_registered_model("appr").aliases
    assert [(p.version, p.alias) for p in mnb.pending_approvals()] == [("1", "champion")]
    assert run(data, "%mlops approve appr 1 --reason 'the first version'").success
    assert champion() == "1"
    register(data, "appr", c=0.5, accuracy=0.90, flags="--alias challenger")
    capsys.readouterr()

    assert run(data, "%mlops promote appr --metric accuracy").success
    out = capsys.readouterr().out
    assert "appr v2 waits for a person's approval to become @champion" in out and "nothing moved" in out
    assert champion() == "1"
    table = run(data, "%mlops approvals").result
    assert [row[:4] for row in table.rows] == [["appr", "v2", "@champion", "v1"]]
    assert "accuracy 0.9 vs 0.8" in str(table) and "%mlops approve appr 2 --alias champion" in str(table)

    assert not run(data, "%mlops reject appr 2").success  # a rejection must say why
    assert "the following arguments are required: --reason" in capsys.readouterr().err
    assert run(data, "%mlops reject appr 2 --reason 'wait for the drift report'").success
    assert (
        "rejected appr v2 for @champion (wait for the drift report); @champion stays on v1" in capsys.readouterr().out
    )
    assert champion() == "1" and mnb.pending_approvals() == []

    run(data, "%mlops promote appr --metric accuracy")
    assert run(data, "%mlops approve appr 2 --reason 'better on the holdout'").success
    assert "appr v2 is now @champion (was v1)" in capsys.readouterr().out
    assert champion() == "2"
    decided = [
        (e["action"], e["who"], e["why"])
        for e in audit_trail(client, "appr", "2")
        if e["action"] in ("approved", "rejected")
    ]
    me = getpass.getuser()
    assert decided == [("rejected", me, "wait for the drift report"), ("approved", me, "better on the holdout")]

    assert not run(data, "%mlops approve appr 2").success  # decided already: one line saying so
    err = capsys.readouterr().err
    assert "no pending request to move @champion to appr v2" in err and "Traceback" not in err
    assert run(data, "%mlops approvals").success and "no promotion is waiting" in capsys.readouterr().out
