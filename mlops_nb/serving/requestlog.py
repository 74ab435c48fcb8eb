"""The request log: every request a model server answered (or a sample), and the true
labels that arrive for them later, in one SQL database.

Why a queue and a thread: a response must never wait for, or fail because of, the log.
:meth:`RequestLog.record` only puts a row on a bounded in-memory queue (``put_nowait``);
a daemon thread writes the queue in batches. When the database is slow or down the
writer keeps the batch it could not write and retries with backoff for a bounded time
(:data:`RETRY_FOR_S`), the queue fills, and what no longer fits is dropped and counted:
the server's memory stays bounded and :meth:`RequestLog.stats` says what was lost and
why.

Where: any SQLAlchemy URL (:func:`log_url`). The embedded default is SQLite under the
project's ``.mlops/``, in WAL mode with a busy timeout so every worker and replica on one
machine writes the one file; a team points ``request_log`` (or ``MLOPS_NB_REQUEST_LOG``)
at PostgreSQL so replicas on several machines write one database. Two tables, created
when missing: ``requests`` (one row a request, keyed by its id) and ``feedback`` (labels
by request id). Times are float seconds since the epoch, the portable form.

:func:`read_log` reads the log back as a pandas DataFrame, feedback joined on the
request id. This module imports nothing from Jupyter or MLflow, and pandas only to read.
"""

from __future__ import annotations

import json
import math
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlops_nb.config import STORE_DIRNAME, ProjectConfig, absolute_sqlite_url
from mlops_nb.exceptions import ConfigError, StoreError, UsageError, one_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy.engine import Engine

__all__ = [
    "COLUMNS",
    "ENV_VAR",
    "RequestLog",
    "check_url",
    "cut",
    "log_url",
    "parse_time",
    "read_log",
    "shown_url",
]

#: The environment variable that names the request log's database (it wins over the project).
ENV_VAR = "MLOPS_NB_REQUEST_LOG"
#: The columns of :func:`read_log`'s DataFrame, in order.
COLUMNS = (
    "request_id",
    "time",
    "model",
    "version",
    "status",
    "latency_ms",
    "inputs",
    "outputs",
    "label",
    "label_time",
    "server",
)
#: The writer writes at most this many rows in one transaction...
BATCH_ROWS = 500
#: ...and waits at most this long for a batch to fill.
BATCH_WAIT_S = 0.2
#: A batch the database refused for this long is dropped (and counted).
RETRY_FOR_S = 60.0
#: The first and the longest wait between two attempts at a failing batch.
BACKOFF_S = (0.2, 5.0)
#: How long a SQLite write waits for another process's write lock before it fails.
SQLITE_BUSY_MS = 5000
#: How long a connection to a database server may take.
CONNECT_TIMEOUT_S = 10

_URL_HINT = "write sqlite:////ABSOLUTE/PATH/requests.db or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# ---------------------------------------------------------------- where the log is


def log_url(config: ProjectConfig, environ: Mapping[str, str] | None = None) -> str:
    """The SQLAlchemy URL of the project's request log.

    ``MLOPS_NB_REQUEST_LOG`` wins (a relative ``sqlite:///`` path is relative to the
    current folder), then ``request_log`` in the project's ``[tool.mlops-nb]`` (made
    absolute against its ``pyproject.toml``), else
    ``sqlite:///<project root>/.mlops/requests.db``.

    Raises
    ------
    ConfigError
        When the URL is not one SQLAlchemy can parse; the message says what to write.
    """
    env = os.environ if environ is None else environ
    url = env.get(ENV_VAR, "").strip()
    if url:
        return check_url(absolute_sqlite_url(url, Path.cwd()), ENV_VAR)
    if config.request_log:
        return check_url(
            config.request_log, f"request_log in [tool.mlops-nb] of {config.project_root / 'pyproject.toml'}"
        )
    return f"sqlite:///{config.project_root / STORE_DIRNAME / 'requests.db'}"


def check_url(url: str, where: str) -> str:
    """``url`` if SQLAlchemy can parse it and knows its database, else a
    :class:`ConfigError` naming ``where`` it came from and what to write."""
    try:
        sa.engine.make_url(url).get_dialect()
    except Exception as exc:  # ArgumentError (unparsable), NoSuchModuleError (no such dialect)
        raise ConfigError(f"{where} is not a database URL SQLAlchemy can open ({one_line(exc)}): {_URL_HINT}") from None
    return url


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, else ``None`` (another database, or in memory)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().absolute()


