"""The model registry: register, alias, promote and load models, on an explicit client.

Aliases replace MLflow's deprecated stages. Every alias move is recorded on the model
versions involved (who, when, why), so the audit trail is readable in MLflow itself.
The promotion guard lives here, once: ``%mlops promote``, the panel and the REST API
call the same :func:`promote`.
"""

from __future__ import annotations

import getpass
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import sqlite_path
from mlops_nb.exceptions import (
    MlopsError,
    NotAModelError,
    NotFoundError,
    PromotionRefusedError,
    StoreError,
    UsageError,
    one_line,
)
from mlops_nb.runs import collect_pages, experiment_ids
from mlops_nb.snapshots import file_inside, is_missing, read_snapshot, why_no_snapshot
from mlops_nb.store import explain_missing_artifact, explain_missing_run_artifacts
from mlops_nb.tags import (
    AUDIT_PREFIX,
    FLAVOR,
    GIT_BRANCH,
    GIT_COMMIT,
    GIT_DIRTY,
    METRICS,
    NOTEBOOK,
    PARAMS,
    PREFIX,
    RUN_ID,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "ALIAS_MOVES_FILE",
    "PAGE_TOKEN_PATTERN",
    "VERSION_PATTERN",
    "NotAModelError",
    "PromotionRefusedError",
    "PromotionResult",
    "RegisteredVersion",
    "VersionNotebook",
    "audit_trail",
    "check_alias",
    "check_model_name",
    "check_page_token",
    "compare_versions",
    "detect_flavor",
    "get_model",
    "load_model",
    "metrics_tag",
    "model_files",
    "models_page",
    "parse_model_uri",
    "promote",
    "register_model",
    "remove_alias",
    "resolve_alias",
    "set_alias",
    "stale_alias_warnings",
    "tagged_metrics",
    "version_detail",
    "version_notebook",
    "versions_page",
]

#: Version tag holding the source run's metrics at registration, as compact JSON, so a
#: page of versions needs no run search. Not lineage: version_detail reads live metrics.
METRICS_TAG = METRICS
#: Bound of that tag's text: far under MLflow's limit, and a page of 20 versions stays small.
METRICS_TAG_LIMIT = 5000
_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_MODEL_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+))$")

#: Top-level module of a model's class -> the MLflow flavor module that logs it.
FLAVORS = {
    "sklearn": "mlflow.sklearn",
    "xgboost": "mlflow.xgboost",
    "lightgbm": "mlflow.lightgbm",
    "catboost": "mlflow.catboost",
    "torch": "mlflow.pytorch",
    "keras": "mlflow.keras",
    "tensorflow": "mlflow.tensorflow",
    "statsmodels": "mlflow.statsmodels",
    "prophet": "mlflow.prophet",
}


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version as mlops-nb shows it."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    flavor: str | None = None
    lineage: dict[str, str] = field(default_factory=dict)

    @property
    def load_hint(self) -> str:
        """How to load this version, by alias where it has one."""
        ref = f"models:/{self.name}@{self.aliases[0]}" if self.aliases else f"models:/{self.name}/{self.version}"
        return f"%mlops load {ref}   (or mlflow.pyfunc.load_model('{ref}'))"


@dataclass(frozen=True)
class PromotionResult:
    """What the promotion guard decided, with the numbers it decided on."""

    name: str
    to_alias: str
    version: str
    previous_version: str | None
    metric: str
    candidate_value: float
    current_value: float | None
    message: str


# ---------------------------------------------------------------- validation


def check_model_name(name: Any) -> str:
    """A registered model name: non-empty, no slash or '@' (they would break model URIs)."""
    if not isinstance(name, str) or not name.strip() or "/" in name or "@" in name or ":" in name:
        raise UsageError(f"model name {name!r} is not allowed: use a non-empty name without '/', '@' or ':'")
    return name


def check_alias(alias: Any) -> str:
    """An alias MLflow accepts and that is not reserved (``latest``, ``v<N>``)."""
    if not isinstance(alias, str) or not alias:
        raise UsageError("alias must be a non-empty name such as champion or challenger")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise UsageError(
            f"alias {alias!r} is reserved by MLflow ('latest' and v<N> name versions); choose another, "
            "e.g. champion or challenger"
        )
    if not _ALIAS.match(alias) or len(alias) > 255:
        raise UsageError(f"alias {alias!r} is not allowed: use letters, digits, '_' and '-' only")
    return alias


#: A version number as mlops-nb accepts it everywhere (the REST API's OpenAPI file says
#: the same): ASCII digits, no leading zero, at most nine (MLflow's column is 32-bit).
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"


