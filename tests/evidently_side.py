"""Evidently's numbers on our data, from Evidently's own interpreter.

Evidently 0.7.23 does not import with pandas 3, which the project's venv has, so it lives
in a venv of its own (``.venv/evidently``, made by ``make install``; ``make test`` names it
in ``MLOPS_NB_EVIDENTLY_PYTHON``). This file is both sides of that border:

- in the project's venv, :func:`run_evidently` writes the data frames as ``.npz`` files
  (exact floats, no pickle), starts this file in Evidently's interpreter with a list of
  jobs as JSON on stdin, and returns the JSON it prints;
- in Evidently's venv, :func:`serve` runs the jobs: ``preset`` (a DataDriftPreset report:
  column -> [method, value], and the median seconds of ``repeats`` runs), ``stattest``
  (one of Evidently's stattest functions on two columns), ``default`` (the name of the
  test Evidently picks for two columns).

It imports neither mlops_nb nor (outside :func:`serve`) Evidently. The tests and
benchmarks/monitor.py share it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: Evidently's display names of its methods -> ours.
METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chi2",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
#: Our method names -> Evidently's stattest modules and functions.
STATTESTS = {
    "ks": ("ks_stattest", "_ks_stat_test"),
    "chi2": ("chisquare_stattest", "_chi_stat_test"),
    "z": ("z_stattest", "_z_stat_test"),
    "wasserstein": ("wasserstein_distance_norm", "_wasserstein_distance_norm"),
    "jensenshannon": ("jensenshannon", "_jensenshannon"),
    "psi": ("psi", "_psi"),
}


class EvidentlyMissing(RuntimeError):
    """Evidently's interpreter is not there (its message is one line)."""


def evidently_python() -> Path:
    """Evidently's interpreter: ``MLOPS_NB_EVIDENTLY_PYTHON``, else ``evidently/bin/python``
    inside the running venv (where ``make install`` puts it)."""
    named = os.environ.get("MLOPS_NB_EVIDENTLY_PYTHON")
    python = Path(named) if named else Path(sys.prefix) / "evidently" / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise EvidentlyMissing(
            f"Evidently's interpreter {python} is missing: run `make install` (it makes .venv/evidently)"
        )
    return python


def save_frame(frame: Any, path: Path) -> None:
    """The frame's columns as arrays in an ``.npz`` file (text columns as unicode)."""
    arrays = {}
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype == object or values.dtype.kind not in "biuf":
            values = np.asarray(values, dtype=str)
        arrays[str(name)] = values
    np.savez(path, **arrays)


def run_evidently(datasets: dict[str, Any], jobs: list[dict[str, Any]], timeout: float = 900) -> dict[str, Any]:
    """Run ``jobs`` on the named data frames in Evidently's interpreter; its JSON answer:
    ``{"evidently": version, "results": {job id: result}}``."""
    python = evidently_python()
    with tempfile.TemporaryDirectory(prefix="mlops-nb-evidently-") as tmp:
        paths = {}
        for name, frame in datasets.items():
            paths[name] = str(Path(tmp) / f"{name}.npz")
            save_frame(frame, Path(paths[name]))
        request = json.dumps({"datasets": paths, "jobs": jobs})
        proc = subprocess.run(
            [str(python), "-I", __file__], input=request, capture_output=True, text=True, timeout=timeout, check=False
        )
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Evidently's side failed ({python}): {last}")
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- Evidently's side


def _load(path: str) -> Any:
    import pandas as pd

    with np.load(path, allow_pickle=False) as npz:
        return pd.DataFrame({name: npz[name] for name in npz.files})


def _preset(reference: Any, current: Any, repeats: int) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    times, values = [], {}
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        times.append(time.perf_counter() - start)
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            values[config["column"]] = [METHODS[config["method"]], float(metric["value"])]
    return {"values": values, "seconds": statistics.median(times), "times": times}


def _job(job: dict[str, Any], frames: dict[str, Any]) -> Any:
    import importlib

    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    if job["op"] == "preset":
        return _preset(frames[job["reference"]], frames[job["current"]], int(job.get("repeats", 1)))
    ref = frames[job["reference"][0]][job["reference"][1]]
    cur = frames[job["current"][0]][job["current"][1]]
    kind = ColumnType.Numerical if job["kind"] == "numeric" else ColumnType.Categorical
    if job["op"] == "default":
        return get_stattest(ref, cur, kind, None).name
    module, function = STATTESTS[job["method"]]
    test = getattr(importlib.import_module(f"evidently.legacy.calculations.stattests.{module}"), function)
    return float(test(ref, cur, kind, job.get("threshold", 0.05))[0])


def serve() -> None:
    """Read the request on stdin, run its jobs, print the answer as JSON."""
    import evidently

    request = json.load(sys.stdin)
    frames = {name: _load(path) for name, path in request["datasets"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # chi2 divides by zero for a new category, by design
        results = {str(job["id"]): _job(job, frames) for job in request["jobs"]}
    json.dump({"evidently": evidently.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    serve()
