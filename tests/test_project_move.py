"""A project folder moved, renamed or copied (with its .mlops) keeps its runs, artifacts
and models: the embedded store is re-pointed at its new folder when it is opened.

The project is made as a user makes one: a real `mlops-nb run` of a notebook that
tracks, logs an artifact and a trace, and registers a model with an alias.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_notebook

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import MlopsError, StoreError
from mlops_nb.registry import load_model, version_notebook
from mlops_nb.store import (
    explain_missing_artifact,
    explain_missing_run_artifacts,
    get_client,
    get_or_create_experiment,
    relocate_artifacts,
)

pytestmark = pytest.mark.slow

TRAIN = """\
import mlflow
import mlops_nb as mnb
from sklearn.linear_model import LinearRegression
mnb.track()
mnb.log_metric("score", alpha * 2)
mlflow.log_text("hello from the run", "notes/hello.txt")

@mlflow.trace
def double(x):
    return 2 * x

double(3)
model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])
mnb.register(model, "lin", alias="champion")"""


def _env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLOPS_NB_NOTEBOOK", "JPY_SESSION_NAME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _mlops_nb(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "mlops_nb", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that ran `train.ipynb` once as a job: a run with an artifact, a trace,
    a notebook snapshot and model lin v1 @champion. Tests copy it, never change it."""
    root = tmp_path_factory.mktemp("template") / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    make_notebook(root / "train.ipynb", [("code", "alpha = 0.5", ["parameters"]), ("code", TRAIN, [])])
    _mlops_nb("run", "train.ipynb", cwd=root)
    return root


def placed(template: Path, where: Path) -> Path:
    """The template project at ``where``, opened there once by mlops-nb, so it is a
    project that lives at ``where`` like any other."""
    shutil.copytree(template, where)
    get_client(resolve_config(where))
    return where


def mentions(db: Path, text: str) -> list[str]:
    """``table.column`` of every stored value containing ``text`` (any table, any column)."""
    con = sqlite3.connect(db)
    try:
        found = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in [row[1] for row in con.execute(f"PRAGMA table_info('{table}')")]:
                hit = con.execute(
                    f'SELECT 1 FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0 LIMIT 1', (text,)
                ).fetchone()
                if hit:
                    found.append(f"{table}.{column}")
        return found
    finally:
        con.close()


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def stock_client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / '.mlops' / 'mlflow.db'}")


def read_text(client, run_id: str, path: str) -> str:
    import mlflow.artifacts

    return mlflow.artifacts.load_text(f"{client.get_run(run_id).info.artifact_uri}/{path}")


def test_a_moved_project_loads_its_model_reads_its_artifacts_and_logs_into_its_new_folder(template, tmp_path):
    old = placed(template, tmp_path / "old")
    new = tmp_path / "elsewhere" / "renamed"
    shutil.move(old, new)
    assert not old.exists()

    client = get_client(resolve_config(new))
    model, mv = load_model(client, "models:/lin@champion")
    assert model.predict([[3.0]])[0] == pytest.approx(6.0)
    assert read_text(client, mv.run_id, "notes/hello.txt") == "hello from the run"
    (new / "train.ipynb").unlink()  # so the notebook is read from the run's snapshot
    assert "mnb.register" in (version_notebook(client, "lin", "1", new).snapshot_text or "")

    # A new run in the same experiment keeps its artifacts in the new folder, and
    # nothing recreates the old one.
    exp_id = client.get_run(mv.run_id).info.experiment_id
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "after the move", "notes/after.txt")
    assert run.info.artifact_uri.startswith(str(new / ".mlops" / "artifacts") + "/")
    assert read_text(client, run.info.run_id, "notes/after.txt") == "after the move"
    assert not old.exists()
    assert mentions(new / ".mlops" / "mlflow.db", str(old) + "/") == []


