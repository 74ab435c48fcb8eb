"""Experiment tracking: runs for notebooks and cells, on an explicit MLflow client.

The :class:`Tracker` is the one piece of logic behind ``%mlops``, ``import mlops_nb``
and the CLI. It knows nothing of Jupyter: adapters tell it the notebook, the cell source
and the kernel's variables.

Guarantees
----------
- A run always ends: FINISHED, FAILED (with the error recorded) or KILLED. Runs left
  RUNNING by a process that died are found and marked KILLED the next time tracking
  starts in the project.
- A tracking failure (store unreachable, disk full) is reported as one warning line and
  never raised into the user's code, except from calls whose whole point is the store
  (listing runs, starting a run explicitly).
- ``log_metric`` never waits on the store: values are batched and written by a
  background thread; :meth:`Tracker.flush` and the end of a run write the rest.
"""

from __future__ import annotations

import atexit
import dataclasses
import numbers
import posixpath
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlops_nb.fluent as fluent
from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import MlopsError, StoreError, UsageError, one_line
from mlops_nb.fluent import job_config, read_job
from mlops_nb.provenance import (
    NotebookLocation,
    is_no_capture,
    locate_notebook,
    notebook_saved,
    parameter_values,
    process_identity,
    read_snapshot,
    static_capture,
)
from mlops_nb.registry import (
    RegisteredVersion,
    check_alias,
    check_model_name,
    detect_flavor,
    load_model,
    parse_model_uri,
    stale_alias_warnings,
)
from mlops_nb.registry import register_model as register_version
from mlops_nb.runs import end_dead_runs
from mlops_nb.store import check_store, get_client, get_or_create_experiment
from mlops_nb.tags import (
    CELL,
    ERROR,
    HOST,
    KIND,
    NOTEBOOK,
    NOTEBOOK_HOW,
    NOTEBOOK_SAVED,
    PID,
    PID_START,
    PYTHON,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = [
    "MetricBuffer",
    "RunHandle",
    "Tracker",
    "current_tracker",
    "current_tracker_owns",
    "get_tracker",
    "set_tracker",
    "ui_hint",
]

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
_MAX_PARAM_LEN = 6000
_MAX_BATCH = 1000
#: Seconds between attempts to start an implicit run while the store does not answer
#: (a down server fails the attempt in milliseconds: see mlops_nb.store).
_IMPLICIT_RETRY_S = 30.0


def _default_report(message: str) -> None:
    print(f"mlops-nb: {message}", file=sys.stderr, flush=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


_KEY = re.compile(r"^[/\w.\- :]*$")
_MAX_KEY_LEN = 250


def check_key(name: Any, what: str) -> str:
    """Check a metric or param name by MLflow's rules, so a bad one fails at the call
    that made it (and not later, in a background batch, taking good values with it)."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"{what} name must be a non-empty string, not {name!r}")
    norm = posixpath.normpath(name)
    if len(name) > _MAX_KEY_LEN or not _KEY.match(name) or norm != name or norm.startswith(("..", "/")):
        raise UsageError(
            f"{what} name {name!r} is not allowed: use at most {_MAX_KEY_LEN} letters, digits, "
            "underscores, dashes, periods, spaces, colons and single slashes"
        )
    return name


def is_metric_value(value: Any) -> bool:
    """Numbers become metrics; booleans are flags and become params."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, params) of named values: numbers are metrics, strings, booleans and
    None params; every name is checked first. :class:`UsageError` for anything else."""
    metrics, params = {}, {}
    for name, value in values.items():
        check_key(name, "metric" if is_metric_value(value) else "param")
        if is_metric_value(value):
            metrics[name] = value
        elif isinstance(value, (str, bool, type(None))):
            params[name] = value
        else:
            raise UsageError(
                f"{name} is a {type(value).__name__}; %mlops log takes numbers (logged as metrics) "
                "and strings, booleans or None (logged as params)"
            )
    return metrics, params


def cells_source(cells: Iterable[tuple[int | None, str]]) -> str:
    """The ``code/cells.py`` a run keeps: its cells' sources in execution order."""
    parts = ["# Cells executed in this run, in execution order (captured by mlops-nb).\n"]
    for count, source in cells:
        parts.append(f"\n# In[{count if count is not None else ' '}]:\n{source.rstrip()}\n")
    return "".join(parts)


@dataclass(eq=False)
class RunHandle:
    """A run this process started and has not ended yet."""

    run_id: str
    experiment_id: str
    experiment_name: str
    kind: str  # "notebook" or "cell"
    name: str
    parent: RunHandle | None = None
    autolog: bool = False
    params: dict[str, str] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    cells: list[tuple[int | None, str]] = field(default_factory=list)
    static_capture: Future | None = None
    static_written: bool = False
    fluent: bool = False
    ended: bool = False
    #: False for a job's run, adopted from the job runner, which ends it.
    owned: bool = True
    #: The notebook tags written on the run (rewritten if the notebook is renamed or saved).
    notebook_tags: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- metric buffer


class MetricBuffer:
    """Batches metrics in memory and writes them with ``log_batch`` from a thread.

    ``add`` costs microseconds and never touches the store. A failed write keeps the
    metrics and is retried; the failure is reported once per streak.
    """

    def __init__(
        self,
        client_getter: Callable[[], MlflowClient],
        report: Callable[[str], None],
        interval: float = 0.5,
    ) -> None:
        self._client_getter = client_getter
        self._report = report
        self._interval = interval
        self._pending: list[tuple[str, str, float, int, int]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._failing = False
        self._thread: threading.Thread | None = None
        self.written = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        """Queue one metric value."""
        with self._lock:
            self._pending.append((run_id, key, value, timestamp, step))
            size = len(self._pending)
        if self._thread is None:
            self._start()
        if size >= _MAX_BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="mlops-nb-metrics", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write(final=False)

    def _write(self, final: bool, run_id: str | None = None) -> int:
        """Write what is pending (for one run, or all); return how many are still unsent."""
        with self._write_lock:
            with self._lock:
                if run_id is None:
                    batch, self._pending = self._pending, []
                else:
                    batch = [m for m in self._pending if m[0] == run_id]
                    self._pending = [m for m in self._pending if m[0] != run_id]
            if not batch:
                return 0
            from mlflow.entities import Metric

            by_run: dict[str, list[Any]] = {}
            for rid, key, value, ts, step in batch:
                by_run.setdefault(rid, []).append(Metric(key, value, ts, step))
            unsent: list[tuple[str, str, float, int, int]] = []
            error: BaseException | None = None
            for rid, metrics in by_run.items():
                for i in range(0, len(metrics), _MAX_BATCH):
                    chunk = metrics[i : i + _MAX_BATCH]
                    if error is None:
                        try:
                            self._client_getter().log_batch(rid, metrics=chunk)
                            self.written += len(chunk)
                            continue
                        except Exception as exc:
                            if getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
                                # The store refuses these values for good: retrying cannot
                                # help, and must not hold back the other runs' values.
                                self._report(
                                    f"warning: {len(chunk)} metric values were refused: {one_line(exc, with_type=True)}"
                                )
                                continue
                            error = exc  # the store failed: keep the values and retry later
                    unsent.extend((rid, m.key, m.value, m.timestamp, m.step) for m in chunk)
            if unsent:
                with self._lock:
                    self._pending = unsent + self._pending
            if error is not None and (final or not self._failing):
                self._report(
                    f"warning: could not write {len(unsent)} metric values ({one_line(error, with_type=True)}); "
                    + ("they were not saved." if final else "they are kept and retried.")
                )
            self._failing = error is not None
            return len(unsent)

    def flush(self, run_id: str | None = None, attempts: int = 3) -> int:
        """Write pending metrics now (for one run, or all); return how many could not be."""
        left = 0
        for attempt in range(attempts):
            left = self._write(final=attempt == attempts - 1, run_id=run_id)
            if not left:
                return 0
            time.sleep(0.2 * (attempt + 1))
        with self._lock:  # given up: drop them so they are not reported twice
            self._pending = [m for m in self._pending if run_id is not None and m[0] != run_id]
        return left

    def close(self) -> int:
        """Flush everything and stop the thread."""
        left = self.flush()
        self._closed = True
        self._wake.set()
        return left


# ---------------------------------------------------------------- tracker


class Tracker:
    """Tracks the runs of one process (a kernel or a script) in one project store.

    Parameters
    ----------
    notebook:
        Where the notebook is; found from the environment when omitted, and then found
        again when a run starts or ends (a notebook can be renamed while its kernel runs).
    locate:
        How to find the notebook again (default: :func:`locate_notebook` when
        ``notebook`` is omitted; never when it is given).
    config:
        The project settings; resolved from the notebook's folder when omitted.
    report:
        Where one-line warnings go (default: standard error).
    fluent:
        Make each run MLflow's active run too, so autologging and the user's own
        ``mlflow.log_*`` calls land in it. Right for a kernel; never for a server.
    """

    def __init__(
        self,
        notebook: NotebookLocation | None = None,
        config: ProjectConfig | None = None,
        report: Callable[[str], None] | None = None,
        fluent: bool = True,
        recover: bool = True,
        locate: Callable[[], NotebookLocation] | None = None,
    ) -> None:
        #: The job this process runs in, if the job runner started it (see read_job).
        self.job = read_job() if config is None else None
        if self.job is not None:
            notebook = NotebookLocation(Path(self.job["notebook"]), "mlops-nb job")
            # The settings the job runner resolved, handed over whole; resolved here only
            # for a job file that does not carry them.
            given = job_config(self.job) or resolve_config(Path(self.job["notebook"]).parent)
            config = dataclasses.replace(given, tracking_uri=self.job["tracking_uri"])
        self._locate = locate if locate is not None else (None if notebook is not None else locate_notebook)
        self.notebook = notebook or (self._locate or locate_notebook)()
        self._config = config
        self.report = report or _default_report
        self.fluent = fluent
        self.session: RunHandle | None = None
        self.cell_runs: list[RunHandle] = []
        self.capture_override: bool | None = None
        self.last_cell_failed = False
        # recover=False: the caller already looked for runs left by dead processes lately.
        self._recovered = not recover
        self._autolog_on = False
        self._executor: ThreadPoolExecutor | None = None
        self._buffer: MetricBuffer | None = None
        self._identity = process_identity()
        self._atexit_registered = False
        self._implicit_failed_at: float | None = None
        self._listeners: list[Callable[[str, str, float, int], None]] = []
        #: (model name, alias) -> (the version loaded here, the holder last seen).
        self.loaded: dict[tuple[str, str], tuple[str, str | None]] = {}

    # -- settings -------------------------------------------------------

    @property
    def config(self) -> ProjectConfig:
        """The project settings, resolved on first use from the notebook's folder."""
        if self._config is None:
            start = self.notebook.path.parent if self.notebook.path else None
            self._config = resolve_config(start)
        return self._config

    @property
    def client(self) -> MlflowClient:
        """The MLflow client for the project store (created, and the store initialised, once)."""
        return get_client(self.config)

    @property
    def capture(self) -> bool:
        """Whether code is captured with runs (``%mlops capture on|off`` or the config)."""
        return self.config.capture if self.capture_override is None else self.capture_override

    @property
    def active(self) -> RunHandle | None:
        """The run that logging goes to: the innermost cell run, else the notebook run."""
        return self.cell_runs[-1] if self.cell_runs else self.session

    @property
    def buffer(self) -> MetricBuffer:
        if self._buffer is None:
            self._buffer = MetricBuffer(lambda: self.client, self.report)
        return self._buffer

    def refresh_notebook(self) -> NotebookLocation:
        """Find the notebook again, as it is named now, and return it.

        Jupyter names a new notebook ``Untitled.ipynb`` until its first save renames it;
        the kernel's environment keeps the old name, Jupyter Server's sessions API has
        the new one (see :func:`mlops_nb.provenance.locate_notebook`). Never raises.
        """
        if self._locate is not None and self.job is None:
            try:
                self.notebook = self._locate()
            except Exception as exc:  # keep the last known place
                self.report(f"warning: could not find the notebook again: {one_line(exc, with_type=True)}")
        return self.notebook

    def _notebook_tags(self) -> dict[str, str]:
        """The run tags that name the notebook and say whether it was ever saved."""
        rel = self.notebook.relative_to(self.config.project_root)
        tags = {NOTEBOOK_HOW: self.notebook.how}
        if rel:
            tags[NOTEBOOK] = rel
            tags["mlflow.source.name"] = rel
            tags[NOTEBOOK_SAVED] = "true" if notebook_saved(self.notebook.path) else "false"
        return tags

    def default_experiment(self) -> str:
        """The configured experiment, else the notebook's name, else ``Default``."""
        return self.config.experiment or self.notebook.name or "Default"

    # -- starting -------------------------------------------------------

    def start_notebook_run(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        autolog: bool = True,
        namespace: Mapping[str, Any] | None = None,
    ) -> RunHandle:
        """Start the run for this notebook session, ending any previous one.

        The values of the notebook's ``parameters`` cell (taken from ``namespace``, so
        injected values win) are logged as params.

        Raises
        ------
        StoreError
            When the store cannot be reached; nothing is started.
        """
        if self.job is not None:
            return self._adopt_job_run(autolog)
        if self.session is not None:
            self.end_run(self.session, FINISHED)
        self.refresh_notebook()
        params: dict[str, str] = {}
        if namespace is not None and self.notebook.path is not None:
            snap = read_snapshot(self.notebook.path)
            if snap is not None:
                params = parameter_values(snap.parameter_names, namespace)
        name = run_name or self.notebook.name
        handle = self._start("notebook", experiment, name, None, autolog, params, {})
        handle.notebook_tags = self._notebook_tags()
        self.session = handle
        self._sync_autolog()
        return handle

    def _adopt_job_run(self, autolog: bool) -> RunHandle:
        """In a job, the notebook run is the job's run: started, given its params and
        ended by the runner, so an interactive run and its headless twin are one run."""
        job = self.job or {}
        if self.session is not None and self.session.run_id == job["run_id"]:
            self.session.autolog = autolog
            self._sync_autolog()
            return self.session
        if self.session is not None:
            self.end_run(self.session, FINISHED)
        handle = RunHandle(
            run_id=job["run_id"],
            experiment_id=str(job["experiment_id"]),
            experiment_name=str(job.get("experiment_name", "")),
            kind="notebook",
            name=str(job.get("run_name", "")),
            autolog=autolog,
            owned=False,
        )
        self.session = handle
        if self.fluent:
            self._activate(handle)
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True
        self._sync_autolog()
        return handle

    def start_cell_run(
        self,
        name: str | None = None,
        source: str = "",
        execution_count: int | None = None,
        autolog: bool | None = None,
        experiment: str | None = None,
        cell_id: str | None = None,
    ) -> RunHandle:
        """Start a run for one cell, nested under the notebook run when there is one."""
        self.refresh_notebook()
        parent = self.active
        if autolog is None:
            autolog = parent.autolog if parent else True
        exp = experiment or (parent.experiment_name if parent else None)
        label = name or (f"{self.notebook.name or 'cell'} [{execution_count}]" if execution_count is not None else None)
        tags = {}
        if execution_count is not None:
            tags[CELL] = str(execution_count)
        handle = self._start("cell", exp, label, parent, autolog, {}, tags)
        handle.notebook_tags = self._notebook_tags()
        if self._capturable(source, cell_id):
            handle.cells.append((execution_count, source))
        self.cell_runs.append(handle)
        self._sync_autolog()
        return handle

    def _start(
        self,
        kind: str,
        experiment: str | None,
        run_name: str | None,
        parent: RunHandle | None,
        autolog: bool,
        params: dict[str, str],
        extra_tags: dict[str, str],
    ) -> RunHandle:
        try:
            client = self.client
            if not self._recovered:
                self._recovered = True
                self.recover_dead_runs()
            exp_name = experiment or self.default_experiment()
            exp_id = get_or_create_experiment(client, self.config, exp_name)
            tags = self._base_tags(kind)
            tags.update(extra_tags)
            if parent is not None:
                tags["mlflow.parentRunId"] = parent.run_id
            run = client.create_run(exp_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
            if params:
                from mlflow.entities import Param

                client.log_batch(run_id, params=[Param(k, v[:_MAX_PARAM_LEN]) for k, v in params.items()])
        except MlopsError:
            raise
        except Exception as exc:
            # A server that went down since it last answered: say so in one line, not
            # with MLflow's retry trace.
            health = check_store(self.config, timeout=2.0)
            if health.reachable is False:
                raise health.error() from None
            raise StoreError(
                f"cannot start a run in {self.config.tracking_uri}: {one_line(exc, with_type=True)}"
            ) from None
        self._implicit_failed_at = None
        handle = RunHandle(
            run_id=run_id,
            experiment_id=exp_id,
            experiment_name=exp_name,
            kind=kind,
            name=run.info.run_name or "",
            parent=parent,
            autolog=autolog,
            params=dict(params),
        )
        # Git state and environment: computed off the main thread while the cell runs.
        handle.static_capture = self._pool().submit(static_capture, self.config.project_root, self.capture)
        if self.fluent:
            self._activate(handle)
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True
        return handle

    def _base_tags(self, kind: str) -> dict[str, str]:
        tags = {
            KIND: kind,
            **self._notebook_tags(),
            HOST: self._identity["host"],
            PID: self._identity["pid"],
            PYTHON: sys.version.split()[0],
            "mlflow.source.type": "NOTEBOOK",
        }
        if "pid_start" in self._identity:
            tags[PID_START] = self._identity["pid_start"]
        try:
            import getpass

            tags["mlflow.user"] = getpass.getuser()
        except Exception:  # no user name in some containers
            pass
        return tags

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-capture")
        return self._executor

    def _activate(self, handle: RunHandle) -> None:
        """Make ``handle`` MLflow's active run too, so autologging and the notebook's own
        ``mlflow.*`` calls land in it (see :func:`mlops_nb.fluent.activate_run`)."""
        try:
            fluent.activate_run(self.config.tracking_uri, handle.experiment_id, handle.run_id)
            handle.fluent = True
            # A user's mlflow.start_run() nests under this run rather than raising MLflow's
            # "Run ... is already active".
            fluent.install_start_run_defaults(current_tracker_owns)
            # Runs and models the notebook's own mlflow calls create name the notebook as
            # it is now (it may have been renamed since the kernel started).
            fluent.set_source_name(self.notebook.relative_to(self.config.project_root))
        except Exception as exc:
            self.report(
                f"warning: autologging and mlflow.* calls will not reach run {handle.run_id}: "
                f"{one_line(exc, with_type=True)}"
            )

    def _sync_autolog(self) -> None:
        """Autolog follows the innermost active run's setting."""
        active = self.active
        want = bool(active and active.autolog)
        if want == self._autolog_on or not self.fluent:
            return
        try:
            fluent.set_sklearn_autolog(want)
        except Exception as exc:
            self.report(f"warning: scikit-learn autologging is unavailable ({one_line(exc, with_type=True)})")
        finally:
            self._autolog_on = want

    # -- logging --------------------------------------------------------

    def _target(self) -> RunHandle | None:
        """The run to log to, starting a notebook run if none is active.

        When that run cannot start (store unreachable), the failure is reported once
        and ``None`` returned: values are dropped rather than breaking the user's code.
        Starting is tried again every ``_IMPLICIT_RETRY_S`` seconds (at once after a
        status that found the store reachable, or an explicit start).
        """
        handle = self.active
        if handle is not None:
            return handle
        failed_at = self._implicit_failed_at
        if failed_at is not None and time.monotonic() - failed_at < _IMPLICIT_RETRY_S:
            return None
        try:
            handle = self.start_notebook_run()
        except MlopsError as exc:
            self._implicit_failed_at = time.monotonic()
            if failed_at is None:
                self.report(
                    f"warning: {exc}; values logged from now on are not recorded until a run can start "
                    f"(tried again every {_IMPLICIT_RETRY_S:g} s)"
                )
            return None
        self.report(f"started run {handle.run_id} in experiment {handle.experiment_name!r} (no %mlops track yet)")
        return handle

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        """Queue a metric for the active run; returns at once.

        Raises
        ------
        UsageError
            When ``key`` is not a string or ``value`` is not a real number.
        """
        check_key(key, "metric")
        if not is_metric_value(value):
            raise UsageError(f"metric {key!r} must be a number, not {type(value).__name__} {value!r}")
        handle = self._target()
        if handle is None:
            return
        if step is None:
            step = handle.steps.get(key, -1) + 1
        handle.steps[key] = step
        self.buffer.add(handle.run_id, key, float(value), timestamp or _now_ms(), int(step))
        if self._listeners:
            self._notify(handle, key, float(value), int(step))

    def add_metric_listener(self, listener: Callable[[str, str, float, int], None]) -> None:
        """Call ``listener(run_id, key, value, step)`` for each metric logged (a live chart)."""
        self._listeners.append(listener)

    def remove_metric_listener(self, listener: Callable[[str, str, float, int], None]) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, handle: RunHandle, key: str, value: float, step: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(handle.run_id, key, value, step)
            except Exception as exc:  # a broken chart must not break training
                self._listeners.remove(listener)
                self.report(f"warning: live chart stopped: {one_line(exc, with_type=True)}")

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log params on the active run; a changed value warns instead of raising.

        Returns the params actually written.
        """
        for key in params:
            check_key(key, "param")
        handle = self._target()
        if handle is None:
            return {}
        fresh: dict[str, str] = {}
        for key, value in params.items():
            text = str(value)
            if len(text) > _MAX_PARAM_LEN:
                raise UsageError(
                    f"param {key!r} is {len(text)} characters; MLflow keeps at most {_MAX_PARAM_LEN}: "
                    "log it as an artifact instead"
                )
            old = handle.params.get(key)
            if old is None:
                fresh[key] = text
            elif old != text:
                self.report(
                    f"warning: param {key!r} is already {old!r} in run {handle.run_id} and MLflow params "
                    f"cannot change, so {text!r} was not logged; use %%mlops track on the cell for a new run "
                    "each time it runs"
                )
        if fresh:
            from mlflow.entities import Param

            try:
                self.client.log_batch(handle.run_id, params=[Param(k, v) for k, v in fresh.items()])
            except Exception as exc:
                self.report(f"warning: could not log params {sorted(fresh)}: {one_line(exc, with_type=True)}")
                return {}
            handle.params.update(fresh)
        return fresh

    def log_values(self, values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """Log named values: numbers as metrics, other scalars as params.

        Everything is checked before anything is logged. Returns (metric names, param
        names).

        Raises
        ------
        UsageError
            When a value is neither a number nor a scalar (str, bool, None).
        """
        metrics, params = split_values(values)
        if params:
            self.log_params(params)
        for name, value in metrics.items():
            self.log_metric(name, value)
        return list(metrics), list(params)

    def record_cell(
        self, execution_count: int | None, source: str, cell_id: str | None = None, failed: bool = False
    ) -> None:
        """Note a cell the notebook run executed (its code goes into the run's snapshot)."""
        self.last_cell_failed = failed
        handle = self.session
        if handle is None:
            return
        if self._capturable(source, cell_id):
            handle.cells.append((execution_count, source))
        self._write_static(handle)

    def _capturable(self, source: str, cell_id: str | None) -> bool:
        """Whether a cell's code may be captured (capture on, and the cell did not opt out)."""
        if not self.capture or is_no_capture(source):
            return False
        snap = read_snapshot(self.notebook.path) if self.notebook.path is not None else None
        return not (snap and snap.hides(cell_id, source))

    def flush(self) -> int:
        """Write buffered metrics now; return how many could not be written."""
        return self._buffer.flush() if self._buffer is not None else 0

    # -- ending ---------------------------------------------------------

    def end_run(
        self, handle: RunHandle | None = None, status: str = FINISHED, error: BaseException | None = None
    ) -> RunHandle | None:
        """End a run (default: the active one) and everything nested in it.

        Metrics are flushed and the capture written first. Failures of the store are
        reported, never raised: the run is removed from this tracker either way.
        """
        handle = handle or self.active
        if handle is None:
            return None
        if handle.ended:  # e.g. mnb.end() inside a tracked cell, then the cell ends
            return handle
        handle.ended = True
        if handle is self.session:
            for child in reversed(self.cell_runs):
                self.end_run(child, KILLED if status != FINISHED else FINISHED)
        try:
            if self._buffer is not None:
                self._buffer.flush(handle.run_id)
            if not handle.owned:
                return handle  # the job runner records the notebook, the error and the end
            self._write_capture(handle)
            if error is not None:
                self._write_error(handle, error)
            self._terminate(handle, status)
        except Exception as exc:
            self.report(f"warning: run {handle.run_id} may not have ended cleanly: {one_line(exc, with_type=True)}")
        finally:
            if handle in self.cell_runs:
                self.cell_runs.remove(handle)
            if handle is self.session:
                self.session = None
            self._sync_autolog()
            parent = self.active
            if handle.fluent and parent is not None and parent.experiment_id != handle.experiment_id:
                try:
                    import mlflow

                    mlflow.set_experiment(experiment_id=parent.experiment_id)
                except Exception:
                    pass
        return handle

    def _write_static(self, handle: RunHandle) -> None:
        fut = handle.static_capture
        if handle.static_written or fut is None or not fut.done():
            return
        handle.static_written = True
        try:
            tags, artifacts = fut.result()
            from mlflow.entities import RunTag

            if tags:
                self.client.log_batch(handle.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            for path, text in artifacts.items():
                self.client.log_text(handle.run_id, text, path)
        except Exception as exc:
            self.report(f"warning: could not record git state and environment: {one_line(exc, with_type=True)}")

    def _write_capture_static_now(self, handle: RunHandle) -> None:
        """Wait for the git/environment capture of ``handle`` and write it; name the
        notebook as it is now if it was renamed or first saved since the run started."""
        if handle.owned:
            self.refresh_notebook()
            tags = self._notebook_tags()
            if tags != handle.notebook_tags:
                try:
                    from mlflow.entities import RunTag

                    self.client.log_batch(handle.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                    handle.notebook_tags = tags
                except Exception as exc:
                    self.report(f"warning: could not record the notebook's new name: {one_line(exc, with_type=True)}")
        if handle.static_capture is not None:
            try:
                handle.static_capture.result(timeout=60)
            except Exception:
                pass
            self._write_static(handle)

    def _write_capture(self, handle: RunHandle) -> None:
        self._write_capture_static_now(handle)
        if not self.capture:
            return
        client = self.client
        snap = read_snapshot(self.notebook.path) if self.notebook.path is not None else None
        # A notebook never saved has no file, or the empty one Jupyter created: no snapshot
        # then (the run's mlops_nb.notebook_saved tag says so), rather than an empty one.
        if self.notebook.path is not None and snap is not None and snap.cells:
            client.log_text(handle.run_id, snap.text, f"code/{self.notebook.path.name}")
        if handle.cells:
            client.log_text(handle.run_id, cells_source(handle.cells), "code/cells.py")

    def _write_error(self, handle: RunHandle, error: BaseException) -> None:
        from mlflow.entities import RunTag

        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.client.log_batch(handle.run_id, tags=[RunTag(ERROR, one_line(error, with_type=True)[:5000])])
        self.client.log_text(handle.run_id, text, "error.txt")

    def _terminate(self, handle: RunHandle, status: str) -> None:
        if handle.fluent and fluent.end_runs_down_to(handle.run_id, status):
            return
        self.client.set_terminated(handle.run_id, status)

    def owns(self, run_id: str) -> bool:
        """True when ``run_id`` is a run this tracker started and has not ended."""
        return any(h.run_id == run_id for h in [*self.cell_runs, self.session] if h is not None)

    def close(self) -> None:
        """End every open run and flush: called at interpreter exit."""
        for handle in reversed(self.cell_runs):
            self.end_run(handle, KILLED)
        if self.session is not None:
            self.end_run(self.session, FAILED if self.last_cell_failed else FINISHED)
        if self._buffer is not None:
            self._buffer.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- models -----------------------------------------------------------

    def register_model(
        self,
        model: Any,
        name: str,
        alias: str | None = None,
        input_example: Any = None,
        description: str | None = None,
    ) -> RegisteredVersion:
        """Log ``model`` under the active run (or a new run) and register a version."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        detect_flavor(model)  # refuse a non-model before any run is started
        if not self.fluent:
            raise UsageError("registering a model needs an in-process tracker (fluent=True)")
        active = self.active
        own_run = active is None
        handle = active if active is not None else self.start_cell_run(f"register {name}", autolog=False)
        try:
            if not handle.fluent:
                raise StoreError(f"run {handle.run_id} is not MLflow's active run; cannot log the model into it")
            self._write_capture_static_now(handle)  # the version's lineage reads the run's git tags
            if self._buffer is not None:
                self._buffer.flush(handle.run_id)  # ...and its metrics snapshot the run's metrics
            return register_version(
                self.client,
                model,
                name,
                handle.run_id,
                alias,
                input_example,
                description,
                approval=self.config.approval_aliases,
            )
        except MlopsError:
            raise
        except Exception as exc:
            raise StoreError(
                f"cannot register {name!r} in {self.config.tracking_uri}: {one_line(exc, with_type=True)}"
            ) from None
        finally:
            if own_run:
                self.end_run(handle, FINISHED)

    def load_model(self, uri: str) -> tuple[Any, Any]:
        """Load a model version; remember which version an alias resolved to."""
        name, alias, _ = parse_model_uri(uri)
        model, mv = load_model(self.client, uri)
        if alias:
            self.loaded[(name, alias)] = (str(mv.version), str(mv.version))
        return model, mv

    def stale_models(self) -> list[str]:
        """Warnings for loaded models whose alias has moved since (each move once)."""
        return stale_alias_warnings(self.client, self.loaded) if self.loaded else []

    # -- recovery and status ---------------------------------------------

    def recover_dead_runs(self, page_size: int = 1000) -> list[str]:
        """Mark KILLED the runs of this host left RUNNING by processes that are gone."""
        return end_dead_runs(self.client, self._identity["host"], self.report, page_size)

    def status(self) -> dict[str, Any]:
        """What is tracked, where, whether the store answers right now, and what is captured.

        The store is probed with a short timeout (:func:`mlops_nb.store.check_store`);
        nothing here raises because the store is down.
        """
        cfg = self.config
        capture = self.capture
        notebook = self.refresh_notebook().relative_to(cfg.project_root)
        if notebook and not notebook_saved(self.notebook.path):
            notebook += " (never saved: save it so runs keep a snapshot of it)"
        health = check_store(cfg)
        if health.reachable:
            self._implicit_failed_at = None  # values logged from now on start a run again
        return {
            "store": cfg.tracking_uri,
            "store_reachable": health.reachable,
            "store_health": health.text,
            "store_reason": cfg.source,
            "project_root": str(cfg.project_root),
            "notebook": notebook,
            "notebook_how": self.notebook.how,
            "experiment": (self.session.experiment_name if self.session else self.default_experiment()),
            "notebook_run": self.session.run_id if self.session else None,
            "cell_runs": [h.run_id for h in self.cell_runs],
            "autolog": self._autolog_on,
            "capture": capture,
            "captured": (
                "notebook snapshot, tracked cell sources, git diff, git commit/branch, installed packages "
                "(cells tagged mlops:no-capture left out)"
                if capture
                else "git commit/branch and installed packages only (code capture is off)"
            ),
            "pending_metrics": len(self._buffer) if self._buffer else 0,
            "ui": ui_hint(cfg),
        }


# ---------------------------------------------------------------- the process's tracker

_tracker: Tracker | None = None


def get_tracker() -> Tracker:
    """The tracker of this process (one per kernel or script), created on first use."""
    global _tracker
    if _tracker is None:
        _tracker = Tracker()
    return _tracker


def current_tracker() -> Tracker | None:
    """The tracker of this process if there is one yet (never creates it)."""
    return _tracker


def set_tracker(tracker: Tracker | None) -> None:
    """Replace the process's tracker (the magics do this when they load)."""
    global _tracker
    _tracker = tracker


def current_tracker_owns(run_id: str) -> bool:
    """Whether ``run_id`` is an open run of this process's tracker."""
    tracker = _tracker
    return tracker is not None and tracker.owns(run_id)


def ui_hint(cfg: ProjectConfig) -> str:
    """How to open the store in MLflow's own UI: the command for a SQLite store, else the server's address."""
    if cfg.sqlite_path is not None:
        return f"mlflow ui --backend-store-uri {cfg.tracking_uri}"
    return cfg.tracking_uri
