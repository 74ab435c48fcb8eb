"""Pipelines: notebooks chained by what they produce, run in parallel, cached by content.

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

import difflib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import MlopsError, UsageError
from mlops_nb.jobs.run.execution import FAILED, FINISHED, KILLED

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from mlops_nb.jobs.run.executors import Executor

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

TAG = "mlops_nb."
KEY_TAG = TAG + "pipeline.cache_key"
STEP_TAG = TAG + "pipeline.step"
FILE_TAG = TAG + "pipeline.file"
RUN_TAG = TAG + "pipeline.run_id"
# Bumped when the key's recipe changes, so an old key never matches a new recipe.
_KEY_VERSION = 1

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_OUTPUTS = ("run_id", "model_version", "metrics", "params", "artifacts")
_KEYED = ("metrics", "params", "artifacts")
_STEP_KEYS = ("notebook", "params", "needs", "sweep", "timeout")
_SWEEP_KEYS = ("grid", "metric", "lower_is_better", "workers")
_TOP_KEYS = ("name", "experiment", "params", "steps")
_OK_STATES = ("ran", "cached")


class _Text(str):
    """A value known only as text (a ``-p`` override, an MLflow param, a run id): it is
    converted by the type the notebook declares, as ``-p`` values of ``mlops-nb run`` are."""


# ------------------------------------------------------------------ the file


@dataclass(frozen=True)
class Reference:
    """One ``${...}`` in a step's parameters: a pipeline parameter or a step's output."""

    text: str
    step: str | None  # None: a pipeline parameter
    output: str  # "param" for a pipeline parameter, else one of run_id, model_version, metrics, params, artifacts
    key: str | None


@dataclass(frozen=True)
class SweepSpec:
    """A step's sweep: the grid, and the metric whose best job is the step's result."""

    grid: dict[str, list[Any]]
    metric: str
    lower_is_better: bool = False
    workers: int | None = None


@dataclass(frozen=True)
class Step:
    """One step as loaded: its notebook, its parameters (references still unresolved,
    pipeline parameters substituted) and the steps it depends on."""

    name: str
    notebook: Path
    params: dict[str, Any]
    needs: tuple[str, ...]
    sweep: SweepSpec | None = None
    timeout: float | None = None
    kernel: str = "python3"


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline: steps in a dependency order, pipeline parameters resolved."""

    path: Path
    name: str
    experiment: str | None
    params: dict[str, Any]
    steps: dict[str, Step]

    def downstream(self, names: Iterable[str]) -> set[str]:
        """``names`` and every step that depends on one of them, directly or not."""
        out = set(names)
        for name in self.steps:  # steps are in dependency order: one pass suffices
            if any(n in out for n in self.steps[name].needs):
                out.add(name)
        return out


def _fail(path: Path, message: str) -> UsageError:
    return UsageError(f"{path.name}: {message}")


def _close(name: str, names: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _read_yaml(path: Path) -> Any:
    import yaml

    from mlops_nb.jobs.run.params import _unique_key_loader

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"pipeline file {str(path)!r} not found; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{str(path)!r} is a folder; give the path of a pipeline file (.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read pipeline file {str(path)!r} ({exc}); check the path") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(
            path, f"not valid YAML{where}: {exc.problem or exc.context or 'invalid YAML'}; fix the file"
        ) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({' '.join(str(exc).split())}); fix the file") from None


