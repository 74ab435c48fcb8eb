"""REST handlers: parse the request, call the core (registry, schedules, job history)
off the event loop, serialise.

Errors are mapped once, in :class:`BaseHandler`: 400 bad input, 404 unknown model,
version, schedule or run, 409 refused promotion, 503 store unreachable; never a 500 for
a user's mistake.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime
from functools import partial
from http.client import responses
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import tornado.web
from jupyter_server.base.handlers import APIHandler

from ..config import ProjectConfig, resolve_config
from ..exceptions import MlopsError, NotFoundError, StoreError, UsageError
from ..registry import PromotionRefusedError

__all__ = ["HANDLERS", "BaseHandler"]

_STATUS = [(PromotionRefusedError, 409), (NotFoundError, 404), (UsageError, 400), (StoreError, 503)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a diverged metric: NaN is not JSON, and the panel's JSON.parse would fail
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


class BaseHandler(APIHandler):
    """Shared plumbing: the project store, the client, off-loop calls and error mapping."""

    @property
    def project(self) -> ProjectConfig:
        state = self.settings["mlops_nb_state"]
        if state["config"] is None:
            state["config"] = resolve_config(state["root"])
        return state["config"]

    def client(self) -> Any:
        from ..store import get_client

        return get_client(self.project)

    def schedules(self) -> Any:
        """The project's schedule store (one per server: it holds a connection pool)."""
        from ..jobs.schedule import ScheduleStore

        state = self.settings["mlops_nb_state"]
        if state.get("schedules") is None:
            try:
                state["schedules"] = ScheduleStore.for_project(self.project)
            except MlopsError:
                raise
            except Exception as exc:
                from ..exceptions import StoreUnreachableError

                raise StoreUnreachableError(f"cannot open the schedule database: {exc}") from None
        return state["schedules"]

    def schedules_or_none(self) -> Any:
        """The schedule store, or ``None`` when it cannot be opened: job runs are MLflow's,
        so a broken schedule database hides only the scheduler's side of a job list (its
        error shows on ``/schedules``)."""
        try:
            return self.schedules()
        except MlopsError:
            return None

    async def respond(self, fn: Callable[..., Any], *args: Any, status: int = 200) -> None:
        """Run ``fn(client, *args)`` off the event loop and answer with its JSON result."""
        await self._answer(partial(self._call, fn, *args), status)

    async def respond_schedules(self, fn: Callable[..., Any], *args: Any, status: int = 200) -> None:
        """Run ``fn(store, *args)`` off the event loop: schedules need no MLflow store."""
        await self._answer(lambda: fn(self.schedules(), *args), status)

    async def _answer(self, call: Callable[[], Any], status: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, call)
        except MlopsError as exc:
            code = next((c for kind, c in _STATUS if isinstance(exc, kind)), 400)
            self.set_status(code)
            self.finish(json.dumps({"error": str(exc), "status": code}))
            return
        self.set_status(status)
        self.finish(json.dumps(_jsonable(result)))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised before :meth:`respond` (a bad query argument or body, no token) in
        the same shape as the ones it maps: ``{"error": ..., "status": N}``."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError):
            message = exc.reason or exc.log_message or responses.get(status_code, "error")
        else:
            message = "internal error; the Jupyter server's log has the details"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code}))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        from ..exceptions import StoreUnreachableError
        from ..store import check_store

        try:
            client = self.client()
        except MlopsError:
            raise
        except Exception as exc:
            raise StoreUnreachableError(f"cannot open the store {self.project.tracking_uri}: {exc}") from None
        try:
            return fn(client, *args)
        except Exception as exc:
            if isinstance(exc, StoreUnreachableError) or (isinstance(exc, MlopsError) and not isinstance(exc, StoreError)):
                raise  # it already says what is wrong
            # A store that went away since the client last checked fails the call with
            # MLflow's retry trace (or a 500): say that the store is down, as a 503 the
            # panel shows as such (and retries).
            health = check_store(self.project, timeout=2.0)
            if health.reachable is False:
                raise health.error() from None
            raise

    def body(self) -> dict[str, Any]:
        """The JSON request body, or a 400 naming what is wrong."""
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, reason="the request body is not JSON")
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, reason="the request body must be a JSON object")
        return data

    def _who(self) -> str:
        """The Jupyter user making the request, for the audit trail."""
        user = self.current_user
        return getattr(user, "username", None) or getattr(user, "name", None) or str(user)

    def int_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, str(default))
        try:
            return int(raw)
        except ValueError:
            raise tornado.web.HTTPError(400, reason=f"{name} must be a whole number, not {raw!r}")


