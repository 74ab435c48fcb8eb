"""The loop closed by a schedule, on real parts: a model server process answers drifted
traffic and logs it; a real scheduler's monitor job finds the drift and starts the
retraining pipeline on a real kernel, which registers a version, saves its profile and
promotes it through the guarded promotion; the server swaps to it (its X-Model-Version
says so) and the monitor is healthy again. The cooldown and the daily limit stop further
retrains (the in-process API, with the store's clock moved), too few rows never
retrain, a tiny local HTTP server hears the webhook, and ``schedule add --monitor``
refuses bad input with one line and exit 2.

One project for the module: iris v1 @champion (version k predicts ``class + 10 * (k -
1)``, so an answer shows which version gave it) with its profile, served with a
one-second alias poll, and drifted traffic already in its request log.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import make_notebook, new_project
from services import free_port
from serving_helpers import COLUMNS, new_serving_project, register_iris, serve, split_body, store_client

from mlops_nb import cli
from mlops_nb.config import resolve_config
from mlops_nb.jobs.schedules.scheduler import Scheduler, run_now
from mlops_nb.jobs.schedules.store import (
    MONITOR_TRIGGER,
    MONITOR_VERDICTS,
    JobRecord,
    ScheduleStore,
    db_time,
    scheduler_url,
    verdict_of,
)
from mlops_nb.monitoring.monitor import VERDICTS
from mlops_nb.serving.requestlog import log_url, read_log

pytestmark = pytest.mark.slow
UTC = timezone.utc

# Trains on the iris labels shifted by `shift` (v2 answers class + 10), logs its
# accuracy, registers @challenger with its reference profile, and promotes it to
# @champion only if it beats the holder (mlops-nb's guarded promotion).
RETRAIN = [
    ("code", "shift = 10\nmonitor_run = ''", ["parameters"]),
    ("code", "%load_ext mlops_nb\n%mlops track", []),
    (
        "code",
        "import mlops_nb as mnb\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from mlops_nb.monitoring.profile import build_profile\n"
        "from mlops_nb.monitoring.profiles import save_profile\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        f"X.columns = {COLUMNS!r}\n"
        "model = LogisticRegression(max_iter=1000).fit(X, y + shift)\n"
        "accuracy = model.score(X, y + shift)\n"
        "mnb.log(accuracy=accuracy)\n"
        "v = mnb.register(model, 'iris', alias='challenger', input_example=X.head(3))\n"
        "save_profile(mnb.get_tracker().client, 'iris', v.version, build_profile(X, model.predict(X), source='iris'))\n"
        "print(mnb.promote('iris', 'accuracy').message)",
        [],
    ),
]
# `monitor_run` is declared, so the scheduler passes the verdict's run to the retrain.
PIPELINE = (
    "experiment: retrain\nparams:\n  monitor_run: ''\n"
    "steps:\n  retrain:\n    notebook: retrain.ipynb\n    params:\n      monitor_run: ${params.monitor_run}\n"
)
SWAP_TIMEOUT = 120.0


# ---------------------------------------------------------------- helpers


class Hooks(BaseHTTPRequestHandler):
    """Keeps every JSON body POSTed to it, by path."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Clock:
    """Real time plus a shift the test moves."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def wait_for(what: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def iris_rows(shift: dict[str, float] | None = None) -> dict:
    """The 150 iris rows as a ``dataframe_split`` body's parts, columns moved by ``shift``."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).data
    frame.columns = COLUMNS
    for column, by in (shift or {}).items():
        frame[column] = frame[column] + by
    return frame.to_dict(orient="split")