def _parse_ref(
    path: Path, where: str, inner: str, text: str, params: Mapping[str, Any], steps: Iterable[str]
) -> Reference:
    inner = inner.strip()
    parts = inner.split(".")
    hint = (
        "use ${params.NAME}, ${steps.STEP.run_id}, ${steps.STEP.model_version}, ${steps.STEP.metrics.KEY}, "
        "${steps.STEP.params.KEY} or ${steps.STEP.artifacts.PATH}"
    )
    if parts[0] == "params" and len(parts) == 2 and parts[1]:
        if parts[1] not in params:
            declared = ", ".join(params) or "none"
            raise _fail(
                path,
                f"{where} refers to ${{{inner}}}, but the pipeline has no parameter {parts[1]!r}"
                f"{_close(parts[1], params)}; its params: {declared}",
            )
        return Reference(text, None, "param", parts[1])
    if parts[0] == "steps" and len(parts) >= 3:
        step, output = parts[1], parts[2]
        if step not in steps:
            raise _fail(
                path,
                f"{where} refers to unknown step {step!r}{_close(step, steps)} in ${{{inner}}}; steps: {', '.join(steps)}",
            )
        if output not in _OUTPUTS:
            raise _fail(
                path,
                f"{where}: ${{{inner}}} asks step {step!r} for {output!r}{_close(output, _OUTPUTS)}, which is no"
                f" output of a step; {hint}",
            )
        key = ".".join(parts[3:]) or None
        if (output in _KEYED) != (key is not None):
            raise _fail(
                path,
                f"{where}: ${{{inner}}} "
                + (f"needs a name after {output}" if output in _KEYED else f"takes nothing after {output}")
                + f"; {hint}",
            )
        return Reference(text, step, output, key)
    raise _fail(path, f"{where}: ${{{inner}}} is not a reference; {hint}")


