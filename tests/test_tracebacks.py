"""Tracked cells as the user sees them, on a real kernel (issue 13, item 4).

A ``%%mlops track`` cell that fails shows the traceback the same code shows in a plain
cell (the same frames, ``Cell In[N], line L`` with the cell's own line numbers), then one
line naming the run that ended FAILED; the numbers stored are the ``In[N]`` shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers import artifact_text, make_notebook, new_project

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FRAME = re.compile(r"^Cell In\[(\d+)\], line (\d+)(?:, in (.+))?$", re.M)


def execute(kc, code: str) -> tuple[str, dict]:
    """Run ``code``; return everything the cell showed (ANSI colours removed) and the reply."""
    out: list[str] = []

    def keep(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "execute_result":
            out.append(content["data"].get("text/plain", "") + "\n")
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]) + "\n")

    reply = kc.execute_interactive(code, timeout=180, output_hook=keep)
    return ANSI.sub("", "".join(out)), reply["content"]


@pytest.fixture
def kernel(tmp_path: Path):
    from jupyter_client.manager import start_new_kernel

    root = new_project(tmp_path)
    make_notebook(root / "walk.ipynb", [("code", "%load_ext mlops_nb", [])])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME")}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root), env={**env, "MLOPS_NB_NOTEBOOK": "walk.ipynb"})
    try:
        yield root, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_failing_tracked_cell_shows_the_plain_cells_traceback_and_its_count(kernel):
    from mlflow import MlflowClient

    root, kc = kernel
    body = "def f(x):\n    return 1 / x\n\nf(0)"
    assert execute(kc, "%load_ext mlops_nb")[1]["execution_count"] == 1
    assert execute(kc, "%mlops track --no-autolog")[1]["status"] == "ok"
    tracked, tracked_reply = execute(kc, "%%mlops track --name boom --no-autolog --no-chart\n" + body)
    plain, plain_reply = execute(kc, body)
    value, value_reply = execute(kc, "%%mlops track --name fine --no-autolog --no-chart\ny = 2\ny * 21")
    execute(kc, "%mlops end")

    assert (tracked_reply["execution_count"], plain_reply["execution_count"], value_reply["execution_count"]) == (
        3,
        4,
        5,
    )
    # The same frames, numbered as each cell shows them (the tracked cell's code starts a line lower).
    assert FRAME.findall(plain) == [("4", "4", ""), ("4", "2", "f(x)")]
    assert FRAME.findall(tracked) == [("3", "5", ""), ("3", "3", "f(x)")]
    assert "----> 5 f(0)" in tracked and "----> 3     return 1 / x" in tracked
    for noise in ("run_cell_magic", "magics/__init__.py", "skipping hidden", "mlops_nb"):
        assert noise not in tracked.split("ZeroDivisionError: division by zero")[0]
    assert (tracked_reply["ename"], tracked_reply["evalue"]) == (plain_reply["ename"], plain_reply["evalue"])
    # ...then one line: which run the failure ended.
    last = tracked.strip().splitlines()[-1]
    assert re.fullmatch(r"mlops-nb: run [0-9a-f]{32} \(boom\) ended FAILED after \d+\.\d s · see it: .*", last), tracked
    assert "ended" not in plain
    # A tracked cell's last expression is its value, as in a plain cell.
    assert value_reply["status"] == "ok" and "42" in value

    client = MlflowClient(tracking_uri=f"sqlite:///{root / '.mlops' / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("walk").experiment_id])}
    boom, fine, session = runs["boom"], runs["fine"], runs["walk"]
    assert boom.info.status == "FAILED" and fine.info.status == "FINISHED"
    assert (boom.data.tags["mlops_nb.cell"], fine.data.tags["mlops_nb.cell"]) == ("3", "5")
    assert "# In[3]:\n%%mlops track --name boom" in artifact_text(client, boom.info.run_id, "code/cells.py")
    session_cells = artifact_text(client, session.info.run_id, "code/cells.py")
    assert re.findall(r"# In\[(\d+)\]", session_cells) == ["2", "3", "4", "5"]
    error = artifact_text(client, boom.info.run_id, "error.txt")
    assert "ZeroDivisionError: division by zero" in error and "return 1 / x" in error
