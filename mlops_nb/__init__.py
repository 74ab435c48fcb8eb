"""mlops-nb: notebook-first MLOps on MLflow and papermill.

In a notebook::

    %load_ext mlops_nb
    %mlops track

The same calls from Python::

    import mlops_nb as mnb
    mnb.track()
    for step in range(100):
        mnb.log_metric("loss", loss, step=step)
    mnb.end()

Importing this package is cheap: MLflow (about 1.5 s to import) is loaded on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mlops_nb.monitoring.monitor import MonitorResult
    from mlops_nb.monitoring.profile import Profile
    from mlops_nb.registry import PendingApproval, PromotionResult, RegisteredVersion
    from mlops_nb.tables import Table
    from mlops_nb.tracking import Tracker

from mlops_nb.version import __version__

__all__ = [
    "__version__",
    "approve",
    "end",
    "flush",
    "get_tracker",
    "inference_log",
    "load",
    "log",
    "log_metric",
    "log_params",
    "models",
    "monitor",
    "pending_approvals",
    "promote",
    "register",
    "reject",
    "remove_alias",
    "runs",
    "set_alias",
    "status",
    "store_profile",
    "track",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (the registry REST API under /mlops-nb/api/)."""
    from mlops_nb.server import MlopsNbApp

    return [{"module": "mlops_nb", "app": MlopsNbApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (the model registry side panel)."""
    return [{"src": "labextension", "dest": "mlops-nb"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlops_nb``: register the ``%mlops`` magics.

    MLflow is not imported here: it imports on a background thread once the cell that
    loaded the extension ends (see :mod:`mlops_nb.magics.warmup`).
    """
    from mlops_nb.fluent import point_kernel_at_project
    from mlops_nb.magics import load

    load(ipython)
    point_kernel_at_project(get_tracker())  # the notebook's own mlflow.* calls go to the project's store


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext mlops_nb``: end open runs and remove the magics' hooks."""
    from mlops_nb.magics import unload

    unload(ipython)


def get_tracker() -> Tracker:
    """The tracker of this process (one per kernel or script), created on first use
    (it lives in :mod:`mlops_nb.tracking`)."""
    from mlops_nb.tracking import get_tracker as tracker_of_process

    return tracker_of_process()


def track(experiment: str | None = None, run_name: str | None = None, autolog: bool = True) -> str:
    """Start the run for this notebook (or script) session and return its id.

    The values of the notebook's ``parameters`` cell are logged as params; a previous
    session run is ended first.
    """
    caller = sys._getframe(1).f_globals
    handle = get_tracker().start_notebook_run(experiment, run_name, autolog, namespace=caller)
    return handle.run_id


def end(status: str = "FINISHED") -> str | None:
    """End the active run (flushing its metrics) and return its id."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        from mlops_nb.exceptions import UsageError

        raise UsageError(f"status must be FINISHED, FAILED or KILLED, not {status!r}")
    handle = get_tracker().end_run(None, status)
    return handle.run_id if handle else None


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Log a metric to the active run without waiting on the store (batched)."""
    get_tracker().log_metric(name, value, step)


def log_params(params: dict[str, Any] | None = None, **more: Any) -> None:
    """Log params on the active run; a changed value warns instead of raising."""
    get_tracker().log_params({**(params or {}), **more})


def log(**values: Any) -> None:
    """Log values by name: numbers as metrics, strings, booleans and None as params."""
    get_tracker().log_values(values)


def flush() -> int:
    """Write buffered metrics now; return how many could not be written."""
    return get_tracker().flush()


def status() -> Table:
    """Where runs go, why, and what is captured."""
    from mlops_nb.tables import status_table

    return status_table(get_tracker().status())


def runs(experiment: str | None = None, n: int = 20) -> Any:
    """The runs table widget: sort, filter, page through every run, compare.

    Shows ``n`` runs a page, of one experiment (default: all). Where widgets cannot
    render, it shows as a text or HTML table.
    """
    from mlops_nb.widgets.runs import runs_browser

    return runs_browser(get_tracker().client, experiment, n)


def register(
    model: Any,
    name: str,
    alias: str | None = None,
    input_example: Any = None,
    description: str | None = None,
    reference: Any = None,
) -> RegisteredVersion:
    """Log ``model`` under the active run (or a new one) and register a new version.

    The version's reference profile, which :func:`monitor` compares served requests
    with, is stored from ``reference`` (the training data, e.g. ``X_train``), else from
    ``input_example``. A profile that cannot be stored is one warning line, never an
    error: the version is registered (add the profile later with :func:`store_profile`).
    """
    tracker = get_tracker()
    version = tracker.register_model(model, name, alias, input_example, description)
    if version.pending:
        tracker.report(version.message)
    if reference is not None or input_example is not None:
        try:
            store_profile(version.name, version.version, model, reference, input_example)
        except Exception as exc:  # the version is registered: its profile can follow (store_profile)
            tracker.report(str(exc))
    return version


def store_profile(
    name: str,
    version: str | int,
    model: Any = None,
    reference: Any = None,
    input_example: Any = None,
    *,
    source: str = "",
) -> Profile:
    """Build and store the reference profile of ``name`` ``version``: per feature its
    distribution (and the distribution of ``model``'s predictions on ``reference``),
    from ``reference`` (a DataFrame, array, list of rows or dict of columns), else from
    ``input_example``. ``model`` defaults to the registered version itself. Replaces an
    earlier profile; returns the one stored.

    Raises an :class:`mlops_nb.exceptions.MlopsError` whose one line says the profile was
    not stored, why, and how to add one.
    """
    from mlops_nb.monitoring.profiles import store_profile as store  # shared with %mlops register

    tracker = get_tracker()
    return store(tracker.client, name, version, model, reference, input_example, source=source, config=tracker.config)


def set_alias(name: str, alias: str, version: str | int) -> str | None:
    """Point ``name@alias`` at ``version`` (recorded in the audit trail); return the old version."""
    from mlops_nb.registry import set_alias as _set_alias

    return _set_alias(get_tracker().client, name, alias, version, why="mlops_nb.set_alias")


def remove_alias(name: str, alias: str) -> str:
    """Remove ``name@alias``; return the version it pointed at."""
    from mlops_nb.registry import remove_alias as _remove_alias

    return _remove_alias(get_tracker().client, name, alias, why="mlops_nb.remove_alias")


def promote(
    name: str,
    metric: str,
    from_alias: str = "challenger",
    to_alias: str = "champion",
    min_delta: float = 0.0,
    lower_is_better: bool = False,
) -> PromotionResult:
    """Move ``to_alias`` to the ``from_alias`` version only if it beats the holder on ``metric``.

    Raises :class:`mlops_nb.registry.PromotionRefusedError` (with both values) otherwise.
    When ``to_alias`` is protected (the project's ``approval_aliases``, or the model's own
    setting) nothing moves: the promotion waits for a person, the result's ``pending`` is
    True and its message says who may approve it and how (:func:`approve`).
    """
    from mlops_nb.registry import promote as _promote

    tracker = get_tracker()
    return _promote(
        tracker.client,
        name,
        metric,
        from_alias,
        to_alias,
        min_delta,
        lower_is_better,
        approval=tracker.config.approval_aliases,
    )


def pending_approvals(name: str | None = None) -> list[PendingApproval]:
    """Promotions waiting for a person (of model ``name``, else all), each with its evidence."""
    from mlops_nb.registry import pending_approvals as _pending

    return _pending(get_tracker().client, name)


def approve(name: str, version: str | int, alias: str = "champion", *, reason: str = "") -> PromotionResult:
    """Approve the waiting promotion of ``name`` ``version`` to ``alias``: the alias moves
    now, and the audit trail records who approved it and ``reason``."""
    from mlops_nb.registry import approve as _approve

    return _approve(get_tracker().client, name, str(version), alias, reason=reason)


def reject(name: str, version: str | int, alias: str = "champion", *, reason: str) -> PendingApproval:
    """Reject the waiting promotion of ``name`` ``version`` to ``alias`` (nothing moves);
    ``reason`` is required and goes in the audit trail with who rejected it."""
    from mlops_nb.registry import reject as _reject

    return _reject(get_tracker().client, name, str(version), alias, reason=reason)


def monitor(
    model_uri: str,
    since: Any = "24h",
    until: Any = None,
    min_rows: int | None = None,
    log: bool = True,
) -> MonitorResult:
    """Check the requests ``model_uri`` (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)
    answered in the window against the version's reference profile: drift per feature,
    data quality, accuracy where labels were fed back, and a verdict with its reason.

    ``since``/``until``: a datetime, ISO-8601 text or a time ago (``"24h"``); ``min_rows``:
    fewer rows than this is "insufficient data" (default: the policy's). With ``log``, the
    result is logged as a monitor run (metrics, JSON summary, HTML report), as
    ``mlops-nb monitor`` does. ``%mlops monitor`` shows the same result as a widget.
    """
    from mlops_nb.monitoring.monitor import MonitorPolicy
    from mlops_nb.monitoring.monitor import monitor as _monitor

    tracker = get_tracker()
    policy = MonitorPolicy(min_rows=min_rows) if min_rows is not None else None
    return _monitor(tracker.client, tracker.config, model_uri, since=since, until=until, policy=policy, log=log)


def load(uri: str) -> Any:
    """Load ``models:/NAME@ALIAS`` (or ``/VERSION``) in its native flavor."""
    model, _ = get_tracker().load_model(uri)
    return model


def inference_log(
    name: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
    project: str | None = None,
) -> pd.DataFrame:
    """The project's request log as a DataFrame, oldest first: the requests its model
    servers answered (of model ``name``, else all), each with its version, status,
    latency, inputs, outputs and the label fed back for it.

    ``since``/``until``: a datetime, ISO-8601 text or a time ago (``"1h"``, ``"30m"``);
    ``limit`` keeps the newest that many; ``project``: a folder of another project.
    """
    from mlops_nb.config import resolve_config
    from mlops_nb.serving.requestlog import log_url, read_log

    config = resolve_config(project) if project is not None else get_tracker().config
    return read_log(log_url(config), name, since=since, until=until, limit=limit)


def models(name: str | None = None) -> Any:
    """The registry browser widget: models, versions, aliases, metrics and lineage."""
    from mlops_nb.widgets.models import RegistryBrowser

    return RegistryBrowser(get_tracker().client, name)
