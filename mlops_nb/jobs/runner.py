"""A notebook run headless through papermill as one MLflow run.

The job's run records the params (checked against the notebook's ``parameters`` cell
before any kernel starts), status, duration, the executed notebook (and an HTML
rendering), and on failure the failing cell's index, source and error. Code inside the
notebook (``%mlops track``, ``mnb.log_metric``) logs into that same run: the kernel reads
the job's description from the file named by ``MLOPS_NB_JOB_FILE``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..config import ProjectConfig, resolve_config
from ..exceptions import MlopsError, UsageError
from ..provenance import NotebookLocation

if TYPE_CHECKING:
    from .pool import KernelPool

__all__ = ["JobResult", "check_job", "notebook_path", "run_notebook", "FINISHED", "FAILED", "KILLED"]

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
TAG = "mlops_nb."


@dataclass
class JobResult:
    """How a job ended, and where to find what it produced."""

    notebook: str
    run_id: str | None
    experiment: str
    status: str
    duration_s: float
    params: dict[str, Any]
    output: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    failed_cell: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    @property
    def retryable(self) -> bool:
        """Whether running the job again may succeed: it failed without a cell raising
        an error (its kernel died, it timed out, no kernel could start)."""
        if self.status != FAILED:
            return False
        return self.failed_cell is None or "timed out" in (self.error or "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["retryable"] = self.retryable
        return data


RECOVERY_INTERVAL_S = 60.0
_recovery_checked: dict[str, float] = {}
_recovery_lock = threading.Lock()


def _recovery_due(uri: str) -> bool:
    """Whether this job should look for runs left RUNNING by dead processes: once a
    minute per store in a process that runs many jobs (a sweep, an agent, a Dask
    worker), not on every job (two searches a job on a shared server)."""
    now = time.monotonic()
    with _recovery_lock:
        last = _recovery_checked.get(uri)
        if last is not None and now - last < RECOVERY_INTERVAL_S:
            return False
        _recovery_checked[uri] = now
        return True


def _notebook_kernel(path: Path) -> str:
    """The kernel the notebook names in its metadata (papermill's default), else python3."""
    try:
        name = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]["name"]
        return name if isinstance(name, str) and name else "python3"
    except (OSError, ValueError, KeyError, TypeError):
        return "python3"


