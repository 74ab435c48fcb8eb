"""The HTTP face of a model server: MLflow's scoring protocol plus health, readiness,
metrics and feedback, as one FastAPI app.

``POST /invocations`` runs MLflow's own ``invocations`` (in a thread, as
``mlflow models serve`` does), so the accepted bodies, the schema enforcement and the
JSON error shape are MLflow's. Around it: the version is read once per request from the
:class:`~mlops_nb.serving.deployment.Deployment` (a swap never changes a request's model
half way), the answer names that version in ``X-Model-Name``/``X-Model-Version`` and
the request in ``X-Request-Id``, and it is counted and queued for the request log
(neither waits). Bad input is a 4xx, never a 500: MLflow's errors keep MLflow's status,
anything else a parser raises is a 400 with one line. The path stays lean — no
middleware, no registry call, no disk I/O — so one client sees ``mlflow models serve``'s
latency or better.

Routes: ``/ping`` (MLflow's liveness: 200 once a version is loaded), ``/ready`` (loaded
and warmed), ``/version`` (MLflow's version text), ``/health`` (JSON), ``/metrics``
(Prometheus text), ``/invocations``, ``/feedback``. With a token, every route but
``/ping``, ``/ready`` and ``/version`` needs ``Authorization: Bearer TOKEN``.

With several workers, ``/health``'s counts and latencies are the answering worker's
own; ``/metrics`` sums all workers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import invocations
from mlflow.version import VERSION

from mlops_nb.exceptions import one_line
from mlops_nb.serving.batching import Batcher
from mlops_nb.serving.deployment import Deployment, LoadedVersion
from mlops_nb.serving.metrics import RecentRequests, ServerMetrics
from mlops_nb.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from mlops_nb.serving.requestlog import RequestLog

__all__ = ["DEFAULT_TIMEOUT", "create_app"]

#: Seconds a scoring request may take before it is answered 504 (MLflow's default, and
#: its MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT variable, apply).
DEFAULT_TIMEOUT = 60.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_JSON = "application/json"


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or :class:`_TooLarge` as soon as it passes ``limit`` bytes (a declared
    length is refused before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise _TooLarge
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str, **headers: str) -> Response:
    """An error answer in MLflow's shape: ``{"error_code": ..., "message": ...}``."""
    return Response(content=_message(code, message), status_code=status, media_type=_JSON, headers=headers or None)


