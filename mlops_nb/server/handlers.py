"""REST handlers: parse the request, call the core (registry, approvals, schedules, job
history, the project's model servers and their monitor verdicts) off the event loop,
serialise.

Errors are mapped once, in :meth:`BaseHandler.write_error`: 400 bad input, 404 unknown
model, version, pending approval, schedule, run, monitor report or model server, 409
refused promotion, 503 store unreachable; never a 500 for a user's mistake. Request bodies are checked against the request schemas of
``openapi.yaml`` itself, so the file and the server cannot disagree on what a body may
hold.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache, partial
from http.client import responses
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from mlops_nb.config import ProjectConfig, resolve_config, sqlite_path
from mlops_nb.exceptions import (
    MlopsError,
    NotFoundError,
    PromotionRefusedError,
    StoreError,
    StoreUnreachableError,
    UsageError,
    one_line,
)
from mlops_nb.jobs.schedules.history import job_notebook, recent_job_runs
from mlops_nb.jobs.schedules.scheduler import run_now
from mlops_nb.jobs.schedules.store import ScheduleStore
from mlops_nb.monitoring.monitor import REPORT_FILE, last_verdict
from mlops_nb.registry import (
    approve,
    compare_versions,
    get_model,
    models_page,
    pending_approvals,
    promote,
    reject,
    remove_alias,
    set_alias,
    version_detail,
    version_notebook,
    versions_page,
    who_am_i,
)
from mlops_nb.serving.announce import list_servers, read_health, stop_server
from mlops_nb.snapshots import is_missing, notebook_html
from mlops_nb.store import check_store, explain_missing_run_artifacts, get_client
from mlops_nb.tags import KIND

# yaml, jsonschema, nbformat and nbconvert are imported where used: the server starts
# without them, and only the routes that need them pay for their import.

__all__ = ["HANDLERS", "SPEC_PATH", "BaseHandler", "status_of"]

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
_STATUS = [(PromotionRefusedError, 409), (NotFoundError, 404), (UsageError, 400), (StoreError, 503)]
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,12}")
#: The user id Jupyter makes up for a request with the shared token (uuid4().hex).
_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")


def status_of(exc: MlopsError) -> int:
    """The HTTP status an error of the core answers with (400 when none is more precise)."""
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        return get_client(self.project)

    def schedules(self) -> Any:
        """The project's schedule store (one per server: it holds a connection pool)."""
        state = self.settings["mlops_nb_state"]
        if state.get("schedules") is None:
            try:
                state["schedules"] = ScheduleStore.for_project(self.project)
            except MlopsError:
                raise
            except Exception as exc:
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

    async def _answer(self, call: Callable[[], Any], status: int | Callable[[Any], int]) -> None:
        """Answer with ``call()``'s JSON; ``status`` may depend on the result (202 for a
        promotion that waits for approval)."""
        # An error of the core propagates to tornado, which hands it to write_error.
        result = await asyncio.get_running_loop().run_in_executor(None, call)
        self.set_status(status(result) if callable(status) else status)
        self.finish(json.dumps(_jsonable(result)))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error answer, in one shape: ``{"error": ..., "status": N}``.

        The one error map: an error of the core (raised while reading the request or by
        the call off the loop) gets its status from :func:`status_of`; tornado's and
        Jupyter's own (no token, no XSRF cookie, an undecodable argument) keep theirs;
        anything else is a 500 whose details stay in the server's log.
        """
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, MlopsError):
            status_code = status_of(exc)
            self.set_status(status_code)  # no reason phrase: user text never goes in the status line
            message = str(exc)
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.reason or exc.log_message or responses.get(status_code, "error")
        else:
            message = "internal error; the Jupyter server's log has the details"
        if status_code == 405:  # RFC 9110: say which methods the route has
            self.set_header("Allow", ", ".join(self.verbs()))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code}))

    @classmethod
    def verbs(cls) -> list[str]:
        """The HTTP methods this route serves (tornado answers 405 to the others)."""
        base = tornado.web.RequestHandler
        return [v.upper() for v in ("get", "put", "post", "patch", "delete") if getattr(cls, v) is not getattr(base, v)]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A user's mistake is no server error: its 4xx shows in the access log, with no traceback."""
        if not isinstance(value, MlopsError):
            super().log_exception(typ, value, tb)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            client = self.client()
        except MlopsError:
            raise
        except Exception as exc:
            raise StoreUnreachableError(f"cannot open the store {self.project.tracking_uri}: {exc}") from None
        try:
            return fn(client, *args)
        except Exception as exc:
            if isinstance(exc, StoreUnreachableError) or (
                isinstance(exc, MlopsError) and not isinstance(exc, StoreError)
            ):
                raise  # it already says what is wrong
            # A store that went away since the client last checked fails the call with
            # MLflow's retry trace (or a 500): say that the store is down, as a 503 the
            # panel shows as such (and retries).
            health = check_store(self.project, timeout=2.0)
            if health.reachable is False:
                raise health.error() from None
            raise

    def body(self) -> dict[str, Any]:
        """The JSON request body, checked against this route's request schema in the
        OpenAPI file; a :class:`UsageError` naming what is wrong."""
        try:
            data = json.loads(self.request.body or b"{}", parse_constant=_reject_constant)
        except ValueError:  # UnicodeDecodeError included
            raise UsageError("the request body is not JSON: send a JSON object, as openapi.yaml describes") from None
        if not isinstance(data, dict):
            raise UsageError(f"the request body must be a JSON object, not {_short(data)}")
        schema = request_schemas()[(_SPEC_ROUTES[type(self)], self.request.method.lower())]
        problem = body_problem(schema, data)
        if problem:
            raise UsageError(problem)
        return data

    def _who(self) -> str:
        """The Jupyter user making the request, for the audit trail.

        A server behind one shared token (a personal JupyterLab) knows no user: Jupyter
        makes up an anonymous one per browser (a random id, "Anonymous Io"), which would
        name nobody in the trail. The person is then whoever runs the server, named as
        the command line names them (the OS user), so a decision taken in the panel and
        one taken with ``mlops-nb approve`` read alike.
        """
        user = self.current_user
        username = getattr(user, "username", None) or getattr(user, "name", None) or str(user)
        if _ANONYMOUS_ID.fullmatch(username) and str(getattr(user, "name", "")).startswith("Anonymous "):
            return who_am_i()
        return username

    def arg(self, name: str, default: str | None) -> Any:
        """A query argument as sent: tornado would strip it, and " 3" is no version."""
        return self.get_query_argument(name, default, strip=False)

    def int_arg(self, name: str, default: int) -> int:
        """A whole-number query argument in ASCII digits (``int()`` would take '١٢' or
        '1_0'); its range is the core's to check."""
        raw = self.arg(name, str(default))
        if not _WHOLE_NUMBER.fullmatch(raw):
            raise UsageError(f"{name} must be a whole number such as {default}, not {_short(raw)}")
        return int(raw)