# -- the operations, as plain functions of a client (the handlers stay thin) ----------


def _models(client: Any, q: str | None, size: int, token: str | None, order: str) -> dict[str, Any]:
    from ..registry import models_page

    rows, nxt = models_page(client, q, size, token, order)
    return {"models": rows, "next_page_token": nxt}


def _model(client: Any, name: str, size: int, token: str | None) -> dict[str, Any]:
    from ..registry import get_model, versions_page

    model = get_model(client, name)
    versions, nxt = versions_page(client, name, size, token, model=model)
    return {
        "name": model.name,
        "description": model.description or "",
        "tags": dict(model.tags),
        "aliases": {k: str(v) for k, v in model.aliases.items()},
        "versions": versions,
        "next_page_token": nxt,
    }


def _versions(client: Any, name: str, size: int, token: str | None) -> dict[str, Any]:
    from ..registry import versions_page

    # Aliases live on the model: clients hold them from the models list (or the model
    # endpoint), so a page of versions is one registry query.
    rows, nxt = versions_page(client, name, size, token, with_aliases=False)
    return {"versions": rows, "next_page_token": nxt}


def _version(client: Any, name: str, version: str) -> dict[str, Any]:
    from ..registry import version_detail

    return version_detail(client, name, version)


def _set_alias(client: Any, name: str, alias: str, body: dict[str, Any], who: str) -> dict[str, Any]:
    from ..registry import set_alias

    if "version" not in body:
        raise UsageError('give the version the alias should point at: {"version": "3"}')
    previous = set_alias(client, name, alias, str(body["version"]), who=who, why=str(body.get("why", "set in JupyterLab")))
    return {"name": name, "alias": alias, "version": str(int(str(body["version"]))), "previous_version": previous}


def _remove_alias(client: Any, name: str, alias: str, who: str) -> dict[str, Any]:
    from ..registry import remove_alias

    return {"name": name, "alias": alias, "removed_from_version": remove_alias(client, name, alias, who=who, why="removed in JupyterLab")}


def _promote(client: Any, name: str, body: dict[str, Any], who: str) -> Any:
    from ..registry import promote

    try:
        min_delta = float(body.get("min_delta", 0.0))
    except (TypeError, ValueError):
        raise UsageError(f"min_delta must be a number, not {body.get('min_delta')!r}") from None
    return promote(
        client,
        name,
        body.get("metric", ""),
        str(body.get("from", "challenger")),
        str(body.get("to", "champion")),
        min_delta,
        bool(body.get("lower_is_better", False)),
        who=who,
    )


def _notebook_html(text: str, name: str, run_id: str | None) -> str:
    """The snapshot as nbconvert renders it for JupyterLab (the 'lab' template).

    Nothing is stripped: the panel shows it in a sandboxed iframe without scripts. The
    template's CDN script tags are inert there, and rendering needs no network.
    """
    import nbformat
    from nbconvert import HTMLExporter

    try:
        html, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.reads(text, as_version=4))
    except Exception as exc:  # a damaged file: say so rather than fail with a 500
        raise NotFoundError(
            f"the snapshot {name} of run {run_id} is not a notebook that can be shown ({type(exc).__name__}); "
            "open the run's artifacts in MLflow"
        ) from None
    return html


def _notebook(client: Any, name: str, version: str, project_root: Path, server_root: str) -> dict[str, Any]:
    from ..registry import version_notebook

    found = version_notebook(client, name, version, project_root, root=server_root)
    if found.workspace_path is not None:
        return {"source": "workspace", "path": found.workspace_path}
    return {
        "source": "snapshot",
        "name": found.snapshot_name,
        "run_id": found.run_id,
        "recorded_path": found.recorded_path,
        "html": _notebook_html(found.snapshot_text or "", found.snapshot_name or "", found.run_id),
    }


def _compare(client: Any, name: str, a: str, b: str) -> dict[str, Any]:
    from ..registry import compare_versions

    return compare_versions(client, name, a, b)


def _schedules(store: Any, in_server: dict[str, Any]) -> dict[str, Any]:
    return {"schedules": [s.to_dict() for s in store.list()], "scheduler": in_server}


