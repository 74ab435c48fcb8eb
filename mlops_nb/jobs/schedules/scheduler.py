"""The scheduler: fires due occurrences of schedules, exactly once, and survives restarts.

How an occurrence fires exactly once, with any number of schedulers on one database: a
scheduler moves the schedule's ``next_run`` past the occurrence with a compare-and-set
``UPDATE ... WHERE next_run = <the value it read>`` and inserts the job record in the
same transaction; ``jobs`` has a unique key on (schedule, occurrence, attempt). Only one
transaction can win both. Retries are records in state ``retrying`` that a scheduler
claims with ``UPDATE ... WHERE state = 'retrying'``, which again only one can win.

How a crash is survived: jobs run in threads of the scheduler process (their kernels
are child processes that exit with it), so a killed scheduler cannot leave a job running
that a restarted one would start again. Each running job holds a lease in its record
(owner and expiry, renewed while it runs). A scheduler that finds a ``running`` record
whose lease expired, or whose owner process on this host no longer exists, marks it
``interrupted``, ends its MLflow run ``FAILED`` and queues a retry by the schedule's
policy.

Missed occurrences (due before this scheduler started, while none ran) follow the
schedule's ``missed`` policy: ``skip`` records one ``skipped`` entry and waits for the
next occurrence, ``once`` runs once for all of them.

A monitor schedule's job checks its model (:func:`mlops_nb.monitoring.monitor.monitor`)
and records the verdict line and the monitor run. On ``drift`` or ``degraded`` it starts
its ``on_drift`` notebook or pipeline as a second job of the same schedule (trigger
``monitor``), through the same execution path and in the same thread, unless the
schedule's cooldown or daily limit says wait (:meth:`ScheduleStore.claim_retrain`); the
record then says why not. The retraining pipeline's own guarded promotion moves the
alias, and a server that follows it swaps: nothing here touches the registry.

This module imports nothing from Jupyter; MLflow and papermill load on the first job, the
monitor's statistics on the first monitor job.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mlops_nb.config import ProjectConfig
from mlops_nb.exceptions import ExecutorUnreachableError, MlopsError, NotFoundError, StoreError, one_line
from mlops_nb.jobs.batch.pipeline import run_pipeline
from mlops_nb.jobs.batch.pipeline_file import load_pipeline
from mlops_nb.jobs.run.executors import executor_for, job_spec
from mlops_nb.jobs.run.params import declared_parameters
from mlops_nb.jobs.schedules.store import (
    MONITOR,
    MONITOR_TRIGGER,
    JobRecord,
    MonitorSettings,
    Schedule,
    ScheduleStore,
    db_time,
    next_occurrence,
    occurrences,
)
from mlops_nb.registry import tagged_metrics
from mlops_nb.store import get_client
from mlops_nb.tags import ERROR, SCHEDULE, SCHEDULE_ATTEMPT, SCHEDULE_JOB, SCHEDULE_TRIGGER

__all__ = ["ALARMS", "JobRunner", "Scheduler", "monitor_summary", "run_now"]

log = logging.getLogger("mlops_nb.scheduler")
#: The verdicts that retrain (and call the webhook without --notify-success).
ALARMS = ("drift", "degraded")
#: The parameter a retraining notebook or pipeline may declare to receive the run of the
#: verdict that started it (notebooks/retrain.yaml does).
MONITOR_RUN_PARAM = "monitor_run"


def _owner(name: str | None) -> str:
    """``name@host:pid:token``: unique per process and instance; host and pid let a
    scheduler on the same host see at once that an owner's process is gone."""
    return f"{name or 'scheduler'}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_dead(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this host that no longer exists."""
    if not owner or "@" not in owner:
        return False
    try:
        host, pid_text, _token = owner.rsplit("@", 1)[1].rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False  # another host's process, or ours: only its lease can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by another user
    return False


class _Lease:
    """Renews a running job's lease until stopped, so only a dead owner's lease expires."""

    def __init__(self, store: ScheduleStore, job_id: int, owner: str, lease_s: float) -> None:
        self.store, self.job_id, self.owner, self.lease_s = store, job_id, owner, lease_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"mlops-nb-lease-{job_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(5)

    def _renew(self) -> None:
        j = self.store.jobs
        while not self._done.wait(self.lease_s / 3):
            try:
                with self.store._write() as conn:
                    conn.execute(
                        j.update()
                        .where(j.c.id == self.job_id, j.c.owner == self.owner, j.c.state == "running")
                        .values(lease_until=db_time(self.store.clock() + timedelta(seconds=self.lease_s)))
                    )
            except StoreError as exc:  # the database is away for a moment: try again
                log.warning("could not renew the lease of job %s: %s", self.job_id, exc)