@lru_cache(maxsize=1)
def request_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The JSON schema of each (path, verb)'s request body, read once from the OpenAPI file."""
    import yaml

    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    # Each keeps the file's components, so its "#/components/..." references resolve.
    return {
        (path, verb): {**op["requestBody"]["content"]["application/json"]["schema"], "components": spec["components"]}
        for path, item in spec["paths"].items()
        for verb, op in item.items()
        if isinstance(op, dict) and "requestBody" in op
    }


def body_problem(schema: dict[str, Any], data: dict[str, Any]) -> str | None:
    """What is wrong with a request body under ``schema`` (flat objects), in one line
    that names the field and what it takes; ``None`` when nothing is."""
    from jsonschema import Draft4Validator
    from jsonschema.exceptions import best_match

    # Draft 4: the dialect OpenAPI 3.0 schemas follow (3.0 is not an integer there). The
    # fields first, then the rule between them (`oneOf`), so each message names one thing.
    flat = {key: value for key, value in schema.items() if key != "oneOf"}
    error = best_match(Draft4Validator(flat).iter_errors(data))
    if error is None:
        return _rule_problem(schema.get("oneOf", []), data)
    fields = schema.get("properties", {})
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in data)
        example = fields.get(missing, {}).get("example")
        hint = f", e.g. {json.dumps({missing: example})}" if example is not None else ""
        return f"give {missing!r} in the request body{hint}"
    if error.validator == "additionalProperties":
        unknown = sorted(set(data) - set(fields))[0]
        return f"unknown field {_short(unknown)} in the request body: it takes {', '.join(fields)}"
    name = str(error.absolute_path[0]) if error.absolute_path else ""
    described = fields.get(name, {}).get("description")
    if described:
        return f"{name} must be {described}, not {_short(data[name])}"
    return f"{name or 'the request body'}: {error.message}"


