"""Where runs go: find the project and its MLflow store.

Resolution order, first match wins:

1. the ``MLFLOW_TRACKING_URI`` environment variable;
2. a ``[tool.mlops-nb]`` table in the nearest ``pyproject.toml`` (``tracking_uri``);
3. ``<project root>/.mlops/mlflow.db`` (SQLite) with artifacts in
   ``<project root>/.mlops/artifacts``.

The project root is the nearest ancestor of the notebook's folder holding ``.git``,
``pyproject.toml`` or ``.mlops``, so notebooks in sub-folders of one project share one
store (MLflow's own default, ``sqlite:///mlflow.db``, is relative to the current folder
and silently splits them).

This module imports nothing from Jupyter or MLflow: it is cheap enough to run when the
extension loads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_nb.exceptions import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "PROJECT_MARKERS",
    "STORE_DIRNAME",
    "ProjectConfig",
    "absolute_sqlite_url",
    "alias_names",
    "find_project_root",
    "resolve_config",
]

#: Files or folders whose presence marks a project root.
PROJECT_MARKERS = (".git", "pyproject.toml", ".mlops")
#: The folder, under the project root, holding the embedded store.
STORE_DIRNAME = ".mlops"
#: Keys accepted in ``[tool.mlops-nb]``.
CONFIG_KEYS = {
    "tracking_uri": "the MLflow tracking URI (relative sqlite paths are relative to pyproject.toml)",
    "artifact_location": "folder or URI for artifacts of new experiments",
    "experiment": "the default experiment name (otherwise the notebook's name)",
    "capture": "true/false: snapshot notebook code, cell sources and git diffs with runs",
    "scheduler_db": "the SQLAlchemy URL of the schedule database (relative sqlite paths are relative to pyproject.toml)",
    "executor": "where notebook jobs run: local (the default) or dask://HOST:PORT (a Dask scheduler)",
    "request_log": "the SQLAlchemy URL of the model servers' request log (relative sqlite paths are relative to pyproject.toml)",
    "approval_aliases": "aliases whose moves by promotion wait for a person's approval: a list such as "
    '["champion"] or a comma-separated string (MLOPS_NB_APPROVAL_ALIASES wins)',
}

#: An alias name as the registry accepts it (letters, digits, '_', '-'); ``latest`` and
#: ``v<N>`` are MLflow's own (the registry's check_alias says the same, one layer up).
_ALIAS_NAME = re.compile(r"^[\w\-]{1,255}$")
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)
_EXECUTOR = re.compile(r"^(local|dask://\[?[A-Za-z0-9_.:-]+\]?:\d{1,5})$")


def executor_name(flag: str | None, config: ProjectConfig) -> str:
    """The executor a job command uses: ``--executor`` when given (a bad value is a
    :class:`UsageError`), else the project's ``executor`` setting."""
    if not flag:
        return config.executor
    try:
        return check_executor(flag, "--executor")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def check_executor(value: str, where: str) -> str:
    """``value`` if it names an executor (``local`` or ``dask://HOST:PORT``), else a
    :class:`ConfigError` naming ``where`` it came from."""
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not _EXECUTOR.match(text):
        raise ConfigError(f"{where} must be 'local' or dask://HOST:PORT (a Dask scheduler's address), not {value!r}")
    return text


