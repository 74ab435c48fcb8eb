"""Finding the notebook, and what is captured about it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import make_notebook
from services import free_port

from mlops_nb.provenance import locate_notebook, parameter_values, read_snapshot


def test_notebook_from_jupyter_server_absolute_and_relative(tmp_path: Path):
    nb = make_notebook(tmp_path / "sub" / "a.ipynb", [("code", "x = 1", [])])
    absolute = locate_notebook({"JPY_SESSION_NAME": str(nb)}, {}, cwd=tmp_path / "sub")
    relative = locate_notebook({"JPY_SESSION_NAME": "sub/a.ipynb"}, {}, cwd=tmp_path / "sub")
    assert absolute.path == relative.path == nb
    assert "JPY_SESSION_NAME" in absolute.how


def test_notebook_from_vscode_and_explicit_and_fallback(tmp_path: Path):
    nb = make_notebook(tmp_path / "b.ipynb", [("code", "x = 1", [])])
    assert locate_notebook({}, {"__vsc_ipynb_file__": str(nb)}, cwd=tmp_path).path == nb
    explicit = locate_notebook({"MLOPS_NB_NOTEBOOK": "b.ipynb", "JPY_SESSION_NAME": "zzz.ipynb"}, {}, cwd=tmp_path)
    assert explicit.path == nb and explicit.how == "MLOPS_NB_NOTEBOOK"
    unknown = locate_notebook({}, {}, cwd=tmp_path)
    assert unknown.path is None and "set MLOPS_NB_NOTEBOOK" in unknown.how


def test_snapshot_hides_tagged_cells_and_finds_parameters(tmp_path: Path):
    nb = make_notebook(
        tmp_path / "c.ipynb",
        [
            ("code", "lr = 0.1\nname: str = 'x'\nsteps = 10", ["parameters"]),
            ("code", "lr = 0.5", ["injected-parameters"]),
            ("code", "token = 'abc'", ["mlops:no-capture"]),
        ],
    )
    snap = read_snapshot(nb)
    assert snap.parameter_names == ("lr", "name", "steps")
    assert "abc" not in snap.text and "lr = 0.1" in snap.text
    assert snap.hides("cell-2", "") and snap.hides(None, "token = 'abc'") and not snap.hides(None, "lr = 0.5")
    assert parameter_values(snap.parameter_names, {"lr": 0.5, "name": "x", "steps": [1]}) == {"lr": "0.5", "name": "x"}


def test_load_ext_does_not_import_mlflow():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'mlops_nb')\n"
        "print('mlflow' in sys.modules, 'mlops' in InteractiveShell.instance().magics_manager.magics['line'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_a_jupyter_server_that_does_not_answer_falls_back_to_jpy_session_name(tmp_path: Path, monkeypatch):
    """The sessions API is asked first; a server that is gone (its info file left behind)
    or does not know this kernel leaves the kernel's JPY_SESSION_NAME to name the notebook."""
    import json
    import os

    from mlops_nb.provenance import session_notebook

    nb = make_notebook(tmp_path / "sub" / "a.ipynb", [("code", "x = 1", [])])
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    info = {"url": f"http://127.0.0.1:{free_port()}/", "token": "t", "pid": os.getpid(), "root_dir": str(tmp_path)}
    (runtime / "jpserver-1.json").write_text(json.dumps(info))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    assert session_notebook("some-kernel-id", [runtime]) is None
    found = locate_notebook({"JPY_SESSION_NAME": "sub/a.ipynb"}, {}, cwd=tmp_path / "sub", kernel="some-kernel-id")
    assert found.path == nb and "JPY_SESSION_NAME" in found.how
    assert (runtime / "jpserver-1.json").exists()  # another server's file is never deleted


def test_a_notebook_is_saved_once_its_file_holds_cells(tmp_path: Path):
    from mlops_nb.provenance import notebook_saved

    assert not notebook_saved(tmp_path / "Untitled.ipynb")  # no file
    assert not notebook_saved(make_notebook(tmp_path / "Untitled1.ipynb", []))  # as Jupyter creates a new one
    assert notebook_saved(make_notebook(tmp_path / "walk.ipynb", [("code", "x = 1", [])]))
    assert not notebook_saved(None)
