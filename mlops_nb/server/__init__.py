"""The Jupyter server extension: a REST API over the registry core, under /mlops-nb/api/.

Every handler requires Jupyter's authentication, runs blocking MLflow calls off the
event loop, uses one ``MlflowClient`` per tracking URI (never MLflow's global state) and
maps errors in one place (``handlers.BaseHandler``).
"""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from .handlers import HANDLERS

__all__ = ["MlopsNbApp"]


class MlopsNbApp(ExtensionApp):
    """mlops-nb's server extension; its store is resolved from the server's root folder."""

    name = "mlops_nb"

    def initialize_settings(self) -> None:
        # The store is the project's that holds the server's root folder; the config is
        # resolved on first use, so a bad pyproject.toml is a 4xx, not a failed start.
        self.settings["mlops_nb_state"] = {"root": str(self.serverapp.root_dir), "config": None}

    def initialize_handlers(self) -> None:
        self.handlers.extend((pattern, handler) for pattern, handler in HANDLERS)
