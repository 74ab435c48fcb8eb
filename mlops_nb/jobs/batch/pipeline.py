"""Pipelines: notebooks chained by what they produce, run in parallel, cached by content.

This module runs them; the file is :mod:`.pipeline_file`, the cache keys :mod:`.cache`
and ``pipeline show`` :mod:`.status` (their public names are importable from here too).

A pipeline file (YAML, next to the notebooks) names steps. Each step runs a notebook as a
job (or a sweep of jobs) with parameters that may refer to what an upstream step produced::

    params:                     # pipeline parameters, overridable with -p NAME=VALUE
      epochs: 3
    steps:
      train:
        notebook: train.ipynb
        params: {epochs: "${params.epochs}"}
        sweep:                  # optional: a grid, and the metric that picks the best job
          grid: {n_estimators: [10, 50]}
          metric: test_accuracy
      evaluate:
        notebook: evaluate.ipynb
        params: {model: "models:/clf/${steps.train.model_version}"}
        needs: [train]          # optional: references already imply their steps

References are ``${params.NAME}``, ``${steps.STEP.run_id}``, ``${steps.STEP.metrics.KEY}``,
``${steps.STEP.params.KEY}``, ``${steps.STEP.artifacts.PATH}`` (the artifact's URI) and
``${steps.STEP.model_version}``; for a sweep step they name its best job. A value that is
one reference keeps the reference's type (a metric is a float); a reference inside longer
text is interpolated; ``$${`` writes a literal ``${``. Values reach the notebook as
parameters checked against its ``parameters`` cell, never as code.

Everything that can be checked before a kernel starts is checked by :func:`load_pipeline`:
the file, unknown or cyclic steps, references, notebooks and their parameters. A step is
*cached* when a successful run exists whose cache key (the notebook's sources, the resolved
parameters, the kernel, the sweep and the upstream steps' runs) equals the step's key now:
the key is stored as the run's tag ``mlops_nb.pipeline.cache_key`` and looked up in the
store, so the cache is wherever the runs are.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import MlopsError, UsageError
from mlops_nb.jobs.batch.cache import KEY_TAG, cache_key, cached_run
from mlops_nb.jobs.batch.pipeline_file import (
    Pipeline,
    Reference,
    Step,
    SweepSpec,
    close_match,
    load_pipeline,
    pipeline_experiment,
    pipeline_file_tag,
)
from mlops_nb.jobs.batch.status import (
    FILE_TAG,
    STEP_TAG,
    StepState,
    pipeline_status,
    pipeline_title,
    status_table,
)
from mlops_nb.jobs.batch.step_outputs import Outputs, StepFailed, StepResult, best_of, resolve_step
from mlops_nb.jobs.batch.sweep import sweep
from mlops_nb.jobs.run.executors import LocalExecutor
from mlops_nb.jobs.run.spec import FAILED, FINISHED, KILLED, Executor, job_spec
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tables import aligned_lines
from mlops_nb.tags import (
    KIND,
    PIPELINE_RUN_ID,
    PIPELINE_STATES,
    PIPELINE_STEPS,
)
from mlops_nb.tracking import Tracker

# MLflow is imported where used: the commands and the server import this module, and
# their start-up does not need MLflow.
if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


__all__ = [
    "Pipeline",
    "PipelineResult",
    "Reference",
    "Step",
    "StepResult",
    "StepState",
    "SweepSpec",
    "load_pipeline",
    "pipeline_status",
    "pipeline_table",
    "pipeline_title",
    "run_pipeline",
    "status_table",
]

RUN_TAG = PIPELINE_RUN_ID

# ------------------------------------------------------------------ results


@dataclass
class PipelineResult:
    """A pipeline run: its MLflow run, how it ended, and each step in dependency order."""

    pipeline: str
    run_id: str
    status: str
    duration_s: float
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    @property
    def retryable(self) -> bool:
        """Whether running again may succeed: some step failed in a way that may pass
        (kernel died, timeout) and none failed by a cell's error or bad input."""
        failed = [s for s in self.steps if s.state == "failed"]
        return bool(failed) and self.status == FAILED and all(s.retryable for s in failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "ok": self.ok,
            "retryable": self.retryable,
            "duration_s": self.duration_s,
            "error": self.error,
            "steps": [s.to_dict() for s in self.steps],
        }


def _short(run_id: str | None) -> str:
    return f"{run_id[:12]}…" if run_id else "-"


# ------------------------------------------------------------------ running


