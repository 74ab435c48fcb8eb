"""A pipeline file: notebooks chained by what they produce, read and checked.

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
the file, unknown or cyclic steps, references, notebooks and their parameters. Running a
pipeline is :mod:`mlops_nb.jobs.batch.pipeline`; its cache keys :mod:`.cache`; what
``pipeline show`` reports :mod:`.status`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from mlops_nb.config import ProjectConfig
from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.run.params import (
    check_params,
    expand_grid,
    known_parameters,
    parameters_in,
    read_notebook,
    unique_key_loader,
)

__all__ = [
    "OK_STATES",
    "Pipeline",
    "Reference",
    "Step",
    "SweepSpec",
    "Text",
    "close_match",
    "load_pipeline",
    "pipeline_experiment",
    "pipeline_file_tag",
    "pipeline_param",
    "plain",
    "split_params",
    "substitute",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_OUTPUTS = ("run_id", "model_version", "metrics", "params", "artifacts")
_KEYED = ("metrics", "params", "artifacts")
_STEP_KEYS = ("notebook", "params", "needs", "sweep", "timeout")
_SWEEP_KEYS = ("grid", "metric", "lower_is_better", "workers")
_TOP_KEYS = ("name", "experiment", "params", "steps")
OK_STATES = ("ran", "cached")


class Text(str):
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


def close_match(name: str, names: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"pipeline file {str(path)!r} not found; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{str(path)!r} is a folder; give the path of a pipeline file (.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read pipeline file {str(path)!r} ({exc}); check the path") from None
    try:
        return yaml.load(text, Loader=unique_key_loader())
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
                f"{close_match(parts[1], params)}; its params: {declared}",
            )
        return Reference(text, None, "param", parts[1])
    if parts[0] == "steps" and len(parts) >= 3:
        step, output = parts[1], parts[2]
        if step not in steps:
            raise _fail(
                path,
                f"{where} refers to unknown step {step!r}{close_match(step, steps)} in ${{{inner}}}; steps: {', '.join(steps)}",
            )
        if output not in _OUTPUTS:
            raise _fail(
                path,
                f"{where}: ${{{inner}}} asks step {step!r} for {output!r}{close_match(output, _OUTPUTS)}, which is no"
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


def substitute(value: Any, lookup: Callable[[str], Any], final: bool = True) -> Any:
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

        return Text(_REF.sub(one, value))
    if isinstance(value, list):
        return [substitute(v, lookup, final) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, lookup, final) for k, v in value.items()}
    return value


def plain(value: Any) -> Any:
    """``value`` with :class:`Text` made plain ``str`` (inside lists and dicts too)."""
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters as (Python values, texts) for :func:`check_params`."""
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, Text):
            texts[name] = str(value)
        else:
            values[name] = plain(value)
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

    path = Path(path).resolve()
    data = _read_yaml(path)
    name, experiment, pipeline_params = _read_top(path, data, params)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, dict) or not raw_steps:
        raise _fail(path, "'steps' must map step names to steps (each with a notebook); see notebooks/pipeline.yaml")
    names = list(raw_steps)
    for step_name in names:
        if not isinstance(step_name, str) or not _NAME.match(step_name):
            raise _fail(path, f"step name {step_name!r} must start with a letter and hold letters, digits, _ or -")

    graph = _step_graph(path, raw_steps, pipeline_params)
    order = _step_order(path, names, graph)
    steps = {n: _read_step(path, n, raw_steps[n], order, graph, pipeline_params) for n in order}
    return Pipeline(path=path, name=str(name), experiment=experiment, params=pipeline_params, steps=steps)


def _read_top(path: Path, data: Any, params: Mapping[str, str] | None) -> tuple[Any, Any, dict[str, Any]]:
    """The file's name, experiment and parameters (with ``-p`` overrides), checked."""
    if not isinstance(data, dict):
        raise _fail(
            path,
            "a pipeline is a mapping with a 'steps' mapping of step names to steps; see the example in notebooks/pipeline.yaml",
        )
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise _fail(
            path,
            f"unknown key {unknown[0]!r}{close_match(str(unknown[0]), _TOP_KEYS)} at the top; keys: {', '.join(_TOP_KEYS)}",
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
                f"-p {key}: {path.name} has no parameter {key!r}{close_match(key, declared_params)};"
                f" its params: {', '.join(declared_params) or 'none'}"
            )
        pipeline_params[key] = Text(text)

    return name, experiment, pipeline_params


