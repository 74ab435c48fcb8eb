"""A notebook run headless through papermill as one MLflow run.

The job's run records the params (checked against the notebook's ``parameters`` cell
before any kernel starts), status, duration, the executed notebook (and an HTML
rendering), and on failure the failing cell's index, source and error. Code inside the
notebook (``%mlops track``, ``mnb.log_metric``) logs into that same run: the kernel reads
the job's description from the file named by ``MLOPS_NB_JOB_FILE``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import MlopsError, one_line
from mlops_nb.jobs.run.params import notebook_kernel
from mlops_nb.jobs.run.spec import (
    FAILED,
    FINISHED,
    KILLED,
    JobResult,
    JobSpec,
    cell_tags,
    check_job,
    job_spec,
    notebook_path,
)
from mlops_nb.provenance import NotebookLocation
from mlops_nb.snapshots import notebook_html
from mlops_nb.tags import ERROR, JOB_FAILED_CELL, JOB_KERNEL, KIND

# MLflow (with the tracker), jupyter_client (with the kernel pool), papermill, nbformat
# and nbconvert are imported where used: `mlops-nb run` imports this module before it
# hands the job to the agent, and its start-up time through the agent is measured.
if TYPE_CHECKING:
    from mlops_nb.jobs.run.pool import KernelPool, PooledKernel
    from mlops_nb.tracking import RunHandle, Tracker

__all__ = [
    "FAILED",
    "FINISHED",
    "KILLED",
    "JobResult",
    "check_job",
    "execute_job",
    "notebook_kernel",
    "notebook_path",
    "run_notebook",
]


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


# Cell tags with a meaning for a job: papermill's error banners (added to the copy it
# saves; a notebook's old ones are dropped before it runs), papermill's injected
# parameters, and nbclient's mark on a cell that is expected to raise.
BANNER_TAG, INJECTED_TAG, RAISES_TAG = "papermill-error-cell-tag", "injected-parameters", "raises-exception"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _notebook_cells(path: Path | None) -> list[dict[str, Any]] | None:
    """Every cell of a notebook file as stored, or ``None`` when it cannot be read."""
    if path is None:
        return None
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else None


def _executed(cells: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The cells papermill ran (its indexes count these): the saved copy less its banners."""
    return None if cells is None else [c for c in cells if BANNER_TAG not in cell_tags(c)]


def _clean_exit(output: dict[str, Any]) -> bool:
    """``sys.exit()`` / ``sys.exit(0)``: papermill's way to stop a notebook early, with success."""
    return output.get("ename") == "SystemExit" and str(output.get("evalue", "")) in ("", "0")


def _failing_index(cells: list[dict[str, Any]]) -> int | None:
    """The index of the cell that failed the job: the one nbclient stopped at (papermill
    marks it ``exception``), else one showing an error no ``raises-exception`` tag allowed;
    ``None`` when every error was allowed, as nbclient runs such notebooks to the end."""
    for marked_only in (True, False):
        for i, cell in enumerate(cells):
            errors = [o for o in cell.get("outputs") or [] if isinstance(o, dict) and o.get("output_type") == "error"]
            if errors and all(_clean_exit(o) for o in errors):
                continue
            if marked_only and ((cell.get("metadata") or {}).get("papermill") or {}).get("exception") is True:
                return i
            if not marked_only and errors and RAISES_TAG not in cell_tags(cell):
                return i
    return None


def _cell_error(cell: dict[str, Any]) -> tuple[str, str]:
    """The error a cell showed, as (one line ``Name: message``, the text the user reads):
    its traceback without colour codes or, when the kernel reported the error with no
    traceback (IPython's UsageError for an unknown ``%magic``), what it printed to stderr."""
    outputs = [o for o in cell.get("outputs") or [] if isinstance(o, dict)]
    for out in outputs:
        if out.get("output_type") == "error":
            evalue = str(out.get("evalue") or "").strip().splitlines()
            line = str(out.get("ename") or "Error") + (f": {evalue[0]}" if evalue else "")
            text = _ANSI.sub("", "\n".join(_text(t) for t in out.get("traceback") or [])).strip("\n")
            return line, text or line
    stderr = _ANSI.sub("", "".join(_text(o.get("text")) for o in outputs if o.get("name") == "stderr")).strip("\n")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1], stderr
    return "CellExecutionError: the kernel reported an error and printed no message", ""


