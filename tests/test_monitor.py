"""The monitor (mlops_nb.monitoring: profiles, window, monitor, report) and its commands
``mlops-nb profile`` and ``mlops-nb monitor``, on a real project: iris registered in a
real SQLite store, a reference profile stored by the command, request-log windows
written with the real RequestLog at known past times, and one window of traffic sent
through a real model server with labels posted to its /feedback.

The windows are hours apart, so each check reads exactly its own rows (``--since`` /
``--until``); the served traffic is the newest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import artifact_text
from services import free_port
from serving_helpers import COLUMNS, new_serving_project, register_iris, serve

from mlops_nb.cli.main import main
from mlops_nb.config import resolve_config
from mlops_nb.exceptions import NotFoundError, UsageError
from mlops_nb.monitoring.monitor import MonitorPolicy, last_verdict, monitor, monitor_history
from mlops_nb.monitoring.profiles import load_profile
from mlops_nb.monitoring.report import feature_rows, histogram_svg
from mlops_nb.monitoring.window import read_window
from mlops_nb.registry import get_version, model_files
from mlops_nb.serving.requestlog import RequestLog, log_url, read_log
from mlops_nb.store import get_client
from mlops_nb.tags import KIND, MONITOR_ALIAS, MONITOR_LAST, MONITOR_MODEL, MONITOR_VERDICT, MONITOR_VERSION, PROFILE

pytestmark = pytest.mark.slow

NOW = time.time()
HOUR = 3600.0
SHIFTED = ["sepal_length", "sepal_width"]
#: (start, end) of each written window, in hours before NOW.
SAME = [(6.0, 5.5), (5.0, 4.5), (4.0, 3.5)]  # same distribution, three seeds; labels on the first
SHIFT = (3.0, 2.5)
WRONG = (8.0, 7.5)  # same inputs, 40 % of the labels fed back wrong
FEW = (10.0, 9.5)
RENAMED = (12.0, 11.5)  # one request whose columns the reference does not know


def _iso(hours_ago: float) -> str:
    return datetime.fromtimestamp(NOW - hours_ago * HOUR, timezone.utc).isoformat()


def _window_args(span: tuple[float, float]) -> list[str]:
    return ["--since", _iso(span[0]), "--until", _iso(span[1])]


def _bodies(rows: pd.DataFrame, k: int, *, positional: bool = True) -> str:
    """The k-th request's body, in each of MLflow's scoring formats in turn (``instances``
    as unnamed rows when ``positional``: a model without a signature takes those)."""
    fmt = k % 5
    if fmt == 0:
        return json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})
    if fmt == 1:
        return json.dumps({"dataframe_records": rows.to_dict(orient="records")})
    if fmt == 2 and positional:
        return json.dumps({"instances": rows.values.tolist()})  # unnamed: the profile's columns by position
    if fmt == 2:
        return json.dumps({"instances": rows.to_dict(orient="records")})
    if fmt == 3:
        return json.dumps({"inputs": rows.to_dict(orient="list")})
    return rows.to_csv(index=False)


def _write_window(
    log: RequestLog, iris, span, seed: int, *, shift=None, labels=None, labelled=None, rows=300, per=30, rename=None
) -> dict:
    """Requests of ``per`` rows drawn from iris (with ``shift`` added per column) between
    the two times of ``span``, with v1's real predictions; ``labels``: "true" or
    "wrong" (40 % off by one class) on the first ``labelled`` requests (default all). Returns the predictions and labels sent."""
    rng = np.random.default_rng(seed)
    start, end = NOW - span[0] * HOUR, NOW - span[1] * HOUR
    sent = {"predictions": [], "labels": []}
    for k in range(rows // per):
        idx = rng.integers(0, len(iris.X), per)
        chunk = iris.X.iloc[idx].reset_index(drop=True)
        for column, delta in (shift or {}).items():
            chunk[column] = chunk[column] + delta
        predictions = [int(p) for p in iris.model.predict(chunk)]
        if rename is not None:
            chunk = chunk.rename(columns=rename)
        when = start + (end - start) * (k + 0.5) / (rows // per)  # inside the window, clear of its ends
        rid = f"{seed}-{k}"
        log.record(
            request_id=rid,
            model="iris",
            version="1",
            status=200,
            latency_ms=2.0,
            inputs=_bodies(chunk, k),
            outputs=json.dumps({"predictions": predictions}),
            time=when,
        )
        sent["predictions"] += predictions
        if labels and (labelled is None or k < labelled):
            truth = [int(v) for v in iris.y.iloc[idx]]
            if labels == "wrong":
                truth = [(t + 1) % 3 if i % 5 < 2 else t for i, t in enumerate(truth)]
            log.feedback(rid, truth)
            sent["labels"] += truth
    # What the window must leave out or count: an unreadable body, an error, another version.
    mid = (start + end) / 2
    log.record(request_id=f"{seed}-cut", model="iris", version="1", status=200, latency_ms=1, inputs='{"dataframe_split": {"col…[truncated 900 bytes]', outputs=None, time=mid)  # fmt: skip
    log.record(request_id=f"{seed}-400", model="iris", version="1", status=400, latency_ms=1, inputs='{"x": 1}', outputs=None, time=mid)  # fmt: skip
    log.record(request_id=f"{seed}-v2", model="iris", version="2", status=200, latency_ms=1, inputs='{"instances": [[1, 2, 3, 4]]}', outputs='{"predictions": [10]}', time=mid)  # fmt: skip
    return sent


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """iris v1 @champion (its run logs its training accuracy) with a profile stored by
    ``mlops-nb profile``, v2 (the same files) without one, the request-log windows written, and a model
    server on v1 (started first: it loads while the rest is prepared)."""
    started = time.monotonic()
    root = new_serving_project(tmp_path_factory.mktemp("monitor"))
    info = register_iris(root, 1)
    print(f"registered: {time.monotonic() - started:.1f} s")
    server = serve(root, "models:/iris@champion", free_port(), logdir=root.parent / "server")
    try:
        yield _prepare(root, info, server, started)
    finally:
        server.stop()
    assert "Exception in ASGI application" not in server.output()


def _prepare(root: Path, info: dict, server, started: float) -> SimpleNamespace:
    config = resolve_config(root, environ={})
    client = get_client(config)
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = COLUMNS
    (root / "data").mkdir()
    X.assign(target=y).to_csv(root / "data" / "train.csv", index=False)  # the target too: left out
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:  # in this process (an extra one would cost seconds of imports): the path is relative to the cwd
        os.chdir(root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["profile", "models:/iris/1", "--data", "data/train.csv"])
    finally:
        os.chdir(here)
    assert code == 0, err.getvalue()
    print(f"profiled: {time.monotonic() - started:.1f} s")
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_files(client, get_version(client, "iris", "1")))
    train_accuracy = float((model.predict(X) == y).mean())
    client.log_metric(info["runs"]["1"], "accuracy", train_accuracy)  # as the training notebook would
    v1 = get_version(client, "iris", "1")
    files = client.get_logged_model(v1.source[len("models:/") :]).artifact_location
    v2 = client.create_model_version("iris", files, run_id=v1.run_id)  # the same model, never profiled
    assert str(v2.version) == "2"
    ns = SimpleNamespace(
        root=root, config=config, client=client, model=model, X=X, y=y, info=info, train_accuracy=train_accuracy
    )
    ns.profile_out = out.getvalue() + err.getvalue()
    ns.server = server
    with RequestLog(log_url(config)) as log:
        ns.same = [
            _write_window(log, ns, span, seed, labels="true" if seed == 0 else None) for seed, span in enumerate(SAME)
        ]
        ns.shift = _write_window(log, ns, SHIFT, 10, shift={"sepal_length": 1.5, "sepal_width": 1.0})
        ns.wrong = _write_window(log, ns, WRONG, 11, labels="wrong")
        ns.few = _write_window(log, ns, FEW, 12, rows=20, per=10, labels="wrong", labelled=1)
        _write_window(log, ns, RENAMED, 13, rows=150, per=150, rename=str.upper)
        assert log.flush(60)
    print(f"fixture: {time.monotonic() - started:.1f} s")
    return ns


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """``mlops-nb ARGS`` in this process (main()), with its exit code and output."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- profiles


