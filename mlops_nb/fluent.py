"""MLflow's own API in a kernel of the project: the project's store, and in a job the job's run.

A notebook may call MLflow directly (``mlflow.start_run()``, ``mlflow.log_metric``,
``mlflow.sklearn.log_model``, autologging), as MLflow's example notebooks do. Left alone,
MLflow writes those to ``./mlflow.db`` and ``./mlruns`` beside the notebook and tags them
with ``ipykernel_launcher.py`` as their source. This module points MLflow's fluent API of
the kernel at the project instead, without importing MLflow (about 1.7 s) before the
notebook does:

- The store: ``MLFLOW_TRACKING_URI`` names the project's store (MLflow reads it on first
  use; subprocesses inherit it), and experiments the notebook creates keep their artifacts
  under the project's artifact root, not ``./mlruns``.
- The source: ``MLFLOW_RUN_CONTEXT`` (MLflow's documented hook for context tags) makes runs
  and logged models the notebook creates carry the notebook's path, relative to the project
  root, as ``mlflow.source.name``, as mlops-nb's own runs do.
- In a job (a kernel of :class:`mlops_nb.jobs.run.pool.KernelPool`, which loads this module as
  an IPython extension): the job's run is MLflow's active run before the notebook's first
  MLflow call, so ``mlflow.log_*``, autologging and ``log_model`` land in it. The first
  ``mlflow.start_run()`` without a run id returns the job's run itself (as ``mlflow run``
  does through ``MLFLOW_RUN_ID``); later ones start child runs nested under it, so a loop of
  runs still works. Leaving a ``with mlflow.start_run():`` block, or ``mlflow.end_run()``,
  does not end the job's run: the job runner ends it with the job's real status.
  ``mlflow.start_run(nested=True)`` or with a ``run_id`` behaves as MLflow documents.
- With ``%mlops track`` (the notebook's run is mlops-nb's), ``mlflow.start_run()`` nests
  under the notebook's run, interactively and in a job alike.

What is done to MLflow once it is imported is done by a one-shot import hook, so a
notebook that never imports MLflow pays nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import STORE_DIRNAME, ProjectConfig, find_project_root, resolve_config, sqlite_path
from mlops_nb.exceptions import MlopsError, one_line

if TYPE_CHECKING:  # pragma: no cover
    from mlops_nb.tracking import Tracker

__all__ = [
    "JOB_FILE_ENV",
    "activate_run",
    "end_runs_down_to",
    "enter_job",
    "install_start_run_defaults",
    "job_config",
    "load_ipython_extension",
    "point_kernel_at_project",
    "quiet_autolog_warnings",
    "read_job",
    "set_sklearn_autolog",
    "set_source_name",
    "stack_ids",
]

#: MLflow's variable of extra context tags, applied to every run and logged model it creates.
RUN_CONTEXT_ENV = "MLFLOW_RUN_CONTEXT"
#: Set by the job runner on the kernels it starts: a JSON file describing the job.
JOB_FILE_ENV = "MLOPS_NB_JOB_FILE"


@dataclass
class _Kernel:
    """What this process knows about where MLflow's fluent API should write."""

    tracking_uri: str | None = None
    artifact_root: str | None = None
    job_run_id: str | None = None
    job_experiment_id: str | None = None
    #: Whether a plain mlflow.start_run() already returned the job's run.
    job_run_handed_out: bool = False
    #: Whether the job file was looked for (once per kernel: a kernel runs one job).
    job_checked: bool = False


_kernel = _Kernel()
_lock = threading.Lock()


