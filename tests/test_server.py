"""The registry REST API on a real Jupyter server (pytest-jupyter) and a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tornado.httpclient

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker


@pytest.fixture
def jp_server_config(jp_root_dir):
    return {
        "ServerApp": {
            "jpserver_extensions": {"mlops_nb": True},
            "allow_root": True,
            "allow_unauthenticated_access": False,
        }
    }


@pytest.fixture
def seeded(jp_root_dir: Path):
    """Two models in the server root's embedded store: 'cancer' v1 @champion (acc 0.90),
    v2 @challenger (acc 0.85), v3 (acc 0.95); and 'other' v1."""
    from sklearn.linear_model import LogisticRegression

    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    tracker = Tracker(notebook=NotebookLocation(jp_root_dir / "train.ipynb", "test"), config=resolve_config(jp_root_dir, environ={}))
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for name, acc, alias in (("cancer", 0.90, "champion"), ("cancer", 0.85, "challenger"), ("cancer", 0.95, None), ("other", 0.5, None)):
        h = tracker.start_cell_run(f"fit-{acc}", autolog=False)
        tracker.log_params({"C": str(acc)})
        tracker.log_metric("accuracy", acc)
        tracker.flush()
        tracker.register_model(model, name, alias, input_example=__import__('numpy').array([[0.0, 1.0]]))
        tracker.end_run(h)
    tracker.close()
    return tracker.client


@pytest.fixture
def notebook_version(jp_root_dir: Path, seeded):
    """'nbmodel' v1, registered from the tracked notebook nb/train.ipynb (capture on, so
    its run keeps the snapshot code/train.ipynb); returns the client."""
    import numpy as np
    from conftest import make_notebook
    from sklearn.linear_model import LogisticRegression

    path = make_notebook(jp_root_dir / "nb" / "train.ipynb", [("markdown", "# Training the nbmodel", []), ("code", "fit_the_nbmodel()", [])])
    tracker = Tracker(notebook=NotebookLocation(path, "test"), config=resolve_config(jp_root_dir, environ={}))
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    h = tracker.start_cell_run("fit", autolog=False)
    tracker.register_model(model, "nbmodel", input_example=np.array([[0.0, 1.0]]))
    tracker.end_run(h)
    tracker.close()
    return seeded


async def call(jp_fetch, *path, method="GET", body=None, params=None):
    kwargs = {"method": method, "params": params or {}}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    elif method in ("PUT", "POST"):
        kwargs["body"] = ""
    try:
        resp = await jp_fetch("mlops-nb", "api", *path, **kwargs)
        return resp.code, json.loads(resp.body)
    except tornado.httpclient.HTTPClientError as err:
        return err.code, json.loads(err.response.body) if err.response and err.response.body else {}


def _experiment(client, root: Path, name: str) -> str:
    """An experiment with its artifacts in the test's folder (MLflow's default is ./mlruns)."""
    return client.create_experiment(name, artifact_location=str(root / ".mlops" / "artifacts" / name))


async def test_models_search_and_paging(jp_fetch, seeded):
    code, data = await call(jp_fetch, "models", params={"page_size": "1"})
    assert code == 200, data
    assert [m["name"] for m in data["models"]] == ["cancer"] and data["next_page_token"]
    code, data = await call(jp_fetch, "models", params={"page_size": "1", "page_token": data["next_page_token"]})
    assert [m["name"] for m in data["models"]] == ["other"] and data["next_page_token"] is None
    code, data = await call(jp_fetch, "models", params={"q": "anc"})
    assert [m["name"] for m in data["models"]] == ["cancer"]
    assert data["models"][0]["aliases"] == {"champion": "1", "challenger": "2"}


async def test_model_version_and_compare(jp_fetch, seeded):
    code, data = await call(jp_fetch, "models", "cancer", params={"page_size": "2"})
    assert code == 200 and [v["version"] for v in data["versions"]] == ["3", "2"] and data["next_page_token"]
    code, data = await call(jp_fetch, "models", "cancer", "versions", "1")
    assert code == 200
    assert data["aliases"] == ["champion"] and data["metrics"] == {"accuracy": 0.9}
    assert data["lineage"]["notebook"] == "train.ipynb" and data["lineage"]["run_id"] == data["run_id"]
    assert data["signature"]["inputs"] and data["audit"][0]["alias"] == "champion"
    code, data = await call(jp_fetch, "models", "cancer", "compare", params={"a": "1", "b": "3"})
    assert data["metrics"]["accuracy"] == [0.9, 0.95] and data["params_differ"] == ["C"]


async def test_alias_set_remove_and_promotion_guard(jp_fetch, seeded):
    code, data = await call(jp_fetch, "models", "cancer", "promotions", method="POST", body={"metric": "accuracy"})
    assert code == 409 and "0.85" in data["error"] and "0.9" in data["error"]
    assert str(seeded.get_model_version_by_alias("cancer", "champion").version) == "1"
    code, data = await call(jp_fetch, "models", "cancer", "aliases", "challenger", method="PUT", body={"version": 3})
    assert code == 200 and data["previous_version"] == "2"
    code, data = await call(jp_fetch, "models", "cancer", "promotions", method="POST", body={"metric": "accuracy"})
    assert code == 200 and data["version"] == "3" and data["previous_version"] == "1"
    code, data = await call(jp_fetch, "models", "cancer", "aliases", "challenger", method="DELETE")
    assert code == 200 and data["removed_from_version"] == "3"
    trail = (await call(jp_fetch, "models", "cancer", "versions", "3"))[1]["audit"]
    assert [e["action"] for e in trail] == ["set", "set", "removed"]
    assert all(e["who"] for e in trail)


async def test_versions_page_reads_metrics_stored_at_registration_and_model_reads_live_aliases(jp_fetch, seeded):
    assert json.loads(seeded.get_model_version("cancer", "1").tags["mlops_nb.metrics"]) == {"accuracy": 0.9}
    code, data = await call(jp_fetch, "models", "cancer", "versions", params={"page_size": "2"})
    assert code == 200, data
    # Aliases live on the model: the versions page does not read them (null, not []).
    assert [(v["version"], v["aliases"], v["metrics"]) for v in data["versions"]] == [
        ("3", None, {"accuracy": 0.95}),
        ("2", None, {"accuracy": 0.85}),
    ]
    assert all(v["notebook"] == "train.ipynb" and v["run_id"] for v in data["versions"])
    code, data = await call(jp_fetch, "models", "cancer", "versions", params={"page_size": "2", "page_token": data["next_page_token"]})
    assert [v["version"] for v in data["versions"]] == ["1"]
    assert data["next_page_token"] is None
    assert (await call(jp_fetch, "models", "nope", "versions"))[0] == 404
    # An alias moved a moment ago shows at once on the model and its rows.
    await call(jp_fetch, "models", "cancer", "aliases", "challenger", method="PUT", body={"version": 3})
    code, model = await call(jp_fetch, "models", "cancer")
    assert model["aliases"] == {"champion": "1", "challenger": "3"}
    assert [(v["version"], v["aliases"]) for v in model["versions"]] == [("3", ["challenger"]), ("2", []), ("1", ["champion"])]
    code, page = await call(jp_fetch, "models", params={"q": "cancer"})
    assert page["models"][0]["aliases"] == {"champion": "1", "challenger": "3"}
    # The snapshot is no lineage entry; the version's page reads the run's metrics live.
    run_id = model["versions"][0]["run_id"]
    seeded.log_metric(run_id, "f1", 0.7)
    code, detail = await call(jp_fetch, "models", "cancer", "versions", "3")
    assert "metrics" not in detail["lineage"] and detail["metrics"] == {"accuracy": 0.95, "f1": 0.7}


async def test_versions_registered_outside_mlops_nb_show_their_runs_metrics(jp_fetch, jp_root_dir, seeded):
    exp = _experiment(seeded, jp_root_dir, "outside")
    run = seeded.create_run(exp)
    seeded.log_metric(run.info.run_id, "rmse", 1.5)
    seeded.log_metric(run.info.run_id, "diverged", float("nan"))
    seeded.create_registered_model("plain")
    seeded.create_model_version("plain", source="runs:/x/model", run_id=run.info.run_id)
    code, data = await call(jp_fetch, "models", "plain", "versions")
    assert code == 200, data
    assert [(v["version"], v["metrics"]) for v in data["versions"]] == [("1", {"rmse": 1.5, "diverged": None})]


async def test_notebook_opens_from_the_workspace_else_from_the_runs_snapshot(jp_fetch, jp_root_dir, notebook_version):
    client = notebook_version
    code, data = await call(jp_fetch, "models", "nbmodel", "versions", "1", "notebook")
    assert code == 200, data
    assert data == {"source": "workspace", "path": "nb/train.ipynb"}

    (jp_root_dir / "nb" / "train.ipynb").unlink()
    code, data = await call(jp_fetch, "models", "nbmodel", "versions", "1", "notebook")
    assert code == 200, data
    run_id = client.get_model_version("nbmodel", "1").run_id
    assert {k: data[k] for k in ("source", "name", "run_id", "recorded_path")} == {
        "source": "snapshot", "name": "train.ipynb", "run_id": run_id, "recorded_path": "nb/train.ipynb"
    }
    assert "fit_the_nbmodel" in data["html"] and "Training the nbmodel" in data["html"]
    assert data["html"].lstrip().lower().startswith("<!doctype html>")


async def test_notebook_outside_the_server_root_is_never_served(jp_fetch, jp_root_dir, notebook_version):
    client = notebook_version
    outside = jp_root_dir.parent / "outside.ipynb"
    outside.write_text('{"cells": [{"cell_type": "markdown", "source": "SECRET-OUTSIDE", "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    for recorded in ("../outside.ipynb", str(outside), "link.ipynb"):
        client.set_model_version_tag("nbmodel", "1", "mlops_nb.notebook", recorded)
        code, data = await call(jp_fetch, "models", "nbmodel", "versions", "1", "notebook")
        assert code == 200 and data["source"] == "snapshot" and "path" not in data, (recorded, data)
        assert data["recorded_path"] == recorded and "SECRET-OUTSIDE" not in data["html"]
        assert "fit_the_nbmodel" in data["html"]  # the run's own snapshot instead


async def test_notebook_404_says_what_is_missing(jp_fetch, jp_root_dir, seeded):
    # Registered from a notebook that is not saved in the root, so nothing was captured.
    code, data = await call(jp_fetch, "models", "cancer", "versions", "1", "notebook")
    assert code == 404 and "train.ipynb, which is not in the workspace" in data["error"]
    assert "holds no notebook snapshot" in data["error"] and "\n" not in data["error"]
    # Registered outside mlops-nb: no lineage, no snapshot.
    exp = _experiment(seeded, jp_root_dir, "elsewhere")
    run = seeded.create_run(exp)
    seeded.create_registered_model("plain")
    seeded.create_model_version("plain", source="runs:/x/model", run_id=run.info.run_id)
    code, data = await call(jp_fetch, "models", "plain", "versions", "1", "notebook")
    assert code == 404 and "records no notebook" in data["error"] and "%mlops register" in data["error"]
    code, data = await call(jp_fetch, "models", "plain", "versions", "2", "notebook")
    assert code == 404 and "has no version 2" in data["error"]
    # A damaged snapshot is named, not a 500.
    broken = seeded.create_run(exp)
    seeded.log_text(broken.info.run_id, "{not a notebook", "code/broken.ipynb")
    seeded.create_model_version("plain", source="runs:/x/model", run_id=broken.info.run_id)
    code, data = await call(jp_fetch, "models", "plain", "versions", "2", "notebook")
    assert code == 404 and "the snapshot broken.ipynb of run" in data["error"]


@pytest.mark.parametrize(
    "path, method, body, params, code, message",
    [
        (("models", "nosuch"), "GET", None, None, 404, "no registered model named 'nosuch'"),
        (("models", "cancer", "versions", "9"), "GET", None, None, 404, "has no version 9"),
        (("models", "cancer", "versions", "x"), "GET", None, None, 400, "positive whole number"),
        (("models", "cancer", "aliases", "latest"), "PUT", {"version": 1}, None, 400, "reserved"),
        (("models", "cancer", "aliases", "champion"), "PUT", {}, None, 400, "give the version"),
        (("models", "cancer", "aliases", "gone"), "DELETE", None, None, 404, "has no alias 'gone'"),
        (("models", "cancer", "promotions"), "POST", {"metric": "f1"}, None, 400, "neither version"),
        (("models", "cancer", "promotions"), "POST", {"metric": "accuracy", "min_delta": "x"}, None, 400, "min_delta"),
        (("models",), "GET", None, {"page_size": "0"}, 400, "page size"),
        (("models", "nosuch", "versions"), "GET", None, None, 404, "no registered model named 'nosuch'"),
        (("models", "cancer", "versions"), "GET", None, {"page_size": "1001"}, 400, "page size"),
        (("models", "cancer", "versions"), "GET", None, {"page_size": "x"}, 400, "page_size must be a whole number"),
        (("models",), "GET", None, {"order": "sideways"}, 400, "order must be one of"),
    ],
)
async def test_bad_input_is_4xx_with_a_clear_message(jp_fetch, seeded, path, method, body, params, code, message):
    got, data = await call(jp_fetch, *path, method=method, body=body, params=params)
    assert got == code and message in data["error"]


async def test_every_endpoint_refuses_unauthenticated_requests(jp_serverapp, http_server_client, seeded):
    import re

    from mlops_nb.server.handlers import HANDLERS

    sample = {"name": "cancer", "version": "1", "alias": "champion", "schedule": "nightly", "run_id": "0" * 32}
    checked = 0
    for pattern, handler in HANDLERS:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: sample[m.group(1)], pattern)
        for verb in ("get", "put", "post", "patch", "delete"):
            if not any(verb in k.__dict__ for k in handler.__mro__ if k.__module__ == handler.__module__):
                continue
            body = "{}" if verb in ("put", "post", "patch") else None
            resp = await http_server_client.fetch(
                jp_serverapp.base_url + path.lstrip("/"), method=verb.upper(), body=body, raise_error=False
            )
            assert resp.code == 403, f"{verb.upper()} {path} answered {resp.code} without a token"
            checked += 1
    assert checked == 14  # the registry's 9 and the schedules' and jobs' 5
    # Nothing moved.
    assert str(seeded.get_model_version_by_alias("cancer", "champion").version) == "1"


def test_openapi_file_describes_exactly_the_routes_served():
    import re

    import yaml

    from mlops_nb.server.handlers import HANDLERS

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "mlops_nb" / "server" / "openapi.yaml").read_text())
    served = {}
    for pattern, handler in HANDLERS:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        served[path] = {v for v in ("get", "put", "post", "patch", "delete") if v in handler.__dict__ or any(v in b.__dict__ for b in handler.__mro__[1:-1] if b.__module__ == handler.__module__)}
    described = {path: {v for v in item if v in ("get", "put", "post", "patch", "delete")} for path, item in spec["paths"].items()}
    assert described == served
