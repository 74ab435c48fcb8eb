"""Shared fixtures: a real git project with a notebook, a real SQLite store in a
temporary folder, and a real IPython shell with the extension loaded. Only fixtures and
hooks live here; helpers the tests import are in helpers.py, real services in services.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import git, make_notebook, server_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# `mlops-nb run` would start a job agent for the next job; only the agent's own tests
# (test_agent.py) turn it on, each with a private runtime folder.
os.environ["MLOPS_NB_AGENT"] = "off"

#: What a test's own process may carry from outside or from an earlier test's kernel code
#: (%load_ext points MLflow at the project through these, as it does in a real kernel).
_PER_TEST_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLOPS_NB_NOTEBOOK",
    "JPY_SESSION_NAME",
    "MLFLOW_RUN_ID",
    "MLFLOW_RUN_CONTEXT",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
)


def _restore_env(saved: dict[str, str]) -> None:
    for var in set(os.environ) - set(saved):
        del os.environ[var]
    os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})


@pytest.fixture(autouse=True, scope="module")
def _clean_module_env():
    """What a module-scoped fixture's in-process code sets in ``os.environ`` is undone
    after its module. A Tracker made in a module fixture sets ``MLFLOW_TRACKING_URI``
    before any test's own snapshot (below) is taken, so that snapshot keeps it; it then
    reached later modules' servers and kernels, which opened the wrong project's store.
    MLflow's in-process tracking URI is reset with it."""
    saved = dict(os.environ)
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and "MLFLOW_TRACKING_URI" not in saved:
        mlflow.set_tracking_uri(None)
    _restore_env(saved)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch):
    """Each test starts without these variables, and whatever a test's in-process code
    sets in ``os.environ`` is undone after it, so no later test (or kernel it starts,
    which inherits the environment) sees another test's project."""
    saved = dict(os.environ)
    for var in _PER_TEST_ENV:
        monkeypatch.delenv(var, raising=False)
    yield
    _restore_env(saved)


@pytest.fixture
def jp_server_config(jp_root_dir: Path) -> dict:
    """pytest-jupyter's in-process server (``jp_fetch``) runs with the tests' one server
    configuration; a test module that needs more overrides this fixture."""
    return server_config()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed git project holding ``analysis/train.ipynb``; cwd is its folder,
    and the kernel environment says Jupyter Server opened that notebook."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_notebook(
        root / "analysis" / "train.ipynb",
        [
            ("code", "alpha = 0.5\nlabel = 'baseline'\nepochs = 3", ["parameters"]),
            ("code", "%mlops track", []),
            ("code", "secret = 'hunter2'", ["mlops:no-capture"]),
            ("code", "score = alpha * 2", []),
        ],
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    monkeypatch.chdir(root / "analysis")
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis/train.ipynb")
    return root


@pytest.fixture
def ip(project: Path):
    """A real IPython shell with ``%load_ext mlops_nb`` done, fresh for each test."""
    from IPython.testing.globalipapp import get_ipython

    from mlops_nb import magics
    from mlops_nb.tracking import set_tracker

    shell = get_ipython()
    set_tracker(None)
    shell.run_line_magic("load_ext", "mlops_nb")
    magics.load(shell)  # load_ext is a no-op when already loaded in an earlier test
    yield shell
    magics.unload(shell)
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    shell.user_ns.pop("secret", None)


@pytest.fixture
def client(project: Path):
    """An MLflow client on the project's embedded store (read side of the tests).

    The store is created through mlops-nb first: a bare MlflowClient would create it
    itself and hide what the product does."""
    from mlflow import MlflowClient

    from mlops_nb.config import resolve_config
    from mlops_nb.store import ensure_store

    ensure_store(resolve_config(project / "analysis"))

    return MlflowClient(tracking_uri=f"sqlite:///{project / '.mlops' / 'mlflow.db'}")
