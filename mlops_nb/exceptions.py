"""One exception tree for mlops-nb.

Every error a user can cause says what was wrong and what to do, in one line. The
exceptions pickle (they cross process boundaries in jobs), so each keeps its message as
its only argument.
"""

from __future__ import annotations

__all__ = [
    "AgentLostError",
    "ConfigError",
    "ExecutorUnreachableError",
    "KernelPoolError",
    "MlopsError",
    "NotAModelError",
    "NotFoundError",
    "PromotionRefusedError",
    "StoreError",
    "StoreUnreachableError",
    "UsageError",
    "one_line",
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


class PromotionRefusedError(MlopsError):
    """The promotion guard refused to move an alias (the REST API answers 409)."""


class NotAModelError(UsageError):
    """The object given to register is not a model mlops-nb can log."""


class KernelPoolError(MlopsError):
    """A pooled kernel could not be started, or none was ready in time."""


class AgentLostError(MlopsError):
    """The project's job agent went away in the middle of a job."""


def one_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of ``exc``'s message, for a one-line error: the exception's type
    name alone when the message is empty; ``with_type`` puts the type name first (for an
    error that is not mlops-nb's own, where the type says what went wrong)."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]
