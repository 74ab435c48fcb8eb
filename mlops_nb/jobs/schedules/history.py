"""Recent job runs as a person looks for them: MLflow's job runs joined with the
scheduler's records, and where a job's executed notebook can be read.

Jupyter-free: the server's ``/jobs`` endpoints (and anything else) call these with a
client and a schedule store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, NotFoundError, StoreError, UsageError, one_line
from mlops_nb.runs import experiment_ids
from mlops_nb.snapshots import file_inside, is_missing, read_snapshot
from mlops_nb.tags import ERROR, KIND, NOTEBOOK

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from mlops_nb.jobs.schedules.store import JobRecord, ScheduleStore

__all__ = ["JobNotebook", "JobRow", "job_notebook", "recent_job_runs"]

JOB_FILTER = f"tags.`{KIND}` = 'job'"
_RUN_ID = re.compile(r"[0-9a-fA-F]{1,64}")

# A scheduler record that has no MLflow run yet (or never will) still has a status a
# person can read, in MLflow's words where one fits.
_STATE_STATUS = {
    "running": "STARTING",
    "retrying": "RETRYING",
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "skipped": "SKIPPED",
}


@dataclass(frozen=True)
class JobRow:
    """One line of the recent jobs list.

    ``origin`` says who started it: ``"schedule"`` (the scheduler, on time), ``"manual"``
    (run now, of ``schedule``), ``"pipeline"`` or ``"sweep"`` (a step or point of one;
    ``parent_run_id`` names it), or ``"run"`` (``mlops-nb run`` / ``%mlops run``).
    ``status`` is the MLflow run's (RUNNING, FINISHED, FAILED, KILLED) or, before a run
    exists, the scheduler's (STARTING, RETRYING, FAILED, SKIPPED, ...).
    """

    run_id: str | None
    name: str
    experiment: str | None
    notebook: str
    status: str
    start: datetime | None
    end: datetime | None
    duration_s: float | None
    origin: str
    schedule: str | None = None
    trigger: str | None = None
    attempt: int | None = None
    job_id: int | None = None
    state: str | None = None
    parent_run_id: str | None = None
    error: str | None = None


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


def _run_row(run: Any, experiments: dict[str, str], parent_kinds: dict[str, str]) -> JobRow:
    info, tags = run.info, run.data.tags
    start, end = _ts(info.start_time), _ts(info.end_time)
    parent = tags.get("mlflow.parentRunId") or None
    origin = "run"
    if parent:
        # A step of a pipeline or a point of a sweep: the parent's kind says which.
        origin = "sweep" if parent_kinds.get(parent) == "sweep" else "pipeline"
    return JobRow(
        run_id=info.run_id,
        name=info.run_name or "",
        experiment=experiments.get(info.experiment_id, info.experiment_id),
        notebook=tags.get(NOTEBOOK, tags.get("mlflow.source.name", "")),
        status=info.status,
        start=start,
        end=end,
        duration_s=(end - start).total_seconds() if start and end else None,
        origin=origin,
        parent_run_id=parent,
        error=tags.get(ERROR) or None,
    )


def _with_record(row: JobRow, record: JobRecord) -> JobRow:
    return replace(
        row,
        origin="manual" if record.trigger == "manual" else "schedule",
        schedule=record.schedule,
        trigger=record.trigger,
        attempt=record.attempt,
        job_id=record.id,
        state=record.state,
        error=row.error or record.error,
    )


def _record_row(record: JobRecord) -> JobRow:
    """A scheduler record whose run is not among the job runs (not started yet, failed
    before a run existed, or a pipeline's run)."""
    start = record.started or record.occurrence
    end = record.finished
    return _with_record(
        JobRow(
            run_id=record.run_id,
            name=record.schedule,
            experiment=None,
            notebook="",
            status=_STATE_STATUS.get(record.state, record.state.upper()),
            start=start,
            end=end,
            duration_s=(end - start).total_seconds() if start and end else None,
            origin="schedule",
        ),
        record,
    )


def recent_job_runs(client: MlflowClient, store: ScheduleStore | None, limit: int = 50) -> list[JobRow]:
    """The newest ``limit`` job runs, newest first.

    Every MLflow run tagged ``mlops_nb.kind = job`` (``mlops-nb run``, sweeps, pipeline
    steps, scheduled jobs); a run the scheduler started carries its schedule, trigger and
    attempt. Scheduler records with no job run (about to start, failed before a run was
    created, or a scheduled pipeline) are listed too, so nothing a schedule did is hidden.
    ``store`` may be ``None`` (no scheduler database): MLflow's runs alone.
    """
    if not 1 <= limit <= 1000:
        raise UsageError(f"limit must be between 1 and 1000, not {limit}")
    try:
        experiments = experiment_ids(client, None)
        runs = (
            list(
                client.search_runs(
                    list(experiments),
                    filter_string=JOB_FILTER,
                    order_by=["attributes.start_time DESC"],
                    max_results=limit,
                )
            )
            if experiments
            else []
        )
        parent_kinds: dict[str, str] = {}
        parents = {r.data.tags.get("mlflow.parentRunId") or "" for r in runs} - {""}
        for parent in parents:
            try:
                parent_kinds[parent] = client.get_run(parent).data.tags.get(KIND, "")
            except Exception:
                parent_kinds[parent] = ""  # a deleted parent: still a step of something
    except MlopsError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot list job runs from {client.tracking_uri}: {one_line(exc)}") from None
    rows = [_run_row(run, experiments, parent_kinds) for run in runs]
    by_run = store.jobs_by_run([row.run_id for row in rows if row.run_id]) if store is not None else {}
    records = store.recent_jobs(limit=limit) if store is not None else []
    shown = {row.run_id for row in rows}
    rows = [_with_record(row, by_run[row.run_id]) if row.run_id in by_run else row for row in rows]
    for record in records:
        if record.run_id in shown:
            continue
        row = _record_row(record)
        if record.run_id:
            # A run outside the job runs (a scheduled pipeline's): its status is MLflow's.
            try:
                run = client.get_run(record.run_id)
                row = replace(
                    row,
                    status=run.info.status,
                    name=run.info.run_name or row.name,
                    experiment=experiments.get(run.info.experiment_id),
                    notebook=run.data.tags.get(NOTEBOOK, ""),
                )
            except Exception:
                pass  # the run was deleted: the record still says what happened
        rows.append(row)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    rows.sort(key=lambda r: r.start or epoch, reverse=True)
    return rows[:limit]


@dataclass(frozen=True)
class JobNotebook:
    """Where a job's executed notebook can be read: exactly one of ``workspace_path``
    (relative to the folder searched) and ``html`` (its rendering, from the run's
    artifacts) or ``notebook_text`` (the executed notebook itself, to render) is set."""

    run_id: str
    name: str
    output: str | None
    workspace_path: str | None = None
    html: str | None = None
    notebook_text: str | None = None


def job_notebook(
    client: MlflowClient,
    run_id: str,
    root: str | Path,
    store: ScheduleStore | None = None,
    allow_hidden: bool = False,
) -> JobNotebook:
    """The executed notebook of the job run ``run_id``.

    The file the job wrote (the scheduler records where) when it is a file inside
    ``root`` once symlinks are resolved, and not under a hidden folder unless
    ``allow_hidden`` (Jupyter refuses to open those); nothing outside ``root`` is read.
    Otherwise the run's artifacts: the HTML rendering ``job/<name>.html``, else the
    executed notebook ``job/<name>.ipynb``. Raises :class:`NotFoundError` naming what is
    missing.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id: give the id of a job run (32 hex digits), as /jobs lists them")
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(
                f"no run {run_id} in {client.tracking_uri}: pick a job from the recent jobs list"
            ) from None
        raise StoreError(f"cannot read run {run_id}: {one_line(exc)}") from None
    kind = run.data.tags.get(KIND)
    if kind != "job":
        raise NotFoundError(
            f"run {run_id} is not a notebook job ({'a ' + kind if kind else 'an untagged'} run) and has no executed notebook"
        )
    record = store.jobs_by_run([run_id]).get(run_id) if store is not None else None
    output = record.output if record is not None else None
    name = Path(output).name if output else Path(run.data.tags.get(NOTEBOOK, "") or "notebook.ipynb").name
    found = JobNotebook(run_id, name, output)
    if output:
        inside = file_inside(Path(root), Path(output))
        if inside is not None and (allow_hidden or not any(p.startswith(".") for p in Path(inside).parts)):
            return replace(found, workspace_path=str(inside))
    html = read_snapshot(client, run_id, output, folder="job", suffix=".html")
    if html is not None:
        return replace(found, name=Path(html[0]).stem + ".ipynb", html=html[1])
    executed = read_snapshot(client, run_id, output, folder="job", suffix=".ipynb")
    if executed is not None:
        return replace(found, name=executed[0], notebook_text=executed[1])
    state = run.info.status
    why = "it is still running" if state == "RUNNING" else f"it ended {state} before writing one"
    raise NotFoundError(
        f"job run {run_id} has no executed notebook yet: {why}; open it again once the job has finished"
    )
