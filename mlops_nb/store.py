"""Open a project's MLflow store: create it once, safely, and hand out one client per URI.

A new SQLite store runs MLflow's schema migrations on first use (about 1-2 s), and
several processes doing that at once can race. :func:`ensure_store` initialises it
under an inter-process file lock and leaves a marker, so later processes skip the work.
The marker records where the store lives: a project moved or copied to another folder
has its stored artifact locations re-pointed there the first time it is opened.

A tracking server can go away and come back while a kernel or a Jupyter server runs.
Nothing here keeps a dead state: a server is re-probed (one cheap API call) a few seconds
after it last answered or failed, so a call fails in milliseconds with one clear line
while it is down, and works again as soon as it answers. :func:`check_store` is the
probe behind ``%mlops status``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_nb.config import STORE_DIRNAME, ProjectConfig, sqlite_path
from mlops_nb.exceptions import StoreError, StoreUnreachableError, UsageError, one_line
from mlops_nb.tags import KIND

if TYPE_CHECKING:  # pragma: no cover
    import sqlite3

    from mlflow import MlflowClient

__all__ = [
    "ARTIFACT_COLUMNS",
    "StoreHealth",
    "check_store",
    "ensure_store",
    "explain_missing_artifact",
    "explain_missing_run_artifacts",
    "get_client",
    "get_or_create_experiment",
    "local_path",
    "relocate_artifacts",
]

_clients: dict[str, MlflowClient] = {}
_ready: set[str] = set()
_lock = threading.Lock()

#: Seconds a tracking server's last answer is trusted before it is probed again.
RECHECK_AFTER_ANSWER = 10.0
#: Seconds a failed probe is trusted: calls meanwhile fail at once instead of each
#: waiting for a server that did not answer (a probe can take its whole timeout).
RECHECK_AFTER_FAILURE = 2.0
#: (answered, when (monotonic), why not) of each tracking server's last probe.
_probes: dict[str, tuple[bool, float, str]] = {}


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
    """Create a new SQLite store once, or re-point a moved or copied one at its new folder.

    The ``.ready`` marker is also the store's location record (see "a project that moved"
    below): an unmoved store costs one small file read here, and no database work.
    """
    from filelock import FileLock, Timeout

    marker = db.with_name(db.name + ".ready")
    if db.exists() and _in_place(_read_record(marker), db):
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        if db.parent.name == STORE_DIRNAME:
            ignore = db.parent / ".gitignore"
            if not ignore.exists():
                # The store must never make the project's git tree dirty.
                ignore.write_text("*\n")
        with FileLock(str(db.with_name(db.name + ".lock")), timeout=300):
            record = _read_record(marker)
            existed = db.exists()
            if existed and _in_place(record, db):
                return  # another process created or relocated it meanwhile
            if not existed or record is None:
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                with _quiet_mlflow():
                    # Creating the store runs the migrations and creates the Default
                    # experiment with the project's artifact root, not ./mlruns of
                    # whatever folder the first process happened to run in.
                    SqlAlchemyStore(config.tracking_uri, config.artifact_root or str(db.parent / "artifacts"))
            anchor = _anchor(config, db)
            if existed:
                anchor = _relocate(config, db, record)
            _write_record(marker, db, anchor)
    except Timeout:
        raise StoreError(
            f"timed out waiting for another process to initialise {db}; remove {db}.lock if no other process is running"
        ) from None
    except StoreError:
        raise
    except OSError as exc:
        raise StoreUnreachableError(
            f"cannot create the tracking store {config.tracking_uri}: {exc.strerror or exc}; "
            "check that the folder is writable and the disk is not full"
        ) from None
    except Exception as exc:  # MLflow/SQLAlchemy errors: corrupt file, locked, ...
        raise StoreUnreachableError(f"cannot open the tracking store {config.tracking_uri}: {one_line(exc)}") from None


# ---------------------------------------------------------------- a project that moved
#
# MLflow stores absolute artifact locations. A project folder that is moved, renamed or
# copied (a clone with its .mlops, a CI cache) would keep reading the old folder, or fail
# with "No such artifact: ''" once it is gone. The store's ``.ready`` marker records, as
# JSON, the database path and the folder that moves with it (the *anchor*: the project
# root when the database is inside it, else the database's folder). Opening a store whose
# recorded database path is not this one rewrites every stored location under the old
# anchor to the new anchor, in one transaction, under the store's file lock.

#: (table, column, extra condition) of every place MLflow 3.17's SQL store keeps an
#: artifact location. Lineage text (a dataset's source, a run's source file) is left as
#: recorded: it says where things were, not where to read them.
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("logged_models", "artifact_location", ""),
    ("model_versions", "source", ""),
    ("model_versions", "storage_location", ""),
    ("trace_tags", "value", "key = 'mlflow.artifactLocation'"),
)

_log = logging.getLogger(__name__)


def _read_record(marker: Path) -> dict[str, str] | None:
    """The location record in ``marker``: ``None`` when there is no marker, ``{}`` for a
    marker without one (written by an older mlops-nb, or unreadable)."""
    try:
        text = marker.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("db", "anchor")):
        return {}
    return data


def _in_place(record: dict[str, str] | None, db: Path) -> bool:
    """Whether ``record`` was written for this database file (also when reached by
    another spelling of its path, through a symlink)."""
    if not record:
        return False
    if record["db"] == str(db):
        return True
    try:
        return os.path.samefile(record["db"], db)
    except OSError:
        return False


def _write_record(marker: Path, db: Path, anchor: str) -> None:
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"db": str(db), "anchor": anchor, "written_by": "mlops-nb"}) + "\n")
    os.replace(tmp, marker)  # a reader never sees half a record


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _anchor(config: ProjectConfig, db: Path) -> str:
    """The folder that moves with the database: the project root if it holds it."""
    root = str(config.project_root)
    return root if _inside(str(db), root) else str(db.parent)


def local_path(location: str | None) -> str | None:
    """The local file-system path of an artifact location (a path or ``file:`` URI), or
    ``None`` for a remote one (``s3://``, ``mlflow-artifacts:``, ``models:/``...)."""
    if not location:
        return None
    if location.startswith("file:"):
        parts = urllib.parse.urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            return None
        return urllib.parse.unquote(parts.path) or None
    return location if os.path.isabs(location) else None


def _new_anchor(record: dict[str, str], db: Path) -> str | None:
    """Where the recorded anchor is now: the database's path with the part it had below
    the anchor taken off (``.mlops/mlflow.db``), or ``None`` when that part changed."""
    rel = os.path.relpath(record["db"], record["anchor"])
    if rel.startswith(os.pardir):
        return None
    here = str(db)
    if not here.endswith(os.sep + rel):
        return None
    return here[: -len(rel) - 1] or os.sep


def _infer_anchor(con: sqlite3.Connection, config: ProjectConfig, db: Path, anchor: str) -> str | None:
    """The anchor a store without a record was written for, read from its experiments'
    artifact locations (the Default experiment first): the part before this project's
    artifact root (``<old root>/.mlops/artifacts/0`` gives ``<old root>``)."""
    art = local_path(config.artifact_root) or str(db.parent / "artifacts")
    if not _inside(art, anchor) or art == anchor:
        return None
    tail = os.sep + os.path.relpath(art, anchor) + os.sep
    for (location,) in con.execute("SELECT artifact_location FROM experiments ORDER BY experiment_id"):
        path = local_path(location)
        cut = path.rfind(tail) if path else -1
        if path is not None and cut > 0:
            return path[:cut]
    return None


def _rewrite(con: sqlite3.Connection, old: str, new: str) -> int:
    """Point every artifact location under folder ``old`` at ``new`` (paths and
    ``file:`` URIs alike); return how many were changed. The caller holds the transaction."""
    forms = {old: new, "file://" + old: "file://" + new, Path(old).as_uri(): Path(new).as_uri()}
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    changed = 0
    for table, column, extra in ARTIFACT_COLUMNS:
        if table not in tables:
            continue  # an older schema
        for before, after in forms.items():
            cur = con.execute(
                f"UPDATE {table} SET {column} = :after || substr({column}, length(:before) + 1) "
                f"WHERE ({column} = :before OR substr({column}, 1, length(:before) + 1) = :before || '/')"
                + (f" AND {extra}" if extra else ""),
                {"before": before, "after": after},
            )
            changed += cur.rowcount
    return changed


def _relocate(config: ProjectConfig, db: Path, record: dict[str, str] | None) -> str:
    """Re-point the artifact locations of the SQLite store ``db`` after its folder moved;
    return the folder the store is now anchored at. The caller holds the file lock.

    ``record`` is the store's location record (``{}`` or ``None`` when it has none: the
    old folder is then read from the stored experiments).
    """
    import sqlite3

    anchor = _anchor(config, db)
    try:
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            old: str | None
            if record:
                old, anchor = record["anchor"], _new_anchor(record, db) or anchor
            else:
                old = _infer_anchor(con, config, db, anchor)
            if not old or old == anchor or old == os.sep or _same_folder(old, anchor):
                return anchor
            changed = _rewrite_in_one_transaction(con, old, anchor)
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"this project's store {db} was moved or copied, and pointing its artifact locations at "
            f"{anchor} failed ({one_line(exc)}); make {db.parent} writable and run again"
        ) from None
    _log.info("store %s moved from %s: %d artifact locations now point into %s", db, old, changed, anchor)
    return anchor


