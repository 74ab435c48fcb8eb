"""Finding the notebook, and what is captured about it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import make_notebook

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