class _Outcome:
    """How one attempt ended."""

    def __init__(
        self,
        state: str,
        *,
        run_id: str | None = None,
        output: str | None = None,
        error: str | None = None,
        retryable: bool = False,
        status: str | None = None,
        run_ids: list[str] | None = None,
        monitor: dict[str, Any] | None = None,
        retrain: JobRecord | None = None,
    ) -> None:
        self.state, self.run_id, self.output, self.error = state, run_id, output, error
        self.retryable, self.status = retryable, status
        self.run_ids = run_ids or ([run_id] if run_id else [])
        #: A monitor job's summary (:func:`monitor_summary`), for its webhook.
        self.monitor = monitor
        #: The retrain job a monitor job claimed, to run once its own record is final.
        self.retrain = retrain


class JobRunner:
    """Runs job records: the one execution path of scheduled jobs, their retries and
    manual runs (:func:`run_now`).

    Parameters
    ----------
    store, config:
        The schedule database and the project (targets and MLflow store).
    owner:
        The lease owner written into records this runner runs.
    lease_s:
        How long a claim on a running job holds unless renewed (renewed every third).
    retry_backoff_s:
        The wait before the first retry; it doubles with each further attempt.
    report:
        Called with one line per event (job started, ended, webhook failed).
    """

    def __init__(
        self,
        store: ScheduleStore,
        config: ProjectConfig,
        *,
        owner: str | None = None,
        lease_s: float = 60.0,
        retry_backoff_s: float = 30.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.owner = owner or _owner("run-now")
        self.lease_s = float(lease_s)
        self.retry_backoff_s = float(retry_backoff_s)
        self._report = report
        #: Set by :meth:`stop_jobs`: the jobs this runner runs end ``interrupted``.
        self.stopping = threading.Event()
        self._stops: set[threading.Event] = set()
        self._lock = threading.Lock()

    def stop_jobs(self) -> None:
        """Stop every job this runner runs; their records end ``interrupted`` and retry."""
        self.stopping.set()
        with self._lock:
            for stop in self._stops:
                stop.set()

    def report(self, line: str) -> None:
        log.info(line)
        if self._report is not None:
            try:
                self._report(line)
            except Exception:
                pass

    # ------------------------------------------------------------ claiming

    def lease_until(self) -> datetime:
        return self.store.clock() + timedelta(seconds=self.lease_s)

    def start_manual(self, name: str) -> JobRecord:
        """Record a manual job of schedule ``name``, claimed by this runner (``running``)."""
        self.store.get(name)
        now = self.store.clock()
        with self.store._write() as conn:
            job_id = self.store.insert_job(
                conn,
                name,
                now,
                trigger="manual",
                attempt=1,
                state="running",
                owner=self.owner,
                lease_until=self.lease_until(),
            )
        return self.store.job(job_id)

    def claim_retry(self, record: JobRecord) -> JobRecord | None:
        """Take a ``retrying`` record to run it; ``None`` when another runner took it."""
        j = self.store.jobs
        now = self.store.clock()
        with self.store._write() as conn:
            done = conn.execute(
                j.update()
                .where(j.c.id == record.id, j.c.state == "retrying")
                .values(
                    state="running", started=db_time(now), owner=self.owner, lease_until=db_time(self.lease_until())
                )
            )
        return self.store.job(record.id) if done.rowcount == 1 else None

    # ------------------------------------------------------------ running

    def run_to_end(self, record: JobRecord) -> JobRecord:
        """Run a claimed record, then its retries as they fall due (unless another runner
        takes them first); return the last attempt's record."""
        while True:
            final, retry = self.execute(record)
            if retry is None:
                return final
            wait = (retry.not_before or self.store.clock()) - self.store.clock()
            if self.stopping.wait(max(0.0, wait.total_seconds())):
                return final  # a scheduler will take the retry
            claimed = self.claim_retry(retry)
            if claimed is None:
                return self.store.job(retry.id)
            record = claimed

    def execute(self, record: JobRecord) -> tuple[JobRecord, JobRecord | None]:
        """Run one claimed attempt to its end: store the outcome, queue a retry when the
        failure may pass and the schedule allows one, notify the webhook.

        Returns the finished record and the queued retry (or ``None``). Never raises for
        a failing job: every failure ends in the record.
        """
        try:
            schedule: Schedule | None = self.store.get(record.schedule)
        except NotFoundError:
            schedule = None
        if schedule is None:
            outcome = _Outcome("failed", error=f"schedule {record.schedule!r} was removed before its job ran")
        else:
            what = self._what_runs(schedule, record)[1] or schedule.target
            self.report(f"job {record.id}: {schedule.name} attempt {record.attempt} started ({what})")
            with _Lease(self.store, record.id, self.owner, self.lease_s):
                outcome = self._run_target(schedule, record)
        final, retry = self.finish(record, schedule, outcome)
        if outcome.retrain is not None:
            # After the monitor's record is final and its webhook sent: the verdict is
            # known at once, however long the retraining takes. One attempt here; its
            # retries are queued records, as any job's are.
            self.execute(outcome.retrain)
        return final, retry

    @staticmethod
    def _what_runs(schedule: Schedule, record: JobRecord) -> tuple[str, str | None]:
        """``(kind, file relative to the project)`` of what ``record`` runs: the monitor
        itself (``("monitor", None)``), or a notebook or pipeline."""
        if schedule.kind != MONITOR:
            return schedule.kind, schedule.target
        if record.trigger != MONITOR_TRIGGER:
            return MONITOR, None
        settings = schedule.monitor or MonitorSettings()
        return settings.on_drift_kind or "notebook", settings.on_drift

    def retrain_params(self, schedule: Schedule, record: JobRecord, kind: str, path: Any) -> dict[str, str]:
        """The ``-p`` texts of a retrain: the schedule's, plus ``monitor_run`` (the run of
        the verdict that started it) when the target declares such a parameter and the
        schedule does not set it. Lineage from the drift report to the retrained model,
        and a pipeline's cache key changes with it: a retrain exists to learn from new
        data, so it is never answered from the cache of the last one."""
        params = dict(schedule.params)
        if MONITOR_RUN_PARAM in params:
            return params
        if kind == "pipeline":
            declared = set(load_pipeline(path).params)
        else:
            declared = set(declared_parameters(path) or {})
        if MONITOR_RUN_PARAM not in declared:
            return params
        checks = [r for r in self.store.history(schedule.name, limit=20) if r.id < record.id and r.run_id]
        verdicts = [r for r in checks if r.trigger != MONITOR_TRIGGER]
        if verdicts:
            params[MONITOR_RUN_PARAM] = str(verdicts[0].run_id)
        return params

    def _run_target(self, schedule: Schedule, record: JobRecord) -> _Outcome:
        stop = threading.Event()
        # A scheduler stopping stops its jobs; their records end interrupted and retry.
        with self._lock:
            self._stops.add(stop)
        if self.stopping.is_set():
            stop.set()
        kind, target = self._what_runs(schedule, record)
        try:
            if kind == MONITOR:
                outcome = self._run_monitor(schedule, record)
            elif target is None:
                outcome = _Outcome("failed", error=f"monitor schedule {schedule.name!r} has no --on-drift target")
            else:
                path = self.store.project_root / target
                if record.trigger == MONITOR_TRIGGER:
                    schedule = replace(schedule, params=self.retrain_params(schedule, record, kind, path))
                if kind == "pipeline":
                    outcome = self._run_pipeline(schedule, record, path, stop)
                else:
                    outcome = self._run_notebook(schedule, record, path, stop)
        except MlopsError as exc:
            # The target or its parameters went bad since `add`, or MLflow's store is
            # unreachable (that may pass).
            outcome = _Outcome(
                "failed", error=one_line(exc), retryable=isinstance(exc, (StoreError, ExecutorUnreachableError))
            )
        except Exception as exc:  # never let a job take the scheduler down
            outcome = _Outcome("failed", error=f"{type(exc).__name__}: {one_line(exc)}")
        finally:
            with self._lock:
                self._stops.discard(stop)
        if self.stopping.is_set() and outcome.state != "succeeded":
            outcome.state, outcome.retryable = "interrupted", True
            outcome.error = "the scheduler stopped during the job" + (f" ({outcome.error})" if outcome.error else "")
        return outcome

    @staticmethod
    def _schedule_tags(schedule: Schedule, record: JobRecord) -> dict[str, str]:
        """The tags that say a run is this schedule's (tags.SCHEDULE and its .job, .trigger, .attempt)."""
        return {
            SCHEDULE: schedule.name,
            SCHEDULE_JOB: str(record.id),
            SCHEDULE_TRIGGER: record.trigger,
            SCHEDULE_ATTEMPT: str(record.attempt),
        }

    def _tag(self, run_id: str, schedule: Schedule, record: JobRecord) -> None:
        """Tag the job's run with its schedule, so MLflow alone can tell a scheduled run."""
        client = get_client(self.config)
        for key, value in self._schedule_tags(schedule, record).items():
            client.set_tag(run_id, key, value)

    def _on_start(self, schedule: Schedule, record: JobRecord) -> Callable[[str], None]:
        def on_start(run_id: str) -> None:
            # Recorded at once: if this process dies, the next scheduler ends this run.
            self.store.update_job(record.id, run_id=run_id)
            try:
                self._tag(run_id, schedule, record)
            except Exception:
                pass

        return on_start

    def _run_notebook(self, schedule: Schedule, record: JobRecord, path: Any, stop: threading.Event) -> _Outcome:
        # The project's `executor` setting says where: this process, or a Dask cluster.
        # Set with the run's first tags, before its id is recorded: a scheduler killed in
        # between still leaves a run MLflow alone can tell as this schedule's.
        tags = self._schedule_tags(schedule, record)
        spec = job_spec(path, texts=schedule.params, timeout=schedule.timeout_s, config=self.config, tags=tags)
        with executor_for(None, self.config, pool_size=0, report=self.report) as executor:
            result = executor.submit(spec, stop=stop, on_start=self._on_start(schedule, record)).result()
        return _Outcome(
            "succeeded" if result.ok else "failed",
            run_id=result.run_id,
            output=result.output,
            error=result.error,
            retryable=result.retryable,
            status=result.status,
        )

    def _run_monitor(self, schedule: Schedule, record: JobRecord) -> _Outcome:
        """Check the schedule's model; claim a retrain on an alarm the policy allows."""
        # Deferred: pandas and the statistics load on the first monitor job, as MLflow
        # and papermill load on the first job (a Jupyter server imports this module as it starts).
        from mlops_nb.monitoring.monitor import MonitorPolicy, monitor

        settings = schedule.monitor or MonitorSettings()
        result = monitor(
            get_client(self.config),
            self.config,
            schedule.target,
            since=settings.since,
            policy=MonitorPolicy(min_rows=settings.min_rows),
            now=self.store.clock(),
        )
        if result.run_id:
            try:
                self._tag(result.run_id, schedule, record)
            except Exception:
                pass  # the verdict stands without the tags
        retrain, decision = None, ""
        if result.verdict in ALARMS:
            retrain, decision = self.store.claim_retrain(schedule, owner=self.owner, lease_until=self.lease_until())
        reason = " ".join(str(result.reason or "").split())  # one line in the history, whatever came
        line = f"{result.verdict}: {reason}" + (f"; {decision}" if decision else "")
        return _Outcome(
            "succeeded",
            run_id=result.run_id,
            output=line,
            monitor=monitor_summary(result, settings, retrain, decision),
            retrain=retrain,
        )

    def _run_pipeline(self, schedule: Schedule, record: JobRecord, path: Any, stop: threading.Event) -> _Outcome:
        timed_out = threading.Event()
        timer = None
        if schedule.timeout_s:

            def expire() -> None:
                timed_out.set()
                stop.set()

            timer = threading.Timer(schedule.timeout_s, expire)
            timer.daemon = True
            timer.start()
        cluster = executor_for(None, self.config, report=self.report) if self.config.executor != "local" else None
        try:
            result = run_pipeline(
                path,
                params=schedule.params,
                config=self.config,
                stop=stop,
                report=self.report,
                on_start=self._on_start(schedule, record),
                executor=cluster,
            )
        finally:
            if timer is not None:
                timer.cancel()
            if cluster is not None:
                cluster.close()
        run_ids: list[Any] = [result.run_id] + [s.run_id for s in result.steps if getattr(s, "run_id", None)]
        if result.run_id:
            try:
                self._tag(result.run_id, schedule, record)
            except Exception:
                pass
        if timed_out.is_set() and not result.ok:
            return _Outcome(
                "failed",
                run_id=result.run_id,
                error=f"timed out after {schedule.timeout_s:g} s (--timeout)",
                retryable=True,
                status=result.status,
                run_ids=run_ids,
            )
        return _Outcome(
            "succeeded" if result.ok else "failed",
            run_id=result.run_id,
            error=result.error,
            retryable=bool(result.retryable),
            status=result.status,
            run_ids=run_ids,
        )

    # ------------------------------------------------------------ ending

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1 for the first retry): doubling."""
        return self.retry_backoff_s * (2 ** max(0, attempt - 1))

    def finish(
        self, record: JobRecord, schedule: Schedule | None, outcome: _Outcome
    ) -> tuple[JobRecord, JobRecord | None]:
        """Store an attempt's outcome, queue its retry, notify. Only the lease holder
        finishes a record: one that a recovering scheduler marked interrupted meanwhile
        (this process lost its lease) keeps that state and that scheduler's retry."""
        j = self.store.jobs
        now = self.store.clock()
        with self.store._write() as conn:
            done = conn.execute(
                j.update()
                .where(j.c.id == record.id, j.c.owner == self.owner, j.c.state == "running")
                .values(
                    state=outcome.state,
                    finished=db_time(now),
                    run_id=outcome.run_id or record.run_id,
                    output=outcome.output,
                    error=outcome.error,
                    lease_until=None,
                )
            )
        final = self.store.job(record.id)
        if done.rowcount != 1:
            return final, None
        self.report(
            f"job {record.id}: {record.schedule} attempt {record.attempt} {outcome.state}"
            + (f": {outcome.error}" if outcome.error else "")
            + (f": {outcome.output}" if outcome.monitor is not None and outcome.output else "")
        )
        retry = self.queue_retry(final, schedule, outcome.retryable)
        self.after(final, schedule, retry, outcome.run_ids, monitor=outcome.monitor)
        return final, retry

    def queue_retry(self, final: JobRecord, schedule: Schedule | None, retryable: bool) -> JobRecord | None:
        """Insert the next attempt as ``retrying`` when the failure may pass and the
        schedule allows another attempt; ``None`` otherwise."""
        from sqlalchemy.exc import IntegrityError

        if schedule is None or not retryable or final.attempt > schedule.retries:
            return None
        when = self.store.clock() + timedelta(seconds=self.backoff(final.attempt))
        try:
            with self.store._write() as conn:
                job_id = self.store.insert_job(
                    conn,
                    final.schedule,
                    final.occurrence,
                    trigger=final.trigger,
                    attempt=final.attempt + 1,
                    state="retrying",
                    not_before=when,
                )
        except IntegrityError:
            return None  # queued already
        self.report(f"job {job_id}: {final.schedule} attempt {final.attempt + 1} retries at {when:%H:%M:%S} UTC")
        return self.store.job(job_id)

    def after(
        self,
        final: JobRecord,
        schedule: Schedule | None,
        retry: JobRecord | None,
        run_ids: list[str],
        *,
        monitor: dict[str, Any] | None = None,
    ) -> None:
        """The schedule's last state, and its webhook on the job's final outcome: a
        failure, a monitor's alarm (``monitor`` is its summary), or any success with
        ``notify_success``."""
        if schedule is None:
            return
        s = self.store.schedules
        try:
            with self.store._write() as conn:
                conn.execute(
                    s.update().where(s.c.name == schedule.name).values(last_state=retry.state if retry else final.state)
                )
        except StoreError as exc:
            log.warning("could not record the last state of %s: %s", schedule.name, exc)
        if retry is not None or not schedule.webhook:
            return
        alarm = monitor is not None and monitor.get("verdict") in ALARMS
        if final.state == "succeeded" and not (schedule.notify_success or alarm):
            return
        send_webhook(self.config, schedule, final, run_ids, report=self.report, monitor=monitor)


