"""Store-load figures (issue 7): the shared store under concurrent writers.

A private PostgreSQL and an ``mlflow server`` on it (``tests/services.py``) take the
writes of N writer processes at once (N = 1, 2, 4, 8), each its own Python process with
its own client, as N Dask workers would be. For information, each also writes to the
embedded SQLite store every project has by default, with no server in between.

Each writer repeats what one notebook job writes to the store, as fast as it can:

- ``raw``: the job's writes through plain ``MlflowClient`` calls: a run with 6 tags,
  5 params, 200 metric values in one ``log_batch``, the executed notebook (34 KB) as an
  artifact, the run ended (6 requests);
- ``mlops-nb``: the same job as ``mlops_nb.jobs.run.execution.run_notebook`` writes it, minus
  the kernel: a :class:`~mlops_nb.tracking.Tracker` run (its dead-run check, the
  experiment lookup), the runner's job tags, the params, the metrics through the
  tracker's buffer (one ``log_batch``), ``job_duration_s``, the notebook and its HTML,
  the code snapshot, the git state and ``environment/requirements.txt``, the run ended
  (16 requests);
- ``metrics``: ``log_batch`` calls of 1,000 values into one run each, as the tracker's
  buffer flushes them: the store's ceiling in metric values a second.

Also timed: ``run_notebook`` of a tiny notebook (100 steps, 2 metrics a step) against
the same server, on a warm kernel pool as a worker has it, and how much of it is the
runner's requests to the store. Prints tables and writes
``benchmarks/results/store_load.json``. Everything runs on one machine: the writers,
the server and PostgreSQL share its cores, so the store's capacity here is a lower
bound, and the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

WRITERS = (1, 2, 4, 8)
TAGS = {f"team.tag{i}": f"value-{i}" for i in range(6)}
PARAMS = {"lr": "0.01", "depth": "6", "n_estimators": "200", "seed": "0", "dataset": "train-2024.parquet"}
STEPS, METRIC_NAMES = 100, ("loss", "accuracy")  # 200 metric values a job
METRICS_PER_JOB = STEPS * len(METRIC_NAMES)
BATCH = 1000  # the tracker's buffer writes at most this many values a request
PREFIX = "@@"  # writer -> parent protocol lines on stdout; anything else is ignored


# ----------------------------------------------------------------------------- writer


class Writer:
    """One writer process: a client per store, and the three kinds of work."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import requests
        from mlflow import MlflowClient

        from mlops_nb.config import resolve_config
        from mlops_nb.store import get_or_create_experiment

        self.index = spec["index"]
        self.notebook = Path(spec["notebook"])
        self.html = Path(spec["html"]).read_text(encoding="utf-8")
        self.problems: list[str] = []
        self.requests, self.request_s = 0, 0.0
        original = requests.Session.request

        def counted(session: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(session, *args, **kwargs)
            finally:
                self.requests += 1
                self.request_s += time.perf_counter() - t

        requests.Session.request = counted  # counts and times HTTP requests; changes nothing else
        self.stores: dict[str, dict[str, Any]] = {}
        for name, store in spec["stores"].items():
            environ = {"MLFLOW_TRACKING_URI": store["uri"]} if store["uri"] else {}
            config = resolve_config(store["root"], environ=environ)
            client = MlflowClient(tracking_uri=config.tracking_uri)
            self.stores[name] = {
                "config": config,
                "client": client,
                "raw_exp": get_or_create_experiment(client, config, "load-raw"),
                "metrics_exp": get_or_create_experiment(client, config, "load-metrics"),
            }
        self.jobs = 0

    def report(self, message: str) -> None:
        self.problems.append(message)

    def job_raw(self, store: str) -> None:
        from mlflow.entities import Metric, Param

        s = self.stores[store]
        client = s["client"]
        self.jobs += 1
        run = client.create_run(s["raw_exp"], run_name=f"w{self.index} job {self.jobs}", tags=TAGS)
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in PARAMS.items()])
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(m, 1.0 / (step + 1), now, step) for step in range(STEPS) for m in METRIC_NAMES],
        )
        client.log_artifact(run_id, str(self.notebook), "job")
        client.set_terminated(run_id, "FINISHED")

    def job_ours(self, store: str) -> None:
        # The store writes of run_notebook (mlops_nb/jobs/run/execution.py), in its order,
        # with the kernel's metric writes done by this process's tracker instead.
        from mlflow.entities import RunTag

        from mlops_nb.jobs.run.execution import _recovery_due
        from mlops_nb.provenance import NotebookLocation
        from mlops_nb.tags import PREFIX as TAG
        from mlops_nb.tracking import Tracker

        s = self.stores[store]
        self.jobs += 1
        tracker = Tracker(
            notebook=NotebookLocation(self.notebook, "mlops-nb run"),
            config=s["config"],
            fluent=False,
            report=self.report,
            recover=_recovery_due(s["config"].tracking_uri),
        )
        handle = tracker.start_notebook_run("load-mlops-nb", f"w{self.index} job {self.jobs}", autolog=False)
        client = tracker.client
        tags = {TAG + "kind": "job", TAG + "job.kernel": "python3", TAG + "job.key": "k"}
        client.log_batch(handle.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        tracker.log_params(PARAMS)
        for step in range(STEPS):
            for m in METRIC_NAMES:
                tracker.log_metric(m, 1.0 / (step + 1), step=step)
        client.log_metric(handle.run_id, "job_duration_s", 1.0)
        client.log_artifact(handle.run_id, str(self.notebook), "job")
        client.log_text(handle.run_id, self.html, f"job/{self.notebook.stem}.html")
        tracker.end_run(handle, "FINISHED")
        tracker.close()

    def phase(self, cmd: dict[str, Any]) -> dict[str, Any]:
        store, kind = cmd["store"], cmd["kind"]
        problems = len(self.problems)
        metrics_run = buffer = None
        if kind == "metrics":
            from mlops_nb.tracking import MetricBuffer

            s = self.stores[store]
            metrics_run = s["client"].create_run(s["metrics_exp"], run_name=f"w{self.index} metrics").info.run_id
            buffer = MetricBuffer(lambda: s["client"], self.report)
        job = {"raw": self.job_raw, "mlops-nb": self.job_ours}.get(kind)
        latencies: list[float] = []
        errors: list[str] = []
        step = 0
        while time.time() < cmd["start"]:
            time.sleep(0.005)
        start_requests, start_request_s = self.requests, self.request_s
        end = cmd["start"] + cmd["seconds"]
        while time.time() < end:
            t = time.perf_counter()
            try:
                if buffer is not None:
                    now = int(time.time() * 1000)
                    for _ in range(BATCH // 2):
                        buffer.add(metrics_run, "loss", 1.0 / (step + 1), now, step)
                        buffer.add(metrics_run, "accuracy", 1.0 - 1.0 / (step + 2), now, step)
                        step += 1
                    if buffer.flush():
                        raise RuntimeError("metric values could not be written")
                else:
                    job(store)
            except Exception as exc:  # a store failure under load is a result, not a crash
                errors.append(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}")
                continue
            latencies.append(time.perf_counter() - t)
        finish = time.time()
        done_requests, request_s = self.requests - start_requests, self.request_s - start_request_s
        if buffer is not None:
            written = buffer.written
            buffer.close()
            self.stores[store]["client"].set_terminated(metrics_run, "FINISHED")
        else:
            written = len(latencies) * METRICS_PER_JOB
        errors += self.problems[problems:]
        return {
            "done": len(latencies),
            "latencies": latencies,
            "metrics": written,
            "finish": finish,
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "requests": done_requests,
            "request_s": request_s,
        }


def writer_main() -> int:
    def say(obj: Any) -> None:
        sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
        sys.stdout.flush()

    spec = json.loads(sys.stdin.readline())
    writer = Writer(spec)
    for store in writer.stores:  # warm both paths (imports, connections, caches), untimed
        writer.job_raw(store)
        writer.job_ours(store)
    say({"ready": writer.index})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        say(writer.phase(cmd))
    return 0


# ----------------------------------------------------------------------------- parent


def _notebook(folder: Path, name: str, size: int = 0, steps: int = 0) -> Path:
    """A small notebook: a parameters cell and, with ``size``, about that many bytes of
    output (an executed notebook's); with ``steps``, a loop logging 2 metrics a step."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"n_steps = {steps}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params]
    if steps:
        nb.cells.append(
            nbformat.v4.new_code_cell(
                "import mlops_nb as mnb\n"
                "for step in range(n_steps):\n"
                "    mnb.log_metric('loss', 1 / (step + 1), step=step)\n"
                "    mnb.log_metric('accuracy', 1 - 1 / (step + 2), step=step)\n"
            )
        )
    if size:
        cell = nbformat.v4.new_code_cell(
            "for i in range(600):\n    print(f'epoch {i:4d}  loss {1 / (i + 1):.6f}  accuracy {1 - 1 / (i + 2):.6f}')"
        )
        text = "".join(f"epoch {i:4d}  loss {1 / (i + 1):.6f}  accuracy {1 - 1 / (i + 2):.6f}\n" for i in range(600))
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text[:size])]
        cell.execution_count = 2
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbformat.write(nb, path)
    return path


def _git_project(root: Path) -> None:
    """A committed git project, as a team's is (a job records its git state)."""
    (root / "pyproject.toml").write_text("[project]\nname = 'load'\n")
    (root / ".gitignore").write_text(".mlops/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "init"], cwd=root, check=True)


@contextmanager
def _server(backend_uri: str, artifacts: Path, workers: int, logdir: Path) -> Iterator[str]:
    """The standard ``mlflow server`` command with ``--workers N`` (tests/services.py
    starts it with one worker), killed with its workers on exit."""
    import psutil
    from services import free_port

    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    log = logdir / f"mlflow-workers{workers}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        # /health answers as soon as the first worker is up: wait for all of them.
        while log.read_text(errors="replace").count("Application startup complete") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server --workers {workers} did not start; see {log}")
            time.sleep(0.25)
        for _ in range(4 * workers):  # each worker's first answers are slow (lazy imports)
            with urllib.request.urlopen(uri + "/health", timeout=30):
                pass
        yield uri
    finally:
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        proc.wait()


def _listener_tree(port: int, keyword: str) -> list[int]:
    """The processes of the service listening on ``port``: from the listener up through
    the ancestors whose command line holds ``keyword`` (uvicorn's supervisor, the
    ``mlflow server`` command), and all their descendants (workers, PostgreSQL's
    backends)."""
    import psutil

    roots = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                while (parent := proc.parent()) is not None and keyword in " ".join(parent.cmdline()):
                    proc = parent
                roots.add(proc)
            except psutil.Error:
                pass
    out = {p.pid for p in roots}
    for proc in roots:
        try:
            out.update(p.pid for p in proc.children(recursive=True))
        except psutil.Error:
            pass
    return sorted(out)


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """CPU used during a phase by groups of processes (in cores) and by the whole machine."""

    def __init__(self, groups: dict[str, Any]) -> None:
        import psutil

        self._psutil = psutil
        self.groups = groups  # name -> callable returning the pids now

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.machine0 = self._psutil.cpu_times()
        self.before = {name: {pid: _cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.t0
        m1 = self._psutil.cpu_times()
        busy = lambda t: sum(t) - t.idle - getattr(t, "iowait", 0.0)  # noqa: E731
        self.cores = {"machine": (busy(m1) - busy(self.machine0)) / elapsed}
        for name, pids in self.groups.items():
            used = sum(_cpu_seconds([pid]) - self.before[name].get(pid, 0.0) for pid in pids())
            self.cores[name] = max(0.0, used) / elapsed


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_load(
    spec: dict[str, Any], phases: list[tuple[str, str]], n: int, seconds: float, servers: dict[str, int], workdir: Path
) -> list[dict]:
    """Start ``n`` writers, run each (store, kind) phase on all of them at once."""
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i in range(n):
            log = open(  # noqa: SIM115 (closed after the writers end)
                workdir / f"writer-{n}-{i}.log", "w"
            )
            logs.append(log)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--writer"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, cwd=workdir,
            )  # fmt: skip
            proc.stdin.write(json.dumps({**spec, "index": i}) + "\n")
            proc.stdin.flush()
            procs.append(proc)

        def answer(proc: subprocess.Popen) -> dict[str, Any]:
            for line in proc.stdout:
                if line.startswith(PREFIX):
                    return json.loads(line[len(PREFIX) :])
            raise RuntimeError(f"a writer exited (code {proc.wait()}); see {workdir}/writer-{n}-*.log")

        for proc in procs:
            answer(proc)  # ready
        writer_pids = lambda: [p.pid for p in procs]  # noqa: E731
        out = []
        for store, kind in phases:
            groups = {"writers": writer_pids}
            if store in servers:
                port = servers[store]
                groups["server"] = lambda port=port: _listener_tree(port, "mlflow")
                groups["postgres"] = lambda: _listener_tree(servers["postgres"], "postgres")
            start = time.time() + 0.3
            with CpuMeter(groups) as cpu:
                for proc in procs:
                    proc.stdin.write(
                        json.dumps({"store": store, "kind": kind, "start": start, "seconds": seconds}) + "\n"
                    )
                    proc.stdin.flush()
                answers = [answer(p) for p in procs]
            wall = max(a["finish"] for a in answers) - start
            latencies = [x for a in answers for x in a["latencies"]]
            done = sum(a["done"] for a in answers)
            row = {
                "store": store, "kind": kind, "writers": n, "seconds": wall,
                ("batches" if kind == "metrics" else "runs"): done,
                "runs_per_s": None if kind == "metrics" else done / wall,
                "metrics_per_s": sum(a["metrics"] for a in answers) / wall,
                "p50_s": _percentile(latencies, 0.5), "p95_s": _percentile(latencies, 0.95),
                "requests_per_run": (sum(a["requests"] for a in answers) / done) if done and kind != "metrics" else None,
                "request_s_per_run": (sum(a["request_s"] for a in answers) / done) if done and kind != "metrics" else None,
                "errors": sum(a["errors"] for a in answers),
                "first_error": next((a["first_error"] for a in answers if a["first_error"]), None),
                "cpu_cores": {k: round(v, 2) for k, v in cpu.cores.items()},
            }  # fmt: skip
            # CPU seconds a run (or a batch of 1,000 values) costs each process group:
            # what the store's capacity follows from, whatever else the machine is doing.
            units = done if kind != "metrics" else row["metrics_per_s"] * wall / BATCH
            row["cpu_s_per_unit"] = {
                k: v * wall / units if units else None for k, v in cpu.cores.items() if k != "machine"
            }
            out.append(row)
            print(_row_line(row), flush=True)
        for proc in procs:
            proc.stdin.write(json.dumps({"quit": True}) + "\n")
            proc.stdin.flush()
        for proc in procs:
            proc.wait(timeout=60)
        return out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


STORE_LABELS = {
    "server": "mlflow server (1 worker) + PostgreSQL",
    "server-2w": "mlflow server (2 workers) + PostgreSQL",
    "sqlite": "embedded SQLite",
}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


TABLE_HEADER = (
    "| store | writes | writers | runs/s | metrics/s | a run (a batch), p50 | p95 | requests a run, time in them "
    "| CPU a run (a batch): server / PG / writers | CPU cores: server / PG / writers / machine | errors |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _row_line(r: dict[str, Any]) -> str:
    cpu, per = r["cpu_cores"], r["cpu_s_per_unit"]
    runs = "-" if r["runs_per_s"] is None else f"{r['runs_per_s']:.1f}"
    reqs = "-" if not r["requests_per_run"] else f"{r['requests_per_run']:.0f}, {_ms(r['request_s_per_run'])}"
    each = " / ".join(_ms(per[k]) if k in per else "-" for k in ("server", "postgres", "writers"))
    cores = " / ".join(f"{cpu[k]:.2f}" if k in cpu else "-" for k in ("server", "postgres", "writers", "machine"))
    return (
        f"| {STORE_LABELS[r['store']]} | {r['kind']} | {r['writers']} | {runs} | {r['metrics_per_s']:,.0f} | "
        f"{_ms(r['p50_s'])} | {_ms(r['p95_s'])} | {reqs} | {each} | {cores} | {r['errors']} |"
    )


def _cpu_now() -> float:
    """CPU seconds of this process and its ended children (a job's kernel is reaped when
    the job ends; the pool's next kernel, started meanwhile, counts with the next job)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_jobs(notebook: Path, config: Any, repeats: int) -> dict[str, Any]:
    """``run_notebook`` on a warm kernel pool, against the server: the job's time and the
    time the runner spent in requests to the store."""
    import requests

    from mlops_nb.jobs.run.execution import run_notebook
    from mlops_nb.jobs.run.pool import KernelPool

    spent = {"s": 0.0, "n": 0}
    original = requests.Session.request

    def timed(session: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(session, *args, **kwargs)
        finally:
            spent["s"] += time.perf_counter() - t
            spent["n"] += 1

    jobs, cpu, store, requests_n = [], [], [], []
    requests.Session.request = timed
    try:
        with KernelPool("python3", size=1, cwd=str(notebook.parent)) as pool:
            for i in range(repeats + 1):
                spent.update(s=0.0, n=0)
                t, c = time.perf_counter(), _cpu_now()
                result = run_notebook(notebook, {"n_steps": STEPS}, experiment="load-jobs", pool=pool, config=config)
                elapsed = time.perf_counter() - t
                used = _cpu_now() - c
                if not result.ok:
                    raise RuntimeError(f"the timed job failed: {result.error}")
                if i:  # the first one warms up (imports, the HTML exporter)
                    jobs.append(elapsed)
                    cpu.append(used)
                    store.append(spent["s"])
                    requests_n.append(spent["n"])
                    stored = sorted(result.metrics)
    finally:
        requests.Session.request = original
    return {
        "job_s": statistics.median(jobs),
        "runner_store_s": statistics.median(store),
        "runner_requests": statistics.median(requests_n),
        "job_cpu_s": statistics.median(cpu),
        "jobs_s": jobs,
        "metric_keys_stored": stored,
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measured phase (default 4)")
    parser.add_argument("--writers", default=",".join(map(str, WRITERS)), help="writer counts (default 1,2,4,8)")
    parser.add_argument("--jobs", type=int, default=4, help="timed run_notebook jobs (default 4)")
    args = parser.parse_args(argv)
    if args.writer:
        return writer_main()
    counts = [int(x) for x in args.writers.split(",")]
    os.environ.pop("MLOPS_NB_JOB_FILE", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # "View run at" for every run
    work = Path(tempfile.mkdtemp(prefix="mlops-nb-store-load-"))
    try:
        return _measure(args, counts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, counts: list[int], work: Path) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from services import mlflow_server, postgres

    from mlops_nb.config import resolve_config
    from mlops_nb.jobs.run.execution import _html
    from mlops_nb.store import get_client

    began = time.monotonic()
    results: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    }
    with ExitStack() as stack:
        pg = stack.enter_context(postgres(work))
        server = stack.enter_context(mlflow_server(pg.url("mlflow"), work / "artifacts"))
        server2 = stack.enter_context(_server(pg.url("mlflow"), work / "artifacts", 2, work))
        print(f"PostgreSQL on port {pg.port}, mlflow server on {server.uri} and (2 workers) {server2} "
              f"after {time.monotonic() - began:.0f} s", flush=True)  # fmt: skip

        projects = {}
        for name, uri in (("server", server.uri), ("server-2w", server2), ("sqlite", None)):
            root = work / name
            root.mkdir()
            payload = _notebook(root, "train.ipynb", size=30_000)
            _notebook(root, "tiny.ipynb", steps=STEPS)
            _git_project(root)
            config = resolve_config(root, environ={"MLFLOW_TRACKING_URI": uri} if uri else {})
            get_client(config)  # a new SQLite store is created once, before any writer
            projects[name] = {"root": str(root), "uri": uri, "config": config}
        html = work / "train.html"
        html.write_text(_html(payload) or "", encoding="utf-8")
        results["payload"] = {
            "notebook_bytes": payload.stat().st_size,
            "html_bytes": html.stat().st_size,
            "metrics_per_job": METRICS_PER_JOB,
        }

        # One real job, end to end, against the 1-worker server.
        jobs = time_jobs(Path(projects["server"]["root"]) / "tiny.ipynb", projects["server"]["config"], args.jobs)
        results["job"] = jobs
        print(
            f"run_notebook of a tiny notebook ({METRICS_PER_JOB} metric values), warm kernel pool: "
            f"{jobs['job_s']:.2f} s ({jobs['job_cpu_s']:.2f} s of CPU, runner and kernel), of which "
            f"{jobs['runner_store_s']:.2f} s in {jobs['runner_requests']:.0f} requests to the store from the runner",
            flush=True)  # fmt: skip

        spec = {
            "notebook": str(payload), "html": str(html),
            "stores": {k: {"root": v["root"], "uri": v["uri"]} for k, v in projects.items()},
        }  # fmt: skip
        phases = [
            ("server", "raw"), ("server", "mlops-nb"), ("server", "metrics"), ("server-2w", "mlops-nb"),
            ("sqlite", "raw"), ("sqlite", "mlops-nb"), ("sqlite", "metrics"),
        ]  # fmt: skip
        servers = {"server": server.port, "server-2w": int(server2.rsplit(":", 1)[1]), "postgres": pg.port}
        print(TABLE_HEADER)
        rows = []
        for n in counts:
            rows += run_load(spec, phases, n, args.seconds, servers, work)
        results["load"] = rows

    results["knee"] = knee = _knee(rows, jobs)
    results["seconds"] = time.monotonic() - began
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_load.json").write_text(json.dumps(results, indent=2))
    print()
    for line in knee["lines"]:
        print(line)
    print(f"({results['seconds']:.0f} s; results in {RESULTS / 'store_load.json'})")
    errors = sum(r["errors"] for r in rows)
    if errors:
        print(
            f"{errors} store errors under load (first: {next(r['first_error'] for r in rows if r['errors'])})",
            file=sys.stderr,
        )
    return 0


def _knee(rows: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """On paper: W workers each finish a job every J seconds, so they ask W / J jobs a
    second of the store, which serves at most C: throughput = min(W / J, C), and the
    knee is at W = C x J. C comes two ways: measured (the most runs a second seen, a
    lower bound when the machine was short of CPU), and from the CPU one job's writes
    cost the server and PostgreSQL (a server worker is one Python process: one core)."""
    out: dict[str, Any] = {"job_s": job["job_s"], "job_cpu_s": job["job_cpu_s"], "lines": []}

    def median_cpu(store: str, kind: str, group: str) -> float | None:
        values = [r["cpu_s_per_unit"].get(group) for r in rows if r["store"] == store and r["kind"] == kind]
        values = [v for v in values if v]
        return statistics.median(values) if values else None

    for store in ("server", "server-2w"):
        ours = [r for r in rows if r["store"] == store and r["kind"] == "mlops-nb"]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["runs_per_s"])
        single = min(ours, key=lambda r: r["writers"])
        server_cpu, pg_cpu = median_cpu(store, "mlops-nb", "server"), median_cpu(store, "mlops-nb", "postgres")
        workers = 2 if store == "server-2w" else 1
        by_cpu = workers / server_cpu if server_cpu else None
        rising = best["writers"] == max(r["writers"] for r in ours)
        out[store] = {
            "measured_runs_per_s": best["runs_per_s"], "at_writers": best["writers"], "still_rising": rising,
            "store_s_per_job_alone": single["request_s_per_run"],
            "server_cpu_s_per_job": server_cpu, "postgres_cpu_s_per_job": pg_cpu,
            "runs_per_s_by_cpu": by_cpu, "postgres_runs_per_s_per_core": 1 / pg_cpu if pg_cpu else None,
            "knee_workers_measured": best["runs_per_s"] * job["job_s"],
            "knee_workers_by_cpu": by_cpu * job["job_cpu_s"] if by_cpu else None,
        }  # fmt: skip
        out["lines"].append(
            f"{STORE_LABELS[store]}: measured at most {best['runs_per_s']:.1f} jobs' writes a second "
            f"(at {best['writers']} writers{', still rising' if rising else ''}); each job costs the server "
            f"{_ms(server_cpu)} and PostgreSQL {_ms(pg_cpu)} of CPU, so {workers} server worker(s) with a core each "
            f"serve about {by_cpu or float('nan'):.1f} a second. A job takes {job['job_s']:.2f} s here "
            f"({job['job_cpu_s']:.2f} s of CPU; {single['request_s_per_run']:.2f} s of writes, alone): the store "
            f"saturates at about {best['runs_per_s'] * job['job_s']:.0f} workers (measured, x job time) or "
            f"{(by_cpu or 0) * job['job_cpu_s']:.0f} (CPU, x job CPU)"
        )
    raw_cpu = median_cpu("server", "raw", "server")
    if raw_cpu:
        out["raw_server_cpu_s_per_job"] = raw_cpu
        out["lines"].append(f"the same job through plain MlflowClient calls costs the server {_ms(raw_cpu)} of CPU")
    metrics = [r for r in rows if r["store"] == "server" and r["kind"] == "metrics"]
    if metrics:
        best = max(metrics, key=lambda r: r["metrics_per_s"])
        batch_cpu = median_cpu("server", "metrics", "server")
        out["server_metrics_per_s"] = best["metrics_per_s"]
        out["server_cpu_s_per_batch"] = batch_cpu
        out["lines"].append(
            f"metric values through log_batch of {BATCH}: measured at most {best['metrics_per_s']:,.0f}/s "
            f"(at {best['writers']} writers); a batch costs the server {_ms(batch_cpu)} of CPU, so about "
            f"{BATCH / batch_cpu if batch_cpu else float('nan'):,.0f}/s a server worker"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
