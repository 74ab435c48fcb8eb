"""Pipelines on real kernels, real papermill and a real SQLite store: references reach the
notebooks as checked parameters, unchanged steps are reused, failures skip their dependents,
bad pipeline files are one line and exit 2 with nothing run, and the shipped example runs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO, make_notebook, new_project, run_cli, start_cli

from mlops_nb import cli
from mlops_nb.config import resolve_config
from mlops_nb.jobs.batch.pipeline import pipeline_status, run_pipeline
from mlops_nb.store import get_client

pytestmark = pytest.mark.slow

# `a` tracks (it logs a metric), `b` and `c` do not (no MLflow in their kernels: faster).
PIPELINE = """
params:
  rows: 2
  label: base
steps:
  a:
    notebook: a.ipynb
    params: {rows: "${params.rows}"}
  b:
    notebook: b.ipynb
    params:
      total: ${steps.a.metrics.total}
      upstream: ${steps.a.run_id}
      executed: ${steps.a.artifacts.job/a.ipynb}
      note: "rows=${steps.a.params.rows} label=${params.label} $${not a reference}"
  c:
    notebook: c.ipynb
    params: {word: "${params.label}"}
"""


def _notebooks(root: Path) -> None:
    make_notebook(
        root / "a.ipynb",
        [
            ("code", "rows = 1", ["parameters"]),
            ("code", "%load_ext mlops_nb\n%mlops track", []),
            ("code", "total = rows * 1.5\n%mlops log total", []),
        ],
    )
    make_notebook(
        root / "b.ipynb",
        [
            ("code", "total = 0.0\nupstream = ''\nexecuted = ''\nnote = ''", ["parameters"]),
            ("code", "print('GOT', repr(total), upstream, executed.startswith(('file:', '/')), note)", []),
        ],
    )
    make_notebook(root / "c.ipynb", [("code", "word = ''", ["parameters"]), ("code", "print('WORD', word)", [])])


def _project(tmp_path: Path) -> Path:
    root = new_project(tmp_path)
    _notebooks(root)
    (root / "p.yaml").write_text(PIPELINE)
    return root


def _job_runs(root: Path) -> list:
    client = get_client(resolve_config(root, environ={}))
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(exps, max_results=1000) if r.data.tags.get("mlops_nb.kind") == "job"]


def _text(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else text


def _states(result) -> dict[str, str]:
    return {s.name: s.state for s in result.steps}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, timeout=240, env={"MLOPS_NB_AGENT": "off"})


def test_references_caching_edits_and_force(tmp_path: Path):
    root = _project(tmp_path)
    config = resolve_config(root, environ={})
    lines: list[str] = []
    first = run_pipeline(root / "p.yaml", params={"rows": "4"}, config=config, report=lines.append)
    assert first.ok and _states(first) == {"a": "ran", "b": "ran", "c": "ran"}, first.to_dict()
    client = get_client(config)
    pipeline_run = client.get_run(first.run_id)
    assert pipeline_run.data.tags["mlops_nb.kind"] == "pipeline" and pipeline_run.info.status == "FINISHED"
    steps = {s.name: client.get_run(s.run_id) for s in first.steps}
    assert all(r.data.tags["mlflow.parentRunId"] == first.run_id for r in steps.values())
    # What b received: a typed metric, a run id, an artifact URI, interpolated text (with -p applied).
    a_run = steps["a"].info.run_id
    assert steps["b"].data.params["total"] == "6.0" and steps["b"].data.params["upstream"] == a_run
    assert steps["b"].data.params["note"] == "rows=4 label=base ${not a reference}"
    executed = json.loads(Path(next(s.output for s in first.steps if s.name == "b")).read_text())
    printed = "".join(_text(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert printed.strip() == f"GOT 6.0 {a_run} True rows=4 label=base ${{not a reference}}"
    assert any(line.startswith("b: ran in ") for line in lines)
    jobs = len(_job_runs(root))
    assert jobs == 3

    # Unchanged: every step reused, no job run created, and the command says so.
    done = _cli("pipeline", "run", "p.yaml", "-p", "rows=4", cwd=root)
    assert done.returncode == 0, done.stderr
    for step in ("a", "b", "c"):
        run_id = next(s.run_id for s in first.steps if s.name == step)
        assert f"{step}: cached (run {run_id[:12]}…)" in done.stdout
    assert "0 ran, 3 cached" in done.stdout and len(_job_runs(root)) == jobs
    # A different pipeline parameter is a different key for a (and so b), not for c.
    assert [s.state for s in pipeline_status(root / "p.yaml", params={"rows": "5"}, config=config)] == [
        "stale",
        "stale",
        "cached",
    ]

    # Saving a notebook with outputs changes nothing; editing a's code re-runs a and b only.
    nb = json.loads((root / "c.ipynb").read_text())
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "WORD base\n"}]
    nb["cells"][1]["execution_count"] = 7
    (root / "c.ipynb").write_text(json.dumps(nb))
    nb = json.loads((root / "a.ipynb").read_text())
    nb["cells"][2]["source"] = "total = rows * 2.5\n%mlops log total"
    (root / "a.ipynb").write_text(json.dumps(nb))
    assert {s.name: s.state for s in pipeline_status(root / "p.yaml", params={"rows": "4"}, config=config)} == {
        "a": "stale",
        "b": "stale",
        "c": "cached",
    }
    edited = run_pipeline(root / "p.yaml", params={"rows": "4"}, config=config)
    assert _states(edited) == {"a": "ran", "b": "ran", "c": "cached"}
    assert client.get_run(edited.steps[1].run_id).data.params["total"] == "10.0"
    assert len(_job_runs(root)) == jobs + 2

    # --force b: b runs again (and would take its downstream along); a and c are reused.
    forced = run_pipeline(root / "p.yaml", params={"rows": "4"}, force=["b"], config=config)
    assert _states(forced) == {"a": "cached", "b": "ran", "c": "cached"}
    assert forced.steps[1].run_id != edited.steps[1].run_id and len(_job_runs(root)) == jobs + 3


def test_a_failed_step_skips_its_dependents_and_the_rest_finishes(tmp_path: Path):
    root = _project(tmp_path)
    make_notebook(root / "boom.ipynb", [("code", "x = 1", ["parameters"]), ("code", "raise ValueError('boom')", [])])
    (root / "f.yaml").write_text("""
