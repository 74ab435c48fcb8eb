"""Run queries shared by tracking, the registry and the jobs: paging through MLflow's searches,
the experiments a project holds, runs as listings show them, and the runs left RUNNING by
processes that are gone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, NotFoundError, StoreError, UsageError, one_line
from mlops_nb.provenance import process_alive
from mlops_nb.tags import ENDED_BY, HOST, NOTEBOOK, PID, PID_START

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = [
    "KILLED",
    "RunRow",
    "RunsPage",
    "collect_pages",
    "end_dead_runs",
    "experiment_ids",
    "find_dead_runs",
    "list_runs",
    "metric_series",
    "read_run",
    "run_row",
    "runs_page",
]

KILLED = "KILLED"


@dataclass(frozen=True)
class RunRow:
    """One run as listings show it."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_time: datetime | None
    duration_s: float | None
    notebook: str
    params: dict[str, str]
    metrics: dict[str, float]


def experiment_ids(client: MlflowClient, names: Iterable[str] | None) -> dict[str, str]:
    """Map experiment id -> name for the named experiments (or all active ones)."""
    if names is not None:
        out = {}
        for name in names:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                known = sorted(e for e in experiment_ids(client, None).values())
                raise NotFoundError(
                    f"no experiment named {name!r}; known experiments: {', '.join(known) or 'none yet'}"
                )
            out[exp.experiment_id] = exp.name
        return out
    out = {}
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        out.update({e.experiment_id: e.name for e in page})
        token = page.token
        if not token:
            return out


def run_row(run: Any, experiments: Mapping[str, str]) -> RunRow:
    """An MLflow run as listings show it; ``experiments`` maps experiment id -> name."""
    info, data = run.info, run.data
    start = datetime.fromtimestamp(info.start_time / 1000, tz=timezone.utc) if info.start_time else None
    duration = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    return RunRow(
        run_id=info.run_id,
        name=info.run_name or "",
        experiment=experiments.get(info.experiment_id, info.experiment_id),
        status=info.status,
        start_time=start,
        duration_s=duration,
        notebook=data.tags.get(NOTEBOOK, data.tags.get("mlflow.source.name", "")),
        params=dict(data.params),
        metrics=dict(data.metrics),
    )


def read_run(client: MlflowClient, run_id: str) -> RunRow:
    """One run as listings show it (status, duration, last value of each metric), as
    the store has it now: what a finished cell's summary line says."""
    try:
        run = client.get_run(run_id)
        experiment = client.get_experiment(run.info.experiment_id)
    except Exception as exc:
        raise StoreError(
            f"cannot read run {run_id} from {client.tracking_uri}: {one_line(exc, with_type=True)}"
        ) from None
    return run_row(run, {experiment.experiment_id: experiment.name})


@dataclass(frozen=True)
class RunsPage:
    """One page of runs and the token of the next page (``None`` on the last page)."""

    rows: list[RunRow]
    next_token: str | None


def runs_page(
    client: MlflowClient,
    experiments: Iterable[str] | None = None,
    filter_string: str | None = None,
    order_by: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    resolved: Mapping[str, str] | None = None,
) -> RunsPage:
    """One page of runs, filtered and sorted by the store: pages go on past 1,000.

    ``filter_string`` and ``order_by`` use MLflow's search syntax (for example
    ``metrics.accuracy > 0.9``, ``params.lr = '0.1'``, ``metrics.accuracy DESC``).
    ``resolved`` (experiment id -> name) skips looking the experiments up again.
    """
    if not 1 <= page_size <= 1000:
        raise UsageError(f"page size must be between 1 and 1000, not {page_size}")
    ids = resolved if resolved is not None else experiment_ids(client, experiments)
    if not ids:
        return RunsPage([], None)
    try:
        page = client.search_runs(
            list(ids),
            filter_string=filter_string or "",
            order_by=[order_by] if order_by else ["attributes.start_time DESC"],
            max_results=page_size,
            page_token=page_token,
        )
    except Exception as exc:
        if getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            raise UsageError(
                f"cannot search runs with filter {filter_string!r} and order {order_by!r}: "
                f"{one_line(exc, with_type=True)}; write e.g. metrics.accuracy > 0.9 or params.lr = '0.1'"
            ) from None
        raise StoreError(f"cannot list runs from {client.tracking_uri}: {one_line(exc, with_type=True)}") from None
    return RunsPage([run_row(run, ids) for run in page], page.token or None)


