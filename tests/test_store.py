"""A new store is initialised once, safely, when several processes start together; a moved
one follows its folder, and an unmoved one is left alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.005)
    import mlops_nb
    from mlops_nb.tracking import Tracker
    from mlops_nb.provenance import NotebookLocation
    t = Tracker(notebook=NotebookLocation(None, "test"))
    h = t.start_cell_run(f"proc-{sys.argv[1]}", autolog=False, experiment="race")
    t.log_metric("x", 1.0)
    t.end_run(h)
    print(h.run_id)
    """
)


@pytest.mark.slow
def test_parallel_first_use_of_a_new_store(tmp_path: Path):
    import time

    (tmp_path / ".mlops").mkdir()
    start = time.time() + 3.0  # every process is past its imports by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(i), str(start)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / '.mlops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(o.strip() for o, _ in outs)
    assert all(r.info.status == "FINISHED" and r.data.metrics == {"x": 1.0} for r in runs)
    assert client.get_experiment("0").artifact_location == str(tmp_path / ".mlops" / "artifacts" / "0")


def test_an_unusable_store_path_is_one_line_naming_it(tmp_path: Path):
    from mlops_nb.config import resolve_config
    from mlops_nb.exceptions import StoreUnreachableError
    from mlops_nb.store import ensure_store

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = resolve_config(tmp_path, environ={"MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/sub/m.db"})
    with pytest.raises(StoreUnreachableError) as info:
        ensure_store(cfg)
    assert cfg.tracking_uri in str(info.value) and "\n" not in str(info.value)


def _store_with_locations(root: Path, pyproject: str) -> tuple[str, str]:
    """A project whose store holds a run with an artifact, an experiment kept as a
    ``file:`` URI and one in a sibling folder whose name starts like the project's."""
    from mlops_nb.config import resolve_config
    from mlops_nb.store import get_client, get_or_create_experiment

    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject)
    config = resolve_config(root)
    client = get_client(config)
    run = client.create_run(get_or_create_experiment(client, config, "e"))
    client.log_text(run.info.run_id, "kept", "notes/x.txt")
    client.create_experiment("as-uri", artifact_location=(root / "uri-artifacts").as_uri())
    client.create_experiment("sibling", artifact_location=f"{root}-other/artifacts")
    return run.info.run_id, config.tracking_uri


def test_a_store_configured_in_pyproject_follows_the_project_and_only_its_own_paths_move(tmp_path: Path):
    import mlflow.artifacts
    from mlflow import MlflowClient

    from mlops_nb.config import resolve_config
    from mlops_nb.store import get_client

    old, new = tmp_path / "proj", tmp_path / "moved" / "proj"
    settings = "[tool.mlops-nb]\ntracking_uri = 'sqlite:///stores/team.db'\nartifact_location = 'stores/artifacts'\n"
    run_id, _ = _store_with_locations(old, settings)
    new.parent.mkdir()
    old.rename(new)

    client = get_client(resolve_config(new))
    artifact_uri = client.get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith(str(new / "stores" / "artifacts") + "/")
    assert mlflow.artifacts.load_text(f"{artifact_uri}/notes/x.txt") == "kept"
    stock = MlflowClient(f"sqlite:///{new / 'stores' / 'team.db'}")
    assert stock.get_experiment_by_name("as-uri").artifact_location == (new / "uri-artifacts").as_uri()
    # A folder beside the project is not part of it, however alike the names.
    assert stock.get_experiment_by_name("sibling").artifact_location == f"{old}-other/artifacts"


def test_opening_an_unmoved_store_writes_nothing_even_through_a_symlink(tmp_path: Path):
    from mlops_nb.config import resolve_config
    from mlops_nb.store import ensure_store

    root = tmp_path / "proj"
    _run_id, uri = _store_with_locations(root, "[project]\nname = 'p'\n")
    store = root / ".mlops"
    before = {p.name: p.read_bytes() for p in (store / "mlflow.db", store / "mlflow.db.ready")}
    assert json.loads(before["mlflow.db.ready"])["anchor"] == str(root)
    link = tmp_path / "link"
    link.symlink_to(root)
    for folder in (root, link):
        ensure_store(resolve_config(folder, environ={"MLFLOW_TRACKING_URI": uri.replace(str(root), str(folder))}))
    assert {p.name: p.read_bytes() for p in (store / "mlflow.db", store / "mlflow.db.ready")} == before
