"""A notebook renamed on its first save: runs name it as it is now (issue 13, item 3).

A real ``jupyter server`` (127.0.0.1, a token, a private runtime folder) runs a real
kernel for a session. The test plays what JupyterLab does for a new notebook: it creates
``Untitled.ipynb`` (a file with no cells) and a session for it, then, at the first save,
renames the file, moves the session to the new path and writes the cells. The kernel's
``JPY_SESSION_NAME`` keeps saying ``Untitled.ipynb`` all along.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import new_project
from services import jupyter_server

pytestmark = pytest.mark.slow


def execute(kc, code: str) -> tuple[str, dict]:
    """Run ``code`` in the kernel; return what the cell printed (streams, results, errors)
    and the reply's content."""
    out: list[str] = []

    def keep(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(content["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    reply = kc.execute_interactive(code, timeout=180, output_hook=keep)
    return "".join(out), reply["content"]


def notebook_json(sources: list[str]) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
            for i, src in enumerate(sources)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def artifacts(client, run_id: str, folder: str) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, folder)]


def test_a_notebook_renamed_on_its_first_save_is_named_as_it_is_now(tmp_path: Path):
    from mlflow import MlflowClient

    root = new_project(tmp_path)
    (root / "analysis").mkdir()
    with jupyter_server(root, tmp_path) as server:
        created = server.call("POST", "/api/contents/analysis", {"type": "notebook"})
        assert created["path"] == "analysis/Untitled.ipynb"  # a file with no cells, as JupyterLab makes it
        session = server.call(
            "POST",
            "/api/sessions",
            {"path": created["path"], "name": "Untitled.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        with server.kernel_client(session["kernel"]["id"]) as kc:
            out, reply = execute(kc, "import os; os.environ['JPY_SESSION_NAME']")
            assert "analysis/Untitled.ipynb" in out  # what the kernel was told at its start
            assert execute(kc, "%load_ext mlops_nb")[1]["status"] == "ok"

            # Never saved: the run says so, and the status too.
            out, reply = execute(kc, "%mlops track --no-autolog")
            assert reply["status"] == "ok", out
            assert "analysis/Untitled.ipynb was never saved" in out
            out, _ = execute(kc, "%mlops status")
            assert "analysis/Untitled.ipynb (never saved" in out and "Jupyter Server sessions API" in out
            execute(kc, "%mlops end")
            execute(kc, "%mlops track --no-autolog")  # the run the user keeps working in

            # The first save: JupyterLab renames the file, moves the session, writes the cells.
            new_path = "analysis/walk-demo.ipynb"
            server.call("PATCH", "/api/contents/analysis/Untitled.ipynb", {"path": new_path})
            moved = server.call(
                "PATCH", f"/api/sessions/{session['id']}", {"path": new_path, "name": "walk-demo.ipynb"}
            )
            assert moved["path"] == new_path
            cells = ["%load_ext mlops_nb", "%mlops track --no-autolog", "%%mlops track --name fit --no-chart\nx = 1"]
            server.call(
                "PUT",
                f"/api/contents/{new_path}",
                {"type": "notebook", "format": "json", "content": notebook_json(cells)},
            )

            out, reply = execute(kc, cells[2])
            assert reply["status"] == "ok", out
            out, _ = execute(kc, "%mlops status")
            assert re.search(r"notebook +analysis/walk-demo\.ipynb\n", out), out
            assert "never saved" not in out
            execute(kc, "%mlops end")

    client = MlflowClient(tracking_uri=f"sqlite:///{root / '.mlops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("Untitled")  # named when the first run started
    unsaved, renamed, cell = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    # The run that ended before the first save: named as it was, no (empty) snapshot.
    assert unsaved.data.tags["mlops_nb.notebook"] == "analysis/Untitled.ipynb"
    assert unsaved.data.tags["mlops_nb.notebook_saved"] == "false"
    assert not [a for a in artifacts(client, unsaved.info.run_id, "code") if a.endswith(".ipynb")]
    # The run started before the save and ended after it: named as the notebook is now,
    # with the saved notebook as its snapshot.
    for run in (renamed, cell):
        assert run.data.tags["mlops_nb.notebook"] == "analysis/walk-demo.ipynb"
        assert run.data.tags["mlflow.source.name"] == "analysis/walk-demo.ipynb"
        assert run.data.tags["mlops_nb.notebook_saved"] == "true"
        assert run.data.tags["mlops_nb.notebook_how"] == "Jupyter Server sessions API"
    assert "code/walk-demo.ipynb" in artifacts(client, renamed.info.run_id, "code")
    snapshot = client.download_artifacts(renamed.info.run_id, "code/walk-demo.ipynb", str(tmp_path))
    saved = json.loads(Path(snapshot).read_text())["cells"]
    assert ["".join(c["source"]) for c in saved] == cells