def collect_pages(
    fetch: Callable[[int, str | None], tuple[list[Any], str | None]], max_results: int
) -> tuple[list[Any], bool]:
    """Gather up to ``max_results`` rows from ``fetch(page_size, token) -> (rows, next_token)``.

    Returns the rows and whether more exist: pages go on past MLflow's 1,000.
    """
    rows: list[Any] = []
    token = None
    while len(rows) < max_results:
        page, token = fetch(min(1000, max_results - len(rows)), token)
        rows.extend(page)
        if not token:
            return rows, False
    return rows, True


def list_runs(
    client: MlflowClient,
    experiments: Iterable[str] | None = None,
    max_results: int = 20,
) -> tuple[list[RunRow], bool]:
    """The newest ``max_results`` runs of the named experiments (default: all).

    Pages through MLflow's results (never the silent 1,000 cut) and returns the rows
    and whether more runs exist.
    """
    if max_results < 1:
        raise UsageError(f"-n must be at least 1, not {max_results}")
    try:
        names = list(experiments) if experiments is not None else None

        def fetch(size: int, token: str | None) -> tuple[list[RunRow], str | None]:
            page = runs_page(client, names, page_size=size, page_token=token)
            return page.rows, page.next_token

        return collect_pages(fetch, max_results)
    except MlopsError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot list runs from {client.tracking_uri}: {one_line(exc, with_type=True)}") from None


def metric_series(
    client: MlflowClient, run_ids: Iterable[str], keys: Iterable[str]
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The histories of the metrics that some run logged at more than one step.

    Returns ``key -> run id -> [(step, value), ...]`` in step order (the last value
    logged at a step wins, as in MLflow's UI); a metric every run logged at one step
    only is left out: it is a single value, not a series. A run without the metric is
    absent from its mapping.
    """
    ids = list(run_ids)
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key in keys:
        per_run: dict[str, list[tuple[int, float]]] = {}
        for run_id in ids:
            try:
                history = client.get_metric_history(run_id, key)
            except Exception as exc:
                raise StoreError(
                    f"cannot read metric {key!r} of run {run_id}: {one_line(exc, with_type=True)}"
                ) from None
            by_step = {m.step: m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
            if by_step:
                per_run[run_id] = sorted(by_step.items())
        if any(len(points) > 1 for points in per_run.values()):
            out[key] = per_run
    return out


# ---------------------------------------------------------------- runs of dead processes


def find_dead_runs(client: MlflowClient, host: str, page_size: int = 1000) -> list[tuple[str, int]]:
    """(run id, pid) of the runs of ``host`` left RUNNING by processes that are gone.

    Every candidate is collected before any is marked: marking runs while paging through
    a filter on their status would shift the pages and skip runs.
    """
    ids = list(experiment_ids(client, None))
    dead: list[tuple[str, int]] = []
    token = None
    while ids:
        page = client.search_runs(
            ids,
            filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST}` = '{host}'",
            max_results=page_size,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            try:
                pid = int(tags.get(PID, ""))
            except ValueError:
                continue
            if not process_alive(pid, tags.get(PID_START)):
                dead.append((run.info.run_id, pid))
        token = page.token
        if not token:
            break
    return dead


def end_dead_runs(client: MlflowClient, host: str, report: Callable[[str], None], page_size: int = 1000) -> list[str]:
    """Mark KILLED the runs of ``host`` left RUNNING by processes that are gone; return
    their ids. Failures are reported through ``report``, never raised."""
    if "'" in host or "\\" in host:
        return []
    found: list[str] = []
    try:
        for run_id, pid in find_dead_runs(client, host, page_size):
            client.set_tag(run_id, ENDED_BY, f"recovery: process {pid} on {host} was gone")
            client.set_terminated(run_id, KILLED)
            found.append(run_id)
    except Exception as exc:
        report(f"warning: could not check for runs left by dead kernels: {one_line(exc, with_type=True)}")
        return found
    if found:
        report(f"marked {len(found)} run(s) left RUNNING by a dead kernel as KILLED")
    return found
