"""What a job is, how it ended, and what runs it: :class:`JobSpec` (checked once, by
:func:`job_spec`), :class:`JobResult` and the :class:`Executor` interface.

Everything about a job that can be checked before a kernel starts is checked here (the
notebook, its parameters converted by their declared types, the timeouts, the folder),
reading the notebook once. Whatever then runs the spec (an executor, the agent, a Dask
worker) trusts it: :func:`~mlops_nb.jobs.run.execution.execute_job` checks nothing again.
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_nb.config import ProjectConfig
from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.run.params import NotebookFile, check_params, parameters_in, read_notebook

__all__ = [
    "FAILED",
    "FINISHED",
    "KILLED",
    "Executor",
    "JobResult",
    "JobSpec",
    "cell_tags",
    "check_job",
    "job_spec",
    "notebook_path",
    "positive_seconds",
]


FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


@dataclass(frozen=True)
class JobSpec:
    """One notebook job, checked and ready to run anywhere that sees the same project.

    ``params`` are already converted by the notebook's declared types (see
    :func:`job_spec`); ``tags`` are set on the job's run as it starts; ``key`` names the
    job across retries; ``notebook_sha256`` lets a worker check that it runs the same
    notebook the command was given; ``cell_tags`` are the tags of the notebook's cells (code
    or not) as :func:`job_spec` read them, to place a failing cell in the user's file
    without reading it again.
    """

    notebook: str
    params: dict[str, Any]
    config: ProjectConfig
    experiment: str
    run_name: str | None = None
    timeout: float | None = None
    cell_timeout: float | None = None
    kernel: str | None = None
    output: str | None = None
    cwd: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    notebook_sha256: str = ""
    cell_tags: list[list[str]] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values (the agent's wire form); see :meth:`from_dict`."""
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """The spec :meth:`to_dict` wrote."""
        return cls(**{**data, "config": ProjectConfig.from_dict(data["config"])})


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


class Executor(ABC):
    """Runs :class:`JobSpec` s and returns futures of their :class:`JobResult`.

    ``submit`` never raises for a job that fails: the future's result says how it ended.
    ``stop``, when set, stops the job (its run ends ``KILLED``); ``on_start`` is called
    here, in this process, with the run's id once the run exists. Use as a context
    manager, or call :meth:`close`. The implementations:
    :class:`~mlops_nb.jobs.run.executors.LocalExecutor`,
    :class:`~mlops_nb.jobs.run.executors.DaskExecutor` and
    :class:`~mlops_nb.jobs.run.agent.AgentExecutor`.
    """

    #: How the executor is named on a command line (``local``, ``dask://HOST:PORT``).
    name: str = ""

    @abstractmethod
    def submit(
        self,
        spec: JobSpec,
        *,
        stop: threading.Event | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> Future[JobResult]:
        """Start ``spec``; the future's result is its :class:`JobResult`."""

    def run(
        self,
        spec: JobSpec,
        *,
        stop: threading.Event | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> JobResult:
        """Run one job and wait for its end; Ctrl-C stops it (its run ends ``KILLED``)."""
        stop = stop or threading.Event()
        future = self.submit(spec, stop=stop, on_start=on_start)
        try:
            return future.result()
        except KeyboardInterrupt:
            stop.set()
            return future.result()

    def close(self) -> None:  # noqa: B027 (optional: most executors hold nothing)
        """Release what the executor holds (threads, kernels, connections)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def cell_tags(cell: Any) -> list[str]:
    """A cell's tags (none for what is not a cell)."""
    tags = (cell.get("metadata") or {}).get("tags") if isinstance(cell, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def notebook_path(notebook: str | Path) -> Path:
    """The absolute path of an existing notebook, or a :class:`UsageError` saying what is wrong."""
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise UsageError(f"{notebook} is not a notebook (.ipynb): give the path of a notebook")
    if not path.is_file():
        raise UsageError(f"notebook {notebook} not found: check the path (relative to {Path.cwd()})")
    return path.resolve()


def positive_seconds(value: Any, what: str) -> float | None:
    """``value`` as a number of seconds more than 0 (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of seconds, not {value!r}") from None
    if not number > 0:
        raise UsageError(f"{what} must be more than 0 seconds, not {value!r}")
    return number


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
    path = notebook_path(notebook)
    timeout = positive_seconds(timeout, "--timeout")
    cell_timeout = positive_seconds(cell_timeout, "--cell-timeout")
    checked = check_params(
        parameters_in(read_notebook(path)), dict(params or {}), texts=dict(texts or {}), notebook=path.name
    )
    return path, checked, timeout, cell_timeout


def job_spec(
    notebook: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    config: ProjectConfig,
    texts: Mapping[str, str] | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    timeout: Any = None,
    cell_timeout: Any = None,
    kernel: str | None = None,
    output: str | Path | None = None,
    cwd: str | Path | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    source: NotebookFile | None = None,
) -> JobSpec:
    """Check a job (notebook, parameters, timeouts, folder) and describe it as a
    :class:`JobSpec`, reading the notebook once (``source``: the notebook as already
    read, so a sweep's many jobs share one read).

    Raises
    ------
    UsageError
        As :func:`check_job`, or for a ``cwd`` that is not a folder: nothing is run.
    """
    path = notebook_path(notebook)
    timeout = positive_seconds(timeout, "--timeout")
    cell_timeout = positive_seconds(cell_timeout, "--cell-timeout")
    read = source if source is not None and source.path.resolve() == path else read_notebook(path)
    checked = check_params(parameters_in(read), dict(params or {}), texts=dict(texts or {}), notebook=path.name)
    if cwd is not None and not Path(cwd).resolve().is_dir():
        raise UsageError(f"--cwd {cwd} is not a folder")
    return JobSpec(
        notebook=str(path),
        params=checked,
        config=config,
        experiment=experiment or config.experiment or path.stem,
        run_name=run_name,
        timeout=timeout,
        cell_timeout=cell_timeout,
        kernel=kernel or read.kernel,
        output=str(Path(output).resolve()) if output else None,
        cwd=str(Path(cwd).resolve()) if cwd else None,
        parent_run_id=parent_run_id,
        tags=dict(tags or {}),
        notebook_sha256=read.sha256,
        cell_tags=[cell_tags(cell) for cell in read.cells if isinstance(cell, dict)],
    )
