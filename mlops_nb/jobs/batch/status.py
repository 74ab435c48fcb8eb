"""What ``mlops-nb pipeline show`` reports: each step cached, stale or failed, read from
the store without running anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.batch.cache import active_experiment_id, cache_key, cached_run
from mlops_nb.jobs.batch.pipeline_file import load_pipeline, pipeline_experiment, pipeline_file_tag
from mlops_nb.jobs.batch.step_outputs import Outputs, StepFailed, StepResult, best_of, resolve_step
from mlops_nb.jobs.run.spec import FAILED, FINISHED, KILLED
from mlops_nb.store import get_client
from mlops_nb.tables import aligned_lines
from mlops_nb.tags import PIPELINE_FILE, PIPELINE_STEP

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


__all__ = ["StepState", "pipeline_status", "pipeline_title", "status_table"]

STEP_TAG = PIPELINE_STEP
FILE_TAG = PIPELINE_FILE


@dataclass
class StepState:
    """A step as ``pipeline show`` reports it: ``cached`` (a successful run with the
    current key exists), ``stale`` (never run, or its notebook, parameters or upstream
    changed) or ``failed`` (its latest run failed)."""

    name: str
    notebook: str
    needs: list[str]
    state: str
    run_id: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ show


def pipeline_status(
    path: str | Path, *, params: Mapping[str, str] | None = None, config: ProjectConfig | None = None
) -> list[StepState]:
    """Each step's state without running anything (no run is written).

    A step is ``cached`` when its upstream steps are cached and a successful run with the
    step's current cache key exists; ``failed`` when not and its latest run failed;
    ``stale`` otherwise.

    Raises
    ------
    UsageError
        For any problem :func:`load_pipeline` finds.
    """
    pipeline = load_pipeline(path, params)
    cfg = config or resolve_config(pipeline.path.parent)

    client = get_client(cfg)
    experiment_id = active_experiment_id(client, pipeline_experiment(pipeline, cfg))
    file_tag = pipeline_file_tag(pipeline, cfg)
    outputs = Outputs(client)
    done: dict[str, StepResult] = {}
    states: list[StepState] = []
    for name, step in pipeline.steps.items():
        notebook = step.notebook.name
        needs = list(step.needs)
        stale_up = [n for n in needs if done[n].state != "cached"]
        hit = None
        reason = ""
        if stale_up:
            reason = f"upstream {', '.join(stale_up)} not cached"
        else:
            try:
                values, texts = resolve_step(step, done, outputs)
                key = cache_key(step, values, texts, {n: done[n].run_id or "" for n in needs})
                hit = cached_run(client, experiment_id, key)
                reason = "" if hit else "never run with this notebook, these parameters and upstream runs"
            except (StepFailed, UsageError) as exc:
                reason = str(exc)
        if hit is not None:
            done[name] = StepResult(name, "cached", hit.info.run_id, FINISHED, best_run_id=best_of(hit))
            states.append(
                StepState(name, notebook, needs, "cached", hit.info.run_id, "a successful run has the current key")
            )
            continue
        done[name] = StepResult(name, "stale")
        latest = _latest_run(client, experiment_id, file_tag, name)
        if latest is not None and latest.info.status in (FAILED, KILLED):
            states.append(
                StepState(
                    name, notebook, needs, "failed", latest.info.run_id, f"its latest run ended {latest.info.status}"
                )
            )
        else:
            states.append(StepState(name, notebook, needs, "stale", latest.info.run_id if latest else None, reason))
    return states


def _latest_run(client: MlflowClient, experiment_id: str | None, file_tag: str, step: str) -> Any:
    if experiment_id is None:
        return None
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STEP_TAG}` = '{step}' and tags.`{FILE_TAG}` = '{file_tag}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def pipeline_title(name: str) -> str:
    """How a pipeline is named in its run and its messages: ``pipeline NAME``, or just
    ``pipeline`` for a pipeline named so (``pipeline.yaml``: not "pipeline pipeline")."""
    return "pipeline" if name.strip().lower() == "pipeline" else f"pipeline {name}"


def status_table(pipeline: str, states: list[StepState]) -> str:
    """The graph and each step's state, as text."""
    header = ["step", "needs", "notebook", "state", "run", "why"]
    rows = [[s.name, ", ".join(s.needs) or "-", s.notebook, s.state, s.run_id or "-", s.reason] for s in states]
    counts = ", ".join(f"{sum(s.state == k for s in states)} {k}" for k in ("cached", "stale", "failed"))
    return "\n".join([*aligned_lines(header, rows), "", f"{pipeline_title(pipeline)}: {len(states)} steps ({counts})"])