def _references(value: Any) -> Iterable[tuple[str, str]]:
    """Every ``(whole match, inner text)`` of a reference in ``value`` (walking lists and dicts)."""
    if isinstance(value, str):
        for m in _REF.finditer(value):
            if m.group(1) is not None:
                yield m.group(0), m.group(1)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def _substitute(value: Any, lookup: Callable[[str], Any], final: bool = True) -> Any:
    """``value`` with each reference replaced by ``lookup(inner)``: a string that is one
    reference becomes the value itself (typed), longer text interpolates (and is text).
    ``final=False`` keeps ``$${`` escaped, for a first pass that leaves some references."""
    if isinstance(value, str):
        matches = list(_REF.finditer(value))
        if not matches:
            return value
        if len(matches) == 1 and matches[0].group(1) is not None and matches[0].group(0) == value:
            return lookup(matches[0].group(1))

        def one(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return "${" if final else "$${"
            got = lookup(m.group(1))
            return repr(got) if isinstance(got, float) else str(got)

        return _Text(_REF.sub(one, value))
    if isinstance(value, list):
        return [_substitute(v, lookup, final) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, lookup, final) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """``value`` with :class:`_Text` made plain ``str`` (inside lists and dicts too)."""
    if isinstance(value, _Text):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters as (Python values, texts) for :func:`check_params`."""
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, _Text):
            texts[name] = str(value)
        else:
            values[name] = _plain(value)
    return values, texts


def load_pipeline(path: str | Path, params: Mapping[str, str] | None = None) -> Pipeline:
    """Read and check a pipeline file; nothing runs and nothing is written.

    ``params`` are ``-p NAME=VALUE`` overrides of the pipeline's ``params`` (text, each
    converted by the type the receiving notebook declares).

    Raises
    ------
    UsageError
        In one line, for a missing or invalid file, an unknown key, an unknown step, a
        cycle, a reference to a parameter, step or kind of output that does not exist, a
        missing notebook, or a parameter a notebook does not declare or whose value does
        not fit.
    """
    from mlops_nb.jobs.run.execution import _notebook_kernel
    from mlops_nb.jobs.run.params import _known, check_params, declared_parameters, expand_grid

    path = Path(path).resolve()
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise _fail(
            path,
            "a pipeline is a mapping with a 'steps' mapping of step names to steps; see the example in notebooks/pipeline.yaml",
        )
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise _fail(
            path,
            f"unknown key {unknown[0]!r}{_close(str(unknown[0]), _TOP_KEYS)} at the top; keys: {', '.join(_TOP_KEYS)}",
        )
    name = data.get("name") or path.stem
    experiment = data.get("experiment")
    for key, value in (("name", name), ("experiment", experiment)):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise _fail(path, f"{key} must be text, not {value!r}")

    declared_params = data.get("params") or {}
    if not isinstance(declared_params, dict) or any(not isinstance(k, str) for k in declared_params):
        raise _fail(path, "params must be a mapping of names to default values")
    pipeline_params: dict[str, Any] = dict(declared_params)
    for key, text in (params or {}).items():
        if key not in declared_params:
            raise UsageError(
                f"-p {key}: {path.name} has no parameter {key!r}{_close(key, declared_params)};"
                f" its params: {', '.join(declared_params) or 'none'}"
            )
        pipeline_params[key] = _Text(text)

    raw_steps = data.get("steps")
    if not isinstance(raw_steps, dict) or not raw_steps:
        raise _fail(path, "'steps' must map step names to steps (each with a notebook); see notebooks/pipeline.yaml")
    names = list(raw_steps)
    for step_name in names:
        if not isinstance(step_name, str) or not _NAME.match(step_name):
            raise _fail(path, f"step name {step_name!r} must start with a letter and hold letters, digits, _ or -")

    graph: dict[str, set[str]] = {}
    refs: dict[str, list[Reference]] = {}
    for step_name, raw in raw_steps.items():
        where = f"step {step_name!r}"
        if not isinstance(raw, dict):
            raise _fail(path, f"{where} must be a mapping with a notebook (notebook: train.ipynb)")
        bad = [k for k in raw if k not in _STEP_KEYS]
        if bad:
            raise _fail(
                path,
                f"{where} has unknown key {bad[0]!r}{_close(str(bad[0]), _STEP_KEYS)}; keys: {', '.join(_STEP_KEYS)}",
            )
        needs = raw.get("needs") or []
        if isinstance(needs, str):
            needs = [needs]
        if not isinstance(needs, list) or any(not isinstance(n, str) for n in needs):
            raise _fail(path, f"{where}: needs must be a list of step names")
        for need in needs:
            if need not in raw_steps:
                raise _fail(
                    path, f"{where} needs unknown step {need!r}{_close(need, names)}; steps: {', '.join(names)}"
                )
        step_params = raw.get("params") or {}
        if not isinstance(step_params, dict) or any(not isinstance(k, str) for k in step_params):
            raise _fail(path, f"{where}: params must be a mapping of parameter names to values")
        found = [
            _parse_ref(path, f"{where}, parameter {pname!r}", inner, text, pipeline_params, names)
            for pname, value in step_params.items()
            for text, inner in _references(value)
        ]
        refs[step_name] = found
        graph[step_name] = set(needs) | {r.step for r in found if r.step is not None}

    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        raise _fail(
            path, f"steps {' -> '.join(cycle)} form a cycle; a step cannot depend on itself, even through others"
        ) from None
    # The file's order wherever dependencies allow it: tables list steps as written.
    order: list[str] = []
    while len(order) < len(names):
        order.append(next(n for n in names if n not in order and graph[n] <= set(order)))

    steps: dict[str, Step] = {}
    for step_name in order:
        raw = raw_steps[step_name]
        where = f"step {step_name!r}"
        notebook = raw.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise _fail(path, f"{where} needs a notebook: the path of an .ipynb file, relative to {path.name}")
        nb_path = (path.parent / notebook).resolve()
        if not nb_path.is_file():
            raise _fail(path, f"{where}: notebook {notebook} not found next to {path.name} ({nb_path}); check the path")
        try:
            declared = declared_parameters(nb_path)
            # Pipeline parameters are known now: substitute them, so their values are checked too.
            step_params = {
                k: _substitute(v, _pipeline_param(pipeline_params), final=False)
                for k, v in (raw.get("params") or {}).items()
            }
            pending = [k for k, v in step_params.items() if any(True for _ in _references(v))]
            _known(declared, list(step_params), f"{nb_path.name} (step {step_name!r})")
            fixed = {k: v for k, v in step_params.items() if k not in pending}
            values, texts = _split(fixed)
            sweep_spec = _sweep_spec(path, where, raw.get("sweep"))
            if sweep_spec is not None:
                clash = sorted(set(sweep_spec.grid) & set(step_params))
                if clash:
                    raise _fail(path, f"{where}: {clash[0]!r} is both in params and in the sweep grid; give it once")
                _known(declared, list(sweep_spec.grid), f"{nb_path.name} (step {step_name!r})")
                expand_grid(
                    declared, texts, {**values, **sweep_spec.grid}, notebook=f"{nb_path.name} (step {step_name!r})"
                )
            else:
                check_params(declared, values, texts=texts, notebook=f"{nb_path.name} (step {step_name!r})")
        except UsageError as exc:
            message = str(exc)
            raise UsageError(message if message.startswith(path.name) else f"{path.name}: {message}") from None
        timeout = raw.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise _fail(path, f"{where}: timeout must be a number of seconds above 0, not {timeout!r}")
        steps[step_name] = Step(
            name=step_name,
            notebook=nb_path,
            params=step_params,
            needs=tuple(n for n in order if n in graph[step_name]),
            sweep=sweep_spec,
            timeout=float(timeout) if timeout is not None else None,
            kernel=_notebook_kernel(nb_path),
        )
    return Pipeline(path=path, name=str(name), experiment=experiment, params=pipeline_params, steps=steps)


def _pipeline_param(values: Mapping[str, Any]) -> Callable[[str], Any]:
    """A lookup for a first pass: pipeline parameters by value (text in them escaped, so
    it is never read as a reference), step references left as they are."""

    def lookup(inner: str) -> Any:
        kind, _, name = inner.strip().partition(".")
        if kind != "params":
            return "${" + inner + "}"
        value = values[name]
        return type(value)(value.replace("${", "$${")) if isinstance(value, str) else value

    return lookup


def _sweep_spec(path: Path, where: str, raw: Any) -> SweepSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(path, f"{where}: sweep must be a mapping with a grid and a metric")
    bad = [k for k in raw if k not in _SWEEP_KEYS]
    if bad:
        raise _fail(
            path,
            f"{where}: sweep has unknown key {bad[0]!r}{_close(str(bad[0]), _SWEEP_KEYS)}; keys: {', '.join(_SWEEP_KEYS)}",
        )
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid or any(not isinstance(v, list) or not v for v in grid.values()):
        raise _fail(path, f"{where}: sweep.grid must map parameter names to non-empty lists of values")
    if any(True for _ in _references(grid)):
        raise _fail(path, f"{where}: sweep.grid values must be literal; refer to other steps in params")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise _fail(path, f"{where}: sweep.metric must name the metric that picks the best job, e.g. metric: accuracy")
    lower = raw.get("lower_is_better", False)
    if not isinstance(lower, bool):
        raise _fail(path, f"{where}: sweep.lower_is_better must be true or false")
    workers = raw.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64):
        raise _fail(path, f"{where}: sweep.workers must be a whole number from 1 to 64")
    return SweepSpec(dict(grid), metric, lower, workers)


# ------------------------------------------------------------------ results


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
        return self.state in _OK_STATES

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


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


# ------------------------------------------------------------------ outputs and keys


class _StepFailed(MlopsError):
    """A step cannot run: an upstream output it refers to is missing, or a value does not fit."""


class _Outputs:
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
            return _Text(source_run)
        run = self.run(source_run)
        if ref.output == "metrics":
            # A notebook may log inside a tracked cell (a child run of its job): look there too.
            for candidate in [run, *self.children(source_run)]:
                if ref.key in candidate.data.metrics:
                    return float(candidate.data.metrics[ref.key])
            raise _StepFailed(
                f"{where} logged no metric {ref.key!r}; it logged: {', '.join(sorted(run.data.metrics)) or 'none'}"
            )
        if ref.output == "params":
            if ref.key in run.data.params:
                return _Text(run.data.params[ref.key])
            raise _StepFailed(
                f"{where} has no param {ref.key!r}; it has: {', '.join(sorted(run.data.params)) or 'none'}"
            )
        if ref.output == "artifacts":
            folder, _, _ = (ref.key or "").rpartition("/")
            listed = {a.path for a in self.client.list_artifacts(source_run, folder or None)}
            if ref.key not in listed:
                raise _StepFailed(
                    f"{where} stored no artifact {ref.key!r}; in {folder or 'its root'}: {', '.join(sorted(listed)) or 'nothing'}"
                )
            return _Text(f"{run.info.artifact_uri.rstrip('/')}/{ref.key}")
        # model_version: registered from the job's run or from a tracked cell inside it.
        run_ids = [source_run, *(c.info.run_id for c in self.children(source_run))]
        versions = []
        for rid in run_ids:
            versions += self.client.search_model_versions(f"run_id = '{rid}'")
        if not versions:
            raise _StepFailed(f"{where} registered no model version; register one in its notebook (%mlops register)")
        if len({v.name for v in versions}) > 1:
            raise _StepFailed(
                f"{where} registered versions of several models ({', '.join(sorted({v.name for v in versions}))}); refer to one by its run instead"
            )
        return _Text(str(max(int(v.version) for v in versions)))


def _notebook_sources(path: Path) -> list[list[Any]]:
    """What of a notebook decides its results: each cell's type, tags and source (not
    outputs, execution counts or ids, which change on every save)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for cell in cells:
        source = cell.get("source", "")
        out.append(
            [
                cell.get("cell_type"),
                sorted((cell.get("metadata") or {}).get("tags") or []),
                "".join(source) if isinstance(source, list) else source,
            ]
        )
    return out