def _positive(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of seconds, not {value!r}") from None
    if not number > 0:
        raise UsageError(f"{what} must be more than 0 seconds, not {value!r}")
    return number


def _failed_cell(exc: BaseException, executed: Path | None) -> dict[str, Any] | None:
    """The failing cell from papermill's execution error: ``index`` is its position in
    the source notebook counting from 1 (papermill's index counts from 0 in the executed
    copy, which holds the injected-parameters cell too)."""
    index = getattr(exc, "cell_index", None)
    if index is None:
        return None
    injected = 0
    if executed is not None:
        try:
            # papermill's index counts the executed cells; the error banners it then
            # adds to the saved copy (tagged papermill-error-cell-tag) are not among them.
            cells = [
                c for c in json.loads(executed.read_text(encoding="utf-8"))["cells"]
                if "papermill-error-cell-tag" not in (c.get("metadata", {}).get("tags") or [])
            ]
            injected = sum(
                "injected-parameters" in (c.get("metadata", {}).get("tags") or []) for c in cells[: int(index)]
            )
        except (OSError, ValueError, KeyError, TypeError):
            injected = 0
    return {
        "index": int(index) - injected + 1,
        "execution_count": getattr(exc, "exec_count", None),
        "source": getattr(exc, "source", "") or "",
        "error": f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', '')}".strip(),
    }


_exporter: Any = None
_exporter_lock = threading.Lock()


def _html_exporter() -> Any:
    """The process's one HTML exporter (nbconvert's lab template): building one
    compiles its templates (~70 ms), so every job of the process shares it."""
    global _exporter
    with _exporter_lock:
        if _exporter is None:
            from nbconvert import HTMLExporter

            _exporter = HTMLExporter(template_name="lab")
        return _exporter


def _html(executed: Path) -> str | None:
    """The executed notebook as HTML, or ``None`` when it cannot be rendered."""
    try:
        import nbformat

        exporter = _html_exporter()
        with _exporter_lock:
            body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
        return body
    except Exception:
        return None


def notebook_path(notebook: str | Path) -> Path:
    """The absolute path of an existing notebook, or a :class:`UsageError` saying what is wrong."""
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise UsageError(f"{notebook} is not a notebook (.ipynb): give the path of a notebook")
    if not path.is_file():
        raise UsageError(f"notebook {notebook} not found: check the path (relative to {Path.cwd()})")
    return path.resolve()


def check_job(
    notebook: str | Path,
    params: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
    timeout: Any = None,
    cell_timeout: Any = None,
) -> tuple[Path, dict[str, Any], float | None, float | None]:
    """Everything about a job that can be checked before a kernel starts: the notebook,
    its parameters (converted by their declared types) and the timeouts.

    Returns the notebook's absolute path, the converted parameters and the timeouts.
    """
    from .params import check_params, declared_parameters

    path = notebook_path(notebook)
    timeout = _positive(timeout, "--timeout")
    cell_timeout = _positive(cell_timeout, "--cell-timeout")
    checked = check_params(declared_parameters(path), dict(params or {}), texts=dict(texts or {}), notebook=path.name)
    return path, checked, timeout, cell_timeout


def run_notebook(
    notebook: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    texts: Mapping[str, str] | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    timeout: float | None = None,
    cell_timeout: float | None = None,
    kernel: str | None = None,
    output: str | Path | None = None,
    cwd: str | Path | None = None,
    pool: "KernelPool | None" = None,
    progress: bool | dict[str, Any] = False,
    parent_run_id: str | None = None,
    config: ProjectConfig | None = None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> JobResult:
    """Run ``notebook`` headless through papermill as one MLflow run.

    ``params`` are Python values and ``texts`` raw ``NAME=VALUE`` strings (from a command
    line); both are checked against the notebook's ``parameters`` cell before any kernel
    starts. ``timeout`` bounds the whole job, ``cell_timeout`` each cell. ``stop``, when
    set, stops the job (its run ends KILLED). ``progress`` is papermill's
    ``progress_bar`` (a bool, or keyword arguments for its tqdm bar). ``on_start`` is
    called with the run's id once the run exists, after ``tags`` are set on it. A
    failing notebook is a result with
    ``status == "FAILED"``, not an exception.

    Raises
    ------
    UsageError
        For a missing notebook, unknown parameters or values of the wrong type, a bad
        timeout: nothing is started and no run is created.
    StoreError
        When the store cannot be reached (no run is created).
    """
    path, checked, timeout, cell_timeout = check_job(notebook, params, texts, timeout, cell_timeout)
    workdir = Path(cwd).resolve() if cwd else path.parent
    if not workdir.is_dir():
        raise UsageError(f"--cwd {cwd} is not a folder")

    kernel = kernel or _notebook_kernel(path)
    started = time.monotonic()
    own_pool = pool is None
    if own_pool:
        from .pool import KernelPool

        pool = KernelPool(kernel_name=kernel or "python3", size=0, cwd=str(workdir))
    # The kernel starts (another process) while this one imports MLflow and creates the run.
    from concurrent.futures import ThreadPoolExecutor

    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-kernel")
    acquiring = starter.submit(pool.acquire)
    starter.shutdown(wait=False)

    from ..tracking import Tracker

    try:
        cfg = config or resolve_config(path.parent)
        tracker = Tracker(notebook=NotebookLocation(path, "mlops-nb run"), config=cfg, fluent=False, report=report,
                          recover=_recovery_due(cfg.tracking_uri))
        handle = tracker.start_notebook_run(experiment, run_name or path.stem, autolog=False)
    except BaseException:
        _release(acquiring, pool if own_pool else None)
        raise
    client = tracker.client
    run_id = handle.run_id
    run_tags = {TAG + "kind": "job", TAG + "job.kernel": kernel or "python3", **dict(tags or {})}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in run_tags.items()])
    if checked:
        tracker.log_params({k: json.dumps(v) if not isinstance(v, str) else v for k, v in checked.items()})
    if on_start is not None:
        on_start(run_id)

    out = Path(output).resolve() if output else cfg.project_root / ".mlops" / "jobs" / run_id / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    status, error, failed = FINISHED, None, None
    pooled = None
    try:
        pooled = acquiring.result()
        Path(pooled.job_file).write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "experiment_id": handle.experiment_id,
                    "experiment_name": handle.experiment_name,
                    "run_name": handle.name,
                    "notebook": str(path),
                    "tracking_uri": cfg.tracking_uri,
                }
            ),
            encoding="utf-8",
        )
        status, error, failed = _execute(path, out, checked, pooled.km, kernel, cell_timeout, timeout, progress, stop)
    except KeyboardInterrupt:
        status, error = KILLED, "interrupted (Ctrl-C)"
    except Exception as exc:  # no kernel could start, or the runner failed: never leave the run RUNNING
        text = str(exc).strip().splitlines()
        status, error = FAILED, (text[0] if isinstance(exc, MlopsError) and text else f"{type(exc).__name__}: {text[0] if text else ''}")
    finally:
        # The kernel shuts down (gracefully: its tracker writes buffered metrics into
        # the run at exit) while this thread stores the executed notebook.
        closing = threading.Thread(target=_shutdown, args=(pooled,), daemon=True) if pooled is not None else None
        if closing is not None:
            closing.start()

    duration = time.monotonic() - started
    try:
        client.log_metric(run_id, "job_duration_s", duration)
        if out.exists():
            client.log_artifact(run_id, str(out), "job")
            html = _html(out)
            if html:
                client.log_text(run_id, html, f"job/{out.stem}.html")
        if failed is not None:
            client.set_tag(run_id, TAG + "job.failed_cell", str(failed["index"]))
            client.log_text(run_id, failed["source"], "job/failed_cell.py")
    except Exception as exc:
        tracker.report(f"warning: could not store the executed notebook of run {run_id}: {exc}")
    if closing is not None:
        closing.join()
    if own_pool:
        pool.close()
    tracker.end_run(handle, status, error=RuntimeError(error) if error else None)
    tracker.close()
    metrics = dict(client.get_run(run_id).data.metrics)
    return JobResult(
        notebook=str(path),
        run_id=run_id,
        experiment=handle.experiment_name,
        status=status,
        duration_s=duration,
        params=checked,
        output=str(out) if out.exists() else None,
        metrics=metrics,
        error=error,
        failed_cell=failed,
    )