def _report(message: str) -> None:
    print(f"mlops-nb: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- entry points


def point_kernel_at_project(tracker: Tracker) -> None:
    """``%load_ext mlops_nb``: MLflow calls of this kernel go to ``tracker``'s project store.

    Cheap (no MLflow import): sets ``MLFLOW_TRACKING_URI`` unless the user set it (the
    project's configuration already follows it then) and the notebook as the source of
    runs, and arms the hook applied when MLflow is imported. A project whose settings
    cannot be read is left alone here: the first ``%mlops`` command says what is wrong.
    """
    try:
        cfg = tracker.config  # resolved now, so %mlops status names the real reason for the store
    except MlopsError:
        return
    if tracker.job is None and not os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking_uri
    with _lock:
        if _kernel.job_run_id is None:
            _kernel.tracking_uri, _kernel.artifact_root = cfg.tracking_uri, cfg.artifact_root
    set_source_name(tracker.notebook.relative_to(cfg.project_root))
    _arm()


def enter_job(job: Mapping[str, Any]) -> None:
    """Point this kernel's MLflow at the job described by ``job`` (see
    :func:`read_job`): its store, its experiment, its run, its notebook."""
    uri = str(job["tracking_uri"])
    notebook = Path(str(job["notebook"]))
    root, _ = find_project_root(notebook.parent)
    artifact_root = _job_artifact_root(job, uri, notebook)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_EXPERIMENT_ID"] = str(job["experiment_id"])
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)  # would win over the id, and may name another
    os.environ.pop("MLFLOW_RUN_ID", None)  # MLflow would resume (and end) that run instead
    with _lock:
        _kernel.tracking_uri, _kernel.artifact_root = uri, artifact_root
        _kernel.job_run_id, _kernel.job_experiment_id = str(job["run_id"]), str(job["experiment_id"])
        _kernel.job_run_handed_out = False
    rel = job.get("source_name")  # the notebook a copy stands for (a reproduction), when the runner says
    if not rel:
        try:
            rel = notebook.relative_to(root).as_posix()
        except ValueError:
            rel = str(notebook)
    set_source_name(str(rel))
    _arm()
    if "mlflow" in sys.modules:
        _ensure_job_run_active()


def _job_artifact_root(job: Mapping[str, Any], uri: str, notebook: Path) -> str | None:
    """Where experiments of the job's store keep artifacts: from the settings the job
    handed over when they are for the same store, else resolved from the notebook's folder."""
    config = job_config(job)
    if config is not None and config.tracking_uri == uri:
        return config.artifact_root
    try:
        return resolve_config(notebook.parent, environ={"MLFLOW_TRACKING_URI": uri}).artifact_root
    except MlopsError:
        return None


def set_source_name(name: str | None) -> None:
    """Make runs and logged models MLflow creates in this process name ``name`` (the
    notebook, relative to the project root) as their source, as mlops-nb's runs do."""
    if not name:
        return
    try:
        tags = json.loads(os.environ.get(RUN_CONTEXT_ENV) or "{}")
        tags = tags if isinstance(tags, dict) else {}
    except ValueError:
        tags = {}
    tags.update({"mlflow.source.name": name, "mlflow.source.type": "NOTEBOOK"})
    os.environ[RUN_CONTEXT_ENV] = json.dumps(tags)


def load_ipython_extension(ipython: Any) -> None:
    """Loaded into every pooled kernel (``--ext mlops_nb.fluent``): before each cell, take
    up the job once its file is written (right before the notebook runs) and keep the
    job's run active for MLflow. Costs a file read once and a dictionary look-up a cell."""
    ipython.events.register("pre_run_cell", _before_cell)


def _before_cell(*_: Any) -> None:
    try:
        if not _kernel.job_checked:
            _kernel.job_checked = True
            job = _read_job_file()
            if job is not None:
                enter_job(job)
        elif _kernel.job_run_id is not None and "mlflow" in sys.modules:
            _ensure_job_run_active()
    except Exception as exc:  # never break the user's cell
        _report(f"warning: MLflow calls of this notebook may not reach the job's run: {one_line(exc, with_type=True)}")


