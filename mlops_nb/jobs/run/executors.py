"""Where notebook jobs run: one interface, two implementations.

A :class:`JobSpec` says everything about one job (it pickles, so it can cross to another
machine). An :class:`Executor` takes specs and returns futures of :class:`JobResult`:

- :class:`LocalExecutor` (the default) runs them in this process, on threads, with this
  process's kernel pools;
- :class:`DaskExecutor` sends each one to a Dask distributed cluster, where a worker runs
  it with the worker's own kernel pool and logs into the same tracking store.

Both call :func:`run_job`, which calls :func:`~mlops_nb.jobs.run.execution.execute_job`
with the spec as checked: a job has one path whichever executor is used (the project's
agent, :mod:`~mlops_nb.jobs.run.agent`, ends in the same primitive). Sweeps, pipelines and the scheduler take
an executor; the commands build one from ``--executor`` or the project's ``executor``
setting.

A worker lost mid-job
---------------------
Dask runs a task again on another worker when its worker dies (up to the Dask scheduler's
``distributed.scheduler.allowed-failures``, default 3). Each attempt's MLflow run carries
the job's key (tag ``mlops_nb.job.key``); an attempt that starts ends any earlier attempt
still ``RUNNING`` as ``FAILED`` (tag ``mlops_nb.job.lost``), and when the job gives up the
command does the same, so no run is left ``RUNNING``. A job that runs out of attempts is a
*retryable* failure: a schedule retries it by its own policy.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops_nb.config import ProjectConfig, executor_name
from mlops_nb.exceptions import ExecutorUnreachableError, UsageError, one_line
from mlops_nb.jobs.run.execution import FAILED, KILLED, JobResult, execute_job
from mlops_nb.jobs.run.pool import KernelPool, shared_pool
from mlops_nb.jobs.run.spec import Executor, JobSpec, job_spec
from mlops_nb.store import get_client
from mlops_nb.tags import ENDED_BY
from mlops_nb.tags import JOB_ATTEMPT as ATTEMPT_TAG
from mlops_nb.tags import JOB_KEY as KEY_TAG
from mlops_nb.tags import JOB_LOST as LOST_TAG
from mlops_nb.tags import JOB_WORKER as WORKER_TAG

# Dask's distributed is imported where used: it is an optional dependency.

__all__ = [
    "DaskExecutor",
    "Executor",
    "JobSpec",
    "LocalExecutor",
    "end_lost_attempts",
    "executor_for",
    "job_spec",
    "run_job",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_job(
    spec: JobSpec,
    *,
    pool: KernelPool | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
    progress: bool | dict[str, Any] = False,
    tags: Mapping[str, str] | None = None,
) -> JobResult:
    """Run one job here, in this process, marked with its key (tag ``mlops_nb.job.key``,
    which names the job across retries): the step every executor ends in."""
    return execute_job(
        spec,
        pool=pool,
        stop=stop,
        on_start=on_start,
        report=report,
        progress=progress,
        tags={KEY_TAG: spec.key, **dict(tags or {})},
    )


class LocalExecutor(Executor):
    """Jobs on ``workers`` threads of this process, each on a kernel from a pool.

    ``pool_size`` kernels per kernel name and folder are started ahead of need (0: each
    job starts its kernel while its run is created, as for one ``mlops-nb run``).
    """

    name = "local"

    def __init__(
        self,
        workers: int = 1,
        *,
        pool_size: int | None = None,
        report: Callable[[str], None] | None = None,
        progress: bool | dict[str, Any] = False,
    ) -> None:
        self._pool_size = workers if pool_size is None else pool_size
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-nb-job")
        self._pools: dict[tuple[str, str], KernelPool] = {}
        self._lock = threading.Lock()
        self._report, self._progress = report, progress

    def _pool(self, spec: JobSpec) -> KernelPool | None:
        if self._pool_size == 0:
            return None  # execute_job starts (and stops) the job's own kernel
        cwd = spec.cwd or str(Path(spec.notebook).parent)
        key = (spec.kernel or "python3", cwd)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = KernelPool(kernel_name=key[0], size=self._pool_size, cwd=cwd)
            return pool

    def submit(
        self, spec: JobSpec, *, stop: threading.Event | None = None, on_start: Callable[[str], None] | None = None
    ) -> Future[JobResult]:
        return self._threads.submit(
            run_job,
            spec,
            pool=self._pool(spec),
            stop=stop,
            on_start=on_start,
            report=self._report,
            progress=self._progress,
        )

    def run(
        self, spec: JobSpec, *, stop: threading.Event | None = None, on_start: Callable[[str], None] | None = None
    ) -> JobResult:
        """Run one job in the calling thread (Ctrl-C reaches the job directly)."""
        return run_job(
            spec, pool=self._pool(spec), stop=stop, on_start=on_start, report=self._report, progress=self._progress
        )

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def _dask_address(name: str) -> str:
    return "tcp://" + name[len("dask://") :]


class DaskExecutor(Executor):
    """Jobs on a Dask distributed cluster: each job is one task, run by a worker with
    the worker's kernel pool, logging into the project's tracking store.

    Workers need ``mlops-nb`` installed and the project at the same path (a shared
    folder, or the same checkout): a worker refuses a notebook that differs from the one
    the command was given.
    """

    def __init__(
        self, address: str, *, report: Callable[[str], None] | None = None, connect_timeout: float = 10.0
    ) -> None:
        try:
            import distributed
        except ImportError:
            raise UsageError(
                "--executor dask:// needs Dask's distributed package: pip install 'mlops-nb[dask]'"
            ) from None
        self.name = address if address.startswith("dask://") else "dask://" + address.split("://", 1)[-1]
        self._report = report or (lambda line: None)
        try:
            self._client = distributed.Client(_dask_address(self.name), timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnreachableError(
                f"cannot reach the Dask scheduler at {self.name} ({one_line(exc)}); "
                "start one (`dask scheduler`, then `dask worker`s) or check the address"
            ) from None
        self._topic = f"mlops-nb-start-{uuid.uuid4().hex}"
        self._started: dict[str, Callable[[str], None]] = {}
        self._lock = threading.Lock()
        self._client.subscribe_topic(self._topic, self._on_event)
        self._waiters = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mlops-nb-dask")

    def _on_event(self, event: Any) -> None:
        """A worker's "run started" event: call the job's ``on_start`` off Dask's loop."""
        message = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(message, dict):
            return
        with self._lock:
            callback = self._started.get(message.get("key", ""))
        if callback is not None:
            threading.Thread(target=callback, args=(message.get("run_id", ""),), daemon=True).start()

    def submit(
        self, spec: JobSpec, *, stop: threading.Event | None = None, on_start: Callable[[str], None] | None = None
    ) -> Future[JobResult]:
        if on_start is not None:
            with self._lock:
                self._started[spec.key] = on_start
        task = self._client.submit(_dask_task, spec, self._topic, key=f"mlops-nb-job-{spec.key}", pure=False)
        return self._waiters.submit(self._wait, spec, task, stop)

    def _wait(self, spec: JobSpec, task: Any, stop: threading.Event | None) -> JobResult:
        import distributed

        started = time.monotonic()
        stopped = False
        try:
            while True:
                try:
                    return task.result(timeout=0.5)
                except (TimeoutError, distributed.TimeoutError):
                    pass
                if stop is not None and stop.is_set() and not stopped:
                    stopped = True
                    try:
                        distributed.Event(_stop_event(spec.key), client=self._client).set()
                    except Exception:
                        task.cancel()
        except Exception as exc:  # the worker was lost too often, the cluster went away, cancelled
            status = KILLED if stopped else FAILED
            why = _lost_reason(exc)
            error = "stopped" if stopped else f"{why} on {self.name}"
            run_id = next(iter(end_lost_attempts(spec, f"{why}; the job was given up")), None)
            return JobResult(
                notebook=spec.notebook,
                run_id=run_id,
                experiment=spec.experiment,
                status=status,
                duration_s=time.monotonic() - started,
                params=dict(spec.params),
                output=None,
                error=error,
            )
        finally:
            with self._lock:
                self._started.pop(spec.key, None)

    def close(self) -> None:
        self._waiters.shutdown(wait=True)
        try:
            self._client.unsubscribe_topic(self._topic)
        except Exception:
            pass
        self._client.close()