def _check_version(version: Any) -> str:
    # Not str.isdigit()/int(): they take '²' or Arabic-Indic digits, which MLflow then
    # fails on; and a 10-digit number overflows the store's integer column.
    text = str(version)
    if isinstance(version, bool) or not re.fullmatch(VERSION_PATTERN, text):
        raise UsageError(f"version must be a positive whole number such as 3 (at most 9 digits), not {_shown(version)}")
    return text


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut short: bad input is quoted back, never pasted whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` into (name, alias, version)."""
    match = _MODEL_URI.match(uri or "")
    if not match:
        raise UsageError(f"{uri!r} is not a model reference: use models:/NAME@ALIAS or models:/NAME/VERSION")
    return match["name"], match["alias"], match["version"]


def _known_models(client: MlflowClient, limit: int = 10) -> str:
    names = [m.name for m in client.search_registered_models(max_results=limit)]
    return ", ".join(names) if names else "none yet"


def get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """A model version, or :class:`NotFoundError` naming the model or version."""
    check_model_name(name)
    version = _check_version(version)
    try:
        return client.get_model_version(name, version)
    except Exception as exc:
        if not is_missing(exc):
            raise
    try:
        client.get_registered_model(name)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(f"no registered model named {name!r}; known models: {_known_models(client)}") from None
        raise
    raise NotFoundError(f"model {name!r} has no version {version}") from None


def get_model(client: MlflowClient, name: str) -> Any:
    """A registered model, or :class:`NotFoundError` naming the models that exist."""
    check_model_name(name)
    try:
        return client.get_registered_model(name)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(f"no registered model named {name!r}; known models: {_known_models(client)}") from None
        raise


def alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or ``None``; :class:`NotFoundError` for no model."""
    version = get_model(client, name).aliases.get(alias)
    return str(version) if version is not None else None


def resolve_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    """The version ``alias`` points at, or :class:`NotFoundError` saying what exists."""
    model = get_model(client, name)
    version = model.aliases.get(alias)
    if version is None:
        known = ", ".join(sorted(model.aliases)) or "none"
        raise NotFoundError(f"model {name!r} has no alias {alias!r}; its aliases: {known}")
    return client.get_model_version(name, str(version))


# ---------------------------------------------------------------- registering


def detect_flavor(model: Any) -> str:
    """The MLflow flavor module that can log ``model``, or :class:`NotAModelError`."""
    module = type(model).__module__.split(".")[0]
    flavor = FLAVORS.get(module)
    if flavor is None:
        supported = "scikit-learn estimators and pipelines, XGBoost, LightGBM, CatBoost, PyTorch, Keras"
        raise NotAModelError(
            f"a {type(model).__module__}.{type(model).__name__} is not a model mlops-nb can log; supported: {supported}"
        )
    if module == "sklearn":
        from sklearn.base import BaseEstimator
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        if not isinstance(model, BaseEstimator):
            raise NotAModelError(f"{type(model).__name__} comes from scikit-learn but is not an estimator or pipeline")
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise NotAModelError(f"the {type(model).__name__} is not fitted yet; call .fit(...) first") from None
        except TypeError:
            pass  # an estimator check_is_fitted cannot judge: let MLflow try
    return flavor


def _lineage(client: MlflowClient, run: Run) -> dict[str, str]:
    run_id = run.info.run_id
    tags = run.data.tags
    lineage = {RUN_ID: run_id}
    for src, dst in (
        (NOTEBOOK, NOTEBOOK),
        ("mlflow.source.git.commit", GIT_COMMIT),
        ("mlflow.source.git.branch", GIT_BRANCH),
        (GIT_DIRTY, GIT_DIRTY),
    ):
        if src in tags:
            lineage[dst] = tags[src]
    params = dict(run.data.params)
    parent = tags.get("mlflow.parentRunId")
    if parent:  # a cell run inherits the notebook's parameters
        try:
            params = {**client.get_run(parent).data.params, **params}
        except Exception:
            pass
    if params:
        text = json.dumps(params, sort_keys=True)
        lineage[PARAMS] = text if len(text) <= 5000 else text[:4990] + "...}"
    return lineage


def _metric_rank(key: str) -> tuple[bool, bool, int, str]:
    """Which metrics a bounded snapshot keeps first: the user's plain names (accuracy,
    loss) before namespaced ones (val/loss) and MLflow's system metrics, short before long."""
    return (key.startswith("system/"), "/" in key, len(key), key)


def metrics_tag(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The version tag (:data:`METRICS_TAG`) that snapshots a run's ``metrics`` for listings.

    Only finite numbers are kept. The JSON stays within :data:`METRICS_TAG_LIMIT`
    characters; when the run has more metrics than fit, the most relevant (see
    :func:`_metric_rank`) are kept. :func:`register_model` writes it; anything that seeds
    versions as mlops-nb registers them should call this too.
    """
    numbers = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    text = json.dumps(numbers, sort_keys=True, separators=(",", ":"))
    if len(text) > METRICS_TAG_LIMIT:
        kept: dict[str, float] = {}
        size = 2  # the braces
        for key in sorted(numbers, key=_metric_rank):
            item = len(json.dumps({key: numbers[key]}, separators=(",", ":"))) - 2 + (1 if kept else 0)
            if size + item <= METRICS_TAG_LIMIT:
                kept[key] = numbers[key]
                size += item
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return {METRICS_TAG: text}


def tagged_metrics(tags: Mapping[str, str]) -> dict[str, float] | None:
    """The metrics snapshot on a version's tags, or ``None`` when it has none (registered
    outside mlops-nb) or it cannot be read."""
    text = tags.get(METRICS_TAG)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def register_model(
    client: MlflowClient,
    model: Any,
    name: str,
    run_id: str,
    alias: str | None = None,
    input_example: Any = None,
    description: str | None = None,
) -> RegisteredVersion:
    """Log ``model`` under ``run_id`` with its flavor and signature, and register a version.

    The run must be MLflow's active run in this process (the tracker makes its runs so).
    The version carries the run's lineage as tags, and the run's metrics as stored at
    this moment (:func:`metrics_tag`) so listings need not search runs: a caller that
    buffers metrics writes them first. Everything is checked before anything is written:
    a bad name, alias or model registers nothing.
    """
    check_model_name(name)
    if alias is not None:
        check_alias(alias)
    flavor_name = detect_flavor(model)
    import importlib

    import mlflow

    flavor = importlib.import_module(flavor_name)
    kwargs = _log_model_kwargs(model, flavor_name, flavor, input_example)
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        raise MlopsError(f"run {run_id} is not the active MLflow run; start tracking first")
    info = flavor.log_model(model, **kwargs)
    _ensure_registered(client, name)
    run = client.get_run(run_id)  # once, for the lineage and the metrics snapshot
    lineage = _lineage(client, run)
    version = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=run_id,
        tags={**lineage, FLAVOR: flavor_name.split(".")[-1], **metrics_tag(run.data.metrics)},
        description=description,
        model_id=getattr(info, "model_id", None),
    )
    aliases: tuple[str, ...] = ()
    if alias is not None:
        try:
            set_alias(client, name, alias, version.version, why="registered with this alias")
        except Exception as exc:
            raise StoreError(
                f"registered {name} v{version.version}, but could not point @{alias} at it "
                f"({type(exc).__name__}: {exc}); run %mlops alias {name}@{alias} {version.version}"
            ) from None
        aliases = (alias,)
    return RegisteredVersion(name, str(version.version), run_id, aliases, flavor_name.split(".")[-1], lineage)


def _log_model_kwargs(model: Any, flavor_name: str, flavor: Any, input_example: Any) -> dict[str, Any]:
    """The arguments of ``flavor.log_model`` for ``model``: its signature (inferred from
    ``input_example``), its trusted types and its pip requirements."""
    signature = None
    if input_example is not None:
        from mlflow.models import infer_signature

        try:
            prediction = model.predict(input_example) if hasattr(model, "predict") else None
            signature = infer_signature(input_example, prediction)
        except Exception as exc:
            raise UsageError(
                f"the input example does not fit the model ({type(exc).__name__}: {exc}); pass a few rows "
                "of the data it was trained on"
            ) from None
    kwargs: dict[str, Any] = {"name": "model", "signature": signature}
    if input_example is not None:
        kwargs["input_example"] = input_example
    defaults = getattr(flavor, "get_default_pip_requirements", None)
    if flavor_name == "mlflow.sklearn":
        # MLflow saves scikit-learn models with skops, which refuses on load every type
        # it does not trust by default (a forest's trees, for one). These are the user's
        # own model's types, from their own kernel: trust exactly those.
        import skops.io

        kwargs["skops_trusted_types"] = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        if defaults is not None:
            kwargs["pip_requirements"] = defaults(include_cloudpickle=False, include_skops=True)
    elif defaults is not None:
        # MLflow otherwise infers requirements by re-importing the model in a
        # subprocess (~6 s a model); the run already records the full environment.
        kwargs["pip_requirements"] = defaults()
    return kwargs


def _ensure_registered(client: MlflowClient, name: str) -> None:
    """Create the registered model ``name`` unless it exists (or another process made it meanwhile)."""
    try:
        client.get_registered_model(name)
    except Exception as exc:
        if not is_missing(exc):
            raise
        try:
            client.create_registered_model(name)
        except Exception as again:  # created meanwhile by another process
            if getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise


# ---------------------------------------------------------------- aliases and audit


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _audit(
    client: MlflowClient,
    name: str,
    on_version: str,
    action: str,
    alias: str,
    from_version: str | None,
    to_version: str | None,
    who: str | None,
    why: str,
) -> None:
    """Record one alias move as a tag on ``on_version`` (readable in MLflow's UI)."""
    # One clock read for the time and the tag's key: two reads can straddle a second and
    # sort out of order.
    now_ns = time.time_ns()
    now = datetime.fromtimestamp(now_ns // 1_000_000_000, timezone.utc)
    event = {
        "action": action,
        "alias": alias,
        "from_version": from_version,
        "to_version": to_version,
        "who": who or _who(),
        "when": now.isoformat(timespec="seconds"),
        "why": why,
    }
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now_ns % 1_000_000_000:09d}"
    client.set_model_version_tag(name, on_version, f"{AUDIT_PREFIX}{stamp}", json.dumps(event, sort_keys=True))


#: File beside a SQLite store's database, touched after every alias move: a model server
#: on that store (mlops_nb.serving) watches its mtime and re-reads the registry at once
#: rather than at its next poll. Other stores have no such signal; servers poll them.
ALIAS_MOVES_FILE = "alias-moves"


def _signal_alias_move(client: MlflowClient) -> None:
    """Touch :data:`ALIAS_MOVES_FILE` of a SQLite store; a failure never fails the move."""
    try:
        db = sqlite_path(client.tracking_uri)
        if db is not None:
            (db.parent / ALIAS_MOVES_FILE).touch()
    except Exception:
        pass  # servers still see the move at their next poll


def set_alias(
    client: MlflowClient, name: str, alias: str, version: str | int, who: str | None = None, why: str = ""
) -> str | None:
    """Point ``alias`` at ``version``; record the move on both versions. Returns the
    version the alias pointed at before (or ``None``)."""
    check_alias(alias)
    target = get_version(client, name, str(version))
    previous = alias_holder(client, name, alias)
    target_version = str(target.version)
    if previous == target_version:
        return previous
    client.set_registered_model_alias(name, alias, target_version)
    try:
        _audit(client, name, target_version, "set", alias, previous, target_version, who, why)
    except Exception:
        # No alias move without its audit record: put the alias back.
        if previous is not None:
            client.set_registered_model_alias(name, alias, previous)
        else:
            client.delete_registered_model_alias(name, alias)
        raise
    if previous is not None:
        _audit(client, name, previous, "moved away", alias, previous, target_version, who, why)
    _signal_alias_move(client)
    return previous


def remove_alias(client: MlflowClient, name: str, alias: str, who: str | None = None, why: str = "") -> str:
    """Remove ``alias``; return the version it pointed at."""
    check_alias(alias)
    holder = str(resolve_alias(client, name, alias).version)
    client.delete_registered_model_alias(name, alias)
    _audit(client, name, holder, "removed", alias, holder, None, who, why)
    _signal_alias_move(client)
    return holder


def audit_trail(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """The alias moves recorded on a version, oldest first."""
    mv = get_version(client, name, version)
    events = []
    for key in sorted(k for k in mv.tags if k.startswith(AUDIT_PREFIX)):
        try:
            events.append(json.loads(mv.tags[key]))
        except ValueError:
            continue
    return events


# ---------------------------------------------------------------- promotion


def _metric(client: MlflowClient, mv: ModelVersion, metric: str) -> float | None:
    """The metric of the version's source run; NaN counts as missing (it compares false)."""
    if not mv.run_id:
        return None
    value = client.get_run(mv.run_id).data.metrics.get(metric)
    return None if value is None or math.isnan(value) else value


def model_files(client: MlflowClient, mv: ModelVersion) -> str:
    """A local folder holding the version's MLmodel files, found through ``client``.

    ``models:/`` references would otherwise resolve through MLflow's process-global
    registry URI (and, unset, create ``mlflow.db`` in the current folder).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    source = location = mv.source or ""
    what = f"the files of model {mv.name} v{mv.version}"
    try:
        if source.startswith("models:/m-"):
            location = client.get_logged_model(source[len("models:/") :]).artifact_location
            return mlflow.artifacts.download_artifacts(artifact_uri=location)
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            return client.download_artifacts(run_id, path)
        return mlflow.artifacts.download_artifacts(artifact_uri=source)
    except MlflowException:
        # MLflow says "No such artifact: ''" for a folder that is gone: say which and why.
        if source.startswith("runs:/"):
            line = explain_missing_run_artifacts(client, source[len("runs:/") :].partition("/")[0], what, expected=True)
        else:
            line = explain_missing_artifact(client.tracking_uri, location, what)
        if line:
            raise NotFoundError(line) from None
        raise


def _signature_inputs(client: MlflowClient, mv: ModelVersion) -> Any:
    from mlflow.models import Model

    try:
        sig = Model.load(model_files(client, mv)).signature
    except Exception:
        return None
    return sig.inputs.to_dict() if sig is not None and sig.inputs is not None else None


def promote(
    client: MlflowClient,
    name: str,
    metric: str,
    from_alias: str = "challenger",
    to_alias: str = "champion",
    min_delta: float = 0.0,
    lower_is_better: bool = False,
    who: str | None = None,
) -> PromotionResult:
    """Move ``to_alias`` to the holder of ``from_alias`` only if it beats the current holder.

    The candidate beats the holder when its ``metric`` is better by more than
    ``min_delta`` and its input signature matches. With no current holder, the alias is
    simply set. Refusals raise :class:`PromotionRefusedError` with both values; nothing
    moves.
    """
    check_alias(from_alias)
    check_alias(to_alias)
    if not isinstance(metric, str) or not metric:
        raise UsageError("--metric must name a metric, e.g. accuracy")
    if min_delta < 0:
        raise UsageError(f"--min-delta must be 0 or more, not {min_delta}")
    candidate = resolve_alias(client, name, from_alias)
    holder = alias_holder(client, name, to_alias)
    current = client.get_model_version(name, holder) if holder is not None else None
    cand_value = _metric(client, candidate, metric)
    cur_value = _metric(client, current, metric) if current is not None else None
    if cand_value is None and (current is None or cur_value is None):
        raise NotFoundError(
            f"metric {metric!r} is on neither version's run ({name} v{candidate.version}"
            + (f", v{current.version}" if current is not None else "")
            + "); log it with %mlops log, or choose a metric the runs have"
        )
    if cand_value is None:
        assert current is not None  # else refused just above
        raise PromotionRefusedError(
            f"refused: {name} v{candidate.version} (@{from_alias}) has no {metric!r}; "
            f"the current @{to_alias} v{current.version} has {metric}={cur_value:.6g}"
        )
    if current is not None and current.version == candidate.version:
        raise PromotionRefusedError(f"refused: {name} v{candidate.version} already holds @{to_alias}")
    if current is not None:
        why = _why_promote(
            client,
            name,
            metric,
            (candidate, cand_value),
            (current, cur_value),
            from_alias,
            to_alias,
            min_delta,
            lower_is_better,
        )
    else:
        why = f"promoted from @{from_alias}: no version held @{to_alias} ({metric}={cand_value:.6g})"
    previous = set_alias(client, name, to_alias, candidate.version, who=who, why=why)
    return PromotionResult(
        name,
        to_alias,
        str(candidate.version),
        previous,
        metric,
        cand_value,
        cur_value,
        f"{name} v{candidate.version} is now @{to_alias}: {why}",
    )


def _why_promote(
    client: MlflowClient,
    name: str,
    metric: str,
    candidate_value: tuple[ModelVersion, float],
    current_value: tuple[ModelVersion, float | None],
    from_alias: str,
    to_alias: str,
    min_delta: float,
    lower_is_better: bool,
) -> str:
    """Why the candidate may take ``to_alias`` from the current holder, for the audit
    trail; :class:`PromotionRefusedError` when it may not."""
    (candidate, cand_value), (current, cur_value) = candidate_value, current_value
    if cur_value is None:
        raise PromotionRefusedError(
            f"refused: the current @{to_alias} v{current.version} has no {metric!r} to compare with "
            f"(candidate v{candidate.version}: {metric}={cand_value:.6g}); move it by hand with %mlops alias"
        )
    gain = (cur_value - cand_value) if lower_is_better else (cand_value - cur_value)
    direction = "lower" if lower_is_better else "higher"
    if not gain > min_delta:
        raise PromotionRefusedError(
            f"refused: {name} v{candidate.version} (@{from_alias}) has {metric}={cand_value:.6g}, "
            f"the current @{to_alias} v{current.version} has {metric}={cur_value:.6g}; "
            f"{direction} is better and the gain must exceed {min_delta:g}"
        )
    new_inputs, old_inputs = _signature_inputs(client, candidate), _signature_inputs(client, current)
    if new_inputs is not None and old_inputs is not None and new_inputs != old_inputs:
        raise PromotionRefusedError(
            f"refused: {name} v{candidate.version} takes different inputs than the current @{to_alias} "
            f"v{current.version} (signatures differ), though {metric}={cand_value:.6g} beats {cur_value:.6g}"
        )
    return f"promoted from @{from_alias}: {metric} {cand_value:.6g} vs {cur_value:.6g} ({direction} is better)"


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelRow:
    """A registered model in a listing."""

    name: str
    latest_version: str | None
    aliases: dict[str, str]
    updated: datetime | None
    description: str


@dataclass(frozen=True)
class VersionRow:
    """A model version in a listing, with its source run's metrics as they were when it
    was registered (read live for versions registered outside mlops-nb)."""

    name: str
    version: str
    aliases: tuple[str, ...] | None  # None: not read (see versions_page)
    run_id: str | None
    created: datetime | None
    notebook: str
    metrics: dict[str, float]


def _token(token: Any) -> str | None:
    """MLflow's registry searches return page tokens as bytes; callers get text."""
    if not token:
        return None
    return token.decode("ascii") if isinstance(token, bytes) else str(token)


#: A page token as the REST API accepts it (its OpenAPI file says the same): base64 text,
#: as MLflow's stores issue them.
PAGE_TOKEN_PATTERN = r"^[A-Za-z0-9+/]{1,200}={0,2}$"


def check_page_token(token: str | None) -> str | None:
    """``token`` if it is a page token MLflow issued (``None``: the first page), else
    :class:`UsageError`.

    MLflow's SQL store decodes tokens itself and fails on most others with a bare
    ``ValueError``, ``AttributeError`` or an SQL overflow rather than its own error: a
    token that did not come from the previous page is refused here, by MLflow's own
    decoder. A tracking server (``http://``) decodes with the same code.
    """
    if token is None:
        return None
    from mlflow.utils.search_utils import SearchUtils

    try:
        offset = SearchUtils.parse_start_offset_from_page_token(token) if re.fullmatch(PAGE_TOKEN_PATTERN, token) else 0
    except Exception:  # MLflow's decoder raises whatever its steps raise
        offset = 0
    valid = 0 < offset < 2**31  # above that, SQLite's OFFSET overflows
    if not valid:
        raise UsageError(
            f"page_token {_shown(token)} is not one this server gave: pass the next_page_token of the previous page, "
            "or none for the first page"
        )
    return token


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


_ORDERS = {
    "name": "name ASC",
    "-name": "name DESC",
    "updated": "last_updated_timestamp ASC",
    "-updated": "last_updated_timestamp DESC",
}


def _literal(text: str) -> tuple[str, bool]:
    """``text`` as a string literal of MLflow's filter language, and whether it is exact.

    That language has no escapes: a text holding ``'`` is quoted with ``"``; one holding
    both quotes gets ``_`` (LIKE's any-character) in their place, so callers filter the
    results exactly in Python.
    """
    if "'" not in text:
        return f"'{text}'", True
    if '"' not in text:
        return f'"{text}"', True
    return "'" + text.replace("'", "_").replace('"', "_") + "'", False


def models_page(
    client: MlflowClient,
    name_contains: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    order: str = "name",
) -> tuple[list[ModelRow], str | None]:
    """One page of registered models, searched by name and sorted; and the next page's token."""
    if not 1 <= page_size <= 1000:
        raise UsageError(f"page size must be between 1 and 1000, not {page_size}")
    if order not in _ORDERS:
        raise UsageError(f"order must be one of {', '.join(_ORDERS)}, not {order!r}")
    check_page_token(page_token)
    flt = None
    if name_contains:
        literal, _ = _literal(f"%{name_contains}%")
        flt = f"name ILIKE {literal}"
    try:
        page = client.search_registered_models(
            filter_string=flt, max_results=page_size, order_by=[_ORDERS[order]], page_token=page_token
        )
    except Exception as exc:
        if getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            raise UsageError(f"cannot search models: {one_line(exc)}") from None
        raise
    rows = []
    for m in page:
        if name_contains and name_contains.lower() not in m.name.lower():
            continue  # % and _ in the search text are wildcards to MLflow: keep true matches
        latest = max((int(v.version) for v in (m.latest_versions or [])), default=None)
        rows.append(
            ModelRow(
                m.name,
                str(latest) if latest else None,
                {k: str(v) for k, v in m.aliases.items()},
                _ts(m.last_updated_timestamp),
                m.description or "",
            )
        )
    return rows, _token(page.token)


def list_models(
    client: MlflowClient, name_contains: str | None = None, max_results: int = 50
) -> tuple[list[ModelRow], bool]:
    """Registered models by name (paged through MLflow, never cut silently)."""
    return collect_pages(lambda size, token: models_page(client, name_contains, size, token), max_results)


def _run_metrics(client: MlflowClient, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """The metrics of several runs in one search (not one query a version)."""
    if not run_ids:
        return {}
    ids = sorted(set(run_ids))
    found: dict[str, dict[str, float]] = {}
    quoted = ", ".join(f"'{r}'" for r in ids if r.isalnum())
    if quoted:
        for run in client.search_runs(
            list(experiment_ids(client, None)), filter_string=f"attributes.run_id IN ({quoted})", max_results=len(ids)
        ):
            found[run.info.run_id] = dict(run.data.metrics)
    return found


def versions_page(
    client: MlflowClient,
    name: str,
    page_size: int = 20,
    page_token: str | None = None,
    model: Any = None,
    with_aliases: bool = True,
) -> tuple[list[VersionRow], str | None]:
    """One page of a model's versions, newest first, with their source runs' metrics.

    Metrics come from the snapshot :func:`register_model` leaves on each version (the
    run's metrics at registration); only versions registered without one (outside
    mlops-nb) have their runs searched, in one query. Aliases live on the registered
    model, so filling them reads the model (``model``, from :func:`get_model`, saves
    that read); with ``with_aliases=False`` rows carry ``aliases=None`` and the page
    costs one registry query, for callers that already hold the model's aliases.
    """
    if not 1 <= page_size <= 1000:
        raise UsageError(f"page size must be between 1 and 1000, not {page_size}")
    check_page_token(page_token)
    by_version: dict[str, list[str]] | None = None
    if with_aliases:
        model = model if model is not None else get_model(client, name)
        by_version = {}
        for alias, version in model.aliases.items():
            by_version.setdefault(str(version), []).append(alias)
    literal, exact = _literal(name)
    page = client.search_model_versions(
        f"name {'=' if exact else 'LIKE'} {literal}",
        max_results=page_size,
        order_by=["version_number DESC"],
        page_token=page_token,
    )
    versions = [mv for mv in page if mv.name == name]
    if not versions and page_token is None and model is None:
        get_model(client, name)  # an unknown model is a NotFoundError, not an empty page
    tagged = {str(mv.version): tagged_metrics(mv.tags) for mv in versions}
    live = _run_metrics(client, [mv.run_id for mv in versions if mv.run_id and tagged[str(mv.version)] is None])
    rows = []
    for mv in versions:
        metrics = tagged[str(mv.version)]
        if metrics is None:
            metrics = live.get(mv.run_id or "", {})
        rows.append(
            VersionRow(
                name,
                str(mv.version),
                tuple(sorted(by_version.get(str(mv.version), []))) if by_version is not None else None,
                mv.run_id,
                _ts(mv.creation_timestamp),
                mv.tags.get(NOTEBOOK, ""),
                metrics,
            )
        )
    return rows, _token(page.token)


def list_versions(client: MlflowClient, name: str, max_results: int = 50) -> tuple[list[VersionRow], bool]:
    """A model's versions, newest first (paged through MLflow, never cut silently)."""
    model = get_model(client, name)
    return collect_pages(lambda size, token: versions_page(client, name, size, token, model=model), max_results)


def version_detail(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """Everything about one version: source run params and metrics, signature, lineage,
    and the audit trail of alias moves."""
    mv = get_version(client, name, version)
    run_params: dict[str, str] = {}
    run_metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            run_params, run_metrics = dict(run.data.params), dict(run.data.metrics)
        except Exception:
            pass
    signature = None
    try:
        from mlflow.models import Model

        sig = Model.load(model_files(client, mv)).signature
        signature = sig.to_dict() if sig is not None else None
    except Exception:
        signature = None
    aliases = sorted(a for a, v in get_model(client, name).aliases.items() if str(v) == str(mv.version))
    lineage = {
        k[len(PREFIX) :]: v
        for k, v in mv.tags.items()
        if k.startswith(PREFIX) and not k.startswith(AUDIT_PREFIX) and k != METRICS_TAG  # metrics: live, above
    }
    return {
        "name": name,
        "version": str(mv.version),
        "aliases": aliases,
        "description": mv.description or "",
        "created": _ts(mv.creation_timestamp),
        "run_id": mv.run_id,
        "params": run_params,
        "metrics": run_metrics,
        "signature": signature,
        "lineage": lineage,
        "audit": audit_trail(client, name, str(mv.version)),
        "load": f"models:/{name}/{mv.version}",
    }


def compare_versions(client: MlflowClient, name: str, a: str, b: str) -> dict[str, Any]:
    """Two versions' source-run metrics and params side by side, with what differs."""
    left, right = version_detail(client, name, a), version_detail(client, name, b)
    metric_keys = sorted(set(left["metrics"]) | set(right["metrics"]))
    param_keys = sorted(set(left["params"]) | set(right["params"]))
    return {
        "name": name,
        "versions": [left["version"], right["version"]],
        "metrics": {k: [left["metrics"].get(k), right["metrics"].get(k)] for k in metric_keys},
        "params": {k: [left["params"].get(k), right["params"].get(k)] for k in param_keys},
        "params_differ": [k for k in param_keys if left["params"].get(k) != right["params"].get(k)],
    }


# ---------------------------------------------------------------- source notebook


@dataclass(frozen=True)
class VersionNotebook:
    """Where the notebook that trained a version can be read.

    Exactly one of ``workspace_path`` (the file, relative to the folder searched) and
    ``snapshot_text`` (the notebook as the run saved it) is set.
    """

    name: str
    version: str
    run_id: str | None
    recorded_path: str | None
    workspace_path: str | None = None
    snapshot_name: str | None = None
    snapshot_text: str | None = None


def version_notebook(
    client: MlflowClient, name: str, version: str, project_root: str | Path, root: str | Path | None = None
) -> VersionNotebook:
    """The notebook that trained a version: the file itself when it is still in the
    workspace, otherwise the snapshot mlops-nb saved with the run.

    The version's lineage (``mlops_nb.notebook``) records the notebook relative to
    ``project_root``. It counts as in the workspace only if it is a file inside ``root``
    (default: ``project_root``) once symlinks are resolved; nothing outside ``root`` is
    read. The snapshot is the run's artifact ``code/<notebook file name>``. Raises
    :class:`NotFoundError` saying what is missing when there is neither.
    """
    mv = get_version(client, name, version)
    recorded = mv.tags.get(NOTEBOOK) or None
    found = VersionNotebook(name, str(mv.version), mv.run_id, recorded)
    if recorded:
        inside = file_inside(Path(root if root is not None else project_root), Path(project_root) / recorded)
        if inside is not None:
            return replace(found, workspace_path=inside.as_posix())
    snap = read_snapshot(client, mv.run_id, recorded) if mv.run_id else None
    if snap is not None:
        return replace(found, snapshot_name=snap[0], snapshot_text=snap[1])
    missing = (
        f"its run {mv.run_id} holds no notebook snapshot ({why_no_snapshot(client, mv.run_id)})"
        if mv.run_id
        else "it has no source run to hold a notebook snapshot"
    )
    if recorded:
        raise NotFoundError(
            f"{name} v{mv.version} was trained in {recorded}, which is not in the workspace, and {missing}; "
            "restore the notebook, or keep capture on ([tool.mlops-nb] capture = true) so future versions keep one"
        )
    raise NotFoundError(
        f"{name} v{mv.version} records no notebook and {missing}: it was registered outside a tracked notebook; "
        "register from a notebook (%mlops register) to link one"
    )


# ---------------------------------------------------------------- loading


def load_model(client: MlflowClient, uri: str) -> tuple[Any, ModelVersion]:
    """Load ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` in its native flavor.

    Returns the model object and the version it resolved to.
    """
    name, alias, version = parse_model_uri(uri)
    mv = resolve_alias(client, name, alias) if alias else get_version(client, name, version or "")
    flavor = mv.tags.get(FLAVOR)
    import importlib

    module_name = f"mlflow.{flavor}" if flavor and f"mlflow.{flavor}" in FLAVORS.values() else "mlflow.pyfunc"
    module = importlib.import_module(module_name)
    # Load the resolved version's files, not the alias: an alias moved meanwhile must
    # not change what this call returns.
    model = module.load_model(model_files(client, mv))
    return model, mv


def stale_alias_warnings(client: MlflowClient, loaded: dict[tuple[str, str], tuple[str, str | None]]) -> list[str]:
    """Warnings for models loaded by alias whose alias has moved since, each move once.

    ``loaded`` maps (model name, alias) -> (the version loaded, the holder last seen);
    the holders seen now are written back into it.
    """
    out = []
    for key, (version, seen) in list(loaded.items()):
        name, alias = key
        try:
            now = alias_holder(client, name, alias)
        except Exception:
            continue  # cannot tell now (store down, model deleted): say nothing
        if now == seen:
            continue
        loaded[key] = (version, now)
        if now == version:
            continue  # moved back to what this kernel holds
        where = f"now points at v{now}" if now is not None else "was removed"
        out.append(
            f"warning: the model loaded from models:/{name}@{alias} is v{version}, but @{alias} {where}; "
            f"run %mlops load models:/{name}@{alias} again to use it"
        )
    return out
