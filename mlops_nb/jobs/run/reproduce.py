"""Reproduce a run: re-execute the notebook snapshot it recorded, with its recorded params,
and compare every metric with the original.

The run (or the source run of a model version) must hold the notebook snapshot mlops-nb
captures as ``code/<notebook>.ipynb``. The snapshot runs as a new job (:func:`~.execution.execute_job`)
in the original experiment, from the original notebook's folder when it still exists, so
relative paths to the project's data resolve as they did. The verdict is written back as
tags on the original run and on the model version.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import STORE_DIRNAME, ProjectConfig
from mlops_nb.exceptions import MlopsError, NotFoundError, StoreError, UsageError, one_line
from mlops_nb.jobs.run.execution import execute_job
from mlops_nb.jobs.run.params import check_params, parameters_in, read_notebook
from mlops_nb.jobs.run.spec import FINISHED, JobResult, job_spec
from mlops_nb.provenance import environment_lock
from mlops_nb.registry import get_version, parse_model_uri, remove_alias, resolve_alias, set_alias
from mlops_nb.snapshots import download_snapshot, is_missing
from mlops_nb.store import get_client
from mlops_nb.tables import Table
from mlops_nb.tags import JOB_KERNEL, NOTEBOOK, REPRODUCED, REPRODUCED_BY, REPRODUCES

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlops_nb.jobs.run.params import Parameter

__all__ = [
    "MetricCheck",
    "Reproduction",
    "compare_metrics",
    "package_differences",
    "recorded_params",
    "reproduce",
    "reproduction_table",
]

#: Metrics that measure the machine, not the notebook: never compared.
_TIMING_METRICS = frozenset({"job_duration_s"})
_MAX_PACKAGE_LINES = 20


@dataclass
class MetricCheck:
    """One metric of the original run next to its value in the reproduction."""

    name: str
    original: float
    new: float | None
    ok: bool

    @property
    def difference(self) -> float | None:
        """``|new - original|``, or ``None`` when the reproduction lacks the metric."""
        if self.new is None:
            return None
        if math.isnan(self.new) and math.isnan(self.original):
            return 0.0
        return abs(self.new - self.original)


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`.

    ``reproduced`` is true when the job finished and every metric of the original run
    (but timings such as ``job_duration_s``) is within tolerance. ``package_differences``
    are ``(package, original version, version now)``, ``None`` for absent.
    """

    original_run_id: str
    new_run_id: str | None
    model: str | None
    reproduced: bool
    metrics: list[MetricCheck] = field(default_factory=list)
    package_differences: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    job_status: str = FINISHED
    error: str | None = None
    rtol: float = 1e-6
    atol: float = 0.0
    #: Things worth telling the user that are not part of the verdict.
    notes: list[str] = field(default_factory=list)

    @property
    def differing(self) -> list[MetricCheck]:
        return [m for m in self.metrics if not m.ok]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["package_differences"] = [
            {"package": p, "original": old, "now": new} for p, old, new in self.package_differences
        ]
        return data


