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
import shlex
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.config import alias_names, sqlite_path
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
    APPROVAL_ALIASES,
    APPROVAL_PENDING,
    APPROVAL_PENDING_PREFIX,
    AUDIT_PREFIX,
    FLAVOR,
    GIT_BRANCH,
    GIT_COMMIT,
    GIT_DIRTY,
    METRICS,
    MONITOR_LAST,
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
    "PendingApproval",
    "PromotionRefusedError",
    "PromotionResult",
    "RegisteredVersion",
    "VersionNotebook",
    "approve",
    "audit_trail",
    "check_alias",
    "check_model_name",
    "check_page_token",
    "check_version",
    "compare_versions",
    "detect_flavor",
    "get_model",
    "load_model",
    "metrics_tag",
    "model_files",
    "models_page",
    "parse_model_uri",
    "pending_approvals",
    "promote",
    "protected_aliases",
    "register_model",
    "reject",
    "remove_alias",
    "resolve_alias",
    "set_alias",
    "set_protected_aliases",
    "stale_alias_warnings",
    "tagged_metrics",
    "version_detail",
    "version_lineage",
    "version_notebook",
    "versions_page",
    "who_am_i",
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
    #: True when the alias asked for is protected: the version is registered but the
    #: alias did not move; a request waits for a person (:func:`approve`, :func:`reject`).
    pending: bool = False
    #: What happened, in one line a caller can print as it is (most say more when pending).
    message: str = ""

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
    #: True when ``to_alias`` is protected: nothing moved, a request waits for a person
    #: (:func:`approve` or :func:`reject`).
    pending: bool = False


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


