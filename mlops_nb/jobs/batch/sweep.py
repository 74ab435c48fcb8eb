"""Sweeps: a grid of parameters run in parallel as child runs of one parent run."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.run.executors import LocalExecutor
from mlops_nb.jobs.run.params import expand_grid, parameters_in, read_notebook
from mlops_nb.jobs.run.spec import FAILED, FINISHED, KILLED, Executor, JobResult, JobSpec, job_spec, notebook_path
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tables import aligned_lines
from mlops_nb.tags import KIND, SWEEP_BEST_RUN_ID, SWEEP_SIZE
from mlops_nb.tracking import Tracker

__all__ = ["SweepResult", "sweep"]


@dataclass
class SweepResult:
    """A sweep's parent run, its jobs (best first when a metric is given) and the best."""

    notebook: str
    parent_run_id: str
    experiment: str
    status: str
    duration_s: float
    metric: str | None
    lower_is_better: bool
    jobs: list[JobResult] = field(default_factory=list)

    @property
    def best(self) -> JobResult | None:
        scored = [j for j in self.jobs if j.ok and self.metric and _finite(j.metrics.get(self.metric))]
        return scored[0] if scored else None

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "notebook": self.notebook,
            "parent_run_id": self.parent_run_id,
            "experiment": self.experiment,
            "status": self.status,
            "ok": self.ok,
            "duration_s": self.duration_s,
            "metric": self.metric,
            "best_run_id": best.run_id if best else None,
            "jobs": [j.to_dict() for j in self.jobs],
        }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _checked_jobs(
    path: Path,
    texts: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
    config: ProjectConfig | None,
    timeout: float | None,
    cell_timeout: float | None,
    kernel: str | None,
) -> tuple[list[dict[str, Any]], list[JobSpec]]:
    """The grid and one checked spec per combination, before the sweep's run exists
    (the notebook is read once, for the grid and every spec)."""
    read = read_notebook(path)
    grid = expand_grid(parameters_in(read), dict(texts or {}), dict(values or {}), notebook=path.name)
    config = config or resolve_config(path.parent)
    specs = [
        job_spec(
            path,
            combo,
            config=config,
            run_name=f"{path.stem} " + " ".join(f"{k}={v}" for k, v in combo.items()),
            timeout=timeout,
            cell_timeout=cell_timeout,
            kernel=kernel or read.kernel,
            source=read,
        )
        for combo in grid
    ]
    return grid, specs


def _rank(jobs: list[JobResult], metric: str, lower_is_better: bool) -> None:
    """Sort ``jobs`` best first by ``metric``; jobs that failed or lack it last."""
    sign = 1 if lower_is_better else -1
    jobs.sort(
        key=lambda j: (
            not (j.ok and _finite(j.metrics.get(metric))),
            sign * j.metrics.get(metric, 0.0) if _finite(j.metrics.get(metric)) else 0.0,
        )
    )


def _tag_sweep_run(
    tracker: Tracker, run_id: str, size: int, parent_run_id: str | None, tags: Mapping[str, str] | None
) -> None:
    client = tracker.client
    client.set_tag(run_id, KIND, "sweep")
    for key, value in {**({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}), **dict(tags or {})}.items():
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, SWEEP_SIZE, str(size))


def sweep(
    notebook: str | Path,
    texts: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    *,
    workers: int = 2,
    metric: str | None = None,
    lower_is_better: bool = False,
    experiment: str | None = None,
    timeout: float | None = None,
    cell_timeout: float | None = None,
    kernel: str | None = None,
    config: ProjectConfig | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Run the grid of ``texts`` (``{"n": "10,50,100"}``) and ``values`` (lists) as child
    runs of one parent run, ``workers`` at a time, on kernels started ahead of need.

    Jobs are sorted by ``metric`` (best first) when given. Every combination is checked
    before anything starts. ``parent_run_id`` nests the sweep's own run under another
    (a pipeline's), ``tags`` are set on the sweep's run as it starts, and ``stop``, when
    set, stops the running jobs (their runs end KILLED). ``executor`` runs the jobs
    (default: this process, ``workers`` at a time; a :class:`~.executors.DaskExecutor`
    runs them on a cluster, as many at a time as it has worker threads).
    """
    path = notebook_path(notebook)
    if not isinstance(workers, int) or not 1 <= workers <= 64:
        raise UsageError(f"--workers must be a whole number from 1 to 64, not {workers!r}")
    grid, specs = _checked_jobs(path, texts, values, config, timeout, cell_timeout, kernel)
    cfg = specs[0].config if specs else config or resolve_config(path.parent)
    stop = stop or threading.Event()

    tracker = Tracker(notebook=NotebookLocation(path, "mlops-nb sweep"), config=cfg, fluent=False)
    started = time.monotonic()
    parent = tracker.start_notebook_run(experiment, run_name or f"sweep {path.stem}", autolog=False)
    client = tracker.client
    _tag_sweep_run(tracker, parent.run_id, len(grid), parent_run_id, tags)
    tracker.log_params({"sweep.grid": json.dumps({**dict(values or {}), **dict(texts or {})})[:6000]})
    specs = [replace(spec, experiment=parent.experiment_name, parent_run_id=parent.run_id) for spec in specs]
    own = executor is None
    runner = LocalExecutor(workers, pool_size=min(workers, len(grid))) if executor is None else executor
    jobs: list[JobResult] = []
    try:
        futures = [runner.submit(spec, stop=stop) for spec in specs]
        jobs = [f.result() for f in futures]
    except KeyboardInterrupt:
        stop.set()
        tracker.end_run(parent, "KILLED")
        raise
    finally:
        if own:
            runner.close()
    if metric:
        _rank(jobs, metric, lower_is_better)
    status = FINISHED if all(j.ok for j in jobs) else KILLED if any(j.status == KILLED for j in jobs) else FAILED
    result = SweepResult(
        str(path),
        parent.run_id,
        parent.experiment_name,
        status,
        time.monotonic() - started,
        metric,
        lower_is_better,
        jobs,
    )
    best = result.best
    if best is not None and metric:  # a best needs a metric
        client.set_tag(parent.run_id, SWEEP_BEST_RUN_ID, best.run_id or "")
        client.log_metric(parent.run_id, f"best_{metric}", best.metrics[metric])
    client.log_metric(parent.run_id, "jobs_failed", sum(not j.ok for j in jobs))
    tracker.end_run(parent, status)
    tracker.close()
    return result


def sweep_table(result: SweepResult) -> str:
    """The jobs as a text table, best first, and the best run named."""
    names = list(dict.fromkeys(k for j in result.jobs for k in j.params))
    metric = result.metric
    header = [*names, *([metric] if metric else []), "status", "run"]
    rows = []
    for j in result.jobs:
        value = j.metrics.get(metric) if metric else None
        rows.append(
            [
                *(str(j.params.get(n, "")) for n in names),
                *([f"{value:.6g}" if _finite(value) else "-"] if metric else []),
                j.status,
                j.run_id or "",
            ]
        )
    lines = aligned_lines(header, rows, strip=False)
    best = result.best
    lines.append("")
    if best is not None and metric:
        lines.append(
            f"best: run {best.run_id} with {metric}={best.metrics[metric]:.6g} ({', '.join(f'{k}={v}' for k, v in best.params.items())})"
        )
    failed = sum(not j.ok for j in result.jobs)
    lines.append(
        f"{len(result.jobs)} jobs, {failed} failed, in {result.duration_s:.1f} s; parent run {result.parent_run_id}"
    )
    return "\n".join(lines)