def _cache_key(step: Step, values: dict[str, Any], texts: dict[str, str], upstream: dict[str, str]) -> str:
    recipe = {
        "v": _KEY_VERSION,
        "notebook": _notebook_sources(step.notebook),
        "kernel": step.kernel,
        "values": values,
        "texts": texts,
        "sweep": asdict(step.sweep) if step.sweep else None,
        "upstream": upstream,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=repr).encode()).hexdigest()


def _resolve(step: Step, done: Mapping[str, StepResult], outputs: _Outputs) -> tuple[dict[str, Any], dict[str, str]]:
    """The step's parameters with references replaced by what upstream steps produced,
    checked against the notebook: (values, texts) ready for the runner."""
    from mlops_nb.jobs.run.params import check_params, declared_parameters, expand_grid

    def lookup(inner: str) -> Any:
        parts = inner.strip().split(".")
        output = parts[2]
        ref = Reference("${" + inner + "}", parts[1], output, ".".join(parts[3:]) or None)
        upstream = done[parts[1]]
        return outputs.value(ref, step.name, upstream.best_run_id or upstream.run_id or "")

    resolved = {k: _substitute(v, lookup) for k, v in step.params.items()}
    values, texts = _split(resolved)
    where = f"{step.notebook.name} (step {step.name!r})"
    try:
        declared = declared_parameters(step.notebook)
        if step.sweep is None:
            checked = check_params(declared, values, texts=texts, notebook=where)
            return checked, {}
        expand_grid(declared, texts, {**values, **step.sweep.grid}, notebook=where)
    except UsageError as exc:
        raise _StepFailed(str(exc)) from None
    return values, texts