def send(url: str, rows: dict, per_request: int = 10) -> list[requests.Response]:
    """Post ``rows`` to the server in requests of ``per_request`` rows."""
    answers = []
    with requests.Session() as session:
        for start in range(0, len(rows["data"]), per_request):
            idx = list(range(start, min(start + per_request, len(rows["data"]))))
            answers.append(
                session.post(
                    f"{url}/invocations",
                    data=split_body(rows, idx),
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
            )
    return answers


def logged(config, version: str, count: int) -> None:
    """Wait until the server's request log holds ``count`` answered requests of ``version``."""

    def enough() -> bool:
        frame = read_log(log_url(config), "iris")
        return int(((frame["version"] == version) & (frame["status"] == 200)).sum()) >= count

    wait_for(enough, 30)


def retrains(store: ScheduleStore, name: str) -> list[JobRecord]:
    """The retrain jobs a monitor schedule started, oldest first."""
    return [r for r in store.history(name, 200) if r.trigger == MONITOR_TRIGGER][::-1]


def hooks_at(path: str) -> list[dict[str, Any]]:
    return [c["body"] for c in Hooks.received if c["path"] == path]


def mnb(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["--project", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hook_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    Hooks.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """iris v1 @champion with a profile, served (alias poll 1 s), 150 drifted rows logged."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.monitoring.profile import build_profile
    from mlops_nb.monitoring.profiles import save_profile

    tmp = tmp_path_factory.mktemp("loop")
    root = new_serving_project(tmp)
    registered = register_iris(root, 1)
    port = free_port()
    server = serve(root, "models:/iris@champion", port, "--poll", "1", logdir=tmp / "server")
    try:
        config = resolve_config(root, environ={})
        client = store_client(root)
        # The champion's recorded accuracy: what a retrained version has to beat.
        client.log_metric(registered["runs"]["1"], "accuracy", 0.8)
        X, y = load_iris(return_X_y=True, as_frame=True)
        X.columns = COLUMNS
        v1 = LogisticRegression(max_iter=1000).fit(X, y)  # as register_iris trained it
        save_profile(client, "iris", "1", build_profile(X, v1.predict(X), source="iris"))
        make_notebook(root / "retrain.ipynb", RETRAIN)
        (root / "retrain.yaml").write_text(PIPELINE)
        make_notebook(root / "noop.ipynb", [("code", "print('retrained')", [])])
        server.wait_ready()
        # Three of the four features moved well outside what v1 was trained on.
        drifted = send(server.url, iris_rows({"sepal_length": 2.0, "petal_length": 4.0, "petal_width": 2.0}))
        assert [(a.status_code, a.headers.get("X-Model-Version")) for a in drifted] == [(200, "1")] * 15
        logged(config, "1", 15)
        yield {"root": root, "config": config, "client": client, "url": server.url, "server": server}
    finally:
        server.stop()


# ---------------------------------------------------------------- the loop


def _fire(store: ScheduleStore, name: str) -> None:
    """Make ``name`` due now, as a passing cron occurrence would."""
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    s = store.schedules
    with store._write() as conn:
        conn.execute(s.update().where(s.c.name == name).values(next_run=db_time(due)))


def test_drift_retrains_promotes_the_server_swaps_and_the_monitor_is_healthy_again(
    loop: dict[str, Any], hook_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, config, client = loop["root"], loop["config"], loop["client"]
    store = ScheduleStore(scheduler_url(config), project_root=root)
    store.add_monitor(
        "watch",
        "*/30 * * * *",
        "models:/iris@champion",
        on_drift="retrain.yaml",
        min_rows=50,
        webhook=hook_url + "/watch",
    )
    _fire(store, "watch")
    scheduler = Scheduler(store, config, tick_s=0.2)
    scheduler.start()
    try:
        done = wait_for(lambda: [r for r in retrains(store, "watch") if r.done], 150, every=0.5)
    finally:
        scheduler.stop()
    [retrain] = done
    [check] = [r for r in store.history("watch") if r.trigger == "schedule"]
    # The monitor job: its verdict and decision in one line, its monitor run recorded.
    assert check.state == "succeeded", check
    assert check.output.startswith("drift: ") and f"; retraining: job {retrain.id} runs pipeline retrain.yaml" in (
        check.output
    )
    monitor_run = client.get_run(check.run_id)
    assert monitor_run.data.tags["mlops_nb.kind"] == "monitor"
    assert monitor_run.data.tags["mlops_nb.monitor.verdict"] == "drift"
    assert monitor_run.data.tags["mlops_nb.schedule"] == "watch"
    # The retraining pipeline ran as a job of the same schedule, and promoted v2.
    assert retrain.state == "succeeded" and retrain.run_id, retrain
    assert client.get_run(retrain.run_id).data.tags["mlops_nb.schedule.trigger"] == "monitor"
    # ...given the verdict's run (lineage; and never a cached answer to the last retrain).
    experiment = client.get_experiment_by_name("retrain")
    given = client.search_runs([experiment.experiment_id], f"params.monitor_run = '{check.run_id}'")
    assert [r.data.tags.get("mlops_nb.pipeline.step") for r in given if r.info.run_id != retrain.run_id] == ["retrain"]
    assert str(client.get_registered_model("iris").aliases["champion"]) == "2"
    # The webhook heard the verdict, and that a retrain started.
    [hook] = hooks_at("/watch")
    assert hook["event"] == "monitor.drift" and hook["job"]["id"] == check.id
    heard = hook["monitor"]
    assert heard["verdict"] == "drift" and heard["model"] == "iris" and heard["version"] == "1"
    assert {"sepal_length", "petal_length", "petal_width"} <= set(heard["drifted"]) and heard["rows"] == 150
    assert heard["run_id"] == check.run_id and heard["reason"]
    assert heard["retrain"] == {
        "started": True,
        "job": retrain.id,
        "target": "retrain.yaml",
        "decision": f"retraining: job {retrain.id} runs pipeline retrain.yaml",
    }

    _the_server_swaps_and_the_monitor_is_healthy_again(loop, store, check, retrain, capsys)


def _the_server_swaps_and_the_monitor_is_healthy_again(
    loop: dict[str, Any],
    store: ScheduleStore,
    check: JobRecord,
    retrain: JobRecord,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, config, client = loop["root"], loop["config"], loop["client"]
    # The server follows @champion: v2 answers (class + 10). One row a poll: what v1
    # still answers meanwhile barely touches its logged window.
    body = split_body(iris_rows(), [0])

    def swapped() -> requests.Response | None:
        answer = requests.post(
            f"{loop['url']}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        return answer if answer.headers.get("X-Model-Version") == "2" else None

    answer = wait_for(swapped, SWAP_TIMEOUT, every=0.5)
    assert answer.status_code == 200 and all(p >= 10 for p in answer.json()["predictions"])

    # Traffic like v2's training data: the next check is healthy and retrains nothing.
    assert {a.headers.get("X-Model-Version") for a in send(loop["url"], iris_rows())} == {"2"}
    logged(config, "2", 15)
    again = run_now(store, config, "watch", wait=True)
    assert again.state == "succeeded" and again.output.startswith("healthy: "), again
    assert "retrain" not in again.output and len(retrains(store, "watch")) == 1
    assert client.get_run(again.run_id).data.tags["mlops_nb.monitor.version"] == "2"
    assert len(hooks_at("/watch")) == 1  # healthy, and no --notify-success: no call

    # What a person reads: the model as the target, the verdicts in the history.
    code, out, _ = mnb(root, "schedule", "list", capsys=capsys)
    [line] = [row for row in out.splitlines() if row.startswith("watch ")]
    assert code == 0 and "models:/iris@champion -> retrain.yaml" in line and line.rstrip().endswith("healthy")
    code, out, _ = mnb(root, "schedule", "history", "watch", capsys=capsys)
    assert code == 0 and "RESULT" in out.splitlines()[0]
    rows = {row.split()[0]: row for row in out.splitlines()[1:]}
    assert "healthy: " in rows[str(again.id)] and " manual " in rows[str(again.id)]
    assert "drift: " in rows[str(check.id)] and " monitor " in rows[str(retrain.id)]


def test_cooldown_and_the_daily_limit_stop_further_retrains(loop: dict[str, Any], hook_url: str) -> None:
    """models:/iris/1 stays drifted; the store's clock moves through a day."""
    root, config = loop["root"], loop["config"]
    clock = Clock()
    store = ScheduleStore(scheduler_url(config), project_root=root, clock=clock)
    store.add_monitor(
        "guard",
        "0 0 1 1 *",
        "models:/iris/1",
        on_drift="noop.ipynb",
        since="2d",
        min_rows=50,
        cooldown="1h",
        max_retrains=2,
        webhook=hook_url + "/guard",
    )
    start = datetime.now(UTC)

    def check(hours: float) -> tuple[JobRecord, list[JobRecord]]:
        clock.shift = timedelta(hours=hours)
        record = run_now(store, config, "guard", wait=True)
        assert record.state == "succeeded" and record.output.startswith("drift: "), record
        return record, retrains(store, "guard")

    first, started = check(0)
    assert [r.state for r in started] == ["succeeded"]
    assert first.output.endswith(f"retraining: job {started[0].id} runs notebook noop.ipynb")
    at = started[0].occurrence
    assert abs((at - start).total_seconds()) < 60

    soon, started = check(0.25)
    assert len(started) == 1
    assert soon.output.endswith(
        f"not retraining: the last retrain (job {started[0].id}) started at {at:%Y-%m-%d %H:%M} UTC, "
        f"within the 1h cooldown (until {at + timedelta(hours=1):%Y-%m-%d %H:%M} UTC)"
    )
    _, started = check(2)
    assert [r.state for r in started] == ["succeeded", "succeeded"]
    full, started = check(4)
    assert len(started) == 2
    assert full.output.endswith(
        "not retraining: 2 retrain(s) started in the last 24 h, the most --max-retrains 2 allows"
    )
    # A day after the first, one retrain is in the last 24 h: the next may start.
    _, started = check(24.5)
    assert len(started) == 3 and started[-1].occurrence - at > timedelta(hours=24)

    heard = [h["monitor"]["retrain"] for h in hooks_at("/guard")]
    assert [h["started"] for h in heard] == [True, False, True, False, True]
    assert "cooldown" in heard[1]["decision"] and "--max-retrains" in heard[3]["decision"]


def test_too_few_rows_is_insufficient_data_and_never_retrains(loop: dict[str, Any], hook_url: str) -> None:
    store = ScheduleStore(scheduler_url(loop["config"]), project_root=loop["root"])
    store.add_monitor(
        "few",
        "0 0 1 1 *",
        "models:/iris/1",
        on_drift="noop.ipynb",
        min_rows=10_000,
        cooldown="0",
        webhook=hook_url + "/few",
    )
    record = run_now(store, loop["config"], "few", wait=True)
    assert record.state == "succeeded" and record.output.startswith("insufficient data: "), record
    assert retrains(store, "few") == [] and hooks_at("/few") == []


# ---------------------------------------------------------------- adding one


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = new_project(tmp_path)
    make_notebook(root / "jobs" / "retrain.ipynb", [("code", "epochs = 1", ["parameters"]), ("code", "epochs", [])])
    (root / "jobs" / "retrain.yaml").write_text("steps:\n  r:\n    notebook: retrain.ipynb\n")
    (root / "notes.txt").write_text("")
    monkeypatch.chdir(root / "jobs")
    return root


def test_a_monitor_schedule_is_added_listed_and_stored_beside_the_others(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = mnb(
        small,
        *("schedule", "add", "watch", "--cron", "*/30 * * * *", "--monitor", "models:/iris@champion"),
        *("--on-drift", "retrain.yaml", "--since", "12h", "--min-rows", "500", "--cooldown", "90m"),
        *("--max-retrains", "3", "--webhook", "http://127.0.0.1:9/hook", "--json"),
        capsys=capsys,
    )
    assert code == 0, err
    added = json.loads(out)
    assert added["kind"] == "monitor" and added["target"] == "models:/iris@champion" and added["params"] == {}
    assert added["monitor"] == {
        "on_drift": "jobs/retrain.yaml",
        "on_drift_kind": "pipeline",
        "since": "12h",
        "min_rows": 500,
        "cooldown_s": 5400.0,
        "max_retrains": 3,
    }
    # A notebook schedule beside it, its positional after the options as before.
    code, out, err = mnb(small, "schedule", "add", "nightly", "--cron", "0 2 * * *", "retrain.ipynb", capsys=capsys)
    assert code == 0 and "notebook jobs/retrain.ipynb" in out, err
    code, out, err = mnb(
        small,
        *("schedule", "add", "quiet", "--monitor", "models:/iris/3", "--cron", "@hourly"),
        *("--on-drift", "retrain.ipynb", "-p", "epochs=5"),
        capsys=capsys,
    )
    assert code == 0, err
    assert out.strip().startswith(
        "mlops-nb: schedule quiet: monitors models:/iris/3 (since 24h, at least 100 rows; on drift runs notebook "
        "jobs/retrain.ipynb (cooldown 6h, at most 2 a day)) at '@hourly' (UTC); next run "
    )
    store = ScheduleStore.for_project(resolve_config(small, environ={}))
    schedules = {s.name: s for s in store.list()}
    assert schedules["nightly"].monitor is None and schedules["nightly"].kind == "notebook"
    assert schedules["quiet"].params == {"epochs": "5"} and schedules["quiet"].monitor.on_drift_kind == "notebook"
    # The settings ride in the params column: no new column, no migration.
    with store._read() as conn:
        stored = json.loads(
            conn.execute(store.schedules.select().where(store.schedules.c.name == "quiet")).first()._mapping["params"]
        )
    assert stored["epochs"] == "5" and stored["mlops_nb.monitor"]["on_drift"] == "jobs/retrain.ipynb"
    code, out, _ = mnb(small, "schedule", "list", capsys=capsys)
    assert "models:/iris@champion -> jobs/retrain.yaml" in out and "jobs/retrain.ipynb" in out
    code, out, _ = mnb(small, "schedule", "history", "watch", capsys=capsys)
    assert code == 0 and "has run no jobs yet" in out
    # The history reads a verdict back from the line a monitor job writes.
    assert MONITOR_VERDICTS == VERDICTS and [verdict_of(f"{v}: why") for v in VERDICTS] == list(VERDICTS)


ADD = ["schedule", "add", "w", "--cron", "*/30 * * * *"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--monitor", "iris@champion"], "--monitor 'iris@champion' is not a model to monitor"),
        (["--monitor", "models:/iris"], "give models:/NAME@ALIAS (it follows the alias) or models:/NAME/VERSION"),
        (["--monitor", "models:/iris/0"], "must be a positive whole number"),
        (["--monitor", "models:/iris@latest"], "reserved"),
        (["--monitor", "models:/iris@c", "--on-drift", "missing.yaml"], "pipeline jobs/missing.yaml not found"),
        (["--monitor", "models:/iris@c", "--on-drift", "../notes.txt"], "neither a notebook (.ipynb) nor a pipeline"),
        (["--monitor", "models:/iris@c", "--on-drift", "retrain.ipynb", "-p", "n=1"], "unknown parameter 'n'"),
        (["--monitor", "models:/iris@c", "--since", "0"], "--since must be a duration from 1s to 366d"),
        (["--monitor", "models:/iris@c", "--since", "yesterday"], "--since must be a duration"),
        (["--monitor", "models:/iris@c", "--min-rows", "0"], "--min-rows must be a whole number from 1 to"),
        (["--monitor", "models:/iris@c", "--min-rows", "many"], "--min-rows must be a whole number, not 'many'"),
        (["--monitor", "models:/iris@c", "--on-drift", "retrain.yaml", "--cooldown=-1h"], "--cooldown must be"),
        (["--monitor", "models:/iris@c", "--on-drift", "retrain.yaml", "--max-retrains", "0"], "--max-retrains"),
        (["--monitor", "models:/iris@c", "--cooldown", "1h"], "--cooldown applies to the retraining: give --on-drift"),
        (["--monitor", "models:/iris@c", "-p", "epochs=2"], "-p applies to the retraining"),
        (["--monitor", "models:/iris@c", "retrain.ipynb"], "give either retrain.ipynb or --monitor models:/iris@c"),
        (["--on-drift", "retrain.yaml", "retrain.ipynb"], "--on-drift goes with --monitor MODEL"),
        ([], "give a NOTEBOOK or PIPELINE to run, or --monitor models:/NAME@ALIAS"),
    ],
)
def test_bad_monitor_input_is_one_line_exit_2_and_nothing_stored(
    small: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = mnb(small, *ADD, *args, capsys=capsys)
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1 and message in err, err
    code, out, _ = mnb(small, "schedule", "list", "--json", capsys=capsys)
    assert json.loads(out)["schedules"] == []
