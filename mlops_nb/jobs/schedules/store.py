"""Schedules and their job history, kept in a SQL database.

A schedule runs a notebook (``.ipynb``) or a pipeline (``.yaml``) of the project on a cron
expression in a time zone, or monitors a served model (kind ``monitor``) and runs a
notebook or pipeline when the monitor finds drift (:class:`MonitorSettings`). Schedules and every job a scheduler started (or a user ran
now) live in one SQL database through SQLAlchemy Core: SQLite beside the MLflow store by
default, any SQLAlchemy URL (PostgreSQL included) otherwise, so several schedulers and
the Jupyter server can share it. The statements are portable: no dialect-specific SQL
except SQLite's locking pragmas.

Why the database is also the lock: a scheduler claims an occurrence by moving the
schedule's ``next_run`` with a compare-and-set ``UPDATE`` and inserting the job in the
same transaction, and ``jobs`` has a unique key on (schedule, occurrence, attempt). Two
schedulers on one database therefore cannot both fire an occurrence, whatever their
clocks or timing (see :mod:`mlops_nb.jobs.schedules.scheduler`).

All times are aware UTC datetimes in Python and naive UTC in the database (portable
across SQLite and PostgreSQL). A monitor schedule keeps its settings in the ``params`` JSON column, under a key no
notebook parameter can have (:data:`MONITOR_KEY`): a database written before monitor
schedules existed needs no migration, and one read by an older mlops-nb still opens.

This module imports nothing from Jupyter or MLflow.
"""

from __future__ import annotations

import builtins  # `list` is also a ScheduleStore method, which shadows it in annotations
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from mlops_nb.config import STORE_DIRNAME, ProjectConfig
from mlops_nb.exceptions import MlopsError, NotFoundError, StoreError, UsageError, one_line
from mlops_nb.jobs.batch.pipeline_file import load_pipeline
from mlops_nb.jobs.run.params import check_params, declared_parameters
from mlops_nb.jobs.run.spec import positive_seconds

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "JOB_STATES",
    "MONITOR",
    "MONITOR_TRIGGER",
    "MONITOR_VERDICTS",
    "JobRecord",
    "MonitorSettings",
    "Schedule",
    "ScheduleStore",
    "next_occurrence",
    "occurrences",
    "parse_duration",
    "scheduler_url",
    "verdict_of",
]

UTC = timezone.utc
#: The states a job record can be in.
JOB_STATES = ("running", "succeeded", "failed", "interrupted", "skipped", "retrying")
#: Missed-occurrence policies.
MISSED_POLICIES = ("skip", "once")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# cron's @-shorthands; cronsim takes only the five fields.
_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_RETRIES = 10
#: The kind of a schedule that monitors a model (its target is the model's URI).
MONITOR = "monitor"
#: The trigger of a job a monitor schedule started to retrain on drift.
MONITOR_TRIGGER = "monitor"
#: Where a monitor schedule's settings live in the ``params`` JSON: a dotted key, which
#: no notebook parameter (a Python name) can be.
MONITOR_KEY = "mlops_nb.monitor"
#: :data:`mlops_nb.monitoring.monitor.VERDICTS`, restated: this module loads no
#: statistics (tests/test_monitor_loop.py keeps the two equal).
MONITOR_VERDICTS = ("healthy", "drift", "degraded", "insufficient data")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Bounds that catch a typo (--since 24d for 24h is allowed; --since 2400d is not).
MAX_SINCE_S = 366 * 86400.0
MAX_COOLDOWN_S = 30 * 86400.0
MAX_MIN_ROWS = 1_000_000_000
MAX_RETRAINS_A_DAY = 100


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- where the database is


def scheduler_url(config: ProjectConfig, environ: Mapping[str, str] | None = None) -> str:
    """The SQLAlchemy URL of the project's schedule database.

    ``MLOPS_NB_SCHEDULER_DB`` wins, then ``scheduler_db`` in ``[tool.mlops-nb]`` of the
    project's ``pyproject.toml`` (a relative ``sqlite:///`` path is relative to that
    file), else ``sqlite:///<project root>/.mlops/scheduler.db``, beside the MLflow store.
    """
    env = os.environ if environ is None else environ
    url = env.get("MLOPS_NB_SCHEDULER_DB", "").strip()
    if url:
        return _absolute_sqlite(url, Path.cwd())
    if config.scheduler_db:  # made absolute by the config's one resolution
        return config.scheduler_db
    return f"sqlite:///{config.project_root / STORE_DIRNAME / 'scheduler.db'}"