def _experiment_id(client: MlflowClient, name: str) -> str | None:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp is not None and exp.lifecycle_stage == "active" else None


def _cached_run(client: MlflowClient, experiment_id: str | None, key: str) -> Any:
    """The newest successful run stored with cache ``key``, or None."""
    if experiment_id is None:
        return None
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def _best_of(run: Any) -> str:
    return run.data.tags.get(TAG + "sweep.best_run_id") or run.info.run_id


def _experiment_name(pipeline: Pipeline, config: ProjectConfig) -> str:
    return pipeline.experiment or config.experiment or pipeline.name


def _file_tag(pipeline: Pipeline, config: ProjectConfig) -> str:
    try:
        return pipeline.path.relative_to(config.project_root).as_posix()
    except ValueError:
        return str(pipeline.path)


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
    for name in force:
        if name not in pipeline.steps:
            raise UsageError(
                f"--force {name}: {pipeline.path.name} has no step {name!r}{_close(name, pipeline.steps)}; steps: {', '.join(pipeline.steps)}"
            )
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise UsageError(f"--workers must be a whole number from 1 to 64, not {workers!r}")
    say = report or (lambda line: None)
    cfg = config or resolve_config(pipeline.path.parent)
    stop = stop or threading.Event()

    from mlops_nb.provenance import NotebookLocation
    from mlops_nb.tracking import Tracker

    started = time.monotonic()
    tracker = Tracker(
        notebook=NotebookLocation(pipeline.path, "mlops-nb pipeline"), config=cfg, fluent=False, report=report
    )
    experiment = _experiment_name(pipeline, cfg)
    handle = tracker.start_notebook_run(experiment, pipeline_title(pipeline.name), autolog=False)
    client = tracker.client
    file_tag = _file_tag(pipeline, cfg)
    client.log_batch(
        handle.run_id,
        tags=[
            _tag(TAG + "kind", "pipeline"),
            _tag(FILE_TAG, file_tag),
            _tag(TAG + "pipeline.steps", str(len(pipeline.steps))),
        ],
    )
    if pipeline.params:
        tracker.log_params({k: v if isinstance(v, str) else json.dumps(v) for k, v in pipeline.params.items()})
    if on_start is not None:
        on_start(handle.run_id)
    say(
        f"{pipeline_title(pipeline.name)}: run {handle.run_id} in experiment {experiment!r}, {len(pipeline.steps)} steps, {workers} at a time"
    )

    from mlops_nb.jobs.run.executors import LocalExecutor

    jobs = executor or LocalExecutor(workers, pool_size=0, report=report)
    runner = _Runner(
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
        if executor is None:
            jobs.close()

    steps = [results[n] for n in pipeline.steps]
    counts = {state: sum(s.state == state for s in steps) for state in ("ran", "cached", "failed", "skipped")}
    if stop.is_set() and not all(s.ok for s in steps):
        status, error = KILLED, "stopped"
    elif counts["failed"] or counts["skipped"]:
        failed = [s.name for s in steps if s.state == "failed"]
        status, error = FAILED, f"step {', '.join(failed)} failed" if failed else "steps were skipped"
    else:
        status, error = FINISHED, None
    duration = time.monotonic() - started
    try:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(
            handle.run_id,
            metrics=[Metric(f"steps_{k}", float(v), now, 0) for k, v in counts.items()]
            + [Metric("pipeline_duration_s", duration, now, 0)],
            tags=[_tag(TAG + "pipeline.states", json.dumps({s.name: s.state for s in steps})[:5000])],
        )
    except Exception as exc:  # the result stands even when the summary cannot be stored
        say(f"warning: could not store the pipeline summary on run {handle.run_id}: {exc}")
    tracker.end_run(handle, status, error=RuntimeError(error) if error else None)
    tracker.close()
    return PipelineResult(pipeline.name, handle.run_id, status, duration, steps, error)


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)


