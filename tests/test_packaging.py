"""The installed package ships its JupyterLab extension prebuilt and enables its server
extension: what `jupyter labextension list` and `jupyter server extension list` report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

import mlops_nb

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120)
    return ANSI.sub("", done.stdout + done.stderr)


@pytest.mark.slow
def test_labextension_is_installed_prebuilt_and_enabled():
    out = _jupyter("labextension", "list")
    version = json.loads((REPO / "labextension" / "package.json").read_text())["version"]
    assert re.search(rf"mlops-nb v{re.escape(version)} enabled\s+OK \(python, mlops-nb\)", out), out


@pytest.mark.slow
def test_server_extension_is_enabled_and_valid():
    out = _jupyter("server", "extension", "list")
    assert re.search(r"mlops_nb enabled", out), out
    assert re.search(rf"mlops_nb {re.escape(mlops_nb.__version__)} OK", out), out


def test_labextension_paths_point_at_the_built_extension():
    (entry,) = mlops_nb._jupyter_labextension_paths()
    built = Path(mlops_nb.__file__).parent / entry["src"]
    assert entry["dest"] == "mlops-nb"
    assert json.loads((built / "package.json").read_text())["name"] == "mlops-nb"
    assert (built / "static" / "style.js").exists()
