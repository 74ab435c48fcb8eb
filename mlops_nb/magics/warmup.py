"""Import MLflow in the background while the user reads the notebook.

``import mlflow`` and the modules tracking needs cost seconds of CPU (README: Figures).
``%load_ext mlops_nb`` stays fast by doing that work on a daemon thread, started when the
cell that loaded the extension ends. The next cell waits for it before running (and says
so when the wait is long enough to be noticed), so the user's code never imports while
the thread does: two threads importing one package that has circular imports (MLflow
has) can hand one of them a partially initialised module ("cannot import name ...").
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable

__all__ = ["MESSAGE", "MODULES", "start", "wait"]

#: What the first ``%mlops track`` imports, heaviest first: the client and entities, the
#: SQL store an embedded project opens, and scikit-learn autologging (on by default).
MODULES = (
    "mlflow",
    "mlflow.entities",
    "mlflow.tracking.fluent",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.utils.autologging_utils",
    "mlflow.sklearn",
    "sklearn",
)
#: Said once a magic has waited ``quiet_for`` seconds on the import.
MESSAGE = "mlops-nb: loading MLflow…"

_done = threading.Event()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def _import_all() -> None:
    try:
        for name in MODULES:
            if name == "sklearn" and importlib.util.find_spec("sklearn") is None:
                continue  # autologging is skipped without scikit-learn: nothing to warm
            importlib.import_module(name)
    except BaseException:
        pass
    finally:
        _done.set()


def start() -> None:
    """Start importing :data:`MODULES` on a daemon thread (once per process)."""
    global _thread
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_import_all, name="mlops-nb-warmup", daemon=True)
        _thread.start()


def wait(say: Callable[[str], None] = print, quiet_for: float = 0.5) -> bool:
    """Block until the background import is done; return whether it had to wait.

    After ``quiet_for`` seconds without it finishing, ``say`` is called once with
    :data:`MESSAGE`, so a cell never sits silent for seconds. Returns at once when the
    import never started (then MLflow is imported where it is used, as before).
    """
    thread = _thread
    if thread is None or _done.is_set() or thread is threading.current_thread():
        return False
    if not _done.wait(quiet_for):
        say(MESSAGE)
        _done.wait()
    return True