def run_pipeline(
    path: str | Path,
    *,
    params: Mapping[str, str] | None = None,
    force: Iterable[str] = (),
    workers: int = 2,
    config: ProjectConfig | None = None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> PipelineResult:
    """Run a pipeline: each step whose inputs are unchanged is reused (``cached``), the
    others run as jobs nested under one pipeline run, ``workers`` steps at a time.

    ``force`` names steps to run again whatever the cache says; their downstream steps
    then run too (their upstream changed). A failed step skips its dependents and the
    other steps still finish. ``stop``, when set (or on Ctrl-C), ends running jobs KILLED
    and starts nothing more. ``report`` receives one line per finished step.
    ``on_start`` is called with the pipeline run's id once it exists (a scheduler records
    it, so a pipeline cut short by a crash can be ended later). ``executor`` runs the
    steps' notebook jobs (default: this process; a :class:`~.executors.DaskExecutor`
    sends them, sweeps' jobs included, to a cluster).

    Raises
    ------
    UsageError
        For any problem :func:`load_pipeline` finds, an unknown ``force`` step or a bad
        ``workers``: nothing runs and no run is created.
    StoreError
        When the store cannot be reached.
    """
    pipeline = load_pipeline(path, params)
    force = list(force)
    _check_run(pipeline, force, workers)
    say = report or (lambda line: None)
    cfg = config or resolve_config(pipeline.path.parent)
    stop = stop or threading.Event()

    started = time.monotonic()
    tracker = Tracker(
        notebook=NotebookLocation(pipeline.path, "mlops-nb pipeline"), config=cfg, fluent=False, report=report
    )
    experiment = pipeline_experiment(pipeline, cfg)
    handle = tracker.start_notebook_run(experiment, pipeline_title(pipeline.name), autolog=False)
    client = tracker.client
    file_tag = pipeline_file_tag(pipeline, cfg)
    _tag_pipeline_run(tracker, handle.run_id, pipeline, file_tag)
    if on_start is not None:
        on_start(handle.run_id)
    say(
        f"{pipeline_title(pipeline.name)}: run {handle.run_id} in experiment {experiment!r}, {len(pipeline.steps)} steps, {workers} at a time"
    )

    jobs = executor or LocalExecutor(workers, pool_size=0, report=report)
    runner = _PipelineRun(
        pipeline,
        cfg,
        client,
        handle.run_id,
        experiment,
        handle.experiment_id,
        file_tag,
        set(force),
        stop,
        report,
        jobs,
        executor,
    )
    try:
        results = _run_steps(pipeline, runner, workers, stop, say)
    finally:
        if executor is None:
            jobs.close()

    steps = [results[n] for n in pipeline.steps]
    counts = {state: sum(s.state == state for s in steps) for state in ("ran", "cached", "failed", "skipped")}
    status, error = _pipeline_status(steps, counts, stop)
    duration = time.monotonic() - started
    _store_summary(client, handle.run_id, steps, counts, duration, say)
    tracker.end_run(handle, status, error=RuntimeError(error) if error else None)
    tracker.close()
    return PipelineResult(pipeline.name, handle.run_id, status, duration, steps, error)


def _check_run(pipeline: Pipeline, force: list[str], workers: int) -> None:
    for name in force:
        if name not in pipeline.steps:
            raise UsageError(
                f"--force {name}: {pipeline.path.name} has no step {name!r}{close_match(name, pipeline.steps)}; steps: {', '.join(pipeline.steps)}"
            )
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise UsageError(f"--workers must be a whole number from 1 to 64, not {workers!r}")


def _tag_pipeline_run(tracker: Tracker, run_id: str, pipeline: Pipeline, file_tag: str) -> None:
    tracker.client.log_batch(
        run_id,
        tags=[
            _tag(KIND, "pipeline"),
            _tag(FILE_TAG, file_tag),
            _tag(PIPELINE_STEPS, str(len(pipeline.steps))),
        ],
    )
    if pipeline.params:
        tracker.log_params({k: v if isinstance(v, str) else json.dumps(v) for k, v in pipeline.params.items()})


def _run_steps(
    pipeline: Pipeline, runner: _PipelineRun, workers: int, stop: threading.Event, say: Callable[[str], None]
) -> dict[str, StepResult]:
    """Run the steps in dependency order, ``workers`` at a time: a step whose upstream
    did not succeed (or that would start after ``stop``) is skipped."""
    results: dict[str, StepResult] = {}
    sorter: TopologicalSorter[str] = TopologicalSorter({n: set(s.needs) for n, s in pipeline.steps.items()})
    sorter.prepare()
    running: dict[Future[StepResult], str] = {}
    steps_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-nb-pipeline")
    try:
        while sorter.is_active():
            try:
                for name in sorter.get_ready():
                    failed = [n for n in pipeline.steps[name].needs if not results[n].ok]
                    if failed or stop.is_set():
                        why = (
                            f"upstream {', '.join(failed)} did not succeed"
                            if failed
                            else "the pipeline was stopped first"
                        )
                        results[name] = StepResult(name, "skipped", error=why)
                        say(f"{name}: skipped ({why})")
                        sorter.done(name)
                    else:
                        running[steps_pool.submit(runner.step, name, dict(results))] = name
                if not running:
                    continue
                finished, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    results[name] = future.result()
                    say(_step_line(results[name]))
                    sorter.done(name)
            except KeyboardInterrupt:
                # Ctrl-C or SIGTERM: running jobs end KILLED (their runner sees stop),
                # nothing more starts, and the pipeline run still ends with a status.
                if not stop.is_set():
                    say("stopping: running steps end KILLED, nothing more starts")
                stop.set()
    finally:
        steps_pool.shutdown(wait=True)
    return results


def _pipeline_status(steps: list[StepResult], counts: dict[str, int], stop: threading.Event) -> tuple[str, str | None]:
    if stop.is_set() and not all(s.ok for s in steps):
        return KILLED, "stopped"
    if counts["failed"] or counts["skipped"]:
        failed = [s.name for s in steps if s.state == "failed"]
        return FAILED, f"step {', '.join(failed)} failed" if failed else "steps were skipped"
    return FINISHED, None


def _store_summary(
    client: MlflowClient,
    run_id: str,
    steps: list[StepResult],
    counts: dict[str, int],
    duration: float,
    say: Callable[[str], None],
) -> None:
    """The pipeline run's step counts, duration and each step's state."""
    try:
        from mlflow.entities import Metric  # MLflow: see the module's imports

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(f"steps_{k}", float(v), now, 0) for k, v in counts.items()]
            + [Metric("pipeline_duration_s", duration, now, 0)],
            tags=[_tag(PIPELINE_STATES, json.dumps({s.name: s.state for s in steps})[:5000])],
        )
    except Exception as exc:  # the result stands even when the summary cannot be stored
        say(f"warning: could not store the pipeline summary on run {run_id}: {exc}")


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)