def _stop_event(key: str) -> str:
    return f"mlops-nb-stop-{key}"


def _lost_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "its worker was lost on every attempt"
    if name in {"CancelledError", "FutureCancelledError"}:
        return "the job was cancelled (the Dask scheduler or its workers went away)"
    text = str(exc).strip().splitlines()
    return f"the cluster failed the job ({name}: {text[0] if text else ''})"


def end_lost_attempts(spec: JobSpec, why: str) -> list[str]:
    """End every run of ``spec``'s job still ``RUNNING`` (an attempt whose worker was
    lost) as ``FAILED``, saying ``why`` in the tag ``mlops_nb.job.lost``. Returns the
    ids of the job's runs so far, newest first."""
    try:
        client = get_client(spec.config)
        experiment = client.get_experiment_by_name(spec.experiment)
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{KEY_TAG}` = '{spec.key}'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        for run in runs:
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, LOST_TAG, why)
                client.set_terminated(run.info.run_id, FAILED)
            elif run.info.status != "FINISHED" and LOST_TAG not in run.data.tags and ENDED_BY in run.data.tags:
                # Another tracker on the lost worker's host saw its process gone first
                # and ended the run KILLED (tracking's own recovery): say why here too.
                client.set_tag(run.info.run_id, LOST_TAG, why)
        return [run.info.run_id for run in runs]
    except Exception:
        return []  # the store is away: the next attempt or the command's end retries this


def _dask_task(spec: JobSpec, topic: str) -> JobResult:
    """What a Dask worker runs for one job."""
    from distributed import get_worker

    worker = get_worker()
    path = Path(spec.notebook)
    if not path.is_file() or _sha256(path) != spec.notebook_sha256:
        what = "has no notebook" if not path.is_file() else "has a different notebook"
        return JobResult(
            notebook=spec.notebook,
            run_id=None,
            experiment=spec.experiment,
            status=FAILED,
            duration_s=0.0,
            params=dict(spec.params),
            output=None,
            error=(
                f"worker {worker.address} {what} at {spec.notebook}: workers need the project at the same "
                "path (a shared folder or the same checkout)"
            ),
        )
    attempt = len(end_lost_attempts(spec, f"worker lost mid-job; run again on {worker.address}")) + 1
    stop = threading.Event()
    done = threading.Event()

    from distributed import Event, get_client

    # Made here, in the task's thread, where the worker's client is known.
    event = Event(_stop_event(spec.key), client=get_client())

    def watch_stop() -> None:
        try:
            while not done.is_set():
                if event.wait(timeout=1):
                    stop.set()
                    return
        except Exception:
            pass  # the scheduler went away: the job runs to its end

    threading.Thread(target=watch_stop, daemon=True, name="mlops-nb-stop").start()

    def on_start(run_id: str) -> None:
        worker.log_event(topic, {"key": spec.key, "run_id": run_id})

    try:
        cwd = spec.cwd or str(path.parent)
        return run_job(
            spec,
            pool=shared_pool(spec.kernel or "python3", cwd),
            stop=stop,
            on_start=on_start,
            tags={ATTEMPT_TAG: str(attempt), WORKER_TAG: worker.address},
        )
    finally:
        done.set()


def executor_for(
    name: str | None,
    config: ProjectConfig,
    *,
    workers: int = 1,
    pool_size: int | None = None,
    report: Callable[[str], None] | None = None,
    progress: bool | dict[str, Any] = False,
) -> Executor:
    """The executor ``name`` (``local``, ``dask://HOST:PORT``; default: the project's
    ``executor`` setting). ``workers`` and ``pool_size`` apply to the local one.

    Raises
    ------
    UsageError
        For a name that is neither.
    ExecutorUnreachableError
        When the Dask scheduler cannot be reached.
    """
    text = executor_name(name, config)
    if text == "local":
        return LocalExecutor(workers, pool_size=pool_size, report=report, progress=progress)
    if config.sqlite_path is not None and report is not None:
        report(
            f"warning: jobs on {text} log into {config.tracking_uri}, a file on this machine; workers on "
            "other machines cannot reach it: point the project at a shared tracking server (README: Beyond one machine)"
        )
    return DaskExecutor(text, report=report)
