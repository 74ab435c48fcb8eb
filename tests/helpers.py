"""Helpers the tests share (``from helpers import make_notebook``): notebooks and projects
written to disk, git in a folder, the mlops-nb command as a separate process, reads of
what a run stored, and the tests' Jupyter Server configuration and REST API call.
Fixtures live in conftest.py; real services (Jupyter, MLflow, PostgreSQL, Dask) in
services.py; the browser in browser.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

REPO = Path(__file__).resolve().parents[1]


def make_notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> Path:
    """Write a notebook of (cell_type, source, tags) triples; return its path."""
    nb = {
        "cells": [
            {
                "cell_type": kind,
                "id": f"cell-{i}",
                "metadata": {"tags": tags} if tags else {},
                "source": source,
                **({"outputs": [], "execution_count": None} if kind == "code" else {}),
            }
            for i, (kind, source, tags) in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def new_project(tmp_path: Path) -> Path:
    """An empty project (a pyproject.toml and an embedded store folder) in ``tmp_path``."""
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    return root


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def runs_of(client, experiment: str = "train"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} was not created"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def artifact_text(client, run_id: str, path: str) -> str:
    import mlflow.artifacts

    return mlflow.artifacts.load_text(f"{client.get_run(run_id).info.artifact_uri}/{path}")


def train_notebook(root: Path, body: str = "", name: str = "train.ipynb") -> Path:
    """A tracked notebook with parameters (n_steps, label, rate) that logs a loss a step,
    then ``body`` (by default: logs a score of 0.75)."""
    return make_notebook(
        root / name,
        [
            ("code", "n_steps = 3  # how many steps\nlabel = 'base'\nrate = 0.5", ["parameters"]),
            ("code", "%load_ext mlops_nb\n%mlops track", []),
            (
                "code",
                "import mlops_nb as mnb\nfor i in range(n_steps):\n    mnb.log_metric('loss', rate / (i + 1))\n"
                "print('label is', label)",
                [],
            ),
            ("code", body or "score = 0.75\n%mlops log score", []),
        ],
    )


def run_cli(*args: str, cwd: Path, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m mlops_nb.cli ARGS`` in ``cwd`` as a user runs it (a separate process),
    with the test's environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "mlops_nb.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``python -m mlops_nb.cli ARGS`` started in ``cwd`` (its output in text pipes), with
    the test's environment plus ``env``; the caller waits for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_nb.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def project_runs(root: Path):
    """The project's store client and every run in its store."""
    client = get_client(resolve_config(root, environ={}))
    exps = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exps) if exps else []


def server_config(**sections: dict) -> dict:
    """The tests' Jupyter Server configuration: the mlops-nb server extension on and every
    route behind the token; ``sections`` add whole sections (``MlopsNbApp={...}``)."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"mlops_nb": True},
            "allow_root": True,
            "allow_unauthenticated_access": False,
        },
        **sections,
    }


async def call(jp_fetch, *path: str, method: str = "GET", body=None, params=None, raw=None) -> tuple[int, dict]:
    """One call of the mlops-nb REST API (``/mlops-nb/api/<path>``) through pytest-jupyter's
    ``jp_fetch``: ``body`` sent as JSON (a text as it is), ``raw`` as it is; the status
    code and the JSON answer (``{}`` for an error without a body)."""
    import tornado.httpclient

    kwargs = {"method": method, "params": params or {}}
    if raw is not None:
        kwargs["body"] = raw
    elif body is not None:
        kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
    elif method in ("PUT", "POST", "PATCH"):
        kwargs["body"] = ""
    try:
        resp = await jp_fetch("mlops-nb", "api", *path, **kwargs)
        return resp.code, json.loads(resp.body)
    except tornado.httpclient.HTTPClientError as err:
        return err.code, json.loads(err.response.body) if err.response and err.response.body else {}