def _engine(url: str) -> Engine:
    """An engine on ``url`` that never connects here: SQLite with WAL, a busy timeout and
    ``synchronous=NORMAL`` (a log may lose its last rows on power loss, never its file),
    other databases with a connect timeout. :class:`ConfigError` for an unusable URL."""
    check_url(url, "the request log URL")
    try:
        if _sqlite_file(url) is not None:
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if sa.engine.make_url(url).get_backend_name() == "postgresql":
            return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        return sa.create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # a missing driver (ImportError), bad options
        raise ConfigError(f"cannot use the request log {shown_url(url)}: {one_line(exc)}") from None


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")  # first: switching to WAL may wait
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writers
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _tables() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    meta = sa.MetaData()
    requests = sa.Table(
        "requests",
        meta,
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("inputs", sa.Text, nullable=True),
        sa.Column("outputs", sa.Text, nullable=True),
        sa.Column("server", sa.String, nullable=False),
        sa.Index("ix_requests_model_time", "model", "time"),
        sa.Index("ix_requests_time", "time"),
    )
    feedback = sa.Table(
        "feedback",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String, nullable=False, index=True),
        sa.Column("label", sa.Text, nullable=False),  # JSON
        sa.Column("time", sa.Float, nullable=False),
    )
    return meta, requests, feedback


def _insert_new(engine: Engine, table: sa.Table) -> Any:
    """An INSERT that skips a request id already logged (a client replaying its
    ``X-Request-Id``), so one duplicate never costs the rest of a batch; other databases
    get a plain INSERT."""
    name = engine.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    return table.insert()