def _source_position(index: int, executed: list[dict[str, Any]], source: list[list[str]] | None) -> int:
    """The 1-based position, in the notebook file the user gave, of the executed cell at
    ``index``: every cell of that file counts (markdown, and papermill banners it still
    holds from an earlier run, as the user sees them), the cell papermill injected for this
    run does not (a failure in it is the cell it follows)."""
    own = [i for i, tags in enumerate(source or []) if BANNER_TAG not in tags]  # what papermill ran
    added = len(executed) - len(own)
    injected = next((i for i, c in enumerate(executed) if INJECTED_TAG in cell_tags(c)), None)
    if source is None or added not in (0, 1) or (added and injected is None):
        # The input cannot be matched (changed since?): count the executed cells instead.
        return index + 1 - sum(INJECTED_TAG in cell_tags(c) for c in executed[:index])
    if added and injected is not None and index >= injected:
        index = index - 1 if index > injected else max(injected - 1, 0)
    return own[min(index, len(own) - 1)] + 1 if own else index + 1


def _failed_cell(
    exc: BaseException, cells: list[dict[str, Any]] | None, index: int, source: list[list[str]] | None
) -> dict[str, Any]:
    """What the job records of its failing cell (``cells`` as papermill ran them, ``None``
    when the saved copy is unreadable): ``index`` is its position in the user's notebook
    (see :func:`_source_position`), ``error`` the user's own ``Name: message`` and
    ``traceback`` the text the cell showed."""
    cell = cells[index] if cells is not None and 0 <= index < len(cells) else None
    if cell is not None:
        line, text = _cell_error(cell)
        count, code = cell.get("execution_count"), _text(cell.get("source"))
    else:
        evalue = str(getattr(exc, "evalue", "") or "").strip().splitlines()
        line = str(getattr(exc, "ename", type(exc).__name__)) + (f": {evalue[0]}" if evalue else "")
        text = _ANSI.sub("", "\n".join(getattr(exc, "traceback", None) or [])) or line
        count, code = getattr(exc, "exec_count", None), getattr(exc, "source", "") or ""
    position = _source_position(index, cells, source) if cells is not None else index + 1
    return {"index": position, "execution_count": count, "source": code, "error": line, "traceback": text}


def _cell_outcome(exc: BaseException, out: Path, spec: JobSpec) -> tuple[str, str | None, dict[str, Any] | None]:
    """How a job ended whose papermill run raised ``exc``: (status, error, failed cell).

    papermill fails a notebook on any error output, even in a cell tagged
    ``raises-exception``, and names the last such cell; nbclient, which ran the cells,
    honours the tag and stops at the first error it does not allow. The job follows
    nbclient: it fails on the cell nbclient stopped at, and the saved copy's banner is
    moved there (or removed when every error was allowed).
    """
    reported = getattr(exc, "cell_index", None)
    if reported is None:  # not a cell's error: the kernel died, a cell timed out, ...
        return FAILED, one_line(exc, with_type=True), None
    cells = _executed(_notebook_cells(out))
    index = int(reported) if cells is None else _failing_index(cells)
    if cells is not None and index != reported:
        _move_banner(out, index)
    if index is None:
        return FINISHED, None, None
    source = spec.cell_tags
    if source is None:  # a spec made by hand: the notebook as it is now
        now = _notebook_cells(Path(spec.notebook))
        source = None if now is None else [cell_tags(c) for c in now]
    failed = _failed_cell(exc, cells, index, source)
    return FAILED, f"cell {failed['index']} failed: {failed['error']}", failed


def _move_banner(out: Path, index: int | None) -> None:
    """Point papermill's error banners in the saved copy at the executed cell ``index``
    (none when ``None``), as papermill itself draws them."""
    try:
        import nbformat
        from papermill.execute import ERROR_ANCHOR_MSG, ERROR_MESSAGE_TEMPLATE

        nb = nbformat.read(out, as_version=4)
        nb.cells = [c for c in nb.cells if BANNER_TAG not in cell_tags(c)]
        if index is not None and index < len(nb.cells):
            count = nb.cells[index].get("execution_count")
            for at, text in ((index, ERROR_ANCHOR_MSG), (0, ERROR_MESSAGE_TEMPLATE % str(count))):
                banner = nbformat.v4.new_markdown_cell(text)
                banner.metadata["tags"] = [BANNER_TAG]
                nb.cells.insert(at, banner)
        nbformat.write(nb, out)
    except Exception:
        pass  # the copy keeps papermill's banner; the run's status and error are right either way