def test_the_profile_command_stores_the_model_inputs_and_predictions(iris, capsys) -> None:
    mv = get_version(iris.client, "iris", "1")
    uri = mv.tags[PROFILE]
    assert uri.startswith("runs:/") and uri.endswith("/profile.json")
    run = iris.client.get_run(uri[len("runs:/") :].split("/")[0])
    assert run.data.tags[KIND] == "profile" and run.data.tags[MONITOR_VERSION] == "1"
    assert "left out: target" in iris.profile_out
    profile = load_profile(iris.client, "iris", "1")
    assert profile.columns == COLUMNS and profile.rows == 150 and profile.source == "data/train.csv"
    assert profile.feature("petal_length").hist_counts is not None
    assert sum(profile.feature("petal_length").hist_counts) == 150
    # The predictions of v1 on the 150 rows: its classes, counted.
    expected = pd.Series(iris.model.predict(iris.X)).value_counts()
    assert profile.prediction is not None
    assert profile.prediction.frequencies == {str(k): int(n) for k, n in expected.items()}

    outside = iris.root.parent / "outside.csv"
    iris.X.to_csv(outside, index=False)
    code, out, err = _cli(capsys, "profile", "models:/iris/1", "--data", str(outside), "--project", str(iris.root))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "outside the project" in err


