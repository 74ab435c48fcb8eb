"""The schedules and jobs REST API on a real Jupyter server (pytest-jupyter), a real
schedule database, a real MLflow store and real kernels: list, pause, resume, run now,
the jobs list, a job's executed notebook, and the scheduler running inside the server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import call, make_notebook, server_config

from mlops_nb.config import resolve_config
from mlops_nb.jobs.schedules.store import ScheduleStore

pytestmark = pytest.mark.slow


@pytest.fixture
def store(jp_root_dir: Path) -> ScheduleStore:
    """The server root is a project with a tiny notebook and one schedule of it, 'nightly'."""
    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    (jp_root_dir / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    make_notebook(
        jp_root_dir / "nb" / "tiny.ipynb",
        [("code", "word = 'hello'", ["parameters"]), ("code", "print('TINY-RAN', word)", [])],
    )
    config = resolve_config(jp_root_dir, environ={})
    # The MLflow store exists before the server's first request (its migrations take
    # seconds on a loaded machine; requests then only read it).
    from mlops_nb.store import ensure_store

    ensure_store(config)
    store = ScheduleStore.for_project(config)
    store.add("nightly", "0 2 * * *", "nb/tiny.ipynb", timezone="Europe/Paris", params={"word": "scheduled"})
    return store


async def wait_for_job(jp_fetch, done, timeout: float = 120.0) -> dict:
    """Poll /jobs until ``done(jobs)`` returns a job (a deadline, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, data = await call(jp_fetch, "jobs")
        assert code == 200, data
        found = done(data["jobs"])
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"no such job in time: {data['jobs']}"
        await asyncio.sleep(0.3)


def finished(schedule: str):
    return lambda jobs: next(
        (j for j in jobs if j["schedule"] == schedule and j["status"] in ("FINISHED", "FAILED")), None
    )


async def test_list_pause_resume_and_bad_input(jp_fetch, store):
    code, data = await call(jp_fetch, "schedules")
    assert code == 200, data
    assert data["scheduler"] == {"in_server": False, "error": None}
    [nightly] = data["schedules"]
    assert (nightly["name"], nightly["cron"], nightly["timezone"], nightly["target"], nightly["paused"]) == (
        "nightly",
        "0 2 * * *",
        "Europe/Paris",
        "nb/tiny.ipynb",
        False,
    )
    assert datetime.fromisoformat(nightly["next_run"]) > datetime.now(timezone.utc)

    code, data = await call(jp_fetch, "schedules", "nightly", method="PATCH", body={"paused": True})
    assert code == 200 and data["paused"] is True and data["next_run"] is None
    assert store.get("nightly").paused is True
    code, data = await call(jp_fetch, "schedules", "nightly", method="PATCH", body={"paused": False})
    assert code == 200 and data["paused"] is False and data["next_run"]
    assert store.get("nightly").paused is False

    for path, method, body, status, message in [
        (("schedules", "nightly"), "PATCH", {"paused": "yes"}, 400, 'paused must be true or false, not "yes"'),
        (("schedules", "nightly"), "PATCH", {"paused": True, "when": "now"}, 400, 'unknown field "when"'),
        (("schedules", "nightly"), "PATCH", {}, 400, "give 'paused' in the request body, e.g. {\"paused\": true}"),
        (("schedules", "nightly"), "PATCH", "not json", 400, "not JSON"),
        (("schedules", "nope"), "PATCH", {"paused": True}, 404, "no schedule named 'nope'"),
        (("schedules", "nope", "runs"), "POST", None, 404, "no schedule named 'nope'"),
        (("schedules", "nightly é²", "runs"), "POST", None, 404, "no schedule named 'nightly é²'"),
        (("jobs",), "GET", None, 400, "limit must be"),
        (("jobs", "0" * 32, "notebook"), "GET", None, 404, "no run"),
        (("jobs", "not-a-run", "notebook"), "GET", None, 400, "is not a run id"),
    ]:
        params = {"limit": "0"} if path == ("jobs",) else None
        got, data = await call(jp_fetch, *path, method=method, body=body, params=params)
        assert (got, data.get("status")) == (status, status) and message in data["error"], (path, data)
        assert "\n" not in data["error"]
    assert store.get("nightly").paused is False  # bad input changed nothing


async def test_run_now_runs_in_the_background_and_shows_in_jobs(jp_fetch, jp_serverapp, jp_root_dir, store):
    code, record = await call(jp_fetch, "schedules", "nightly", "runs", method="POST")
    assert code == 202, record
    assert (record["schedule"], record["trigger"], record["state"]) == ("nightly", "manual", "running")

    job = await wait_for_job(jp_fetch, finished("nightly"))
    assert job["status"] == "FINISHED", job
    assert (job["origin"], job["trigger"], job["attempt"], job["job_id"]) == ("manual", "manual", 1, record["id"])
    assert job["notebook"] == "nb/tiny.ipynb" and job["duration_s"] > 0 and job["start"]
    assert store.job(record["id"]).state == "succeeded"

    # A job run outside any schedule (mlops-nb run) is listed too, newest first.
    from mlops_nb.jobs.run.execution import run_notebook

    loop = asyncio.get_running_loop()
    manual = await loop.run_in_executor(
        None, lambda: run_notebook(jp_root_dir / "nb" / "tiny.ipynb", config=resolve_config(jp_root_dir, environ={}))
    )
    code, data = await call(jp_fetch, "jobs", params={"limit": "5"})
    assert [(j["run_id"], j["origin"], j["schedule"]) for j in data["jobs"]] == [
        (manual.run_id, "run", None),
        (job["run_id"], "manual", "nightly"),
    ]
    code, data = await call(jp_fetch, "jobs", params={"limit": "1"})
    assert [j["run_id"] for j in data["jobs"]] == [manual.run_id]

    # Its executed notebook: the job wrote it under .mlops/ (hidden, which Jupyter will
    # not open), so the panel gets the run's HTML rendering, with the job's output.
    code, data = await call(jp_fetch, "jobs", job["run_id"], "notebook")
    assert code == 200, data
    assert (data["source"], data["run_id"], data["name"]) == ("snapshot", job["run_id"], "tiny.ipynb")
    assert "TINY-RAN scheduled" in data["html"] and data["html"].lstrip().lower().startswith("<!doctype html>")
    assert data["recorded_path"] == store.job(record["id"]).output

    # A server that shows hidden files opens the file itself, relative to its root.
    jp_serverapp.contents_manager.allow_hidden = True
    try:
        code, data = await call(jp_fetch, "jobs", job["run_id"], "notebook")
        assert data == {"source": "workspace", "path": f".mlops/jobs/{job['run_id']}/tiny.ipynb"}
    finally:
        jp_serverapp.contents_manager.allow_hidden = False

    # Not a notebook job: no executed notebook, said in words.
    from mlops_nb.store import get_client

    client = get_client(resolve_config(jp_root_dir, environ={}))
    other = client.create_run(client.get_experiment_by_name(manual.experiment).experiment_id)
    code, data = await call(jp_fetch, "jobs", other.info.run_id, "notebook")
    assert code == 404 and "is not a notebook job" in data["error"]


async def test_executed_notebook_outside_the_server_root_is_never_served(jp_fetch, jp_serverapp, jp_root_dir, store):
    code, record = await call(jp_fetch, "schedules", "nightly", "runs", method="POST")
    job = await wait_for_job(jp_fetch, finished("nightly"))
    jp_serverapp.contents_manager.allow_hidden = True
    outside = jp_root_dir.parent / "outside.ipynb"
    make_notebook(outside, [("markdown", "SECRET-OUTSIDE", [])])
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    try:
        for recorded in (str(outside), str(jp_root_dir / ".." / "outside.ipynb"), str(jp_root_dir / "link.ipynb")):
            store.update_job(record["id"], output=recorded)
            code, data = await call(jp_fetch, "jobs", job["run_id"], "notebook")
            assert code == 200 and data["source"] == "snapshot" and "path" not in data, (recorded, data)
            assert "SECRET-OUTSIDE" not in data["html"] and "TINY-RAN" in data["html"]
        # Inside the root and not hidden: opened as the workspace file.
        make_notebook(jp_root_dir / "out" / "tiny.ipynb", [("markdown", "copied", [])])
        store.update_job(record["id"], output=str(jp_root_dir / "out" / "tiny.ipynb"))
        code, data = await call(jp_fetch, "jobs", job["run_id"], "notebook")
        assert data == {"source": "workspace", "path": "out/tiny.ipynb"}
    finally:
        jp_serverapp.contents_manager.allow_hidden = False
    # Traversal through the route itself is refused before any lookup.
    code, data = await call(jp_fetch, "jobs", "..%2F..%2Fetc", "notebook")
    assert code in (400, 404) and "error" in data


async def test_schedules_and_jobs_refuse_unauthenticated_requests(jp_serverapp, http_server_client, store):
    for method, path, body in [
        ("GET", "schedules", None),
        ("PATCH", "schedules/nightly", '{"paused": true}'),
        ("POST", "schedules/nightly/runs", "{}"),
        ("GET", "jobs", None),
        ("GET", f"jobs/{'0' * 32}/notebook", None),
    ]:
        resp = await http_server_client.fetch(
            jp_serverapp.base_url + "mlops-nb/api/" + path, method=method, body=body, raise_error=False
        )
        assert resp.code == 403, f"{method} {path} answered {resp.code} without a token"
    assert store.get("nightly").paused is False and store.recent_jobs() == []


class TestSchedulerInServer:
    """``c.MlopsNbApp.scheduler = True``: the server runs due jobs itself."""

    @pytest.fixture
    def jp_server_config(self, jp_root_dir, store):
        # The schedule is due a second ago: the scheduler fires it without waiting for 02:00.
        due = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=1)
        s = store.schedules
        with store._write() as conn:
            conn.execute(s.update().where(s.c.name == "nightly").values(next_run=due))
        return server_config(MlopsNbApp={"scheduler": True})

    async def test_the_server_runs_a_due_job_and_says_so(self, jp_fetch, store):
        code, data = await call(jp_fetch, "schedules")
        assert code == 200 and data["scheduler"] == {"in_server": True, "error": None}
        job = await wait_for_job(jp_fetch, finished("nightly"))
        assert (job["status"], job["origin"], job["trigger"]) == ("FINISHED", "schedule", "schedule")
        [record] = store.history("nightly")
        assert (record.trigger, record.state, record.run_id) == ("schedule", "succeeded", job["run_id"])
        # Fired once, and the next run moved on to the next 02:00 in Paris.
        code, data = await call(jp_fetch, "schedules")
        nxt = datetime.fromisoformat(data["schedules"][0]["next_run"])
        assert nxt > datetime.now(timezone.utc) and data["schedules"][0]["last_state"] == "succeeded"
