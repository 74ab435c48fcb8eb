"""The registry REST API on a real Jupyter server (pytest-jupyter) and a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tornado.httpclient
from helpers import call, make_notebook

from mlops_nb.config import resolve_config
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker


@pytest.fixture
def seeded(jp_root_dir: Path):
    """Two models in the server root's embedded store: 'cancer' v1 @champion (acc 0.90),
    v2 @challenger (acc 0.85), v3 (acc 0.95); and 'other' v1."""
    from sklearn.linear_model import LogisticRegression

    (jp_root_dir / ".mlops").mkdir(exist_ok=True)
    tracker = Tracker(
        notebook=NotebookLocation(jp_root_dir / "train.ipynb", "test"), config=resolve_config(jp_root_dir, environ={})
    )
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for name, acc, alias in (
        ("cancer", 0.90, "champion"),
        ("cancer", 0.85, "challenger"),
        ("cancer", 0.95, None),
        ("other", 0.5, None),
    ):
        h = tracker.start_cell_run(f"fit-{acc}", autolog=False)
        tracker.log_params({"C": str(acc)})
        tracker.log_metric("accuracy", acc)
        tracker.flush()
        tracker.register_model(model, name, alias, input_example=__import__("numpy").array([[0.0, 1.0]]))
        tracker.end_run(h)
    tracker.close()
    return tracker.client


@pytest.fixture
def notebook_version(jp_root_dir: Path, seeded):
    """'nbmodel' v1, registered from the tracked notebook nb/train.ipynb (capture on, so
    its run keeps the snapshot code/train.ipynb); returns the client."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    path = make_notebook(
        jp_root_dir / "nb" / "train.ipynb",
        [("markdown", "# Training the nbmodel", []), ("code", "fit_the_nbmodel()", [])],
    )
    tracker = Tracker(notebook=NotebookLocation(path, "test"), config=resolve_config(jp_root_dir, environ={}))
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    h = tracker.start_cell_run("fit", autolog=False)
    tracker.register_model(model, "nbmodel", input_example=np.array([[0.0, 1.0]]))
    tracker.end_run(h)
    tracker.close()
    return seeded


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
    code, data = await call(
        jp_fetch, "models", "cancer", "versions", params={"page_size": "2", "page_token": data["next_page_token"]}
    )
    assert [v["version"] for v in data["versions"]] == ["1"]
    assert data["next_page_token"] is None
    assert (await call(jp_fetch, "models", "nope", "versions"))[0] == 404
    # An alias moved a moment ago shows at once on the model and its rows.
    await call(jp_fetch, "models", "cancer", "aliases", "challenger", method="PUT", body={"version": 3})
    code, model = await call(jp_fetch, "models", "cancer")
    assert model["aliases"] == {"champion": "1", "challenger": "3"}
    assert [(v["version"], v["aliases"]) for v in model["versions"]] == [
        ("3", ["challenger"]),
        ("2", []),
        ("1", ["champion"]),
    ]
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
        "source": "snapshot",
        "name": "train.ipynb",
        "run_id": run_id,
        "recorded_path": "nb/train.ipynb",
    }
    assert "fit_the_nbmodel" in data["html"] and "Training the nbmodel" in data["html"]
    assert data["html"].lstrip().lower().startswith("<!doctype html>")