def _same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _rewrite_in_one_transaction(con: sqlite3.Connection, old: str, new: str) -> int:
    con.execute("BEGIN IMMEDIATE")  # the write lock now: nothing half-written is ever read
    try:
        changed = _rewrite(con, old.rstrip(os.sep), new.rstrip(os.sep) or os.sep)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return changed


#: The command that re-points artifact locations kept outside the project (wired in the CLI).
RELOCATE_COMMAND = "mlops-nb relocate"


def relocate_artifacts(config: ProjectConfig, old: str, new: str) -> int:
    """Point every artifact location the SQLite store keeps under folder ``old`` at the
    same place under ``new``; return how many locations changed.

    For artifacts kept outside the project (``artifact_location`` set to another folder)
    that moved: locations inside the project follow the project by themselves. One
    transaction, under the store's file lock. Raises :class:`StoreError` for a store
    that is not SQLite (a tracking server or database server keeps its own locations)
    and :class:`UsageError` for folders that are not absolute.
    """
    import sqlite3

    from filelock import FileLock

    db = config.sqlite_path
    if db is None:
        raise StoreError(
            f"only a SQLite store's artifact locations can be re-pointed here, not {config.tracking_uri}'s; "
            "move the artifacts with the tools of that store"
        )
    paths = [local_path(x) or "" for x in (old, new)]
    if not all(os.path.isabs(x) and x.rstrip(os.sep) for x in paths):
        raise UsageError(f"give two absolute folders other than /, not {old!r} and {new!r}")
    ensure_store(config)
    with FileLock(str(db.with_name(db.name + ".lock")), timeout=300):
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        try:
            return _rewrite_in_one_transaction(con, paths[0], paths[1])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot update the store {db}: {one_line(exc)}") from None
        finally:
            con.close()


