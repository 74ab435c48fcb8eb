"""Serving figures (issue 16), each against ``mlflow models serve`` on the same version in
the same run:

- p50 and p99 latency at one client (sequential requests on one keep-alive connection);
- throughput at 16 concurrent clients, without batching and with batching on;
- throughput with the request log on vs off (ours against ours);
- ten alias moves under load: failed requests, and the time from a move to the first
  response from the new version, with the version's load-and-warm time shown apart.

The servers run one at a time while measured (the others idle), in alternating rounds,
so a machine that gets busier slows them alike. The model is a 100-tree random forest on
iris rows, one row a request: the kind of small tabular model most endpoints serve.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BODY = json.dumps({"dataframe_split": {"columns": ["sl", "sw", "pl", "pw"], "data": [[5.1, 3.5, 1.4, 0.2]]}}).encode()
HEADERS = {"Content-Type": "application/json"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(root: Path) -> None:
    """Two versions of the model (different forests), @champion on v1."""
    import mlflow
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from mlops_nb.config import resolve_config
    from mlops_nb.registry import register_model, set_alias
    from mlops_nb.store import get_client, get_or_create_experiment

    config = resolve_config(root, environ={})
    client = get_client(config)
    iris = load_iris()
    x = pd.DataFrame(iris.data, columns=["sl", "sw", "pl", "pw"])
    mlflow.set_tracking_uri(config.tracking_uri)
    exp = get_or_create_experiment(client, config, "serve-bench")
    for seed in (1, 2):
        model = RandomForestClassifier(n_estimators=100, random_state=seed).fit(x, iris.target)
        with mlflow.start_run(experiment_id=exp) as run:
            register_model(client, model, "bench-forest", run.info.run_id, input_example=x.head(3))
    set_alias(client, "bench-forest", "champion", "1")


def _start(cmd: list[str], port: int, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited: {log.read_text()[-2000:]}")
        try:
            if _post(port)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{cmd[:3]} did not answer in 120 s: {log.read_text()[-2000:]}")


def _post(port: int, conn: http.client.HTTPConnection | None = None) -> tuple[int, str | None]:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/invocations", BODY, HEADERS)
        resp = c.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Model-Version")
    finally:
        if own:
            c.close()


def latency(port: int, n: int = 200) -> list[float]:
    """Seconds per request of ``n`` sequential requests on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(10):
        _post(port, conn)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, _ = _post(port, conn)
        times.append(time.perf_counter() - t)
        assert status == 200, status
    conn.close()
    return times


