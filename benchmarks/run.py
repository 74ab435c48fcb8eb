"""mlops-nb benchmarks: each figure is a ratio against the raw tool measured in the same run.

Run with ``make bench``. Prints a Markdown table (pasted into the README) and writes
``benchmarks/results/latest.json``. Timings are medians over repeats because these
machines are noisy; nothing here is a pass/fail test.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _median_subprocess(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def bench_load_ext(repeats: int = 7) -> dict:
    """``%load_ext mlops_nb`` in a fresh IPython vs ``import mlflow`` in a fresh Python."""
    load = _median_subprocess(
        textwrap.dedent(
            """
            import time
            from IPython.core.interactiveshell import InteractiveShell
            ip = InteractiveShell.instance()
            t = time.perf_counter()
            ip.run_line_magic("load_ext", "mlops_nb")
            print(time.perf_counter() - t)
            """
        ),
        repeats,
    )
    raw = _median_subprocess(
        "import time\nt = time.perf_counter()\nimport mlflow\nprint(time.perf_counter() - t)", repeats
    )
    return {"load_ext_s": load, "import_mlflow_s": raw, "ratio": load / raw, "target": "<= 0.1"}


def _project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": "p",
                "metadata": {"tags": ["parameters"]},
                "source": "alpha = 1",
                "outputs": [],
                "execution_count": None,
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "bench.ipynb").write_text(json.dumps(nb))
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "init"], cwd=root, check=True)
    return root


TRACKED_CELL = """%%mlops track --name bench
mnb.log_params({f"p{i}": i for i in range(10)})
for i in range(10):
    mnb.log_metric(f"m{i}", i * 0.5)
"""

RAW_CELL = """with mlflow.start_run(experiment_id=raw_exp):
    for i in range(10):
        mlflow.log_param(f"p{i}", i)
    for i in range(10):
        mlflow.log_metric(f"m{i}", i * 0.5)
"""


def bench_in_process(repeats: int = 30, n_metrics: int = 20000, n_sync: int = 300) -> dict:
    """Tracked cell vs raw ``with mlflow.start_run()``, and metric logging rates."""
    root = _project()
    os.chdir(root)
    os.environ["JPY_SESSION_NAME"] = "bench.ipynb"
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mlops_nb")
    import mlflow

    import mlops_nb as mnb

    tracker = mnb.get_tracker()
    client = tracker.client  # creates the store once, outside the timings
    mlflow.set_tracking_uri(tracker.config.tracking_uri)
    ip.user_ns.update(
        mnb=mnb,
        mlflow=mlflow,
        raw_exp=client.create_experiment("raw", artifact_location=str(root / ".mlops" / "artifacts" / "raw")),
    )

    def cell(code: str) -> float:
        t = time.perf_counter()
        result = ip.run_cell(code)
        elapsed = time.perf_counter() - t
        assert result.success, result.error_in_exec
        return elapsed

    for _ in range(3):  # warm up both paths (imports, autolog patching, caches)
        cell(TRACKED_CELL)
        cell(RAW_CELL)
    tracked, raw = [], []
    for _ in range(repeats):
        tracked.append(cell(TRACKED_CELL))
        raw.append(cell(RAW_CELL))
    capture_on = tracker.capture
    cell_result = {
        "tracked_cell_s": statistics.median(tracked),
        "raw_start_run_s": statistics.median(raw),
        "ratio": statistics.median(tracked) / statistics.median(raw),
        "capture": capture_on,
        "target": "<= 1.5",
    }

    # Metric logging from a loop: buffered mnb.log_metric (timed until stored) vs
    # synchronous mlflow.log_metric.
    run_id = mnb.track(experiment="metrics-bench", autolog=False)
    t = time.perf_counter()
    for step in range(n_metrics):
        mnb.log_metric("loss", 1.0 / (step + 1), step=step)
    loop_s = time.perf_counter() - t
    mnb.end()
    total_s = time.perf_counter() - t
    stored = len(client.get_metric_history(run_id, "loss"))
    with mlflow.start_run(experiment_id=ip.user_ns["raw_exp"]):
        t = time.perf_counter()
        for step in range(n_sync):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        sync_s = time.perf_counter() - t
    ours_rate = n_metrics / total_s
    raw_rate = n_sync / sync_s
    metric_result = {
        "logged": n_metrics,
        "stored": stored,
        "loop_only_rate_per_s": n_metrics / loop_s,
        "rate_until_stored_per_s": ours_rate,
        "raw_sync_rate_per_s": raw_rate,
        "ratio": ours_rate / raw_rate,
        "target": ">= 30, stored == logged",
    }
    return {"tracked_cell": cell_result, "metric_logging": metric_result}


LOOP_CELL = """%%mlops track --name loop --no-autolog{flag}
import numpy as np
rng = np.random.default_rng(0)
w = np.zeros(200)
for step in range({steps}):
    X = rng.standard_normal((256, 200))
    w -= 0.01 * X.T @ (X @ w - 1.0) / 256   # one small gradient step
    mnb.log_metric("loss", float(np.mean((X @ w - 1.0) ** 2)), step=step)
    mnb.log_metric("norm", float(np.linalg.norm(w)), step=step)
