"""Cluster figure (issue 7): a sweep on two single-threaded Dask workers against the same
sweep on one worker, in the same run, both logging to `mlflow server` on a private
PostgreSQL (tests/services.py starts everything on 127.0.0.1 and stops it).

Each job is a small scikit-learn fit (about a second of CPU), so the sweep is real work,
not sleep. Workers are warm (a first sweep runs before anything is timed), as a team's
long-lived workers are. Target: two workers >= 1.6x the throughput of one.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

JOBS = 8


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seed = 0\nn_estimators = 60")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "from sklearn.datasets import make_classification\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.model_selection import cross_val_score\n"
            "X, y = make_classification(n_samples=1500, n_features=20, random_state=seed)\n"
            "model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1, random_state=seed)\n"
            "score = cross_val_score(model, X, y, cv=3).mean()"
        ),
        nbformat.v4.new_code_cell("import mlops_nb as mnb\nmnb.log_metric('accuracy', score)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "fit.ipynb"
    nbformat.write(nb, path)
    return path


def _sweep_on(cluster_address: str, nb: Path, config, experiment: str, offset: int) -> float:
    from mlops_nb.jobs.batch.sweep import sweep
    from mlops_nb.jobs.run.executors import DaskExecutor

    with DaskExecutor(cluster_address) as executor:
        start = time.perf_counter()
        seeds = ",".join(str(offset + i) for i in range(JOBS))
        result = sweep(nb, {"seed": seeds}, config=config, experiment=experiment, executor=executor, metric="accuracy")
        took = time.perf_counter() - start
    assert result.ok and len(result.jobs) == JOBS, [j.error for j in result.jobs if not j.ok]
    return took


def main(repeats: int = 3) -> dict:
    from services import dask_cluster, mlflow_server, postgres

    from mlops_nb.config import resolve_config
    from mlops_nb.store import get_client

    base = Path(tempfile.mkdtemp(prefix="mlops-nb-cluster-"))
    with postgres(base) as pg, mlflow_server(pg.url("mlflow"), base / "artifacts") as server:
        root = base / "proj"
        (root / ".mlops").mkdir(parents=True)
        (root / "pyproject.toml").write_text(
            f"[project]\nname = 'b'\n\n[tool.mlops-nb]\ntracking_uri = '{server.uri}'\n"
        )
        nb = _notebook(root)
        config = resolve_config(root, environ={})
        get_client(config)
        one, two = [], []
        for workers, times in ((1, one), (2, two)):
            with dask_cluster(n_workers=workers, nthreads=1, cwd=root) as cluster:
                _sweep_on(cluster.address, nb, config, "warm", 1000)  # imports and kernels warm on every worker
                for r in range(repeats):
                    times.append(_sweep_on(cluster.address, nb, config, f"w{workers}", 100 * r))
    t1, t2 = statistics.median(one), statistics.median(two)
    return {
        "jobs": JOBS,
        "one_worker_s": t1,
        "two_workers_s": t2,
        "one_worker_jobs_per_s": JOBS / t1,
        "two_workers_jobs_per_s": JOBS / t2,
        "throughput_ratio": t1 / t2,
        "one_worker_runs_s": one,
        "two_workers_runs_s": two,
    }


if __name__ == "__main__":
    r = main()
    print(
        f"| sweep of {r['jobs']} scikit-learn jobs on 2 single-threaded Dask workers vs 1 (PostgreSQL-backed mlflow server) "
        f"| {r['two_workers_s']:.1f} s | {r['one_worker_s']:.1f} s | {r['throughput_ratio']:.2f}x throughput | >= 1.6 |"
    )
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(r, indent=1))
    print(json.dumps(r))