def test_the_stock_mlflow_client_reads_a_moved_store_once_mlops_nb_opened_it(template, tmp_path):
    import mlflow.artifacts

    old = placed(template, tmp_path / "old")
    new = tmp_path / "new"
    shutil.move(old, new)
    get_client(resolve_config(new))  # what any mlops-nb command, magic or panel does first

    client = stock_client(new)
    mv = client.get_model_version_by_alias("lin", "champion")
    model_id = mv.source.removeprefix("models:/")
    files = mlflow.artifacts.download_artifacts(artifact_uri=client.get_logged_model(model_id).artifact_location)
    assert (Path(files) / "MLmodel").is_file()
    stock_load = "import mlflow; print(mlflow.pyfunc.load_model('models:/lin@champion').predict([[4.0]])[0])"
    env = {**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{new / '.mlops' / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-c", stock_load], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and float(out.stdout.split()[-1]) == pytest.approx(8.0), out.stderr[-2000:]
    assert Path(client.get_model_version_download_uri("lin", mv.version)).is_relative_to(new)
    assert read_text(client, mv.run_id, "notes/hello.txt") == "hello from the run"
    assert {a.path for a in client.list_artifacts(mv.run_id)} >= {"code", "notes"}
    exp_id = client.get_run(mv.run_id).info.experiment_id
    traces = client.search_traces(locations=[exp_id])
    assert len(traces) == 1 and traces[0].data.spans[0].name == "double"


def test_a_copy_reads_and_writes_its_own_store_and_leaves_the_original_unchanged(template, tmp_path):
    original = placed(template, tmp_path / "original")
    before = digests(original)
    copy = tmp_path / "ci-cache" / "copy"
    shutil.copytree(original, copy)

    # A job in the copy: its run, its artifacts, its model version, all in the copy.
    out = _mlops_nb("run", "train.ipynb", "-p", "alpha=1.5", "--json", cwd=copy)
    client = get_client(resolve_config(copy))
    _model, mv = load_model(client, "models:/lin@champion")
    assert str(mv.version) == "2" and mv.run_id in out.stdout
    assert client.get_run(mv.run_id).info.artifact_uri.startswith(str(copy / ".mlops" / "artifacts") + "/")
    first = client.get_model_version("lin", "1")
    assert read_text(client, first.run_id, "notes/hello.txt") == "hello from the run"
    assert mentions(copy / ".mlops" / "mlflow.db", str(original) + "/") == []

    assert digests(original) == before  # not a byte of the original changed
    orig_client = stock_client(original)
    assert [str(v.version) for v in orig_client.search_model_versions("name = 'lin'")] == ["1"]
    assert read_text(orig_client, first.run_id, "notes/hello.txt") == "hello from the run"


def test_a_store_written_before_mlops_nb_recorded_its_place_is_found_and_moved(template, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(template, old)
    # What mlops-nb wrote before it recorded the store's place: the database still
    # names the template's folder, and nothing says so but the stored paths.
    (old / ".mlops" / "mlflow.db.ready").write_text("initialised by mlops-nb\n")
    new = tmp_path / "new"
    shutil.move(old, new)

    client = get_client(resolve_config(new))
    model, mv = load_model(client, "models:/lin@champion")
    assert model.predict([[1.0]])[0] == pytest.approx(2.0)
    assert read_text(client, mv.run_id, "notes/hello.txt") == "hello from the run"
    assert mentions(new / ".mlops" / "mlflow.db", str(template) + "/") == []


OPEN_AND_READ = """
import sys, time
start = float(sys.argv[1])
import mlflow.artifacts
from mlops_nb.config import resolve_config
from mlops_nb.store import get_client
while time.time() < start:
    time.sleep(0.005)
client = get_client(resolve_config("."))
mv = client.get_model_version_by_alias("lin", "champion")
print(mlflow.artifacts.load_text(client.get_run(mv.run_id).info.artifact_uri + "/notes/hello.txt"))
"""


def test_several_processes_opening_a_moved_store_at_once_all_read_it(template, tmp_path):
    old = placed(template, tmp_path / "old")
    new = tmp_path / "new"
    shutil.move(old, new)
    start = time.time() + 4.0  # every process is past its imports by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_READ, str(start)],
            cwd=new,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "hello from the run", err[-2000:]
    assert mentions(new / ".mlops" / "mlflow.db", str(old) + "/") == []
    assert stock_client(new).get_experiment("0").artifact_location == str(new / ".mlops" / "artifacts" / "0")


def test_artifacts_that_were_not_copied_are_named_in_one_line(template, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("artifacts"))  # the database only
    client = get_client(resolve_config(copy))
    mv = client.get_model_version_by_alias("lin", "champion")

    line = explain_missing_run_artifacts(client, mv.run_id, f"the artifacts of run {mv.run_id}")
    assert line is not None and "\n" not in line
    assert line.startswith(f"cannot read the artifacts of run {mv.run_id}: {copy / '.mlops' / 'artifacts'}/")
    assert "copy that folder from the original project, or re-run the notebook" in line
    location = client.get_logged_model(mv.source.removeprefix("models:/")).artifact_location
    assert explain_missing_artifact(client.tracking_uri, location, "the files of model lin v1").startswith(
        f"cannot read the files of model lin v1: {location} is not in this project's store"
    )


def test_a_model_or_notebook_whose_files_are_gone_says_which_and_what_to_do(template, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("artifacts"))
    (copy / "train.ipynb").unlink()
    client = get_client(resolve_config(copy))
    with pytest.raises(MlopsError) as info:
        load_model(client, "models:/lin@champion")
    message = str(info.value)
    assert message.startswith("cannot read the files of model lin v1: ") and "\n" not in message
    assert str(copy / ".mlops" / "artifacts") in message and "re-run the notebook that logged it" in message
    with pytest.raises(MlopsError) as info:
        version_notebook(client, "lin", "1", copy)  # not "capture was off": the run's files are gone
    assert str(info.value).startswith("cannot read the files saved with run ") and "\n" not in str(info.value)


def _moved_outside_artifacts(tmp_path: Path):
    """A project whose artifacts are kept outside it (one run's file), then moved to a new
    disk: (project, old folder, new folder, config, client, run)."""
    project = tmp_path / "proj"
    outside = tmp_path / "shared-disk" / "artifacts"
    (project / ".mlops").mkdir(parents=True)
    (project / "pyproject.toml").write_text(f"[tool.mlops-nb]\nartifact_location = '{outside}'\n")
    config = resolve_config(project)
    client = get_client(config)
    run = client.create_run(get_or_create_experiment(client, config, "outside"))
    client.log_text(run.info.run_id, "kept outside", "notes/x.txt")
    moved = tmp_path / "new-disk" / "artifacts"
    moved.parent.mkdir()
    shutil.move(outside, moved)
    return project, outside, moved, config, client, run


def test_artifacts_kept_outside_the_project_say_what_to_run_and_can_be_re_pointed(tmp_path):
    _, outside, moved, config, client, run = _moved_outside_artifacts(tmp_path)

    line = explain_missing_run_artifacts(client, run.info.run_id, "the artifacts of the run", expected=True)
    assert line is not None and "\n" not in line
    assert line.startswith(f"cannot read the artifacts of the run: it was stored at {outside}/")
    assert "outside this project, and that folder is gone" in line
    assert "run `mlops-nb relocate OLD_FOLDER NEW_FOLDER`" in line

    # The Default experiment, this one and its run: all three were kept outside.
    assert relocate_artifacts(config, str(outside), str(moved)) == 3
    assert read_text(client, run.info.run_id, "notes/x.txt") == "kept outside"
    assert explain_missing_run_artifacts(client, run.info.run_id, "the artifacts of the run", expected=True) is None


def test_stores_that_are_not_sqlite_are_never_rewritten(tmp_path):
    config = resolve_config(tmp_path, environ={"MLFLOW_TRACKING_URI": "postgresql://u:p@127.0.0.1:9/mlflow"})
    with pytest.raises(StoreError) as info:
        relocate_artifacts(config, "/a", "/b")
    assert "only a SQLite store's artifact locations" in str(info.value) and "\n" not in str(info.value)


def test_relocate_command_re_points_artifacts_kept_outside_the_project(tmp_path):
    project, outside, moved, _, client, run = _moved_outside_artifacts(tmp_path)
    cli = [sys.executable, "-m", "mlops_nb", "relocate", "--project", str(project)]

    missing = subprocess.run([*cli, str(outside), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and missing.stdout == ""
    done = subprocess.run([*cli, str(outside), str(moved)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"3 artifact location(s) moved from {outside} to {moved}"
    assert read_text(client, run.info.run_id, "notes/x.txt") == "kept outside"