def explain_missing_artifact(tracking_uri: str, location: str | None, what: str) -> str | None:
    """One line saying why ``what`` ("the files of model wine v1") cannot be read from
    ``location`` and what to do; ``None`` when it is there or not a local folder (a
    remote store explains its own errors).

    Call it when an artifact read fails, or finds nothing where something must be, to
    replace MLflow's ``No such artifact: ''``.
    """
    path = local_path(location)
    if path is None or os.path.exists(path):
        return None
    db = sqlite_path(tracking_uri)
    record = _read_record(db.with_name(db.name + ".ready")) if db is not None else None
    if record and _inside(path, record["anchor"]):
        return (
            f"cannot read {what}: {path} is not in this project's store (the artifacts were deleted, or not "
            f"copied with {db}); copy that folder from the original project, or re-run the notebook that logged it"
        )
    return (
        f"cannot read {what}: it was stored at {path}, outside this project, and that folder is gone; "
        f"restore it there, or if it moved run `{RELOCATE_COMMAND} OLD_FOLDER NEW_FOLDER`"
    )


def explain_missing_run_artifacts(client: MlflowClient, run_id: str, what: str, expected: bool = False) -> str | None:
    """:func:`explain_missing_artifact` for the artifact folder of run ``run_id``
    (``None`` also when the run cannot be read: the caller's own error says so).

    MLflow makes a run's folder on its first artifact, so a missing folder only means
    files are gone where the run had some: ``expected`` (the caller knows, as for a
    model's files), or a run mlops-nb tracked (it always saves the environment's
    requirements) whose experiment's artifact root is gone too.
    """
    try:
        run = client.get_run(run_id)
        experiment_folder = local_path(client.get_experiment(run.info.experiment_id).artifact_location)
    except Exception:  # a deleted run, a store that went away: not an artifact problem
        return None
    if not expected:
        if KIND not in run.data.tags:
            return None
        if experiment_folder is not None and (
            os.path.isdir(experiment_folder) or os.path.isdir(os.path.dirname(experiment_folder))
        ):
            return None
    return explain_missing_artifact(client.tracking_uri, run.info.artifact_uri, what)