def check_version(version: Any) -> str:
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
    version = check_version(version)
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
    *,
    approval: Collection[str] = (),
) -> RegisteredVersion:
    """Log ``model`` under ``run_id`` with its flavor and signature, and register a version.

    The run must be MLflow's active run in this process (the tracker makes its runs so).
    The version carries the run's lineage as tags, and the run's metrics as stored at
    this moment (:func:`metrics_tag`) so listings need not search runs: a caller that
    buffers metrics writes them first. Everything is checked before anything is written:
    a bad name, alias or model registers nothing.

    ``alias`` is pointed at the new version unless it is protected (one of ``approval``,
    the project's ``approval_aliases``, or of the model's own setting, as for
    :func:`promote`): then the version is registered, the alias stays where it was, and
    a request waits for a person with the version's lineage and metrics as evidence;
    the result has ``pending=True``, ``aliases=()`` and a ``message`` saying how to
    decide. An automated loop that registers into ``champion`` thus waits like a
    promotion does.
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
    snapshot = metrics_tag(run.data.metrics)
    version = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=run_id,
        tags={**lineage, FLAVOR: flavor_name.split(".")[-1], **snapshot},
        description=description,
        model_id=getattr(info, "model_id", None),
    )
    registered = RegisteredVersion(
        name,
        str(version.version),
        run_id,
        (),
        flavor_name.split(".")[-1],
        lineage,
        message=f"registered {name} v{version.version}",
    )
    if alias is None:
        return registered
    return _point_new_version(client, registered, alias, approval, tagged_metrics(snapshot) or {})


def _point_new_version(
    client: MlflowClient,
    registered: RegisteredVersion,
    alias: str,
    approval: Collection[str],
    metrics: dict[str, float],
) -> RegisteredVersion:
    """Point ``alias`` at the version just registered or, where it is protected, record
    the request for a person instead (:func:`register_model`). A failure is a
    :class:`StoreError` saying the version is registered and what to do."""
    name, version = registered.name, registered.version
    protection = None
    try:
        protection = _protection(client, name, alias, approval)
        if protection is None:
            set_alias(client, name, alias, version, why="registered with this alias")
            return replace(registered, aliases=(alias,), message=f"{registered.message} as @{alias}")
        why = _request_registration(client, name, version, alias, metrics)
    except Exception as exc:
        problem = one_line(exc, with_type=True)
        if protection is None:
            then = f"could not point @{alias} at it ({problem}); run %mlops alias {name}@{alias} {version}"
        else:  # setting the protected alias by hand would skip the person: ask again instead
            then = (
                f"could not ask for approval of @{alias} ({problem}); ask again with "
                f"%mlops alias {name}@challenger {version} and %mlops promote {name} --to {alias} --metric METRIC"
            )
        raise StoreError(f"registered {name} v{version}, but {then}") from None
    waiting = _waiting(alias, protection)
    message = f"registered {name} v{version}; it {waiting} {why}. {_decide(name, version, alias)}"
    return replace(registered, pending=True, message=message)


def _request_registration(client: MlflowClient, name: str, version: str, alias: str, metrics: dict[str, float]) -> str:
    """Record that ``version``, registered asking for the protected ``alias``, waits for a
    person; its evidence is its lineage (on the version) and its metrics beside the
    holder's. No guard ran, so there is no comparison. Returns the request's why."""
    holder = alias_holder(client, name, alias)
    held = client.get_model_version(name, holder) if holder is not None else None
    current = (tagged_metrics(held.tags) or {}) if held is not None else {}
    shown = sorted(sorted(metrics, key=_metric_rank)[:EVIDENCE_METRICS])
    if holder is None:
        why = f"registered asking for @{alias}, which no version holds"
    else:
        why = f"registered asking for @{alias}; no promotion compared it with the holder v{holder}"
    request = {
        "via": "register",
        "from_alias": None,
        "metrics": {k: {"candidate": metrics[k], "current": current.get(k)} for k in shown},
        "compared_with": holder,
        "why": why,
        "drift": _parse_json(held.tags.get(MONITOR_LAST)) if held is not None else None,
    }
    _record_request(client, name, version, alias, request, None, holder)
    return why


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


def who_am_i() -> str:
    """The OS user running this process: who a move is recorded as when nobody is named."""
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
        "who": who or who_am_i(),
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
    version the alias pointed at before (or ``None``).

    This is a person's explicit move (``%mlops alias``, the panel, :func:`approve`): it
    is audited (who, when, ``why``) but never waits for approval, even for a protected
    alias. Automated paths go through :func:`promote` or :func:`register_model` with
    the project's ``approval`` aliases, which wait where an alias is protected.
    """
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
    approval: Collection[str] = (),
) -> PromotionResult:
    """Move ``to_alias`` to the holder of ``from_alias`` only if it beats the current holder.

    The candidate beats the holder when its ``metric`` is better by more than
    ``min_delta`` and its input signature matches. With no current holder, the alias is
    simply set. Refusals raise :class:`PromotionRefusedError` with both values; nothing
    moves.

    A protected ``to_alias`` (one of ``approval``, the project's ``approval_aliases``, or
    of the model's own setting: :func:`protected_aliases`) does not move either: a
    candidate that passes the guard is recorded as a request on its version, with its
    evidence, for a person to :func:`approve` or :func:`reject`; the result then has
    ``pending=True``. A candidate the guard refuses is refused, never made pending.
    """
    _check_promotion(metric, from_alias, to_alias, min_delta)
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
    result = PromotionResult(name, to_alias, str(candidate.version), holder, metric, cand_value, cur_value, "")
    protection = _protection(client, name, to_alias, approval)
    if protection is not None:
        return _request_approval(client, result, current, from_alias, why, who, protection)
    previous = set_alias(client, name, to_alias, candidate.version, who=who, why=why)
    return replace(result, previous_version=previous, message=f"{name} v{candidate.version} is now @{to_alias}: {why}")


def _check_promotion(metric: Any, from_alias: Any, to_alias: Any, min_delta: float) -> None:
    """:class:`UsageError` for a promotion's arguments that cannot work."""
    check_alias(from_alias)
    check_alias(to_alias)
    if not isinstance(metric, str) or not metric:
        raise UsageError("--metric must name a metric, e.g. accuracy")
    if min_delta < 0:
        raise UsageError(f"--min-delta must be 0 or more, not {min_delta}")


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


# ---------------------------------------------------------------- approval

#: The audit actions of the approval flow, beside set, moved away and removed.
REQUESTED, APPROVED, REJECTED = "approval requested", "approved", "rejected"


