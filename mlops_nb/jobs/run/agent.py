"""The project's job agent: a long-lived process that runs ``mlops-nb run`` jobs.

A ``mlops-nb run`` process that starts from nothing pays for importing MLflow and
opening its store (about 2 s of CPU) and for starting a kernel, before the notebook's
first cell runs. The agent pays both once: it keeps MLflow loaded, the store open and a
kernel started ahead of need (a :class:`~mlops_nb.jobs.run.pool.KernelPool` per kernel,
folder and environment), and ``mlops-nb run`` hands it the job over a Unix socket.

What a job sees does not change:

- the command checks the job into a :class:`~mlops_nb.jobs.run.spec.JobSpec` and sends
  it; the agent trusts it and runs it through
  :func:`~mlops_nb.jobs.run.execution.execute_job`, the primitive every executor ends in:
  same run, same artifacts, same result (:class:`AgentExecutor` is the executor form);
- its kernel gets the environment of the command that sent it (the pool key includes
  that environment), starts in the notebook's folder and serves that one job;
- the project config (store, experiment) is resolved by the command, in its own
  folder and environment, and sent with the job;
- Ctrl-C or SIGTERM on the command stops the job (its run ends KILLED), as does the
  command going away.

``mlops-nb run`` uses a running agent, and when there is none runs the job itself and
then starts one in the background for the next job (not under CI, where machines are
thrown away: set ``CI``). ``MLOPS_NB_AGENT=off`` never uses or starts one. An agent
serves one project, listens on a socket only its user can open (in a folder of mode
0700), exits after ``MLOPS_NB_AGENT_IDLE`` seconds without a job (default 900), and
steps aside when the installed mlops-nb changes. ``mlops-nb agent start|stop|status``
manage it by hand.

This module's client half imports nothing heavy: it runs in the ``mlops-nb`` command
before anything is known to need MLflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import AgentLostError, MlopsError, UsageError
from mlops_nb.jobs.run.spec import Executor, JobResult, JobSpec, job_spec
from mlops_nb.store import get_client
from mlops_nb.tags import ERROR
from mlops_nb.version import __version__

# The client half runs in the `mlops-nb` command before anything is known to need
# MLflow, jupyter_client or papermill: the agent's half imports them (execution, pool)
# where used, so a command handing its job to the agent starts fast (a measured figure).

__all__ = [
    "AgentExecutor",
    "AgentInfo",
    "agent_mode",
    "agent_status",
    "run_via_agent",
    "serve",
    "spawn_agent",
    "start_agent",
    "stop_agent",
]

MODE_ENV = "MLOPS_NB_AGENT"
IDLE_ENV = "MLOPS_NB_AGENT_IDLE"
DEFAULT_IDLE_S = 900.0
# Variables that differ between two shells of one user without changing what a
# kernel does; they do not split the kernel pools.
_VOLATILE_ENV = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES"})
_MAX_POOLS = 3


@dataclass
class AgentInfo:
    """A running agent, as it answers ``ping``."""

    pid: int
    project_root: str
    version: str
    started: float
    jobs_running: int
    jobs_done: int
    idle_timeout_s: float
    socket: str


# ------------------------------------------------------------------ shared


def agent_mode(environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``auto`` (the default) or ``off``, from ``MLOPS_NB_AGENT``."""
    env = os.environ if environ is None else environ
    value = env.get(MODE_ENV, "auto").strip().lower() or "auto"
    if value in {"off", "0", "false", "no"}:
        return "off"
    if value in {"auto", "on", "1", "true", "yes"}:
        return "auto"
    raise UsageError(f"{MODE_ENV}={env.get(MODE_ENV)!r} is not understood: use auto or off")


