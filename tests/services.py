"""Real services for tests and benchmarks, on 127.0.0.1 only, started and stopped here.

- ``postgres(workdir)``: a private PostgreSQL cluster from Debian's binaries;
- ``mlflow_server(backend_uri, artifacts)``: the standard ``mlflow server`` command;
- ``dask_cluster(n_workers)``: a Dask scheduler and workers, each its own process;
- ``jupyter_server(root, tmp)``: ``jupyter server`` (or ``jupyter lab``, ``jupyter
  notebook``) with a token, serving ``root``, with private config, data and runtime folders.

Each is a context manager that leaves no process behind on exit, also when the block
raises. Importable by tests (``from services import ...``) and by benchmarks (after
``sys.path.insert(0, str(REPO / "tests"))``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The venv's commands, next to the interpreter running the tests (not whatever is on PATH).
BIN = Path(sys.executable).parent

MLFLOW_START_TIMEOUT = 180.0  # migrations on a new PostgreSQL database: 20+ s when loaded
DASK_START_TIMEOUT = 120.0
JUPYTER_START_TIMEOUT = 60.0
PG_START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _kill_tree(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """End ``proc``, its process group and every descendant (kernels start their own
    sessions, so the group alone would miss them); reap ``proc``."""
    pids = _descendants(proc.pid)
    if grace and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


# --------------------------------------------------------------------------- MLflow


class MlflowServer:
    """An ``mlflow server`` process on a fixed port, which a test may stop and restart."""

    def __init__(self, backend_uri: str, artifacts: Path, port: int, logdir: Path) -> None:
        self.backend_uri = backend_uri
        self.artifacts = Path(artifacts)
        self.port = port
        self.uri = f"http://127.0.0.1:{port}"
        self.log = logdir / "mlflow-server.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start on ``self.port``; return when ``/health`` answers.

        Retries while the port is still held (a restart right after ``stop``)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts),
            "--serve-artifacts",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        # MLflow 3's server also starts a job runner and several huey consumer processes
        # (server-side GenAI jobs) when its store is a database; mlops-nb uses none of them,
        # and on two cores they slow the start and every request (the caller may still
        # switch them on through its own environment).
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT
        while True:
            with open(self.log, "ab") as log:
                log.write(f"\n=== {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                if self._healthy():
                    return
                time.sleep(0.25)
            else:
                self.stop()
                raise RuntimeError(
                    f"mlflow server on {self.uri} did not answer /health within "
                    f"{MLFLOW_START_TIMEOUT:.0f} s; its log ({self.log}):\n{_log_tail(self.log)}"
                )
            # It exited: retry only when the port is still busy from the previous server.
            tail = _log_tail(self.log)
            if "address already in use" in tail.lower() and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise RuntimeError(
                f"mlflow server on {self.uri} exited with code {self._proc.returncode} "
                f"before answering; its log ({self.log}):\n{tail}"
            )

    def stop(self) -> None:
        """Kill the server (and its workers): the store becomes unreachable at once."""
        if self._proc is not None:
            _kill_tree(self._proc)
            self._proc = None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, port: int | None = None) -> Iterator[MlflowServer]:
    """``mlflow server`` on ``backend_uri`` with artifacts served from ``artifacts``,
    on 127.0.0.1 (``port`` or a free one), running for the block."""
    logdir = Path(tempfile.mkdtemp(prefix="mlops-nb-mlflow-"))
    server = MlflowServer(backend_uri, artifacts, port or free_port(), logdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(logdir, ignore_errors=True)


# --------------------------------------------------------------------------- Dask


class DaskCluster:
    """A running Dask scheduler and its workers (each worker its own process session)."""

    def __init__(self, address: str, scheduler: subprocess.Popen, workers: list[subprocess.Popen]):
        self.address = address
        self._scheduler = scheduler
        self._workers = workers

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes, in start order (a killed worker keeps its pid)."""
        return [w.pid for w in self._workers]

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` with its whole process group and the kernels it started,
        as when its machine dies."""
        _kill_tree(self._workers[i])

    def _close(self) -> None:
        for w in self._workers:
            _kill_tree(w)
        _kill_tree(self._scheduler)


@contextmanager
def dask_cluster(
    n_workers: int = 2,
    nthreads: int = 1,
    env: dict | None = None,
    cwd: Path | None = None,
) -> Iterator[DaskCluster]:
    """A Dask scheduler on 127.0.0.1 and ``n_workers`` workers, with ``env`` added to
    the workers' environment and ``cwd`` their working folder; ready (every worker
    connected) when the block starts, everything killed when it ends."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logdir = Path(tempfile.mkdtemp(prefix="mlops-nb-dask-"))
    worker_env = {**os.environ, **(env or {})}
    procs: list[subprocess.Popen] = []

    def spawn(name: str, cmd: list[str], **kwargs) -> subprocess.Popen:
        with open(logdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )
        procs.append(proc)
        return proc

    def logs() -> str:
        return "\n".join(f"--- {p.name}:\n{_log_tail(p, 20)}" for p in sorted(logdir.glob("*.log")))

    cluster = None
    try:
        scheduler = spawn(
            "scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"],
        )  # fmt: skip
        workers = [
            spawn(
                f"worker-{i}",
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nthreads",
                    str(nthreads),
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--no-nanny",
                    "--local-directory",
                    str(logdir / f"worker-{i}"),
                ],
                env=worker_env,
                cwd=str(cwd) if cwd else None,
            )
            for i in range(n_workers)
        ]
        cluster = DaskCluster(address, scheduler, workers)
        deadline = time.monotonic() + DASK_START_TIMEOUT
        client = None
        while client is None:
            if scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with code {scheduler.returncode}:\n{logs()}")
            try:
                client = Client(address, timeout=5, set_as_default=False)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dask scheduler on {address} did not answer:\n{logs()}") from None
                time.sleep(0.25)
        try:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RuntimeError(
                f"dask cluster on {address}: fewer than {n_workers} workers connected "
                f"within {DASK_START_TIMEOUT:.0f} s:\n{logs()}"
            ) from None
        finally:
            client.close()
        yield cluster
    finally:
        for proc in procs:
            _kill_tree(proc)
        shutil.rmtree(logdir, ignore_errors=True)


# --------------------------------------------------------------------------- PostgreSQL

PG_USER = "postgres"


def _pg_bin() -> Path:
    """The newest Debian PostgreSQL server binaries' folder."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda b: [int(x) for x in re.findall(r"\d+", b.parent.name)] or [0],
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            "run `make test`, which installs Debian's postgresql "
            "(or `apt-get install postgresql`)"
        )
    return found[-1]


class Postgres:
    """A running private PostgreSQL cluster; trust authentication on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._created: set[str] = {"postgres"}
        self._lock = threading.Lock()

    def url(self, database: str) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DATABASE``, the database created if new."""
        with self._lock:
            if database not in self._created:
                self._create(database)
                self._created.add(database)
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _create(self, database: str) -> None:
        # SQLAlchemy 2.1 (so MLflow and the scheduler) opens postgresql:// URLs with
        # psycopg 3; psycopg2 alone fails there with "No module named 'psycopg'".
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise RuntimeError(
                "psycopg (3) is not installed, and SQLAlchemy 2.1 needs it for postgresql:// "
                "URLs: pip install 'psycopg[binary]' (make test installs the test extras)"
            ) from None
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:  # autocommit: CREATE DATABASE cannot run in a transaction
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if row.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


@contextmanager
def postgres(workdir: Path) -> Iterator[Postgres]:
    """A private PostgreSQL cluster in ``workdir/pg``, on 127.0.0.1 and a free port,
    running for the block; stopped and removed on exit.

    As root, initdb and postgres run as the ``postgres`` user (they refuse root). pytest's
    temporary folders are private to root (mode 700), so then the cluster lives in a
    folder of its own under the system temp folder, owned by ``postgres``, and
    ``workdir/pg`` is a link to it."""
    bindir = _pg_bin()
    as_root = os.geteuid() == 0
    if as_root:
        import pwd

        try:
            pg = pwd.getpwnam(PG_USER)
        except KeyError:
            raise RuntimeError(
                f"no `{PG_USER}` user to run PostgreSQL as (it refuses root): "
                "run `make test`, which installs Debian's postgresql (the package creates it)"
            ) from None
        home = Path(tempfile.mkdtemp(prefix="mlops-nb-pg-"))
        os.chown(home, pg.pw_uid, pg.pw_gid)
        link = Path(workdir) / "pg"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(home, target_is_directory=True)
    else:
        home = Path(workdir) / "pg"
        home.mkdir(parents=True)
        link = None
    data, sockets, log = home / "data", home / "sock", home / "postgres.log"

    def run(*cmd: str) -> subprocess.CompletedProcess:
        full = (["runuser", "-u", PG_USER, "--"] if as_root else []) + list(cmd)
        return subprocess.run(full, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=home)

    started = False
    try:
        done = run("mkdir", "-m", "700", str(sockets))
        if done.returncode:
            raise RuntimeError(f"cannot create {sockets}: {done.stderr.strip()}")
        done = run(
            str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", PG_USER,
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        for _attempt in range(3):
            port = free_port()
            settings = (
                f"port = {port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sockets}'\n"
                # A throwaway cluster: durability is not wanted, speed is.
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
            )
            with open(data / "postgresql.auto.conf", "a") as conf:
                conf.write(settings)
            done = run(
                str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                "-w", "-t", str(int(PG_START_TIMEOUT)), "start",
            )  # fmt: skip
            if done.returncode == 0:
                started = True
                break
            if "already in use" not in _log_tail(log).lower():
                break
        if not started:
            raise RuntimeError(
                f"PostgreSQL did not start (pg_ctl: {done.stdout.strip()} {done.stderr.strip()}); "
                f"its log ({log}):\n{_log_tail(log)}"
            )
        yield Postgres(port)
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if link is not None:
            link.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------- Jupyter

#: What the test process may carry that must not reach a server's kernels.
_NOT_FOR_SERVERS = ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "MLOPS_NB_NOTEBOOK")


class JupyterServer:
    """A running Jupyter server: its URL, token, root, runtime folder and log; REST calls
    with its token, kernels by id."""

    def __init__(self, base: str, token: str, root: Path, runtime: Path, log: Path) -> None:
        self.base, self.token, self.root, self.runtime, self.log = base, token, root, runtime, log

    def url(self, path: str) -> str:
        """``path`` on the server with the token in the query (what a browser opens)."""
        return f"{self.base}{path}?token={self.token}"

    def call(self, method: str, path: str, body: object = None, timeout: float = 60) -> object:
        """A REST call with the token in the Authorization header; the JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    @contextmanager
    def kernel_client(self, kernel_id: str) -> Iterator[object]:
        """A client on the server's kernel, from the connection file in its runtime folder."""

        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            # Not wait_for_ready: without a kernel manager it takes a heartbeat not yet
            # beating for a dead kernel. Ask for kernel_info until the kernel answers on
            # the shell channel and its status for that request arrives on iopub too: a
            # subscription still joining misses the idle status an execute waits for.
            deadline = time.monotonic() + 60
            while not _kernel_answers(client):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kernel {kernel_id} did not answer on both its shell and iopub channels")
            yield client
        finally:
            client.stop_channels()


def _kernel_answers(client) -> bool:
    """Whether one kernel_info request is answered on shell and seen on iopub (5 s each)."""
    import queue

    msg_id = client.kernel_info()
    try:
        while client.get_shell_msg(timeout=5)["parent_header"].get("msg_id") != msg_id:
            pass
        while client.get_iopub_msg(timeout=5)["parent_header"].get("msg_id") != msg_id:
            pass
    except queue.Empty:
        return False
    return True


@contextmanager
def jupyter_server(
    root: Path,
    tmp: Path,
    app: str = "server",
    *,
    config: dict | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    ready: str = "/api/status",
    timeout: float = JUPYTER_START_TIMEOUT,
) -> Iterator[JupyterServer]:
    """``jupyter <app>`` serving ``root`` on 127.0.0.1 and a free port, with a token, its
    configuration, data and runtime folders in ``tmp`` (``config``, when given, written
    there as ``jupyter_server_config.json``), ``env`` added to its environment and
    ``args`` to its command line; ready when ``ready`` answers with the token. The server
    and everything it started (kernels) end with the block."""
    runtime, config_dir, log = tmp / "runtime", tmp / "config", tmp / "server.log"
    if config is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    server_env = {
        **{k: v for k, v in os.environ.items() if k not in _NOT_FOR_SERVERS},
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        **(env or {}),
    }
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyter", app, "--allow-root", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *args,
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=server_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, runtime, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                server.call("GET", ready, timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter {app} did not start; its log ({log}):\n{_log_tail(log)}") from None
                time.sleep(0.2)
        yield server
    finally:
        _kill_tree(proc, grace=10)
