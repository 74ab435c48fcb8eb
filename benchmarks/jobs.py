"""Job figures (issue 5), each against raw papermill measured in the same run:

- a sweep of 20 jobs of a small notebook with 2 workers vs the same 20 runs through
  ``papermill.execute_notebook`` one after another (both in-process, imports warm);
- one ``mlops-nb run`` of the small notebook vs the ``papermill`` command for it
  (both as fresh processes, as a user or CI runs them): with the project's job agent
  running (every run after the first), and for information without it
  (``MLOPS_NB_AGENT=off``: the first run, or CI).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = x * 2\nprint(y)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "small.ipynb"
    nbformat.write(nb, path)
    return path


def _timed(cmd: list[str], cwd: Path, **env: str) -> float:
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**environ, **env})
    return time.perf_counter() - start


def main(jobs: int = 20, workers: int = 2, repeats: int = 5) -> dict:
    import papermill

    from mlops_nb.config import resolve_config
    from mlops_nb.jobs.batch.sweep import sweep
    from mlops_nb.store import get_client

    root = Path(tempfile.mkdtemp(prefix="mlops-nb-jobs-"))
    (root / ".mlops").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    nb = _notebook(root)
    config = resolve_config(root, environ={})
    get_client(config)  # the store exists before anything is timed
    out = root / "out"
    out.mkdir()

    # Warm both paths once.
    papermill.execute_notebook(str(nb), str(out / "warm.ipynb"), parameters={"x": 0}, progress_bar=False, cwd=str(root))
    sweep(nb, {"x": "0"}, workers=1, config=config, experiment="warm")

    start = time.perf_counter()
    for i in range(jobs):
        papermill.execute_notebook(
            str(nb), str(out / f"seq-{i}.ipynb"), parameters={"x": i}, progress_bar=False, cwd=str(root)
        )
    sequential = time.perf_counter() - start

    start = time.perf_counter()
    result = sweep(nb, {"x": ",".join(str(i) for i in range(jobs))}, workers=workers, config=config, experiment="sweep")
    swept = time.perf_counter() - start
    assert result.ok and len(result.jobs) == jobs

    cli_ours = [sys.executable, "-m", "mlops_nb.cli", "run", str(nb), "-p", "x=3", "--json"]
    cli_raw = [
        sys.executable,
        "-m",
        "papermill",
        "--log-level",
        "WARNING",
        str(nb),
        str(out / "cli.ipynb"),
        "-p",
        "x",
        "3",
    ]
    agent = [sys.executable, "-m", "mlops_nb.cli", "agent"]
    subprocess.run([*agent, "start"], cwd=root, check=True, capture_output=True)
    try:
        # Warm the file cache, and the agent's kernel pool for this folder.
        (
            _timed(cli_ours, root, MLOPS_NB_AGENT="auto"),
            _timed(cli_raw, root),
            _timed(cli_ours, root, MLOPS_NB_AGENT="off"),
        )
        ours, raw, cold = [], [], []
        for _ in range(repeats):
            ours.append(_timed(cli_ours, root, MLOPS_NB_AGENT="auto"))
            raw.append(_timed(cli_raw, root))
            cold.append(_timed(cli_ours, root, MLOPS_NB_AGENT="off"))
    finally:
        subprocess.run([*agent, "stop"], cwd=root, check=True, capture_output=True)
    return {
        "sweep_s": swept,
        "sequential_s": sequential,
        "sweep_ratio": swept / sequential,
        "run_cli_s": statistics.median(ours),
        "papermill_cli_s": statistics.median(raw),
        "run_ratio": statistics.median(ours) / statistics.median(raw),
        "run_cold_s": statistics.median(cold),
        "run_cold_ratio": statistics.median(cold) / statistics.median(raw),
    }


if __name__ == "__main__":
    r = main()
    print(
        f"| sweep of 20 jobs, 2 workers vs 20 `papermill.execute_notebook` one after another | {r['sweep_s']:.1f} s | {r['sequential_s']:.1f} s | {r['sweep_ratio']:.2f}x | <= 0.5 |"
    )
    print(
        f"| one `mlops-nb run` vs the `papermill` command, small notebook (job agent running) | {r['run_cli_s']:.2f} s | {r['papermill_cli_s']:.2f} s | {r['run_ratio']:.2f}x | <= 1.0 |"
    )
    print(
        f"| (information) the same without the agent (`MLOPS_NB_AGENT=off`: a first run, CI) | {r['run_cold_s']:.2f} s | {r['papermill_cli_s']:.2f} s | {r['run_cold_ratio']:.2f}x | |"
    )
    print(json.dumps(r))
