"""Schedules and the scheduler, on a real SQLite schedule database, real kernels and a
real MLflow store: what the commands print and store, that an occurrence fires exactly
once, retries, missed-occurrence policies, webhooks, the running limit, and a scheduler
killed mid-job and started again.

Time is moved by giving the store a clock (``now + shift``) or by making a schedule due
in the database; no test waits for a wall-clock minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from helpers import make_notebook, new_project

from mlops_nb import cli
from mlops_nb.config import resolve_config
from mlops_nb.jobs.schedules.scheduler import Scheduler, run_now
from mlops_nb.jobs.schedules.store import ScheduleStore, scheduler_url

pytestmark = pytest.mark.slow
UTC = timezone.utc


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for the module (its MLflow store is created once) with tiny notebooks."""
    root = new_project(tmp_path_factory.mktemp("sched"))
    make_notebook(root / "quick.ipynb", [("code", "n = 1\nlabel = 'x'", ["parameters"]), ("code", "print(n * 2)", [])])
    make_notebook(root / "fails.ipynb", [("code", "raise ValueError('bad data')", [])])
    make_notebook(
        root / "sleepy.ipynb",
        [("code", "seconds = 2.0", ["parameters"]), ("code", "import time\ntime.sleep(seconds)", [])],
    )
    # Its kernel dies the first time (a marker file remembers), so a retry passes.
    make_notebook(
        root / "crash_once.ipynb",
        [
            ("code", "marker = ''", ["parameters"]),
            (
                "code",
                "import os, pathlib\nm = pathlib.Path(marker)\nif not m.exists():\n    m.write_text('x')\n    os._exit(1)",
                [],
            ),
        ],
    )
    # Logs accuracy into its job's run and registers a version from it.
    make_notebook(
        root / "register.ipynb",
        [
            ("code", "accuracy = 0.9", ["parameters"]),
            (
                "code",
                "import json, os\nfrom mlflow import MlflowClient\n"
                "job = json.load(open(os.environ['MLOPS_NB_JOB_FILE']))\n"
                "c = MlflowClient(tracking_uri=job['tracking_uri'])\n"
                "c.log_metric(job['run_id'], 'accuracy', accuracy)\n"
                "c.create_model_version('churn', source='runs:/' + job['run_id'] + '/model', run_id=job['run_id'])",
                [],
            ),
        ],
    )
    from mlops_nb.store import ensure_store

    ensure_store(resolve_config(root))
    return root


