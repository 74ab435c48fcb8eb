"""Kernels started ahead of need, one job each.

A :class:`KernelPool` keeps ``size`` kernels started and ready in the background, so a
job takes a kernel that has already answered ``kernel_info`` instead of paying the
kernel start itself (papermill#326, #583). A kernel serves one job and is then shut
down, so a job is as isolated as a fresh papermill run: its own process, its own
variables, its ``atexit`` handlers run at the end.

Everything a kernel is started with is fixed before its job is known: the kernel name,
the working folder, the environment. A job that needs another kernel name or working
folder uses another pool. What differs per job reaches the kernel through a file: each
kernel is started with ``MLOPS_NB_JOB_FILE`` naming a path of its own in the pool's
private folder, and the runner writes the job there before it executes the notebook.
Python kernels load :mod:`mlops_nb.fluent`, which reads that file before the first cell,
so that even a notebook that never imports mlops_nb writes its ``mlflow.*`` calls into
the job's run.

On POSIX the kernels talk over Unix sockets in that private folder (zmq's ``ipc``
transport) rather than TCP ports, so parallel starts, in this process or in others,
cannot collide on a port ("Address already in use", papermill#511, #239), and no kernel
listens on the network.

:class:`PooledEngine` is the papermill engine ``mlops-nb`` (``papermill --engine
mlops-nb``): it runs each notebook on a pooled kernel.
"""

from __future__ import annotations

import atexit
import collections
import functools
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import KernelPoolError, UsageError

# The environment variable naming a pooled kernel's job file; the kernel reads it there.
from mlops_nb.fluent import JOB_FILE_ENV

# jupyter_client (about 0.1 s to import) loads when the first kernel starts: the
# `mlops-nb run` command that hands its job to the agent imports this module and starts
# no kernel, and its start-up is a measured figure (README: Figures).
if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager
    from papermill.engines import NBClientEngine

    #: The papermill engine ``mlops-nb``; built on first use (see ``__getattr__``).
    PooledEngine: type[NBClientEngine]

__all__ = ["JOB_FILE_ENV", "KERNEL_EXTENSION", "KernelPool", "KernelPoolError", "PooledEngine", "PooledKernel"]

#: The IPython extension every pooled Python kernel loads: it reads the job file.
KERNEL_EXTENSION = "mlops_nb.fluent"

# A Unix socket path longer than this does not fit in sockaddr_un (104 bytes on macOS,
# 108 on Linux, with a "-N" suffix added per channel).
_MAX_IPC_PATH = 100


