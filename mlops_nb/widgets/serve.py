"""The status of a model server started from a cell (``%mlops serve``): where it
answers, the model and the version it serves, its traffic and latency, its last swap,
and a curl and a Python example to call it.

The server is a process of its own (:mod:`mlops_nb.serving.announce` starts it in its
own session), so the widget only watches: once shown, a daemon thread of the kernel
reads the server's ``/health`` every ``refresh_s`` seconds (a short timeout each time)
and redraws. It never raises into the kernel and never holds a cell: a read that fails
is drawn, and when the server is gone (no answer, and the project no longer announces
it) the widget says so in one line and stops reading. Only the :data:`POLLED` most
recently shown widgets read (a re-run cell leaves its old widget behind), and a closed
one stops.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

import ipywidgets as W

from mlops_nb.config import ProjectConfig
from mlops_nb.exceptions import one_line
from mlops_nb.registry import get_version, model_files, parse_model_uri
from mlops_nb.serving.announce import list_servers, read_health
from mlops_nb.widgets import TABLE_CSS, FallbackMixin

__all__ = [
    "POLLED",
    "TOKEN_ENV",
    "ServeStatus",
    "curl_example",
    "python_example",
    "serving_example",
]

#: How many of the most recently shown status widgets keep reading their server.
POLLED = 4
_polled: deque[ServeStatus] = deque(maxlen=POLLED)

#: Where a server's token is read from, as ``mlops-nb serve`` itself reads it.
TOKEN_ENV = "MLOPS_NB_SERVE_TOKEN"

#: The body the examples send when the version has no input example to build one from.
PLACEHOLDER_BODY: dict[str, Any] = {"dataframe_split": {"columns": ["x1", "x2"], "data": [[0.0, 1.0]]}}

esc = html.escape

SERVE_CSS = """<style>
.mlops-nb-serve { color: var(--jp-ui-font-color1, inherit); font-size: var(--jp-ui-font-size1, 13px); }
.mlops-nb-serve p { margin: 4px 0; }
.mlops-nb-serve .mlops-nb-muted { color: var(--jp-ui-font-color2, gray); }
.mlops-nb-serve .mlops-nb-state { display: inline-block; padding: 0 6px; border-radius: 8px; line-height: 16px;
  font-size: var(--jp-ui-font-size0, 11px); border: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color0, inherit); }