async def test_notebook_outside_the_server_root_is_never_served(jp_fetch, jp_root_dir, notebook_version):
    client = notebook_version
    outside = jp_root_dir.parent / "outside.ipynb"
    outside.write_text(
        '{"cells": [{"cell_type": "markdown", "source": "SECRET-OUTSIDE", "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
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
        (
            ("models", "cancer", "aliases", "champion"),
            "PUT",
            {},
            None,
            400,
            """give 'version' in the request body, e.g. {"version": "3"}""",
        ),
        (("models", "cancer", "aliases", "gone"), "DELETE", None, None, 404, "has no alias 'gone'"),
        (("models", "cancer", "promotions"), "POST", {"metric": "f1"}, None, 404, "neither version"),
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


def _token(payload) -> str:
    import base64

    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_a_page_token_the_server_did_not_give_is_a_400_on_every_paged_route(jp_fetch, seeded):
    # Issue 13: non-ASCII tokens were 500s on all three routes (MLflow's decoder raised a
    # bare ValueError); so were tokens that decode to JSON without an offset, or to an
    # offset SQLite cannot hold.
    tokens = ["é", "\u00b2", "١٢", "not base64!", "", "A" * 300]
    tokens += [_token(123), _token([1]), _token({"offset": 10**30}), _token({"offset": -5})]
    for path in (("models",), ("models", "cancer"), ("models", "cancer", "versions")):
        for token in tokens:
            code, data = await call(jp_fetch, *path, params={"page_size": "1", "page_token": token})
            assert (code, data.get("status")) == (400, 400), (path, token, data)
            assert data["error"].startswith("page_token ") and "next_page_token of the previous page" in data["error"]
        # The token the server gave still pages.
        code, first = await call(jp_fetch, *path, params={"page_size": "1"})
        code, second = await call(jp_fetch, *path, params={"page_size": "1", "page_token": first["next_page_token"]})
        assert code == 200, second


async def test_versions_and_numbers_in_other_digits_or_out_of_range_are_a_400(jp_fetch, seeded):
    # Issue 13: '²' passed str.isdigit() and failed in int() (a 500); int() took '١' (an
    # Arabic-Indic one) and leading zeros; ten digits overflowed the store's column.
    for version in ("\u00b2", "١", "01", "0", "1000000000", "9" * 30, "1.0", " 1"):
        for path, params in [
            (("models", "cancer", "versions", version), None),
            (("models", "cancer", "versions", version, "notebook"), None),
            (("models", "cancer", "compare"), {"a": "1", "b": version}),
        ]:
            code, data = await call(jp_fetch, *path, params=params)
            assert code == 400 and "version must be a positive whole number" in data["error"], (path, version, data)
        code, data = await call(
            jp_fetch, "models", "cancer", "aliases", "champion", method="PUT", body={"version": version}
        )
        assert code == 400 and data["error"].startswith("version must be a version number"), (version, data)
    for name, value in (("page_size", "١٢"), ("page_size", "1_0"), ("page_size", "+5"), ("page_size", "9" * 5000)):
        code, data = await call(jp_fetch, "models", params={name: value})
        assert code == 400 and f"{name} must be a whole number" in data["error"], (value, data)
    assert str(seeded.get_model_version_by_alias("cancer", "champion").version) == "1"


async def test_request_bodies_are_held_to_the_openapi_file(jp_fetch, seeded):
    alias, promotions = ("models", "cancer", "aliases", "challenger"), ("models", "cancer", "promotions")
    for path, method, body, message in [
        (
            alias,
            "PUT",
            {"version": "3", "reason": "a typo"},
            'unknown field "reason" in the request body: it takes version, why',
        ),
        (alias, "PUT", {"version": True}, "version must be a version number"),
        (alias, "PUT", {"version": 3.0}, "version must be a version number"),
        (alias, "PUT", {"version": "3", "why": 5}, "why must be a text of at most 1000 characters"),
        (alias, "PUT", {"version": "3", "why": "x" * 1001}, "why must be a text of at most 1000 characters"),
        (alias, "PUT", "[1, 2]", "the request body must be a JSON object, not [1, 2]"),
        (alias, "PUT", '{"version": NaN}', "the request body is not JSON"),
        (alias, "PUT", "{not json", "the request body is not JSON"),
        (promotions, "POST", {"metric": "accuracy", "to": "latest"}, "to must be an alias"),
        (promotions, "POST", {"metric": 5}, "metric must be the name of a metric"),
        (promotions, "POST", {"metric": "accuracy", "lower_is_better": "yes"}, "lower_is_better must be true or false"),
        (promotions, "POST", {"metric": "accuracy", "min_delta": -1}, "min_delta must be a number, 0 or more"),
    ]:
        raw = None if isinstance(body, dict) else body
        code, data = await call(jp_fetch, *path, method=method, body=body if raw is None else None, raw=raw)
        assert (code, data.get("status")) == (400, 400) and message in data["error"], (body, data)
        assert "\n" not in data["error"]
    # Bad bodies moved nothing; the same body with the number as a JSON number is accepted.
    assert str(seeded.get_model_version_by_alias("cancer", "challenger").version) == "2"
    code, data = await call(jp_fetch, *alias, method="PUT", body={"version": 3, "why": "better"})
    assert code == 200 and data == {"name": "cancer", "alias": "challenger", "version": "3", "previous_version": "2"}


async def test_a_model_name_is_url_decoded_once(jp_fetch, jp_root_dir, seeded):
    # The panel encodes a name once (encodeURIComponent); tornado decodes it: a second
    # decoding turned a name holding "%41" into another name.
    exp = _experiment(seeded, jp_root_dir, "percent")
    run = seeded.create_run(exp)
    seeded.create_registered_model("rate%41 100%")
    seeded.create_model_version("rate%41 100%", source="runs:/x/model", run_id=run.info.run_id)
    code, data = await call(jp_fetch, "models", "rate%41 100%")
    assert code == 200 and data["name"] == "rate%41 100%" and [v["version"] for v in data["versions"]] == ["1"]
    code, data = await call(jp_fetch, "models", "rate%41 100%", "versions", "1")
    assert code == 200 and data["load"] == "models:/rate%41 100%/1"


async def test_an_unserved_method_is_a_405_that_says_which_are_served(jp_fetch, seeded):
    for path, method, allowed in [
        (("models",), "PATCH", "GET"),
        (("models", "cancer", "aliases", "champion"), "POST", "PUT, DELETE"),
    ]:
        try:
            await jp_fetch("mlops-nb", "api", *path, method=method, body="{}")
            raise AssertionError(f"{method} {path} was served")
        except tornado.httpclient.HTTPClientError as err:
            assert err.code == 405 and err.response.headers["Allow"] == allowed
            assert json.loads(err.response.body) == {"error": "Method Not Allowed", "status": 405}


async def test_every_endpoint_refuses_unauthenticated_requests(jp_serverapp, http_server_client, seeded):
    import re

    from mlops_nb.server.handlers import HANDLERS

    sample = {
        "name": "cancer",
        "version": "1",
        "alias": "champion",
        "schedule": "nightly",
        "run_id": "0" * 32,
        "deployment": "localhost-5000",
    }
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
    assert checked == 19  # registry 9, approvals 2, schedules and jobs 5, deployments and reports 3
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
        served[path] = {
            v
            for v in ("get", "put", "post", "patch", "delete")
            if v in handler.__dict__
            or any(v in b.__dict__ for b in handler.__mro__[1:-1] if b.__module__ == handler.__module__)
        }
    described = {
        path: {v for v in item if v in ("get", "put", "post", "patch", "delete")}
        for path, item in spec["paths"].items()
    }
    assert described == served


def test_openapi_file_states_the_servers_own_rules():
    import inspect
    import re

    import yaml

    from mlops_nb.registry import PAGE_TOKEN_PATTERN, VERSION_PATTERN
    from mlops_nb.server.handlers import HANDLERS, SPEC_PATH, request_schemas

    spec = yaml.safe_load(SPEC_PATH.read_text())
    schemas = spec["components"]["schemas"]
    put_alias = request_schemas()[("/mlops-nb/api/models/{name}/aliases/{alias}", "put")]
    assert schemas["VersionNumber"]["pattern"] == VERSION_PATTERN
    assert {"type": "string", "pattern": VERSION_PATTERN} in put_alias["properties"]["version"]["oneOf"]
    assert PAGE_TOKEN_PATTERN in spec["components"]["parameters"]["page_token"]["description"]
    # Every route that reads a body has its schema in the file, and refuses unknown fields.
    served = {
        (re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern), verb)
        for pattern, handler in HANDLERS
        for verb in ("put", "post", "patch")
        if verb in handler.__dict__ and "self.body()" in inspect.getsource(handler.__dict__[verb])
    }
    assert served == set(request_schemas()) and all(
        s["additionalProperties"] is False for s in request_schemas().values()
    )
    # Every operation documents the error answers any route can give.
    for path, item in spec["paths"].items():
        for verb, op in item.items():
            if verb in ("get", "put", "post", "patch", "delete"):
                assert {"400", "403", "503"} <= set(op["responses"]), (verb, path)
                assert "{" not in path or "404" in op["responses"], (verb, path)
