"""Headless notebook jobs: one papermill execution is one MLflow run.

Jupyter-free core: parameters are checked against the notebook's ``parameters`` cell
before any kernel starts (:mod:`.params`), kernels are started ahead of need
(:mod:`.pool`), and :mod:`.runner` executes a notebook as a tracked job.
"""

from typing import Any

__all__ = ["run_notebook", "JobResult", "sweep", "SweepResult", "reproduce", "Reproduction", "KernelPool"]

_WHERE = {
    "run_notebook": "runner", "JobResult": "runner", "sweep": "sweep", "SweepResult": "sweep",
    "reproduce": "reproduce", "Reproduction": "reproduce", "KernelPool": "pool",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: the runner pulls in MLflow and papermill.
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