.mlops-nb-serve .mlops-nb-state-ok { border-color: var(--jp-success-color1, green); }
.mlops-nb-serve .mlops-nb-state-bad { border-color: var(--jp-error-color1, #c00); }
.mlops-nb-serve .mlops-nb-error { color: var(--jp-error-color1, #c00); }
[data-jp-theme-light='false'] .mlops-nb-serve .mlops-nb-error { color: var(--jp-error-color2, #f88); }
.mlops-nb-serve pre { margin: 2px 0 6px; padding: 6px; white-space: pre-wrap; word-break: break-all;
  background: var(--jp-layout-color2, #f4f4f4); color: var(--jp-content-font-color1, inherit);
  font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 12px);
  user-select: all; cursor: text; }
.mlops-nb-serve a { color: var(--jp-content-link-color, #1976d2); }
</style>"""


# -- reading a server and writing the examples (no widget needed) --------------------


def _first_rows(body: dict[str, Any], rows: int) -> dict[str, Any]:
    """``body`` with at most ``rows`` rows of data: an example, not the whole input example."""
    if "dataframe_split" in body and isinstance(body["dataframe_split"].get("data"), list):
        return {**body, "dataframe_split": {**body["dataframe_split"], "data": body["dataframe_split"]["data"][:rows]}}
    for key in ("dataframe_records", "instances", "inputs"):
        if isinstance(body.get(key), list):
            return {**body, key: body[key][:rows]}
    return body


def serving_example(client: Any, model: str, version: str | None, rows: int = 1) -> dict[str, Any] | None:
    """A request body for ``POST /invocations`` built from the version's input example,
    as MLflow writes it for serving (``dataframe_split`` with the example's columns for a
    DataFrame, ``inputs`` for an array), cut to ``rows`` rows; else ``dataframe_split``
    with the signature's column names (zeros as values). ``None`` when the model is not a
    registered version or has neither."""
    from mlflow.models import Model  # MLflow is imported where it is used (see mlops_nb.magics.warmup)

    if not model.startswith("models:/") or not version:
        return None
    try:
        name, _alias, _version = parse_model_uri(model)
        path = model_files(client, get_version(client, name, version))
        mlmodel = Model.load(path)
        text = mlmodel.get_serving_input(path)
        if text:
            body = json.loads(text)
            return _first_rows(body, rows) if isinstance(body, dict) else None
        inputs = mlmodel.signature.inputs if mlmodel.signature is not None else None
        columns = inputs.input_names() if inputs is not None and inputs.has_input_names() else []
        return {"dataframe_split": {"columns": columns, "data": [[0] * len(columns)]}} if columns else None
    except Exception:  # no example is no reason to fail the widget: the placeholder shows instead
        return None


def curl_example(url: str, body: dict[str, Any], *, auth: bool = False) -> str:
    """A shell command that posts ``body`` to the server's ``/invocations``."""
    header = f' \\\n  -H "Authorization: Bearer ${TOKEN_ENV}"' if auth else ""
    data = json.dumps(body).replace("'", "'\\''")
    return f"curl -s {url.rstrip('/')}/invocations{header} \\\n  -H 'Content-Type: application/json' \\\n  -d '{data}'"


def python_example(url: str, body: dict[str, Any], *, auth: bool = False) -> str:
    """Python (``requests``) that posts ``body`` and prints the version that answered."""
    lines = ["import requests", ""]
    if auth:
        lines[:1] = ["import os", "", "import requests"]
    lines.append(f"body = {json.dumps(body)}")
    headers = f', headers={{"Authorization": "Bearer " + os.environ["{TOKEN_ENV}"]}}' if auth else ""
    lines.append(f'response = requests.post("{url.rstrip("/")}/invocations", json=body{headers}, timeout=30)')
    lines.append('print(response.headers.get("X-Model-Version"), response.json())')
    return "\n".join(lines)


# -- the widget ------------------------------------------------------------------------


def _clock(iso: str | None) -> str:
    """An ISO time as the local wall clock (``14:03:07``); the text itself if it is no time."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return str(iso)


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3g} ms"


def _swap_text(swap: Any) -> str:
    if not isinstance(swap, dict):
        return "none since it started"
    load = swap.get("load_seconds")
    took = f" (loaded in {float(load):.2g} s)" if isinstance(load, (int, float)) else ""
    return f"v{swap.get('from')} → v{swap.get('to')} at {_clock(swap.get('at'))}{took}"


class ServeStatus(FallbackMixin, W.VBox):
    """A running model server as a person wants to see it, kept up to date while shown.

    ``server`` is its announcement (:func:`mlops_nb.serving.announce.list_servers`);
    ``config`` the project it belongs to (to tell a stopped server from a slow one);
    ``example`` the request body the examples send (:func:`serving_example`; a
    placeholder when ``None``). ``refresh_s`` is the reading period while shown (0: read
    only on :meth:`refresh`).
    """

    def __init__(
        self,
        server: dict[str, Any],
        config: ProjectConfig,
        *,
        example: dict[str, Any] | None = None,
        refresh_s: float = 3.0,
        timeout: float = 2.0,
    ) -> None:
        self.server = dict(server)
        self.config = config
        self.refresh_s = refresh_s
        self.timeout = timeout
        self.health: dict[str, Any] | None = None
        self.problem: str | None = None
        #: True once the server is known to be gone: the widget stops reading it.
        self.gone = False
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self.example = example or PLACEHOLDER_BODY
        self.status_html = W.HTML(layout=W.Layout(max_width="100%"))
        self.examples_html = W.HTML(self._examples_html(example is None), layout=W.Layout(max_width="100%"))
        super().__init__([self.status_html, self.examples_html], layout=W.Layout(width="100%", max_width="100%"))
        self.add_class("mlops-nb-serve-status")
        self.refresh()

    # -- reading ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.server.get("url", ""))

    @property
    def version(self) -> str | None:
        """The version served, as the server said last (its announcement before that)."""
        version = (self.health or {}).get("version") or self.server.get("version")
        return str(version) if version is not None else None

    def refresh(self) -> bool:
        """Read ``/health`` once and redraw; False when the server is gone (and stays so)."""
        with self._lock:
            if self.gone:
                return False
            try:
                token = os.environ.get(TOKEN_ENV) if self.server.get("auth") else None
                self.health = read_health(self.url, token=token, timeout=self.timeout)
                self.problem = None
            except Exception as exc:  # drawn, never raised: the kernel goes on
                self.problem = one_line(exc, with_type=not isinstance(exc, OSError))
                self.gone = not self._still_announced()
            self._draw()
            return not self.gone

    def _still_announced(self) -> bool:
        """Whether the project still lists the server as running (a slow server is not a stopped one)."""
        try:
            return any(s.get("id") == self.server.get("id") and s.get("alive", True) for s in list_servers(self.config))
        except Exception:
            return True  # cannot tell: keep trying

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        self._start_reading()
        return super()._repr_mimebundle_(**kwargs)

    def _start_reading(self) -> None:
        if self.refresh_s <= 0 or self._poller is not None or self.gone:
            return
        _polled.append(self)  # the oldest of POLLED + 1 drops out, and its thread ends
        self._poller = threading.Thread(target=self._read_periodically, name="mlops-nb-serve-status", daemon=True)
        self._poller.start()

    def _read_periodically(self) -> None:
        while True:
            time.sleep(self.refresh_s)
            if self.comm is None or self not in _polled:  # closed, or superseded
                return
            try:
                if not self.refresh():
                    return
            except Exception:  # a widget thread must never take the kernel's output with it
                return

    # -- drawing ---------------------------------------------------------------

    def status_line(self) -> str:
        """One line: what is served where, and how it is doing."""
        model = self.server.get("model", "?")
        version = f" v{self.version}" if self.version else ""
        if self.gone:
            return (
                f"server {self.server.get('id')} at {self.url} has stopped ({model}{version} is no longer served); "
                f"start it again: %mlops serve {model}"
            )
        if self.problem is not None:
            return f"{model}{version} at {self.url}: not answering ({self.problem}); trying again"
        h = self.health or {}
        return (
            f"{model}{version} at {self.url}: {h.get('status', '?')}, "
            f"{float(h.get('requests_per_second') or 0):.3g} requests/s, p50 {_ms(h.get('p50_ms'))}, "
            f"p99 {_ms(h.get('p99_ms'))}, {h.get('errors', 0)} errors of {h.get('requests', 0)} requests"
        )

    def _draw(self) -> None:
        self.status_html.value = SERVE_CSS + TABLE_CSS + f"<div class='mlops-nb-serve'>{self._status_html()}</div>"
        if self.gone:
            self.examples_html.value = ""

    def _status_html(self) -> str:
        s, h = self.server, self.health or {}
        model = esc(str(s.get("model", "?")))
        version = f" → <b>v{esc(self.version)}</b>" if self.version else ""
        url = esc(self.url)
        if self.gone:
            return f"<p class='mlops-nb-muted'>{esc(self.status_line())}</p>"
        if self.problem is not None:
            state = "<span class='mlops-nb-state mlops-nb-state-bad'>not answering</span>"
        else:
            status = str(h.get("status", "?"))
            kind = "ok" if status == "ok" else "bad"
            state = f"<span class='mlops-nb-state mlops-nb-state-{kind}'>{esc('serving' if status == 'ok' else status)}</span>"
        head = f"<p><b>{model}</b>{version} {state} at <a href='{url}/health' target='_blank'>{url}</a></p>"
        if self.problem is not None:
            return head + f"<p class='mlops-nb-error'>{esc(self.problem)}; trying again every {self.refresh_s:g} s</p>"
        cells = [
            f"{float(h.get('requests_per_second') or 0):.3g}",
            _ms(h.get("p50_ms")),
            _ms(h.get("p99_ms")),
            str(h.get("requests", 0)),
            str(h.get("errors", 0)),
            _swap_text(h.get("last_swap")),
        ]
        table = (
            "<table class='mlops-nb-table'><thead><tr><th>requests/s</th><th>p50</th><th>p99</th>"
            "<th>requests</th><th>errors</th><th>last swap</th></tr></thead><tbody><tr>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "</tr></tbody></table>"
        )
        failed = h.get("last_error")
        error = (
            f"<p class='mlops-nb-error'>v{esc(str(failed.get('version')))} did not load at {_clock(failed.get('at'))}: "
            f"{esc(str(failed.get('error')))}; still serving v{esc(str(self.version))}</p>"
            if isinstance(failed, dict)
            else ""
        )
        foot = (
            f"<p class='mlops-nb-muted'>rates and latency over the last 60 s · server {esc(str(s.get('id')))}, "
            f"pid {esc(str(s.get('pid')))}, started {_clock(s.get('started'))} · read {datetime.now():%H:%M:%S} · "
            f"stop it: <code>%mlops serve --stop {esc(str(s.get('id')))}</code></p>"
        )
        return head + table + error + foot

    def _examples_html(self, placeholder: bool) -> str:
        auth = bool(self.server.get("auth"))
        note = (
            " <span class='mlops-nb-muted'>(placeholder columns: the version has no input example)</span>"
            if placeholder
            else ""
        )
        token = f" <span class='mlops-nb-muted'>(set {TOKEN_ENV} to the server's token)</span>" if auth else ""
        return (
            "<div class='mlops-nb-serve'>"
            f"<p class='mlops-nb-muted'>Call it (click a block to select it, then copy){note}{token}:</p>"
            f"<pre title='curl'>{esc(curl_example(self.url, self.example, auth=auth))}</pre>"
            f"<pre title='Python'>{esc(python_example(self.url, self.example, auth=auth))}</pre></div>"
        )

    def fallback_text(self) -> str:
        lines = ["mlops-nb server: " + self.status_line()]
        if not self.gone:
            lines += ["", curl_example(self.url, self.example, auth=bool(self.server.get("auth")))]
        return "\n".join(lines)

    def fallback_html(self) -> str:
        return self.status_html.value + self.examples_html.value