@dataclass(frozen=True)
class ProjectConfig:
    """The resolved settings of one project.

    Attributes
    ----------
    project_root:
        The folder notebook paths are recorded relative to.
    tracking_uri:
        An absolute MLflow tracking URI.
    artifact_root:
        Where new experiments keep artifacts; ``None`` lets the tracking server decide.
    source:
        Why this store was chosen, as a sentence for ``%mlops status``.
    experiment:
        The configured default experiment name, if any.
    capture:
        Whether code (notebook snapshot, cell sources, git diff) is captured with runs.
    executor:
        Where notebook jobs run: ``local`` or ``dask://HOST:PORT``.
    scheduler_db:
        ``scheduler_db`` of the project root's ``[tool.mlops-nb]``: the SQLAlchemy URL of
        the schedule database, a relative ``sqlite:///`` path made absolute against that
        ``pyproject.toml``; ``None`` when not set (``MLOPS_NB_SCHEDULER_DB`` and the default
        are the scheduler's to apply).
    request_log:
        ``request_log`` of the project root's ``[tool.mlops-nb]``: the SQLAlchemy URL of the
        model servers' request log, made absolute as ``scheduler_db`` is; ``None`` when not
        set (``MLOPS_NB_REQUEST_LOG`` and the default are the request log's to apply).
    approval_aliases:
        Aliases whose moves by promotion wait for a person's approval (a model can
        protect more of its own: :func:`mlops_nb.registry.set_protected_aliases`):
        ``MLOPS_NB_APPROVAL_ALIASES`` (comma-separated), else ``approval_aliases`` of
        ``[tool.mlops-nb]``; none by default.
    """

    project_root: Path
    tracking_uri: str
    artifact_root: str | None
    source: str
    experiment: str | None = None
    capture: bool = True
    executor: str = "local"
    scheduler_db: str | None = None
    request_log: str | None = None
    approval_aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-safe values (:meth:`from_dict` reads them back): how a job
        hands its configuration to the kernel that runs it."""
        data = dataclasses.asdict(self)
        data["project_root"] = str(self.project_root)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectConfig:
        """The settings :meth:`to_dict` wrote; :class:`ConfigError` for anything else."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or not {"project_root", "tracking_uri", "source"} <= data.keys():
            raise ConfigError(f"not a project configuration: {data!r:.200}")
        values = {k: v for k, v in data.items() if k in names}
        values["project_root"] = Path(str(values["project_root"]))
        if "approval_aliases" in values:  # JSON gives a list back
            values["approval_aliases"] = alias_names(values["approval_aliases"], "approval_aliases")
        return cls(**values)

    @property
    def is_embedded(self) -> bool:
        """True for the default per-project SQLite store."""
        return self.tracking_uri == _embedded_uri(self.project_root)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite store, else ``None``."""
        return sqlite_path(self.tracking_uri)


def sqlite_path(uri: str) -> Path | None:
    """Return the file of a ``sqlite:///`` URI, or ``None`` for other stores."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    rest = uri[len(prefix) :].split("?", 1)[0]
    return Path(rest) if rest.startswith("/") else Path(os.path.abspath(rest))


def _embedded_uri(root: Path) -> str:
    return f"sqlite:///{root / STORE_DIRNAME / 'mlflow.db'}"


def find_project_root(start: Path) -> tuple[Path, str]:
    """Return the project root for ``start`` and the marker that decided it.

    The nearest folder at or above ``start`` holding one of :data:`PROJECT_MARKERS`
    wins; with none, ``start`` itself is the root and the marker is ``""``.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        for marker in PROJECT_MARKERS:
            if (folder / marker).exists():
                return folder, marker
    return start, ""


def _nearest_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_table(pyproject: Path) -> dict[str, Any] | None:
    try:
        with pyproject.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject} is not valid TOML ({exc}); fix the file.") from None
    table = data.get("tool", {}).get("mlops-nb")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.mlops-nb] in {pyproject} must be a table; see the README.")
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [tool.mlops-nb] of {pyproject}; "
            f"accepted keys: {', '.join(sorted(CONFIG_KEYS))}."
        )
    for key in ("tracking_uri", "artifact_location", "experiment", "request_log"):
        if key in table and not (isinstance(table[key], str) and table[key].strip()):
            raise ConfigError(f"{key} in [tool.mlops-nb] of {pyproject} must be a non-empty string.")
    if "capture" in table and not isinstance(table["capture"], bool):
        raise ConfigError(f"capture in [tool.mlops-nb] of {pyproject} must be true or false.")
    return table


def _database_url(table: Mapping[str, Any], key: str, pyproject: Path | None, root: Path) -> str | None:
    """A database URL of ``[tool.mlops-nb]`` (``scheduler_db``, ``request_log``), read only
    from the project root's own ``pyproject.toml`` (as the scheduler always has), a relative
    SQLite path made absolute against it; a value that is not a non-empty string is
    ignored, as it always was for ``scheduler_db``."""
    value = table.get(key)
    if pyproject is None or pyproject.parent != root or not isinstance(value, str) or not value.strip():
        return None
    return absolute_sqlite_url(value.strip(), pyproject.parent)


def absolute_sqlite_url(url: str, base: Path) -> str:
    """``url`` with a relative ``sqlite:///`` path made absolute against ``base`` (an
    in-memory or empty path, and every other URL, as given): a database URL means the
    same file whichever folder a process starts in."""
    prefix = "sqlite:///"
    path = url[len(prefix) :]
    if url.startswith(prefix) and not path.startswith("/") and path not in ("", ":memory:"):
        return prefix + str((base / path).resolve())
    return url


def _absolute_uri(uri: str, base: Path) -> str:
    """Make a relative ``sqlite:///`` path absolute against ``base``."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str((base / uri[len(prefix) :]).resolve())
    return uri  # http(s)://, postgresql://, databricks, file:... are MLflow's to interpret