def _quantile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def throughput(port: int, clients: int = 16, seconds: float = 5.0) -> tuple[float, int]:
    """Requests answered per second by ``clients`` threads, each on its own keep-alive
    connection, and how many failed."""
    stop = time.monotonic() + seconds
    done = [0] * clients
    failed = [0] * clients

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            try:
                status, _ = _post(port, conn)
            except OSError:
                failed[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            if status == 200:
                done[i] += 1
            else:
                failed[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - start), sum(failed)


def swaps_under_load(root: Path, port: int, moves: int = 10, clients: int = 4) -> dict:
    """Move @champion between v1 and v2 ``moves`` times while ``clients`` send requests:
    failed requests, and per move the time to the first answer from the new version."""
    from mlops_nb.config import resolve_config
    from mlops_nb.registry import set_alias
    from mlops_nb.store import get_client

    client = get_client(resolve_config(root, environ={}))
    stop = threading.Event()
    seen: list[tuple[float, str | None]] = []
    failures = [0]
    answered = [0]
    lock = threading.Lock()

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            try:
                status, version = _post(port, conn)
            except OSError:
                with lock:
                    failures[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with lock:
                answered[0] += 1
                if status != 200:
                    failures[0] += 1
                seen.append((time.monotonic(), version))
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    to_new, loads = [], []
    try:
        for i in range(moves):
            target = "2" if i % 2 == 0 else "1"
            moved = time.monotonic()
            set_alias(client, "bench-forest", "champion", target)
            deadline = moved + 120
            while time.monotonic() < deadline:
                with lock:
                    first = next((t for t, v in reversed(seen) if v == target and t >= moved), None)
                if first is not None:
                    break
                time.sleep(0.01)
            with lock:
                first = min((t for t, v in seen if v == target and t >= moved), default=None)
            to_new.append((first - moved) if first is not None else float("nan"))
            health = _health(port)
            swap = health.get("last_swap") or {}
            loads.append(float(swap.get("load_seconds") or float("nan")))
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {
        "moves": moves,
        "answered": answered[0],
        "failed": failures[0],
        "move_to_new_s_median": statistics.median(to_new),
        "move_to_new_s_max": max(to_new),
        "load_s_median": statistics.median(loads),
    }


def _health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    data = json.loads(conn.getresponse().read() or b"{}")
    conn.close()
    return data


def main(rounds: int = 3) -> dict:  # 2,400 timed requests a server
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-serve-"))
    (root / ".mlops").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    _register(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    uri = f"sqlite:///{root / '.mlops' / 'mlflow.db'}"
    # mlflow models serve starts `uvicorn` by name: the venv's bin folder must be on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    cli = [sys.executable, "-m", "mlops_nb.cli", "serve", "--project", str(root)]
    servers: dict[str, tuple[list[str], dict[str, str]]] = {
        "mlflow": (
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                "models:/bench-forest/1",
                "--env-manager",
                "local",
            ],
            mlflow_env,
        ),
        "ours": ([*cli, "models:/bench-forest@champion"], env),
        "ours_nolog": ([*cli, "models:/bench-forest@champion", "--no-log"], env),
        "ours_batch": ([*cli, "models:/bench-forest@champion", "--max-batch-size", "32", "--max-wait-ms", "2"], env),
    }
    procs, ports = {}, {}
    try:
        for name, (cmd, cmd_env) in servers.items():
            port = _free_port()
            flag = ["-p", str(port)] if name == "mlflow" else ["--port", str(port)]
            procs[name] = _start(cmd + flag, port, root, cmd_env, root / f"{name}.log")
            ports[name] = port
        lat: dict[str, list[float]] = {n: [] for n in servers}
        tput: dict[str, list[float]] = {n: [] for n in servers}
        failed = dict.fromkeys(servers, 0)
        for _ in range(rounds):
            # Latency in short interleaved stretches, so a busier moment hits every server.
            for _ in range(4):
                for name in servers:
                    lat[name] += latency(ports[name])
            for name in servers:
                rate, bad = throughput(ports[name])
                tput[name].append(rate)
                failed[name] += bad
        swaps = swaps_under_load(root, ports["ours"])
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def med(name: str, i: int) -> float:
        return _quantile(lat[name], 0.5 if i == 0 else 0.99)

    rate = {n: statistics.median(v) for n, v in tput.items()}
    return {
        "p50_ms": {n: med(n, 0) * 1000 for n in servers},
        "p99_ms": {n: med(n, 1) * 1000 for n in servers},
        "rps_16": rate,
        "failed": failed,
        "p50_ratio": med("ours", 0) / med("mlflow", 0),
        "p99_ratio": med("ours", 1) / med("mlflow", 1),
        "rps_ratio": rate["ours"] / rate["mlflow"],
        "rps_batch_ratio": rate["ours_batch"] / rate["mlflow"],
        "log_on_off_ratio": rate["ours"] / rate["ours_nolog"],
        "swaps": swaps,
    }


if __name__ == "__main__":
    r = main()
    p50, p99, rps = r["p50_ms"], r["p99_ms"], r["rps_16"]
    print("| figure | mlops-nb | `mlflow models serve` (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| p50 latency, 1 client | {p50['ours']:.2f} ms | {p50['mlflow']:.2f} ms | {r['p50_ratio']:.2f}x | <= 1.0 |")
    print(f"| p99 latency, 1 client | {p99['ours']:.2f} ms | {p99['mlflow']:.2f} ms | {r['p99_ratio']:.2f}x | <= 1.0 |")
    print(f"| throughput, 16 clients | {rps['ours']:.0f}/s | {rps['mlflow']:.0f}/s | {r['rps_ratio']:.2f}x | >= 1.0 |")
    print(
        f"| throughput, 16 clients, batching on | {rps['ours_batch']:.0f}/s | {rps['mlflow']:.0f}/s | "
        f"{r['rps_batch_ratio']:.2f}x | >= 2.0 |"
    )
    print(
        f"| throughput, request log on vs off (ours) | {rps['ours']:.0f}/s | {rps['ours_nolog']:.0f}/s (off) | "
        f"{r['log_on_off_ratio']:.2f}x | >= 0.9 |"
    )
    s = r["swaps"]
    print(
        f"| ten alias moves under 4 clients: failed requests | {s['failed']} of {s['answered']} | | | 0 |\n"
        f"| a move to the first answer from the new version (median / max) | {s['move_to_new_s_median']:.2f} s / "
        f"{s['move_to_new_s_max']:.2f} s | | | |\n"
        f"| of which loading and warming the version (median) | {s['load_s_median']:.2f} s | | | |"
    )
    print(f"failed requests per server during throughput runs: {r['failed']}", file=sys.stderr)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "serve.json").write_text(json.dumps(r, indent=2))