def _tolerance(value: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number such as 1e-6, not {value!r}") from None
    if not number >= 0:  # also refuses NaN
        raise UsageError(f"{what} must be 0 or more, not {value!r}")
    return number


# ---------------------------------------------------------------- what to reproduce


def _resolve_target(client: MlflowClient, target: str) -> tuple[str, tuple[str, str] | None]:
    """(run id, (model name, version) or None) for a run id or a model reference."""
    target = (target or "").strip()
    if not target:
        raise UsageError("give a run id or a model reference (models:/NAME@ALIAS or models:/NAME/VERSION)")
    if not target.startswith("models:/"):
        return target, None
    name, alias, version = parse_model_uri(target)
    mv = resolve_alias(client, name, alias) if alias else get_version(client, name, version or "")
    if not mv.run_id:
        raise UsageError(f"{name} v{mv.version} has no source run to reproduce: it was not registered from a run")
    return mv.run_id, (name, str(mv.version))


def _get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(f"no run {run_id!r} in this store; check the id (mlops-nb runs lists them)") from None
        raise StoreError(f"cannot read run {run_id}: {one_line(exc)}") from None


def _download_snapshot(client: MlflowClient, run: Run, into: Path) -> Path:
    """The run's notebook snapshot, downloaded into ``into`` under its original name."""
    run_id = run.info.run_id
    snapshot = download_snapshot(client, run_id, run.data.tags.get(NOTEBOOK), into)
    if snapshot is None:
        raise UsageError(
            f"run {run_id} holds no notebook snapshot (code/*.ipynb), so there is nothing to re-execute: "
            "it was tracked with capture off or from an unsaved notebook; keep capture on "
            "([tool.mlops-nb] capture = true, %mlops capture on) and save the notebook so future runs can be reproduced"
        )
    return snapshot


def recorded_params(
    declared: dict[str, Parameter] | None, recorded: dict[str, str], notebook: str = ""
) -> dict[str, Any]:
    """The values of the declared parameters the run recorded, converted back from text.

    Jobs record strings verbatim and other values as JSON; interactive runs record
    ``str(value)`` (``True``, ``None``). A ``str`` parameter takes the text as is; any
    other is read as JSON, else converted from text by its declared type as ``-p`` does.
    Names the run recorded that the parameters cell does not declare are left out.
    """
    if not declared:
        return {}
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for name, param in declared.items():
        if name not in recorded:
            continue
        text = recorded[name]
        if param.type_name == "str":
            texts[name] = text
            continue
        try:
            value = json.loads(text)
            check_params(declared, {name: value}, notebook=notebook)
            values[name] = value
        except (ValueError, UsageError):
            texts[name] = text
    return check_params(declared, values, texts=texts, notebook=notebook)


# ---------------------------------------------------------------- comparing


def compare_metrics(original: dict[str, float], new: dict[str, float], rtol: float, atol: float) -> list[MetricCheck]:
    """Each original metric (timings left out) against the new value, sorted by name."""
    checks = []
    for name in sorted(original):
        if name in _TIMING_METRICS:
            continue
        old, now = float(original[name]), new.get(name)
        if now is None:
            ok = False
        elif math.isnan(old) or math.isnan(now):
            ok = math.isnan(old) and math.isnan(now)
        else:
            ok = math.isclose(now, old, rel_tol=rtol, abs_tol=atol)
        checks.append(MetricCheck(name, old, None if now is None else float(now), ok))
    return checks


def _packages(lock: str) -> dict[str, str]:
    """``{package: version}`` from an ``environment_lock()`` text; Python is ``python``."""
    out: dict[str, str] = {}
    for line in lock.splitlines():
        line = line.strip()
        if line.startswith("# python "):
            out["python"] = line[len("# python ") :].split()[0]
        elif line and not line.startswith("#") and "==" in line:
            name, _, version = line.partition("==")
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def package_differences(original_lock: str, current_lock: str) -> list[tuple[str, str | None, str | None]]:
    """(package, original version, current version) for every package added, removed
    or changed between two ``environment_lock()`` texts, sorted by name."""
    old, new = _packages(original_lock), _packages(current_lock)
    return [
        (name, old.get(name), new.get(name))
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]


def _original_lock(client: MlflowClient, run_id: str, into: Path) -> str | None:
    try:
        local = client.download_artifacts(run_id, "environment/requirements.txt", str(into))
        return Path(local).read_text(encoding="utf-8")
    except Exception:
        return None


# ---------------------------------------------------------------- side effects of the re-run


def _registered_models(client: MlflowClient, run_id: str) -> dict[str, dict[str, str]]:
    """{model name: {alias: version}} for the models the run registered versions of."""
    try:
        names = {mv.name for mv in client.search_model_versions(f"run_id = '{run_id}'")}
        return {name: {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} for name in names}
    except Exception:
        return {}


def _restore_aliases(client: MlflowClient, before: dict[str, dict[str, str]], new_run_id: str) -> list[str]:
    """Put back aliases the re-run moved onto its own versions: a reproduction must not
    change which version a deployment loads. Returns one note per alias restored."""
    why = f"restored by mlops-nb reproduce (the reproduction run {new_run_id} had moved it)"
    notes = []
    for name, aliases in before.items():
        try:
            now = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
            for alias, version in now.items():
                if aliases.get(alias) == version or client.get_model_version(name, version).run_id != new_run_id:
                    continue
                if alias in aliases:
                    set_alias(client, name, alias, aliases[alias], why=why)
                    notes.append(
                        f"the reproduction registered {name} v{version}; alias {alias!r} was put back on v{aliases[alias]}"
                    )
                else:
                    remove_alias(client, name, alias, why=why)
                    notes.append(f"the reproduction registered {name} v{version}; the new alias {alias!r} was removed")
        except MlopsError:
            raise
        except Exception as exc:
            notes.append(f"warning: could not check the aliases of {name!r} after the reproduction: {one_line(exc)}")
    return notes


# ---------------------------------------------------------------- reproducing


def reproduce(
    target: str,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    config: ProjectConfig,
    timeout: float | None = None,
    kernel: str | None = None,
) -> Reproduction:
    """Re-execute the notebook snapshot of a run with its recorded params and compare
    every metric with the original.

    ``target`` is a run id, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (the
    version's source run). A metric reproduces when ``math.isclose(new, original,
    rel_tol=rtol, abs_tol=atol)`` (NaN equals NaN); one the new run lacks does not. The
    new run, in the original experiment, is tagged ``mlops_nb.reproduces``; the original
    run gets ``mlops_nb.reproduced`` (``yes``/``no``) and ``mlops_nb.reproduced_by``, and
    the model version ``mlops_nb.reproduced``. The user's notebook is never touched: the
    snapshot runs from a temporary copy, in the original notebook's folder when it still
    exists. Aliases the re-run moves onto versions it registers are put back.

    A job that fails is a result with ``reproduced=False``, not an exception.

    Raises
    ------
    NotFoundError
        No such run, model, alias or version.
    UsageError
        A bad tolerance or reference, or the run holds no notebook snapshot.
    StoreError
        The store cannot be read or written.
    """
    rtol, atol = _tolerance(rtol, "--rtol"), _tolerance(atol, "--atol")
    client = get_client(config)
    run_id, version = _resolve_target(client, target)
    original = _get_run(client, run_id)
    try:
        experiment = client.get_experiment(original.info.experiment_id).name
    except Exception as exc:
        raise StoreError(f"cannot read the experiment of run {run_id}: {one_line(exc)}") from None
    recorded_notebook = original.data.tags.get(NOTEBOOK)
    folder = (config.project_root / recorded_notebook).parent if recorded_notebook else None

    # Inside the project's store folder (ignored by git), so the snapshot resolves the
    # same project and store as the original notebook did.
    scratch_root = config.project_root / STORE_DIRNAME / "reproduce"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{run_id[:12]}-", dir=scratch_root))
    try:
        snapshot = _download_snapshot(client, original, scratch / "snapshot")
        cwd = folder if folder is not None and folder.is_dir() else snapshot.parent
        models_before = _registered_models(client, run_id)
        job = _rerun(original, snapshot, experiment, cwd, config, timeout, kernel)
        lock = _original_lock(client, run_id, scratch / "environment")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    new_run_id = job.run_id or ""
    _tag_reproduction(client, run_id, new_run_id, recorded_notebook)
    notes = _restore_aliases(client, models_before, new_run_id)

    checks = compare_metrics(dict(original.data.metrics), job.metrics, rtol, atol)
    if not checks:
        notes.append(f"run {run_id} has no metrics to compare: only whether the notebook runs was checked")
    reproduced = job.status == FINISHED and all(c.ok for c in checks)
    if lock is None:
        notes.append(f"run {run_id} recorded no environment/requirements.txt: installed packages were not compared")
    differences = package_differences(lock, environment_lock()) if lock is not None else []

    _record_verdict(client, run_id, version, "yes" if reproduced else "no", new_run_id)
    return Reproduction(
        original_run_id=run_id,
        new_run_id=new_run_id,
        model=f"{version[0]} v{version[1]}" if version else None,
        reproduced=reproduced,
        metrics=checks,
        package_differences=differences,
        job_status=job.status,
        error=job.error,
        rtol=rtol,
        atol=atol,
        notes=notes,
    )


def _rerun(
    original: Run,
    snapshot: Path,
    experiment: str,
    cwd: Path,
    config: ProjectConfig,
    timeout: float | None,
    kernel: str | None,
) -> JobResult:
    """Run the snapshot as a new job with the original's recorded params (the snapshot
    is read once, for its parameters and the job's spec)."""
    read = read_notebook(snapshot)
    params = recorded_params(parameters_in(read), dict(original.data.params), snapshot.name)
    recorded_notebook = original.data.tags.get(NOTEBOOK)
    spec = job_spec(
        snapshot,
        params,
        config=config,
        experiment=experiment,
        run_name=f"reproduce {original.info.run_name or original.info.run_id}",
        timeout=timeout,
        kernel=kernel or original.data.tags.get(JOB_KERNEL),
        cwd=cwd,
        # Models and runs the re-run logs name the notebook, not the temporary copy.
        tags={"mlflow.source.name": recorded_notebook} if recorded_notebook else None,
        source=read,
    )
    return execute_job(spec)


def _tag_reproduction(client: MlflowClient, run_id: str, new_run_id: str, recorded_notebook: str | None) -> None:
    tags = {REPRODUCES: run_id}
    # The job ran a temporary copy: record the notebook the reproduction stands for.
    if recorded_notebook:
        tags[NOTEBOOK] = recorded_notebook
        tags["mlflow.source.name"] = recorded_notebook
    try:
        for key, value in tags.items():
            client.set_tag(new_run_id, key, value)
    except Exception as exc:
        raise StoreError(f"cannot tag the reproduction run {new_run_id}: {one_line(exc)}") from None


def _record_verdict(
    client: MlflowClient, run_id: str, version: tuple[str, str] | None, verdict: str, new_run_id: str
) -> None:
    try:
        client.set_tag(run_id, REPRODUCED, verdict)
        client.set_tag(run_id, REPRODUCED_BY, new_run_id)
        if version is not None:
            client.set_model_version_tag(version[0], version[1], REPRODUCED, verdict)
    except Exception as exc:
        raise StoreError(f"cannot record the verdict on run {run_id}: {one_line(exc)}") from None


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def reproduction_table(r: Reproduction) -> str:
    """The verdict as text: one row per metric, then the verdict, then one warning per
    package that differs from the original run's environment (at most 20)."""
    what = f"{r.model} (run {r.original_run_id})" if r.model else f"run {r.original_run_id}"
    title = f"reproduction of {what} by run {r.new_run_id} (rtol {r.rtol:g}, atol {r.atol:g})"
    rows = [
        [
            m.name,
            _number(m.original),
            "missing" if m.new is None else _number(m.new),
            _number(m.difference),
            "ok" if m.ok else "DIFFERS",
        ]
        for m in r.metrics
    ]
    lines = [str(Table(["metric", "original", "new", "|diff|", "verdict"], rows, title=title))]
    if r.job_status != FINISHED:
        lines.append(f"the reproduction run ended {r.job_status}: {r.error or 'no error recorded'}")
    if r.reproduced:
        lines.append("reproduces: yes")
    elif r.job_status != FINISHED:
        lines.append("does not reproduce: the notebook did not run to the end")
    else:
        lines.append(f"does not reproduce: {len(r.differing)} of {len(r.metrics)} metrics differ")
    for package, old, new in r.package_differences[:_MAX_PACKAGE_LINES]:
        lines.append(f"warning: {package} was {old or 'not installed'}, now {new or 'not installed'}")
    more = len(r.package_differences) - _MAX_PACKAGE_LINES
    if more > 0:
        lines.append(f"... and {more} more")
    lines.extend(r.notes)
    return "\n".join(lines)
