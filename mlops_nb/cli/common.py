"""What the ``mlops-nb`` sub-commands share: the ``--project`` and ``--executor`` options,
the project config of a job command, the Dask executor it names, warnings on stderr,
and SIGTERM taken as Ctrl-C while a job runs."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlops_nb.config import ProjectConfig, executor_name, resolve_config

__all__ = [
    "PROJECT_HELP",
    "cluster",
    "executor_option",
    "job_config",
    "project_option",
    "signals_handled",
    "warn",
]

PROJECT_HELP = "a folder inside the project (default: the current folder)"


def project_option(parser: argparse.ArgumentParser) -> None:
    """``--project DIR`` on a sub-command too, so it may come after the command
    (``mlops-nb runs --project DIR``) as well as before it. Its default is SUPPRESS: when
    absent here, argparse keeps what the main parser read (or ``None``); when given in
    both places, the one after the command wins."""
    parser.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS, help=PROJECT_HELP)


def executor_option(parser: argparse.ArgumentParser) -> None:
    """``--executor``: where the notebook jobs run."""
    parser.add_argument(
        "--executor",
        metavar="local|dask://HOST:PORT",
        help="run the jobs here (local, the default) or on a Dask cluster; default: the project's executor setting",
    )


def warn(line: str) -> None:
    """One ``mlops-nb: ...`` line on stderr."""
    print(f"mlops-nb: {line}", file=sys.stderr)


def job_config(args: argparse.Namespace, file: str) -> ProjectConfig:
    """The project config for a job command: ``--project``, else the file's folder."""
    path = Path(file)
    return resolve_config(args.project if args.project else (path.resolve().parent if path.exists() else None))


def cluster(name: str | None, config: ProjectConfig) -> Any:
    """The Dask executor ``--executor`` (or the project setting) names; ``None`` for local
    (each command then runs its jobs on its own workers)."""
    from mlops_nb.jobs.run.executors import executor_for  # the command's core: see cli/main.py

    where = executor_name(name, config)
    if where == "local":
        return None
    return executor_for(where, config, report=warn)


def _interrupt() -> None:
    raise KeyboardInterrupt  # running jobs' kernels are shut down and their runs end KILLED


@contextmanager
def signals_handled(
    on_signal: Callable[[], None] = _interrupt, signals: Sequence[signal.Signals] = (signal.SIGTERM,)
) -> Iterator[None]:
    """While the block runs, ``signals`` (default: SIGTERM) call ``on_signal`` (default:
    raise KeyboardInterrupt, so a job stopped by ``kill`` ends as one stopped by Ctrl-C);
    the previous handlers are put back after it."""

    def handler(signum: int, frame: object) -> None:
        on_signal()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
