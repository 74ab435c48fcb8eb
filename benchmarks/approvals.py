"""Approval figures (issue 17): what listing the pending approvals costs as models grow.

An embedded SQLite store in a temporary folder gets N registered models (3 versions
each, no model files: only tags are read), 3 of them with requests waiting (one model
asks for two aliases), made through :func:`mlops_nb.registry.promote` as a loop makes
them. ``pending_approvals`` is timed at N = 50 and N = 450 (median of 15 calls, after
one warm-up), beside the listing it replaced: every registered model read, then a
version search per alias asked for (``scan``, kept here for the comparison only).

    .venv/bin/python benchmarks/approvals.py [--models 50 450] [--repeat 15]

Prints a table and writes ``benchmarks/results/approvals.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REQUESTS = (("bulk-0007", "champion"), ("bulk-0031", "champion"), ("bulk-0031", "prod"))


def _client(root: Path) -> Any:
    from mlops_nb.config import resolve_config
    from mlops_nb.store import get_client

    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "bench"\n')
    return get_client(resolve_config(root, environ={}))


def _grow(client: Any, root: Path, runs: tuple[str, str], start: int, stop: int) -> None:
    """Models bulk-START .. bulk-(STOP-1), each with v1 (accuracy 0.8) and v2, v3 (0.9)."""
    for i in range(start, stop):
        name = f"bulk-{i:04d}"
        client.create_registered_model(name)
        for k in range(3):
            client.create_model_version(name, str(root / "no-files"), run_id=runs[min(k, 1)])


def _ask(client: Any) -> None:
    from mlops_nb.registry import promote

    for name, alias in REQUESTS:
        client.set_registered_model_alias(name, "challenger", "2")
        if alias == "champion":
            client.set_registered_model_alias(name, "champion", "1")
        assert promote(client, name, "accuracy", to_alias=alias, who="bench", approval=("champion", "prod")).pending


def _scan(client: Any) -> list[tuple[str, str, str]]:
    """The listing before the index: read every model, then search per alias asked for."""
    from mlops_nb.tags import APPROVAL_PENDING_PREFIX as P

    models, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            break
    aliases = sorted({k[len(P) :] for m in models for k in m.tags if k.startswith(P)})
    found = []
    for alias in aliases:
        for mv in client.search_model_versions(f"tags.`{P + alias}` LIKE '%'", max_results=10000):
            found.append((mv.name, str(mv.version), alias))
    return found


def _median_ms(call: Any, repeat: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``call()``: on a busy machine the CPU time is
    the steadier figure (SQLite runs in this process)."""
    call()
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return round(statistics.median(wall), 1), round(statistics.median(cpu), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[50, 450])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    from mlops_nb.registry import pending_approvals

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        client = _client(root)
        exp = client.create_experiment("bench")
        runs = []
        for accuracy in (0.8, 0.9):
            run = client.create_run(exp)
            client.log_metric(run.info.run_id, "accuracy", accuracy)
            runs.append(run.info.run_id)
        have = 0
        for count in sorted(args.models):
            _grow(client, root, (runs[0], runs[1]), have, count)
            if have == 0:
                _ask(client)
            have = count
            found = sorted((p.name, p.alias) for p in pending_approvals(client))
            assert found == sorted(REQUESTS), found
            assert sorted((n, a) for n, _, a in _scan(client)) == sorted(REQUESTS)
            (wall, cpu), (scan_wall, scan_cpu) = (
                _median_ms(lambda: pending_approvals(client), args.repeat),
                _median_ms(lambda: _scan(client), args.repeat),
            )
            rows.append(
                {
                    "models": count,
                    "requests": len(REQUESTS),
                    "pending_approvals_ms": wall,
                    "pending_approvals_cpu_ms": cpu,
                    "scan_ms": scan_wall,
                    "scan_cpu_ms": scan_cpu,
                }
            )
    print("median ms (wall / CPU)")
    print(f"{'models':>7} {'requests':>9} {'pending_approvals':>20} {'read every model':>20}")
    for row in rows:
        print(
            f"{row['models']:>7} {row['requests']:>9} "
            f"{row['pending_approvals_ms']:>10.1f} / {row['pending_approvals_cpu_ms']:>6.1f} "
            f"{row['scan_ms']:>10.1f} / {row['scan_cpu_ms']:>6.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "approvals.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
