"""Open a project's MLflow store: create it once, safely, and hand out one client per URI.

A new SQLite store runs MLflow's schema migrations on first use (about 1-2 s), and
several processes doing that at once can race. :func:`ensure_store` initialises it
under an inter-process file lock and leaves a marker, so later processes skip the work.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .config import STORE_DIRNAME, ProjectConfig
from .exceptions import StoreError, StoreUnreachableError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = ["ensure_store", "get_client", "get_or_create_experiment"]

_clients: dict[str, "MlflowClient"] = {}
_ready: set[str] = set()
_lock = threading.Lock()


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's and Alembic's INFO chatter while migrating a new store."""
    names = ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _DropDbErrorTracebacks(logging.Filter):
    """MLflow logs a full SQLAlchemy traceback at ERROR before raising a store error.

    mlops-nb reports each such failure as one warning line, so the traceback is noise
    that buries it in the user's notebook.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


_db_filter = _DropDbErrorTracebacks()


def _init_sqlite(config: ProjectConfig, db: Path) -> None:
    from filelock import FileLock, Timeout

    marker = db.with_name(db.name + ".ready")
    if db.exists() and marker.exists():
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        if db.parent.name == STORE_DIRNAME:
            ignore = db.parent / ".gitignore"
            if not ignore.exists():
                # The store must never make the project's git tree dirty.
                ignore.write_text("*\n")
        with FileLock(str(db.with_name(db.name + ".lock")), timeout=300):
            if db.exists() and marker.exists():
                return
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            with _quiet_mlflow():
                # Creating the store runs the migrations and creates the Default
                # experiment with the project's artifact root, not ./mlruns of
                # whatever folder the first process happened to run in.
                SqlAlchemyStore(config.tracking_uri, config.artifact_root or str(db.parent / "artifacts"))
            marker.write_text("initialised by mlops-nb\n")
    except Timeout:
        raise StoreError(
            f"timed out waiting for another process to initialise {db}; remove {db}.lock "
            "if no other process is running"
        ) from None
    except OSError as exc:
        raise StoreUnreachableError(
            f"cannot create the tracking store {config.tracking_uri}: {exc.strerror or exc}; "
            "check that the folder is writable and the disk is not full"
        ) from None
    except Exception as exc:  # MLflow/SQLAlchemy errors: corrupt file, locked, ...
        raise StoreUnreachableError(
            f"cannot open the tracking store {config.tracking_uri}: {_one_line(exc)}"
        ) from None


def _probe_http(uri: str, timeout: float = 3.0) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            resp.read(64)
    except urllib.error.HTTPError:
        return  # it answered: reachable, whatever it thinks of /health
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnreachableError(
            f"cannot reach the tracking server at {uri} ({reason}); start it or point "
            "MLFLOW_TRACKING_URI at a running one"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def ensure_store(config: ProjectConfig) -> None:
    """Make sure the store at ``config.tracking_uri`` exists and answers.

    A new SQLite store is created once under an inter-process lock; an HTTP tracking
    server is probed. Raises :class:`StoreUnreachableError` with the URI otherwise.
    """
    uri = config.tracking_uri
    if uri in _ready:
        db = config.sqlite_path
        if db is None or db.exists():
            return
    db = config.sqlite_path
    if db is not None:
        _init_sqlite(config, db)
    elif uri.startswith(("http://", "https://")):
        _probe_http(uri)
        # MLflow's defaults retry a failed request for minutes, which would freeze the
        # user's cell when the server goes away mid-session. Users' own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    _ready.add(uri)


def get_client(config: ProjectConfig) -> "MlflowClient":
    """Return the process's one ``MlflowClient`` for this store, creating the store if new."""
    ensure_store(config)
    with _lock:
        client = _clients.get(config.tracking_uri)
        if client is None:
            from mlflow import MlflowClient

            db_logger = logging.getLogger("mlflow.store.db.utils")
            if _db_filter not in db_logger.filters:
                db_logger.addFilter(_db_filter)
            client = MlflowClient(tracking_uri=config.tracking_uri)
            _clients[config.tracking_uri] = client
    return client


def get_or_create_experiment(client: "MlflowClient", config: ProjectConfig, name: str) -> str:
    """Return the id of experiment ``name``, creating it with the project's artifact root.

    Safe when several processes create the same experiment at once.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise StoreError(
                f"experiment {name!r} is deleted; restore it in MLflow or choose another "
                "name with --experiment"
            )
        return exp.experiment_id
    location = None
    if config.artifact_root is not None:
        import uuid

        location = f"{config.artifact_root.rstrip('/')}/{uuid.uuid4().hex}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise StoreError(f"cannot create experiment {name!r}: {_one_line(exc)}") from None
        return exp.experiment_id