@functools.cache
def _pooled_kernel_manager_class() -> type[KernelManager]:
    from jupyter_client.manager import KernelManager

    class PooledKernelManager(KernelManager):
        """A kernel manager whose clients are asynchronous, as nbclient and papermill
        need, and remembered: nbclient leaves the client it opens on a kernel it does not
        own running (its heartbeat thread and zmq context), so discarding the kernel
        closes them."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(client_class="jupyter_client.asynchronous.AsyncKernelClient", **kwargs)
            self._clients: list[Any] = []
            self._clients_lock = threading.Lock()

        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            with self._clients_lock:
                self._clients.append(kc)
            return kc

        def close_clients(self) -> None:
            with self._clients_lock:
                clients, self._clients = self._clients, []
            for kc in clients:
                kc.stop_channels()

    return PooledKernelManager


class PooledKernel:
    """A started, ready kernel for one job.

    Hand :attr:`km` to papermill (``papermill.execute_notebook(..., km=kernel.km)``) or
    nbclient; neither shuts down a kernel it was given. Write the job description to
    :attr:`job_file` before executing. Call :meth:`discard` after the job, whether it
    succeeded or not, or use the kernel as a context manager.
    """

    def __init__(self, km: KernelManager, job_file: str, pool: KernelPool) -> None:
        #: The kernel's manager; its kernel is running and has answered ``kernel_info``.
        self.km: KernelManager = km
        #: Where the kernel reads its job (``$MLOPS_NB_JOB_FILE``); not created here.
        self.job_file: str = job_file
        self._pool = pool
        self._lock = threading.Lock()
        self._discarded = False

    def discard(self, now: bool = False) -> None:
        """Shut the kernel down and remove its job file. Safe to call twice.

        By default the kernel is asked to shut down, as papermill does, so that code
        registered with ``atexit`` in the kernel (which ends open tracking runs) runs;
        it is killed if it has not exited within ``km.shutdown_wait_time``.
        ``now=True`` kills it at once.
        """
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
        try:
            km = self.km
            close_clients = getattr(km, "close_clients", None)  # a pooled kernel's manager
            if close_clients is not None:
                close_clients()
            if km.has_kernel:
                try:
                    km.shutdown_kernel(now=now or not km.is_alive())
                except RuntimeError:
                    # Killed under us between the check and the shutdown: clean up.
                    km.cleanup_resources()
            try:
                os.remove(self.job_file)
            except FileNotFoundError:
                pass
        finally:
            self._pool._released(self)

    @property
    def discarded(self) -> bool:
        """Whether :meth:`discard` was called."""
        return self._discarded

    def __enter__(self) -> PooledKernel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def __repr__(self) -> str:
        state = "discarded" if self._discarded else "live"
        return f"<PooledKernel {self.km.kernel_name} {state} job_file={self.job_file!r}>"


class KernelPool:
    """Keeps ``size`` kernels started ahead of need, in background threads.

    Parameters
    ----------
    kernel_name:
        The kernel spec every kernel of the pool starts (``jupyter kernelspec list``).
    size:
        How many ready kernels to keep waiting. While threads wait in :meth:`acquire`,
        one more kernel is started for each of them, so ``N`` threads acquiring at once
        wait for one kernel start, not ``N`` in a row.
    cwd:
        The working folder of every kernel (papermill's ``--cwd``); the current folder
        when the pool is created if omitted. A job that needs another folder, or
        another kernel name, needs another pool.
    env:
        Variables set in every kernel, over ``os.environ`` as it is when each kernel
        starts: a kernel started ahead does not see later changes to ``os.environ``.
        Give a job its own values through :attr:`PooledKernel.job_file`.
    inherit_environ:
        ``False`` starts kernels with ``env`` alone instead of over ``os.environ`` (the
        job agent gives kernels the environment of the command that sent the job).
    startup_timeout:
        Seconds a kernel may take to start and answer ``kernel_info``.

    The pool is safe to use from several threads. :meth:`close` it (or use it as a
    context manager) to shut the kernels still waiting down.
    """

    def __init__(
        self,
        kernel_name: str = "python3",
        size: int = 1,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60,
        inherit_environ: bool = True,
    ) -> None:
        if size < 0:
            raise UsageError(f"kernel pool size must be 0 or more, not {size}")
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(kernel_name)
        except NoSuchKernel:
            raise UsageError(
                f"no kernel named {kernel_name!r}: `jupyter kernelspec list` shows the installed ones"
            ) from None
        folder = os.path.abspath(cwd if cwd is not None else os.getcwd())
        if not os.path.isdir(folder):
            raise UsageError(f"kernel pool working folder {folder} does not exist: create it or pass another cwd")
        self.kernel_name = kernel_name
        self.size = size
        # Resolved now: the process's current folder may change later (papermill's
        # --cwd is a chdir), and kernels started ahead must not follow it.
        self.cwd = folder
        self.env = dict(env or {})
        self.inherit_environ = inherit_environ
        self.startup_timeout = startup_timeout
        # ipykernel's default history database is shared by every kernel and locks
        # under parallel kernels; nbclient gives the kernels it starts this one too.
        ipykernel = any("ipykernel" in arg for arg in spec.argv)
        self._extra_arguments = ["--HistoryManager.hist_file=:memory:"] if ipykernel else []
        if ipykernel:
            # Before the first cell, the kernel takes up its job so that the notebook's own
            # mlflow.* calls land in the job's run and store (see mlops_nb.fluent). A kernel
            # whose Python lacks mlops_nb logs that it could not load it, and runs on.
            self._extra_arguments.append(f"--ext={KERNEL_EXTENSION}")
        # Private (mode 0700): connection files with their keys, Unix sockets, job files.
        self._dir = tempfile.mkdtemp(prefix="mlops-nb-kernels-")
        self._ipc = os.name == "posix" and len(os.path.join(self._dir, "k-" + "0" * 12 + "-99")) <= _MAX_IPC_PATH
        self._cond = threading.Condition()
        self._ready: collections.deque[PooledKernel] = collections.deque()
        self._starting = 0
        self._waiting = 0
        self._out: set[PooledKernel] = set()
        self._failures: collections.deque[BaseException] = collections.deque()
        self._closed = False
        with self._cond:
            self._fill()

    # ------------------------------------------------------------------ public

    def acquire(self, timeout: float | None = None) -> PooledKernel:
        """A started kernel that has answered ``kernel_info``, for one job.

        A replacement starts in the background at once. A kernel that died while it
        waited in the pool is discarded and another handed out.

        Raises
        ------
        KernelPoolError
            A kernel failed to start, or none was ready within ``timeout`` seconds.
        UsageError
            The pool is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        dead: list[PooledKernel] = []
        try:
            with self._cond:
                self._check_open()
                self._waiting += 1
                try:
                    return self._take(deadline, timeout, dead)
                finally:
                    self._waiting -= 1
                    if not self._waiting:
                        self._failures.clear()  # nobody left to report them to
                    self._fill()
        finally:
            for kernel in dead:
                kernel.discard(now=True)

    def close(self) -> None:
        """Shut down every kernel not yet acquired; wait for kernels being started.

        Acquired kernels stay with whoever acquired them until they are discarded.
        Safe to call twice.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        for kernel in idle:
            kernel.discard(now=True)
        with self._cond:
            # A start that finishes now sees the pool closed and shuts its kernel down.
            self._cond.wait_for(lambda: self._starting == 0, timeout=self.startup_timeout + 10)
            self._remove_dir_if_unused()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def idle(self) -> int:
        """How many started kernels are waiting to be acquired."""
        return len(self._ready)

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<KernelPool {self.kernel_name} cwd={self.cwd!r} size={self.size} "
            f"idle={len(self._ready)} starting={self._starting}{' closed' if self._closed else ''}>"
        )

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the kernel pool is closed: create a new KernelPool")

    def _take(self, deadline: float | None, timeout: float | None, dead: list[PooledKernel]) -> PooledKernel:
        """Wait for a live ready kernel; called with the lock held, as one of the
        waiters. Kernels found dead go to ``dead`` for the caller to discard."""
        while True:
            while self._ready:
                kernel = self._ready.popleft()
                self._out.add(kernel)
                if kernel.km.is_alive():
                    return kernel
                dead.append(kernel)
            if self._failures:
                error = self._failures.popleft()
                raise KernelPoolError(f"a {self.kernel_name} kernel failed to start: {error}") from error
            self._fill()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise KernelPoolError(
                    f"no {self.kernel_name} kernel was ready within {timeout:g} s: "
                    "allow a longer timeout or keep more kernels ready (size)"
                )
            self._cond.wait(remaining)
            self._check_open()

    def _fill(self) -> None:
        """Start kernels until ready + starting covers the pool size plus the waiters.
        Called with the lock held."""
        if self._closed:
            return
        wanted = self.size + self._waiting - len(self._ready) - self._starting
        for _ in range(max(wanted, 0)):
            self._starting += 1
            thread = threading.Thread(target=self._start_one, name="mlops-nb-kernel-start", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # interpreter shutting down, or out of threads
                self._starting -= 1
                self._failures.append(exc)
                self._cond.notify_all()
                return

    def _start_one(self) -> None:
        """Body of a starter thread: start one kernel and put it in the pool."""
        try:
            self._start_and_add()
        finally:
            # The sync KernelManager ran its coroutines on this thread's event loop;
            # the thread ends here, so close the loop rather than leak it.
            _close_thread_loop()

    def _start_and_add(self) -> None:
        kernel: PooledKernel | None = None
        error: BaseException | None = None
        try:
            kernel = self._launch()
        except BaseException as exc:
            error = exc
        with self._cond:
            if kernel is not None and not self._closed:
                self._ready.append(kernel)
            elif error is not None and self._waiting and not self._closed:
                # For a waiter to raise; with none waiting, the next acquire retries.
                self._failures.append(error)
            if kernel is None or not self._closed:
                self._starting -= 1
                self._cond.notify_all()
                return
            self._out.add(kernel)
        # Closed while this kernel started. Still counted as starting until it is shut
        # down, so that close(), which waits for starts, returns with no kernel left.
        kernel.discard(now=True)
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()
            self._remove_dir_if_unused()

    def _launch(self) -> PooledKernel:
        name = "k-" + uuid.uuid4().hex[:12]
        options: dict[str, Any] = {
            "kernel_name": self.kernel_name,
            "connection_file": os.path.join(self._dir, name + ".json"),
        }
        if self._ipc:
            options.update(transport="ipc", ip=os.path.join(self._dir, name))
        km = _pooled_kernel_manager_class()(**options)
        job_file = os.path.join(self._dir, name + "-job.json")
        env = {**(os.environ if self.inherit_environ else {}), **self.env, JOB_FILE_ENV: job_file}
        km.start_kernel(cwd=self.cwd, env=env, extra_arguments=list(self._extra_arguments))
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient(parent=km, connection_file=km.connection_file, **km.get_connection_info(session=True))
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=self.startup_timeout)
        except BaseException:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            raise
        kc.stop_channels()
        return PooledKernel(km, job_file, self)

    def _released(self, kernel: PooledKernel) -> None:
        with self._cond:
            self._out.discard(kernel)
            if self._closed:
                self._remove_dir_if_unused()

    def _remove_dir_if_unused(self) -> None:
        # Acquired kernels still use their connection files and sockets in the folder.
        if not self._out and not self._ready and self._starting == 0:
            shutil.rmtree(self._dir, ignore_errors=True)


def _close_thread_loop() -> None:
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if not loop.is_running():
        loop.close()


# ---------------------------------------------------------------- papermill engine

_shared_pools: dict[tuple[str, str], KernelPool] = {}
_shared_lock = threading.Lock()


def shared_pool(kernel_name: str, cwd: str) -> KernelPool:
    """The process's pool for ``(kernel_name, cwd)``, created (size 1) on first use
    and closed when the interpreter exits. :class:`PooledEngine` runs on these."""
    key = (kernel_name, os.path.abspath(cwd))
    with _shared_lock:
        pool = _shared_pools.get(key)
        if pool is None or pool.closed:
            if not _shared_pools:
                atexit.register(_close_shared_pools)
            pool = _shared_pools[key] = KernelPool(kernel_name, size=1, cwd=key[1])
        return pool


def _close_shared_pools() -> None:
    with _shared_lock:
        pools = list(_shared_pools.values())
        _shared_pools.clear()
    for pool in pools:
        pool.close()


_engine_class: type | None = None


def _pooled_engine_class() -> type:
    """Build :class:`PooledEngine` on first use.

    papermill loads its engine entry points, this one included, while
    ``papermill.engines`` is itself being imported, after ``NBClientEngine`` is
    defined. Subclassing it at this module's import time would fail whenever this
    module is imported before papermill: importing papermill here would ask the
    half-imported module for ``PooledEngine``. Built on demand, the class is made from
    the half-imported ``papermill.engines`` in that case, and importing the pool stays
    free of papermill's import time.

    No lock: one would deadlock against the import lock of ``papermill.engines`` when
    another thread is importing papermill. Two threads racing here build two equal
    classes, which is harmless.
    """
    global _engine_class
    if _engine_class is None:
        from papermill.engines import NBClientEngine  # may re-enter and set _engine_class

        if _engine_class is None:
            _engine_class = _make_engine_class(NBClientEngine)
    return _engine_class


def _make_engine_class(base: type[NBClientEngine]) -> type[NBClientEngine]:
    class PooledEngine(base):
        """papermill engine ``mlops-nb``: runs each notebook on a kernel from
        :func:`shared_pool` for the notebook's kernel name and the working folder
        (``--cwd``), then shuts that kernel down, whether the notebook failed or not.

        A ``km=`` given by the caller is used as it is and left running. Each pool
        keeps one kernel ready until the interpreter exits, so a process that runs
        notebooks in many folders keeps one idle kernel per folder.
        """

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            km = kwargs.pop("km", None)
            if km is not None:
                return super().execute_managed_notebook(nb_man, kernel_name, km=km, **kwargs)
            # papermill has already changed into --cwd when it calls the engine.
            pool = shared_pool(kernel_name, os.getcwd())
            kernel = pool.acquire(timeout=kwargs.get("start_timeout") or pool.startup_timeout)
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, km=kernel.km, **kwargs)
            finally:
                kernel.discard()

    PooledEngine.__module__ = __name__
    PooledEngine.__qualname__ = "PooledEngine"
    return PooledEngine


def __getattr__(name: str) -> Any:
    """``PooledEngine``, built on first access (see :func:`_pooled_engine_class`)."""
    if name == "PooledEngine":
        return _pooled_engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