def _rule_problem(branches: list[dict[str, Any]], data: dict[str, Any]) -> str | None:
    """What breaks a rule between fields (``oneOf`` branches told apart by an ``enum``,
    e.g. a rejection without a reason): the description of the branch ``data`` picked
    and does not meet; ``None`` when it meets one."""
    from jsonschema import Draft4Validator
    from jsonschema.exceptions import best_match

    for branch in branches:
        errors = list(Draft4Validator(branch).iter_errors(data))
        if not errors:
            return None
        if not any(e.validator == "enum" for e in errors):  # the branch this body picked
            return str(branch.get("description") or best_match(errors).message)
    return None


# -- the operations, as plain functions of a client (the handlers stay thin) ----------


def _models(client: Any, q: str | None, size: int, token: str | None, order: str) -> dict[str, Any]:
    rows, nxt = models_page(client, q, size, token, order)
    return {"models": rows, "next_page_token": nxt}


def _model(client: Any, name: str, size: int, token: str | None) -> dict[str, Any]:
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
    # Aliases live on the model: clients hold them from the models list (or the model
    # endpoint), so a page of versions is one registry query.
    rows, nxt = versions_page(client, name, size, token, with_aliases=False)
    return {"versions": rows, "next_page_token": nxt}


def _version(client: Any, name: str, version: str) -> dict[str, Any]:
    return version_detail(client, name, version)


def _set_alias(client: Any, name: str, alias: str, body: dict[str, Any], who: str) -> dict[str, Any]:
    version = str(body["version"])  # "3" or 3, as the request schema allows
    previous = set_alias(client, name, alias, version, who=who, why=body.get("why", "set in JupyterLab"))
    return {"name": name, "alias": alias, "version": version, "previous_version": previous}


def _remove_alias(client: Any, name: str, alias: str, who: str) -> dict[str, Any]:
    return {
        "name": name,
        "alias": alias,
        "removed_from_version": remove_alias(client, name, alias, who=who, why="removed in JupyterLab"),
    }


def _promote(client: Any, name: str, body: dict[str, Any], who: str, protected: tuple[str, ...]) -> Any:
    # The request schema checked every field's type; the defaults are the file's. A move
    # of a protected alias (the project's, or the model's own setting) waits for approval.
    return promote(
        client,
        name,
        body["metric"],
        body.get("from", "challenger"),
        body.get("to", "champion"),
        float(body.get("min_delta", 0.0)),
        body.get("lower_is_better", False),
        who=who,
        approval=protected,
    )


def _promotion_status(result: Any) -> int:
    """202 when the promotion waits for a person's approval (nothing moved yet), else 200."""
    return 202 if getattr(result, "pending", False) else 200


def _approvals(client: Any) -> dict[str, Any]:
    return {"approvals": [request.to_dict() for request in pending_approvals(client)]}


def _decide(client: Any, name: str, version: str, alias: str, body: dict[str, Any], who: str) -> dict[str, Any]:
    """Approve or reject the pending move of ``alias`` to ``version``, in ``who``'s name."""
    reason = body.get("reason", "").strip()
    answer = {"name": name, "version": version, "alias": alias, "who": who, "reason": reason}
    if body["decision"] == "approve":
        done = approve(client, name, version, alias, who=who, reason=reason)
        moved = {"version": done.version, "previous_version": done.previous_version, "message": done.message}
        return {**answer, **moved, "decision": "approved"}
    # The request schema made sure a rejection has a reason (the core checks it too).
    request = reject(client, name, version, alias, who=who, reason=reason)
    stays = f"v{request.current_version}" if request.current_version else "unset"
    return {
        **answer,
        "version": request.version,
        "decision": "rejected",
        "previous_version": request.current_version,
        "message": f"rejected: {name} v{version} does not take @{alias}, which stays {stays} ({reason})",
    }