def cut(text: object, limit: int) -> str | None:
    """``text`` as stored: at most ``limit`` UTF-8 bytes of it, then a marker saying how
    many were cut (``…[truncated N bytes]``); NUL characters, which PostgreSQL refuses in
    text, replaced."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else str(text)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: short enough as it is
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept}…[truncated {len(data) - len(kept.encode('utf-8'))} bytes]"


# ---------------------------------------------------------------- writing


class RequestLog:
    """Records requests and feedback into the log at ``url`` without ever slowing or
    failing the caller.

    Parameters
    ----------
    url:
        A SQLAlchemy URL (:func:`log_url`). Nothing connects here: a database that is down
        at start is retried like one that goes down later.
    sample:
        The fraction of requests recorded, decided per request (feedback is always kept).
    max_queue:
        Rows waiting to be written at most; a record that finds the queue full is dropped
        and counted.
    max_field_bytes:
        Inputs and outputs longer than this (UTF-8) are cut and marked.
    server:
        Names the process in each row (say ``host-port``).
    clock:
        Seconds since the epoch, for rows recorded without a time (default: ``time.time``).

    Raises
    ------
    ConfigError
        When ``url`` cannot be used (unparsable, unknown database, missing driver).
    UsageError
        When ``sample``, ``max_queue`` or ``max_field_bytes`` is out of range.

    Create it in the process that records (after a fork: the writer is a thread, which a
    forked child does not inherit), and :meth:`close` it before the process ends (rows
    still queued then are lost with the daemon thread).
    """

    def __init__(
        self,
        url: str,
        *,
        sample: float = 1.0,
        max_queue: int = 10_000,
        max_field_bytes: int = 65_536,
        server: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(sample, int | float) or math.isnan(sample) or not 0.0 <= sample <= 1.0:
            raise UsageError(f"the request log's sample must be a fraction from 0 to 1, not {sample!r}")
        if not isinstance(max_queue, int) or max_queue < 1:
            raise UsageError(f"the request log's max_queue must be at least 1, not {max_queue!r}")
        if not isinstance(max_field_bytes, int) or max_field_bytes < 1:
            raise UsageError(f"the request log's max_field_bytes must be at least 1, not {max_field_bytes!r}")
        self.url = url
        self.sample = float(sample)
        self.max_field_bytes = max_field_bytes
        self.server = server
        self.clock: Callable[[], float] = clock or time.time
        self.engine = _engine(url)
        self._meta, self._requests, self._feedback = _tables()
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=max_queue)
        # The writer holds one batch besides the queue: memory stays within twice max_queue.
        self._batch_rows = min(BATCH_ROWS, max_queue)
        self._counts = threading.Condition()
        self._accepted = self._settled = self._written = self._dropped = self._sampled_out = 0
        self._error: str | None = None
        self._closed = False
        self._ready = False  # the tables are known to exist
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlops-nb-request-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the callers' side

    def record(
        self,
        *,
        request_id: str,
        model: str,
        version: str,
        status: int,
        latency_ms: float,
        inputs: str | None,
        outputs: str | None,
        time: float | None = None,
    ) -> None:
        """Queue one answered request (``time``: when it arrived, default now); never
        blocks, never raises. Not sampled: counted as ``sampled_out``; queue full:
        counted as ``dropped``."""
        try:
            if self.sample < 1.0 and random.random() >= self.sample:
                with self._counts:
                    self._sampled_out += 1
                return
            row = {
                "request_id": str(request_id),
                "time": float(time) if time is not None else self.clock(),
                "model": str(model),
                "version": str(version),
                "status": int(status),
                "latency_ms": float(latency_ms),
                "inputs": cut(inputs, self.max_field_bytes),
                "outputs": cut(outputs, self.max_field_bytes),
                "server": self.server,
            }
        except Exception:  # a value that does not convert: lost, but counted
            self._count_drop()
            return
        self._put("request", row)

    def feedback(self, request_id: str, label: object, *, time: float | None = None) -> None:
        """Queue the true ``label`` of a request (stored as JSON; anything JSON cannot
        hold as its text); never blocks, never raises, never sampled out."""
        try:
            row = {
                "request_id": str(request_id),
                "label": cut(json.dumps(label, default=str), self.max_field_bytes),
                "time": float(time) if time is not None else self.clock(),
            }
        except Exception:
            self._count_drop()
            return
        self._put("feedback", row)

    def stats(self) -> dict[str, Any]:
        """``{"written", "dropped", "queued", "sampled_out", "error"}``: rows written
        (requests and feedback; a replayed request id counts, its first row stays), rows lost (queue full, or the database refused them for
        :data:`RETRY_FOR_S`, or still unwritten at :meth:`close`), rows waiting, requests
        not sampled, and the last error the writer met as one line (``None`` if never)."""
        with self._counts:
            return {
                "written": self._written,
                "dropped": self._dropped,
                "queued": self._accepted - self._settled,
                "sampled_out": self._sampled_out,
                "error": self._error,
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written (or dropped); ``False`` when
        that took longer than ``timeout`` seconds (the database is slow or down)."""
        self._hurry.set()
        try:
            with self._counts:
                target = self._accepted
                return self._counts.wait_for(lambda: self._settled >= target, timeout)
        finally:
            self._hurry.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (one last attempt when the database is failing; what it
        refuses is dropped and counted), stop the writer and release the connections.
        Waits at most about ``timeout`` seconds; later records are dropped."""
        with self._counts:
            self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.engine.dispose()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, kind: str, row: dict[str, Any]) -> None:
        with self._counts:
            if self._closed:
                self._dropped += 1
                return
            self._accepted += 1
        try:
            self._queue.put_nowait((kind, row))
        except queue.Full:
            with self._counts:
                self._accepted -= 1
                self._dropped += 1

    def _count_drop(self) -> None:
        with self._counts:
            self._dropped += 1

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        batch: list[tuple[str, dict[str, Any]]] = []
        failing_since: float | None = None
        delay = BACKOFF_S[0]
        while True:
            try:
                if not batch:
                    batch = self._take()
                    if not batch:
                        if self._stop.is_set():
                            return
                        continue
                self._write(batch)
            except Exception as exc:
                self._ready = False  # check the tables again: the database may be a new one
                with self._counts:  # SQLAlchemy's message names the driver's error type itself
                    self._error = one_line(exc, with_type=not isinstance(exc, sa.exc.SQLAlchemyError))
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if self._stop.is_set() or now - failing_since >= RETRY_FOR_S:
                    self._settle(dropped=len(batch))
                    batch, failing_since, delay = [], None, BACKOFF_S[0]
                    if self._stop.is_set():
                        self._settle(dropped=self._drain())
                        return
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_S[1])
                continue
            self._settle(written=len(batch))
            batch, failing_since, delay = [], None, BACKOFF_S[0]

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        """The next batch: the first row waited for, then more until the batch is full or
        :data:`BATCH_WAIT_S` has passed (at once when flushing or closing)."""
        try:
            first = self._queue.get_nowait() if self._stop.is_set() else self._queue.get(timeout=BATCH_WAIT_S)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(items) < self._batch_rows:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or self._stop.is_set() or self._hurry.is_set():
                    items.append(self._queue.get_nowait())
                else:
                    items.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                if remaining <= 0 or self._stop.is_set() or self._hurry.is_set():
                    break
        return items

    def _drain(self) -> int:
        """Empty the queue (closing on a failing database); how many rows it held."""
        n = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return n
            n += 1

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        requests = [row for kind, row in batch if kind == "request"]
        feedback = [row for kind, row in batch if kind == "feedback"]
        self._create_tables()
        with self.engine.begin() as conn:
            if requests:
                conn.execute(_insert_new(self.engine, self._requests), requests)
            if feedback:
                conn.execute(self._feedback.insert(), feedback)

    def _create_tables(self) -> None:
        """Create the tables when missing. Two processes starting at once may both find
        them missing and one CREATE fails: the second look then finds them."""
        if self._ready:
            return
        path = _sqlite_file(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._meta.create_all(self.engine)
        except sa.exc.SQLAlchemyError:
            self._meta.create_all(self.engine)
        self._ready = True

    def _settle(self, *, written: int = 0, dropped: int = 0) -> None:
        with self._counts:
            self._written += written
            self._dropped += dropped
            self._settled += written + dropped
            self._counts.notify_all()


# ---------------------------------------------------------------- reading


def parse_time(value: object, what: str = "time", *, now: float | None = None) -> float | None:
    """Seconds since the epoch for a ``since``/``until`` value: a datetime (naive means
    local time), an ISO-8601 text, a relative text (``90s``, ``30m``, ``1h``, ``2d``:
    that long before ``now``), a timedelta (likewise) or ``None``; anything else is a
    :class:`UsageError` naming ``what``."""
    if value is None:
        return None
    current = time.time() if now is None else now
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, timedelta):
        return current - value.total_seconds()
    if isinstance(value, str):
        text = value.strip()
        match = _RELATIVE.match(text.lower())
        if match:
            return current - float(match.group(1)) * _UNIT_S[match.group(2)]
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text).timestamp()
        except ValueError:
            pass
    raise UsageError(
        f"{what} must be an ISO-8601 time (2024-05-01T12:00:00Z) or a time ago (90s, 30m, 1h, 2d), not {value!r}"
    )


def read_log(
    url: str,
    model: str | None = None,
    *,
    since: object = None,
    until: object = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The logged requests as a DataFrame, oldest first, one row a request with its
    feedback joined (the latest label when several arrived).

    Columns: :data:`COLUMNS` (``time`` and ``label_time`` tz-aware UTC, ``label`` the
    value given to :meth:`RequestLog.feedback`). ``model`` keeps one model's requests;
    ``since``/``until`` (see :func:`parse_time`) bound ``time``, both ends included;
    ``limit`` keeps the newest that many. A log not written yet is an empty frame, and
    reading it creates nothing.

    Raises
    ------
    UsageError
        For a bad ``since``, ``until`` or ``limit``.
    ConfigError
        For a URL that cannot be used.
    StoreError
        When the database cannot be read.
    """
    low, high = parse_time(since, "since"), parse_time(until, "until")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a whole number of at least 1, not {limit!r}")
    engine = _engine(url)
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return _frame([])
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table("requests"):
                return _frame([])
            query = _query(model, low, high, limit, with_feedback=inspector.has_table("feedback"))
            rows = [dict(row._mapping) for row in conn.execute(query)]
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot read the request log {shown_url(url)}: {one_line(exc)}") from None
    finally:
        engine.dispose()
    return _frame(rows)