def _html(executed: Path) -> str | None:
    """The executed notebook as HTML, or ``None`` when it cannot be rendered."""
    try:
        return notebook_html(executed.read_text(encoding="utf-8"))
    except Exception:
        return None


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
    pool: KernelPool | None = None,
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
    failing notebook is a result with ``status == "FAILED"``, not an exception.

    A thin wrapper, as nbclient's ``execute()`` wraps ``NotebookClient``: the job is
    checked once into a :class:`~mlops_nb.jobs.run.spec.JobSpec` (:func:`job_spec`) and
    run by :func:`execute_job`, the primitive every executor ends in.

    Raises
    ------
    UsageError
        For a missing notebook, unknown parameters or values of the wrong type, a bad
        timeout: nothing is started and no run is created.
    StoreError
        When the store cannot be reached (no run is created).
    """
    path = notebook_path(notebook)
    spec = job_spec(
        path,
        params,
        config=config or resolve_config(path.parent),
        texts=texts,
        experiment=experiment,
        run_name=run_name,
        timeout=timeout,
        cell_timeout=cell_timeout,
        kernel=kernel,
        output=output,
        cwd=cwd,
        parent_run_id=parent_run_id,
        tags=tags,
    )
    return execute_job(spec, pool=pool, stop=stop, on_start=on_start, report=report, progress=progress)


def execute_job(
    spec: JobSpec,
    *,
    pool: KernelPool | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
    progress: bool | dict[str, Any] = False,
    tags: Mapping[str, str] | None = None,
) -> JobResult:
    """Run one checked job here, in this process: the primitive every executor ends in.

    ``spec`` is trusted (built by :func:`~mlops_nb.jobs.run.spec.job_spec`): nothing is
    checked or read again. ``tags`` are set on the run with the spec's own. A kernel
    starts (from ``pool``, else one of the job's own) while the run is created.

    Raises
    ------
    StoreError
        When the store cannot be reached (no run is created).
    """
    path = Path(spec.notebook)
    started = time.monotonic()
    own_pool = pool is None
    pool = pool or _own_pool(spec)
    # The kernel starts (another process) while this one imports MLflow and creates the run.
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-kernel")
    acquiring = starter.submit(pool.acquire)
    starter.shutdown(wait=False)
    try:
        tracker, handle, run_tags = _start_run(spec, report, {**spec.tags, **dict(tags or {})})
    except BaseException:
        _release(acquiring, pool if own_pool else None)
        raise
    if on_start is not None:
        on_start(handle.run_id)
    out = Path(spec.output) if spec.output else spec.config.project_root / ".mlops" / "jobs" / handle.run_id / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    job_file = _job_file(spec, handle, run_tags.get("mlflow.source.name"))
    status, error, failed, closing = _run_in_kernel(spec, job_file, acquiring, out, progress, stop)
    duration = time.monotonic() - started
    _store_outcome(tracker, handle.run_id, path, out, error, failed, duration)
    if closing is not None:
        closing.join()
    if own_pool:
        pool.close()
    tracker.end_run(handle, status)  # the error is recorded above, as the user's cell showed it
    tracker.close()
    return JobResult(
        notebook=str(path),
        run_id=handle.run_id,
        experiment=handle.experiment_name,
        status=status,
        duration_s=duration,
        params=spec.params,
        output=str(out) if out.exists() else None,
        metrics=dict(tracker.client.get_run(handle.run_id).data.metrics),
        error=error,
        failed_cell=failed,
    )


def _own_pool(spec: JobSpec) -> KernelPool:
    """A pool of no kernel ahead: the job starts its own kernel, in its folder."""
    from mlops_nb.jobs.run.pool import KernelPool  # jupyter_client: see the module's imports

    return KernelPool(kernel_name=spec.kernel or "python3", size=0, cwd=spec.cwd or str(Path(spec.notebook).parent))


def _start_run(
    spec: JobSpec, report: Callable[[str], None] | None, tags: dict[str, str]
) -> tuple[Tracker, RunHandle, dict[str, str]]:
    """Create the job's run, with its tags and params (as the notebook will see them)."""
    from mlflow.entities import RunTag

    from mlops_nb.tracking import Tracker  # MLflow: see the module's imports

    path = Path(spec.notebook)
    tracker = Tracker(
        notebook=NotebookLocation(path, "mlops-nb run"),
        config=spec.config,
        fluent=False,
        report=report,
        recover=_recovery_due(spec.config.tracking_uri),
    )
    handle = tracker.start_notebook_run(spec.experiment, spec.run_name or path.stem, autolog=False)
    run_tags = {KIND: "job", JOB_KERNEL: spec.kernel or "python3", **tags}
    if spec.parent_run_id:
        run_tags["mlflow.parentRunId"] = spec.parent_run_id
    tracker.client.log_batch(handle.run_id, tags=[RunTag(k, str(v)) for k, v in run_tags.items()])
    if spec.params:
        # As MLflow's own log_param writes them (str()), so a notebook that logs its
        # parameters with plain mlflow.log_param into the job's run logs the same text
        # (True, None, ['a']) rather than clashing with a JSON spelling (true, null).
        tracker.log_params({k: str(v) for k, v in spec.params.items()})
    return tracker, handle, run_tags


def _job_file(spec: JobSpec, handle: RunHandle, source_name: str | None) -> str:
    """What the job's kernel reads (``MLOPS_NB_JOB_FILE``) to log into the job's run."""
    return json.dumps(
        {
            "run_id": handle.run_id,
            "experiment_id": handle.experiment_id,
            "experiment_name": handle.experiment_name,
            "run_name": handle.name,
            "notebook": spec.notebook,
            "tracking_uri": spec.config.tracking_uri,
            # The job's one config resolution, whole, so the kernel does not resolve another.
            "config": spec.config.to_dict(),
            # The notebook a copy stands for (a reproduction), for the kernel's source tags.
            "source_name": source_name,
        }
    )


def _run_in_kernel(
    spec: JobSpec,
    job_file: str,
    acquiring: Future[PooledKernel],
    out: Path,
    progress: bool | dict[str, Any],
    stop: threading.Event | None,
) -> tuple[str, str | None, dict[str, Any] | None, threading.Thread | None]:
    """Execute the notebook in the job's kernel: (status, error, failed cell, the thread
    shutting the kernel down). Never raises for a job that fails."""
    status: str = FINISHED
    error: str | None = None
    failed: dict[str, Any] | None = None
    pooled = None
    try:
        pooled = acquiring.result()
        Path(pooled.job_file).write_text(job_file, encoding="utf-8")
        status, error, failed = _execute(spec, out, pooled.km, progress, stop)
    except KeyboardInterrupt:
        status, error = KILLED, "interrupted (Ctrl-C)"
    except Exception as exc:  # no kernel could start, or the runner failed: never leave the run RUNNING
        status, error = FAILED, one_line(exc, with_type=not isinstance(exc, MlopsError))
    finally:
        # The kernel shuts down (gracefully: its tracker writes buffered metrics into
        # the run at exit) while this thread stores the executed notebook.
        closing = threading.Thread(target=_shutdown, args=(pooled,), daemon=True) if pooled is not None else None
        if closing is not None:
            closing.start()
    return status, error, failed, closing


def _store_outcome(
    tracker: Tracker,
    run_id: str,
    path: Path,
    out: Path,
    error: str | None,
    failed: dict[str, Any] | None,
    duration: float,
) -> None:
    """Record the job's error, duration, executed notebook and its HTML rendering."""
    client = tracker.client
    try:
        _record_error(client, run_id, path, error, failed)
        client.log_metric(run_id, "job_duration_s", duration)
        if out.exists():
            client.log_artifact(run_id, str(out), "job")
            html = _html(out)
            if html:
                client.log_text(run_id, html, f"job/{out.stem}.html")
    except Exception as exc:
        tracker.report(f"warning: could not store the executed notebook of run {run_id}: {exc}")


def _execute(
    spec: JobSpec, out: Path, km: Any, progress: bool | dict[str, Any], stop: threading.Event | None
) -> tuple[str, str | None, dict[str, Any] | None]:
    """Execute in a worker thread so the whole-job timeout and ``stop`` can end it by
    killing the kernel (nbclient then raises in the worker)."""
    import papermill  # see the module's imports

    timeout = spec.timeout
    outcome: dict[str, BaseException | None] = {"error": None}

    def work() -> None:
        try:
            papermill.execute_notebook(
                spec.notebook,
                str(out),
                parameters=spec.params,
                kernel_name=spec.kernel or "python3",
                progress_bar=progress,
                log_output=False,
                execution_timeout=spec.cell_timeout,
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
        return reason[0], reason[1], _cell_outcome(error, out, spec)[2] if error else None
    if error is None:
        return FINISHED, None, None
    return _cell_outcome(error, out, spec)


def _record_error(client: Any, run_id: str, notebook: Path, error: str | None, failed: dict[str, Any] | None) -> None:
    """The run's error tag and ``error.txt``, which start with the error as the user's
    cell showed it (``ZeroDivisionError: division by zero``), never a wrapper of ours;
    ``error.txt`` then holds the cell's traceback as the notebook shows it. A job that
    failed outside any cell (a timeout, a dead kernel) records why."""
    if error is None:
        return
    from mlflow.entities import RunTag

    if failed is None:
        client.log_batch(run_id, tags=[RunTag(ERROR, error[:5000])])
        client.log_text(run_id, error + "\n", "error.txt")
        return
    count = failed.get("execution_count")
    where = f"cell {failed['index']} of {notebook.name}" + (f" (In [{count}])" if count is not None else "")
    tags = {ERROR: failed["error"][:5000], JOB_FAILED_CELL: str(failed["index"])}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_text(run_id, f"{failed['error']}\n\nin {where}:\n\n{failed['traceback']}\n", "error.txt")
    client.log_text(run_id, failed["source"], "job/failed_cell.py")


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
