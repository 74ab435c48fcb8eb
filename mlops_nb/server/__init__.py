"""The Jupyter server extension: a REST API over the registry, promotions waiting for
approval, schedules, job history, the project's model servers and their monitor reports,
under /mlops-nb/api/, and (when configured) the scheduler itself.

Every handler requires Jupyter's authentication, runs blocking calls off the event
loop, uses one ``MlflowClient`` per tracking URI (never MLflow's global state) and maps
errors in one place (``handlers.BaseHandler``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import one_line
from mlops_nb.jobs.schedules.scheduler import Scheduler
from mlops_nb.jobs.schedules.store import ScheduleStore
from mlops_nb.server.handlers import HANDLERS

__all__ = ["MlopsNbApp"]


class MlopsNbApp(ExtensionApp):
    """mlops-nb's server extension; its store is resolved from the server's root folder."""

    name = "mlops_nb"

    scheduler = Bool(
        False,
        config=True,
        help=(
            "Run due scheduled jobs inside this Jupyter server (the same scheduler as "
            "`mlops-nb scheduler`, on the project's schedule database), so JupyterLab users "
            "need no separate process. Other schedulers on the same database never fire the "
            "same occurrence. Stopped when the server stops."
        ),
    )

    def initialize_settings(self) -> None:
        # The store is the project's that holds the server's root folder; the config is
        # resolved on first use, so a bad pyproject.toml is a 4xx, not a failed start.
        assert self.serverapp is not None  # ExtensionApp sets it before initialize_settings
        self.settings["mlops_nb_state"] = {
            "root": str(self.serverapp.root_dir),
            "config": None,
            "schedules": None,
            "scheduler": {"in_server": False, "error": None},
        }
        self._scheduler: Any = None
        if self.scheduler:
            self._start_scheduler()

    def initialize_handlers(self) -> None:
        self.handlers.extend((pattern, handler) for pattern, handler in HANDLERS)

    def _start_scheduler(self) -> None:
        """Start the scheduler on its own thread. A project that cannot be read is logged
        and shown on ``GET /schedules``: the server (and the registry) still start."""
        state = self.settings["mlops_nb_state"]
        assert self.serverapp is not None  # ExtensionApp sets it before initialize_settings
        try:
            config = resolve_config(state["root"])
            store = ScheduleStore.for_project(config)
            scheduler = Scheduler(store, config, name=f"jupyter-server:{self.serverapp.port}")
            scheduler.start()
        except Exception as exc:
            message = one_line(exc)
            self.log.error("mlops-nb: the scheduler did not start: %s", message)
            state["scheduler"] = {"in_server": False, "error": f"the scheduler did not start: {message}"}
            return
        state["config"], state["schedules"] = config, store
        state["scheduler"] = {"in_server": True, "error": None}
        self._scheduler = scheduler
        self.log.info("mlops-nb: running scheduled jobs of %s in this server", config.project_root)

    async def stop_extension(self) -> None:
        """Stop the scheduler (running jobs end as the scheduler's stop says) off the loop."""
        scheduler, self._scheduler = getattr(self, "_scheduler", None), None
        if scheduler is None:
            return
        self.settings["mlops_nb_state"]["scheduler"] = {"in_server": False, "error": None}
        await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)
