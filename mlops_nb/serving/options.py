"""The options of ``mlops-nb serve``, checked before anything is read or loaded.

Kept apart from :mod:`mlops_nb.serving.server` (which imports MLflow and the web stack)
so that a command line, a magic or a panel refuses bad options in a fraction of a second.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from mlops_nb.exceptions import UsageError
from mlops_nb.serving.source import parse_source

__all__ = ["LOCAL_HOSTS", "TOKEN_ENV", "ServeOptions", "serve_options"]

#: Addresses a server may bind without a token.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Where ``--token`` may come from instead (it then stays out of ``ps`` listings).
TOKEN_ENV = "MLOPS_NB_SERVE_TOKEN"


@dataclass(frozen=True)
class ServeOptions:
    """The options of one server, checked (build them with :func:`serve_options`)."""

    model: str
    host: str = "127.0.0.1"
    port: int = 5000
    token: str | None = None
    no_auth: bool = False
    poll: float = 5.0
    workers: int = 1
    max_batch_size: int = 1
    max_wait_ms: float = 5.0
    sample: float = 1.0
    log: bool = True
    max_body_mb: float = 16.0


def _number(value: Any, option: str, kind: type, low: float, high: float, default: Any) -> Any:
    """``value`` (text or number) as ``kind`` within [low, high], or a one-line
    :class:`UsageError` naming ``option``."""
    if value is None:
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        number = kind(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or (kind is float and not math.isfinite(number)) or not low <= number <= high:
        raise UsageError(f"{option} must be {what} from {low:g} to {high:g}, not {value!r}")
    return number


def serve_options(
    model: str,
    *,
    host: str | None = None,
    port: Any = None,
    token: str | None = None,
    no_auth: bool = False,
    poll: Any = None,
    workers: Any = None,
    max_batch_size: Any = None,
    max_wait_ms: Any = None,
    sample: Any = None,
    log: bool = True,
    max_body_mb: Any = None,
) -> ServeOptions:
    """Checked options for a server; numbers may be given as text (from a command line).

    The token comes from ``token``, else :data:`TOKEN_ENV`. Binding anything but
    :data:`LOCAL_HOSTS` needs a token or an explicit ``no_auth``. Every problem is one
    :class:`UsageError` line, raised before anything is read or loaded.
    """
    host = (host or "127.0.0.1").strip()
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    if token is not None and (not token.strip() or any(c.isspace() for c in token)):
        raise UsageError("--token must be a non-empty text without spaces")
    if token and no_auth:
        raise UsageError("give --token or --no-auth, not both")
    if host not in LOCAL_HOSTS and not token and not no_auth:
        raise UsageError(
            f"binding {host} lets other machines call the model: give --token TOKEN (or set {TOKEN_ENV}), "
            "or --no-auth to serve it to anyone who can reach this address"
        )
    parse_source(model)  # a bad reference is a usage error too
    return ServeOptions(
        model=model,
        host=host,
        port=_number(port, "--port", int, 0, 65535, 5000),
        token=token,
        no_auth=no_auth,
        poll=_number(poll, "--poll", float, 0.05, 86400, 5.0),
        workers=_number(workers, "--workers", int, 1, 64, 1),
        max_batch_size=_number(max_batch_size, "--max-batch-size", int, 1, 100_000, 1),
        max_wait_ms=_number(max_wait_ms, "--max-wait-ms", float, 0, 10_000, 5.0),
        sample=_number(sample, "--sample", float, 0, 1, 1.0),
        log=log,
        max_body_mb=_number(max_body_mb, "--max-body-mb", float, 0.001, 4096, 16.0),
    )
