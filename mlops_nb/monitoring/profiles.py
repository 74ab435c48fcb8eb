"""Where reference profiles live: a small run of kind ``profile`` in the ``monitoring``
experiment holds ``profile.json``, and the model version's tag :data:`~mlops_nb.tags.PROFILE`
points at it (``runs:/RUN_ID/profile.json``).

A run, not a version tag, holds the profile itself: a profile of 20 features with its
quantile sketches is tens of kilobytes, past MLflow's 5,000-character tag limit, and an
artifact is readable through anything an ``MlflowClient`` reaches (a SQLite file, a
tracking server with proxied artifacts). Replacing a profile points the tag at a new
run; the old run stays, as a record of what the version was once compared against.
"""

from __future__ import annotations

import posixpath
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, NotFoundError, StoreError, UsageError, one_line
from mlops_nb.monitoring.profile import Profile, build_profile
from mlops_nb.registry import get_version, load_model
from mlops_nb.store import local_path
from mlops_nb.tags import KIND, MONITOR_MODEL, MONITOR_VERSION, PROFILE

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from mlops_nb.config import ProjectConfig

__all__ = [
    "EXPERIMENT",
    "PREDICTED_ROWS",
    "PROFILE_FILE",
    "add_profile_hint",
    "load_profile",
    "monitoring_experiment",
    "predict_rows",
    "profile_summary",
    "reference_profile",
    "save_profile",
    "store_profile",
]

#: The experiment of monitor and profile runs.
EXPERIMENT = "monitoring"
#: The artifact that holds a profile.
PROFILE_FILE = "profile.json"
#: A reference profile's predictions come from at most this many rows (a sample of
#: predictions profiles them as well as all of them, and predicting millions would take minutes).
PREDICTED_ROWS = 10_000


def add_profile_hint(name: str, version: str) -> str:
    """How to give a version a profile (the end of a one-line error)."""
    return (
        f"add one with `mlops-nb profile models:/{name}/{version} --data FILE` "
        f"(or register with `%mlops register ... --reference X_train`)"
    )


def monitoring_experiment(client: MlflowClient, config: ProjectConfig | None = None) -> str:
    """The id of the ``monitoring`` experiment, created when missing.

    With the project's ``config`` it gets the project's artifact root, as every
    experiment mlops-nb creates. Without one (a caller that only has a client), a new
    experiment's artifacts go beside the Default experiment's when those are a local
    folder (an ``MlflowClient`` on a SQLite file alone would otherwise use ``./mlruns``
    of whatever folder the process runs in); a tracking server decides for itself.
    """
    from mlops_nb.store import get_or_create_experiment

    if config is not None:
        return get_or_create_experiment(client, config, EXPERIMENT)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None and exp.lifecycle_stage != "deleted":
        return str(exp.experiment_id)
    if exp is not None:
        raise StoreError(f"experiment {EXPERIMENT!r} is deleted; restore it in MLflow to keep monitor runs")
    location = None
    try:
        default = client.get_experiment("0")
        if local_path(default.artifact_location):
            import uuid

            parent = posixpath.dirname(default.artifact_location.rstrip("/"))
            location = posixpath.join(parent, uuid.uuid4().hex)
    except Exception:  # no Default experiment (deleted): the store's own default then
        location = None
    try:
        return str(client.create_experiment(EXPERIMENT, artifact_location=location))
    except Exception as exc:
        exp = client.get_experiment_by_name(EXPERIMENT)  # another process created it meanwhile
        if exp is None:
            raise StoreError(f"cannot create experiment {EXPERIMENT!r}: {one_line(exc)}") from None
        return str(exp.experiment_id)


def save_profile(
    client: MlflowClient, name: str, version: str, profile: Profile, *, config: ProjectConfig | None = None
) -> str:
    """Store ``profile`` as the reference of model ``name`` version ``version``.

    Logs ``profile.json`` in a run (kind ``profile``, experiment ``monitoring``), points
    the version's :data:`~mlops_nb.tags.PROFILE` tag at it and returns that
    ``runs:/RUN_ID/profile.json`` URI; an earlier profile is replaced (its run stays).
    ``config`` (the project's) places a new ``monitoring`` experiment's artifacts.

    Raises
    ------
    NotFoundError
        When the model or version does not exist.
    StoreError
        When the store cannot take the run.
    """
    mv = get_version(client, name, str(version))
    try:
        exp_id = monitoring_experiment(client, config)
        tags = {KIND: "profile", MONITOR_MODEL: mv.name, MONITOR_VERSION: str(mv.version)}
        run = client.create_run(exp_id, run_name=f"profile {mv.name} v{mv.version}", tags=tags)
        run_id = run.info.run_id
        try:
            client.log_text(run_id, profile.to_json(), PROFILE_FILE)
            if profile.source:
                client.log_param(run_id, "source", profile.source[:500])
            client.log_param(run_id, "rows", str(profile.rows))
        except Exception:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))
        uri = f"runs:/{run_id}/{PROFILE_FILE}"
        client.set_model_version_tag(mv.name, str(mv.version), PROFILE, uri)
    except MlopsError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot store the profile of {mv.name} v{mv.version}: {one_line(exc)}") from None
    return uri