def _runtime_dir() -> Path:
    """A folder only this user can enter, for agents' sockets, locks and logs."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    if len(base) > 60:  # a Unix socket's path must fit in 108 bytes
        base = tempfile.gettempdir()
    folder = Path(base) / f"mlops-nb-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise MlopsError(f"{folder} is not private to this user (mode {oct(st.st_mode & 0o777)}): remove it")
    return folder


def _files(project_root: str | Path) -> dict[str, Path]:
    key = hashlib.sha256(str(Path(project_root).resolve()).encode()).hexdigest()[:20]
    folder = _runtime_dir()
    return {suffix: folder / f"{key}.{suffix}" for suffix in ("sock", "lock", "log")}


def _build() -> str:
    """What the agent's code is: the version, the interpreter and the package's files
    (an editable install changes without a new version)."""
    package = Path(__file__).resolve().parents[1]
    newest = max((p.stat().st_mtime_ns for p in package.rglob("*.py")), default=0)
    return f"{__version__}|{sys.executable}|{newest}"


def _send(conn: socket.socket, lock: threading.Lock, message: dict[str, Any]) -> None:
    data = (json.dumps(message, default=str) + "\n").encode()
    with lock:
        conn.sendall(data)


def _connect(path: Path, timeout: float | None = 5.0) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (TimeoutError, FileNotFoundError, ConnectionRefusedError, OSError):
        sock.close()
        return None
    return sock


def _request(project_root: str | Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    """One request, one answer; ``None`` when no agent answers."""
    sock = _connect(_files(project_root)["sock"], timeout)
    if sock is None:
        return None
    try:
        sock.sendall((json.dumps({**message, "build": _build()}) + "\n").encode())
        line = sock.makefile("r", encoding="utf-8").readline()
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


# ------------------------------------------------------------------ client


def agent_status(project_root: str | Path) -> AgentInfo | None:
    """The project's running agent, or ``None``."""
    answer = _request(project_root, {"op": "ping"})
    if not answer or answer.get("event") != "pong":
        return None
    return AgentInfo(**answer["agent"])


def spawn_agent(project_root: str | Path) -> None:
    """Start the project's agent in the background (it exits at once if one runs)."""
    log = _files(project_root)["log"]
    with open(log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "mlops_nb.jobs.run.agent", str(Path(project_root).resolve())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=str(project_root),
        )


def start_agent(project_root: str | Path, wait: float = 60.0) -> AgentInfo:
    """Start the project's agent (if none runs) and wait until it answers."""
    info = agent_status(project_root)
    if info is not None:
        return info
    spawn_agent(project_root)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = agent_status(project_root)
        if info is not None:
            return info
        time.sleep(0.1)
    raise MlopsError(f"the job agent did not start within {wait:g} s: see {_files(project_root)['log']}")


def stop_agent(project_root: str | Path, wait: float = 30.0) -> AgentInfo | None:
    """Stop the project's agent (after its running jobs); the agent that was stopped, or ``None``."""
    answer = _request(project_root, {"op": "stop"})
    if not answer or answer.get("event") != "stopping":
        return None
    info = AgentInfo(**answer["agent"])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid_alive(info.pid):
        time.sleep(0.05)
    return info


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of ours that exited but was not reaped yet counts as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def run_via_agent(
    config: ProjectConfig,
    job: dict[str, Any],
    progress: TextIO | None,
    errors: TextIO,
) -> dict[str, Any] | None:
    """Hand ``job`` (:func:`~mlops_nb.jobs.run.spec.job_spec`'s arguments, JSON) to the
    project's agent, checked here into a :class:`JobSpec` once an agent answers.

    Returns the job's result (``JobResult.to_dict()``), or ``None`` when no agent can
    take it (none runs, or it runs other code): the caller then runs the job itself.
    Ctrl-C (``KeyboardInterrupt``) stops the job; the result then says KILLED.

    Raises
    ------
    UsageError
        What the job's checks raised (nothing was run).
    MlopsError
        What the agent raised before the job's run existed.
    AgentLostError
        The agent went away during the job; the job's run is marked FAILED.
    """
    sock = _connect(_files(config.project_root)["sock"])
    if sock is None:
        return None
    try:
        args = dict(job)
        spec = job_spec(args.pop("notebook"), args.pop("params", None), config=config, **args)
    except BaseException:
        sock.close()
        raise
    return _exchange(sock, spec, progress, errors)