def _alias_list(text: str | None) -> tuple[str, ...]:
    """The aliases of a model's protection tag, in order; a hand-edited bad entry is
    skipped rather than fatal (the setting is read on every promotion)."""
    names = []
    for item in (text or "").split(","):
        try:
            names.append(check_alias(item.strip()))
        except UsageError:
            continue
    return tuple(dict.fromkeys(names))


def set_protected_aliases(client: MlflowClient, name: str, aliases: Iterable[str] | str) -> tuple[str, ...]:
    """Make the model's own setting protect exactly ``aliases`` (names, or one
    comma-separated text; none removes the setting) and return them, each once.

    Moves of a protected alias by :func:`promote` wait for a person's approval; the
    project's ``approval_aliases`` stay protected whatever this setting says.
    """
    get_model(client, name)
    items = [a for a in aliases.split(",") if a.strip()] if isinstance(aliases, str) else list(aliases)
    names = tuple(dict.fromkeys(check_alias(a.strip() if isinstance(a, str) else a) for a in items))
    if names:
        client.set_registered_model_tag(name, APPROVAL_ALIASES, ",".join(names))
    else:
        client.delete_registered_model_tag(name, APPROVAL_ALIASES)
    return names


def protected_aliases(client: MlflowClient, name: str, project: Collection[str] = ()) -> set[str]:
    """The aliases of model ``name`` whose moves wait for approval: ``project`` (the
    project's ``approval_aliases``) and those of the model's own setting."""
    return set(project) | set(_alias_list(get_model(client, name).tags.get(APPROVAL_ALIASES)))


def _protection(client: MlflowClient, name: str, alias: str, project: Collection[str]) -> str | None:
    """Which setting protects ``alias`` of model ``name``, as words, or ``None``."""
    if isinstance(project, str):  # one text would protect each of its letters
        project = alias_names(project, "approval")
    if alias in project:
        return "the project's approval_aliases"
    if alias in _alias_list(get_model(client, name).tags.get(APPROVAL_ALIASES)):
        return f"the model's own setting (mlops-nb protect {shlex.quote(name)} {alias} --off lifts it)"
    return None


@dataclass(frozen=True)
class PendingApproval:
    """A move of a protected alias waiting for a person: which version asks for which
    alias, who asked when and why, and the evidence to decide on.

    A request comes from :func:`promote` (``evidence["via"] == "promote"``) or from
    :func:`register_model` with a protected alias (``"register"``). ``evidence`` holds
    ``metrics`` ({metric: {"candidate": x, "current": y}} as they were when asked: a
    promotion's the one metric its guard compared; a registration's its run's metrics,
    at most :data:`EVIDENCE_METRICS`, beside the holder's, ``current`` ``None`` where the
    holder has none or there is no holder), ``comparison`` (the guard's words; ``""``
    for a registration, which no guard compared), ``compared_with`` (the holder then),
    ``drift`` (the current holder's last monitor summary, ``None`` when never
    monitored) and ``lineage`` (the candidate's run, notebook, git commit, params).
    """

    name: str
    version: str
    alias: str
    current_version: str | None
    requested_by: str
    requested_at: str
    why: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``summary``."""
        return {**asdict(self), "summary": self.summary}

    @property
    def summary(self) -> str:
        """The evidence in a few words, for a table: the metrics, and the holder's drift."""
        parts = []
        metrics = list((self.evidence.get("metrics") or {}).items())
        for metric, values in metrics[:SUMMARY_METRICS]:
            cand, cur = values.get("candidate"), values.get("current")
            if cur is not None:
                parts.append(f"{metric} {_num(cand)} vs {_num(cur)}")
            else:
                parts.append(f"{metric} {_num(cand)}" + (" (no holder)" if self.current_version is None else ""))
        if len(metrics) > SUMMARY_METRICS:
            parts.append(f"{len(metrics) - SUMMARY_METRICS} more metrics")
        drift = self.evidence.get("drift")
        if isinstance(drift, dict) and drift.get("verdict"):
            drifted = drift.get("drifted") or []
            which = f" ({', '.join(map(str, drifted[:3]))}{', ...' if len(drifted) > 3 else ''})" if drifted else ""
            parts.append(f"holder monitored: {drift['verdict']}{which}")
        then = self.evidence.get("compared_with")
        if then is not None and then != self.current_version:
            now = f"v{self.current_version}" if self.current_version else "no version"
            asked = "asked when it was" if self.evidence.get("via") == "register" else "compared with"
            parts.append(f"{asked} v{then}, @{self.alias} is now {now}")
        return "; ".join(parts) or self.why