def _execute(
    path: Path,
    out: Path,
    params: dict[str, Any],
    km: Any,
    kernel: str | None,
    cell_timeout: float | None,
    timeout: float | None,
    progress: bool | dict[str, Any],
    stop: threading.Event | None,
) -> tuple[str, str | None, dict[str, Any] | None]:
    """Execute in a worker thread so the whole-job timeout and ``stop`` can end it by
    killing the kernel (nbclient then raises in the worker)."""
    import papermill

    outcome: dict[str, BaseException | None] = {"error": None}

    def work() -> None:
        try:
            papermill.execute_notebook(
                str(path),
                str(out),
                parameters=params,
                kernel_name=kernel,
                progress_bar=progress,
                log_output=False,
                execution_timeout=cell_timeout,
                request_save_on_cell_execute=True,
                km=km,
            )
        except BaseException as exc:  # reported to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="mlops-nb-job", daemon=True)
    worker.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    reason: tuple[str, str] | None = None
    try:
        while worker.is_alive():
            worker.join(0.1)
            if stop is not None and stop.is_set():
                reason = (KILLED, "stopped")
            elif deadline is not None and time.monotonic() > deadline:
                reason = (FAILED, f"timed out after {timeout:g} s (--timeout)")
            if reason:
                _kill(km)
                worker.join(30)
                break
    except KeyboardInterrupt:
        _kill(km)
        worker.join(30)
        raise
    error = outcome["error"]
    if reason is not None:
        return reason[0], reason[1], _failed_cell(error, out) if error else None
    if error is None:
        return FINISHED, None, None
    failed = _failed_cell(error, out)
    if failed is not None:
        return FAILED, f"cell {failed['index']} failed: {failed['error']}", failed
    text = str(error).strip().splitlines()
    return FAILED, f"{type(error).__name__}: {text[0] if text else ''}".strip(), None


def _kill(km: Any) -> None:
    try:
        km.shutdown_kernel(now=True)
    except Exception:
        pass


def _release(acquiring: Any, pool: Any) -> None:
    """Give back a kernel being started for a job that will not run."""
    try:
        acquiring.result().discard(now=True)
    except BaseException:
        pass
    if pool is not None:
        pool.close()


def _shutdown(pooled: Any) -> None:
    """Shut the kernel down gracefully (the pool's default), so its tracker flushes
    buffered metrics into the job's run at exit; a dead or stuck kernel is killed."""
    try:
        pooled.discard()
    except Exception:
        pass