def _query(model: str | None, low: float | None, high: float | None, limit: int | None, with_feedback: bool) -> Any:
    """The newest ``limit`` requests that match, with their feedback rows (oldest label
    first, so the last one per request wins)."""
    _, requests, feedback = _tables()
    chosen = sa.select(requests)
    if model is not None:
        chosen = chosen.where(requests.c.model == model)
    if low is not None:
        chosen = chosen.where(requests.c.time >= low)
    if high is not None:
        chosen = chosen.where(requests.c.time <= high)
    chosen = chosen.order_by(requests.c.time.desc(), requests.c.request_id.desc())
    if limit is not None:
        chosen = chosen.limit(limit)
    sub = chosen.subquery()
    if not with_feedback:
        labels = [sa.null().label("label"), sa.null().label("label_time")]
        return sa.select(sub, *labels).order_by(sub.c.time, sub.c.request_id)
    joined = sub.outerjoin(feedback, feedback.c.request_id == sub.c.request_id)
    return (
        sa.select(sub, feedback.c.label, feedback.c.time.label("label_time"))
        .select_from(joined)
        .order_by(sub.c.time, sub.c.request_id, feedback.c.time, feedback.c.id)
    )


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd  # deferred: a server writes the log without loading pandas

    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.drop_duplicates("request_id", keep="last").reset_index(drop=True)
    for column in ("time", "label_time"):  # float seconds hold microseconds, not the nanoseconds past them
        stamps = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
        frame[column] = stamps.dt.round("us").astype("datetime64[ns, UTC]")
    frame["status"] = frame["status"].astype("int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    # object: each label as given (1 stays 1, not 1.0 beside NaN), None where none came
    frame["label"] = pd.Series([_label(text) for text in frame["label"]], index=frame.index, dtype=object)
    return frame


def _label(text: object) -> object:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # cut to max_field_bytes: the text as stored
