"""A pipeline's steps as they finish: what each produced (:class:`StepResult`, read
from the store by :class:`Outputs`) and a step's parameters resolved from its upstream
steps' outputs (:func:`resolve_step`). Shared by running a pipeline and by ``pipeline
show``."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, UsageError
from mlops_nb.jobs.batch.pipeline_file import OK_STATES, Reference, Step, Text, split_params, substitute
from mlops_nb.jobs.run.params import check_params, declared_parameters, expand_grid
from mlops_nb.tags import SWEEP_BEST_RUN_ID

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


__all__ = ["Outputs", "StepFailed", "StepResult", "best_of", "resolve_step"]


@dataclass
class StepResult:
    """How one step ended: ``state`` is ``ran``, ``cached`` (an earlier run reused),
    ``failed`` (its job failed, was stopped, or its inputs could not be resolved) or
    ``skipped`` (an upstream step failed, or the pipeline was stopped first).

    ``run_id`` is the step's run (a sweep's parent run); ``best_run_id`` is the run
    references name (a sweep's best job; the step's run otherwise).
    """

    name: str
    state: str
    run_id: str | None = None
    status: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    output: str | None = None
    best_run_id: str | None = None
    cache_key: str | None = None
    retryable: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


class StepFailed(MlopsError):
    """A step cannot run: an upstream output it refers to is missing, or a value does not fit."""


class Outputs:
    """What finished steps produced, read from the store once per run."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self._runs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def run(self, run_id: str) -> Any:
        with self._lock:
            if run_id not in self._runs:
                self._runs[run_id] = self.client.get_run(run_id)
            return self._runs[run_id]

    def children(self, run_id: str) -> list[Any]:
        run = self.run(run_id)
        return self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=100,
        )

    def value(self, ref: Reference, step: str, source_run: str) -> Any:
        """The value ``ref`` names in ``source_run`` (the upstream step's result)."""
        where = f"{ref.text}: step {ref.step!r} (run {source_run})"
        if ref.output == "run_id":
            return Text(source_run)
        run = self.run(source_run)
        if ref.output == "metrics":
            # A notebook may log inside a tracked cell (a child run of its job): look there too.
            for candidate in [run, *self.children(source_run)]:
                if ref.key in candidate.data.metrics:
                    return float(candidate.data.metrics[ref.key])
            raise StepFailed(
                f"{where} logged no metric {ref.key!r}; it logged: {', '.join(sorted(run.data.metrics)) or 'none'}"
            )
        if ref.output == "params":
            if ref.key in run.data.params:
                return Text(run.data.params[ref.key])
            raise StepFailed(
                f"{where} has no param {ref.key!r}; it has: {', '.join(sorted(run.data.params)) or 'none'}"
            )
        if ref.output == "artifacts":
            folder, _, _ = (ref.key or "").rpartition("/")
            listed = {a.path for a in self.client.list_artifacts(source_run, folder or None)}
            if ref.key not in listed:
                raise StepFailed(
                    f"{where} stored no artifact {ref.key!r}; in {folder or 'its root'}: {', '.join(sorted(listed)) or 'nothing'}"
                )
            return Text(f"{run.info.artifact_uri.rstrip('/')}/{ref.key}")
        # model_version: registered from the job's run or from a tracked cell inside it.
        run_ids = [source_run, *(c.info.run_id for c in self.children(source_run))]
        versions: list[Any] = []
        for rid in run_ids:
            versions += self.client.search_model_versions(f"run_id = '{rid}'")
        if not versions:
            raise StepFailed(f"{where} registered no model version; register one in its notebook (%mlops register)")
        if len({v.name for v in versions}) > 1:
            raise StepFailed(
                f"{where} registered versions of several models ({', '.join(sorted({v.name for v in versions}))}); refer to one by its run instead"
            )
        return Text(str(max(int(v.version) for v in versions)))


def resolve_step(step: Step, done: Mapping[str, StepResult], outputs: Outputs) -> tuple[dict[str, Any], dict[str, str]]:
    """The step's parameters with references replaced by what upstream steps produced,
    checked against the notebook: (values, texts) ready for the runner."""

    def lookup(inner: str) -> Any:
        parts = inner.strip().split(".")
        output = parts[2]
        ref = Reference("${" + inner + "}", parts[1], output, ".".join(parts[3:]) or None)
        upstream = done[parts[1]]
        return outputs.value(ref, step.name, upstream.best_run_id or upstream.run_id or "")

    resolved = {k: substitute(v, lookup) for k, v in step.params.items()}
    values, texts = split_params(resolved)
    where = f"{step.notebook.name} (step {step.name!r})"
    try:
        declared = declared_parameters(step.notebook)
        if step.sweep is None:
            checked = check_params(declared, values, texts=texts, notebook=where)
            return checked, {}
        expand_grid(declared, texts, {**values, **step.sweep.grid}, notebook=where)
    except UsageError as exc:
        raise StepFailed(str(exc)) from None
    return values, texts


def best_of(run: Any) -> str:
    return run.data.tags.get(SWEEP_BEST_RUN_ID) or run.info.run_id