class AgentExecutor(Executor):
    """Jobs run by the project's agent (see the module's docstring), one more executor
    speaking :class:`JobSpec`: the spec is checked here and trusted there.

    A job no agent can take (none runs, or it runs other code) ends with an
    :class:`~mlops_nb.exceptions.MlopsError` in its future: start one with
    ``mlops-nb agent start``.
    """

    name = "agent"

    def __init__(self, *, progress: TextIO | None = None, errors: TextIO | None = None) -> None:
        self._progress, self._errors = progress, errors or sys.stderr

    def submit(
        self, spec: JobSpec, *, stop: threading.Event | None = None, on_start: Callable[[str], None] | None = None
    ) -> Future[JobResult]:
        future: Future[JobResult] = Future()

        def work() -> None:
            try:
                sock = _connect(_files(spec.config.project_root)["sock"])
                done = None if sock is None else _exchange(sock, spec, self._progress, self._errors, stop, on_start)
                if done is None:
                    raise MlopsError(
                        f"no job agent serves {spec.config.project_root}: start one with `mlops-nb agent start`"
                    )
                future.set_result(JobResult(**{f.name: done[f.name] for f in fields(JobResult)}))
            except BaseException as exc:  # reported through the future
                future.set_exception(exc)

        threading.Thread(target=work, name="mlops-nb-agent-job", daemon=True).start()
        return future