class _Runner:
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
        self.outputs = _Outputs(client)

    def step(self, name: str, done: dict[str, StepResult]) -> StepResult:
        started = time.monotonic()
        step = self.pipeline.steps[name]
        try:
            values, texts = _resolve(step, done, self.outputs)
            upstream = {n: done[n].run_id or "" for n in step.needs}
            key = _cache_key(step, values, texts, upstream)
            if name not in self.force:
                hit = _cached_run(self.client, self.experiment_id, key)
                if hit is not None:
                    return StepResult(
                        name,
                        "cached",
                        hit.info.run_id,
                        FINISHED,
                        time.monotonic() - started,
                        best_run_id=_best_of(hit),
                        cache_key=key,
                        params={**values, **texts},
                        output=_output_of(self.config, hit, step.notebook),
                    )
            tags = {KEY_TAG: key, STEP_TAG: name, FILE_TAG: self.file_tag, RUN_TAG: self.run_id}
            if step.sweep is not None:
                return self._sweep(step, values, texts, tags, key, started)
            return self._job(step, values, tags, key, started)
        except (_StepFailed, UsageError) as exc:
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
        from mlops_nb.jobs.run.executors import job_spec

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
        from mlops_nb.jobs.batch.sweep import sweep

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
    out = config.project_root / ".mlops" / "jobs" / _best_of(run) / notebook.name
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
    lines = _table(header, rows)
    counts = ", ".join(f"{sum(s.state == k for s in result.steps)} {k}" for k in ("ran", "cached", "failed", "skipped"))
    lines.append("")
    lines.append(
        f"{pipeline_title(result.pipeline)}: {result.status} in {result.duration_s:.1f} s ({counts}); run {result.run_id}"
    )
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]


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
    from mlops_nb.store import get_client

    client = get_client(cfg)
    experiment_id = _experiment_id(client, _experiment_name(pipeline, cfg))
    file_tag = _file_tag(pipeline, cfg)
    outputs = _Outputs(client)
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
                values, texts = _resolve(step, done, outputs)
                key = _cache_key(step, values, texts, {n: done[n].run_id or "" for n in needs})
                hit = _cached_run(client, experiment_id, key)
                reason = "" if hit else "never run with this notebook, these parameters and upstream runs"
            except (_StepFailed, UsageError) as exc:
                reason = str(exc)
        if hit is not None:
            done[name] = StepResult(name, "cached", hit.info.run_id, FINISHED, best_run_id=_best_of(hit))
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
    return "\n".join([*_table(header, rows), "", f"{pipeline_title(pipeline)}: {len(states)} steps ({counts})"])