def read_job(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The job this kernel runs (``run_id``, ``experiment_id``, ``experiment_name``,
    ``notebook``, ``tracking_uri``, and ``config``: the job's project settings), or
    ``None`` outside a job.

    Pooled kernels start before their job is known, so the runner writes the file
    right before it executes the notebook; the kernel reads it on first use.
    """
    env = os.environ if environ is None else environ
    path = env.get(JOB_FILE_ENV)
    if not path:
        return None
    try:
        job = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return job if isinstance(job, dict) and job.get("run_id") else None


def job_config(job: Mapping[str, Any]) -> ProjectConfig | None:
    """The project settings the job runner resolved and handed over whole (the job file's
    ``config``), or ``None`` when the file has none (then the kernel resolves them)."""
    data = job.get("config")
    if not isinstance(data, Mapping):
        return None
    try:
        return ProjectConfig.from_dict(data)
    except (MlopsError, TypeError, ValueError):
        return None


def _read_job_file() -> dict[str, Any] | None:
    job = read_job()
    keys = ("run_id", "experiment_id", "notebook", "tracking_uri")
    return job if job is not None and all(job.get(k) for k in keys) else None


# ---------------------------------------------------------------- once MLflow is imported


class _AfterImport:
    """An import hook (a ``sys.meta_path`` finder, duck-typed: ``importlib.abc`` costs
    ~15 ms at ``%load_ext``) that runs ``callback(module)`` right after the module
    ``name`` is first imported, in the importing thread, before the import returns."""

    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)  # one shot, and not asked again by the look-up below
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_then_call(module: Any) -> None:
            exec_module(module)
            try:
                callback(module)
            except Exception as exc:  # the user's import must succeed regardless
                _report(f"warning: could not point MLflow at the project: {one_line(exc, with_type=True)}")

        loader.exec_module = exec_then_call  # type: ignore[method-assign]
        return spec


_armed: set[str] = set()


def _after_import(name: str, callback: Callable[[Any], None]) -> None:
    """Call ``callback(module)`` once ``name`` is imported (now, if it already is)."""
    with _lock:
        if name in _armed:
            return
        _armed.add(name)
    if name in sys.modules:
        callback(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _arm() -> None:
    _after_import("mlflow", _on_mlflow)
    _after_import("mlflow.sklearn.utils", lambda _: quiet_autolog_warnings())


def _on_mlflow(_: Any) -> None:
    _use_project_artifact_root()
    install_start_run_defaults()
    if _kernel.job_run_id is not None:
        _ensure_job_run_active()


def _use_project_artifact_root() -> None:
    """Experiments the notebook creates (``mlflow.set_experiment("new")``) keep their
    artifacts under the project's artifact root: a SQLite store's default is ``./mlruns``
    of the current folder, which would put them beside the notebook."""
    from mlflow.tracking._tracking_service import utils

    registry = utils._tracking_store_registry
    build = registry._registry.get("sqlite")
    if build is None or getattr(build, "_mlops_nb", False):
        return

    def sqlite_store(store_uri: str, artifact_uri: str | None = None) -> Any:
        if artifact_uri is None:
            artifact_uri = _artifact_root_of(store_uri)
        return build(store_uri=store_uri, artifact_uri=artifact_uri)

    sqlite_store._mlops_nb = True  # type: ignore[attr-defined]
    registry.register("sqlite", sqlite_store)


def _artifact_root_of(store_uri: str) -> str | None:
    """The artifact root of the project whose SQLite store is ``store_uri``, or ``None``."""
    if store_uri == _kernel.tracking_uri and _kernel.artifact_root:
        return _kernel.artifact_root
    db = sqlite_path(store_uri)
    if db is not None and db.parent.name == STORE_DIRNAME:  # an embedded store: as ensure_store made it
        return str(db.parent / "artifacts")
    return None


# ---------------------------------------------------------------- start_run and end_run


def stack_ids() -> list[str]:
    """Run ids on MLflow's active-run stack of this thread, bottom first.

    MLflow exposes only the top (``mlflow.active_run()``); the stack itself is needed to
    end a run without ending runs that are not ours. Falls back to the top alone
    (tests/test_mlflow_pins.py pins the private stack this reads).
    """
    from mlflow.tracking import fluent

    try:
        return [run.info.run_id for run in fluent._active_run_stack.get()]
    except Exception:  # the private stack moved: fall back to what is public
        top = fluent.active_run()
        return [top.info.run_id] if top else []


def _ensure_job_run_active() -> Any:
    """Put the job's run at the bottom of this thread's MLflow run stack if the stack is
    empty; return the active run (``None`` if the job's run cannot be read)."""
    from mlflow.tracking import fluent

    run_id = _kernel.job_run_id
    top = fluent.active_run()
    if top is not None or run_id is None:
        return top
    try:
        run = fluent.MlflowClient().get_run(run_id)
        # Pushed as MLflow's own start_run(run_id=...) would, without its check that the
        # experiment set by mlflow.set_experiment() is the run's: in a job, the job's
        # experiment holds the job's run whatever the notebook sets.
        stack = fluent._active_run_stack.get()
        stack.append(fluent.ActiveRun(run))
        return stack[-1]
    except Exception as exc:
        _report(
            f"warning: MLflow calls of this notebook cannot reach the job's run {run_id}: {one_line(exc, with_type=True)}"
        )
        return None


_tracker_owns: Callable[[str], bool] = lambda run_id: False  # noqa: E731


def install_start_run_defaults(tracker_owns: Callable[[str], bool] | None = None) -> None:
    """Give ``mlflow.start_run`` and ``mlflow.end_run`` mlops-nb's defaults (once per process).

    ``tracker_owns(run_id)`` says whether a run is an mlops-nb run of this kernel: a plain
    ``mlflow.start_run()`` nests under it (without this, MLflow raises "Run ... is already
    active"). In a job, see the module's docstring. Calls that pass a run id, ``nested``
    or ``parent_run_id`` are MLflow's as they are.
    """
    global _tracker_owns
    if tracker_owns is not None:
        _tracker_owns = tracker_owns
    import mlflow
    from mlflow.tracking import fluent

    if getattr(fluent.start_run, "_mlops_nb", False):
        return
    original_start, original_end = fluent.start_run, fluent.end_run

    @functools.wraps(original_start)
    def start_run(*args: Any, **kwargs: Any) -> Any:
        job = _kernel.job_run_id
        if args or kwargs.keys() & {"run_id", "nested", "parent_run_id"}:
            if job is not None and "nested" not in kwargs and (args or kwargs.get("run_id")) and stack_ids() == [job]:
                kwargs["nested"] = True  # resuming a run by id inside the job's run
            return original_start(*args, **kwargs)
        top = _ensure_job_run_active() if job is not None else fluent.active_run()
        if top is None:
            return original_start(**kwargs)
        if _tracker_owns(top.info.run_id):
            return original_start(nested=True, **kwargs)
        if top.info.run_id == job and stack_ids() == [job]:
            return _job_start_run(top, original_start, kwargs)
        return original_start(**kwargs)  # MLflow's own "already active" error

    @functools.wraps(original_end)
    def end_run(*args: Any, **kwargs: Any) -> None:
        job = _kernel.job_run_id
        if job is not None and stack_ids() == [job]:
            # Only the job's run is left: the job runner ends it, with the job's status,
            # once the notebook has run. Values logged asynchronously are written now.
            flush = getattr(fluent, "flush_async_logging", None)
            if flush is not None:
                flush()
            return None
        return original_end(*args, **kwargs)

    start_run._mlops_nb = True  # type: ignore[attr-defined]
    mlflow.start_run = fluent.start_run = start_run
    mlflow.end_run = fluent.end_run = end_run


def _job_start_run(job_run: Any, original_start: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A plain ``mlflow.start_run(**kwargs)`` while only the job's run is active: the first
    (not counting autologging's own) is the job's run, later ones nest under it."""
    from mlflow.utils.mlflow_tags import MLFLOW_AUTOLOGGING, MLFLOW_RUN_NOTE

    tags = dict(kwargs.get("tags") or {})
    experiment = kwargs.get("experiment_id")
    same_experiment = experiment is None or str(experiment) == _kernel.job_experiment_id
    if MLFLOW_AUTOLOGGING in tags:
        return job_run  # autologging's own run for a fit: the job's run is already there
    if same_experiment and not _kernel.job_run_handed_out:
        _kernel.job_run_handed_out = True
        if kwargs.get("description"):
            tags[MLFLOW_RUN_NOTE] = kwargs["description"]
        if tags:  # the job's run keeps the name the job gave it
            from mlflow import MlflowClient
            from mlflow.entities import RunTag

            MlflowClient().log_batch(job_run.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return job_run
    kwargs.setdefault("experiment_id", _kernel.job_experiment_id)
    return original_start(nested=True, **kwargs)


# ---------------------------------------------------------------- an mlops-nb run as MLflow's active run


def activate_run(tracking_uri: str, experiment_id: str, run_id: str) -> None:
    """Make the mlops-nb run ``run_id`` MLflow's active run in this process, so
    autologging and the notebook's own ``mlflow.*`` calls land in it. Raises whatever
    MLflow raises."""
    import mlflow

    if mlflow.get_tracking_uri() != tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    # The user's own mlflow.start_run() inside this run lands in its experiment.
    mlflow.set_experiment(experiment_id=experiment_id)
    top = mlflow.active_run()
    # In a job, the job's run may be active already (see enter_job).
    if top is None or top.info.run_id != run_id:
        mlflow.start_run(run_id=run_id, nested=top is not None)


def end_runs_down_to(run_id: str, status: str) -> bool:
    """End ``run_id`` through MLflow's fluent API if it is on this thread's active-run
    stack, ending first, with the same status, any run the user's code left open inside
    it; ``False`` (nothing ended) when it is not on the stack."""
    stack = stack_ids()
    if run_id not in stack:
        return False
    import mlflow

    for _ in range(len(stack) - stack.index(run_id)):
        mlflow.end_run(status)
    return True


#: The scikit-learn autologging configuration mlops-nb made (MLflow keeps one a process):
#: any other was made by the notebook's own mlflow.autolog() call, and is left alone.
_our_autolog_conf: dict[str, Any] | None = None


def set_sklearn_autolog(want: bool) -> None:
    """Turn mlops-nb's scikit-learn autologging on or off in this process; left alone
    when the notebook turned autologging on itself. Raises whatever MLflow raises."""
    global _our_autolog_conf
    import mlflow.sklearn
    from mlflow.utils import autologging_utils

    conf = autologging_utils.AUTOLOGGING_INTEGRATIONS.get("sklearn")
    if conf and conf is not _our_autolog_conf:
        # The notebook called mlflow.autolog() or mlflow.sklearn.autolog() itself (MLflow
        # registers an empty configuration for each integration it imports): its settings
        # win, and its fits log into whichever run is active.
        return
    if conf:
        # Our own configuration, paused or resumed: flipping its flag is read by the
        # patched methods at call time, and costs nothing, where reverting and re-applying
        # MLflow's ~700 patches costs ~50 ms a cell.
        conf["disable"] = not want
    elif want:
        quiet_autolog_warnings()
        # Models are registered explicitly (%mlops register); logging one per fit would
        # make every fit slow and fill the store.
        mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
        _our_autolog_conf = autologging_utils.AUTOLOGGING_INTEGRATIONS.get("sklearn")


# ---------------------------------------------------------------- autologging's warnings


def quiet_autolog_warnings() -> None:
    """Hide warnings raised while scikit-learn autologging computes its own training
    metrics and plots (for example scikit-learn's FutureWarning about ``log_loss``'s
    ``y_pred``, once a fit). MLflow patches scikit-learn's metric functions and shows their
    warnings as the user's own, so each fit printed one. Warnings of the user's code,
    the fit included, are left alone. Once per process."""
    from mlflow.sklearn import utils

    content = utils._log_specialized_estimator_content
    if getattr(content, "_mlops_nb", False):
        return

    @functools.wraps(content)
    def quiet_content(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return content(*args, **kwargs)

    quiet_content._mlops_nb = True  # type: ignore[attr-defined]
    utils._log_specialized_estimator_content = quiet_content