class Scheduler:
    """Fires due occurrences of the schedules in one database, in threads of this process.

    Parameters
    ----------
    store, config:
        The schedule database and the project.
    max_running:
        Jobs this scheduler runs at once; further due jobs wait (they are not missed).
    tick_s:
        Seconds between passes over the due schedules.
    name:
        A label for this scheduler in job records' ``owner`` (default ``scheduler``).
    lease_s:
        How long a running job's claim holds unless renewed; a dead scheduler's jobs are
        found when it expires (at once when it ran on this host).
    retry_backoff_s:
        The wait before a first retry, doubling for each further one.
    grace_s:
        An occurrence due this long before the scheduler started still counts as on
        time; earlier ones were missed and follow the schedule's policy.
    report:
        Called with one line per event.
    """

    def __init__(
        self,
        store: ScheduleStore,
        config: ProjectConfig,
        *,
        max_running: int = 2,
        tick_s: float = 0.5,
        name: str | None = None,
        lease_s: float = 60.0,
        retry_backoff_s: float = 30.0,
        grace_s: float = 60.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if max_running < 1:
            raise MlopsError(f"max_running must be at least 1, not {max_running}")
        self.store = store
        self.config = config
        self.max_running = int(max_running)
        self.tick_s = float(tick_s)
        self.grace_s = float(grace_s)
        self.owner = _owner(name)
        self.runner = JobRunner(
            store, config, owner=self.owner, lease_s=lease_s, retry_backoff_s=retry_backoff_s, report=report
        )
        self.started_at = store.clock()
        self._running: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_recovery = 0.0

    # ------------------------------------------------------------ one pass

    @property
    def running(self) -> int:
        """Jobs running in this scheduler now."""
        with self._lock:
            for job_id in [k for k, t in self._running.items() if not t.is_alive()]:
                del self._running[job_id]
            return len(self._running)

    def tick(self) -> list[JobRecord]:
        """One pass: recover dead schedulers' jobs (every few seconds), then claim due
        retries and due occurrences up to ``max_running`` and start them. Returns the
        records started (and the ``skipped`` ones recorded)."""
        if time.monotonic() >= self._next_recovery:
            self.recover()
            self._next_recovery = time.monotonic() + min(5.0, self.runner.lease_s / 3)
        now = self.store.clock()
        out: list[JobRecord] = []
        free = self.max_running - self.running
        if free > 0:
            out += self._start_retries(now, free)
        out += self._fire_due(now)
        return out

    def _start_retries(self, now: datetime, free: int) -> list[JobRecord]:
        j = self.store.jobs
        with self.store._read() as conn:
            rows = conn.execute(
                j.select()
                .where(j.c.state == "retrying", j.c.not_before <= db_time(now))
                .order_by(j.c.not_before)
                .limit(free)
            ).fetchall()
        started = []
        for row in rows:
            claimed = self.runner.claim_retry(self.store._job(row))
            if claimed is not None:
                self._spawn(claimed)
                started.append(claimed)
        return started

    def _fire_due(self, now: datetime) -> list[JobRecord]:
        s = self.store.schedules
        with self.store._read() as conn:
            rows = conn.execute(
                s.select().where(s.c.paused.is_(False), s.c.next_run <= db_time(now)).order_by(s.c.next_run).limit(100)
            ).fetchall()
        out = []
        for row in rows:
            record = self._claim(self.store._schedule(row), now)
            if record is not None:
                out.append(record)
        return out

    def _claim(self, schedule: Schedule, now: datetime) -> JobRecord | None:
        """Claim the due occurrence of ``schedule`` (or record it skipped) with one
        compare-and-set transaction; ``None`` when another scheduler won or no slot is free."""
        from sqlalchemy.exc import IntegrityError

        assert schedule.next_run is not None
        due = occurrences(schedule.cron, schedule.timezone, schedule.next_run, now) or [schedule.next_run]
        on_time_from = self.started_at - timedelta(seconds=self.grace_s)
        missed = [o for o in due if o < on_time_from]
        fire = due[-1] if (len(missed) < len(due) or schedule.missed == "once") else None
        if fire is not None and self.running >= self.max_running:
            return None  # it waits for a free slot; on time, so it is not missed
        after = next_occurrence(schedule.cron, schedule.timezone, now)
        s = self.store.schedules
        try:
            with self.store._write() as conn:
                moved = conn.execute(
                    s.update()
                    .where(s.c.name == schedule.name, s.c.next_run == db_time(schedule.next_run), s.c.paused.is_(False))
                    .values(next_run=db_time(after), last_state="running" if fire else "skipped")
                )
                if moved.rowcount != 1:
                    return None  # another scheduler fired it (or it was paused meanwhile)
                if fire is None:
                    span = f"{missed[0]:%Y-%m-%d %H:%M}" + (
                        f" to {missed[-1]:%Y-%m-%d %H:%M}" if len(missed) > 1 else ""
                    )
                    job_id = self.store.insert_job(
                        conn,
                        schedule.name,
                        missed[-1],
                        trigger="schedule",
                        attempt=1,
                        state="skipped",
                        error=f"missed {len(missed)} occurrence(s) ({span} UTC) while no scheduler ran; skipped (--missed skip)",
                    )
                else:
                    job_id = self.store.insert_job(
                        conn,
                        schedule.name,
                        fire,
                        trigger="schedule",
                        attempt=1,
                        state="running",
                        owner=self.owner,
                        lease_until=self.runner.lease_until(),
                    )
        except IntegrityError:
            return None  # this occurrence has a record already: it fired once
        record = self.store.job(job_id)
        if fire is None:
            self.runner.report(f"job {job_id}: {schedule.name} {record.error}")
        else:
            self._spawn(record)
        return record

    def _spawn(self, record: JobRecord) -> None:
        thread = threading.Thread(target=self._run, args=(record,), name=f"mlops-nb-job-{record.id}", daemon=True)
        with self._lock:
            self._running[record.id] = thread
        thread.start()

    def _run(self, record: JobRecord) -> None:
        try:
            self.runner.execute(record)
        except Exception as exc:  # the database went away: the lease expires and another scheduler recovers it
            log.error("job %s could not be finished: %s", record.id, exc)

    # ------------------------------------------------------------ recovery

    def recover(self) -> list[JobRecord]:
        """Mark jobs whose scheduler died ``interrupted`` (lease expired, or the owner's
        process on this host is gone), end their MLflow runs ``FAILED`` and queue retries
        by their schedules' policy. Returns the records marked."""
        j = self.store.jobs
        now = self.store.clock()
        with self.store._read() as conn:
            rows = conn.execute(j.select().where(j.c.state == "running", j.c.owner != self.owner)).fetchall()
        marked = []
        for row in rows:
            record = self.store._job(row)
            lease = row._mapping["lease_until"]
            expired = lease is None or lease < db_time(now)
            if not (expired or _owner_dead(record.owner)):
                continue
            why = "its scheduler stopped during the job" + (" (lease expired)" if expired else " (process gone)")
            with self.store._write() as conn:
                done = conn.execute(
                    j.update()
                    .where(j.c.id == record.id, j.c.state == "running", j.c.owner == record.owner)
                    .values(state="interrupted", finished=db_time(now), error=why, lease_until=None)
                )
            if done.rowcount != 1:
                continue  # it finished, or another scheduler recovered it first
            final = self.store.job(record.id)
            self.runner.report(f"job {record.id}: {record.schedule} attempt {record.attempt} interrupted: {why}")
            if final.run_id:
                self._end_run(final.run_id, why)
            try:
                schedule: Schedule | None = self.store.get(record.schedule)
            except NotFoundError:
                schedule = None
            retry = self.runner.queue_retry(final, schedule, retryable=True)
            self.runner.after(final, schedule, retry, [final.run_id] if final.run_id else [])
            marked.append(final)
        return marked

    def _end_run(self, run_id: str, why: str) -> None:
        """End a dead job's MLflow run FAILED, so no run stays RUNNING forever."""
        try:
            client = get_client(self.config)
            run = client.get_run(run_id)
            # A pipeline's (or sweep's) runs nest under it: end those left RUNNING too.
            pending, seen = [run], set()
            while pending:
                current = pending.pop()
                if current.info.run_id in seen:
                    continue
                seen.add(current.info.run_id)
                if current.info.status == "RUNNING":
                    client.set_tag(current.info.run_id, ERROR, why)
                    client.set_terminated(current.info.run_id, "FAILED")
                pending.extend(
                    client.search_runs(
                        sorted({current.info.experiment_id, run.info.experiment_id}),
                        f"tags.mlflow.parentRunId = '{current.info.run_id}'",
                        max_results=1000,
                    )
                )
        except Exception as exc:
            self.runner.report(f"warning: could not end run {run_id} of an interrupted job: {one_line(exc)}")

    # ------------------------------------------------------------ running

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Tick until ``stop`` is set (or :meth:`stop` is called), then stop the running
        jobs (their records end ``interrupted`` and are retried by policy) and return."""
        stop = stop or self._stop
        self.started_at = self.store.clock()
        try:
            while not (stop.is_set() or self._stop.is_set()):
                try:
                    self.tick()
                except StoreError as exc:  # the database is away for a moment: keep trying
                    self.runner.report(f"warning: {exc}")
                stop.wait(self.tick_s)
        finally:
            self._shutdown(30.0)

    def _shutdown(self, wait: float) -> None:
        self.runner.stop_jobs()
        deadline = time.monotonic() + wait
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def start(self) -> None:
        """Run :meth:`run_forever` in a background thread (inside a Jupyter server)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="mlops-nb-scheduler", daemon=True)
        self._thread.start()

    def stop(self, wait: float = 30) -> None:
        """Stop ticking and stop the running jobs; wait up to ``wait`` seconds for them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)
        else:
            self._shutdown(wait)


# ---------------------------------------------------------------- notifications


def _versions_of(client: Any, run_ids: list[str]) -> list[Any]:
    """The model versions registered from any of ``run_ids``."""
    out = []
    for run_id in dict.fromkeys(r for r in run_ids if r):
        try:
            out += list(client.search_model_versions(f"run_id = '{run_id}'"))
        except Exception:
            continue
    return out


def _version_metrics(client: Any, mv: Any) -> dict[str, float]:
    tagged = tagged_metrics(dict(mv.tags or {}))
    if tagged is not None:
        return tagged
    try:
        return {k: float(v) for k, v in client.get_run(mv.run_id).data.metrics.items()}
    except Exception:
        return {}


def model_changes(config: ProjectConfig, run_ids: list[str], alias: str = "champion") -> list[dict[str, Any]]:
    """For each model version the job's runs registered: each metric it shares with the
    current holder of ``alias`` (model, version, metric, value, holder version and value,
    change = value - holder value). A model without a holder gives one row with holder
    fields ``None``; a version that holds the alias itself compares with itself."""
    client = get_client(config)
    rows: list[dict[str, Any]] = []
    for mv in _versions_of(client, run_ids):
        try:
            holder = client.get_registered_model(mv.name).aliases.get(alias)
        except Exception:
            holder = None
        mine = _version_metrics(client, mv)
        base = {
            "model": mv.name,
            "version": str(mv.version),
            "alias": alias,
            "holder_version": str(holder) if holder else None,
        }
        theirs: dict[str, float] = {}
        if holder is not None:
            try:
                theirs = _version_metrics(client, client.get_model_version(mv.name, str(holder)))
            except Exception:
                theirs = {}
        shared = [k for k in sorted(mine) if k in theirs and not k.startswith("system/")]
        if not shared:
            rows.append({**base, "metric": None, "value": None, "holder_value": None, "change": None})
        for key in shared:
            value, other = mine[key], theirs[key]
            change = value - other if math.isfinite(value) and math.isfinite(other) else None
            rows.append({**base, "metric": key, "value": value, "holder_value": other, "change": change})
    return rows


def monitor_summary(result: Any, settings: MonitorSettings, retrain: JobRecord | None, decision: str) -> dict[str, Any]:
    """What a monitor job tells its webhook: the verdict of ``result`` (a
    :class:`~mlops_nb.monitoring.monitor.MonitorResult`) without the per-feature detail
    (model, version, alias, verdict, reason, drifted features, share, rows, labelled,
    performance, window, run id, report URI) and whether a retrain was started."""
    data = result.to_dict()
    drift = data.get("drift") or {}
    return {
        "model": data.get("name"),
        "version": data.get("version"),
        "alias": data.get("alias"),
        "verdict": data.get("verdict"),
        "reason": data.get("reason"),
        "drifted": list(data.get("drifted") or drift.get("drifted") or []),
        "share": drift.get("share"),
        "rows": data.get("rows"),
        "labelled": data.get("labelled"),
        "performance": data.get("performance"),
        "since": data.get("since"),
        "until": data.get("until"),
        "when": data.get("when"),
        "run_id": data.get("run_id"),
        "report_uri": data.get("report_uri"),
        "retrain": {
            "started": retrain is not None,
            "job": retrain.id if retrain is not None else None,
            "target": settings.on_drift,
            "decision": decision or None,
        },
    }


def webhook_payload(
    config: ProjectConfig,
    schedule: Schedule,
    record: JobRecord,
    run_ids: list[str],
    *,
    monitor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON a schedule's webhook receives about a job's final outcome.

    A monitor job's (``monitor``: :func:`monitor_summary`) has event
    ``monitor.<verdict>`` (``monitor.drift``, ``monitor.insufficient_data``, ...) and the
    summary under ``monitor``; its ``models`` is empty (a monitor registers nothing).
    """
    status = None
    if record.run_id:
        try:
            status = get_client(config).get_run(record.run_id).info.status
        except Exception:
            status = None
    models: list[dict[str, Any]] = []
    try:
        if monitor is None:
            models = model_changes(config, run_ids)
    except Exception as exc:
        log.warning("could not compare the job's models with their champions: %s", exc)
    payload = {
        "event": "job." + record.state,
        "schedule": schedule.to_dict(),
        "job": record.to_dict(),
        "run_id": record.run_id,
        "status": status,
        "error": record.error,
        "models": models,
    }
    if monitor is not None:
        payload["event"] = "monitor." + str(monitor.get("verdict") or record.state).replace(" ", "_")
        payload["monitor"] = monitor
    return payload


