"""``mlops-nb serve``: check the options, find the model, load it, and run the app on
uvicorn — in this process, or in ``--workers N`` processes.

Order matters for the user: every usage error (a bad reference, a public address with
no token, a bad number) is found before the store is read (:mod:`.options`, light to import); an unknown model or alias
before anything is loaded; a port in use before the model is loaded; a model that does
not load ends the command with one line. Only then is the server announced and started.

Several workers: the parent binds the socket, checks that the version loads, makes the
folder prometheus-client's multiprocess mode counts in, and hands the settings to
uvicorn's workers as JSON in an environment variable (:data:`SETTINGS_ENV`); each worker
builds its own app (:func:`worker_app`) with its own deployment and watcher, starting on
the version the parent checked. The parent owns the announcement; a worker rewrites it
when it swaps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import IO, Any

from fastapi import FastAPI

from mlops_nb.config import ProjectConfig
from mlops_nb.exceptions import MlopsError
from mlops_nb.registry import ALIAS_MOVES_FILE
from mlops_nb.serving.announce import LOG_ENV, remove_announcement, server_id, write_announcement
from mlops_nb.serving.app import DEFAULT_TIMEOUT, create_app
from mlops_nb.serving.batching import Batcher
from mlops_nb.serving.deployment import Deployment, LoadedVersion, iso_time, load_version, report_line
from mlops_nb.serving.metrics import MULTIPROC_ENV, ServerMetrics
from mlops_nb.serving.options import ServeOptions
from mlops_nb.serving.requestlog import RequestLog, log_url
from mlops_nb.serving.source import ModelSource, ResolvedModel, parse_source, resolve
from mlops_nb.store import get_client

__all__ = ["SETTINGS_ENV", "build_app", "serve", "worker_app"]

#: The settings the parent hands its uvicorn workers, as JSON.
SETTINGS_ENV = "MLOPS_NB_SERVE_SETTINGS"
#: uvicorn's exit code for a worker that failed before serving: the parent then stops
#: instead of starting it again and again.
STARTUP_FAILURE = 3


def _moves_file(config: ProjectConfig, source: ModelSource) -> Any:
    db = config.sqlite_path
    return db.parent / ALIAS_MOVES_FILE if db is not None and source.follows_alias else None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`MlopsError` (one line) when taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise MlopsError(f"cannot listen on {host} port {port}: {exc.strerror or exc}; choose another --port") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_app(
    options: ServeOptions,
    config: ProjectConfig,
    resolved: ResolvedModel,
    announcement: dict[str, Any],
    *,
    multiprocess_dir: str | None = None,
    deployment: Deployment | None = None,
) -> FastAPI:
    """The app of one server process: loads ``resolved`` (unless ``deployment`` already
    serves it), opens the request log, and rewrites ``announcement`` on each swap."""
    # As mlflow models serve does: models whose signature comes from type hints read
    # their input differently when they know they are served.
    os.environ["_MLFLOW_IS_IN_SERVING_ENVIRONMENT"] = "true"
    source = parse_source(options.model)
    if deployment is None:
        deployment = Deployment(get_client(config), source, poll=options.poll, moves_file=_moves_file(config, source))
        deployment.load_first(resolved)

    def announce(new: LoadedVersion, old: LoadedVersion | None) -> None:
        if old is not None:
            write_announcement(config, {**announcement, "version": new.version})

    deployment.on_swap(announce)
    request_log = None
    if options.log:
        request_log = RequestLog(log_url(config), sample=options.sample, server=str(announcement["id"]))
    batcher = Batcher(options.max_batch_size, options.max_wait_ms) if options.max_batch_size > 1 else None
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    return create_app(
        deployment,
        ServerMetrics(multiprocess_dir),
        token=options.token,
        max_body_bytes=int(options.max_body_mb * 2**20),
        request_log=request_log,
        batcher=batcher,
        timeout=float(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get() or DEFAULT_TIMEOUT),
        info={"url": announcement["url"], "pid": os.getpid(), "started": announcement["started"]},
    )


def point_mlflow_at(config: ProjectConfig) -> None:
    """Make the project's store this process's MLflow tracking URI (inherited by workers).

    MLflow's artifact repositories resolve ``mlflow-artifacts:/`` locations (a tracking
    server's artifacts) through the process's tracking URI, not a client's: without this
    a server on a shared store failed to load its model, and looked for ./mlflow.db. A
    server process serves one project, so the process-wide setting is the right one."""
    os.environ["MLFLOW_TRACKING_URI"] = config.tracking_uri


def worker_app() -> FastAPI:
    """The app of one uvicorn worker (``--workers N``), from :data:`SETTINGS_ENV`."""
    data = json.loads(os.environ[SETTINGS_ENV])
    try:
        return build_app(
            ServeOptions(**data["options"]),
            ProjectConfig.from_dict(data["config"]),
            ResolvedModel(**data["resolved"]),
            data["announcement"],
            multiprocess_dir=os.environ.get(MULTIPROC_ENV),
        )
    except MlopsError as exc:
        report_line(f"error: {exc}")
        sys.exit(STARTUP_FAILURE)


def serve(
    options: ServeOptions,
    config: ProjectConfig,
    *,
    out: IO[str] | None = None,
) -> int:
    """Serve until SIGTERM or Ctrl-C; return the exit code (0 after a clean stop).

    Raises :class:`UsageError`/:class:`NotFoundError` (unknown model or alias) before
    anything is loaded, :class:`MlopsError` when the port is taken or the model does not
    load. Prints one line to ``out`` (default stdout) once it listens.
    """
    source = parse_source(options.model)
    point_mlflow_at(config)
    client = get_client(config)
    resolved = resolve(client, source)
    sock = _bind(options.host, options.port)
    port = int(sock.getsockname()[1])
    sid = server_id(port)
    announcement: dict[str, Any] = {
        "id": sid,
        "url": _url(options.host, port),
        "host": options.host,
        "port": port,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "model": source.text,
        "name": resolved.name,
        "alias": source.alias,
        "version": resolved.version,
        "started": iso_time(time.time()),
        "auth": bool(options.token),
        "log_file": os.environ.get(LOG_ENV) or None,
    }
    try:
        if options.workers == 1:
            deployment = Deployment(client, source, poll=options.poll, moves_file=_moves_file(config, source))
            loaded = deployment.load_first(resolved)
            app = build_app(options, config, resolved, announcement, deployment=deployment)
            return _run(options, config, announcement, loaded.version, sock, app, out)
        return _run_workers(options, config, resolved, announcement, sock, out)
    finally:
        sock.close()
        remove_announcement(config, sid, os.getpid())


def _started(options: ServeOptions, announcement: dict[str, Any], version: str, out: IO[str] | None) -> None:
    what = f"{announcement['name']} v{version}"
    follows = f", following @{announcement['alias']}" if announcement["alias"] else ""
    auth = "; requests need Authorization: Bearer TOKEN" if options.token else ""
    workers = f" with {options.workers} workers" if options.workers > 1 else ""
    line = f"mlops-nb: serving {announcement['model']} ({what}{follows}) at {announcement['url']}{workers}{auth}"
    print(line, file=out or sys.stdout, flush=True)


def _uvicorn_config(app: Any, options: ServeOptions, **kwargs: Any) -> Any:
    import uvicorn

    # No access log: the request log records requests off the request path; uvicorn's
    # own lines at warning level and above only.
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **kwargs)


def _run(
    options: ServeOptions,
    config: ProjectConfig,
    announcement: dict[str, Any],
    version: str,
    sock: socket.socket,
    app: FastAPI,
    out: IO[str] | None,
) -> int:
    import uvicorn

    server = uvicorn.Server(_uvicorn_config(app, options))
    write_announcement(config, announcement)
    _started(options, announcement, version, out)
    # uvicorn stops gracefully on SIGTERM, then raises it again once its own handler is
    # removed: ours takes it then, so the announcement is removed and the exit is clean.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if server.started else 1


def _run_workers(
    options: ServeOptions,
    config: ProjectConfig,
    resolved: ResolvedModel,
    announcement: dict[str, Any],
    sock: socket.socket,
    out: IO[str] | None,
) -> int:
    from uvicorn.supervisors import Multiprocess

    load_version(resolved)  # fails here, in one line, rather than in every worker
    folder = tempfile.mkdtemp(prefix="mlops-nb-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    os.environ[SETTINGS_ENV] = json.dumps(
        {
            "options": dataclasses.asdict(options),
            "config": config.to_dict(),
            "resolved": dataclasses.asdict(resolved),
            "announcement": announcement,
        }
    )
    try:
        uv_config = _uvicorn_config(
            "mlops_nb.serving.server:worker_app", options, factory=True, workers=options.workers
        )
        write_announcement(config, announcement)
        _started(options, announcement, resolved.version, out)
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