def test_a_version_without_a_profile_is_one_line_exit_2(iris, capsys) -> None:
    # Exit 2, not 1: nothing was judged. 1 means drift or degradation, which a schedule
    # acts on (retrains); a missing profile is a setup error the user fixes.
    with pytest.raises(NotFoundError, match=r"mlops-nb profile models:/iris/2 --data FILE"):
        monitor(iris.client, iris.config, "models:/iris/2")
    code, out, err = _cli(capsys, "monitor", "models:/iris/2", "--project", str(iris.root))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "iris v2 has no reference profile" in err and "mlops-nb profile models:/iris/2 --data FILE" in err


def test_bad_usage_is_one_line_exit_2(iris, capsys) -> None:
    code, out, err = _cli(
        capsys, "monitor", "models:/iris@champion", "--since", "yesterday", "--project", str(iris.root)
    )
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "since must be an ISO-8601 time" in err
    code, _, err = _cli(capsys, "monitor", "models:/iris@champion", "--drift-share", "2", "--project", str(iris.root))
    assert code == 2 and err.count("\n") == 1 and "drift_share" in err
    code, _, err = _cli(capsys, "monitor", "iris", "--project", str(iris.root))
    assert code == 2 and "models:/NAME@ALIAS" in err
    with pytest.raises(SystemExit) as exc:
        main(["monitor", "models:/iris@champion", "--min-rows", "many"])
    assert exc.value.code == 2
    with pytest.raises(UsageError, match="since"):
        monitor(iris.client, iris.config, "models:/iris@champion", since=_iso(1), until=_iso(2))


# ---------------------------------------------------------------- verdicts


def test_traffic_like_the_reference_is_healthy_over_several_seeds(iris) -> None:
    for span in SAME:
        result = monitor(
            iris.client, iris.config, "models:/iris@champion", since=_iso(span[0]), until=_iso(span[1]), log=False
        )
        assert result.verdict == "healthy", result.reason
        assert result.exit_code == 0 and result.run_id is None
        assert result.drift is not None and result.drift.drifted == [] and result.drift.missing_columns == []
        assert (result.rows, result.requests, result.unreadable) == (300, 11, 1)  # not the 400, not v2
        assert result.drift.prediction is not None and not result.drift.prediction.drifted
        assert any("1 of 11 requests could not be read" in n for n in result.notes)


def test_labels_fed_back_give_the_accuracy(iris) -> None:
    sent = iris.same[0]
    expected = sum(p == y for p, y in zip(sent["predictions"], sent["labels"])) / len(sent["labels"])
    result = monitor(
        iris.client, iris.config, "models:/iris/1", since=_iso(SAME[0][0]), until=_iso(SAME[0][1]), log=False
    )
    assert result.labelled == 300
    assert result.performance == {
        "metric": "accuracy",
        "value": pytest.approx(expected),
        "reference": pytest.approx(iris.train_accuracy),
        "reference_metric": "accuracy",
        "rows": 300,
    }
    assert result.verdict == "healthy"


