"""`mlops-nb serve` as a user runs it: real processes, real HTTP, a real registry.

One project with a registered iris model, and three servers started once for the module
(in parallel): ``mlops-nb serve`` with a token and the request log, ``mlops-nb serve``
with adaptive batching on two workers, and MLflow's own ``mlflow models serve`` on the
same version, the reference for what the protocol answers.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import run_cli
from services import free_port
from serving_helpers import COLUMNS, Served, new_serving_project, register_iris, serve, split_body

from mlops_nb.config import resolve_config
from mlops_nb.serving.announce import list_servers, start_server
from mlops_nb.serving.requestlog import log_url, read_log

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = "application/json"


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> dict:
    """A project with iris v1 @champion; its expected predictions on ``rows``."""
    root = new_serving_project(tmp_path_factory.mktemp("serving"))
    return {"root": root, **register_iris(root, 1)}


@pytest.fixture(scope="module")
def servers(iris, tmp_path_factory):
    """``ours`` (token, request log), ``batched`` (batching, 2 workers, no log) and
    ``mlflow`` (``mlflow models serve`` on v1), started together."""
    root: Path = iris["root"]
    logs = tmp_path_factory.mktemp("serving-logs")
    ours = serve(root, "models:/iris@champion", free_port(), "--token", TOKEN, "--poll", "1", logdir=logs / "ours")
    batched = serve(
        root,
        "models:/iris@champion",
        free_port(),
        "--max-batch-size",
        "16",
        "--max-wait-ms",
        "20",
        "--workers",
        "2",
        "--no-log",
        logdir=logs / "batched",
    )
    port = free_port()
    mlflow_cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/iris/1"]
    mlflow_cmd += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    reference = Served(
        mlflow_cmd,
        root,
        f"http://127.0.0.1:{port}",
        logs / "mlflow",
        env={
            "MLFLOW_TRACKING_URI": resolve_config(root, environ={}).tracking_uri,
            # it runs `uvicorn` from PATH: the venv's, as when the venv is activated
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )
    started = {"ours": ours, "batched": batched, "mlflow": reference}
    try:
        ours.wait_ready()
        batched.wait_ready()
        reference.wait_ready("/ping")
        yield started
    finally:
        for server in started.values():
            server.stop()
    assert "Exception in ASGI application" not in ours.output()


def _post(url: str, body, content_type: str | None = JSON, headers: dict | None = None) -> requests.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    return requests.post(f"{url}/invocations", data=body, headers=sent, timeout=60)


def _bodies(rows: dict) -> dict[str, tuple[str, str]]:
    records = [dict(zip(rows["columns"], r)) for r in rows["data"]]
    columns = {c: [r[i] for r in rows["data"]] for i, c in enumerate(rows["columns"])}
    csv = ",".join(rows["columns"]) + "\n" + "\n".join(",".join(map(str, r)) for r in rows["data"]) + "\n"
    return {
        "dataframe_split": (split_body(rows), JSON),
        "dataframe_records": (json.dumps({"dataframe_records": records}), JSON),
        "instances": (json.dumps({"instances": records}), JSON),
        "inputs": (json.dumps({"inputs": columns}), JSON),
        "csv": (csv, "text/csv"),
    }


def _without_trace(answer: requests.Response) -> object:
    try:
        data = answer.json()
    except ValueError:
        return answer.text
    if isinstance(data, dict):
        data.pop("stack_trace", None)
        if isinstance(data.get("message"), str):  # MLflow prints a set, in a per-process order
            data["message"] = re.sub(
                r"\{[^{}]*\}", lambda m: str(sorted(m[0].strip("{}").split(", "))), data["message"]
            )
    return data


BAD_TOO = [  # bad input both servers refuse the same way
    ("not JSON", "{", JSON),
    ("wrong key", json.dumps({"data": [[1, 2, 3, 4]]}), JSON),
    ("two keys", json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "instances": [1]}), JSON),
    ("wrong columns", json.dumps({"dataframe_records": [{"a": 1.0}]}), JSON),
    ("wrong types", json.dumps({"dataframe_records": [dict.fromkeys(COLUMNS, "x")]}), JSON),
    ("empty body", "", JSON),
    ("a JSON list", "[1, 2]", JSON),
    ("plain text", "hello", "text/plain"),
    ("bad charset", split_body({"columns": COLUMNS, "data": [[1, 2, 3, 4]]}), "application/json; charset=latin-1"),
]


def test_formats_and_errors_answer_as_mlflow_models_serve(iris, servers):
    ours, reference = servers["ours"].url, servers["mlflow"].url
    for fmt, (body, content_type) in _bodies(iris["rows"]).items():
        mine, theirs = _post(ours, body, content_type, AUTH), _post(reference, body, content_type)
        assert (mine.status_code, theirs.status_code) == (200, 200), (fmt, mine.text, theirs.text)
        assert mine.json() == theirs.json() == {"predictions": iris["expected"]["1"]}, fmt
        assert mine.headers["X-Model-Name"] == "iris" and mine.headers["X-Model-Version"] == "1"
        assert len(mine.headers["X-Request-Id"]) >= 16
    for what, body, content_type in BAD_TOO:
        mine, theirs = _post(ours, body, content_type, AUTH), _post(reference, body, content_type)
        assert mine.status_code == theirs.status_code and 400 <= mine.status_code < 500, (what, mine.text)
        assert _without_trace(mine) == _without_trace(theirs), what
        assert mine.headers["X-Model-Version"] == "1"


def test_bad_input_is_a_4xx_and_the_server_goes_on(iris, servers):
    url = servers["ours"].url
    good = split_body(iris["rows"], [0, 1])
    bad = [
        ("dataframe_split not an object", json.dumps({"dataframe_split": 5}), JSON, 400),
        ("records not a list", json.dumps({"dataframe_records": "x"}), JSON, 400),
        ("inputs of unknown columns", json.dumps({"inputs": {"a": [[1]]}}), JSON, 400),
        ("null", "null", JSON, 400),
        ("deeply nested", "[" * 100_000 + "]" * 100_000, JSON, 400),
        ("not UTF-8", b"\xff\xfe{\x00", JSON, 400),
        ("CSV of other columns", "a,b\n1,2\n", "text/csv", 400),
        ("CSV not UTF-8", b"\xff\xfe,\x00\n", "text/csv", 400),
        ("no content type", good, None, 415),
        ("a parameter MLflow does not know", good, "application/json; format=pandas-split", 415),
        ("too large", b" " * (17 * 2**20), JSON, 413),
    ]
    for what, body, content_type, status in bad:
        answer = _post(url, body, content_type, AUTH)
        assert answer.status_code == status, (what, answer.text[:300])
        if answer.headers.get("content-type", "").startswith(JSON):
            assert set(answer.json()) >= {"error_code", "message"}, what
        assert _post(url, good, JSON, AUTH).status_code == 200, f"no answer after {what}"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b" " * 2**20

    answer = requests.post(f"{url}/invocations", data=chunks(), headers={**AUTH, "Content-Type": JSON}, timeout=60)
    assert answer.status_code == 413 and "--max-body-mb" in answer.json()["message"]
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200


def test_usage_errors_exit_2_with_one_line(iris):
    root = iris["root"]
    cases = [
        (["serve", "models:/iris@champion", "--host", "0.0.0.0"], "--token"),
        (["serve", "models:/iris@champion", "--port", "http"], "--port must be a whole number"),
        (["serve", "models:/iris@champion", "--workers", "0"], "--workers"),
        (["serve", "models:/iris", "--port", "1"], "not a model reference"),
        (["serve", "models:/iris@nosuch", "--port", str(free_port())], "has no alias 'nosuch'"),
        (["serve", "models:/nosuch/1", "--port", str(free_port())], "no registered model named 'nosuch'"),
        (["serve", str(root / "no-model-here")], "does not exist"),
    ]
    procs = [
        (
            subprocess.Popen(
                [sys.executable, "-m", "mlops_nb.cli", *args, "--project", str(root)],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            text,
        )
        for args, text in cases
    ]
    for proc, text in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, (proc.args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (proc.args, err)


def test_a_token_guards_every_route_but_the_probes(iris, servers):
    url = servers["ours"].url
    body = split_body(iris["rows"], [3])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = _post(url, body, JSON, headers)
        assert answer.status_code == 401 and answer.json()["error_code"] == "UNAUTHENTICATED"
        assert answer.headers["WWW-Authenticate"] == "Bearer" and answer.headers["X-Model-Version"] == "1"
    for path in ("/health", "/metrics"):
        assert requests.get(url + path, timeout=10).status_code == 401
        assert requests.get(url + path, headers=AUTH, timeout=10).status_code == 200
    assert requests.post(f"{url}/feedback", json={"request_id": "x", "label": 1}, timeout=10).status_code == 401
    for path in ("/ping", "/ready", "/version"):
        assert requests.get(url + path, timeout=10).status_code == 200
    assert requests.get(f"{url}/version", timeout=10).text == requests.get(servers["mlflow"].url + "/version").text
    assert _post(url, body, JSON, AUTH).json() == {"predictions": [iris["expected"]["1"][3]]}


def _metrics(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", headers=AUTH, timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _by_status(samples: dict) -> dict[str, float]:
    return {dict(k[1])["status"]: v for k, v in samples.items() if k[0] == "mlops_nb_requests_total"}


def test_metrics_count_every_request_and_name_the_version(iris, servers):
    url = servers["ours"].url
    before = _metrics(url)
    good, bad = split_body(iris["rows"], [1, 2]), json.dumps({"dataframe_records": [{"a": 1}]})
    sent = collections.Counter()
    for body, headers in [(good, AUTH)] * 5 + [(bad, AUTH)] * 2 + [(good, {})]:
        sent[str(_post(url, body, JSON, headers).status_code)] += 1
    after = _metrics(url)
    assert sent == {"200": 5, "400": 2, "401": 1}
    counted = {s: n - _by_status(before).get(s, 0) for s, n in _by_status(after).items()}
    assert {s: n for s, n in counted.items() if n} == dict(sent)
    errors = after[("mlops_nb_request_errors_total", ())] - before[("mlops_nb_request_errors_total", ())]
    assert errors == 3
    latency = ("mlops_nb_request_latency_seconds_count", ())
    assert after[latency] - before[latency] == 8
    versions = {k[1]: v for k, v in after.items() if k[0] == "mlops_nb_model_version_info"}
    assert versions == {(("name", "iris"), ("version", "1")): 1.0}
    assert after[("mlops_nb_swaps_total", ())] == 0 and after[("mlops_nb_swap_failures_total", ())] == 0
    assert after[("mlops_nb_request_log_dropped_total", ())] == 0
    health = requests.get(f"{url}/health", headers=AUTH, timeout=10).json()
    assert health["status"] == "ok" and health["version"] == "1" and health["alias"] == "champion"
    assert health["requests"] == sum(_by_status(after).values()) and health["p50_ms"] > 0


def test_request_log_holds_every_answered_request(iris, servers):
    url, root = servers["ours"].url, iris["root"]
    answer = _post(url, split_body(iris["rows"], [5]), JSON, AUTH)
    request_id = answer.headers["X-Request-Id"]
    fed = requests.post(f"{url}/feedback", json={"request_id": request_id, "label": 1}, headers=AUTH, timeout=10)
    assert fed.status_code == 202 and fed.json() == {"accepted": 1}
    refused = requests.post(f"{url}/feedback", json={"label": 1}, headers=AUTH, timeout=10)
    assert refused.status_code == 400
    answered = {s: n for s, n in _by_status(_metrics(url)).items() if s != "401"}  # 401s are never logged
    log = log_url(resolve_config(root, environ={}))
    deadline = time.monotonic() + 60
    while True:
        rows = read_log(log, "iris")
        labelled = rows[rows["request_id"] == request_id]
        if (len(rows) == sum(answered.values()) and len(labelled) and labelled["label"].iloc[0] == 1) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    assert len(rows) == sum(answered.values())
    assert dict(collections.Counter(str(s) for s in rows["status"])) == {s: int(n) for s, n in answered.items()}
    assert set(rows["version"]) == {"1"} and rows["request_id"].is_unique
    row = labelled.iloc[0]
    assert row["label"] == 1 and json.loads(row["outputs"]) == answer.json()
    assert json.loads(row["inputs"]) == json.loads(split_body(iris["rows"], [5]))


def test_batching_answers_as_without_under_concurrent_clients(iris, servers):
    url, rows, expected = servers["batched"].url, iris["rows"], iris["expected"]["1"]
    failures: list[str] = []
    sent = collections.Counter()
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        for n in range(25):
            idx = rng.sample(range(len(rows["data"])), rng.randint(1, 6))
            bad = n % 7 == 3
            if bad:
                body, content_type = json.dumps({"dataframe_records": [{"a": 1.0}]}), JSON
            elif n % 3 == 0:
                picked = [rows["data"][i] for i in idx]
                body = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in picked)
                content_type = "text/csv"
            elif n % 3 == 1:
                body, content_type = split_body(rows, idx), JSON
            else:
                body = json.dumps({"dataframe_records": [dict(zip(COLUMNS, rows["data"][i])) for i in idx]})
                content_type = JSON
            answer = session.post(f"{url}/invocations", data=body, headers={"Content-Type": content_type}, timeout=60)
            with lock:
                sent[str(answer.status_code)] += 1
                if bad and answer.status_code != 400:
                    failures.append(f"bad request answered {answer.status_code}")
                elif not bad and answer.json() != {"predictions": [expected[i] for i in idx]}:
                    failures.append(f"{idx}: {answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures[:5]
    assert sum(sent.values()) == 8 * 25
    # /metrics sums both workers, whichever answers
    assert {s: n for s, n in _by_status(_metrics(url)).items() if n} == dict(sent)


def test_servers_command_lists_and_stops_a_background_server(iris, servers):
    root = iris["root"]
    config = resolve_config(root, environ={})
    run_id = iris["runs"]["1"]
    started = start_server(config, f"runs:/{run_id}/model", extra_args=["--no-log"], wait=120)
    assert started["alive"] and started["version"] == run_id and started["name"] == "model"
    answer = requests.post(
        f"{started['url']}/invocations", data=split_body(iris["rows"], [7]), headers={"Content-Type": JSON}
    )
    assert answer.json() == {"predictions": [iris["expected"]["1"][7]]}
    assert answer.headers["X-Model-Version"] == run_id
    listed = run_cli("servers", "--json", "--project", str(root), cwd=root)
    assert listed.returncode == 0, listed.stderr
    ids = {s["id"]: s for s in json.loads(listed.stdout)}
    assert started["id"] in ids and all(s["alive"] for s in ids.values())
    assert {s["port"] for s in ids.values()} >= {int(servers["ours"].url.rsplit(":", 1)[1]), started["port"]}
    stopped = run_cli("servers", "stop", str(started["port"]), "--project", str(root), cwd=root)
    assert stopped.returncode == 0 and started["id"] in stopped.stdout, stopped.stderr
    assert started["id"] not in {s["id"] for s in list_servers(config)}
    assert not (root / ".mlops" / "servers" / f"{started['id']}.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{started['url']}/ping", timeout=5)
    again = run_cli("servers", "stop", str(started["port"]), "--project", str(root), cwd=root)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