def _artifact_root_for(uri: str, configured: str | None, base: Path) -> str | None:
    if configured:
        if "://" in configured:
            return configured
        return str((base / configured).resolve())
    db = sqlite_path(uri)
    if db is not None:
        return str(db.parent / "artifacts")
    return None


def resolve_config(
    start: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProjectConfig:
    """Resolve the project and store for a notebook folder (default: the current folder).

    Raises
    ------
    ConfigError
        When ``[tool.mlops-nb]`` or ``MLFLOW_TRACKING_URI`` is invalid; the message
        names the file or variable and says how to fix it.
    """
    env = os.environ if environ is None else environ
    start_dir = Path(start if start is not None else os.getcwd()).resolve()
    if start_dir.is_file():
        start_dir = start_dir.parent
    root, marker = find_project_root(start_dir)
    pyproject = _nearest_pyproject(start_dir)
    table = (_read_table(pyproject) if pyproject is not None else None) or {}
    executor = _executor(env, table, pyproject)
    uri, base, source = _store(env, table, pyproject, root, marker)
    return ProjectConfig(
        project_root=root,
        tracking_uri=uri,
        artifact_root=_artifact_root_for(uri, table.get("artifact_location"), base),
        source=source,
        experiment=table.get("experiment"),
        capture=table.get("capture", True),
        executor=executor,
        scheduler_db=_database_url(table, "scheduler_db", pyproject, root),
        request_log=_database_url(table, "request_log", pyproject, root),
        approval_aliases=_approval_aliases(env, table, pyproject),
    )


def alias_names(value: Any, where: str) -> tuple[str, ...]:
    """Alias names from a list of names or a comma-separated text, in order, each once;
    a :class:`ConfigError` naming ``where`` the value came from for anything else."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(
            f'{where} must be a list of alias names such as ["champion"] or a text such as "champion,prod", '
            f"not {value!r:.60}"
        )
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where} must hold alias names (text), not {item!r:.60}")
        name = item.strip()
        if isinstance(value, str) and not name:
            continue  # "champion," or an empty text: nothing between the commas
        if not _ALIAS_NAME.match(name) or _RESERVED_ALIAS.match(name):
            raise ConfigError(
                f"{where} holds {name!r:.60}, which is not an alias name: use letters, digits, '_' and '-' "
                "(not 'latest' or v<N>), e.g. champion"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _approval_aliases(env: Mapping[str, str], table: Mapping[str, Any], pyproject: Path | None) -> tuple[str, ...]:
    """``MLOPS_NB_APPROVAL_ALIASES``, else ``approval_aliases`` of ``[tool.mlops-nb]``, else none."""
    text = env.get("MLOPS_NB_APPROVAL_ALIASES", "")
    if text.strip():
        return alias_names(text, "MLOPS_NB_APPROVAL_ALIASES")
    if "approval_aliases" in table:
        return alias_names(table["approval_aliases"], f"approval_aliases in [tool.mlops-nb] of {pyproject}")
    return ()


def _executor(env: Mapping[str, str], table: Mapping[str, Any], pyproject: Path | None) -> str:
    """``MLOPS_NB_EXECUTOR``, else ``executor`` of ``[tool.mlops-nb]``, else ``local``."""
    if env.get("MLOPS_NB_EXECUTOR", "").strip():
        return check_executor(env["MLOPS_NB_EXECUTOR"], "MLOPS_NB_EXECUTOR")
    if "executor" in table:
        return check_executor(table["executor"], f"executor in [tool.mlops-nb] of {pyproject}")
    return "local"


def _store(
    env: Mapping[str, str], table: Mapping[str, Any], pyproject: Path | None, root: Path, marker: str
) -> tuple[str, Path, str]:
    """(tracking URI, folder a relative artifact location is relative to, why this store)."""
    env_uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if env_uri:
        return _absolute_uri(env_uri, Path(os.getcwd())), root, "the MLFLOW_TRACKING_URI environment variable"
    if "tracking_uri" in table:
        assert pyproject is not None
        uri = _absolute_uri(table["tracking_uri"], pyproject.parent)
        return uri, pyproject.parent, f"tracking_uri in [tool.mlops-nb] of {pyproject}"
    why = (
        f"the embedded store of the project rooted at {root} (it holds {marker})"
        if marker
        else f"the embedded store in {root} (no .git, pyproject.toml or .mlops above the notebook)"
    )
    return _embedded_uri(root), root, why