class _PipelineRun:
    """Runs one step at a time per worker thread, against one pipeline run."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: ProjectConfig,
        client: MlflowClient,
        run_id: str,
        experiment: str,
        experiment_id: str,
        file_tag: str,
        force: set[str],
        stop: threading.Event,
        report: Callable[[str], None] | None,
        jobs: Executor,
        sweeps: Executor | None,
    ) -> None:
        self.pipeline, self.config, self.client = pipeline, config, client
        # Step jobs go to ``jobs``; a sweep step's jobs to ``sweeps`` (None: the sweep
        # runs its own local workers, as many as the step asks for).
        self.jobs, self.sweeps = jobs, sweeps
        self.run_id, self.experiment, self.experiment_id = run_id, experiment, experiment_id
        self.file_tag, self.force, self.stop, self.report = file_tag, force, stop, report
        self.outputs = Outputs(client)

    def step(self, name: str, done: dict[str, StepResult]) -> StepResult:
        started = time.monotonic()
        step = self.pipeline.steps[name]
        try:
            values, texts = resolve_step(step, done, self.outputs)
            upstream = {n: done[n].run_id or "" for n in step.needs}
            key = cache_key(step, values, texts, upstream)
            if name not in self.force:
                hit = cached_run(self.client, self.experiment_id, key)
                if hit is not None:
                    return StepResult(
                        name,
                        "cached",
                        hit.info.run_id,
                        FINISHED,
                        time.monotonic() - started,
                        best_run_id=best_of(hit),
                        cache_key=key,
                        params={**values, **texts},
                        output=_output_of(self.config, hit, step.notebook),
                    )
            tags = {KEY_TAG: key, STEP_TAG: name, FILE_TAG: self.file_tag, RUN_TAG: self.run_id}
            if step.sweep is not None:
                return self._sweep(step, values, texts, tags, key, started)
            return self._job(step, values, tags, key, started)
        except (StepFailed, UsageError) as exc:
            return StepResult(name, "failed", status=FAILED, duration_s=time.monotonic() - started, error=str(exc))
        except MlopsError as exc:  # the store failed under this step: it may pass on a retry
            return StepResult(
                name, "failed", status=FAILED, duration_s=time.monotonic() - started, error=str(exc), retryable=True
            )
        except Exception as exc:  # never let one step's surprise leave the pipeline run RUNNING
            text = str(exc).strip().splitlines()
            return StepResult(
                name,
                "failed",
                status=FAILED,
                duration_s=time.monotonic() - started,
                error=f"{type(exc).__name__}: {text[0] if text else ''}",
            )

    def _job(self, step: Step, values: dict[str, Any], tags: dict[str, str], key: str, started: float) -> StepResult:

        # Tagged as it starts, so `pipeline show` finds a failed run as this step's too.
        spec = job_spec(
            step.notebook,
            values,
            config=self.config,
            experiment=self.experiment,
            run_name=step.name,
            timeout=step.timeout,
            parent_run_id=self.run_id,
            tags=tags,
        )
        job = self.jobs.submit(spec, stop=self.stop).result()
        state = "ran" if job.ok else "failed"
        return StepResult(
            step.name,
            state,
            job.run_id,
            job.status,
            time.monotonic() - started,
            job.error,
            job.output,
            best_run_id=job.run_id,
            cache_key=key,
            retryable=job.retryable,
            params=values,
        )

    def _sweep(
        self, step: Step, values: dict[str, Any], texts: dict[str, str], tags: dict[str, str], key: str, started: float
    ) -> StepResult:

        assert step.sweep is not None
        spec = step.sweep
        result = sweep(
            step.notebook,
            texts,
            {**values, **spec.grid},
            workers=spec.workers or 2,
            metric=spec.metric,
            lower_is_better=spec.lower_is_better,
            experiment=self.experiment,
            timeout=step.timeout,
            config=self.config,
            parent_run_id=self.run_id,
            run_name=step.name,
            tags=tags,
            stop=self.stop,
            executor=self.sweeps,
        )
        best = result.best
        error = None
        if not result.ok:
            failed = [j for j in result.jobs if not j.ok]
            error = (
                f"{len(failed)} of {len(result.jobs)} jobs did not finish; first: {failed[0].error}"
                if failed
                else "the sweep failed"
            )
        elif best is None:
            error = f"no job of the sweep logged the metric {spec.metric!r} that picks the best; log it in {step.notebook.name}"
            # The sweep's run finished, but without a best it is no result to reuse.
            self.client.set_tag(result.parent_run_id, KEY_TAG, "")
        state = "ran" if error is None else "failed"
        return StepResult(
            step.name,
            state,
            result.parent_run_id,
            result.status if not result.ok else (FAILED if error else FINISHED),
            time.monotonic() - started,
            error,
            best.output if best else None,
            best_run_id=best.run_id if best else None,
            cache_key=key,
            retryable=not result.ok and all(j.ok or j.retryable for j in result.jobs),
            params={**values, **texts},
        )


def _output_of(config: ProjectConfig, run: Any, notebook: Path) -> str | None:
    """Where a reused job's executed notebook is, when it is still on this machine."""
    out = config.project_root / ".mlops" / "jobs" / best_of(run) / notebook.name
    return str(out) if out.is_file() else None