def test_wrong_labels_are_degraded(iris) -> None:
    sent = iris.wrong
    expected = sum(p == y for p, y in zip(sent["predictions"], sent["labels"])) / len(sent["labels"])
    assert expected < iris.train_accuracy - 0.2
    result = monitor(
        iris.client, iris.config, "models:/iris@champion", since=_iso(WRONG[0]), until=_iso(WRONG[1]), log=False
    )
    assert result.verdict == "degraded" and result.exit_code == 1
    assert result.performance["value"] == pytest.approx(expected)
    assert f"accuracy {expected:.3f} on 300 labelled rows against {iris.train_accuracy:.3f}" in result.reason
    # A policy that asks for more labelled rows than the window has: shown, not judged.
    strict = MonitorPolicy(min_rows=300, min_labelled=1000)
    assert strict.labelled_floor == 300  # never above min_rows
    result = monitor(
        iris.client, iris.config, "models:/iris/1", since=_iso(WRONG[0]), until=_iso(WRONG[1]), policy=strict, log=False
    )
    assert result.verdict == "degraded"
    result = monitor(
        iris.client, iris.config, "models:/iris/1", since=_iso(FEW[0]), until=_iso(FEW[1]), log=False,
        policy=MonitorPolicy(min_rows=20),
    )  # fmt: skip
    assert result.labelled == 10 and result.performance["rows"] == 10  # under the floor of min(30, 20)
    assert result.verdict == "healthy" and "(under 20 labelled rows: not judged)" in result.reason


def test_too_few_rows_is_insufficient_data_exit_0(iris, capsys) -> None:
    code, out, err = _cli(capsys, "monitor", "models:/iris@champion", *_window_args(FEW), "--project", str(iris.root))
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("iris v1 @champion: INSUFFICIENT DATA — only 20 rows of iris v1 from ")
    assert "fewer than the 100 needed: wait for more traffic, widen --since, or lower --min-rows" in first
    assert last_verdict(iris.client, "iris", "1")["verdict"] == "insufficient data"
    # With a lower floor the same 20 rows are judged.
    code, out, _ = _cli(
        capsys, "monitor", "models:/iris@champion", *_window_args(FEW), "--min-rows", "20", "--no-log", "--json",
        "--project", str(iris.root),
    )  # fmt: skip
    assert code == 0 and json.loads(out)["rows"] == 20


def test_requests_without_the_reference_columns_are_drift(iris) -> None:
    result = monitor(
        iris.client, iris.config, "models:/iris/1", since=_iso(RENAMED[0]), until=_iso(RENAMED[1]), log=False
    )
    assert result.verdict == "drift" and result.drift.features == [] and result.share == 1.0
    assert result.drifted == COLUMNS and result.drift.missing_columns == COLUMNS
    assert (
        "4 of 4 features drifted (sepal_length, sepal_width, petal_length, petal_width), 4 of them missing"
        in result.reason
    )
    assert any("not checked): SEPAL_LENGTH, SEPAL_WIDTH" in note for note in result.notes)
    rows = feature_rows(result)
    assert [(r["feature"], r["method"], r["drifted"]) for r in rows[:4]] == [(c, "missing", True) for c in COLUMNS]
    assert rows[4]["is_prediction"] and not rows[4]["drifted"]


