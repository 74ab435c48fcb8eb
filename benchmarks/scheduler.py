"""Scheduler figures (issue 6), with 1,000 schedules in the project's SQLite schedule database:

- the CPU time (``time.process_time``) of one idle tick (nothing due): median of many;
- the latency from a due job's time to its start (``JobRecord.started - occurrence``) for
  a few jobs falling due under a running :class:`~mlops_nb.jobs.schedules.scheduler.Scheduler`
  with the default tick (0.5 s), and for information to its MLflow run's start.

Prints Markdown table rows and one JSON line, like benchmarks/jobs.py.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat

UTC = timezone.utc


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = x * 2\nprint(y)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "small.ipynb"
    nbformat.write(nb, path)
    return path


def main(schedules: int = 1000, ticks: int = 300, due_jobs: int = 5, spacing_s: float = 3.0) -> dict:
    from mlops_nb.config import resolve_config
    from mlops_nb.jobs.schedules.scheduler import Scheduler
    from mlops_nb.jobs.schedules.store import ScheduleStore
    from mlops_nb.store import get_client

    root = Path(tempfile.mkdtemp(prefix="mlops-nb-scheduler-"))
    (root / ".mlops").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    _notebook(root)
    config = resolve_config(root, environ={})
    client = get_client(config)  # the MLflow store exists before anything is timed
    store = ScheduleStore.for_project(config)

    start = time.perf_counter()
    for i in range(schedules):
        # Spread over the day and the week; none falls due during the benchmark.
        store.add(f"s{i:04d}", f"{i % 60} {(i // 60) % 24} * * {i % 7}", "small.ipynb", params={"x": str(i)})
    add_s = (time.perf_counter() - start) / schedules
    now = datetime.now(UTC)
    soon = [s for s in store.list() if s.next_run is not None and s.next_run < now + timedelta(minutes=2)]
    for s in soon:  # keep the idle ticks idle
        store.pause(s.name)

    scheduler = Scheduler(store, config)
    scheduler.tick()  # the first tick also looks for dead schedulers' jobs
    cpu = []
    for _ in range(ticks):
        t = time.process_time()
        started = scheduler.tick()
        cpu.append(time.process_time() - t)
        assert not started, "an idle tick started a job"
    cpu_ms = sorted(c * 1000 for c in cpu)

    # A few jobs fall due one after another under a running scheduler (default tick).
    s = store.schedules
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    due = []
    for k in range(due_jobs):
        name = f"s{k:04d}"
        when = base + timedelta(seconds=spacing_s * k)
        with store._write() as conn:
            conn.execute(s.update().where(s.c.name == name).values(paused=False, next_run=when.replace(tzinfo=None)))
        due.append(name)
    scheduler = Scheduler(store, config)
    scheduler.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            records = [r for n in due for r in store.history(n)]
            if len(records) == due_jobs and all(r.state == "succeeded" for r in records):
                break
            time.sleep(0.2)
    finally:
        scheduler.stop()
    records = [store.history(n)[0] for n in due]
    start_lat = [(r.started - r.occurrence).total_seconds() for r in records]
    run_lat = [client.get_run(r.run_id).info.start_time / 1000 - r.occurrence.timestamp() for r in records]
    return {
        "schedules": schedules,
        "add_ms": add_s * 1000,
        "idle_tick_cpu_ms_median": statistics.median(cpu_ms),
        "idle_tick_cpu_ms_p95": cpu_ms[int(0.95 * (len(cpu_ms) - 1))],
        "idle_tick_cpu_ms_max": cpu_ms[-1],
        "due_to_start_s": start_lat,
        "due_to_start_s_max": max(start_lat),
        "due_to_run_s": run_lat,
        "due_to_run_s_max": max(run_lat),
        "states": [r.state for r in records],
    }


if __name__ == "__main__":
    r = main()
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(
        f"| idle tick with {r['schedules']:,} schedules, CPU (median of 300; p95) | {r['idle_tick_cpu_ms_median']:.2f} ms ({r['idle_tick_cpu_ms_p95']:.2f} ms) | < 50 ms |"
    )
    print(
        f"| due job's time to its start, {len(r['due_to_start_s'])} jobs (max) | {r['due_to_start_s_max']:.2f} s | < 1 s |"
    )
    print(f"| (information) due time to its MLflow run's start (max) | {r['due_to_run_s_max']:.2f} s | |")
    print(json.dumps(r))