def send_webhook(
    config: ProjectConfig,
    schedule: Schedule,
    record: JobRecord,
    run_ids: list[str],
    *,
    report: Callable[[str], None] | None = None,
    timeout: float = 10.0,
    monitor: dict[str, Any] | None = None,
) -> bool:
    """POST the job's outcome (:func:`webhook_payload`) to the schedule's webhook; a
    failure is reported, never raised (a notification never fails a job). Returns
    whether it was delivered."""
    import urllib.error
    import urllib.request

    if not schedule.webhook:
        return False
    body = json.dumps(webhook_payload(config, schedule, record, run_ids, monitor=monitor), default=str).encode()
    request = urllib.request.Request(
        schedule.webhook,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mlops-nb-scheduler"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resp.read(1024)
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        line = f"warning: webhook {schedule.webhook} of {schedule.name} failed: {getattr(exc, 'reason', exc)}"
        (report or log.warning)(line)
        return False


def run_now(
    store: ScheduleStore,
    config: ProjectConfig,
    name: str,
    *,
    wait: bool,
    retry_backoff_s: float = 30.0,
    report: Callable[[str], None] | None = None,
) -> JobRecord:
    """Run schedule ``name`` now, through the scheduler's own execution path.

    A ``manual`` job record is created at once and run in this process: it never waits
    for a scheduler to pick it up. A monitor schedule's retrain, when its verdict starts
    one, runs here too, after the monitor's record is final (the one returned). ``wait=True`` returns the finished record (after any
    retries the schedule allows); ``wait=False`` runs it in a background thread and
    returns the ``running`` record at once (for the Jupyter server).

    Raises
    ------
    NotFoundError
        When there is no such schedule.
    """
    runner = JobRunner(store, config, retry_backoff_s=retry_backoff_s, report=report)
    record = runner.start_manual(name)
    if wait:
        return runner.run_to_end(record)
    thread = threading.Thread(target=runner.run_to_end, args=(record,), name=f"mlops-nb-run-now-{name}", daemon=True)
    thread.start()
    return record
