"""Headless notebook jobs: one papermill execution is one MLflow run.

Jupyter-free core, in three wings, each built only on the ones before it:

- :mod:`.run`: one notebook as one job: parameters checked once against the notebook's
  ``parameters`` cell, kernels started ahead of need, the execution, and the executors
  that run a job here, on a Dask cluster or through the project's agent;
- :mod:`.batch`: sweeps and pipelines, built on :mod:`.run`;
- :mod:`.schedules`: schedules, the scheduler and the job history, built on :mod:`.batch`.
"""

from typing import Any

__all__ = ["JobResult", "KernelPool", "Reproduction", "SweepResult", "reproduce", "run_notebook", "sweep"]

_WHERE = {
    "run_notebook": "run.execution",
    "JobResult": "run.execution",
    "sweep": "batch.sweep",
    "SweepResult": "batch.sweep",
    "reproduce": "run.reproduce",
    "Reproduction": "run.reproduce",
    "KernelPool": "run.pool",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: the execution pulls in MLflow and papermill.
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