class Clock:
    """Real time plus a shift the test moves."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def to(self, when: datetime, plus: float = 0.2) -> None:
        self.shift = when - datetime.now(UTC) + timedelta(seconds=plus)


def store_for(root: Path, db: Path, clock: Clock | None = None) -> ScheduleStore:
    """A schedule database of the test's own (the project's MLflow store is shared)."""
    return ScheduleStore(f"sqlite:///{db / 'scheduler.db'}", project_root=root, clock=clock)


def wait_for(what: Callable[[], object], timeout: float = 60, every: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def drain(scheduler: Scheduler, timeout: float = 90) -> None:
    """Tick until no job runs and no retry waits."""

    def idle() -> bool:
        scheduler.tick()
        waiting = [r for r in scheduler.store.recent_jobs(200) if r.state in ("running", "retrying")]
        return scheduler.running == 0 and not waiting

    wait_for(idle, timeout, every=0.1)


def mlflow_runs(root: Path, experiment: str) -> list:
    from mlops_nb.store import get_client

    client = get_client(resolve_config(root))
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def mnb(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["--project", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- the commands


def test_add_list_pause_resume_remove_history_through_the_cli(tmp_path: Path, capsys, monkeypatch) -> None:
    root = new_project(tmp_path)
    make_notebook(root / "nb" / "train.ipynb", [("code", "n = 1", ["parameters"]), ("code", "n", [])])
    monkeypatch.chdir(root / "nb")

    code, out, err = mnb(
        root,
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "train.ipynb",
        "-p",
        "n=5",
        "--retries",
        "1",
        "--timeout",
        "600",
        "--missed",
        "once",
        "--webhook",
        "http://127.0.0.1:9/hook",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    added = json.loads(out)
    assert added["target"] == "nb/train.ipynb" and added["kind"] == "notebook"  # relative to the project root
    assert added["params"] == {"n": "5"} and added["retries"] == 1 and added["timeout_s"] == 600.0
    assert added["missed"] == "once" and added["webhook"] == "http://127.0.0.1:9/hook" and not added["paused"]
    # 02:00 in Berlin is 00:00 or 01:00 UTC
    next_run = datetime.fromisoformat(added["next_run"])
    assert next_run > datetime.now(UTC) and next_run.minute == 0 and next_run.hour in (0, 1)

    code, out, _ = mnb(root, "schedule", "add", "hourly", "--cron", "@hourly", "train.ipynb", capsys=capsys)
    assert code == 0 and "schedule hourly" in out and "next run" in out

    code, out, _ = mnb(root, "schedule", "list", "--json", capsys=capsys)
    assert [s["name"] for s in json.loads(out)["schedules"]] == ["hourly", "nightly"]
    code, out, _ = mnb(root, "schedule", "list", capsys=capsys)
    assert "NEXT RUN" in out and "nightly" in out and "Europe/Berlin" in out

    code, out, _ = mnb(root, "schedule", "pause", "nightly", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["paused"] is True and json.loads(out)["next_run"] is None
    code, out, _ = mnb(root, "schedule", "list", capsys=capsys)
    assert "paused" in out
    code, out, _ = mnb(root, "schedule", "resume", "nightly", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["paused"] is False and json.loads(out)["next_run"] is not None

    code, out, _ = mnb(root, "schedule", "history", "nightly", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"schedule": "nightly", "jobs": []}

    code, out, _ = mnb(root, "schedule", "remove", "hourly", capsys=capsys)
    assert code == 0 and "removed" in out
    code, out, _ = mnb(root, "schedule", "list", "--json", capsys=capsys)
    assert [s["name"] for s in json.loads(out)["schedules"]] == ["nightly"]
    assert (root / ".mlops" / "scheduler.db").is_file()

    code, _, err = mnb(root, "schedule", "history", "hourly", capsys=capsys)
    assert code == 2 and "no schedule named 'hourly'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *", "job.ipynb"], "invalid cron expression '61 * * * *'"),
        (["--cron", "0 2 * *", "job.ipynb"], "invalid cron expression"),
        (["--cron", "0 2 * * *", "--timezone", "Mars/Olympus", "job.ipynb"], "unknown time zone 'Mars/Olympus'"),
        (["--cron", "0 2 * * *", "missing.ipynb"], "notebook missing.ipynb not found"),
        (["--cron", "0 2 * * *", "notes.txt"], "neither a notebook (.ipynb) nor a pipeline"),
        (["--cron", "0 2 * * *", "job.ipynb", "-p", "epochs=3"], "unknown parameter 'epochs'"),
        (["--cron", "0 2 * * *", "job.ipynb", "-p", "n=many"], "parameter 'n' of job.ipynb takes int"),
        (["--cron", "0 2 * * *", "job.ipynb", "--webhook", "file:///etc/passwd"], "is not an http:// or https:// URL"),
        (["--cron", "0 2 * * *", "job.ipynb", "--timeout", "-5"], "--timeout must be more than 0"),
        (["--cron", "0 2 * * *", "job.ipynb", "--retries", "99"], "--retries must be a whole number from 0 to 10"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_scheduled(tmp_path: Path, capsys, monkeypatch, args, message) -> None:
    root = new_project(tmp_path)
    make_notebook(root / "job.ipynb", [("code", "n = 1", ["parameters"])])
    (root / "notes.txt").write_text("x")
    monkeypatch.chdir(root)
    code, out, err = mnb(root, "schedule", "add", "nightly", *args, capsys=capsys)
    assert code == 2
    assert err.startswith("mlops-nb: error: ") and message in err and err.count("\n") == 1, err
    _, out, _ = mnb(root, "schedule", "list", "--json", capsys=capsys)
    assert json.loads(out)["schedules"] == []


def test_bad_names_and_a_second_schedule_of_one_name_are_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    root = new_project(tmp_path)
    make_notebook(root / "job.ipynb", [("code", "1", [])])
    monkeypatch.chdir(root)
    for name in ("Nightly Job", "_x", "a" * 70, "über", "a/b"):
        code, _, err = mnb(root, "schedule", "add", name, "--cron", "0 2 * * *", "job.ipynb", capsys=capsys)
        assert code == 2 and "is not a short slug" in err
    assert mnb(root, "schedule", "add", "nightly", "--cron", "0 2 * * *", "job.ipynb", capsys=capsys)[0] == 0
    code, _, err = mnb(root, "schedule", "add", "nightly", "--cron", "0 3 * * *", "job.ipynb", capsys=capsys)
    assert code == 2 and "exists already" in err
    _, out, _ = mnb(root, "schedule", "list", "--json", capsys=capsys)
    assert [(s["name"], s["cron"]) for s in json.loads(out)["schedules"]] == [("nightly", "0 2 * * *")]
    for verb in ("pause", "resume", "remove", "run-now", "history"):
        code, _, err = mnb(root, "schedule", verb, "weekly", capsys=capsys)
        assert code == 2 and "no schedule named 'weekly'" in err, verb


def test_the_database_url_comes_from_the_environment_or_pyproject(tmp_path: Path, monkeypatch) -> None:
    root = new_project(tmp_path)
    config = resolve_config(root)
    assert scheduler_url(config, {}) == f"sqlite:///{root / '.mlops' / 'scheduler.db'}"
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n[tool.mlops-nb]\nscheduler_db = 'sqlite:///db/s.db'\n")
    config = resolve_config(root)
    assert scheduler_url(config, {}) == f"sqlite:///{(root / 'db' / 's.db').resolve()}"
    assert scheduler_url(config, {"MLOPS_NB_SCHEDULER_DB": "postgresql://u@h/db"}) == "postgresql://u@h/db"


# ---------------------------------------------------------------- firing


def test_a_due_job_runs_and_its_record_links_a_finished_mlflow_run(proj: Path, tmp_path: Path) -> None:
    clock = Clock()
    store = store_for(proj, tmp_path, clock)
    added = store.add("due", "*/5 * * * *", "quick.ipynb", params={"n": "21"})
    assert store.history("due") == []
    scheduler = Scheduler(store, resolve_config(proj), tick_s=0.1)
    assert scheduler.tick() == []  # not due yet
    clock.to(added.next_run)
    started = scheduler.tick()
    assert [(r.schedule, r.occurrence, r.state, r.trigger, r.attempt) for r in started] == [
        ("due", added.next_run, "running", "schedule", 1)
    ]
    drain(scheduler)
    [record] = store.history("due")
    assert record.state == "succeeded" and record.error is None
    assert record.output and Path(record.output).is_file()
    from mlops_nb.store import get_client

    run = get_client(resolve_config(proj)).get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["n"] == "21"
    assert run.data.tags["mlops_nb.schedule"] == "due" and run.data.tags["mlops_nb.schedule.attempt"] == "1"
    schedule = store.get("due")
    assert schedule.last_state == "succeeded" and schedule.next_run == added.next_run + timedelta(minutes=5)
    assert scheduler.tick() == []  # the occurrence does not fire again


def test_two_schedulers_on_one_database_fire_each_occurrence_once(proj: Path, tmp_path: Path) -> None:
    clock = Clock()
    store = store_for(proj, tmp_path, clock)
    names = [f"pair-{i}" for i in range(3)]
    for name in names:
        added = store.add(name, "0 3 * * *", "quick.ipynb")
    clock.to(added.next_run)
    # Two schedulers, each with its own connections, tick at the same moments.
    schedulers = [
        Scheduler(store_for(proj, tmp_path, clock), resolve_config(proj), name=f"s{i}", max_running=3) for i in range(2)
    ]
    barrier = threading.Barrier(2)

    def ticking(s: Scheduler) -> None:
        barrier.wait()
        for _ in range(30):
            s.tick()
            time.sleep(0.02)

    threads = [threading.Thread(target=ticking, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in schedulers:
        drain(s)
    records = [r for r in store.recent_jobs(100) if r.schedule in names]
    assert sorted(r.schedule for r in records) == names  # one record each
    assert all(r.state == "succeeded" and r.attempt == 1 for r in records)
    runs = [r for r in mlflow_runs(proj, "quick") if r.data.tags.get("mlops_nb.schedule") in names]
    assert sorted(r.data.tags["mlops_nb.schedule"] for r in runs) == names


def test_a_kernel_that_dies_is_retried_and_a_cell_error_is_not(proj: Path, tmp_path: Path) -> None:
    store = store_for(proj, tmp_path)
    config = resolve_config(proj)
    marker = tmp_path / "crashed-once"
    store.add("flaky", "0 4 * * *", "crash_once.ipynb", params={"marker": str(marker)}, retries=2)
    final = run_now(store, config, "flaky", wait=True, retry_backoff_s=0.1)
    history = sorted(store.history("flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.state, r.trigger) for r in history] == [(1, "failed", "manual"), (2, "succeeded", "manual")]
    assert final.id == history[1].id and final.state == "succeeded"
    assert history[0].occurrence == history[1].occurrence
    assert history[1].started >= history[0].finished + timedelta(seconds=0.1)  # the backoff
    assert marker.exists()
    assert store.get("flaky").last_state == "succeeded"

    store.add("broken", "0 4 * * *", "fails.ipynb", retries=3)
    final = run_now(store, config, "broken", wait=True, retry_backoff_s=0.1)
    assert final.state == "failed" and "ValueError: bad data" in final.error
    assert [r.attempt for r in store.history("broken")] == [1]  # a cell's error is not retried


def test_missed_occurrences_are_skipped_or_run_once_by_policy(proj: Path, tmp_path: Path) -> None:
    clock = Clock()
    store = store_for(proj, tmp_path, clock)
    skip = store.add("missed-skip", "* * * * *", "quick.ipynb", missed="skip")
    store.add("missed-once", "* * * * *", "quick.ipynb", missed="once")
    # No scheduler ran for the next five and a half minutes.
    clock.to(skip.next_run + timedelta(minutes=4, seconds=30))
    scheduler = Scheduler(store, resolve_config(proj), grace_s=0)
    fired = scheduler.tick()
    assert sorted((r.schedule, r.state) for r in fired) == [("missed-once", "running"), ("missed-skip", "skipped")]
    drain(scheduler)
    [skipped] = store.history("missed-skip")
    assert skipped.state == "skipped" and skipped.run_id is None
    assert "missed 5 occurrence(s)" in skipped.error and "skipped" in skipped.error
    [once] = store.history("missed-once")
    assert once.state == "succeeded" and once.occurrence == skip.next_run + timedelta(minutes=4)  # the latest missed
    for name in ("missed-skip", "missed-once"):
        assert store.get(name).next_run == skip.next_run + timedelta(minutes=5)  # the next one after now
    assert scheduler.tick() == []


def test_max_running_bounds_the_jobs_running_at_once(proj: Path, tmp_path: Path) -> None:
    clock = Clock()
    store = store_for(proj, tmp_path, clock)
    for name in ("slow-a", "slow-b", "slow-c"):
        added = store.add(name, "0 5 * * *", "sleepy.ipynb", params={"seconds": "1.5"})
    clock.to(added.next_run)
    scheduler = Scheduler(store, resolve_config(proj), max_running=2)
    assert len(scheduler.tick()) == 2
    assert scheduler.tick() == []  # the third waits for a slot
    most = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        scheduler.tick()
        records = [r for r in store.recent_jobs(50) if r.schedule.startswith("slow-")]
        most = max(most, sum(r.state == "running" for r in records))
        if len(records) == 3 and all(r.state == "succeeded" for r in records):
            break
        time.sleep(0.05)
    records = sorted((r for r in store.recent_jobs(50) if r.schedule.startswith("slow-")), key=lambda r: r.started)
    assert [r.state for r in records] == ["succeeded"] * 3 and most == 2
    # The third started only when one of the first two had finished: never three at once.
    assert records[2].started >= min(records[0].finished, records[1].finished)


# ---------------------------------------------------------------- notifications


class Hooks(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server():
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    Hooks.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_webhooks_tell_a_failure_and_a_new_models_change_against_the_champion(
    proj: Path, tmp_path: Path, hook_server: str
) -> None:
    from mlops_nb.store import get_client

    config = resolve_config(proj)
    client = get_client(config)
    # The champion: version 1 of churn, from a run with accuracy 0.8.
    exp = client.create_experiment("champion-setup")
    old = client.create_run(exp)
    client.log_metric(old.info.run_id, "accuracy", 0.8)
    client.set_terminated(old.info.run_id)
    client.create_registered_model("churn")
    v1 = client.create_model_version("churn", f"runs:/{old.info.run_id}/model", run_id=old.info.run_id)
    client.set_registered_model_alias("churn", "champion", v1.version)

    store = store_for(proj, tmp_path)
    store.add("hook-fail", "0 6 * * *", "fails.ipynb", webhook=hook_server + "/fail")
    store.add(
        "hook-model",
        "0 6 * * *",
        "register.ipynb",
        params={"accuracy": "0.9"},
        webhook=hook_server + "/ok",
        notify_success=True,
    )
    store.add("hook-quiet", "0 6 * * *", "quick.ipynb", webhook=hook_server + "/quiet")  # success: no call
    # A webhook that cannot be reached is logged; it never fails the job.
    store.add("hook-down", "0 6 * * *", "quick.ipynb", webhook="http://127.0.0.1:9/down", notify_success=True)
    failed = run_now(store, config, "hook-fail", wait=True)
    ok = run_now(store, config, "hook-model", wait=True)
    quiet = run_now(store, config, "hook-quiet", wait=True)
    down = run_now(store, config, "hook-down", wait=True)
    assert (failed.state, ok.state, quiet.state, down.state) == ("failed", "succeeded", "succeeded", "succeeded")

    calls = {c["path"]: c for c in Hooks.received}
    assert sorted(calls) == ["/fail", "/ok"]
    assert calls["/fail"]["type"] == "application/json"
    body = calls["/fail"]["body"]
    assert body["event"] == "job.failed" and body["status"] == "FAILED" and body["run_id"] == failed.run_id
    assert "ValueError: bad data" in body["error"]
    assert body["schedule"]["name"] == "hook-fail" and body["job"]["id"] == failed.id and body["models"] == []

    body = calls["/ok"]["body"]
    assert body["event"] == "job.succeeded" and body["status"] == "FINISHED" and body["run_id"] == ok.run_id
    [change] = [m for m in body["models"] if m["metric"] == "accuracy"]
    assert change["model"] == "churn" and change["version"] == "2" and change["alias"] == "champion"
    assert change["holder_version"] == "1" and change["value"] == 0.9 and change["holder_value"] == 0.8
    assert change["change"] == pytest.approx(0.1)


# ---------------------------------------------------------------- a killed scheduler


def _scheduler_process(root: Path, store: ScheduleStore, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLOPS_NB_SCHEDULER_DB": store.url}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_nb",
            "--project",
            str(root),
            "scheduler",
            "--tick",
            "0.2",
            "--retry-backoff",
            "0.5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("a"),
        env=env,
        cwd=root,
    )


def test_a_scheduler_killed_during_a_job_is_restarted_the_job_is_marked_and_retried_once(
    proj: Path, tmp_path: Path
) -> None:
    store = store_for(proj, tmp_path)
    store.add("restart", "0 0 1 1 *", "sleepy.ipynb", params={"seconds": "4"}, retries=1)
    # Due now: the yearly occurrence is moved to a second ago (no test waits for New Year).
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    with store._write() as conn:
        conn.execute(
            store.schedules.update()
            .where(store.schedules.c.name == "restart")
            .values(next_run=due.replace(tzinfo=None))
        )
    log = tmp_path / "scheduler.log"
    first = _scheduler_process(proj, store, log)
    try:
        # The job has started: its record names its MLflow run.
        running = wait_for(lambda: [r for r in store.history("restart") if r.state == "running" and r.run_id], 60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    [killed] = running
    assert killed.occurrence == due and killed.attempt == 1

    second = _scheduler_process(proj, store, log)
    try:
        wait_for(lambda: any(r.state == "succeeded" for r in store.history("restart")), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
    history = sorted(store.history("restart"), key=lambda r: r.attempt)
    assert [(r.attempt, r.state) for r in history] == [(1, "interrupted"), (2, "succeeded")], log.read_text()
    assert all(r.occurrence == due for r in history)  # one occurrence, not lost, not fired twice
    assert "stopped during the job" in history[0].error and history[0].run_id == killed.run_id
    runs = {r.info.run_id: r for r in mlflow_runs(proj, "sleepy") if r.data.tags.get("mlops_nb.schedule") == "restart"}
    assert sorted(runs) == sorted(r.run_id for r in history)
    assert runs[history[0].run_id].info.status == "FAILED" and runs[history[1].run_id].info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in mlflow_runs(proj, "sleepy"))
    schedule = store.get("restart")
    assert schedule.next_run > datetime.now(UTC) + timedelta(days=1) and schedule.last_state == "succeeded"
    assert "interrupted" in log.read_text()


# ---------------------------------------------------------------- pipelines, timeouts, a clean stop


def test_a_pipeline_is_checked_when_scheduled_and_runs_as_one_job(
    proj: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    (proj / "flow.yaml").write_text(
        "params:\n  n: 2\nsteps:\n"
        "  first:\n    notebook: quick.ipynb\n    params: {n: '${params.n}'}\n"
        "  second:\n    notebook: quick.ipynb\n    params: {label: '${steps.first.run_id}'}\n"
    )
    (proj / "broken.yaml").write_text(
        "steps:\n  only:\n    notebook: quick.ipynb\n    params: {label: '${steps.nope.run_id}'}\n"
    )
    monkeypatch.setenv("MLOPS_NB_SCHEDULER_DB", f"sqlite:///{tmp_path / 'scheduler.db'}")
    monkeypatch.chdir(proj)
    code, _, err = mnb(proj, "schedule", "add", "flow", "--cron", "0 1 * * *", "broken.yaml", capsys=capsys)
    assert code == 2 and "nope" in err and err.count("\n") == 1
    code, _, err = mnb(
        proj, "schedule", "add", "flow", "--cron", "0 1 * * *", "flow.yaml", "-p", "n=many", capsys=capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert json.loads(mnb(proj, "schedule", "list", "--json", capsys=capsys)[1])["schedules"] == []

    code, out, err = mnb(
        proj, "schedule", "add", "flow", "--cron", "0 1 * * *", "flow.yaml", "-p", "n=3", "--json", capsys=capsys
    )
    assert code == 0, err
    assert json.loads(out)["kind"] == "pipeline" and json.loads(out)["params"] == {"n": "3"}
    code, out, err = mnb(proj, "schedule", "run-now", "flow", "--json", capsys=capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["state"] == "succeeded" and record["trigger"] == "manual"
    from mlops_nb.store import get_client

    client = get_client(resolve_config(proj))
    run = client.get_run(record["run_id"])  # the pipeline's run
    assert run.info.status == "FINISHED" and run.data.tags["mlops_nb.schedule"] == "flow"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 2


def test_a_job_over_its_timeout_fails_and_is_retried(proj: Path, tmp_path: Path) -> None:
    store = store_for(proj, tmp_path)
    store.add("slowpoke", "0 7 * * *", "sleepy.ipynb", params={"seconds": "60"}, timeout_s=1, retries=1)
    final = run_now(store, resolve_config(proj), "slowpoke", wait=True, retry_backoff_s=0.1)
    history = sorted(store.history("slowpoke"), key=lambda r: r.attempt)
    assert [(r.attempt, r.state) for r in history] == [(1, "failed"), (2, "failed")]
    assert all("timed out after 1 s" in r.error for r in history) and final.id == history[1].id
    assert store.get("slowpoke").last_state == "failed"


def test_stopping_a_scheduler_interrupts_its_job_and_queues_the_retry(proj: Path, tmp_path: Path) -> None:
    clock = Clock()
    store = store_for(proj, tmp_path, clock)
    added = store.add("stopped", "0 8 * * *", "sleepy.ipynb", params={"seconds": "30"}, retries=1)
    clock.to(added.next_run)
    scheduler = Scheduler(store, resolve_config(proj), tick_s=0.1, retry_backoff_s=600)
    scheduler.start()  # as inside the Jupyter server
    wait_for(lambda: [r for r in store.history("stopped") if r.run_id], 60)
    scheduler.stop(wait=30)
    history = sorted(store.history("stopped"), key=lambda r: r.attempt)
    assert [(r.attempt, r.state) for r in history] == [(1, "interrupted"), (2, "retrying")]
    assert "the scheduler stopped during the job" in history[0].error
    assert history[1].not_before > clock() + timedelta(seconds=500)  # the next scheduler retries it
    from mlops_nb.store import get_client

    assert get_client(resolve_config(proj)).get_run(history[0].run_id).info.status == "KILLED"
    assert store.get("stopped").last_state == "retrying"


def test_recovery_ends_a_dead_pipeline_job_and_every_run_nested_under_it(proj: Path, tmp_path: Path) -> None:
    # A pipeline job whose scheduler died: its pipeline run, a step run and a sweep job
    # under that step were left RUNNING in the store.
    from mlops_nb.jobs.schedules.store import db_time as _db
    from mlops_nb.store import get_client

    client = get_client(resolve_config(proj))
    exp = client.create_experiment(f"dead-pipeline-{tmp_path.name}")
    pipeline = client.create_run(exp, tags={"mlops_nb.kind": "pipeline"})
    step = client.create_run(exp, tags={"mlflow.parentRunId": pipeline.info.run_id})
    job = client.create_run(exp, tags={"mlflow.parentRunId": step.info.run_id})
    finished = client.create_run(exp, tags={"mlflow.parentRunId": pipeline.info.run_id})
    client.set_terminated(finished.info.run_id, "FINISHED")
    (proj / "p.yaml").write_text("steps:\n  a:\n    notebook: quick.ipynb\n")
    store = store_for(proj, tmp_path)
    store.add("nightly-pipeline", "0 2 * * *", "p.yaml", retries=0)
    now = datetime.now(UTC)
    with store._write() as conn:
        conn.execute(
            store.jobs.insert().values(
                schedule="nightly-pipeline",
                occurrence=_db(now),
                trigger="schedule",
                attempt=1,
                state="running",
                started=_db(now),
                run_id=pipeline.info.run_id,
                owner="gone@host-of-the-past:1:dead",
                lease_until=_db(now - timedelta(seconds=5)),
            )
        )
    (marked,) = Scheduler(store, resolve_config(proj)).recover()
    assert store.job(marked.id).state == "interrupted"
    status = {
        r: client.get_run(r).info.status
        for r in (pipeline.info.run_id, step.info.run_id, job.info.run_id, finished.info.run_id)
    }
    assert status == {
        pipeline.info.run_id: "FAILED",
        step.info.run_id: "FAILED",
        job.info.run_id: "FAILED",
        finished.info.run_id: "FINISHED",
    }