#: How many metrics a request's summary names.
SUMMARY_METRICS = 3


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value)


def _parse_json(text: str | None) -> dict[str, Any] | None:
    """A JSON object from a tag, or ``None`` (absent, or not one)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


#: Lineage tags a version carries from its source run (register_model writes them).
_LINEAGE_TAGS = (RUN_ID, NOTEBOOK, GIT_COMMIT, GIT_BRANCH, GIT_DIRTY, PARAMS, FLAVOR)


def version_lineage(tags: Mapping[str, str]) -> dict[str, str]:
    """Where a version came from, from its tags: ``run_id``, ``notebook``,
    ``git.commit``, ``git.branch``, ``git.dirty``, ``params`` (JSON text) and
    ``flavor``, as far as recorded (a version registered outside mlops-nb has none)."""
    return {key[len(PREFIX) :]: tags[key] for key in _LINEAGE_TAGS if key in tags}


#: How many of a registered version's metrics its request shows as evidence (the user's
#: plain names first, as :func:`metrics_tag` ranks them); all of them stay on the version.
EVIDENCE_METRICS = 10


def _request_approval(
    client: MlflowClient,
    result: PromotionResult,
    current: ModelVersion | None,
    from_alias: str,
    why: str,
    who: str | None,
    protection: str,
) -> PromotionResult:
    """Record the promotion ``result`` as a request on its version, for a person."""
    name, alias, version = result.name, result.to_alias, result.version
    request = {
        "via": "promote",
        "from_alias": from_alias,
        "metric": result.metric,
        "candidate": result.candidate_value,
        "current": result.current_value,
        "compared_with": str(current.version) if current is not None else None,
        "why": why,
        "drift": _parse_json(current.tags.get(MONITOR_LAST)) if current is not None else None,
    }
    _record_request(client, name, version, alias, request, who, result.previous_version)
    message = f"{name} v{version} {_waiting(alias, protection)} {why}. {_decide(name, version, alias)}"
    return replace(result, message=message, pending=True)


def _waiting(alias: str, protection: str) -> str:
    return f"waits for a person's approval to become @{alias} (protected by {protection}); nothing moved."


def _decide(name: str, version: str, alias: str) -> str:
    return (
        f"Decide with: mlops-nb approve {shlex.quote(name)} {version} --alias {alias} "
        "(or mlops-nb reject ... --reason TEXT, %mlops approve, or the panel's Approvals)"
    )


def _record_request(
    client: MlflowClient,
    name: str,
    version: str,
    alias: str,
    request: dict[str, Any],
    who: str | None,
    holder: str | None,
) -> None:
    """Write ``request`` on ``version`` (tag :data:`APPROVAL_PENDING_PREFIX` + alias),
    index it on the model and audit it.

    The index is written first and checked last: a request is never left unlisted,
    even when a decision on another request of the model clears the index meanwhile.
    """
    who = who or who_am_i()
    stamped = {
        **request,
        "alias": alias,
        "requested_by": who,
        "requested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _index_request(client, name, alias, version, None)
    client.set_model_version_tag(name, version, APPROVAL_PENDING_PREFIX + alias, json.dumps(stamped, sort_keys=True))
    _audit(client, name, version, REQUESTED, alias, holder, version, who, str(request.get("why", "")))
    model = client.get_registered_model(name)
    if model.tags.get(APPROVAL_PENDING_PREFIX + alias) is None or APPROVAL_PENDING not in model.tags:
        _index_request(client, name, alias, version, model.tags)


# The index of requests, on each registered model that has any (:func:`pending_approvals`
# reads it): the fixed key APPROVAL_PENDING, which one filtered search finds among any
# number of models, valued with the aliases asked for ("champion,prod"); and one entry a
# requested alias (APPROVAL_PENDING_PREFIX + alias), each written on its own. The fixed
# key's value alone would need a read-modify-write, which loses an alias when two
# requests of one model race; the entries cannot, and say which aliases to search.


def _indexed_aliases(tags: Mapping[str, str]) -> set[str]:
    """The aliases a model's index names: its entries, and its fixed key's list."""
    named = {k[len(APPROVAL_PENDING_PREFIX) :] for k in tags if k.startswith(APPROVAL_PENDING_PREFIX)}
    listed = {a.strip() for a in (tags.get(APPROVAL_PENDING) or "").split(",")}
    return {a for a in named | listed if _ALIAS.match(a)}  # else not written by mlops-nb: unsearchable


def _index_request(client: MlflowClient, name: str, alias: str, version: str, tags: Mapping[str, str] | None) -> None:
    """Index a request of ``version`` for ``alias`` on model ``name`` (``tags``: the
    model's tags, when just read)."""
    if tags is None:
        tags = client.get_registered_model(name).tags
    named = {k[len(APPROVAL_PENDING_PREFIX) :] for k in tags if k.startswith(APPROVAL_PENDING_PREFIX)}
    client.set_registered_model_tag(name, APPROVAL_PENDING_PREFIX + alias, version)
    client.set_registered_model_tag(name, APPROVAL_PENDING, ",".join(sorted(named | {alias})))


def _asking(client: MlflowClient, name: str, alias: str) -> list[str]:
    """The versions of model ``name`` with a request for ``alias``: one indexed search."""
    flt = f"{_name_filter(name)} AND tags.`{APPROVAL_PENDING_PREFIX + alias}` LIKE '%'"
    return [str(mv.version) for mv in client.search_model_versions(flt, max_results=1000) if mv.name == name]


def _settle_index(client: MlflowClient, name: str, aliases: Iterable[str]) -> None:
    """Drop the index entries of ``aliases`` that no version of ``name`` asks for any
    more (decided, or the version deleted), then the fixed key if no entry is left.

    Each deletion is checked again after: a request made meanwhile keeps its entry (its
    maker checks its own entry last, :func:`_record_request`). A model deleted meanwhile
    has no index to settle.
    """
    try:
        for alias in aliases:
            if _asking(client, name, alias):
                continue
            client.delete_registered_model_tag(name, APPROVAL_PENDING_PREFIX + alias)
            left = _asking(client, name, alias)
            if left:
                client.set_registered_model_tag(name, APPROVAL_PENDING_PREFIX + alias, left[-1])
        tags = client.get_registered_model(name).tags
        named = sorted(k[len(APPROVAL_PENDING_PREFIX) :] for k in tags if k.startswith(APPROVAL_PENDING_PREFIX))
        if named:
            if tags.get(APPROVAL_PENDING) != ",".join(named):
                client.set_registered_model_tag(name, APPROVAL_PENDING, ",".join(named))
            return
        client.delete_registered_model_tag(name, APPROVAL_PENDING)
        tags = client.get_registered_model(name).tags
        named = sorted(k[len(APPROVAL_PENDING_PREFIX) :] for k in tags if k.startswith(APPROVAL_PENDING_PREFIX))
        if named:
            client.set_registered_model_tag(name, APPROVAL_PENDING, ",".join(named))
    except Exception as exc:
        if not is_missing(exc):
            raise


def _search_all(search: Any) -> list[Any]:
    """Every item of a paged MLflow registry search (``search(page_token)``)."""
    items: list[Any] = []
    token = None
    while True:
        page = search(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def pending_approvals(client: MlflowClient, name: str | None = None) -> list[PendingApproval]:
    """Every promotion waiting for a person (of model ``name`` only, when given),
    oldest request first, with its evidence. An unknown ``name`` is a :class:`NotFoundError`.

    Costs one search of the registered models that hold a request (the index's fixed
    key; one read for ``name``), one version search per alias asked for, and one read
    per current holder: not a read of every model or version, so it stays as cheap with
    hundreds of models. Index entries no request stands behind any more (a version
    deleted) are skipped and dropped here, best effort.
    """
    if name is not None:
        model = get_model(client, name)
        models = [model] if APPROVAL_PENDING in model.tags or _indexed_aliases(model.tags) else []
    else:
        flt = f"tags.`{APPROVAL_PENDING}` LIKE '%'"
        models = _search_all(
            lambda token: client.search_registered_models(filter_string=flt, max_results=1000, page_token=token)
        )
    by_name = {m.name: m for m in models}
    indexed = {m.name: _indexed_aliases(m.tags) for m in models}
    found: list[PendingApproval] = []
    holders: dict[tuple[str, str], ModelVersion] = {}
    for alias in sorted(set().union(*indexed.values())):
        key = APPROVAL_PENDING_PREFIX + alias
        flt = f"tags.`{key}` LIKE '%'"
        if name is not None:
            flt = f"{_name_filter(name)} AND {flt}"
        for mv in _search_all(
            lambda token, flt=flt: client.search_model_versions(flt, max_results=10000, page_token=token)
        ):
            model = by_name.get(mv.name)
            if model is None or alias not in indexed[mv.name] or key not in mv.tags:
                continue  # a request being made (indexed first), or a name LIKE matched loosely
            found.append(_pending(client, model, mv, alias, holders))
    _drop_stale(client, indexed, {(p.name, p.alias) for p in found})
    return sorted(found, key=lambda p: (p.requested_at, p.name, int(p.version), p.alias))


def _drop_stale(client: MlflowClient, indexed: dict[str, set[str]], found: set[tuple[str, str]]) -> None:
    """Settle the index of models whose entries no request was found behind."""
    for name, aliases in sorted(indexed.items()):
        stale = sorted(a for a in aliases if (name, a) not in found)
        if stale or not aliases:
            try:
                _settle_index(client, name, stale)
            except Exception:
                pass  # a listing never fails for its clean-up: stale entries are skipped above


def _name_filter(name: str) -> str:
    """A search filter on the model name: exact where the filter language can say it (the
    caller keeps exact matches of a LIKE)."""
    literal, exact = _literal(name)
    return f"name {'=' if exact else 'LIKE'} {literal}"


def _pending(
    client: MlflowClient, model: Any, mv: ModelVersion, alias: str, holders: dict[tuple[str, str], ModelVersion]
) -> PendingApproval:
    """The request for ``alias`` on ``mv``, with the evidence as it stands now."""
    request = _parse_json(mv.tags.get(APPROVAL_PENDING_PREFIX + alias)) or {}
    holder = model.aliases.get(alias)
    holder = str(holder) if holder is not None else None
    drift = request.get("drift")
    if holder is not None:
        if (model.name, holder) not in holders:
            try:
                holders[(model.name, holder)] = client.get_model_version(model.name, holder)
            except Exception as exc:
                if not is_missing(exc):
                    raise
        held = holders.get((model.name, holder))
        if held is not None and held.tags.get(MONITOR_LAST):
            drift = _parse_json(held.tags[MONITOR_LAST])  # the holder's newest verdict, not the one asked with
    evidence = {
        "metrics": _request_metrics(request),
        "comparison": request.get("why", "") if request.get("via") != "register" else "",  # no guard ran
        "compared_with": request.get("compared_with"),
        "from_alias": request.get("from_alias"),
        "via": request.get("via", "promote"),
        "drift": drift,
        "lineage": version_lineage(mv.tags),
    }
    return PendingApproval(
        model.name,
        str(mv.version),
        alias,
        holder,
        str(request.get("requested_by", "unknown")),
        str(request.get("requested_at", "")),
        str(request.get("why", "")),
        evidence,
    )


def _request_metrics(request: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A request's metrics evidence: {metric: {"candidate": x, "current": y}}; a
    promotion's is the one metric its guard compared, a registration's its run's."""
    metrics = request.get("metrics")
    if isinstance(metrics, dict):
        return {str(k): v for k, v in metrics.items() if isinstance(v, dict)}
    metric = request.get("metric")
    return {metric: {"candidate": request.get("candidate"), "current": request.get("current")}} if metric else {}


def _open_request(client: MlflowClient, name: str, version: str, alias: str) -> tuple[ModelVersion, dict[str, Any]]:
    """The version and its request for ``alias``; :class:`NotFoundError` saying why there
    is none (the version or model is gone, or the request was decided: by whom, when)."""
    check_alias(alias)
    what = f"no pending request to move @{alias} to {name} v{version}"
    try:
        mv = get_version(client, name, version)
    except NotFoundError as exc:
        raise NotFoundError(f"{what}: {exc}") from None
    text = mv.tags.get(APPROVAL_PENDING_PREFIX + alias)
    if text is None:
        decided = [
            e
            for e in audit_trail(client, name, str(mv.version))
            if e.get("alias") == alias and e.get("action") in (APPROVED, REJECTED)
        ]
        if decided:
            last = decided[-1]
            raise NotFoundError(f"{what}: {last.get('who')} {last.get('action')} it at {last.get('when')}")
        raise NotFoundError(f"{what}; see the requests with: mlops-nb approvals {shlex.quote(name)}")
    return mv, _parse_json(text) or {}


def _clear_request(client: MlflowClient, name: str, version: str, alias: str) -> None:
    """Delete the request, and settle the model's index (:func:`_settle_index`)."""
    client.delete_model_version_tag(name, version, APPROVAL_PENDING_PREFIX + alias)
    _settle_index(client, name, [alias])


def approve(
    client: MlflowClient, name: str, version: str | int, alias: str, who: str | None = None, reason: str = ""
) -> PromotionResult:
    """Approve the pending request of ``version`` for ``alias``: move the alias (through
    :func:`set_alias`, whose audit names the approver, the reason and the request),
    record ``approved`` on the version's audit trail and clear the request.

    :class:`NotFoundError` when there is no such request (never made, already decided,
    or its version deleted), saying which.
    """
    mv, request = _open_request(client, name, str(version), alias)
    who, reason = who or who_am_i(), (reason or "").strip()
    target = str(mv.version)
    asked = f"requested by {request.get('requested_by', 'unknown')}: {request.get('why', '')}".rstrip(": ")
    why = f"approved by {who}" + (f" ({reason})" if reason else "") + f"; {asked}"
    previous = set_alias(client, name, alias, target, who=who, why=why)
    _audit(client, name, target, APPROVED, alias, previous, target, who, reason or "approved")
    _clear_request(client, name, target, alias)
    if previous == target:
        message = f"{name} v{target} already held @{alias}; request approved by {who}"
    else:
        was = f"v{previous}" if previous is not None else "no version"
        message = f"{name} v{target} is now @{alias} (was {was}): {why}"
    cand = request.get("candidate")
    return PromotionResult(
        name,
        alias,
        target,
        previous,
        str(request.get("metric", "")),
        float(cand) if isinstance(cand, (int, float)) else math.nan,
        request.get("current") if isinstance(request.get("current"), (int, float)) else None,
        message,
    )


def reject(
    client: MlflowClient, name: str, version: str | int, alias: str, who: str | None = None, reason: str = ""
) -> PendingApproval:
    """Reject the pending request of ``version`` for ``alias``: nothing moves; ``rejected``
    is recorded on the version's audit trail with ``who`` and ``reason`` (required), and
    the request is cleared. Returns the request as it was.

    :class:`UsageError` without a reason; :class:`NotFoundError` when there is no such
    request, saying why.
    """
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise UsageError("say why the promotion is rejected: give a reason (--reason TEXT)")
    mv, _ = _open_request(client, name, str(version), alias)
    model = get_model(client, name)
    decided = _pending(client, model, mv, alias, {})
    who = who or who_am_i()
    target = str(mv.version)
    _audit(client, name, target, REJECTED, alias, decided.current_version, target, who, reason)
    _clear_request(client, name, target, alias)
    return decided


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
        if k.startswith(PREFIX)
        and not k.startswith((AUDIT_PREFIX, APPROVAL_PENDING_PREFIX))  # the audit and requests: their own views
        and k != METRICS_TAG  # metrics: live, above
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