steps:
  boom: {notebook: boom.ipynb}
  after:
    notebook: c.ipynb
    params: {word: "${steps.boom.run_id}"}
  c:
    notebook: c.ipynb
    params: {word: independent}
  missing:
    notebook: b.ipynb
    params: {total: "${steps.c.metrics.nope}"}
""")
    done = _cli("pipeline", "run", "f.yaml", "--json", cwd=root)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    states = {s["name"]: s for s in result["steps"]}
    assert result["status"] == "FAILED" and not result["ok"] and not result["retryable"]
    assert states["boom"]["state"] == "failed" and "ValueError: boom" in states["boom"]["error"]
    assert states["after"]["state"] == "skipped" and "boom" in states["after"]["error"]
    assert states["c"]["state"] == "ran"
    # An output missing at run time fails that step with a message naming it.
    assert states["missing"]["state"] == "failed" and "logged no metric 'nope'" in states["missing"]["error"]
    assert len(_job_runs(root)) == 2  # boom and c; nothing for after or missing
    shown = _cli("pipeline", "show", "f.yaml", "--json", cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert {s["name"]: s["state"] for s in json.loads(shown.stdout)["steps"]} == {
        "boom": "failed",
        "after": "stale",
        "c": "cached",
        "missing": "stale",
    }


def test_sigterm_ends_the_running_step_killed(tmp_path: Path):
    root = new_project(tmp_path)
    make_notebook(root / "slow.ipynb", [("code", "import time\ntime.sleep(60)", [])])
    (root / "s.yaml").write_text(
        "steps:\n  slow: {notebook: slow.ipynb}\n  next: {notebook: slow.ipynb, needs: [slow]}\n"
    )
    proc = start_cli("pipeline", "run", "s.yaml", "--json", cwd=root, env={"MLOPS_NB_AGENT": "off"})
    deadline = time.monotonic() + 60
    while not (root / ".mlops" / "jobs").exists() or not any((root / ".mlops" / "jobs").iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1.5)  # the kernel is executing the sleeping cell
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["status"] == "KILLED"
    assert [(s["state"], s["status"]) for s in result["steps"]] == [("failed", "KILLED"), ("skipped", None)]
    assert [r.info.status for r in _job_runs(root)] == ["KILLED"]


@pytest.mark.parametrize(
    "yaml_text, args, message",
    [
        ("steps:\n  a: {notebook: c.ipynb, needs: [b]}\n  b: {notebook: c.ipynb, needs: [a]}\n", [], "form a cycle"),
        ("steps:\n  a: {notebook: c.ipynb, needs: [zz]}\n", [], "needs unknown step 'zz'"),
        ("steps:\n  a: {notebook: c.ipynb, params: {word: '${steps.nope.run_id}'}}\n", [], "unknown step 'nope'"),
        (
            "steps:\n  a: {notebook: c.ipynb}\n  b: {notebook: c.ipynb, params: {word: '${steps.a.metric.x}'}}\n",
            [],
            "'metric'",
        ),
        ("steps:\n  a: {notebook: c.ipynb, params: {word: '${params.nope}'}}\n", [], "no parameter 'nope'"),
        ("steps:\n  a: {notebook: c.ipynb, params: {wrod: x}}\n", [], "unknown parameter 'wrod'"),
        ("steps:\n  a: {notebook: b.ipynb, params: {total: many}}\n", [], "takes float"),
        ("steps:\n  a: {notebook: gone.ipynb}\n", [], "notebook gone.ipynb not found"),
        ("steps:\n  a: {notebook: c.ipynb\n", [], "not valid YAML at line"),
        ("steps:\n  a: {notebook: c.ipynb, neds: [b]}\n", [], "unknown key 'neds'"),
        ("steps:\n  a: {notebook: c.ipynb}\n", ["--force", "b"], "has no step 'b'"),
        ("params: {n: 1}\nsteps:\n  a: {notebook: c.ipynb}\n", ["-p", "m=2"], "has no parameter 'm'"),
    ],
)
def test_bad_pipeline_is_one_line_exit_2_and_nothing_run(tmp_path: Path, capsys, yaml_text, args, message):
    root = new_project(tmp_path)
    _notebooks(root)
    (root / "bad.yaml").write_text(yaml_text)
    bad = str(root / "bad.yaml")
    commands = [["run", bad, *args]] + ([] if "--force" in args else [["show", bad, *args]])
    for command in commands:
        assert cli.main(["--project", str(root), "pipeline", *command]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("mlops-nb: error: "), err
    assert not (root / ".mlops" / "mlflow.db").exists()  # no store opened, so no run


def test_missing_pipeline_file_is_exit_2(tmp_path: Path, capsys):
    root = new_project(tmp_path)
    assert cli.main(["--project", str(root), "pipeline", "run", str(root / "nope.yaml")]) == 2
    assert "pipeline file" in capsys.readouterr().err


def test_the_example_pipeline_promotes_its_best_candidate_then_is_fully_cached(tmp_path: Path):
    """What `make demo` runs, on a fresh project."""
    root = new_project(tmp_path)
    for name in ("train.ipynb", "evaluate.ipynb", "promote.ipynb", "pipeline.yaml"):
        shutil.copy(REPO / "notebooks" / name, root / name)
    config = resolve_config(root, environ={})
    first = run_pipeline(root / "pipeline.yaml", config=config)
    assert first.ok and _states(first) == {"sweep": "ran", "candidate": "ran", "evaluate": "ran", "promote": "ran"}, (
        first.to_dict()
    )
    client = get_client(config)
    assert client.get_run(first.run_id).info.run_name == "pipeline"  # issue 13: it was "pipeline pipeline"
    sweep = client.get_run(first.steps[0].run_id)
    children = [r for r in _job_runs(root) if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert len(children) == 2 and sweep.data.tags["mlflow.parentRunId"] == first.run_id
    versions = client.search_model_versions("name = 'tumour-classifier'")
    assert [str(v.version) for v in versions] == ["1"]  # the sweep's candidates registered nothing
    assert str(client.get_model_version_by_alias("tumour-classifier", "champion").version) == "1"
    evaluate = client.get_run(first.steps[2].run_id)
    assert evaluate.data.params["model"] == "models:/tumour-classifier/1"
    best = client.get_run(first.steps[0].best_run_id)
    candidate = client.get_run(first.steps[1].run_id)
    assert candidate.data.params["n_estimators"] == best.data.params["n_estimators"]
    assert client.get_run(first.steps[3].run_id).data.metrics["promoted"] == 1.0

    again = run_pipeline(root / "pipeline.yaml", config=config)
    assert set(_states(again).values()) == {"cached"}
    assert len(client.search_model_versions("name = 'tumour-classifier'")) == 1
