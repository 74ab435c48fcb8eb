"""`reproduce`: a run's notebook snapshot re-executed with its recorded params on real
kernels, real papermill and a real SQLite store; the verdict as the user sees and stores it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_notebook, new_project

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import NotFoundError, UsageError
from mlops_nb.jobs.run.execution import run_notebook
from mlops_nb.jobs.run.reproduce import Reproduction, package_differences, reproduce, reproduction_table
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow


def _notebook(root: Path, body: str) -> Path:
    return make_notebook(
        root / "analysis" / "train.ipynb",
        [
            ("code", "n = 3", ["parameters"]),
            ("code", "%load_ext mlops_nb\n%mlops track", []),
            ("code", body, []),
        ],
    )


def _job(root: Path, body: str, params: dict | None = None):
    config = resolve_config(root, environ={})
    result = run_notebook(_notebook(root, body), params or {}, experiment="train", config=config)
    assert result.status == "FINISHED", result.error
    return config, get_client(config), result


def test_a_deterministic_run_reproduces_with_its_recorded_params(tmp_path: Path):
    root = new_project(tmp_path)
    # Reads a project file relative to the notebook: the snapshot must run from its folder.
    (root / "analysis" / "factor.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "analysis" / "factor.txt").write_text("0.25")
    config, client, job = _job(root, "score = n * float(open('factor.txt').read())\n%mlops log score", {"n": 4})
    notebook_before = (root / "analysis" / "train.ipynb").read_text()

    result = reproduce(job.run_id, config=config)

    assert isinstance(result, Reproduction) and result.reproduced is True, reproduction_table(result)
    assert result.job_status == "FINISHED" and result.model is None
    assert [(m.name, m.original, m.new, m.ok) for m in result.metrics] == [("score", 1.0, 1.0, True)]
    new = client.get_run(result.new_run_id)
    assert new.data.params["n"] == "4"  # the recorded value, not the default 3
    assert new.data.tags["mlops_nb.reproduces"] == job.run_id
    assert new.data.tags["mlops_nb.notebook"] == "analysis/train.ipynb"
    assert client.get_experiment(new.info.experiment_id).name == "train"
    original = client.get_run(job.run_id).data.tags
    assert original["mlops_nb.reproduced"] == "yes" and original["mlops_nb.reproduced_by"] == result.new_run_id
    assert result.package_differences == []  # same process, same environment
    table = reproduction_table(result)
    assert "score" in table and table.splitlines()[-1] == "reproduces: yes"
    assert (root / "analysis" / "train.ipynb").read_text() == notebook_before
    assert not any((root / ".mlops" / "reproduce").iterdir())  # the temporary copy is gone
    assert result.to_dict()["metrics"][0]["name"] == "score"


def test_a_random_metric_does_not_reproduce(tmp_path: Path):
    root = new_project(tmp_path)
    config, client, job = _job(root, "import random\nscore = random.random()\n%mlops log score")

    result = reproduce(job.run_id, config=config, rtol=1e-9)

    assert result.reproduced is False
    assert [(m.name, m.ok) for m in result.metrics] == [("score", False)]
    assert client.get_run(job.run_id).data.tags["mlops_nb.reproduced"] == "no"
    assert reproduction_table(result).splitlines()[-1] == "does not reproduce: 1 of 1 metrics differ"


def test_a_model_reference_reproduces_its_source_run_and_tags_the_version(tmp_path: Path):
    root = new_project(tmp_path)
    body = (
        "from sklearn.linear_model import LogisticRegression\n"
        "m = LogisticRegression().fit([[0, 1], [1, 0]], [0, 1])\n"
        "score = float(m.score([[0, 1], [1, 0]], [0, 1]))\n"
        "%mlops log score\n"
        "%mlops register m --name demo --alias champion"
    )
    config, client, job = _job(root, body)
    assert str(client.get_model_version_by_alias("demo", "champion").version) == "1"

    result = reproduce("models:/demo@champion", config=config)

    assert result.reproduced is True, reproduction_table(result)
    assert result.original_run_id == job.run_id and result.model == "demo v1"
    assert client.get_model_version("demo", "1").tags["mlops_nb.reproduced"] == "yes"
    # The re-run registered v2, but the alias a deployment loads stays where it was.
    assert client.get_model_version("demo", "2").run_id == result.new_run_id
    assert str(client.get_model_version_by_alias("demo", "champion").version) == "1"
    assert any("champion" in note for note in result.notes)


def test_unknown_targets_and_a_run_without_snapshot_are_clear_errors(tmp_path: Path):
    root = new_project(tmp_path)
    config = resolve_config(root, environ={})
    client = get_client(config)
    with pytest.raises(NotFoundError, match="no run 'deadbeef"):
        reproduce("deadbeef" * 4, config=config)
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        reproduce("models:/nope@champion", config=config)
    with pytest.raises(UsageError, match="--rtol"):
        reproduce("x", rtol=-1, config=config)
    run = client.create_run(client.create_experiment("bare"))  # tracked without a snapshot
    with pytest.raises(UsageError, match="holds no notebook snapshot.*capture"):
        reproduce(run.info.run_id, config=config)


def test_package_differences_list_added_removed_and_changed():
    old = "# python 3.11.4 (/a/python)\n# platform x\nnumpy==1.26.0\nPandas==2.0.0\nscipy==1.0\n"
    new = "# python 3.11.4 (/b/python)\n# platform y\nnumpy==2.0.0\npandas==2.0.0\nsklearn==1.5\n"
    assert package_differences(old, new) == [
        ("numpy", "1.26.0", "2.0.0"),
        ("scipy", "1.0", None),
        ("sklearn", None, "1.5"),
    ]