def _set_paused(store: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    paused = body.get("paused")
    if not isinstance(paused, bool):
        raise UsageError(f'give "paused": true or false, not {paused!r}')
    return (store.pause(name) if paused else store.resume(name)).to_dict()


def _run_now(store: Any, config: ProjectConfig, name: str) -> dict[str, Any]:
    from ..jobs.schedule import run_now

    return run_now(store, config, name, wait=False).to_dict()


def _jobs(client: Any, store: Any, limit: int) -> dict[str, Any]:
    from ..jobs.history import recent_job_runs

    return {"jobs": recent_job_runs(client, store, limit)}


def _job_notebook(client: Any, store: Any, run_id: str, server_root: str, allow_hidden: bool) -> dict[str, Any]:
    from ..jobs.history import job_notebook

    found = job_notebook(client, run_id, server_root, store, allow_hidden=allow_hidden)
    if found.workspace_path is not None:
        return {"source": "workspace", "path": found.workspace_path}
    html = found.html if found.html is not None else _notebook_html(found.notebook_text or "", found.name, run_id)
    return {"source": "snapshot", "name": found.name, "run_id": run_id, "recorded_path": found.output, "html": html}


class ModelsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.respond(
            _models,
            self.get_query_argument("q", None),
            self.int_arg("page_size", 50),
            self.get_query_argument("page_token", None),
            self.get_query_argument("order", "name"),
        )


class ModelHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(_model, unquote(name), self.int_arg("page_size", 20), self.get_query_argument("page_token", None))


class VersionsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(_versions, unquote(name), self.int_arg("page_size", 20), self.get_query_argument("page_token", None))


class VersionHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str, version: str) -> None:
        await self.respond(_version, unquote(name), version)


class NotebookHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str, version: str) -> None:
        root = self.settings["mlops_nb_state"]["root"]
        # The project is read off the loop, with the client: a bad pyproject.toml is a 4xx.
        await self.respond(lambda client: _notebook(client, unquote(name), version, self.project.project_root, root))


class AliasHandler(BaseHandler):
    @tornado.web.authenticated
    async def put(self, name: str, alias: str) -> None:
        await self.respond(_set_alias, unquote(name), alias, self.body(), self._who())

    @tornado.web.authenticated
    async def delete(self, name: str, alias: str) -> None:
        await self.respond(_remove_alias, unquote(name), alias, self._who())


class PromotionHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        await self.respond(_promote, unquote(name), self.body(), self._who())


class CompareHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        a = self.get_query_argument("a", "")
        b = self.get_query_argument("b", "")
        await self.respond(_compare, unquote(name), a, b)


class SchedulesHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        in_server = self.settings["mlops_nb_state"]["scheduler"]
        await self.respond_schedules(_schedules, dict(in_server))


class ScheduleHandler(BaseHandler):
    @tornado.web.authenticated
    async def patch(self, schedule: str) -> None:
        await self.respond_schedules(_set_paused, unquote(schedule), self.body())


class ScheduleRunsHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, schedule: str) -> None:
        # The job runs in a thread of this server; the record comes back at once.
        await self.respond_schedules(lambda store: _run_now(store, self.project, unquote(schedule)), status=202)


class JobsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        limit = self.int_arg("limit", 50)
        await self.respond(lambda client: _jobs(client, self.schedules_or_none(), limit))


class JobNotebookHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        root = self.settings["mlops_nb_state"]["root"]
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        await self.respond(lambda client: _job_notebook(client, self.schedules_or_none(), run_id, root, allow_hidden))


_NAME = r"(?P<name>[^/]+)"
_SCHEDULE = r"(?P<schedule>[^/]+)"
HANDLERS: list[tuple[str, type[BaseHandler]]] = [
    (r"/mlops-nb/api/models", ModelsHandler),
    (rf"/mlops-nb/api/models/{_NAME}", ModelHandler),
    (rf"/mlops-nb/api/models/{_NAME}/versions", VersionsHandler),
    (rf"/mlops-nb/api/models/{_NAME}/versions/(?P<version>[^/]+)", VersionHandler),
    (rf"/mlops-nb/api/models/{_NAME}/versions/(?P<version>[^/]+)/notebook", NotebookHandler),
    (rf"/mlops-nb/api/models/{_NAME}/aliases/(?P<alias>[^/]+)", AliasHandler),
    (rf"/mlops-nb/api/models/{_NAME}/promotions", PromotionHandler),
    (rf"/mlops-nb/api/models/{_NAME}/compare", CompareHandler),
    (r"/mlops-nb/api/schedules", SchedulesHandler),
    (rf"/mlops-nb/api/schedules/{_SCHEDULE}", ScheduleHandler),
    (rf"/mlops-nb/api/schedules/{_SCHEDULE}/runs", ScheduleRunsHandler),
    (r"/mlops-nb/api/jobs", JobsHandler),
    (r"/mlops-nb/api/jobs/(?P<run_id>[^/]+)/notebook", JobNotebookHandler),
]