def _absolute_sqlite(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/") and url[len(prefix) :] not in ("", ":memory:"):
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


# ---------------------------------------------------------------- cron


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(
            f"unknown time zone {name!r}: give an IANA name such as UTC, Europe/Berlin or America/New_York"
        ) from None


def _cron(expr: str, start: datetime) -> Any:
    from cronsim import CronSim, CronSimError

    fields = _SHORTHANDS.get(expr.strip().lower(), expr)
    try:
        return CronSim(fields, start)
    except CronSimError as exc:
        raise UsageError(
            f"invalid cron expression {expr!r} ({exc}): give five fields, minute hour day month weekday,"
            ' such as "0 2 * * *" (02:00 every day)'
        ) from None


def next_occurrence(cron: str, tz: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` names in zone ``tz`` (aware UTC).

    Daylight-saving gaps and repeats follow cron's convention (cronsim's): a time that
    does not exist that day fires at the first minute after the gap, a repeated one once.
    """
    start = after.astimezone(_zone(tz))
    return next(_cron(cron, start)).astimezone(UTC)


def occurrences(cron: str, tz: str, start: datetime, end: datetime, limit: int = 10_000) -> list[datetime]:
    """The occurrences in ``[start, end]`` (aware UTC), at most ``limit`` of the latest kept.

    ``start`` itself counts when it is an occurrence (it is the schedule's ``next_run``).
    """
    out: list[datetime] = []
    it = _cron(cron, (start - timedelta(microseconds=1)).astimezone(_zone(tz)))
    for when in it:
        when = when.astimezone(UTC)
        if when > end:
            break
        out.append(when)
        if len(out) > limit:
            out.pop(0)
    return out


# ---------------------------------------------------------------- monitor settings


def parse_duration(value: object, option: str, *, low: float, high: float) -> float:
    """Seconds for a duration given as seconds (``90``) or a text with a unit (``90s``,
    ``30m``, ``6h``, ``2d``), within ``[low, high]``; else a one-line :class:`UsageError`
    naming ``option``."""
    if isinstance(value, bool):
        value = repr(value)  # not a duration, whatever int(True) says
    text = str(value).strip().lower() if value is not None else ""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else None
    if seconds is None or not low <= seconds <= high:
        bounds = f"from {_shown_seconds(low)} to {_shown_seconds(high)}"
        raise UsageError(f"{option} must be a duration {bounds} such as 90s, 30m, 6h or 2d, not {value!r}")
    return seconds


def _shown_seconds(seconds: float) -> str:
    """``21600`` -> ``6h``: the largest unit that divides it."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_S[unit] == 0:
            return f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"


def _whole(value: object, option: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{option} must be a whole number from {low} to {high}, not {value!r}")
    return value


def check_model_reference(uri: str) -> str:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, checked in form only (the
    registry is asked when the monitor runs: a model may be registered later)."""
    # Deferred: every mlops-nb command imports this module as it starts, and commands
    # import the core they need when they run (cli/main.py); the registry is that core.
    from mlops_nb.registry import VERSION_PATTERN, check_alias, check_model_name, parse_model_uri

    text = (uri or "").strip() if isinstance(uri, str) else ""
    hint = "give models:/NAME@ALIAS (it follows the alias) or models:/NAME/VERSION"
    try:
        name, alias, version = parse_model_uri(text)
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        elif version is None or not re.fullmatch(VERSION_PATTERN, version):
            raise UsageError(f"the version of {text!r} must be a positive whole number")
    except UsageError as exc:
        raise UsageError(f"--monitor {uri!r} is not a model to monitor ({one_line(exc)}): {hint}") from None
    return text


@dataclass(frozen=True)
class MonitorSettings:
    """How a monitor schedule watches its model (the schedule's ``target``) and when it
    retrains.

    ``on_drift`` is a notebook or pipeline of the project (relative to its root, its kind
    in ``on_drift_kind``) run as a job of the same schedule (trigger
    :data:`MONITOR_TRIGGER`) when a verdict is ``drift`` or ``degraded``, unless the last
    such job started less than ``cooldown_s`` ago or ``max_retrains`` started in the last
    24 hours; ``None`` only monitors. ``since`` is the request-log window each check reads
    (a time ago: ``24h``); fewer than ``min_rows`` rows in it is ``insufficient data``.
    """

    on_drift: str | None = None
    on_drift_kind: str | None = None
    since: str = "24h"
    min_rows: int = 100
    cooldown_s: float = 6 * 3600.0
    max_retrains: int = 2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return {
            "on_drift": self.on_drift,
            "on_drift_kind": self.on_drift_kind,
            "since": self.since,
            "min_rows": self.min_rows,
            "cooldown_s": self.cooldown_s,
            "max_retrains": self.max_retrains,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorSettings:
        """The settings :meth:`to_dict` gave (keys it does not know are ignored)."""
        defaults = cls()
        return cls(
            on_drift=data.get("on_drift"),
            on_drift_kind=data.get("on_drift_kind"),
            since=str(data.get("since", defaults.since)),
            min_rows=int(data.get("min_rows", defaults.min_rows)),
            cooldown_s=float(data.get("cooldown_s", defaults.cooldown_s)),
            max_retrains=int(data.get("max_retrains", defaults.max_retrains)),
        )

    def describe(self) -> str:
        """One line: the window, and what happens on drift."""
        line = f"since {self.since}, at least {self.min_rows} rows"
        if not self.on_drift:
            return line + "; on drift: notify only"
        return (
            f"{line}; on drift runs {self.on_drift_kind} {self.on_drift} "
            f"(cooldown {_shown_seconds(self.cooldown_s)}, at most {self.max_retrains} a day)"
        )


def verdict_of(output: str | None) -> str | None:
    """The verdict a monitor job's output begins with (``drift: ...`` -> ``drift``)."""
    if not output or ":" not in output:
        return None
    head = output.split(":", 1)[0]
    return head if head in MONITOR_VERDICTS else None


# ---------------------------------------------------------------- records


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class Schedule:
    """One schedule: what runs, when, and how failures are handled.

    ``target`` is relative to the project root; ``params`` are the ``-p`` texts, converted
    by the notebook's parameters cell when the job runs. ``next_run`` is ``None`` while
    the schedule is paused. A ``monitor`` schedule's ``target`` is the model URI it
    watches, ``monitor`` holds its settings and ``params`` go to its ``on_drift`` target.
    """

    name: str
    cron: str
    timezone: str
    target: str
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    missed: str = "skip"
    retries: int = 2
    timeout_s: float | None = None
    webhook: str | None = None
    notify_success: bool = False
    created: datetime = field(default_factory=_now)
    next_run: datetime | None = None
    last_state: str | None = None
    monitor: MonitorSettings | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field (datetimes in ISO 8601, UTC)."""
        return {
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "target": self.target,
            "kind": self.kind,
            "params": dict(self.params),
            "paused": self.paused,
            "missed": self.missed,
            "retries": self.retries,
            "timeout_s": self.timeout_s,
            "webhook": self.webhook,
            "notify_success": self.notify_success,
            "created": _iso(self.created),
            "next_run": _iso(self.next_run),
            "last_state": self.last_state,
            "monitor": self.monitor.to_dict() if self.monitor is not None else None,
        }


@dataclass
class JobRecord:
    """One attempt at one occurrence of a schedule (or a manual run of it).

    ``state`` is one of :data:`JOB_STATES`: a ``retrying`` record waits for its backoff
    and is started like a due occurrence; an ``interrupted`` one was running when its
    scheduler stopped or died.
    """

    id: int
    schedule: str
    occurrence: datetime
    trigger: str
    attempt: int
    state: str
    started: datetime | None = None
    finished: datetime | None = None
    run_id: str | None = None
    output: str | None = None
    error: str | None = None
    owner: str | None = None
    not_before: datetime | None = None

    @property
    def done(self) -> bool:
        """Whether this attempt has ended (it will not change any more)."""
        return self.state in ("succeeded", "failed", "interrupted", "skipped")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field (datetimes in ISO 8601, UTC)."""
        return {
            "id": self.id,
            "schedule": self.schedule,
            "occurrence": _iso(self.occurrence),
            "trigger": self.trigger,
            "attempt": self.attempt,
            "state": self.state,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "run_id": self.run_id,
            "output": self.output,
            "error": self.error,
            "owner": self.owner,
            "not_before": _iso(self.not_before),
        }


# ---------------------------------------------------------------- the database


def _tables() -> tuple[Any, Any, Any]:
    import sqlalchemy as sa

    meta = sa.MetaData()
    schedules = sa.Table(
        "mlops_nb_schedules",
        meta,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),  # JSON object of texts
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("missed", sa.String(8), nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=True),
        sa.Column("webhook", sa.Text, nullable=True),
        sa.Column("notify_success", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        # Indexed: the idle tick is one range query on it.
        sa.Column("next_run", sa.DateTime, nullable=True, index=True),
        sa.Column("last_state", sa.String(16), nullable=True),
    )
    jobs = sa.Table(
        "mlops_nb_jobs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("schedule", sa.String(64), nullable=False, index=True),
        sa.Column("occurrence", sa.DateTime, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("started", sa.DateTime, nullable=True),
        sa.Column("finished", sa.DateTime, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True, index=True),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        # Who runs it, and until when that claim holds unless renewed.
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        # A retry waits for its backoff.
        sa.Column("not_before", sa.DateTime, nullable=True),
        # The guard against double firing: one record per attempt of an occurrence.
        sa.UniqueConstraint("schedule", "occurrence", "attempt", name="uq_mlops_nb_jobs_occurrence"),
    )
    return meta, schedules, jobs


def db_time(value: datetime | None) -> datetime | None:
    """Aware -> naive UTC, the portable form in the database."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given where an aware one is needed")
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


class ScheduleStore:
    """Schedules and job records in one SQL database.

    Parameters
    ----------
    url:
        Any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``). The tables are
        created when missing.
    project_root:
        The folder targets are relative to (default: the current folder).
    clock:
        Returns the current time as an aware datetime; tests give one to move time.

    Raises
    ------
    StoreError
        When the database cannot be opened or its tables created.
    """

    def __init__(
        self,
        url: str,
        *,
        project_root: str | os.PathLike[str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        import sqlalchemy as sa
        from sqlalchemy import event

        self.url = url
        self.project_root = Path(project_root or os.getcwd()).resolve()
        self.clock: Callable[[], datetime] = clock or _now
        self._meta, self.schedules, self.jobs = _tables()
        sqlite = url.startswith("sqlite")
        try:
            if sqlite:
                db = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
                if db and db != ":memory:":
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
                self._sqlite_locking(event)
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            self._meta.create_all(self.engine)
        except MlopsError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot open the schedule database {url}: {one_line(exc)}") from None

    def _sqlite_locking(self, event: Any) -> None:
        """SQLite: WAL (readers never wait for the writer), and write transactions that
        take the write lock when they begin, so two schedulers never deadlock upgrading
        a read lock (SQLite would fail one at once instead of waiting)."""

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("mlops_nb_write", False) else "BEGIN")

    @classmethod
    def for_project(cls, config: ProjectConfig) -> ScheduleStore:
        """The store of the project's schedule database (:func:`scheduler_url`)."""
        return cls(scheduler_url(config), project_root=config.project_root)

    # ------------------------------------------------------------ transactions

    def _write(self) -> Any:
        """A write transaction (``with store._write() as conn:``)."""
        return _Tx(self.engine, write=True)

    def _read(self) -> Any:
        return _Tx(self.engine, write=False)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------ rows

    def _schedule(self, row: Any) -> Schedule:
        m = row._mapping
        params = json.loads(m["params"] or "{}")
        settings = params.pop(MONITOR_KEY, None)
        return Schedule(
            name=m["name"],
            cron=m["cron"],
            timezone=m["timezone"],
            target=m["target"],
            kind=m["kind"],
            params=params,
            paused=bool(m["paused"]),
            missed=m["missed"],
            retries=int(m["retries"]),
            timeout_s=m["timeout_s"],
            webhook=m["webhook"],
            notify_success=bool(m["notify_success"]),
            created=_aware(m["created"]),  # type: ignore[arg-type]
            next_run=_aware(m["next_run"]),
            last_state=m["last_state"],
            monitor=MonitorSettings.from_dict(settings) if isinstance(settings, dict) else None,
        )

    @staticmethod
    def _job(row: Any) -> JobRecord:
        m = row._mapping
        return JobRecord(
            id=int(m["id"]),
            schedule=m["schedule"],
            occurrence=_aware(m["occurrence"]),  # type: ignore[arg-type]
            trigger=m["trigger"],
            attempt=int(m["attempt"]),
            state=m["state"],
            started=_aware(m["started"]),
            finished=_aware(m["finished"]),
            run_id=m["run_id"],
            output=m["output"],
            error=m["error"],
            owner=m["owner"],
            not_before=_aware(m["not_before"]),
        )

    # ------------------------------------------------------------ checking input

    def resolve_target(self, target: str | os.PathLike[str]) -> tuple[str, str, Path]:
        """``(path relative to the project root, kind, absolute path)`` of a schedule's
        target, or a :class:`UsageError` saying what is wrong with it."""
        path = Path(target)
        absolute = (path if path.is_absolute() else self.project_root / path).resolve()
        suffix = absolute.suffix.lower()
        if suffix == ".ipynb":
            kind = "notebook"
        elif suffix in (".yaml", ".yml"):
            kind = "pipeline"
        else:
            raise UsageError(f"{target} is neither a notebook (.ipynb) nor a pipeline (.yaml): give one of those")
        if not absolute.is_file():
            raise UsageError(f"{kind} {target} not found: give a path inside the project {self.project_root}")
        try:
            relative = absolute.relative_to(self.project_root)
        except ValueError:
            raise UsageError(
                f"{target} is outside the project {self.project_root}: schedules run the project's own files"
            ) from None
        return relative.as_posix(), kind, absolute

    @staticmethod
    def check_params(kind: str, path: Path, params: Mapping[str, str]) -> dict[str, str]:
        """Check ``-p`` texts against the target (a notebook's parameters cell, a
        pipeline's declared parameters); return them as texts (converted at run time)."""
        texts = {str(k): str(v) for k, v in params.items()}
        if kind == "notebook":
            if texts:
                check_params(declared_parameters(path), {}, texts=texts, notebook=path.name)
        else:
            load_pipeline(path, texts)
        return texts

    @staticmethod
    def check_name(name: str) -> str:
        """A schedule name: a short slug (lower-case letters, digits, ``-`` and ``_``)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise UsageError(
                f"schedule name {name!r} is not a short slug: use up to 63 lower-case letters, digits, - and _,"
                " starting with a letter or digit"
            )
        return name

    @staticmethod
    def check_webhook(url: str | None) -> str | None:
        """An ``http(s)://host/...`` URL, or ``None``."""
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"webhook {url!r} is not an http:// or https:// URL with a host")
        return url

    # ------------------------------------------------------------ schedules

    def _checked_common(
        self,
        name: str,
        cron: str,
        timezone: str,
        missed: str,
        retries: int,
        timeout_s: float | None,
        webhook: str | None,
    ) -> tuple[str, datetime, datetime, float | None]:
        """What every schedule holds, checked: ``(cron, now, next_run, timeout_s)``."""
        self.check_name(name)
        cron = (cron or "").strip()
        _zone(timezone)
        now = self.clock()
        next_run = next_occurrence(cron, timezone, now)
        if missed not in MISSED_POLICIES:
            raise UsageError(f"--missed must be skip or once, not {missed!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise UsageError(f"--retries must be a whole number from 0 to {MAX_RETRIES}, not {retries!r}")
        timeout_s = positive_seconds(timeout_s, "--timeout")  # the jobs' own check of a time limit
        self.check_webhook(webhook)
        return cron, now, next_run, timeout_s

    def add(
        self,
        name: str,
        cron: str,
        target: str | os.PathLike[str],
        *,
        timezone: str = "UTC",
        params: Mapping[str, str] | None = None,
        missed: str = "skip",
        retries: int = 2,
        timeout_s: float | None = None,
        webhook: str | None = None,
        notify_success: bool = False,
    ) -> Schedule:
        """Add a schedule; everything is checked before anything is stored.

        ``target`` is a notebook or pipeline file, relative to the project root (or
        absolute, inside it). ``params`` are ``NAME: text`` pairs, checked against the
        target's parameters now and converted by their declared types when a job runs.

        Raises
        ------
        UsageError
            A bad name, cron expression, time zone, target, parameter, policy, retry
            count, timeout or webhook URL, or a name already scheduled: nothing stored.
        """
        cron, now, next_run, timeout_s = self._checked_common(name, cron, timezone, missed, retries, timeout_s, webhook)
        relative, kind, absolute = self.resolve_target(target)
        texts = self.check_params(kind, absolute, params or {})
        schedule = Schedule(
            name=name,
            cron=cron,
            timezone=timezone,
            target=relative,
            kind=kind,
            params=texts,
            paused=False,
            missed=missed,
            retries=retries,
            timeout_s=timeout_s,
            webhook=webhook,
            notify_success=bool(notify_success),
            created=now,
            next_run=next_run,
            last_state=None,
        )
        self._insert(schedule)
        return schedule

    def add_monitor(
        self,
        name: str,
        cron: str,
        model: str,
        *,
        on_drift: str | os.PathLike[str] | None = None,
        since: str = "24h",
        min_rows: int = 100,
        cooldown: object = "6h",
        max_retrains: int = 2,
        timezone: str = "UTC",
        params: Mapping[str, str] | None = None,
        missed: str = "skip",
        retries: int = 2,
        timeout_s: float | None = None,
        webhook: str | None = None,
        notify_success: bool = False,
    ) -> Schedule:
        """Add a schedule that monitors ``model`` and runs ``on_drift`` when it drifts.

        ``model`` is ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; ``on_drift`` a
        notebook or pipeline of the project (``params`` are checked against it), or
        ``None`` to only monitor (and notify). ``since`` and ``cooldown`` are durations
        (``90s``, ``30m``, ``6h``, ``2d``); see :class:`MonitorSettings`. Everything is
        checked before anything is stored.

        Raises
        ------
        UsageError
            Anything :meth:`add` refuses, a malformed model URI, an ``on_drift`` that is
            not a notebook or pipeline of the project, parameters without ``on_drift``,
            or a window, row count, cooldown or retrain limit out of bounds.
        """
        cron, now, next_run, timeout_s = self._checked_common(name, cron, timezone, missed, retries, timeout_s, webhook)
        model = check_model_reference(model)
        settings, texts = self._checked_monitor(on_drift, since, min_rows, cooldown, max_retrains, params or {})
        schedule = Schedule(
            name=name,
            cron=cron,
            timezone=timezone,
            target=model,
            kind=MONITOR,
            params=texts,
            missed=missed,
            retries=retries,
            timeout_s=timeout_s,
            webhook=webhook,
            notify_success=bool(notify_success),
            created=now,
            next_run=next_run,
            monitor=settings,
        )
        self._insert(schedule)
        return schedule

    def _checked_monitor(
        self,
        on_drift: str | os.PathLike[str] | None,
        since: str,
        min_rows: int,
        cooldown: object,
        max_retrains: int,
        params: Mapping[str, str],
    ) -> tuple[MonitorSettings, dict[str, str]]:
        """A monitor schedule's settings and its ``on_drift`` target's parameters, checked."""
        since_text = str(since).strip()
        parse_duration(since_text, "--since", low=1.0, high=MAX_SINCE_S)
        settings = MonitorSettings(
            since=since_text,
            min_rows=_whole(min_rows, "--min-rows", 1, MAX_MIN_ROWS),
            cooldown_s=parse_duration(cooldown, "--cooldown", low=0.0, high=MAX_COOLDOWN_S),
            max_retrains=_whole(max_retrains, "--max-retrains", 1, MAX_RETRAINS_A_DAY),
        )
        if on_drift is None:
            if params:
                raise UsageError("-p parameters go to the --on-drift notebook or pipeline: give --on-drift PATH too")
            return settings, {}
        relative, kind, absolute = self.resolve_target(on_drift)
        texts = self.check_params(kind, absolute, params)
        return replace(settings, on_drift=relative, on_drift_kind=kind), texts

    @staticmethod
    def _params_json(schedule: Schedule) -> dict[str, Any]:
        """The ``params`` column: the texts, and a monitor schedule's settings beside them."""
        stored: dict[str, Any] = dict(schedule.params)
        if schedule.monitor is not None:
            stored[MONITOR_KEY] = schedule.monitor.to_dict()
        return stored

    def _insert(self, schedule: Schedule) -> None:
        """Store a checked schedule; a name already scheduled is refused."""
        from sqlalchemy.exc import IntegrityError

        try:
            with self._write() as conn:
                conn.execute(
                    self.schedules.insert().values(
                        name=schedule.name,
                        cron=schedule.cron,
                        timezone=schedule.timezone,
                        target=schedule.target,
                        kind=schedule.kind,
                        params=json.dumps(self._params_json(schedule)),
                        paused=False,
                        missed=schedule.missed,
                        retries=schedule.retries,
                        timeout_s=schedule.timeout_s,
                        webhook=schedule.webhook,
                        notify_success=schedule.notify_success,
                        created=db_time(schedule.created),
                        next_run=db_time(schedule.next_run),
                        last_state=None,
                    )
                )
        except IntegrityError:
            raise UsageError(
                f"a schedule named {schedule.name!r} exists already: remove it first or choose another name"
            ) from None

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        with self._read() as conn:
            rows = conn.execute(self.schedules.select().order_by(self.schedules.c.name)).fetchall()
        return [self._schedule(r) for r in rows]

    def get(self, name: str) -> Schedule:
        """The schedule ``name``; :class:`NotFoundError` when there is none."""
        with self._read() as conn:
            row = conn.execute(self.schedules.select().where(self.schedules.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no schedule named {name!r}: {self._known()}")
        return self._schedule(row)

    def _known(self) -> str:
        with self._read() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    self.schedules.select()
                    .with_only_columns(self.schedules.c.name)
                    .order_by(self.schedules.c.name)
                    .limit(11)
                )
            ]
        if not names:
            return "there are none (add one with mlops-nb schedule add)"
        return "schedules: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")

    def pause(self, name: str) -> Schedule:
        """Stop firing ``name`` (its ``next_run`` becomes ``None``); running jobs go on."""
        with self._write() as conn:
            done = conn.execute(
                self.schedules.update().where(self.schedules.c.name == name).values(paused=True, next_run=None)
            )
        if done.rowcount != 1:
            raise NotFoundError(f"no schedule named {name!r}: {self._known()}")
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Fire ``name`` again from its next occurrence after now (what passed while it
        was paused is not caught up: pausing means not running)."""
        schedule = self.get(name)
        if not schedule.paused:
            return schedule
        next_run = next_occurrence(schedule.cron, schedule.timezone, self.clock())
        with self._write() as conn:
            conn.execute(
                self.schedules.update()
                .where(self.schedules.c.name == name, self.schedules.c.paused.is_(True))
                .values(paused=False, next_run=db_time(next_run))
            )
        return self.get(name)

    def remove(self, name: str) -> None:
        """Remove ``name`` and its job history (a running job finishes; its run stays in MLflow)."""
        with self._write() as conn:
            done = conn.execute(self.schedules.delete().where(self.schedules.c.name == name))
            if done.rowcount == 1:
                conn.execute(self.jobs.delete().where(self.jobs.c.schedule == name))
        if done.rowcount != 1:
            raise NotFoundError(f"no schedule named {name!r}: {self._known()}")

    # ------------------------------------------------------------ jobs

    def history(self, name: str, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest ``limit`` job records of schedule ``name``, newest first."""
        self.get(name)
        j = self.jobs
        with self._read() as conn:
            rows = conn.execute(j.select().where(j.c.schedule == name).order_by(j.c.id.desc()).limit(limit)).fetchall()
        return [self._job(r) for r in rows]

    def recent_jobs(self, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest ``limit`` job records of all schedules, newest first."""
        j = self.jobs
        with self._read() as conn:
            rows = conn.execute(j.select().order_by(j.c.id.desc()).limit(limit)).fetchall()
        return [self._job(r) for r in rows]

    def job(self, job_id: int) -> JobRecord:
        """The job record ``job_id``; :class:`NotFoundError` when there is none."""
        with self._read() as conn:
            row = conn.execute(self.jobs.select().where(self.jobs.c.id == int(job_id))).first()
        if row is None:
            raise NotFoundError(f"no scheduled job with id {job_id}")
        return self._job(row)

    def jobs_by_run(self, run_ids: builtins.list[str]) -> dict[str, JobRecord]:
        """The job record of each MLflow run id that one names (for a jobs list)."""
        if not run_ids:
            return {}
        j = self.jobs
        with self._read() as conn:
            rows = conn.execute(j.select().where(j.c.run_id.in_(list(run_ids)))).fetchall()
        return {r._mapping["run_id"]: self._job(r) for r in rows}

    def insert_job(
        self,
        conn: Connection,
        schedule: str,
        occurrence: datetime,
        *,
        trigger: str,
        attempt: int,
        state: str,
        owner: str | None = None,
        lease_until: datetime | None = None,
        not_before: datetime | None = None,
        error: str | None = None,
    ) -> int:
        """Insert a job record inside ``conn``'s transaction; return its id. The unique
        key makes a second insert of the same attempt of an occurrence fail
        (``IntegrityError``): that is how double firing is refused."""
        now = self.clock()
        running = state == "running"
        result = conn.execute(
            self.jobs.insert().values(
                schedule=schedule,
                occurrence=db_time(occurrence),
                trigger=trigger,
                attempt=attempt,
                state=state,
                started=db_time(now) if running else None,
                finished=db_time(now) if state in ("skipped", "failed") else None,
                owner=owner,
                lease_until=db_time(lease_until),
                not_before=db_time(not_before),
                error=error,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # an insert has a key
        return int(key[0])

    def claim_retrain(self, schedule: Schedule, *, owner: str, lease_until: datetime) -> tuple[JobRecord | None, str]:
        """Start a retrain of a monitor schedule now, unless its policy says wait.

        In one write transaction (so two monitor jobs of one schedule cannot both pass
        the limits): the retrains it started (first attempts of :data:`MONITOR_TRIGGER`
        jobs) are counted; within the cooldown of the newest, or with ``max_retrains``
        started in the last 24 hours, nothing is inserted. Otherwise a ``running`` record
        claimed by ``owner`` is inserted (its occurrence: now). Returns the record (or
        ``None``) and one line saying what was decided and why.
        """
        settings = schedule.monitor
        if settings is None or not settings.on_drift:
            return None, "not retraining: no --on-drift notebook or pipeline (monitor only)"
        now = self.clock()
        window = max(86400.0, settings.cooldown_s)
        j = self.jobs
        with self._write() as conn:
            rows = conn.execute(
                j.select()
                .where(
                    j.c.schedule == schedule.name,
                    j.c.trigger == MONITOR_TRIGGER,
                    j.c.attempt == 1,
                    j.c.occurrence >= db_time(now - timedelta(seconds=window)),
                )
                .order_by(j.c.occurrence.desc())
            ).fetchall()
            started = [self._job(r) for r in rows]
            if started and started[0].occurrence > now - timedelta(seconds=settings.cooldown_s):
                last = started[0]
                until = last.occurrence + timedelta(seconds=settings.cooldown_s)
                return None, (
                    f"not retraining: the last retrain (job {last.id}) started at {last.occurrence:%Y-%m-%d %H:%M} UTC,"
                    f" within the {_shown_seconds(settings.cooldown_s)} cooldown (until {until:%Y-%m-%d %H:%M} UTC)"
                )
            today = [r for r in started if r.occurrence > now - timedelta(days=1)]
            if len(today) >= settings.max_retrains:
                return None, (
                    f"not retraining: {len(today)} retrain(s) started in the last 24 h, "
                    f"the most --max-retrains {settings.max_retrains} allows"
                )
            job_id = self.insert_job(
                conn,
                schedule.name,
                now,
                trigger=MONITOR_TRIGGER,
                attempt=1,
                state="running",
                owner=owner,
                lease_until=lease_until,
            )
        return self.job(job_id), f"retraining: job {job_id} runs {settings.on_drift_kind} {settings.on_drift}"

    def update_job(self, job_id: int, **values: Any) -> None:
        """Set columns of a job record (datetimes aware)."""
        values = {k: (db_time(v) if isinstance(v, datetime) else v) for k, v in values.items()}
        with self._write() as conn:
            conn.execute(self.jobs.update().where(self.jobs.c.id == job_id).values(**values))


class _Tx:
    """A connection with a transaction that commits on success and rolls back on error;
    database errors become one-line :class:`StoreError` (integrity errors pass through:
    callers turn them into a refusal)."""

    def __init__(self, engine: Engine, write: bool) -> None:
        self.engine = engine
        self.write = write

    def __enter__(self) -> Connection:
        try:
            self.conn = self.engine.connect()
            if self.write:
                self.conn.info["mlops_nb_write"] = True
            self.tx = self.conn.begin()
        except Exception as exc:
            raise StoreError(f"cannot reach the schedule database: {one_line(exc)}") from None
        return self.conn

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Literal[False]:
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            if kind is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.info.pop("mlops_nb_write", None)
            self.conn.close()
        if exc is not None and isinstance(exc, SQLAlchemyError) and not isinstance(exc, IntegrityError):
            raise StoreError(f"the schedule database failed: {one_line(exc)}") from None
        return False