"""


def bench_live_chart(repeats: int = 5, steps: int = 3000) -> dict:
    """A training loop in a tracked cell with the live chart on vs off (same process)."""
    from IPython.core.interactiveshell import InteractiveShell

    import mlops_nb as mnb

    ip = InteractiveShell.instance()
    on, off = [], []
    for i in range(repeats + 1):
        for flag, out in (("", on), (" --no-chart", off)):
            t = time.perf_counter()
            assert ip.run_cell(LOOP_CELL.format(flag=flag, steps=steps)).success
            if i:  # the first round warms up
                out.append(time.perf_counter() - t)
    del mnb
    return {
        "chart_on_s": statistics.median(on),
        "chart_off_s": statistics.median(off),
        "ratio": statistics.median(on) / statistics.median(off),
        "steps": steps,
        "target": "<= 1.1",
    }


def bench_runs_table(n_runs: int = 10_000, page_size: int = 25, repeats: int = 9) -> dict:
    """The runs table's first page over 10,000 runs vs the raw ``search_runs`` for that page."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from mlops_nb.config import resolve_config
    from mlops_nb.store import get_client
    from mlops_nb.widgets.runs import RunsTable

    root = Path(tempfile.mkdtemp(prefix="mlops-nb-runs-"))
    (root / ".mlops").mkdir()
    client: MlflowClient = get_client(resolve_config(root, environ={}))
    eid = client.create_experiment("bench10k", artifact_location=str(root / "artifacts"))
    for i in range(n_runs):
        run = client.create_run(eid, run_name=f"r{i}", start_time=1_700_000_000_000 + i)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"m{j}", i * 0.001 + j, 0, 0) for j in range(5)],
            params=[Param(f"p{j}", str(i % 7 + j)) for j in range(5)],
        )
    ours, built, raw = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        table = RunsTable(client, "bench10k", page_size=page_size)
        built.append(time.perf_counter() - t)
        t = time.perf_counter()
        table.first_page()  # what every page load costs: the store query, rows and HTML
        ours.append(time.perf_counter() - t)
        assert len(table.rows) == page_size
        t = time.perf_counter()
        page = client.search_runs([eid], order_by=["attributes.start_time DESC"], max_results=page_size)
        raw.append(time.perf_counter() - t)
        assert len(page) == page_size
    return {
        "runs": n_runs,
        "first_page_s": statistics.median(ours),
        "new_table_s": statistics.median(built),
        "raw_search_runs_s": statistics.median(raw),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "new_table_ratio": statistics.median(built) / statistics.median(raw),
        "target": "<= 1.5",
    }


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    results = {"load_ext": bench_load_ext()}
    results.update(bench_in_process())
    results["live_chart"] = bench_live_chart()
    results["runs_table"] = bench_runs_table()
    results["machine"] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    le, tc, ml = results["load_ext"], results["tracked_cell"], results["metric_logging"]
    print("| figure | mlops-nb | raw tool (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| `%load_ext mlops_nb` vs `import mlflow` | {le['load_ext_s'] * 1000:.0f} ms | {le['import_mlflow_s'] * 1000:.0f} ms | {le['ratio']:.3f}x | {le['target']} |"
    )
    print(
        f"| tracked cell (start, 10 params, 10 metrics, end, capture on) vs raw `with mlflow.start_run()` "
        f"| {tc['tracked_cell_s'] * 1000:.1f} ms | {tc['raw_start_run_s'] * 1000:.1f} ms | {tc['ratio']:.2f}x | {tc['target']} |"
    )
    print(
        f"| metrics/s from a loop, until stored ({ml['stored']}/{ml['logged']} stored) vs synchronous `mlflow.log_metric` "
        f"| {ml['rate_until_stored_per_s']:,.0f}/s | {ml['raw_sync_rate_per_s']:,.0f}/s | {ml['ratio']:.0f}x | {ml['target']} |"
    )
    lc, rt = results["live_chart"], results["runs_table"]
    print(
        f"| training loop ({lc['steps']} steps, 2 metrics a step) with the live chart on vs off "
        f"| {lc['chart_on_s']:.2f} s | {lc['chart_off_s']:.2f} s | {lc['ratio']:.3f}x | {lc['target']} |"
    )
    print(
        f"| runs table, first page of {rt['runs']:,} runs vs raw `MlflowClient.search_runs` for the page "
        f"| {rt['first_page_s'] * 1000:.1f} ms | {rt['raw_search_runs_s'] * 1000:.1f} ms | {rt['ratio']:.2f}x | {rt['target']} |"
    )
    print(
        f"| (for information) a new runs table: experiment list, controls and first page "
        f"| {rt['new_table_s'] * 1000:.1f} ms | {rt['raw_search_runs_s'] * 1000:.1f} ms | {rt['new_table_ratio']:.2f}x | |"
    )
    ok = ml["stored"] == ml["logged"]
    if not ok:
        print(f"LOST METRICS: logged {ml['logged']}, stored {ml['stored']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