def _step_line(result: StepResult) -> str:
    if result.state == "cached":
        return f"{result.name}: cached (run {_short(result.run_id)})"
    if result.state == "ran":
        return f"{result.name}: ran in {result.duration_s:.1f} s (run {_short(result.run_id)})"
    if result.state == "skipped":
        return f"{result.name}: skipped ({result.error})"
    what = "KILLED" if result.status == KILLED else "FAILED"
    run = f" (run {_short(result.run_id)})" if result.run_id else ""
    return f"{result.name}: {what} in {result.duration_s:.1f} s{run}: {result.error}"


def pipeline_table(result: PipelineResult) -> str:
    """The steps as a text table, then one line for the pipeline."""
    header = ["step", "state", "status", "seconds", "run"]
    rows = [[s.name, s.state, s.status or "-", f"{s.duration_s:.1f}", s.run_id or "-"] for s in result.steps]
    lines = aligned_lines(header, rows)
    counts = ", ".join(f"{sum(s.state == k for s in result.steps)} {k}" for k in ("ran", "cached", "failed", "skipped"))
    lines.append("")
    lines.append(
        f"{pipeline_title(result.pipeline)}: {result.status} in {result.duration_s:.1f} s ({counts}); run {result.run_id}"
    )
    return "\n".join(lines)
