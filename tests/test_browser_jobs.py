"""The side panel's Jobs section in a real JupyterLab and a real Chromium, over a real
schedule database and MLflow store: a person sees how to add a schedule, sees the
schedule with its next run, pauses and resumes it, runs it now, watches the job finish
and opens the notebook it executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import ARTIFACTS, SERVER_EXTENSION_OFF, browser_page, chromium_path, jupyterlab
from helpers import make_notebook, new_project

from mlops_nb.config import resolve_config
from mlops_nb.jobs.schedules.store import ScheduleStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
JOBS = "#mlops-nb-jobs"


def test_jobs_section_empty_state_schedule_pause_resume_run_now_and_executed_notebook(tmp_path: Path):
    root = new_project(tmp_path)
    make_notebook(
        root / "nb" / "tiny.ipynb",
        [("code", "word = 'hello'", ["parameters"]), ("code", "print('TINY-RAN', word)", [])],
    )
    store = ScheduleStore.for_project(resolve_config(root, environ={}))
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "jobs-panel") as page:
        page.goto(lab.url("/lab"))
        page.wait_for_selector(PANEL_TAB, timeout=60_000)
        page.click(PANEL_TAB)
        jobs = page.locator(JOBS)

        # No schedule yet: the section says how to add one.
        empty = jobs.locator(".jp-mlops-schedules-empty")
        empty.wait_for(timeout=30_000)
        assert "No schedules yet" in empty.inner_text() and "mlops-nb schedule add" in empty.inner_text()
        assert "No job runs yet" in jobs.locator(".jp-mlops-jobs-empty").inner_text()
        assert "does not run due jobs" in jobs.locator(".jp-mlops-scheduler-note").inner_text()

        # A schedule added from a terminal shows after the panel's refresh, with its next run.
        store.add("nightly", "0 2 * * *", "nb/tiny.ipynb", timezone="Europe/Paris", params={"word": "from-the-panel"})
        page.locator(".jp-Toolbar [title='Refresh the registry and jobs']").click()
        nightly = jobs.locator("[data-schedule='nightly']")
        nightly.wait_for(timeout=10_000)
        text = nightly.inner_text()
        assert "0 2 * * *" in text and "Europe/Paris" in text and "nb/tiny.ipynb" in text
        next_run = nightly.locator(".jp-mlops-next").inner_text()
        # The browser's time and the schedule's, each with its zone named, and how far
        # away it is (02:00 in Paris is within a day).
        assert re.fullmatch(
            r"next run: \S+ [\d:]+(?: [AP]M)? your time \([\d:]+(?: [AP]M)? in Europe/Paris\), "
            r"(in \d+ hours?|in \d+ minutes?|tomorrow)",
            next_run,
        ), next_run

        # Pause, then resume: the store says so each time, and the row follows.
        nightly.locator(".jp-ToolbarButtonComponent", has_text="Pause").click()
        page.wait_for_selector(f"{JOBS} [data-schedule='nightly'][data-paused='true']", timeout=10_000)
        assert store.get("nightly").paused is True and store.get("nightly").next_run is None
        assert "none while paused" in nightly.locator(".jp-mlops-next").inner_text()
        page.wait_for_selector(".Toastify__toast:has-text('Paused nightly')", timeout=10_000)
        nightly.locator(".jp-ToolbarButtonComponent", has_text="Resume").click()
        page.wait_for_selector(f"{JOBS} [data-schedule='nightly'][data-paused='false']", timeout=10_000)
        assert store.get("nightly").paused is False and store.get("nightly").next_run is not None

        # Run now: the job appears at once and is followed until it finishes.
        nightly.locator(".jp-ToolbarButtonComponent", has_text="Run now").click()
        page.wait_for_selector(".Toastify__toast:has-text('Started nightly now')", timeout=10_000)
        job = jobs.locator(".jp-mlops-job").first
        job.wait_for(timeout=10_000)
        page.wait_for_selector(f"{JOBS} .jp-mlops-job[data-status='FINISHED']", timeout=120_000)
        [record] = store.history("nightly")
        assert record.state == "succeeded" and record.trigger == "manual"
        finished = jobs.locator(f".jp-mlops-job[data-run-id='{record.run_id}']")
        assert finished.locator(".jp-mlops-status").inner_text() == "finished"
        assert "nightly · run now" in finished.inner_text() and "nb/tiny.ipynb" in finished.inner_text()
        assert " s" in finished.locator(".jp-mlops-job-meta").inner_text()  # its duration

        # Clicking it opens the notebook the job executed (its HTML: the file is under .mlops/).
        finished.locator(".jp-mlops-job-name").click()
        frame = page.frame_locator(".jp-mlops-snapshot iframe")
        frame.locator("text=TINY-RAN from-the-panel").first.wait_for(timeout=30_000)
        assert page.evaluate("window.jupyterapp.shell.currentWidget.title.label") == "tiny.ipynb (job run)"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jobs-panel.png"))


def test_jobs_section_says_what_to_do_when_the_server_extension_is_off(tmp_path: Path):
    root = new_project(tmp_path)
    with jupyterlab(root, tmp_path, config=SERVER_EXTENSION_OFF) as lab, browser_page(tmp_path, "jobs-missing") as page:
        page.goto(lab.url("/lab"))
        page.wait_for_selector(PANEL_TAB, timeout=60_000)
        page.click(PANEL_TAB)
        alerts = page.locator(f"{JOBS} [role=alert]")
        alerts.first.wait_for(timeout=30_000)
        # Both halves of the section (schedules, job runs) say the same actionable thing.
        assert alerts.count() == 2
        for text in alerts.all_inner_texts():
            assert "The jobs API is not available" in text and "jupyter server extension list" in text
