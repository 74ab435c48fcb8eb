"""What the serving tests share: a project with iris models registered in its store, the
model server as a real process, and HTTP calls to it.

The models are registered in a separate Python process, as a notebook would: MLflow's
fluent run (``mlflow.start_run``) is process-global state the tests' own process keeps
out of. Versions answer differently so a response shows which one answered: version k
of the plain models predicts ``class + 10 * (k - 1)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
READY_TIMEOUT = 120.0  # a server's start: imports and a load, on a loaded 2-core machine

_REGISTER = r"""
import json, sys
import mlflow
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from mlops_nb import registry
from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

root, count, extras = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
config = resolve_config(root, environ={})
client = get_client(config)
mlflow.set_tracking_uri(config.tracking_uri)
X, y = load_iris(return_X_y=True, as_frame=True)
X.columns = COLUMNS
rows = X.iloc[::10].reset_index(drop=True)
# A tracking server keeps artifacts where it decides (artifact_root is None then).
exp = client.create_experiment(
    "serving", artifact_location=config.artifact_root + "/serving" if config.artifact_root else None
)
out = {"expected": {}, "runs": {}, "rows": rows.to_dict(orient="split")}
for k in range(count):
    model = LogisticRegression(max_iter=1000).fit(X, y + 10 * k)
    with mlflow.start_run(experiment_id=exp) as run:
        v = registry.register_model(
            client, model, "iris", run.info.run_id, alias="champion" if k == 0 else None, input_example=X.head(3)
        )
    out["expected"][v.version] = model.predict(rows).tolist()
    out["runs"][v.version] = run.info.run_id

if "broken" in extras:
    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            raise RuntimeError("this version cannot load (on purpose)")

        def predict(self, context, model_input, params=None):
            return model_input.iloc[:, 0]

    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Broken(),
            signature=infer_signature(X.head(3), y.head(3)),
            pip_requirements=["mlflow"],
        )
    mv = client.create_model_version("iris", info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    out["broken"] = str(mv.version)

if "incompatible" in extras:
    upper = X.rename(columns=str.upper)
    model = LogisticRegression(max_iter=1000).fit(upper, y)
    with mlflow.start_run(experiment_id=exp) as run:
        v = registry.register_model(client, model, "iris", run.info.run_id, input_example=upper.head(3))
    out["incompatible"] = v.version
print("RESULT " + json.dumps(out))
""".replace("COLUMNS", repr(COLUMNS))


def new_serving_project(tmp: Path) -> Path:
    """An empty project folder with its embedded store."""
    root = tmp / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'serving'\n")
    return root


def register_iris(root: Path, count: int, *extras: str) -> dict:
    """Register ``count`` iris versions (v1 @champion) and the ``extras`` (``broken``: a
    pyfunc whose load fails; ``incompatible``: other column names). Returns the expected
    predictions of each plain version on ``rows``, the run ids, and the extra versions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", _REGISTER, str(root), str(count), *extras],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=root,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"registration failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def store_client(root: Path):
    """The project's MlflowClient, as mlops-nb opens it."""
    return get_client(resolve_config(root, environ={}))


class Served:
    """``mlops-nb serve`` (or any server command) as a process with its output in files."""

    def __init__(self, cmd: list[str], cwd: Path, url: str, logdir: Path, env: dict | None = None) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.out_path = logdir / "stdout.txt"
        self.err_path = logdir / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # The server's store comes from --project, as a user's shell gives it: no
                # MLFLOW_* variable an earlier test's in-process code left behind.
                env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **(env or {})},
            )

    def wait_ready(self, path: str = "/ready", timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.proc.args} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"{self.url} not ready in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the process (and its group), as a user or an orchestrator stops it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def serve(root: Path, model: str, port: int, *args: str, logdir: Path, env: dict | None = None) -> Served:
    """``mlops-nb serve MODEL --port PORT ARGS --project ROOT`` started in ``root``."""
    cmd = [sys.executable, "-m", "mlops_nb.cli", "serve", model, "--port", str(port), *args, "--project", str(root)]
    return Served(cmd, root, f"http://127.0.0.1:{port}", logdir, env)


def split_body(rows: dict, idx: list[int] | None = None) -> str:
    """A ``dataframe_split`` body of the rows at ``idx`` (default: all)."""
    data = rows["data"] if idx is None else [rows["data"][i] for i in idx]
    return json.dumps({"dataframe_split": {"columns": rows["columns"], "data": data}})