def _exchange(
    sock: socket.socket,
    spec: JobSpec,
    progress: TextIO | None,
    errors: TextIO,
    stop: threading.Event | None = None,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Send ``spec`` on a connected socket and follow the job to its result (the
    result's dict; ``None`` when the agent did not take the job)."""
    sock.settimeout(None)
    lock = threading.Lock()
    request = {
        "op": "run",
        "build": _build(),
        "spec": spec.to_dict(),
        "env": dict(os.environ),
        "progress": progress is not None,
        "columns": _columns(progress),
    }
    reader = sock.makefile("r", encoding="utf-8")
    try:
        try:
            _send(sock, lock, request)
        except OSError:
            return None
        if stop is not None:
            threading.Thread(target=_forward_stop, args=(sock, lock, stop), daemon=True).start()
        return _follow(sock, lock, reader, spec.config, progress, errors, on_start)
    finally:
        reader.close()
        sock.close()


def _forward_stop(sock: socket.socket, lock: threading.Lock, stop: threading.Event) -> None:
    """Ask the agent to stop the job once ``stop`` is set (until the socket closes)."""
    while not stop.wait(0.2):
        if sock.fileno() == -1:
            return
    with contextlib.suppress(OSError, ValueError):
        _send(sock, lock, {"op": "stop"})


def _follow(
    sock: socket.socket,
    lock: threading.Lock,
    reader: Any,
    config: ProjectConfig,
    progress: TextIO | None,
    errors: TextIO,
    on_start: Callable[[str], None] | None,
) -> dict[str, Any] | None:
    """Read the agent's events until the job's result; Ctrl-C asks the agent to stop."""
    run_id: str | None = None
    stopping = False
    while True:
        try:
            line = reader.readline()
        except KeyboardInterrupt:
            if stopping:
                raise
            stopping = True
            with contextlib.suppress(OSError):
                _send(sock, lock, {"op": "stop"})
            continue
        if not line:
            if run_id is None:
                return None  # it went away before taking the job: run it here
            _mark_lost(config, run_id)
            raise AgentLostError(f"the job agent stopped during the job; its run {run_id} is marked FAILED")
        message = json.loads(line)
        event = message.get("event")
        if event == "mismatch":
            return None
        if event == "started":
            run_id = message["run_id"]
            if on_start is not None:
                on_start(message["run_id"])
        elif event == "progress" and progress is not None:
            progress.write(message["text"])
            progress.flush()
        elif event == "report":
            print(f"mlops-nb: {message['text']}", file=errors, flush=True)
        elif event == "error":
            raise (UsageError if message.get("kind") == "usage" else MlopsError)(message["message"])
        elif event == "result":
            return dict(message["result"])


def _columns(stream: TextIO | None) -> int | None:
    if stream is None:
        return None
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None


def _mark_lost(config: ProjectConfig, run_id: str) -> None:
    """End a run its agent left RUNNING (the rare path: it imports MLflow)."""
    with contextlib.suppress(Exception):
        client = get_client(config)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, ERROR, "the job agent stopped during the job")
            client.set_terminated(run_id, "FAILED")


# ------------------------------------------------------------------ agent


class _Forward:
    """A file-like object for papermill's progress bar that sends what it writes."""

    encoding = "utf-8"  # tqdm draws its bar with block characters, as in a terminal

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send

    def write(self, text: str) -> int:
        if text:
            with contextlib.suppress(OSError):
                self._send({"event": "progress", "text": text})
        return len(text)

    def flush(self) -> None:
        pass


class _Agent:
    def __init__(self, project_root: Path, idle_timeout: float) -> None:
        self.root = project_root
        self.files = _files(project_root)
        self.idle_timeout = idle_timeout
        self.build = _build()
        self.started = time.time()
        self.jobs_running = 0
        self.jobs_done = 0
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str, str], Any] = {}
        self._listener: socket.socket | None = None

    # -- lifecycle

    def info(self) -> dict[str, Any]:
        return asdict(
            AgentInfo(
                pid=os.getpid(),
                project_root=str(self.root),
                version=__version__,
                started=self.started,
                jobs_running=self.jobs_running,
                jobs_done=self.jobs_done,
                idle_timeout_s=self.idle_timeout,
                socket=str(self.files["sock"]),
            )
        )

    def warm(self) -> None:
        """Import what every job needs, and open the project's store."""
        import papermill  # noqa: F401

        from mlops_nb.snapshots import html_exporter
        from mlops_nb.tracking import Tracker  # noqa: F401

        with contextlib.suppress(Exception):
            get_client(resolve_config(self.root))
        html_exporter()

    def serve(self) -> None:
        sock_path = self.files["sock"]
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(sock_path))
        finally:
            os.umask(old)
        listener.listen(16)
        listener.settimeout(1.0)
        self._listener = listener
        print(f"mlops-nb agent {os.getpid()} serving {self.root} on {sock_path}", flush=True)
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    with self._lock:
                        idle = self.jobs_running == 0 and time.monotonic() - self.last_activity > self.idle_timeout
                    if idle:
                        print(f"idle for {self.idle_timeout:g} s: stopping", flush=True)
                        break
                    continue
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            self._wait_for_jobs()
            for pool in list(self._pools.values()):
                with contextlib.suppress(Exception):
                    pool.close()

    def _wait_for_jobs(self) -> None:
        while True:
            with self._lock:
                if self.jobs_running == 0:
                    return
            time.sleep(0.1)

    # -- connections

    def _handle(self, conn: socket.socket) -> None:
        lock = threading.Lock()
        try:
            reader = conn.makefile("r", encoding="utf-8")
            line = reader.readline()
            if not line:
                return
            request = json.loads(line)
            with self._lock:
                self.last_activity = time.monotonic()
            op = request.get("op")
            if request.get("build") != self.build:
                # Other code is installed now: answer no more jobs, exit after the running ones.
                _send(conn, lock, {"event": "mismatch", "agent": self.info()})
                self.stopping.set()
                return
            if op == "ping":
                _send(conn, lock, {"event": "pong", "agent": self.info()})
            elif op == "stop":
                _send(conn, lock, {"event": "stopping", "agent": self.info()})
                self.stopping.set()
            elif op == "run":
                if self.stopping.is_set():
                    _send(conn, lock, {"event": "mismatch", "agent": self.info()})
                    return
                self._run(conn, lock, reader, request)
            else:
                _send(conn, lock, {"event": "error", "kind": "usage", "message": f"unknown request {op!r}"})
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _run(self, conn: socket.socket, lock: threading.Lock, reader: Any, request: dict[str, Any]) -> None:
        from mlops_nb.jobs.run.execution import execute_job  # the agent's half: see the imports

        with self._lock:
            self.jobs_running += 1
        try:
            stop = threading.Event()

            def watch() -> None:
                # A "stop" line, or the command going away, stops the job.
                with contextlib.suppress(OSError, ValueError):
                    for line in reader:
                        if json.loads(line).get("op") == "stop":
                            break
                stop.set()

            threading.Thread(target=watch, daemon=True).start()

            def send(message: dict[str, Any]) -> None:
                with contextlib.suppress(OSError):
                    _send(conn, lock, message)

            env = {k: v for k, v in request["env"].items() if isinstance(v, str)}
            try:
                # Checked by the command that sent it (job_spec): trusted here.
                spec = JobSpec.from_dict(request["spec"])
                pool = self._pool(spec.kernel or "python3", spec.cwd or str(Path(spec.notebook).parent), env)
                progress: bool | dict[str, Any] = False
                if request.get("progress"):
                    progress = {"file": _Forward(send), "dynamic_ncols": False}
                    if request.get("columns"):
                        progress["ncols"] = int(request["columns"])
                result = execute_job(
                    spec,
                    pool=pool,
                    progress=progress,
                    stop=stop,
                    report=lambda text: send({"event": "report", "text": text}),
                    on_start=lambda run_id: send({"event": "started", "run_id": run_id}),
                )
            except UsageError as exc:
                send({"event": "error", "kind": "usage", "message": str(exc)})
                return
            except MlopsError as exc:
                send({"event": "error", "kind": "error", "message": str(exc)})
                return
            except Exception as exc:  # never take the agent down with one job
                import traceback

                traceback.print_exc()
                send({"event": "error", "kind": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            send({"event": "result", "result": result.to_dict()})
        finally:
            with self._lock:
                self.jobs_running -= 1
                self.jobs_done += 1
                self.last_activity = time.monotonic()

    def _pool(self, kernel: str, cwd: str, env: dict[str, str]) -> Any:
        """A pool of one kernel started ahead for this kernel, folder and environment."""
        from mlops_nb.jobs.run.pool import KernelPool  # the agent's half: see the imports

        stable = {k: v for k, v in env.items() if k not in _VOLATILE_ENV}
        key = (kernel, os.path.abspath(cwd), hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest())
        evicted = []
        with self._lock:
            pool = self._pools.pop(key, None)
            if pool is None or pool.closed:
                pool = KernelPool(kernel, size=1, cwd=key[1], env=stable, inherit_environ=False)
            self._pools[key] = pool  # most recently used last
            while len(self._pools) > _MAX_POOLS:
                evicted.append(self._pools.pop(next(iter(self._pools))))
        for old in evicted:
            threading.Thread(target=old.close, daemon=True).start()
        return pool


def serve(project_root: str | Path, idle_timeout: float | None = None) -> int:
    """Run the project's agent in this process until it is stopped or idle; 0 when
    another agent already serves the project."""
    import fcntl

    root = Path(project_root).resolve()
    if idle_timeout is None:
        idle_timeout = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    files = _files(root)
    lock = open(files["lock"], "a")  # noqa: SIM115 - held for the process's life
    deadline = time.monotonic() + 60
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # An agent that answers serves the project; one that does not is on its
            # way out (stopped, or other code installed): take over when it has gone.
            if agent_status(root) is not None or time.monotonic() > deadline:
                return 0
            time.sleep(0.2)
    agent = _Agent(root, idle_timeout)

    def on_signal(signum: int, frame: object) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.warm()
    agent.serve()
    return 0


if __name__ == "__main__":  # pragma: no cover - started by spawn_agent
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # see cli._skip_slow_optional_imports
    sys.exit(serve(sys.argv[1]))
