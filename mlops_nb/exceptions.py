"""One exception tree for mlops-nb.

Every error a user can cause says what was wrong and what to do, in one line. The
exceptions pickle (they cross process boundaries in jobs), so each keeps its message as
its only argument.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExecutorUnreachableError",
    "MlopsError",
    "NotFoundError",
    "StoreError",
    "StoreUnreachableError",
    "UsageError",
]


class MlopsError(Exception):
    """Base of every error mlops-nb raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(MlopsError):
    """The project's configuration (environment or ``[tool.mlops-nb]``) is invalid."""


class UsageError(MlopsError):
    """A command, magic or call was given arguments it cannot use."""


class NotFoundError(MlopsError):
    """A named thing (variable, run, experiment) does not exist."""


class StoreError(MlopsError):
    """The tracking store failed to read or write."""


class StoreUnreachableError(StoreError):
    """The tracking store cannot be reached at all."""


class ExecutorUnreachableError(MlopsError):
    """The cluster that runs jobs (a Dask scheduler) cannot be reached."""
