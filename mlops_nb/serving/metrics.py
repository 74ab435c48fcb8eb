"""A model server's numbers: Prometheus metrics, and the last minute's rate and latency
that ``/health`` shows.

The metrics live on a registry of the server's own (never prometheus-client's global
one), so two servers in one process (tests, a notebook) never mix their counts. With
several uvicorn workers each worker counts in prometheus-client's multiprocess mode
(files in ``PROMETHEUS_MULTIPROC_DIR``, a folder the parent process makes before the
workers start), and ``/metrics`` sums the workers, whichever of them answers. The last
minute's figures (:class:`RecentRequests`) are kept in memory by each worker for itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["LATENCY_BUCKETS", "MULTIPROC_ENV", "RecentRequests", "ServerMetrics"]

#: Latency histogram buckets in seconds: a small model answers in about a millisecond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The variable prometheus-client reads (when it is imported) to count across processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class RecentRequests:
    """The requests of the last ``window`` seconds: rate, p50 and p99 latency.

    Appends come from the event loop only; :meth:`summary` prunes and sorts, for
    ``/health``, at most ``max_kept`` requests (the newest).
    """

    def __init__(
        self, window: float = 60.0, max_kept: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._kept: deque[tuple[float, float]] = deque(maxlen=max_kept)

    def add(self, latency_ms: float) -> None:
        """Count one request answered now, in ``latency_ms``."""
        self._kept.append((self.clock(), latency_ms))

    def summary(self) -> dict[str, float | None]:
        """``requests_per_second``, ``p50_ms`` and ``p99_ms`` over the window (``None``
        latencies when no request came)."""
        now = self.clock()
        while self._kept and self._kept[0][0] < now - self.window:
            self._kept.popleft()
        latencies = sorted(ms for _, ms in list(self._kept))
        n = len(latencies)
        if not n:
            return {"requests_per_second": 0.0, "p50_ms": None, "p99_ms": None}

        def at(q: float) -> float:
            return round(latencies[min(n - 1, int(q * n))], 3)

        return {"requests_per_second": round(n / self.window, 3), "p50_ms": at(0.5), "p99_ms": at(0.99)}


class ServerMetrics:
    """The server's Prometheus metrics, on a registry of its own.

    ``multiprocess_dir``: count in prometheus-client's multiprocess mode there (set it in
    the workers' environment as :data:`MULTIPROC_ENV` before prometheus-client is first
    imported). ``requests`` and ``errors`` are this process's totals, for ``/health``.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._requests = Counter(
            "mlops_nb_requests", "Scoring requests answered, by HTTP status", ["status"], registry=registry
        )
        self._errors = Counter(
            "mlops_nb_request_errors", "Scoring requests answered with 4xx or 5xx", registry=registry
        )
        self._latency = Histogram(
            "mlops_nb_request_latency_seconds",
            "Time from a scoring request's arrival to its answer",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._version = Gauge(
            "mlops_nb_model_version_info",
            "1 for the model version served",
            ["name", "version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._swaps = Counter("mlops_nb_swaps", "Model versions swapped in while serving", registry=registry)
        self._swap_failures = Counter(
            "mlops_nb_swap_failures", "Model versions that could not be swapped in", registry=registry
        )
        self._dropped = Counter(
            "mlops_nb_request_log_dropped",
            "Request log rows dropped (queue full or the log failing)",
            registry=registry,
        )
        self._dropped_seen = 0
        self._lock = threading.Lock()
        self._children: dict[int, Any] = {}
        self.requests = 0
        self.errors = 0

    def observe(self, status: int, seconds: float) -> None:
        """Count one scoring request answered with ``status`` in ``seconds``."""
        child = self._children.get(status)
        if child is None:
            child = self._children[status] = self._requests.labels(str(status))
        child.inc()
        self._latency.observe(seconds)
        self.requests += 1
        if status >= 400:
            self._errors.inc()
            self.errors += 1

    def served(self, name: str, version: str, previous: tuple[str, str] | None = None) -> None:
        """Say that ``name`` ``version`` is served now (and ``previous`` no more)."""
        if previous is not None and previous != (name, version):
            if self.multiprocess_dir:
                self._version.labels(*previous).set(0)  # files keep every series: zero it
            else:
                try:
                    self._version.remove(*previous)
                except KeyError:
                    pass
        self._version.labels(name, version).set(1)

    def swapped(self) -> None:
        """Count one swap."""
        self._swaps.inc()

    def swap_failed(self) -> None:
        """Count one version that could not be swapped in."""
        self._swap_failures.inc()

    def log_dropped(self, total: int) -> None:
        """Bring the dropped-rows counter up to the request log's ``total``."""
        with self._lock:
            delta, self._dropped_seen = total - self._dropped_seen, max(total, self._dropped_seen)
        if delta > 0:
            self._dropped.inc(delta)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type; summed over the
        workers in multiprocess mode (reads their files: call it off the event loop)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def process_exited(self) -> None:
        """In multiprocess mode, drop this process's live gauges (call at shutdown)."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            try:
                multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
            except OSError:
                pass
