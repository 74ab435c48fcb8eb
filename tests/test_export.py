"""``mlops-nb export``: a registered version written out as a package, installed into a
fresh virtual environment (no system site packages, no mlops-nb, no store) and asked for
predictions through its ``predict`` function and its console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, new_project, run_cli

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker
from mlops_nb.version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

pytestmark = pytest.mark.slow

MODEL = "iris clf"  # a space: the package name is sanitised
DIST, PKG = "iris-clf-model", "iris_clf_model"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory):
    """A project whose store holds 'iris clf' v1 @champion (a scikit-learn pipeline on the
    iris columns, with an input example); returns (root, the rows to predict, their
    predictions by the original model, the version's run id)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = new_project(tmp_path_factory.mktemp("export"))
    frame = load_iris(as_frame=True)
    x, y = frame.data, frame.target
    model = LogisticRegression(max_iter=1000).fit(x, y)
    tracker = Tracker(notebook=NotebookLocation(root / "train.ipynb", "test"), config=resolve_config(root, environ={}))
    handle = tracker.start_cell_run("fit", autolog=False)
    version = tracker.register_model(model, MODEL, "champion", input_example=x.head(3))
    tracker.end_run(handle)
    tracker.close()
    rows = x.iloc[::13]  # all three classes
    return root, rows, [int(p) for p in model.predict(rows)], version.run_id


@pytest.fixture(scope="module")
def exported(registered, tmp_path_factory: pytest.TempPathFactory):
    """``mlops-nb export models:/iris clf@champion DIR``: (DIR, the command's result)."""
    root, _, _, _ = registered
    out = tmp_path_factory.mktemp("out") / "iris-package"
    done = run_cli("export", f"models:/{MODEL}@champion", str(out), cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


def _entries(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


def test_export_writes_the_package_and_says_what_it_exported(registered, exported):
    root, _, _, run_id = registered
    out, done = exported
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and done.stderr == "", done.stdout + done.stderr
    assert f"{MODEL} v1" in lines[0] and run_id in lines[0] and str(out) in lines[0]
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # the temporary sibling is gone

    project = tomllib.loads((out / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == (DIST, "1")
    import mlflow
    import sklearn

    assert f"mlflow-skinny=={mlflow.__version__}" in project["dependencies"]
    assert f"scikit-learn=={sklearn.__version__}" in project["dependencies"]  # the model's own pin
    assert project["optional-dependencies"]["serve"] == [f"mlops-nb=={__version__}"]
    assert project["scripts"] == {f"{DIST}-predict": f"{PKG}:main"}
    assert (out / "src" / PKG / "model" / "MLmodel").is_file()

    docker = (out / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir "/src[serve]"' in docker and "must hold mlops-nb" in docker
    assert 'CMD ["mlops-nb", "serve", "/app/model", "--host", "0.0.0.0", "--port", "8080"]' in docker
    assert "EXPOSE 8080" in docker and "MLOPS_NB_SERVE_TOKEN" in docker
    assert "HEALTHCHECK" in docker and "http://127.0.0.1:8080/ready" in docker
    readme = (out / "README.md").read_text()
    for needed in (f"**{MODEL}** version **1**", run_id, "pip install .", f"from {PKG} import predict",
                   f"{DIST}-predict", "docker run", "MLOPS_NB_SERVE_TOKEN", "/ready", "/ping"):  # fmt: skip
        assert needed in readme, needed

    # Nothing names this machine's project, temporary folders or checkout (MLflow's
    # MLmodel records the absolute artifact location: the export drops it).
    here = [str(root), str(root.parent.parent), str(REPO)]
    for name, data in _entries(out).items():
        for path in here:
            assert path.encode() not in data, f"{name} names {path}"


def _fresh_venv(folder: Path, package: Path) -> Path:
    """A new virtual environment without system site packages, ``package`` installed
    into it by uv when it is on PATH (seconds), else by pip (about a minute)."""
    env = _isolated_env()
    uv = shutil.which("uv")
    if uv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, env=env)
        cmd = [uv, "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), str(package)]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, env=env)
        cmd = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", str(package)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / "bin"


def _isolated_env() -> dict[str, str]:
    """This environment without what would let the new one see ours or a store."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}
    return {k: v for k, v in os.environ.items() if k not in drop}


_CHECK = f"""
import importlib.util, io, json, sys
from contextlib import redirect_stdout
import pandas as pd
from {PKG} import MODEL_DIR, MODEL_VERSION, main, predict
assert importlib.util.find_spec("mlops_nb") is None, "mlops-nb is not needed"
assert "site-packages" in MODEL_DIR, MODEL_DIR
records = json.load(open("records.json"))
out = {{"version": MODEL_VERSION, "frame": predict(pd.DataFrame(records)).tolist(), "records": predict(records).tolist()}}
for body in ("records_body.json", "instances.json", "inputs.json", "rows.csv"):
    text = io.StringIO()
    with redirect_stdout(text):
        assert main([body]) == 0
    out[body] = json.loads(text.getvalue())["predictions"]
print(json.dumps(out))
"""


@pytest.mark.timeout(900)
def test_the_package_installs_into_a_fresh_venv_and_predicts_as_the_model(registered, exported, tmp_path):
    _, rows, expected, _ = registered
    out, _ = exported
    records = json.loads(rows.to_json(orient="records"))
    split = json.loads(rows.to_json(orient="split", index=False))
    (tmp_path / "records.json").write_text(json.dumps(records))
    (tmp_path / "records_body.json").write_text(json.dumps({"dataframe_records": records}))
    (tmp_path / "instances.json").write_text(json.dumps({"instances": records}))
    (tmp_path / "inputs.json").write_text(json.dumps({"inputs": {c: rows[c].tolist() for c in rows.columns}}))
    rows.to_csv(tmp_path / "rows.csv", index=False)

    bin_ = _fresh_venv(tmp_path / "venv", out)
    env = _isolated_env()
    python = subprocess.run(
        [str(bin_ / "python"), "-c", _CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert python.returncode == 0, python.stderr[-3000:]
    got = json.loads(python.stdout.strip().splitlines()[-1])
    assert got == {"version": "1", "frame": expected, "records": expected, "records_body.json": expected,
                   "instances.json": expected, "inputs.json": expected, "rows.csv": expected}  # fmt: skip

    # The installed command (a file and CSV went through its main() above), JSON on stdin.
    stdin = subprocess.run(
        [str(bin_ / f"{DIST}-predict")],
        input=json.dumps({"dataframe_split": split}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert stdin.returncode == 0, stdin.stderr[-3000:]
    assert json.loads(stdin.stdout) == {"predictions": expected}


def test_a_non_empty_folder_is_refused_unless_forced(registered, tmp_path):
    root, _, _, _ = registered
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    before = _entries(tmp_path)
    done = run_cli("export", f"models:/{MODEL}/1", str(target), cwd=root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "is not empty" in done.stderr and "--force" in done.stderr
    assert _entries(tmp_path) == before

    forced = run_cli("export", f"models:/{MODEL}/1", str(target), "--force", cwd=root)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert not (target / "notes.txt").exists() and (target / "pyproject.toml").is_file()
    assert f"models:/{MODEL}/1" in forced.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing left beside it


def test_an_unknown_alias_fails_in_one_line_naming_the_aliases(registered, tmp_path):
    root, _, _, _ = registered
    target = tmp_path / "never"
    done = run_cli("export", f"models:/{MODEL}@production", str(target), cwd=root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "no alias 'production'" in done.stderr and "its aliases: champion" in done.stderr
    assert list(tmp_path.iterdir()) == []