def _step_graph(path: Path, raw_steps: dict[str, Any], pipeline_params: dict[str, Any]) -> dict[str, set[str]]:
    """Each step's upstream steps (``needs`` and the steps its references name), checked."""
    names = list(raw_steps)
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
                f"{where} has unknown key {bad[0]!r}{close_match(str(bad[0]), _STEP_KEYS)}; keys: {', '.join(_STEP_KEYS)}",
            )
        needs = raw.get("needs") or []
        if isinstance(needs, str):
            needs = [needs]
        if not isinstance(needs, list) or any(not isinstance(n, str) for n in needs):
            raise _fail(path, f"{where}: needs must be a list of step names")
        for need in needs:
            if need not in raw_steps:
                raise _fail(
                    path, f"{where} needs unknown step {need!r}{close_match(need, names)}; steps: {', '.join(names)}"
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

    return graph


def _step_order(path: Path, names: list[str], graph: dict[str, set[str]]) -> list[str]:
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

    return order


def _read_step(
    path: Path,
    step_name: str,
    raw: dict[str, Any],
    order: list[str],
    graph: dict[str, set[str]],
    pipeline_params: dict[str, Any],
) -> Step:
    """One step, its notebook and parameters checked (the notebook is read once)."""
    where = f"step {step_name!r}"
    notebook = raw.get("notebook")
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        raise _fail(path, f"{where} needs a notebook: the path of an .ipynb file, relative to {path.name}")
    nb_path = (path.parent / notebook).resolve()
    if not nb_path.is_file():
        raise _fail(path, f"{where}: notebook {notebook} not found next to {path.name} ({nb_path}); check the path")
    try:
        read = read_notebook(nb_path)  # once, for its parameters and its kernel
        declared = parameters_in(read)
        # Pipeline parameters are known now: substitute them, so their values are checked too.
        step_params = {
            k: substitute(v, pipeline_param(pipeline_params), final=False) for k, v in (raw.get("params") or {}).items()
        }
        pending = [k for k, v in step_params.items() if any(True for _ in _references(v))]
        known_parameters(declared, list(step_params), f"{nb_path.name} (step {step_name!r})")
        fixed = {k: v for k, v in step_params.items() if k not in pending}
        values, texts = split_params(fixed)
        sweep_spec = _sweep_spec(path, where, raw.get("sweep"))
        if sweep_spec is not None:
            clash = sorted(set(sweep_spec.grid) & set(step_params))
            if clash:
                raise _fail(path, f"{where}: {clash[0]!r} is both in params and in the sweep grid; give it once")
            known_parameters(declared, list(sweep_spec.grid), f"{nb_path.name} (step {step_name!r})")
            expand_grid(declared, texts, {**values, **sweep_spec.grid}, notebook=f"{nb_path.name} (step {step_name!r})")
        else:
            check_params(declared, values, texts=texts, notebook=f"{nb_path.name} (step {step_name!r})")
    except UsageError as exc:
        message = str(exc)
        raise UsageError(message if message.startswith(path.name) else f"{path.name}: {message}") from None
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise _fail(path, f"{where}: timeout must be a number of seconds above 0, not {timeout!r}")
    return Step(
        name=step_name,
        notebook=nb_path,
        params=step_params,
        needs=tuple(n for n in order if n in graph[step_name]),
        sweep=sweep_spec,
        timeout=float(timeout) if timeout is not None else None,
        kernel=read.kernel,
    )


def pipeline_param(values: Mapping[str, Any]) -> Callable[[str], Any]:
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
            f"{where}: sweep has unknown key {bad[0]!r}{close_match(str(bad[0]), _SWEEP_KEYS)}; keys: {', '.join(_SWEEP_KEYS)}",
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


def pipeline_experiment(pipeline: Pipeline, config: ProjectConfig) -> str:
    """The experiment a pipeline's runs go to."""
    return pipeline.experiment or config.experiment or pipeline.name


def pipeline_file_tag(pipeline: Pipeline, config: ProjectConfig) -> str:
    """How a pipeline's runs name its file (tag ``mlops_nb.pipeline.file``): relative to
    the project when it is inside it."""
    try:
        return pipeline.path.relative_to(config.project_root).as_posix()
    except ValueError:
        return str(pipeline.path)
