"""Pipeline figure (issue 6): a fully cached re-run of the example pipeline
(``notebooks/pipeline.yaml``: a 2-job training sweep, a refit registered as @challenger,
evaluation, promotion) against its first run, measured in the same benchmark run on a
fresh project:

- in-process ``run_pipeline`` (imports warm): the first run, then the median of re-runs
  in which every step is reused;
- for information, ``mlops-nb pipeline run`` as a fresh process (``MLOPS_NB_AGENT=off``,
  as CI runs it) on a second fresh project: its first run, then cached re-runs. A fresh
  process pays Python and MLflow imports (about 2 s) whatever the cache says.

Nothing here asserts: the numbers go into the README.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("train.ipynb", "evaluate.ipynb", "promote.ipynb", "pipeline.yaml")


def _project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-pipeline-"))
    (root / ".mlops").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    for name in FILES:
        shutil.copy(REPO / "notebooks" / name, root / name)
    return root


def _cli(root: Path) -> float:
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlops_nb.cli", "pipeline", "run", "pipeline.yaml", "--json"],
        cwd=root,
        check=True,
        capture_output=True,
        env={**environ, "MLOPS_NB_AGENT": "off"},
    )
    return time.perf_counter() - start


def main(repeats: int = 3) -> dict:
    from mlops_nb.config import resolve_config
    from mlops_nb.jobs.batch.pipeline import run_pipeline
    from mlops_nb.store import get_client

    root = _project()
    config = resolve_config(root, environ={})
    get_client(config)  # the store exists before anything is timed
    start = time.perf_counter()
    first = run_pipeline(root / "pipeline.yaml", config=config)
    first_s = time.perf_counter() - start
    assert first.ok and all(s.state == "ran" for s in first.steps), first.to_dict()
    cached = []
    for _ in range(repeats):
        start = time.perf_counter()
        again = run_pipeline(root / "pipeline.yaml", config=config)
        cached.append(time.perf_counter() - start)
        assert all(s.state == "cached" for s in again.steps), again.to_dict()

    cli_root = _project()
    cli_first = _cli(cli_root)
    cli_cached = [_cli(cli_root) for _ in range(repeats)]
    cached_s, cli_cached_s = statistics.median(cached), statistics.median(cli_cached)
    return {
        "steps": len(first.steps),
        "first_s": first_s,
        "cached_s": cached_s,
        "ratio": cached_s / first_s,
        "cli_first_s": cli_first,
        "cli_cached_s": cli_cached_s,
        "cli_ratio": cli_cached_s / cli_first,
    }


if __name__ == "__main__":
    r = main()
    print(
        f"| fully cached re-run of the example pipeline vs its first run ({r['steps']} steps, in-process `run_pipeline`) | {r['cached_s']:.2f} s | {r['first_s']:.1f} s | {r['ratio']:.3f}x | <= 0.1 |"
    )
    print(
        f"| (information) the same with `mlops-nb pipeline run` as a fresh process (`MLOPS_NB_AGENT=off`) | {r['cli_cached_s']:.2f} s | {r['cli_first_s']:.1f} s | {r['cli_ratio']:.3f}x | |"
    )
    print(json.dumps(r))