class _Routes:
    """The routes of one app, over the state they share (see :func:`create_app`)."""

    def __init__(
        self,
        deployment: Deployment,
        metrics: ServerMetrics,
        token: str | None,
        max_body_bytes: int,
        request_log: RequestLog | None,
        batcher: Batcher | None,
        timeout: float,
        info: Mapping[str, Any],
    ) -> None:
        self.deployment = deployment
        self.metrics = metrics
        self.expected = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.request_log = request_log
        self.batcher = batcher
        self.timeout = timeout
        self.info = dict(info)
        self.recent = RecentRequests()

    # ------------------------------------------------------------ access

    def authorized(self, request: Request) -> bool:
        if self.expected is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.expected)

    @staticmethod
    def unauthorized() -> Response:
        message = "this server needs a token: send the header Authorization: Bearer TOKEN"
        return _error(401, "UNAUTHENTICATED", message, **{"WWW-Authenticate": "Bearer"})

    def copy_dropped(self) -> None:
        if self.request_log is not None:
            self.metrics.log_dropped(self.request_log.stats()["dropped"])

    # ------------------------------------------------------------ probes and numbers

    async def ping(self) -> Response:
        return Response(content="\n", status_code=200 if self.deployment.current else 503, media_type=_JSON)

    async def ready(self) -> Response:
        current = self.deployment.current
        body = {"ready": current is not None, "version": current.version if current else None}
        return Response(content=json.dumps(body), status_code=200 if current else 503, media_type=_JSON)

    async def version(self) -> Response:
        return Response(content=VERSION, status_code=200, media_type=_JSON)

    async def health(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        self.copy_dropped()
        body = {
            **self.deployment.health(),
            "requests": self.metrics.requests,
            "errors": self.metrics.errors,
            **self.recent.summary(),
            "log": self.request_log.stats() if self.request_log is not None else None,
            **self.info,
            "mlops_nb_version": __version__,
        }
        return Response(content=json.dumps(body), status_code=200, media_type=_JSON)

    async def metrics_text(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        self.copy_dropped()
        if self.metrics.multiprocess_dir:  # reads every worker's files: off the event loop
            text, content_type = await asyncio.to_thread(self.metrics.exposition)
        else:
            text, content_type = self.metrics.exposition()
        return Response(content=text, status_code=200, headers={"Content-Type": content_type})

    # ------------------------------------------------------------ scoring

    async def invocations(self, request: Request) -> Response:
        started, arrived = time.perf_counter(), time.time()
        given = request.headers.get("x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        loaded = self.deployment.current  # once: a swap meanwhile does not change this request's model
        name = loaded.name if loaded else self.deployment.source.name
        version = loaded.version if loaded else ""
        headers = {"X-Model-Name": name, "X-Model-Version": version, "X-Request-Id": request_id}
        if not self.authorized(request):
            answer = self.unauthorized()
            answer.headers.update(headers)
            self.metrics.observe(401, time.perf_counter() - started)
            return answer  # not logged: an unauthenticated caller never writes the log
        body = b""
        try:
            body = await _read_body(request, self.max_body_bytes)
            if loaded is None:
                status, text, mimetype = 503, _message("SERVICE_UNAVAILABLE", "no model version is loaded yet"), _JSON
            else:
                status, text, mimetype = await self.predict(body, request.headers.get("content-type") or "", loaded)
        except _TooLarge:
            limit = f"{self.max_body_bytes / 2**20:g} MB"
            message = f"the request body is larger than this server's limit of {limit} (--max-body-mb)"
            status, text, mimetype = 413, _message("REQUEST_LIMIT_EXCEEDED", message), _JSON
        latency = time.perf_counter() - started
        self.metrics.observe(status, latency)
        self.recent.add(latency * 1000.0)
        if self.request_log is not None:
            self.request_log.record(
                request_id=request_id,
                model=name,
                version=version,
                status=status,
                latency_ms=latency * 1000.0,
                inputs=body.decode("utf-8", "replace") if body else None,
                outputs=text,
                time=arrived,
            )
        return Response(content=text, status_code=status, media_type=mimetype, headers=headers)

    async def predict(self, body: bytes, content_type: str, loaded: LoadedVersion) -> tuple[int, str, str]:
        """MLflow's answer to one request: (status, text, mimetype); never raises."""
        try:
            if self.batcher is not None:
                answer = await asyncio.wait_for(self.batcher.submit(body, content_type, loaded), self.timeout)
            else:
                work = asyncio.to_thread(invocations, body, content_type, loaded.model, loaded.input_schema)
                answer = await asyncio.wait_for(work, self.timeout)
            return answer.status, answer.response, answer.mimetype
        except MlflowException as exc:
            return exc.get_http_status_code(), exc.serialize_as_json(), _JSON
        except asyncio.TimeoutError:
            return 504, _message("DEADLINE_EXCEEDED", "Request processing time exceeded limit"), _JSON
        except Exception as exc:  # what MLflow's parsers raise on odd input besides their own errors
            return 400, _message("BAD_REQUEST", f"cannot read the request: {one_line(exc, with_type=True)}"), _JSON

    async def feedback(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        if self.request_log is None:
            return _error(404, "NOT_FOUND", "this server keeps no request log (--no-log): feedback is off")
        try:
            items = _feedback_items(await _read_body(request, self.max_body_bytes))
        except _TooLarge:
            return _error(413, "REQUEST_LIMIT_EXCEEDED", "the feedback body is larger than the limit")
        except ValueError as exc:
            return _error(400, "BAD_REQUEST", str(exc))
        for request_id, label in items:
            self.request_log.feedback(request_id, label)
        return Response(content=json.dumps({"accepted": len(items)}), status_code=202, media_type=_JSON)


def create_app(
    deployment: Deployment,
    metrics: ServerMetrics,
    *,
    token: str | None = None,
    max_body_bytes: int = 16 * 2**20,
    request_log: RequestLog | None = None,
    batcher: Batcher | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    info: Mapping[str, Any] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The server's app, serving ``deployment``.

    Its lifespan starts the deployment's watcher, the ``batcher`` (when given) and a
    once-a-second copy of the request log's dropped count into ``metrics``; at shutdown
    it stops them, closes ``request_log`` (writing what is queued) and calls
    ``on_shutdown``. ``info`` adds fixed fields to ``/health`` (url, pid, started...).
    """
    routes = _Routes(deployment, metrics, token, max_body_bytes, request_log, batcher, timeout, info or {})

    def served(new: LoadedVersion, old: LoadedVersion | None) -> None:
        metrics.served(new.name, new.version, (old.name, old.version) if old else None)
        if old is not None:
            metrics.swapped()

    deployment.on_swap(served)
    deployment.on_failure(lambda version, line: metrics.swap_failed())
    if deployment.current is not None:
        metrics.served(deployment.current.name, deployment.current.version)

    async def copy_dropped() -> None:
        while True:
            routes.copy_dropped()
            await asyncio.sleep(1.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deployment.start()
        if batcher is not None:
            batcher.start()
        copier = asyncio.get_running_loop().create_task(copy_dropped())
        try:
            yield
        finally:
            copier.cancel()
            if batcher is not None:
                await batcher.stop()
            await asyncio.to_thread(deployment.stop)
            if request_log is not None:
                await asyncio.to_thread(request_log.close)
            metrics.process_exited()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    for path, method, handler in (
        ("/ping", "GET", routes.ping),
        ("/ready", "GET", routes.ready),
        ("/version", "GET", routes.version),
        ("/health", "GET", routes.health),
        ("/metrics", "GET", routes.metrics_text),
        ("/invocations", "POST", routes.invocations),
        ("/feedback", "POST", routes.feedback),
    ):
        app.add_api_route(path, handler, methods=[method])
    return app


def _message(code: str, message: str) -> str:
    return json.dumps({"error_code": code, "message": message})


def _feedback_items(body: bytes) -> list[tuple[str, Any]]:
    """``(request_id, label)`` pairs of a feedback body, or ``ValueError`` saying what to send."""
    hint = 'send {"request_id": "...", "label": ...} or a list of such objects'
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError(f"the feedback body is not JSON: {hint}") from None
    entries = data if isinstance(data, list) else [data]
    items = []
    for entry in entries:
        if not isinstance(entry, dict) or "label" not in entry:
            raise ValueError(f"each feedback entry needs a request_id and a label: {hint}")
        rid = entry.get("request_id")
        if not isinstance(rid, str) or not rid or len(rid) > 128:
            raise ValueError(f"request_id must be the X-Request-Id of an answer (text): {hint}")
        items.append((rid, entry["label"]))
    if not items:
        raise ValueError(f"the feedback list is empty: {hint}")
    return items