def _notebook_html(text: str, name: str, run_id: str | None) -> str:
    """The snapshot as nbconvert renders it for JupyterLab (the 'lab' template).

    Nothing is stripped: the panel shows it in a sandboxed iframe without scripts. The
    template's CDN script tags are inert there, and rendering needs no network.
    """
    try:
        return notebook_html(text)
    except Exception as exc:  # a damaged file: say so rather than fail with a 500
        raise NotFoundError(
            f"the snapshot {name} of run {run_id} is not a notebook that can be shown ({type(exc).__name__}); "
            "open the run's artifacts in MLflow"
        ) from None


def _notebook(client: Any, name: str, version: str, project_root: Path, server_root: str) -> dict[str, Any]:
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
    return compare_versions(client, name, a, b)


def _schedules(store: Any, in_server: dict[str, Any]) -> dict[str, Any]:
    return {"schedules": [s.to_dict() for s in store.list()], "scheduler": in_server}


def _set_paused(store: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return (store.pause(name) if body["paused"] else store.resume(name)).to_dict()


def _run_now(store: Any, config: ProjectConfig, name: str) -> dict[str, Any]:
    return run_now(store, config, name, wait=False).to_dict()


def _jobs(client: Any, store: Any, limit: int) -> dict[str, Any]:
    return {"jobs": recent_job_runs(client, store, limit)}


def _job_notebook(client: Any, store: Any, run_id: str, server_root: str, allow_hidden: bool) -> dict[str, Any]:
    found = job_notebook(client, run_id, server_root, store, allow_hidden=allow_hidden)
    if found.workspace_path is not None:
        return {"source": "workspace", "path": found.workspace_path}
    html = found.html if found.html is not None else _notebook_html(found.notebook_text or "", found.name, run_id)
    return {"source": "snapshot", "name": found.name, "run_id": run_id, "recorded_path": found.output, "html": html}


#: How long the deployments list waits for one server's /health: a server that does not
#: answer in time is listed as not reachable, and the list is not held up by it.
HEALTH_TIMEOUT_S = 2.0
#: The /health numbers a deployment row carries (null while the server does not answer).
_HEALTH_FIELDS = (
    "status",
    "loaded_at",
    "last_swap",
    "swaps",
    "last_error",
    "requests",
    "errors",
    "requests_per_second",
    "p50_ms",
    "p99_ms",
    "log",
)


def _health(server: dict[str, Any]) -> dict[str, Any]:
    """``server``'s announcement merged with its ``/health`` numbers, or with
    ``"reachable": false`` and why, when it does not answer within :data:`HEALTH_TIMEOUT_S`."""
    row: dict[str, Any] = {**server, **dict.fromkeys(_HEALTH_FIELDS), "reachable": False, "error": None}
    if row.get("version") is not None:
        row["version"] = str(row["version"])
    token = os.environ.get("MLOPS_NB_SERVE_TOKEN")  # the server's own variable, as `mlops-nb serve` reads it
    try:
        health = read_health(
            str(server.get("url", "")), token=token if server.get("auth") else None, timeout=HEALTH_TIMEOUT_S
        )
    except Exception as exc:  # a server that does not answer is a row, not a failed list
        row["error"] = one_line(exc, with_type=not isinstance(exc, OSError))
        return row
    row.update({key: health.get(key) for key in _HEALTH_FIELDS}, reachable=True)
    for key in ("alias", "version"):  # what it serves now: the announcement may lag a swap
        if health.get(key) is not None:
            row[key] = str(health[key])
    return row


def _verdict(client: Any, name: str, version: str, base_url: str) -> dict[str, Any] | None:
    """The version's last monitor verdict (null before its first monitor run), with the
    address of its report on this server."""
    last = last_verdict(client, name, version)
    if last is None:
        return None
    run_id = last.get("run_id")
    report = url_path_join(base_url, "mlops-nb", "api", "monitor-reports", run_id) if run_id else None
    return {
        "verdict": last.get("verdict"),
        "reason": last.get("reason") or "",
        "drifted": [str(feature) for feature in last.get("drifted") or []],
        "when": last.get("when"),
        "rows": last.get("rows"),
        "run_id": run_id,
        "report_url": report,
    }


def _add_verdicts(config: ProjectConfig, rows: list[dict[str, Any]], base_url: str) -> None:
    """Give each row serving a registered version that version's monitor health; a store
    that cannot be read leaves the rows (their servers still answer) and says why."""
    served = sorted({(str(row["name"]), str(row["version"])) for row in rows if row.get("name") and row.get("version")})
    db = sqlite_path(config.tracking_uri)
    if db is not None and not db.exists():
        served = []  # no store yet, so no verdict: a list is no reason to create one
    found: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] = {}
    if served:
        try:
            client = get_client(config)
        except Exception as exc:
            found = dict.fromkeys(served, (None, f"cannot read monitor verdicts: {one_line(exc)}"))
        else:
            for name, version in served:
                try:
                    found[(name, version)] = (_verdict(client, name, version, base_url), None)
                except Exception as exc:  # one unreadable version is a row's note, not a failed list
                    problem = f"cannot read the monitor verdict of {name} v{version}: {one_line(exc)}"
                    found[(name, version)] = (None, problem)
    for row in rows:
        key = (str(row.get("name")), str(row.get("version")))
        row["health"], row["health_error"] = found.get(key, (None, None))


