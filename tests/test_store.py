"""A new store is initialised once, safely, when several processes start together."""

from __future__ import annotations

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
    for p, (out, err) in zip(procs, outs):
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