def load_profile(client: MlflowClient, name: str, version: str) -> Profile:
    """The reference profile of model ``name`` version ``version``.

    Raises
    ------
    NotFoundError
        When the version does not exist, has no profile, or its profile run is gone; the
        line says how to add one.
    """
    mv = get_version(client, name, str(version))
    uri = (mv.tags or {}).get(PROFILE)
    if not uri:
        raise NotFoundError(
            f"model {mv.name} v{mv.version} has no reference profile: {add_profile_hint(name, version)}"
        )
    text = _read_artifact(client, uri, f"the profile of {mv.name} v{mv.version}", add_profile_hint(name, version))
    try:
        return Profile.from_json(text)
    except Exception as exc:
        raise NotFoundError(
            f"the profile of {mv.name} v{mv.version} ({uri}) cannot be read ({one_line(exc)}): "
            f"{add_profile_hint(name, version)}"
        ) from None


def _read_artifact(client: MlflowClient, uri: str, what: str, hint: str) -> str:
    """The text of a ``runs:/RUN_ID/PATH`` artifact, read through ``client``."""
    if not uri.startswith("runs:/"):
        raise NotFoundError(f"{what} is tagged {uri!r}, not a runs:/ URI: {hint}")
    run_id, _, path = uri[len("runs:/") :].partition("/")
    path = path or PROFILE_FILE
    try:
        # A local artifact folder (the embedded store) is read in place: no copy, and
        # none of MLflow's download progress bars on stderr.
        folder = local_path(client.get_run(run_id).info.artifact_uri)
        if folder and (Path(folder) / path).is_file():
            return (Path(folder) / path).read_text(encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="mlops-nb-profile-") as tmp:
            local = client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8")
    except Exception as exc:
        raise NotFoundError(f"{what} ({uri}) cannot be read ({one_line(exc)}): {hint}") from None


def reference_profile(model: Any, reference: Any, input_example: Any = None, *, source: str = "") -> Profile:
    """The profile of ``reference`` (the training data: a DataFrame, array, list of rows
    or dict of columns), or of ``input_example`` when there is no reference, with the
    distribution of ``model``'s predictions on at most :data:`PREDICTED_ROWS` of its rows.

    A model that cannot predict on that data (or gives no one-value-a-row answer) gives
    a profile without predictions: never an error. ``UsageError`` when there is no data
    at all, or it cannot be profiled.
    """
    data = reference if reference is not None else input_example
    if data is None:
        raise UsageError("no data to profile: give the training data (--reference X_train) or an input example")
    if not source:
        source = "reference data" if reference is not None else "input example"
    predictions = predict_rows(model, data)
    return build_profile(data, predictions, source=source)


def predict_rows(model: Any, data: Any, limit: int = PREDICTED_ROWS) -> list[Any] | None:
    """``model``'s predictions on the first ``limit`` rows of ``data`` as one value a
    row, or ``None`` when it cannot give them."""
    if model is None or not hasattr(model, "predict"):
        return None
    try:
        rows = _head(data, limit)
        return _one_a_row(model.predict(rows), len(rows))
    except Exception:  # any model, any failure: the profile goes without predictions
        return None


def _head(data: Any, limit: int) -> Any:
    import pandas as pd

    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if hasattr(data, "iloc"):
        return data.iloc[:limit]
    return data[:limit]


def _one_a_row(output: Any, rows: int) -> list[Any] | None:
    import numpy as np

    if hasattr(output, "to_numpy"):  # a Series or a one-column DataFrame
        output = output.to_numpy()
    values = np.asarray(output)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or len(values) != rows:
        return None  # probabilities of several classes, sequences: no single prediction
    return [v.item() if hasattr(v, "item") else v for v in values]


def profile_summary(profile: Profile) -> dict[str, Any]:
    """A short JSON-ready summary of a profile (rows, source, columns, prediction kind)."""
    return {
        "rows": profile.rows,
        "source": profile.source,
        "created": profile.created,
        "columns": list(profile.columns),
        "prediction": profile.prediction.kind if profile.prediction is not None else None,
    }


def store_profile(
    client: MlflowClient,
    name: str,
    version: str | int,
    model: Any = None,
    reference: Any = None,
    input_example: Any = None,
    *,
    source: str = "",
    config: ProjectConfig | None = None,
) -> Profile:
    """Build and store the reference profile of ``name`` ``version`` from ``reference``
    (else ``input_example``), with ``model``'s predictions on it (``model`` defaults to the
    registered version itself); returns it.

    Every failure is one :class:`~mlops_nb.exceptions.MlopsError` line saying the profile
    was not stored, why, and how to add one: registration calls this after the version
    exists, and shows that line instead of failing.
    """
    try:
        if model is None:
            model, _ = load_model(client, f"models:/{name}/{version}")
        profile = reference_profile(model, reference, input_example, source=source)
        save_profile(client, name, str(version), profile, config=config)
    except Exception as exc:
        ours = isinstance(exc, MlopsError)
        message = (
            f"no reference profile was stored for {name} v{version} ({one_line(exc, with_type=not ours)}); "
            + add_profile_hint(name, str(version))
        )
        raise (type(exc)(message) if ours else StoreError(message)) from None
    return profile
