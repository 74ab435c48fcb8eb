"""The REST API fuzzed from its own OpenAPI file: schemathesis, every check, against a
real Jupyter server (a subprocess on 127.0.0.1 with a token) serving a real project.

The suite fails on any 500 and on any difference between what
``mlops_nb/server/openapi.yaml`` promises and what the server does: a status, a body or
a content type the file does not document, valid input refused, invalid input accepted,
a route answering without Jupyter's authentication.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, make_notebook, server_config
from services import jupyter_server

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.registry import promote
from mlops_nb.tracking import Tracker

pytestmark = pytest.mark.slow

SPEC = REPO / "mlops_nb" / "server" / "openapi.yaml"
BIN = Path(sys.executable).parent
#: Fixed, so `make test` tries the same cases every time; set MLOPS_NB_FUZZ_SEED to explore others.
SEED = int(os.environ.get("MLOPS_NB_FUZZ_SEED", "20260113"))
#: Cases per operation and phase: about 750 requests in all, under a minute on two busy cores.
MAX_EXAMPLES = int(os.environ.get("MLOPS_NB_FUZZ_EXAMPLES", "20"))


def _seed_project(root: Path) -> None:
    """A project whose store holds the model the OpenAPI file's examples name
    ('tumour-classifier' v1 @champion, v2 @challenger, from a tracked notebook) and
    another ('other' v1), a schedule 'nightly' of a tiny notebook and one job run of it;
    @champion is protected and v2's promotion to it waits for approval."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.jobs.schedules.store import ScheduleStore

    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'fuzzed'\n\n[tool.mlops-nb]\napproval_aliases = ['champion']\n"
    )
    cells = [("code", "word = 'hello'", ["parameters"]), ("code", "print(word)", [])]
    notebook = make_notebook(root / "nb" / "train.ipynb", cells)
    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(notebook, "test"), config=config)
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    versions = (
        ("tumour-classifier", 0.90, "champion"),
        ("tumour-classifier", 0.95, "challenger"),
        ("other", 0.5, None),
    )
    for name, acc, alias in versions:
        handle = tracker.start_cell_run(f"fit-{acc}", autolog=False)
        tracker.log_params({"C": str(acc)})
        tracker.log_metric("accuracy", acc)
        tracker.flush()
        tracker.register_model(model, name, alias, input_example=np.array([[0.0, 1.0]]))
        tracker.end_run(handle)
    tracker.close()
    assert promote(tracker.client, "tumour-classifier", "accuracy", approval=config.approval_aliases).pending
    ScheduleStore.for_project(config).add("nightly", "0 2 * * *", "nb/train.ipynb")
    # One finished job, so /jobs lists a row and its executed notebook can be opened.
    job = subprocess.run(
        [str(BIN / "mlops-nb"), "run", "nb/train.ipynb", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stdout + job.stderr


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Jupyter server with the extension, on a free loopback port, with a token;
    its configuration and runtime folders are private to the test."""
    tmp = tmp_path_factory.mktemp("api")
    root = tmp / "project"
    _seed_project(root)
    with jupyter_server(root, tmp, config=server_config(), ready="/mlops-nb/api/models", timeout=120) as server:
        yield server.base, server.token, server.log


def test_schemathesis_finds_no_server_error_and_no_difference_from_the_openapi_file(api_server, tmp_path):
    base, token, log_path = api_server
    report = tmp_path / "report.json"
    cmd = [
        str(BIN / "st"), "run", str(SPEC), "--url", base, "-H", f"Authorization: token {token}",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--request-timeout", "30", "--no-color",
        "--report", "json", "--report-json-path", str(report),
        # "Run now" starts a real job (a kernel) for every case that names the schedule;
        # its bad input is checked by test_server_jobs.py.
        "--exclude-path", "/mlops-nb/api/schedules/{schedule}/runs",
        # That check wants 401 without an Authorization header; Jupyter answers 403 (the
        # file says so), and ignored_auth still checks every route refuses such requests.
        "--exclude-checks", "missing_required_header",
    ]  # fmt: skip
    python_path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "api_fuzz_hooks", "PYTHONPATH": python_path}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    server_log = log_path.read_text()
    assert done.returncode == 0, (
        f"{done.stdout[-12000:]}\n{done.stderr[-3000:]}\n-- server log --\n{server_log[-3000:]}"
    )
    # It did fuzz: every selected route, every phase, hundreds of cases; and the server
    # logged no uncaught exception.
    result = json.loads(report.read_text())
    assert result["operations"]["tested"] == result["operations"]["selected"] == 18, result["operations"]
    assert {name: phase["status"] for name, phase in result["phases"].items()} == dict.fromkeys(
        ("examples", "coverage", "fuzzing", "stateful"), "success"
    )
    assert result["test_cases"]["generated"] >= 10 * MAX_EXAMPLES, result["test_cases"]
    assert "Uncaught exception" not in server_log
    print(f"schemathesis: {result['test_cases']['generated']} cases in {result['running_time']:.0f} s, no failure")
