"""Where runs go: resolution of the project root and the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import ConfigError


def test_notebooks_in_subfolders_of_one_project_share_one_store(tmp_path: Path):
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    one = resolve_config(root / "a" / "deep")
    two = resolve_config(root / "b")
    assert one.tracking_uri == two.tracking_uri == f"sqlite:///{root / '.mlops' / 'mlflow.db'}"
    assert one.project_root == root
    assert one.artifact_root == str(root / ".mlops" / "artifacts")
    assert "holds .git" in one.source


@pytest.mark.parametrize("marker", [".git", "pyproject.toml", ".mlops"])
def test_nearest_marker_is_the_project_root(tmp_path: Path, marker: str):
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "sub"
    inner.mkdir()
    target = inner / marker
    target.mkdir() if marker != "pyproject.toml" else target.write_text("[project]\nname='x'\n")
    (inner / "nb").mkdir()
    cfg = resolve_config(inner / "nb")
    assert cfg.project_root == inner and f"holds {marker}" in cfg.source


def test_no_marker_uses_the_notebook_folder_and_says_so(tmp_path: Path):
    cfg = resolve_config(tmp_path, environ={})
    assert cfg.project_root == tmp_path
    assert cfg.tracking_uri == f"sqlite:///{tmp_path / '.mlops' / 'mlflow.db'}"
    assert "no .git, pyproject.toml or .mlops above the notebook" in cfg.source


def test_environment_variable_wins(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.mlops-nb]\ntracking_uri = "sqlite:///other.db"\n')
    cfg = resolve_config(tmp_path, environ={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert cfg.tracking_uri == "http://127.0.0.1:5000"
    assert cfg.artifact_root is None  # the server decides
    assert "MLFLOW_TRACKING_URI" in cfg.source


def test_pyproject_table_relative_sqlite_is_relative_to_the_file(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mlops-nb]\ntracking_uri = "sqlite:///stores/team.db"\nexperiment = "wine"\ncapture = false\n'
    )
    (tmp_path / "notebooks").mkdir()
    cfg = resolve_config(tmp_path / "notebooks", environ={})
    assert cfg.tracking_uri == f"sqlite:///{tmp_path / 'stores' / 'team.db'}"
    assert cfg.artifact_root == str(tmp_path / "stores" / "artifacts")
    assert cfg.experiment == "wine" and cfg.capture is False
    assert "tool.mlops-nb" in cfg.source and str(tmp_path / "pyproject.toml") in cfg.source


@pytest.mark.parametrize(
    "body, message",
    [
        ('[tool.mlops-nb]\ntraking_uri = "x"\n', "unknown key 'traking_uri'"),
        ('[tool.mlops-nb]\ntracking_uri = ""\n', "must be a non-empty string"),
        ('[tool.mlops-nb]\ncapture = "yes"\n', "must be true or false"),
        ("[tool.mlops-nb\n", "is not valid TOML"),
    ],
)
def test_bad_configuration_is_one_clear_line(tmp_path: Path, body: str, message: str):
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config(tmp_path, environ={})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("uri", ["databricks", "file:./mlruns", "postgresql://u@127.0.0.1/db"])
def test_other_mlflow_uris_pass_through(tmp_path: Path, uri: str):
    assert resolve_config(tmp_path, environ={"MLFLOW_TRACKING_URI": uri}).tracking_uri == uri


@pytest.mark.parametrize(
    "value, expected",
    [('["champion", "prod", "champion"]', ("champion", "prod")), ('"champion, prod,"', ("champion", "prod"))],
)
def test_approval_aliases_are_a_list_or_a_comma_separated_text_and_the_environment_wins(
    tmp_path: Path, value: str, expected: tuple[str, ...]
):
    import json

    from mlops_nb.config import ProjectConfig

    (tmp_path / "pyproject.toml").write_text(f"[tool.mlops-nb]\napproval_aliases = {value}\n")
    cfg = resolve_config(tmp_path, environ={})
    assert cfg.approval_aliases == expected
    assert ProjectConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a job's round trip
    assert resolve_config(tmp_path, environ={"MLOPS_NB_APPROVAL_ALIASES": "prod"}).approval_aliases == ("prod",)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text("[tool.mlops-nb]\ncapture = true\n")
    assert resolve_config(tmp_path / "other", environ={}).approval_aliases == ()  # none by default


@pytest.mark.parametrize(
    "body, env, message",
    [
        ("approval_aliases = 3", "", "approval_aliases in \\[tool.mlops-nb\\] of .* must be a list of alias names"),
        ('approval_aliases = ["champion", 1]', "", "approval_aliases in .* must hold alias names \\(text\\), not 1"),
        ('approval_aliases = ["latest"]', "", "holds 'latest', which is not an alias name"),
        ('approval_aliases = ["a b"]', "", "holds 'a b', which is not an alias name"),
        ("", "champion,v2", "MLOPS_NB_APPROVAL_ALIASES holds 'v2', which is not an alias name"),
    ],
)
def test_bad_approval_aliases_are_one_line_naming_where(tmp_path: Path, body: str, env: str, message: str):
    (tmp_path / "pyproject.toml").write_text(f"[tool.mlops-nb]\n{body}\n")
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config(tmp_path, environ={"MLOPS_NB_APPROVAL_ALIASES": env})
    assert "\n" not in str(info.value)