def _reason(exc: BaseException, timeout: float) -> str:
    """A socket or URL error as a few words: "connection refused", "no answer within 3 s"."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[0].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__


def _http_problem(uri: str, timeout: float) -> str:
    """Why the tracking server at ``uri`` cannot serve the client now; "" when it can.

    The probe is the cheapest call the client itself makes (one experiment), not
    ``/health``: a server whose own database is down still says OK on ``/health``.
    """
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    problem = ""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read(256)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:  # the server (or a proxy before it) answered that it cannot serve
            problem = f"the tracking server at {uri} answers but fails (HTTP {exc.code}{_error_detail(exc)})"
        # Any other answer (401, 403, 404) comes from a live server: the client's own
        # calls will say what is wrong.
    except (urllib.error.URLError, OSError, ValueError) as exc:
        problem = f"cannot reach the tracking server at {uri} ({_reason(exc, timeout)})"
    _probes[uri] = (not problem, time.monotonic(), problem)
    return problem


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """ ": <first line of MLflow's error message>" from an error answer, or ""."""
    try:
        message = json.loads(exc.read(4096) or b"{}").get("message", "")
    except Exception:
        return ""
    line = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return f": {line[:200]}" if line else ""


def _probe_http(uri: str, timeout: float = 10.0) -> None:
    """Raise :class:`StoreUnreachableError` unless the server answered lately or answers now.

    The timeout is longer than a status's: a server slowed down by many writers must
    not be taken for a dead one.
    """
    answered, when, problem = _probes.get(uri, (False, float("-inf"), ""))
    age = time.monotonic() - when
    if answered and age < RECHECK_AFTER_ANSWER:
        return
    if not (problem and age < RECHECK_AFTER_FAILURE):
        problem = _http_problem(uri, timeout)
    if problem:
        raise StoreHealth(False, "", problem).error()


@dataclass(frozen=True)
class StoreHealth:
    """What a quick probe of a store found, for ``%mlops status`` and ``mlops-nb status``.

    Attributes
    ----------
    reachable:
        ``True`` when the store answered, ``False`` when it did not, ``None`` when this
        kind of store is not probed.
    text:
        One line for a status: ``reachable``, or ``UNREACHABLE`` and why, or why it
        was not checked.
    problem:
        Why it did not answer, naming the store ("" when it did).
    advice:
        What to do about it.
    """

    reachable: bool | None
    text: str
    problem: str = ""
    advice: str = "start it or point MLFLOW_TRACKING_URI at a running one"

    def error(self) -> StoreUnreachableError:
        """The error a call that needed this store raises: the problem and what to do."""
        return StoreUnreachableError(f"{self.problem}; {self.advice}")


def _sqlite_problem(db: Path, timeout: float) -> str:
    import sqlite3

    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=timeout)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"cannot open the SQLite store {db} ({one_line(exc)})"
    return ""


def _tcp_problem(uri: str, timeout: float) -> str | None:
    """Whether a database server named by ``uri`` (postgresql://, mysql://...) accepts a
    connection; ``None`` when the URI names no host to try."""
    ports = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
    try:
        parts = urllib.parse.urlsplit(uri)
        scheme = parts.scheme.split("+", 1)[0]
        host, port = parts.hostname, parts.port or ports.get(scheme)
    except ValueError:
        return None
    if not host or not port:
        return None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach the database server at {host}:{port} ({_reason(exc, timeout)})"
    return ""


def check_store(config: ProjectConfig, timeout: float = 3.0) -> StoreHealth:
    """Probe the store now, within about ``timeout`` seconds; never raises.

    A tracking server must answer a one-experiment search (so its own database is
    checked too); a SQLite file must open (a store not created yet is fine: the first
    run creates it); a database server named directly must accept a connection. A
    server found answering again is used again at once by :func:`get_client`, so
    tracking resumes without a restart.
    """
    uri = config.tracking_uri
    try:
        db = config.sqlite_path
        if db is not None:
            if not db.exists():
                return StoreHealth(True, "reachable (not created yet: the first tracked run creates it)")
            health = _health(_sqlite_problem(db, timeout), resumes=False)
            return dataclasses.replace(health, advice="check the file is a readable SQLite database, or move it away")
        if uri.startswith(("http://", "https://")):
            return _health(_http_problem(uri, timeout))
        tcp = _tcp_problem(uri, timeout)
        if tcp is None:
            return StoreHealth(None, "not checked (mlops-nb probes http(s), sqlite and database-server stores)")
        return _health(tcp)
    except Exception as exc:  # a probe must never break the status it is part of
        return StoreHealth(None, f"not checked ({one_line(exc)})")


def _health(problem: str, resumes: bool = True) -> StoreHealth:
    if not problem:
        return StoreHealth(True, "reachable")
    # A server that comes back is used again at once (see _probe_http); a broken file
    # has to be fixed first.
    tail = "; tracking resumes by itself when it answers" if resumes else ""
    return StoreHealth(False, f"UNREACHABLE — {problem}{tail}", problem)


def ensure_store(config: ProjectConfig) -> None:
    """Make sure the store at ``config.tracking_uri`` exists and answers.

    A new SQLite store is created once under an inter-process lock; an HTTP tracking
    server is probed (again when its last probe is a few seconds old, so an outage is
    noticed at once and the end of one too). Raises :class:`StoreUnreachableError` with
    the URI otherwise.
    """
    uri = config.tracking_uri
    db = config.sqlite_path
    if uri.startswith(("http://", "https://")) and db is None:
        _probe_http(uri)
        # MLflow's defaults retry a failed request for minutes, which would freeze the
        # user's cell when the server goes away mid-session. Users' own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        # MLflow prints "View run ... at: http://..." to stdout when a run against a
        # server ends, which would break `--json` output and clutter job logs.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        return
    if uri in _ready and (db is None or db.exists()):
        return
    if db is not None:
        _init_sqlite(config, db)
    _ready.add(uri)


def get_client(config: ProjectConfig) -> MlflowClient:
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


def get_or_create_experiment(client: MlflowClient, config: ProjectConfig, name: str) -> str:
    """Return the id of experiment ``name``, creating it with the project's artifact root.

    Safe when several processes create the same experiment at once.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise StoreError(
                f"experiment {name!r} is deleted; restore it in MLflow or choose another name with --experiment"
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
            raise StoreError(f"cannot create experiment {name!r}: {one_line(exc)}") from None
        return exp.experiment_id
