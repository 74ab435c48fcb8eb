"""The monitor: one window of a served version's request log against its reference
profile, judged by a policy, recorded as an MLflow run.

``monitor()`` is the one piece of logic behind ``mlops-nb monitor``, ``%mlops monitor``,
the panel and a schedule's monitor step. It reads the request log (never the training
data: the profile stands for it), compares the window with
:func:`~mlops_nb.monitoring.drift.compare`, scores the labels fed back, and gives one of
:data:`VERDICTS`:

- ``insufficient data``: fewer than ``min_rows`` rows; not an alarm (exit code 0).
- ``degraded``: at least the label floor of labelled rows (``min_labelled``, at most
  ``min_rows``: labels arrive later and rarer than requests) and accuracy more than
  ``max_metric_drop`` below the version's own run metric ``accuracy`` (regression: rmse
  or mae more than that ratio above the run's). Degradation wins over drift: it is the
  harm drift only warns of.
- ``drift``: the share of drifted features reaches ``drift_share`` (Evidently's dataset
  rule: half of them by default), or the predictions drifted.
- ``healthy`` otherwise.

Each monitor run (kind ``monitor``, experiment ``monitoring``, named ``monitor NAME vN``)
holds the verdict in tags, the numbers as metrics, the window and policy as params,
``monitor.json`` and a self-contained ``report.html``; the version's tag
:data:`~mlops_nb.tags.MONITOR_LAST` summarises the newest one for the panel and the
approval evidence.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, StoreError, UsageError, one_line
from mlops_nb.monitoring.drift import DriftResult, compare
from mlops_nb.monitoring.profiles import EXPERIMENT, load_profile, monitoring_experiment
from mlops_nb.monitoring.report import render_report
from mlops_nb.monitoring.window import Window, read_window
from mlops_nb.registry import VERSION_PATTERN, get_version, parse_model_uri, resolve_alias, tagged_metrics
from mlops_nb.serving.requestlog import log_url, parse_time, read_log
from mlops_nb.tags import KIND, MONITOR_ALIAS, MONITOR_LAST, MONITOR_MODEL, MONITOR_VERDICT, MONITOR_VERSION

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops_nb.config import ProjectConfig
    from mlops_nb.monitoring.profile import Profile

__all__ = [
    "MONITOR_FILE",
    "REPORT_FILE",
    "VERDICTS",
    "MonitorPolicy",
    "MonitorResult",
    "drifted_share",
    "judge",
    "last_verdict",
    "metric_key",
    "monitor",
    "monitor_history",
    "performance",
    "reference_metrics",
]

VERDICTS = ("healthy", "drift", "degraded", "insufficient data")
#: The artifacts of a monitor run.
MONITOR_FILE = "monitor.json"
REPORT_FILE = "report.html"
#: The note (description) MLflow shows for a run: the verdict's reason goes there.
_NOTE = "mlflow.note.content"
#: MLflow's limit of a tag value on a model version, kept well under.
_TAG_LIMIT = 4000
_PARAM_LIMIT = 6000
_METRIC_BAD = re.compile(r"[^\w.\- ]")
Clock = Callable[[], float]


@dataclass
class MonitorPolicy:
    """What the monitor calls an alarm.

    ``min_rows``: fewer rows is ``insufficient data``. ``drift_share``: the share of
    drifted features that makes the window drift. ``max_metric_drop``: how far accuracy
    may fall below the version's run metric (regression: how much rmse/mae may rise, as
    a ratio). ``min_labelled``: the labelled rows needed to judge accuracy, capped at
    ``min_rows``. Out-of-range values are a :class:`UsageError`.
    """

    min_rows: int = 100
    drift_share: float = 0.5
    max_metric_drop: float = 0.05
    min_labelled: int = 30

    def __post_init__(self) -> None:
        for name in ("min_rows", "min_labelled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not _number(self.drift_share) or not 0.0 < self.drift_share <= 1.0:
            raise UsageError(f"drift_share must be a fraction above 0 and at most 1, not {self.drift_share!r}")
        if not _number(self.max_metric_drop) or self.max_metric_drop < 0:
            raise UsageError(f"max_metric_drop must be a number of at least 0, not {self.max_metric_drop!r}")

    @property
    def labelled_floor(self) -> int:
        """The labelled rows needed before accuracy can make a window ``degraded``."""
        return min(self.min_labelled, self.min_rows)

    def to_dict(self) -> dict[str, Any]:
        """The policy as JSON-ready values."""
        return asdict(self)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class MonitorResult:
    """One monitor verdict on one window of one version (see the module's docstring).

    ``since``/``until``/``when`` are ISO-8601 UTC; ``performance`` is ``{"metric",
    "value", "reference", "rows"}`` when labelled rows met predictions; ``run_id`` and
    ``report_uri`` (``runs:/RUN_ID/report.html``) are ``None`` when nothing was logged.
    ``requests`` counts the version's answered requests, ``unreadable`` those whose
    body could not be read; ``notes`` are one-line remarks (unreadable bodies, columns
    the requests lacked).
    """

    name: str
    version: str
    alias: str | None
    verdict: str
    reason: str
    rows: int
    labelled: int
    since: str | None
    until: str
    drift: DriftResult | None
    performance: dict[str, Any] | None
    run_id: str | None = None
    report_uri: str | None = None
    requests: int = 0
    unreadable: int = 0
    when: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 for ``healthy`` or ``insufficient data``, 1 for ``drift`` or ``degraded``."""
        return 1 if self.verdict in ("drift", "degraded") else 0

    @property
    def share(self) -> float | None:
        """The drifted share of the profiled features (missing ones count as drifted);
        ``None`` when there was no drift check."""
        return drifted_share(self.drift)[1] if self.drift is not None else None

    @property
    def drifted(self) -> list[str]:
        """The drifted features' names (features the requests lack next, ``prediction``
        last when the predictions drifted)."""
        if self.drift is None:
            return []
        names = drifted_share(self.drift)[0]
        if self.drift.prediction is not None and self.drift.prediction.drifted:
            names.append("prediction")
        return names

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values (the drift result as its own dict)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "drift"}
        out["drift"] = self.drift.to_dict() if self.drift is not None else None
        out["drifted"] = self.drifted
        out["share"] = self.share
        out["exit_code"] = self.exit_code
        return _json_ready(out)

    def summary(self) -> dict[str, Any]:
        """The :data:`~mlops_nb.tags.MONITOR_LAST` summary: verdict, reason, drifted, when, run_id, rows."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "drifted": self.drifted,
            "when": self.when,
            "run_id": self.run_id,
            "rows": self.rows,
        }


def _json_ready(value: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has neither), numpy scalars as Python's."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- the monitor


def monitor(
    client: MlflowClient,
    config: ProjectConfig,
    model_uri: str,
    *,
    since: object = "24h",
    until: object = None,
    policy: MonitorPolicy | None = None,
    log: bool = True,
    now: datetime | float | Clock | None = None,
) -> MonitorResult:
    """Judge the window ``since``..``until`` of ``model_uri``'s request log.

    ``model_uri`` is ``models:/NAME@ALIAS`` (the version the alias points at now) or
    ``models:/NAME/VERSION``; ``since``/``until`` are ISO-8601 times, times ago
    (``90s``, ``30m``, ``24h``, ``7d``), datetimes or ``None`` (no bound; ``until``
    defaults to now). ``now`` is the clock: a datetime, epoch seconds, or a callable
    giving epoch seconds (default :func:`time.time`). With ``log`` the verdict is
    recorded as a monitor run and on the version's :data:`~mlops_nb.tags.MONITOR_LAST`.

    Raises
    ------
    UsageError
        A bad model reference, time, or window (``since`` after ``until``).
    NotFoundError
        No such model, version or alias; or the version has no reference profile (the
        line says how to add one).
    StoreError
        The request log or the tracking store cannot be read or written.
    """
    policy = policy if policy is not None else MonitorPolicy()
    started = time.monotonic()
    now_s = _clock(now)
    name, alias, number = parse_model_uri(model_uri)
    low = parse_time(since, "since", now=now_s)
    high = parse_time(until, "until", now=now_s)
    high = now_s if high is None else high
    if low is not None and low > high:
        raise UsageError(f"the window is empty: since ({_iso(low)}) is after until ({_iso(high)})")
    mv = resolve_alias(client, name, alias) if alias else get_version(client, name, number or "")
    version = str(mv.version)
    profile = load_profile(client, name, version)
    frame = read_log(log_url(config), name, since=_utc(low), until=_utc(high))
    window = read_window(frame, version, profile.columns)
    result = judge(profile, window, policy, reference_metrics(client, mv))
    result.name, result.version, result.alias = name, version, alias
    result.since, result.until, result.when = _iso(low), _iso(high) or "", _iso(now_s) or ""
    result.reason = _with_window(result, window)
    if log:
        _log_run(client, config, result, now_s, started)
    return result


def _clock(now: datetime | float | Clock | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    if callable(now):
        return float(now())
    if _number(now):
        return float(now)
    raise UsageError(f"now must be a datetime, epoch seconds or a clock function, not {now!r}")


def _utc(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds is not None else None


def _iso(seconds: float | None) -> str | None:
    stamp = _utc(seconds)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z") if stamp is not None else None


def reference_metrics(client: MlflowClient, mv: ModelVersion) -> dict[str, float]:
    """The version's own metrics: its source run's, else the snapshot tagged at registration."""
    metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # the run was deleted: the registration's snapshot still says
            metrics = {}
    if not metrics:
        metrics = tagged_metrics(mv.tags or {}) or {}
    return {k: v for k, v in metrics.items() if _number(v)}


def judge(
    profile: Profile, window: Window, policy: MonitorPolicy, metrics: Mapping[str, float] | None = None
) -> MonitorResult:
    """The verdict on ``window`` against ``profile`` under ``policy`` (``metrics``: the
    version's own, for the accuracy reference). The result's name, version and times
    are left for the caller to fill."""
    result = MonitorResult(
        name="",
        version="",
        alias=None,
        verdict="insufficient data",
        reason="",
        rows=window.rows,
        labelled=window.labelled,
        since=None,
        until="",
        drift=None,
        performance=None,
        requests=window.requests,
        unreadable=window.unreadable,
        policy=policy.to_dict(),
        notes=_window_notes(window),
    )
    if window.rows < policy.min_rows:
        return result
    predictions = window.known_predictions() if profile.prediction is not None else []
    result.drift = compare(profile, window.inputs, predictions or None)
    if result.drift.missing_columns:
        shown = ", ".join(result.drift.missing_columns[:10])
        result.notes.append(f"columns of the reference missing from the requests (counted as drifted): {shown}")
    if result.drift.extra_columns:
        shown = ", ".join(result.drift.extra_columns[:10])
        result.notes.append(f"columns in the requests the reference does not have (not checked): {shown}")
    result.performance = performance(window.predictions, window.labels, metrics or {})
    result.verdict, result.reason = _verdict(result, policy)
    return result


def _window_notes(window: Window) -> list[str]:
    notes = []
    if window.unreadable:
        why = "; ".join(window.problems)
        notes.append(
            f"{window.unreadable} of {window.requests} requests could not be read ({why}); their rows are left out"
        )
    if window.unmatched_predictions:
        notes.append(f"{window.unmatched_predictions} rows have no readable prediction (one a row) in their response")
    if window.unmatched_labels:
        notes.append(f"{window.unmatched_labels} rows got feedback that is not one label a row; it is left out")
    return notes


def drifted_share(drift: DriftResult) -> tuple[list[str], float]:
    """The drifted features (those the requests lack last) and their share of the
    profiled ones. A profiled column the requests lack is the most drifted of all: a
    window of none of the reference's columns is drift, not a healthy "0 of 0"."""
    names = list(drift.drifted) + list(drift.missing_columns)
    total = len(drift.features) + len(drift.missing_columns)
    return names, len(names) / total if total else 0.0


def _verdict(result: MonitorResult, policy: MonitorPolicy) -> tuple[str, str]:
    """(verdict, reason) of a window with enough rows."""
    drift = result.drift
    assert drift is not None
    drifted, share = drifted_share(drift)
    lost = drift.missing_columns
    named = f" ({', '.join(drifted[:8])}{', ...' if len(drifted) > 8 else ''})" if drifted else ""
    features = f"{len(drifted)} of {len(drift.features) + len(lost)} features drifted{named}"
    if lost:
        features += f", {len(lost)} of them missing from the requests"
    rule = f"the policy's drift share is {policy.drift_share:.0%}"
    if drift.prediction is None:
        predictions = "predictions not profiled"
    else:
        predictions = "the predictions drifted" if drift.prediction.drifted else "predictions stable"
    perf = result.performance
    accuracy = _performance_text(perf) if perf else "no labels fed back"
    if perf and perf["rows"] < policy.labelled_floor:
        accuracy += f" (under {policy.labelled_floor} labelled rows: not judged)"
    elif perf and _degraded(perf, policy.max_metric_drop):
        return "degraded", f"{accuracy}, more than the policy's {policy.max_metric_drop:g}; {features}; {predictions}"
    if share >= policy.drift_share or (drift.prediction is not None and drift.prediction.drifted):
        return "drift", f"{features} ({rule}); {predictions}; {accuracy}"
    return "healthy", f"{features} ({rule}); {predictions}; {accuracy}"


def _with_window(result: MonitorResult, window: Window) -> str:
    """The reason with the window it is about (and, for too few rows, what to do)."""
    span = f"from {result.since} to {result.until}" if result.since else f"up to {result.until}"
    if result.verdict == "insufficient data":
        plural = "s" if window.unreadable > 1 else ""
        unread = f" ({window.unreadable} unreadable request{plural} left out)" if window.unreadable else ""
        need = result.policy.get("min_rows")
        return (
            f"only {result.rows} rows of {result.name} v{result.version} {span}{unread}, fewer than the {need} "
            "needed: wait for more traffic, widen --since, or lower --min-rows"
        )
    return f"{result.rows} rows {span}: {result.reason}"


# ---------------------------------------------------------------- performance


def performance(
    predictions: Sequence[Any], labels: Sequence[Any], metrics: Mapping[str, float]
) -> dict[str, Any] | None:
    """Accuracy (classification) or rmse/mae (regression) of the rows that have both a
    prediction and a label, beside the version's own metric of that name (``reference``,
    ``None`` when its run has none). ``None`` when no row has both.

    The task is the one the version's run metrics name (``accuracy``; ``rmse``/``mae``),
    else guessed from the values: whole numbers, text or booleans are classes. The
    reference is the run's metric of that name, else its held-out twin (``test_accuracy``,
    ``eval_accuracy``, ...: see :func:`reference_metric`).
    """
    pairs = [(p, y) for p, y in zip(predictions, labels) if p is not None and y is not None]
    if not pairs:
        return None
    if _is_classification(metrics, pairs):
        value = sum(1 for p, y in pairs if _same(p, y)) / len(pairs)
        return _performance("accuracy", value, metrics, len(pairs))
    numbers = [(float(p), float(y)) for p, y in pairs if _numeric(p) and _numeric(y)]
    if not numbers:
        return None
    metric = "mae" if reference_metric(metrics, "mae") and not reference_metric(metrics, "rmse") else "rmse"
    errors = [p - y for p, y in numbers]
    if metric == "mae":
        value = sum(abs(e) for e in errors) / len(errors)
    else:
        value = math.sqrt(sum(e * e for e in errors) / len(errors))
    return _performance(metric, value, metrics, len(numbers))


#: Where a version's run keeps its held-out score of a metric, in the order looked for:
#: the plain name first, then what training notebooks commonly log.
REFERENCE_PREFIXES = ("", "test_", "eval_", "val_", "validation_", "holdout_")


def reference_metric(metrics: Mapping[str, float], metric: str) -> str | None:
    """The key of ``metrics`` that holds the version's own ``metric``: the plain name, else
    ``test_``/``eval_``/``val_``/``validation_``/``holdout_`` + name; ``None`` when none."""
    for prefix in REFERENCE_PREFIXES:
        if prefix + metric in metrics:
            return prefix + metric
    return None


def _performance(metric: str, value: float, metrics: Mapping[str, float], rows: int) -> dict[str, Any]:
    key = reference_metric(metrics, metric)
    reference = metrics[key] if key is not None else None
    return {"metric": metric, "value": value, "reference": reference, "reference_metric": key, "rows": rows}


def _is_classification(metrics: Mapping[str, float], pairs: list[tuple[Any, Any]]) -> bool:
    if reference_metric(metrics, "accuracy"):
        return True
    if reference_metric(metrics, "rmse") or reference_metric(metrics, "mae"):
        return False
    return all(_class_like(p) and _class_like(y) for p, y in pairs)


def _class_like(value: Any) -> bool:
    if isinstance(value, str | bool | int):
        return True
    return isinstance(value, float) and value.is_integer()


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _same(prediction: Any, label: Any) -> bool:
    """Equal, or the same number written two ways (1 and 1.0, "1" and 1)."""
    if prediction == label:
        return True
    if _numeric(prediction) and _numeric(label):
        return float(prediction) == float(label)
    return str(prediction) == str(label)


def _degraded(perf: Mapping[str, Any], max_drop: float) -> bool:
    reference = perf.get("reference")
    if reference is None or not _number(reference):
        return False
    if perf["metric"] == "accuracy":
        return bool(perf["value"] < reference - max_drop)
    return bool(perf["value"] > reference * (1.0 + max_drop))


def _performance_text(perf: Mapping[str, Any]) -> str:
    text = f"{perf['metric']} {perf['value']:.3f} on {perf['rows']} labelled rows"
    if perf.get("reference") is None:
        return text + f" (the version's run logged no {perf['metric']} to compare with)"
    return text + f" against {perf['reference']:.3f} at training ({perf.get('reference_metric') or perf['metric']})"


# ---------------------------------------------------------------- recording


def metric_key(text: str) -> str:
    """``text`` as a metric name MLflow accepts (other characters as ``_``)."""
    return _METRIC_BAD.sub("_", text)[:200] or "_"


def _metrics(result: MonitorResult) -> dict[str, float]:
    values: dict[str, float] = {
        "rows": result.rows,
        "labelled": result.labelled,
        "requests": result.requests,
        "unreadable_requests": result.unreadable,
    }
    if result.drift is not None:
        names, share = drifted_share(result.drift)
        values["drifted_features"] = len(names)
        values["drift_share"] = share
        for f in result.drift.features:
            values[f"drift.{metric_key(f.feature)}"] = f.score
            if f.psi is not None:
                values[f"psi.{metric_key(f.feature)}"] = f.psi
        pred = result.drift.prediction
        if pred is not None:
            values["prediction_drift"] = pred.score
            values["prediction_drifted"] = float(pred.drifted)
            if pred.psi is not None:
                values["prediction_psi"] = pred.psi
    if result.performance is not None:
        values[result.performance["metric"]] = result.performance["value"]
        values["labelled_scored"] = result.performance["rows"]
    return {k: float(v) for k, v in values.items() if _number(v)}


def _params(result: MonitorResult) -> dict[str, str]:
    params = {
        "model": f"{result.name}/{result.version}",
        "alias": result.alias or "",
        "since": result.since or "",
        "until": result.until,
        **{k: str(v) for k, v in result.policy.items()},
        "drifted": json.dumps(result.drifted),
    }
    return {k: v[:_PARAM_LIMIT] for k, v in params.items()}


def _log_run(
    client: MlflowClient, config: ProjectConfig | None, result: MonitorResult, now_s: float, started: float
) -> None:
    """Record ``result`` as a monitor run and on its version's MONITOR_LAST tag (fills
    its ``run_id`` and ``report_uri``)."""
    from mlflow.entities import Metric, Param

    start_ms = int(now_s * 1000)
    tags = {
        KIND: "monitor",
        MONITOR_MODEL: result.name,
        MONITOR_VERSION: result.version,
        MONITOR_VERDICT: result.verdict,
        _NOTE: result.reason,
    }
    if result.alias:
        tags[MONITOR_ALIAS] = result.alias
    try:
        exp_id = monitoring_experiment(client, config)
        run = client.create_run(
            exp_id, start_time=start_ms, run_name=f"monitor {result.name} v{result.version}", tags=tags
        )
        run_id = result.run_id = run.info.run_id
        result.report_uri = f"runs:/{run_id}/{REPORT_FILE}"
        metrics = [Metric(k, v, start_ms, 0) for k, v in _metrics(result).items()]
        params = [Param(k, v) for k, v in _params(result).items()]
        for i in range(0, max(len(metrics), 1), 900):  # MLflow takes 1,000 metrics a batch
            client.log_batch(run_id, metrics=metrics[i : i + 900], params=params if i == 0 else [])
        client.log_text(run_id, json.dumps(result.to_dict(), indent=1), MONITOR_FILE)
        client.log_text(run_id, render_report(result), REPORT_FILE)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        client.set_terminated(run_id, "FINISHED", end_time=start_ms + elapsed_ms)
        client.set_model_version_tag(result.name, result.version, MONITOR_LAST, _last_tag(result))
    except MlopsError:
        raise
    except Exception as exc:
        raise StoreError(
            f"cannot record the monitor run of {result.name} v{result.version}: {one_line(exc)} "
            "(run with --no-log to see the verdict without recording it)"
        ) from None


def _last_tag(result: MonitorResult) -> str:
    """The MONITOR_LAST summary as JSON under MLflow's tag limit (drifted names cut first)."""
    summary = result.summary()
    summary["reason"] = summary["reason"][:1000]
    text = json.dumps(summary)
    while len(text) > _TAG_LIMIT and summary["drifted"]:
        summary["drifted"] = summary["drifted"][: len(summary["drifted"]) // 2]
        text = json.dumps(summary)
    return text


# ---------------------------------------------------------------- reading back


def last_verdict(client: MlflowClient, name: str, version: str) -> dict[str, Any] | None:
    """The newest monitor verdict of a version (its MONITOR_LAST tag, parsed), or ``None``
    when it was never monitored. ``NotFoundError`` for no such version."""
    mv = get_version(client, name, str(version))
    text = (mv.tags or {}).get(MONITOR_LAST)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def monitor_history(
    client: MlflowClient, name: str, version: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest ``limit`` monitor runs of model ``name`` (of one ``version`` if given),
    newest first: ``{run_id, when, version, alias, verdict, reason, drifted, share, rows,
    labelled, accuracy, report_uri}`` (``share``/``accuracy`` ``None`` when not measured)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UsageError(f"limit must be a whole number of at least 1, not {limit!r}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    clauses = [f"tags.`{KIND}` = 'monitor'"]
    exact = _quoted(name)
    if exact is not None:
        clauses.append(f"tags.`{MONITOR_MODEL}` = {exact}")
    if version is not None:
        if not re.fullmatch(VERSION_PATTERN, str(version)):
            raise UsageError(f"version must be a positive whole number such as 3, not {str(version)[:40]!r}")
        clauses.append(f"tags.`{MONITOR_VERSION}` = '{version}'")
    runs = client.search_runs(
        [exp.experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"], max_results=limit
    )
    return [_history_row(run) for run in runs if run.data.tags.get(MONITOR_MODEL) == name]


def _quoted(text: str) -> str | None:
    """``text`` as a filter string literal, or ``None`` when it holds both quote marks
    (MLflow's filter has no escape: such a name is matched after the search)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return None


def _history_row(run: Any) -> dict[str, Any]:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    try:
        drifted = json.loads(params.get("drifted", "[]"))
    except ValueError:  # cut to MLflow's param limit
        drifted = []
    return {
        "run_id": run.info.run_id,
        "when": _iso(run.info.start_time / 1000) if run.info.start_time else None,
        "version": tags.get(MONITOR_VERSION),
        "alias": tags.get(MONITOR_ALIAS),
        "verdict": tags.get(MONITOR_VERDICT),
        "reason": tags.get(_NOTE, ""),
        "drifted": [str(d) for d in drifted] if isinstance(drifted, list) else [],
        "share": metrics.get("drift_share"),
        "rows": int(metrics["rows"]) if "rows" in metrics else None,
        "labelled": int(metrics["labelled"]) if "labelled" in metrics else None,
        "accuracy": metrics.get("accuracy"),
        "report_uri": f"runs:/{run.info.run_id}/{REPORT_FILE}",
    }
