"""Registry REST API figures (issue 4): a real Jupyter server over a store of 1,000
models with 5 versions each, against the raw MlflowClient calls for the same page."""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _seed(root: Path, models: int, versions: int):
    """Versions tagged as ``registry.register_model`` tags them (lineage, flavor and the
    metrics snapshot), without logging real models: 5,000 of those would take hours."""
    from mlops_nb.config import resolve_config
    from mlops_nb.registry import metrics_tag
    from mlops_nb.store import get_client
    from mlops_nb.tags import PREFIX as TAG

    (root / ".mlops").mkdir()
    client = get_client(resolve_config(root, environ={}))
    exp = client.create_experiment("seed", artifact_location=str(root / "artifacts"))
    for m in range(models):
        name = f"model-{m:04d}"
        client.create_registered_model(name)
        for v in range(versions):
            run = client.create_run(exp)
            metrics = {"accuracy": 0.5 + v / 10, "f1": 0.4 + v / 10}
            for key, value in metrics.items():
                client.log_metric(run.info.run_id, key, value)
            tags = {
                TAG + "run_id": run.info.run_id,
                TAG + "notebook": "notebooks/train.ipynb",
                TAG + "params": json.dumps({"C": str(v)}),
                TAG + "flavor": "sklearn",
                **metrics_tag(metrics),
            }
            client.create_model_version(name, source=str(root / "artifacts" / name), run_id=run.info.run_id, tags=tags)
        client.set_registered_model_alias(name, "champion", "1")
    return client


def _medians(repeats: int, *fns) -> list[float]:
    """The median time of each call, the calls taken in turn: a machine that gets busier
    during the run slows them all alike instead of skewing the ratio."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def main(models: int = 1000, versions: int = 5, page: int = 50, repeats: int = 31) -> dict:
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-api-"))
    client = _seed(root, models, versions)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/mlops-nb/api"

    def get(path: str) -> dict:
        req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/models?page_size=1")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def models_api():
            return get(f"/models?page_size={page}")

        def models_raw():
            return client.search_registered_models(max_results=page, order_by=["name ASC"])

        def versions_api():
            return get("/models/model-0500/versions?page_size=20")

        def versions_raw():
            return client.search_model_versions("name = 'model-0500'", max_results=20, order_by=["version_number DESC"])

        # The raw calls that give what the model endpoint gives: search_model_versions
        # leaves a version's aliases empty on SQL stores; only the model has them.
        def versions_raw_aliases():
            return (versions_raw(), client.get_registered_model("model-0500"))

        def model_api():
            return get("/models/model-0500")

        calls = (models_api, models_raw, versions_api, versions_raw, versions_raw_aliases, model_api)
        _medians(3, *calls)  # warm every path
        api_models, raw_models, api_versions, raw_versions, raw_with_aliases, api_model = _medians(repeats, *calls)
        assert len(get(f"/models?page_size={page}")["models"]) == page
        page_of_versions = get("/models/model-0500/versions?page_size=20")["versions"]
        assert len(page_of_versions) == versions and all(v["metrics"] for v in page_of_versions)
        assert all(v["aliases"] is None for v in page_of_versions)  # they come with the model
        model = get("/models/model-0500")
        assert len(model["versions"]) == versions and model["versions"][-1]["aliases"] == ["champion"]
    finally:
        server.terminate()
        server.wait(15)
    return {
        "models_api_s": api_models,
        "models_raw_s": raw_models,
        "models_ratio": api_models / raw_models,
        "versions_api_s": api_versions,
        "versions_raw_s": raw_versions,
        "versions_ratio": api_versions / raw_versions,
        "versions_raw_with_aliases_s": raw_with_aliases,
        "model_api_s": api_model,
        "model_ratio": api_model / raw_with_aliases,
    }


if __name__ == "__main__":
    r = main()
    print(
        f"| API first page of models (of 1,000 x 5 versions) vs raw `search_registered_models` | {r['models_api_s'] * 1000:.1f} ms | {r['models_raw_s'] * 1000:.1f} ms | {r['models_ratio']:.2f}x | <= 1.5 |"
    )
    print(
        f"| API page of a model's versions (`/versions`) vs raw `search_model_versions` | {r['versions_api_s'] * 1000:.1f} ms | {r['versions_raw_s'] * 1000:.1f} ms | {r['versions_ratio']:.2f}x | <= 1.5 |"
    )
    print(
        f"| (for information) API model with aliases and first versions page vs raw `get_registered_model` + `search_model_versions` | {r['model_api_s'] * 1000:.1f} ms | {r['versions_raw_with_aliases_s'] * 1000:.1f} ms | {r['model_ratio']:.2f}x | |"
    )
