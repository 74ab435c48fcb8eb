"""What a model server serves: a model reference, and the files of the version it names now.

Four kinds of reference, as MLflow writes them:

- ``models:/NAME@ALIAS`` follows the alias: the server asks the registry which version it
  names now (:func:`current_version`) and swaps when that changes;
- ``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH`` and a local folder holding an MLmodel
  file are pinned: they name one set of files for the server's whole life.

Everything goes through an explicit ``MlflowClient`` for the project: MLflow's fluent
``models:/`` and ``runs:/`` resolution reads process-global URIs (and, unset, creates
``mlflow.db`` in the current folder), which has no place inside a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_nb.exceptions import NotFoundError, UsageError
from mlops_nb.registry import alias_holder, check_alias, check_model_name, get_version, model_files, resolve_alias
from mlops_nb.snapshots import is_missing

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = ["ModelSource", "ResolvedModel", "check_reference", "current_version", "parse_source", "resolve"]

_MODELS = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class ModelSource:
    """A parsed model reference.

    ``kind`` is ``alias`` (follows the alias), or ``version``, ``run`` or ``path`` (pinned).
    """

    text: str
    kind: str
    name: str
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    path: str | None = None

    @property
    def follows_alias(self) -> bool:
        """True when the served version may change (an ``@ALIAS`` reference)."""
        return self.kind == "alias"


@dataclass(frozen=True)
class ResolvedModel:
    """One loadable set of model files, and the name and version it answers as."""

    name: str
    version: str
    files: str


def parse_source(text: str) -> ModelSource:
    """Parse a model reference; :class:`UsageError` (one line, what to write) for anything
    else. A local folder must exist and hold an ``MLmodel`` file."""
    text = (text or "").strip()
    match = _MODELS.match(text)
    if match:
        name = check_model_name(match["name"])
        if match["alias"] is not None:
            alias = match["alias"]
            if alias.lower() == "latest":
                raise UsageError(
                    f"{text!r}: 'latest' is not an alias a server can follow; point an alias at the version "
                    "(mlops-nb alias) and serve models:/NAME@ALIAS, or pin models:/NAME/VERSION"
                )
            return ModelSource(text, "alias", name, alias=check_alias(alias))
        version = match["version"]
        if not re.fullmatch(r"[1-9][0-9]{0,8}", version):
            raise UsageError(f"{text!r}: the version must be a positive whole number, as in models:/{name}/3")
        return ModelSource(text, "version", name, version=version)
    match = _RUNS.match(text)
    if match:
        path = match["path"].strip("/")
        return ModelSource(text, "run", path.rsplit("/", 1)[-1] or "model", run_id=match["run_id"], path=path)
    if text.startswith(("models:/", "runs:/")) or "://" in text:
        raise UsageError(
            f"{text!r} is not a model reference: use models:/NAME@ALIAS, models:/NAME/VERSION, "
            "runs:/RUN_ID/PATH or a folder holding an MLmodel file"
        )
    folder = Path(text).expanduser()
    if not (folder / "MLmodel").is_file():
        what = "does not exist" if not folder.exists() else "holds no MLmodel file"
        raise UsageError(
            f"{text!r} is neither a model reference nor a folder holding an MLflow model (it {what}): "
            "give models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH or a folder with an MLmodel file"
        )
    folder = folder.resolve()
    return ModelSource(text, "path", folder.name, path=str(folder))


def check_reference(client: MlflowClient, text: str) -> str:
    """``text`` checked as a server will take it, before a process is started for it and
    without loading anything: :class:`UsageError` for what is not a model reference,
    :class:`NotFoundError` for a model, version or alias the registry lacks. Returns the
    reference to hand the server (a folder made absolute: servers run from the project
    root)."""
    source = parse_source(text)
    if source.kind == "alias":
        assert source.alias is not None
        resolve_alias(client, source.name, source.alias)
    elif source.kind == "version":
        get_version(client, source.name, str(source.version))
    return source.path if source.kind == "path" and source.path else source.text


def current_version(client: MlflowClient, source: ModelSource) -> str | None:
    """The registry version ``source`` names now (one registry call for an alias, none for
    a pinned reference); ``None`` when the alias has been removed."""
    if source.kind == "alias":
        assert source.alias is not None
        return alias_holder(client, source.name, source.alias)
    return source.version


def resolve(client: MlflowClient, source: ModelSource, version: str | None = None) -> ResolvedModel:
    """The files of what ``source`` names (of ``version`` when given, for an alias whose
    holder is already known); :class:`NotFoundError` naming what is missing."""
    if source.kind in ("alias", "version"):
        if version is not None:
            mv = get_version(client, source.name, version)
        elif source.kind == "alias":
            assert source.alias is not None
            mv = resolve_alias(client, source.name, source.alias)
        else:
            mv = get_version(client, source.name, str(source.version))
        return ResolvedModel(source.name, str(mv.version), model_files(client, mv))
    assert source.path is not None
    if source.kind == "run":
        assert source.run_id is not None
        return ResolvedModel(source.name, source.run_id, run_model_files(client, source.run_id, source.path))
    return ResolvedModel(source.name, _model_uuid(source.path) or "local", source.path)


def run_model_files(client: MlflowClient, run_id: str, path: str) -> str:
    """A local folder holding the model a run logged under ``path``.

    MLflow 3 keeps a model logged in a run as a logged model named by the path's first
    part, whose source run is the run; MLflow 2 kept it among the run's artifacts. Both
    are looked up through ``client``.
    """
    import mlflow.artifacts

    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(f"no run {run_id} in the project's store; check the run id") from None
        raise
    name, _, rest = path.partition("/")
    token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'", page_token=token
        )
        match = next((m for m in page if m.source_run_id == run_id and m.name == name), None)
        if match is not None:
            location = match.artifact_location.rstrip("/") + (f"/{rest}" if rest else "")
            return mlflow.artifacts.download_artifacts(artifact_uri=location)
        token = page.token
        if not token:
            break
    try:
        folder = client.download_artifacts(run_id, path)
    except Exception:
        folder = ""
    if not folder or not (Path(folder) / "MLmodel").is_file():
        raise NotFoundError(f"run {run_id} logged no model under {path!r}; check the path (runs:/RUN_ID/PATH)")
    return folder


def _model_uuid(folder: str) -> str | None:
    """The ``model_uuid`` of a local model's MLmodel file, cut to 12 characters: what a
    pinned folder answers as its version."""
    from mlflow.models import Model

    try:
        uuid = Model.load(folder).model_uuid
    except Exception:
        return None
    return str(uuid)[:12] if uuid else None
