"""Notebooks written elsewhere (the way papermill's and nbclient's own test notebooks are),
run through `mlops-nb run` on real kernels, real papermill and a real SQLite store: cells
tagged ``raises-exception``, papermill's banners left from an earlier run, a failed line
magic, and the error a run records. Issue 13, item 5.

Failing cells are numbered by their position in the notebook file the user gave, from 1,
counting every cell of it (markdown too, and banners an earlier papermill run left in it)
but not the cell papermill injects for this run's parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import artifact_text, make_notebook, new_project

from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_nb", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "MLOPS_NB_AGENT": "off"},
    )


def _run(root: Path, notebook: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = _cli("run", notebook, "--json", *args, cwd=root)
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def _the_run(root: Path, run_id: str):
    client = get_client(resolve_config(root, environ={}))
    return client, client.get_run(run_id)


def _cells(path: str | Path) -> list[dict]:
    return json.loads(Path(path).read_text())["cells"]


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _outside_notebook(path: Path, *, expected_error: bool, failure: bool) -> Path:
    """A notebook as papermill's and nbclient's test notebooks are written: nbformat 4.4
    without cell ids, markdown, a parameters cell, magics, stderr, rich display outputs,
    a stale output from an earlier run; optionally a cell tagged ``raises-exception``
    that raises, and an untagged cell that fails."""

    def code(source: str, *tags: str, outputs: list | None = None) -> dict:
        return {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {"tags": list(tags)} if tags else {},
            "outputs": outputs or [],
            "source": source,
        }

    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# An outside notebook\nNo mlops-nb in it."},
        code("msg = None\nn = 3", "parameters"),
        code("%env OUTSIDE_NB=yes\n%time total = sum(range(n))\nimport os\nassert os.environ['OUTSIDE_NB'] == 'yes'"),
        code(
            "import sys\nprint('to stderr', file=sys.stderr)\nprint('msg is', msg)",
            outputs=[{"name": "stdout", "output_type": "stream", "text": "stale output of an earlier run\n"}],
        ),
        code(
            "from IPython.display import HTML, Markdown, display\ndisplay(HTML('<b>bold</b>'))\n"
            "display(Markdown('*markdown*'))\n{'a': 1}"
        ),
        code("%%capture captured\nprint('hidden')"),
        code("assert captured.stdout == 'hidden\\n'\n!echo from a shell"),
    ]
    if expected_error:
        cells.append(code("raise ValueError('nbclient lets a tagged cell raise')", "raises-exception"))
    cells.append(code("print('reached the end')"))
    if failure:
        cells.append(code("{}['missing']"))
    nb = {
        "cells": cells,
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


@pytest.mark.parametrize(("expected_error", "failure"), [(False, False), (True, False), (False, True), (True, True)])
def test_an_outside_notebook_ends_as_papermill_and_nbclient_end_it(tmp_path: Path, expected_error: bool, failure: bool):
    """`mlops-nb run` succeeds or fails where papermill and nbclient (`jupyter execute`) do.
    The one deliberate difference: papermill fails a notebook on the error of a cell tagged
    ``raises-exception``; nbclient, whose convention the tag is, runs on, and so do we."""
    root = new_project(tmp_path)
    _outside_notebook(root / "outside.ipynb", expected_error=expected_error, failure=failure)
    done, result = _run(root, "outside.ipynb", "-p", "msg=hello")
    papermill = subprocess.run(
        [str(BIN / "papermill"), "outside.ipynb", "pm.ipynb", "-p", "msg", "hello"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    nbclient = subprocess.run(
        [str(BIN / "jupyter-execute"), "outside.ipynb", "--output=nbc.ipynb"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    ours_ok = result["status"] == "FINISHED"
    assert (done.returncode == 0) is ours_ok and ours_ok is not failure, result
    assert (nbclient.returncode == 0) is ours_ok, nbclient.stderr[-2000:]
    assert (papermill.returncode == 0) is (ours_ok and not expected_error), papermill.stderr[-2000:]
    if failure:
        position = next(i for i, c in enumerate(_cells(root / "outside.ipynb"), 1) if c["source"] == "{}['missing']")
        assert result["error"] == f"cell {position} failed: KeyError: 'missing'"
        assert "KeyError" in papermill.stderr and "KeyError" in nbclient.stderr
    executed = _cells(result["output"])
    printed = "".join("".join(o.get("text", "")) for c in executed for o in c.get("outputs", []))
    assert "reached the end" in printed and "msg is hello" in printed and "to stderr" in printed
    assert "stale output" not in printed


def test_a_cell_tagged_raises_exception_does_not_fail_the_job(tmp_path: Path):
    root = new_project(tmp_path)
    make_notebook(
        root / "expected.ipynb",
        [
            ("markdown", "A cell that is meant to raise, as in nbclient's test notebooks.", []),
            ("code", "raise ZeroDivisionError('meant to happen')", ["raises-exception"]),
            ("code", "print('the rest ran')", []),
        ],
    )
    done, result = _run(root, "expected.ipynb")
    assert done.returncode == 0 and result["status"] == "FINISHED" and result["error"] is None, result
    _, run = _the_run(root, result["run_id"])
    assert run.info.status == "FINISHED" and "mlops_nb.error" not in run.data.tags
    cells = _cells(result["output"])
    assert not [c for c in cells if "papermill-error-cell-tag" in _tags(c)]  # no "An Exception was encountered" banner
    assert [o["ename"] for o in cells[1]["outputs"]] == ["ZeroDivisionError"]  # the error stays shown in its cell
    assert "".join(cells[2]["outputs"][0]["text"]) == "the rest ran\n"


def test_the_failing_cell_is_numbered_as_in_the_notebook_given_even_with_old_papermill_banners(tmp_path: Path):
    """The input is papermill's output of an earlier failed run: its two banner cells and
    its injected-parameters cell are cells the user sees, so they count."""
    root = new_project(tmp_path)
    make_notebook(
        root / "original.ipynb",
        [
            ("markdown", "# Report", []),
            ("code", "n = 1", ["parameters"]),
            ("code", "x = n", []),
            ("markdown", "## The part that breaks", []),
            ("code", "print('before')\n1 / (n - n)", []),
        ],
    )
    subprocess.run(
        [str(BIN / "papermill"), "original.ipynb", "given.ipynb", "-p", "n", "2"],
        cwd=root,
        capture_output=True,
        timeout=240,
    )
    given = _cells(root / "given.ipynb")
    position = next(i for i, c in enumerate(given, 1) if "1 / (n - n)" in "".join(c["source"]))
    assert position == 8 and sum("papermill-error-cell-tag" in _tags(c) for c in given) == 2
    for args in ((), ("-p", "n=3")):  # papermill's injected cell: reused in place / replaced in place
        _done, result = _run(root, "given.ipynb", *args)
        assert result["error"] == "cell 8 failed: ZeroDivisionError: division by zero", result
        assert result["failed_cell"]["index"] == 8
        _, run = _the_run(root, result["run_id"])
        assert run.data.tags["mlops_nb.job.failed_cell"] == "8"
        executed = _cells(result["output"])
        banners = [i for i, c in enumerate(executed) if "papermill-error-cell-tag" in _tags(c)]
        assert banners[0] == 0 and "1 / (n - n)" in "".join(executed[banners[1] + 1]["source"])


def test_a_failed_line_magic_reports_what_the_cell_printed(tmp_path: Path):
    root = new_project(tmp_path)
    make_notebook(root / "magic.ipynb", [("code", "%not_a_magic 3", []), ("code", "print('never')", [])])
    done = _cli("run", "magic.ipynb", cwd=root)
    assert done.returncode == 1
    assert "mlops-nb: cell 1 failed: UsageError: Line magic function `%not_a_magic` not found." in done.stderr
    client = get_client(resolve_config(root, environ={}))
    (run,) = client.search_runs([client.get_experiment_by_name("magic").experiment_id])
    assert run.data.tags["mlops_nb.error"] == "UsageError: Line magic function `%not_a_magic` not found."
    assert artifact_text(client, run.info.run_id, "error.txt").startswith("UsageError: Line magic function")


def test_the_error_tag_and_error_txt_start_with_the_users_exception_and_hold_its_traceback(tmp_path: Path):
    root = new_project(tmp_path)
    make_notebook(
        root / "divide.ipynb",
        [
            ("code", "d = 0", ["parameters"]),
            ("code", "def ratio(a, b):\n    return a / b", []),
            ("code", "print('computing')\nratio(1, d)", []),
        ],
    )
    _done, result = _run(root, "divide.ipynb", "-p", "d=0")  # an injected cell too
    assert result["error"] == "cell 3 failed: ZeroDivisionError: division by zero"
    client, run = _the_run(root, result["run_id"])
    assert run.data.tags["mlops_nb.error"] == "ZeroDivisionError: division by zero"
    text = artifact_text(client, result["run_id"], "error.txt")
    assert text.startswith("ZeroDivisionError: division by zero\n")
    assert "RuntimeError" not in text and "\x1b[" not in text  # no wrapper of ours, no colour codes
    # The traceback as the notebook shows it: the user's cell, their function, the line that raised.
    assert "ratio(1, d)" in text and "return a / b" in text and "Traceback (most recent call last)" in text
    assert "in cell 3 of divide.ipynb" in text
    assert artifact_text(client, result["run_id"], "job/failed_cell.py") == "print('computing')\nratio(1, d)"
