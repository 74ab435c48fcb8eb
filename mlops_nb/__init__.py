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

    from mlops_nb.registry import PromotionResult, RegisteredVersion
    from mlops_nb.tables import Table
    from mlops_nb.tracking import Tracker

from mlops_nb.version import __version__

__all__ = [
    "__version__",
    "end",
    "flush",
    "get_tracker",
    "inference_log",
    "load",
    "log",
    "log_metric",
    "log_params",
    "models",
    "promote",
    "register",
    "remove_alias",
    "runs",
    "set_alias",
    "status",
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
) -> RegisteredVersion:
    """Log ``model`` under the active run (or a new one) and register a new version."""
    return get_tracker().register_model(model, name, alias, input_example, description)


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
    """
    from mlops_nb.registry import promote as _promote

    return _promote(get_tracker().client, name, metric, from_alias, to_alias, min_delta, lower_is_better)


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