def _deployments(config: ProjectConfig, base_url: str = "/") -> dict[str, Any]:
    """The project's announced model servers, each with its live numbers and the last
    monitor verdict of the version it serves; the servers are asked at once, so one
    that does not answer holds up none of the others."""
    servers = list_servers(config)
    if not servers:
        return {"deployments": []}
    with ThreadPoolExecutor(max_workers=min(8, len(servers)), thread_name_prefix="mlops-nb-health") as pool:
        rows = list(pool.map(_health, servers))
    _add_verdicts(config, rows, base_url)
    return {"deployments": rows}


#: What a monitor report may do in the browser: draw its own inline styles and SVG, and
#: nothing else (no script, no request, no form; a unique origin, so it cannot reach
#: this server's API with the user's cookie).
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)
_RUN_ID = re.compile(r"[0-9a-fA-F]{1,64}")


def _monitor_report(client: Any, run_id: str) -> str:
    """The HTML report of the monitor run ``run_id``, read from the run's artifacts by its
    fixed name (nothing else of the store, nothing outside it)."""
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"{_short(run_id)} is not a run id: give a monitor run's id (32 hex digits)")
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if is_missing(exc):
            raise NotFoundError(
                f"no run {run_id} in the project's store: open a report from the Deployments list"
            ) from None
        raise StoreError(f"cannot read run {run_id}: {one_line(exc)}") from None
    kind = run.data.tags.get(KIND)
    if kind != "monitor":
        what = f"a {kind}" if kind else "an untagged"
        raise NotFoundError(f"run {run_id} is not a monitor run ({what} run): only monitor runs have a report")
    try:
        names = {Path(f.path).name for f in client.list_artifacts(run_id) if not f.is_dir}
    except Exception as exc:
        raise StoreError(f"cannot list the artifacts of run {run_id}: {one_line(exc)}") from None
    if REPORT_FILE not in names:
        gone = explain_missing_run_artifacts(client, run_id, f"the report of monitor run {run_id}")
        raise NotFoundError(gone or f"monitor run {run_id} kept no {REPORT_FILE}: run `mlops-nb monitor` again")
    with tempfile.TemporaryDirectory(prefix="mlops-nb-report-") as tmp:
        try:
            local = client.download_artifacts(run_id, REPORT_FILE, tmp)
            return Path(local).read_text(encoding="utf-8", errors="replace")
        except Exception as exc:
            raise StoreError(f"cannot read {REPORT_FILE} of run {run_id}: {one_line(exc)}") from None


def _stop_deployment(config: ProjectConfig, deployment: str) -> dict[str, Any]:
    # Only an id the project announces: stop_server would also take a port number.
    servers = {s["id"]: s for s in list_servers(config)}
    if deployment not in servers:
        running = ", ".join(sorted(servers)) or "none"
        raise NotFoundError(f"no model server of this project has the id {_short(deployment)}; running: {running}")
    return stop_server(config, deployment)


class ModelsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.respond(
            _models,
            self.arg("q", None),
            self.int_arg("page_size", 50),
            self.arg("page_token", None),
            self.arg("order", "name"),
        )


class ModelHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(_model, name, self.int_arg("page_size", 20), self.arg("page_token", None))


class VersionsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.respond(_versions, name, self.int_arg("page_size", 20), self.arg("page_token", None))


class VersionHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str, version: str) -> None:
        await self.respond(_version, name, version)


class NotebookHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str, version: str) -> None:
        root = self.settings["mlops_nb_state"]["root"]
        # The project is read off the loop, with the client: a bad pyproject.toml is a 4xx.
        await self.respond(lambda client: _notebook(client, name, version, self.project.project_root, root))


class AliasHandler(BaseHandler):
    @tornado.web.authenticated
    async def put(self, name: str, alias: str) -> None:
        await self.respond(_set_alias, name, alias, self.body(), self._who())

    @tornado.web.authenticated
    async def delete(self, name: str, alias: str) -> None:
        await self.respond(_remove_alias, name, alias, self._who())


class PromotionHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        body, who = self.body(), self._who()
        # The project is read off the loop, with the client: a bad pyproject.toml is a 4xx.
        call = partial(self._call, lambda client: _promote(client, name, body, who, self.project.approval_aliases))
        await self._answer(call, _promotion_status)


class ApprovalsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.respond(_approvals)


class ApprovalHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, name: str, version: str, alias: str) -> None:
        await self.respond(_decide, name, version, alias, self.body(), self._who())


class CompareHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        a = self.arg("a", "")
        b = self.arg("b", "")
        await self.respond(_compare, name, a, b)


class SchedulesHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        in_server = self.settings["mlops_nb_state"]["scheduler"]
        await self.respond_schedules(_schedules, dict(in_server))


class ScheduleHandler(BaseHandler):
    @tornado.web.authenticated
    async def patch(self, schedule: str) -> None:
        await self.respond_schedules(_set_paused, schedule, self.body())


class ScheduleRunsHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, schedule: str) -> None:
        # The job runs in a thread of this server; the record comes back at once.
        await self.respond_schedules(lambda store: _run_now(store, self.project, schedule), status=202)


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


class DeploymentsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        # Announcements, /health reads and monitor verdicts, off the loop; a store that
        # cannot be read hides only the verdicts.
        await self._answer(lambda: _deployments(self.project, self.base_url), 200)


class DeploymentHandler(BaseHandler):
    @tornado.web.authenticated
    async def delete(self, deployment: str) -> None:
        await self._answer(lambda: _stop_deployment(self.project, deployment), 200)


class MonitorReportHandler(BaseHandler):
    """A monitor run's self-contained HTML report, as a page of its own (the panel opens
    it in a new tab) under a policy that lets it draw and nothing else."""

    @property
    def content_security_policy(self) -> str:
        return REPORT_CSP

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        html = await asyncio.get_running_loop().run_in_executor(None, self._call, _monitor_report, run_id)
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.finish(html, set_content_type="text/html; charset=UTF-8")


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
    (r"/mlops-nb/api/approvals", ApprovalsHandler),
    (rf"/mlops-nb/api/approvals/{_NAME}/(?P<version>[^/]+)/(?P<alias>[^/]+)", ApprovalHandler),
    (r"/mlops-nb/api/schedules", SchedulesHandler),
    (rf"/mlops-nb/api/schedules/{_SCHEDULE}", ScheduleHandler),
    (rf"/mlops-nb/api/schedules/{_SCHEDULE}/runs", ScheduleRunsHandler),
    (r"/mlops-nb/api/jobs", JobsHandler),
    (r"/mlops-nb/api/jobs/(?P<run_id>[^/]+)/notebook", JobNotebookHandler),
    (r"/mlops-nb/api/deployments", DeploymentsHandler),
    (r"/mlops-nb/api/deployments/(?P<deployment>[^/]+)", DeploymentHandler),
    (r"/mlops-nb/api/monitor-reports/(?P<run_id>[^/]+)", MonitorReportHandler),
]
#: Each handler's path in the OpenAPI file ("/mlops-nb/api/models/{name}").
_SPEC_ROUTES = {handler: re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern) for pattern, handler in HANDLERS}