def test_shifted_traffic_is_drift_on_exactly_the_shifted_features(iris, capsys) -> None:
    code, out, err = _cli(
        capsys, "monitor", "models:/iris@champion", *_window_args(SHIFT), "--json", "--project", str(iris.root)
    )
    assert code == 1, err
    result = json.loads(out)
    assert result["verdict"] == "drift" and result["exit_code"] == 1
    assert result["drift"]["drifted"] == SHIFTED
    assert result["drift"]["share"] == 0.5 and result["rows"] == 300
    assert (
        result["reason"].startswith("300 rows from ")
        and "2 of 4 features drifted (sepal_length, sepal_width)" in result["reason"]
    )
    by_name = {f["feature"]: f for f in result["drift"]["features"]}
    assert by_name["sepal_length"]["out_of_range"] > 0 and by_name["petal_length"]["out_of_range"] == 0

    # The monitor run: tags, metrics, params, monitor.json and report.html.
    run = iris.client.get_run(result["run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_name == "monitor iris v1" and run.info.status == "FINISHED"
    assert iris.client.get_experiment(run.info.experiment_id).name == "monitoring"
    assert (tags[KIND], tags[MONITOR_MODEL], tags[MONITOR_VERSION], tags[MONITOR_ALIAS], tags[MONITOR_VERDICT]) == (
        "monitor", "iris", "1", "champion", "drift",
    )  # fmt: skip
    assert metrics["drifted_features"] == 2 and metrics["rows"] == 300 and metrics["drift_share"] == 0.5
    for f in result["drift"]["features"]:
        assert metrics[f"drift.{f['feature']}"] == pytest.approx(f["score"])
        assert metrics[f"psi.{f['feature']}"] == pytest.approx(f["psi"])
    assert json.loads(run.data.params["drifted"]) == result["drifted"]
    stored = json.loads(artifact_text(iris.client, run.info.run_id, "monitor.json"))
    assert (
        stored["verdict"] == "drift" and stored["drift"]["drifted"] == SHIFTED and stored["run_id"] == run.info.run_id
    )
    page = artifact_text(iris.client, run.info.run_id, "report.html")
    _check_report(page, stored)

    # The version's last verdict and the history.
    last = json.loads(get_version(iris.client, "iris", "1").tags[MONITOR_LAST])
    assert last["verdict"] == "drift" and last["run_id"] == run.info.run_id and last["rows"] == 300
    assert set(SHIFTED) <= set(last["drifted"])
    history = monitor_history(iris.client, "iris", "1")
    assert history[0]["run_id"] == run.info.run_id and history[0]["verdict"] == "drift"
    assert history[0]["drifted"] == result["drifted"] and history[0]["share"] == 0.5 and history[0]["rows"] == 300
    assert [h["when"] for h in history] == sorted((h["when"] for h in history), reverse=True)

    # The table: the verdict line, then the drifted features first.
    code, out, _ = _cli(capsys, "monitor", "models:/iris@champion", *_window_args(SHIFT), "--no-log", "--project", str(iris.root))  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("iris v1 @champion: DRIFT — 300 rows from ")
    table = [line.split()[0] for line in lines[2:8]]
    assert table[0] == "feature" and table[1:3] == SHIFTED and set(table[3:5]) == {"petal_length", "petal_width"}
    assert table[5] == "(prediction)"
    assert len(monitor_history(iris.client, "iris", "1")) == len(history)  # --no-log recorded nothing


class _Bars(HTMLParser):
    """The report's bars: feature -> {"reference": [counts], "current": [counts]}."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, dict[str, list[int]]] = {}
        self.feature: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-feature" in a:
            self.feature = a["data-feature"]
            self.bars[self.feature] = {"reference": [], "current": []}
        if tag == "rect" and self.feature is not None:
            assert float(a["height"]) >= 0 and float(a["width"]) > 0
            self.bars[self.feature][a["class"]].append(int(a["data-count"]))


def _check_report(page: str, stored: dict) -> None:
    """The page is self-contained and draws each feature's stored counts as bars."""
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert "<span class='badge'" in page and ">drift</span>" in page
    parser = _Bars()
    parser.feed(page)
    for f in stored["drift"]["features"]:
        assert parser.bars[f["feature"]] == {
            "reference": f["reference_hist"]["counts"],
            "current": f["current_hist"]["counts"],
        }
        assert sum(parser.bars[f["feature"]]["current"]) == 300
    prediction = stored["drift"]["prediction"]
    assert parser.bars["(prediction)"]["reference"] == prediction["reference_hist"]["counts"]


def test_the_report_escapes_names_and_scales_both_sides_alike() -> None:
    ref = {"categories": ["<b>a</b>", "b&c"], "counts": [30, 10]}
    cur = {"categories": ["<b>a</b>", "b&c"], "counts": [1, 3]}
    svg = histogram_svg(ref, cur, width=200, height=60)
    assert "<b>" not in svg and "&lt;b&gt;a&lt;/b&gt;: 30 rows (75.0%)" in svg and "b&amp;c: 3 rows (75.0%)" in svg
    heights = {}
    for part in svg.split("<rect ")[1:]:
        attrs = dict(kv.split("=", 1) for kv in part.split(">")[0].split() if "=" in kv)
        heights[(attrs["class"].strip('"'), int(attrs["data-count"].strip('"')))] = float(attrs["height"].strip('"'))
    # 75 % is the tallest share on either side: both 75 % bars are full height, 25 % a third of it.
    assert heights[("reference", 30)] == heights[("current", 3)] == pytest.approx(46.0)
    assert heights[("reference", 10)] == pytest.approx(46.0 / 3, rel=1e-3)
    assert "no data" in histogram_svg(None, {"edges": [0, 1], "counts": [0]})
    assert feature_rows(None) == []


def test_the_window_reads_every_format_and_aligns_labels() -> None:
    bodies = [
        json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}),
        json.dumps({"dataframe_records": [{"a": 3, "b": "z"}]}),
        json.dumps({"instances": [[4, "w"], [5, "v"]]}),  # positional: the reference's names
        json.dumps({"inputs": {"a": [6], "b": ["u"]}}),
        "a,b\n7,t\n",
        json.dumps({"instances": [[[1, 2]]]}),  # a tensor: unreadable
    ]
    frame = pd.DataFrame(
        {
            "request_id": [str(i) for i in range(len(bodies))],
            "time": pd.to_datetime([NOW + i for i in range(len(bodies))], unit="s", utc=True),
            "version": "3",
            "status": 200,
            "inputs": bodies,
            "outputs": [json.dumps({"predictions": p}) for p in ([0, 1], [1], [[0], [1]], "bad", [0], [0])],
            "label": [[0, 0], 1, None, 1, [0, 1], None],
        }
    )
    window = read_window(frame, "3", columns=["a", "b"])
    assert list(window.inputs.columns) == ["a", "b"]
    assert window.inputs["a"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert window.inputs["b"].tolist() == ["x", "y", "z", "w", "v", "u", "t"]
    assert window.predictions == [0, 1, 1, 0, 1, None, 0]
    assert window.labels == [0, 0, 1, None, None, 1, None]  # [0, 1] for a one-row request: not one a row
    assert (window.requests, window.unreadable, window.unmatched_labels) == (6, 1, 1)
    assert window.problems == ["the rows hold nested values (tensors), which the monitor does not profile"]


# ---------------------------------------------------------------- end to end


def test_served_traffic_with_feedback_is_judged_by_the_command(iris, capsys) -> None:
    """Traffic through a real model server (several formats), labels posted to its
    /feedback, then ``mlops-nb monitor`` on the newest window."""
    since = datetime.now(timezone.utc).isoformat()
    server = iris.server
    server.wait_ready()
    rng = np.random.default_rng(42)
    predictions, labels = [], []
    for k in range(8):
        idx = rng.integers(0, len(iris.X), 25)
        chunk = iris.X.iloc[idx].reset_index(drop=True)
        body = _bodies(chunk, k, positional=False)  # iris' signature names its columns
        kind = "text/csv" if k % 5 == 4 else "application/json"
        answer = requests.post(f"{server.url}/invocations", data=body, headers={"Content-Type": kind}, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions += answer.json()["predictions"]
        truth = [int(v) for v in iris.y.iloc[idx]]
        labels += truth
        fed = requests.post(
            f"{server.url}/feedback", json={"request_id": answer.headers["X-Request-Id"], "label": truth}, timeout=30
        )
        assert fed.status_code == 202
    url = log_url(iris.config)
    deadline = time.monotonic() + 30
    while read_log(url, "iris", since=since)["label"].notna().sum() < 8:
        assert time.monotonic() < deadline, "the server did not log the requests and labels"
        time.sleep(0.2)
    code, out, err = _cli(
        capsys, "monitor", "models:/iris@champion", "--since", since, "--json", "--project", str(iris.root)
    )
    assert code == 0, err
    result = json.loads(out)
    expected = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
    assert result["verdict"] == "healthy", result["reason"]
    assert (result["rows"], result["labelled"], result["unreadable"]) == (200, 200, 0)
    assert result["performance"]["value"] == pytest.approx(expected) and result["performance"]["rows"] == 200
    assert last_verdict(iris.client, "iris", "1")["run_id"] == result["run_id"]


def test_the_accuracy_reference_is_the_runs_held_out_score_when_it_has_no_plain_accuracy() -> None:
    """A training notebook that logs ``test_accuracy`` (as notebooks/train.ipynb does) is
    compared with that, and the reason names it."""
    from mlops_nb.monitoring.monitor import performance

    perf = performance([1, 0, 1, 1], [1, 0, 0, 1], {"test_accuracy": 0.95, "train_accuracy": 1.0})
    assert perf == {
        "metric": "accuracy",
        "value": 0.75,
        "reference": 0.95,
        "reference_metric": "test_accuracy",
        "rows": 4,
    }
    assert performance([1.0, 2.0], [1.5, 2.5], {"eval_mae": 0.2})["reference_metric"] == "eval_mae"
    assert performance([1, 0], [1, 1], {})["reference"] is None
