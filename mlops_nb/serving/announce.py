"""Where a project's model servers say they run, and starting and stopping them in the
background.

A running server writes ``<project root>/.mlops/servers/<id>.json`` (``id`` is
``<hostname>-<port>``), rewrites it on each swap and removes it when it exits cleanly,
SIGTERM included. The panel, the magic and ``mlops-nb servers`` read these files
(:func:`list_servers`); a file whose process is gone on this machine is removed when it
is read. :func:`start_server` runs ``mlops-nb serve`` in a session of its own, so a kernel
that started it can restart without killing it or losing track of it (the announcement
is how it is found again).

This module imports nothing from MLflow or the web stack: listing servers stays cheap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlops_nb.config import STORE_DIRNAME, ProjectConfig
from mlops_nb.exceptions import MlopsError, NotFoundError

__all__ = [
    "LOG_ENV",
    "SERVERS_DIRNAME",
    "announcement_path",
    "list_servers",
    "read_health",
    "remove_announcement",
    "server_id",
    "servers_dir",
    "start_server",
    "stop_server",
    "write_announcement",
]

#: The folder, under the project's ``.mlops``, holding the announcements and the logs of
#: servers started in the background.
SERVERS_DIRNAME = "servers"
#: Set by :func:`start_server` for the server it starts: the file its output goes to,
#: named in its announcement.
LOG_ENV = "MLOPS_NB_SERVER_LOG"
#: Seconds :func:`stop_server` waits for a server to finish its requests and exit.
STOP_WAIT = 20.0


def servers_dir(config: ProjectConfig) -> Path:
    """The project's folder of server announcements."""
    return config.project_root / STORE_DIRNAME / SERVERS_DIRNAME


def server_id(port: int, hostname: str | None = None) -> str:
    """A server's id: ``<hostname>-<port>`` (one server a port on a machine)."""
    return f"{hostname or socket.gethostname()}-{port}"


def announcement_path(config: ProjectConfig, sid: str) -> Path:
    """The announcement file of server ``sid``."""
    return servers_dir(config) / f"{sid}.json"


def write_announcement(config: ProjectConfig, announcement: Mapping[str, Any]) -> Path:
    """Write (or rewrite) ``announcement`` atomically: a reader never sees half of it."""
    path = announcement_path(config, str(announcement["id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(dict(announcement), indent=1))
    os.replace(tmp, path)
    return path


def remove_announcement(config: ProjectConfig, sid: str, pid: int | None = None) -> None:
    """Remove server ``sid``'s announcement (only if it is still ``pid``'s, when given:
    a new server on the same port may have written it meanwhile)."""
    path = announcement_path(config, sid)
    if pid is not None and _read(path).get("pid") not in (pid, None):
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    try:  # a zombie (exited, not yet reaped) is gone; a reused pid runs something else
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc here: trust the pid
    return status != "Z" and b"mlops" in command


def _answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def list_servers(config: ProjectConfig) -> list[dict[str, Any]]:
    """The project's servers, oldest first: each announcement plus ``alive``.

    A server announced from this machine whose process is gone is removed and not
    listed; one announced from another machine is listed with ``alive`` from a quick
    ``/ping`` (a second at most).
    """
    folder = servers_dir(config)
    here = socket.gethostname()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = _read(path)
        if not data.get("id"):
            continue
        if data.get("hostname") == here:
            if not _pid_alive(data.get("pid")):
                remove_announcement(config, str(data["id"]), data.get("pid"))
                continue
            data["alive"] = True
        else:
            data["alive"] = _answers(str(data.get("url", "")))
        found.append(data)
    return sorted(found, key=lambda d: str(d.get("started", "")))


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1].strip() if lines else "(no output)"


def _ready(host: str, port: int) -> bool:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(
    config: ProjectConfig,
    model: str,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    extra_args: Iterable[str] = (),
    wait: float = 60.0,
) -> dict[str, Any]:
    """Start ``mlops-nb serve MODEL`` for the project in the background and wait until it
    is ready; return its announcement.

    The server runs in a session of its own (a kernel restart does not stop it), its
    output going to ``.mlops/servers/<id>.log``. ``port`` None takes a free one;
    ``extra_args`` are more ``serve`` options (``--token``, ``--poll``...). When it exits
    early or is not ready within ``wait`` seconds it is stopped and :class:`MlopsError`
    says why with the last line of its log.
    """
    if not model.startswith(("models:/", "runs:/")) and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())  # a folder, relative to the caller, not the server
    port = port if port is not None else _free_port(host)
    sid = server_id(port)
    folder = servers_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{sid}.log"
    cmd = [sys.executable, "-m", "mlops_nb.cli", "serve", model, "--host", host, "--port", str(port)]
    cmd += [*extra_args, "--project", str(config.project_root)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(config.project_root),
            env={**os.environ, LOG_ENV: str(log)},
        )
    # Reap it when it exits, so it never lingers as a zombie of this (long-lived) process.
    threading.Thread(target=proc.wait, name=f"mlops-nb-server-{port}", daemon=True).start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MlopsError(f"the server for {model} exited (code {proc.returncode}): {_last_line(log)}")
        announced = _read(announcement_path(config, sid))
        if announced.get("pid") == proc.pid and _ready(host, port):
            announced["alive"] = True
            return announced
        time.sleep(0.2)
    _terminate(proc.pid)
    raise MlopsError(
        f"the server for {model} was not ready within {wait:g} s and was stopped; its log ({log}) ends: "
        f"{_last_line(log)}"
    )


def _terminate(pid: int, wait: float = STOP_WAIT) -> bool:
    """SIGTERM ``pid``, then SIGKILL if it is still there after ``wait`` seconds; whether
    it ended on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def stop_server(config: ProjectConfig, id_or_port: str | int) -> dict[str, Any]:
    """Stop a server of the project on this machine (by id, or by port), as Ctrl-C would:
    requests in flight finish, the request log is written, the announcement removed.
    Returns its announcement; :class:`NotFoundError` when no such server runs here."""
    wanted = str(id_or_port).strip()
    servers = list_servers(config)
    here = socket.gethostname()
    match = next((s for s in servers if s.get("id") == wanted), None)
    if match is None and wanted.isdigit():
        match = next((s for s in servers if str(s.get("port")) == wanted and s.get("hostname") == here), None)
    if match is None:
        known = ", ".join(str(s.get("id")) for s in servers) or "none"
        raise NotFoundError(f"no server {wanted!r} runs for this project; its servers: {known}")
    if match.get("hostname") != here:
        raise MlopsError(f"server {match['id']} runs on {match.get('hostname')}: stop it there")
    pid = int(match["pid"])
    if not _terminate(pid):
        remove_announcement(config, str(match["id"]), pid)  # killed: it could not remove it
    match["alive"] = False
    return match


def read_health(url: str, *, token: str | None = None, timeout: float = 2.0) -> dict[str, Any]:
    """The server's ``/health`` JSON; raises ``OSError`` (no answer, or an HTTP error)
    or ``ValueError`` (an answer that is not a JSON object)."""
    request = urllib.request.Request(url.rstrip("/") + "/health")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.loads(response.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{url}/health answered {str(data)[:60]}, not a JSON object")
    return data
