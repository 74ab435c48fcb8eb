"""A server that follows its alias: moves under load, versions that fail to load, a
pinned version that never moves, and the request log of it all.

One project with iris v1, v2, v3 (version k predicts ``class + 10 * (k - 1)``, so every
answer shows which version gave it), v4 whose ``load_context`` raises, and v5 that takes
other columns. Two servers started in the background as a notebook starts them
(``start_server``): one on ``models:/iris@champion``, one pinned to ``models:/iris/1``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from serving_helpers import new_serving_project, register_iris, split_body, store_client

from mlops_nb.config import resolve_config
from mlops_nb.registry import get_version, model_files, set_alias
from mlops_nb.serving.announce import list_servers, start_server, stop_server
from mlops_nb.serving.deployment import Deployment, check_inputs, load_version, requirement_mismatches
from mlops_nb.serving.requestlog import log_url, read_log
from mlops_nb.serving.source import parse_source, resolve

pytestmark = pytest.mark.slow

SWAP_TIMEOUT = 120.0  # a generous bound on "the poll interval plus the load time"


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> dict:
    root = new_serving_project(tmp_path_factory.mktemp("swaps"))
    return {
        "root": root,
        "config": resolve_config(root, environ={}),
        **register_iris(root, 3, "broken", "incompatible"),
    }


@pytest.fixture(scope="module")
def servers(iris):
    """``alias`` follows @champion (polls every second); ``pinned`` serves v1 for good."""
    config = iris["config"]
    started: dict[str, dict] = {}
    threads = [
        threading.Thread(
            target=lambda key, model: started.__setitem__(
                key, start_server(config, model, extra_args=["--poll", "1"], wait=180)
            ),
            args=args,
        )
        for args in (("alias", "models:/iris@champion"), ("pinned", "models:/iris/1"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    try:
        assert set(started) == {"alias", "pinned"}, "a server did not start"
        yield started
    finally:
        for announcement in started.values():
            stop_server(config, announcement["id"])


def _health(url: str) -> dict:
    return requests.get(f"{url}/health", timeout=10).json()


def _wait(condition, what: str, timeout: float = SWAP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _metric(url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_ten_moves_under_load_drop_nothing(iris, servers):
    url, client = servers["alias"]["url"], store_client(iris["root"])
    body, expected = split_body(iris["rows"]), iris["expected"]
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(4)]
    failures: list[str] = []

    def load(k: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                answer = session.post(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
            except requests.RequestException as exc:
                failures.append(f"no answer: {exc}")
                continue
            version = answer.headers.get("X-Model-Version", "")
            if answer.status_code != 200 or answer.json() != {"predictions": expected.get(version)}:
                failures.append(f"v{version}: {answer.status_code} {answer.text[:200]}")
            seen[k].append(version)

    before = _health(url)
    served = [before["version"]]
    clients = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in clients:
        t.start()
    try:
        for move in range(10):
            target = {"1": "2", "2": "3", "3": "1"}[served[-1]]
            set_alias(client, "iris", "champion", target, why=f"move {move}")
            # the new version answers within the poll interval plus its load time
            _wait(lambda t=target: all(s and s[-1] == t for s in seen), f"move {move} to v{target}")
            served.append(target)
    finally:
        stop.set()
        for t in clients:
            t.join(60)
    assert not failures, failures[:5]
    assert sum(len(s) for s in seen) > 10
    for versions in seen:  # each client saw the versions in the order they were served
        changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        it = iter(served)
        assert all(v in it for v in changes), (changes, served)
    health = _health(url)
    assert health["status"] == "ok" and health["swaps"] == before["swaps"] + 10 and health["version"] == served[-1]
    assert health["last_swap"]["from"] == served[-2] and health["last_swap"]["to"] == served[-1]
    assert _metric(url, "mlops_nb_swaps_total") == health["swaps"]
    announced = {s["id"]: s for s in list_servers(iris["config"])}
    assert announced[servers["alias"]["id"]]["version"] == served[-1]


@pytest.mark.parametrize("kind, message", [("broken", "cannot load (on purpose)"), ("incompatible", "SEPAL_LENGTH")])
def test_a_version_that_fails_leaves_the_old_one_serving(iris, servers, kind, message):
    url, client, config = servers["alias"]["url"], store_client(iris["root"]), iris["config"]
    serving = _health(url)["version"]
    failures = _metric(url, "mlops_nb_swap_failures_total")
    bad = iris[kind]
    set_alias(client, "iris", "champion", bad, why=f"try the {kind} version")
    health = _wait(lambda: (h := _health(url))["status"] == "degraded" and h, f"v{bad} reported")
    assert health["version"] == serving and health["last_error"]["version"] == bad
    assert message in health["last_error"]["error"] and "\n" not in health["last_error"]["error"]
    assert _metric(url, "mlops_nb_swap_failures_total") == failures + 1
    answer = requests.post(
        f"{url}/invocations", data=split_body(iris["rows"]), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == serving
    assert answer.json() == {"predictions": iris["expected"][serving]}
    log = Path(servers["alias"]["log_file"]).read_text().splitlines()
    log_lines = [line for line in log if f"could not swap to iris v{bad}" in line]
    assert len(log_lines) == 1 and message in log_lines[0]
    time.sleep(2.5)  # two more polls: a failed version is not retried in a loop
    assert _metric(url, "mlops_nb_swap_failures_total") == failures + 1
    set_alias(client, "iris", "champion", serving, why="back")
    _wait(lambda: _health(url)["status"] == "ok", "back to ok")
    assert next(s for s in list_servers(config) if s["id"] == servers["alias"]["id"])["version"] == serving


def test_a_pinned_version_never_swaps(iris, servers):
    url = servers["pinned"]["url"]
    set_alias(store_client(iris["root"]), "iris", "champion", "2", why="the pinned server must not care")
    _wait(lambda: _health(servers["alias"]["url"])["version"] == "2", "the alias server swapped")
    health = _health(url)
    assert health["version"] == "1" and health["swaps"] == 0 and health["alias"] is None
    answer = requests.post(
        f"{url}/invocations", data=split_body(iris["rows"]), headers={"Content-Type": "application/json"}
    )
    assert answer.headers["X-Model-Version"] == "1" and answer.json() == {"predictions": iris["expected"]["1"]}


def test_request_log_holds_one_row_per_answer(iris, servers):
    for server in servers.values():
        for _ in range(3):
            requests.post(f"{server['url']}/invocations", data="{", headers={"Content-Type": "application/json"})
    answered = {s["id"]: _metric(s["url"], "mlops_nb_requests_total") for s in servers.values()}
    log = log_url(iris["config"])  # both servers of the project write the one log
    total = sum(answered.values())
    rows = _wait(lambda: r if len(r := read_log(log, "iris")) >= total else None, "the log", timeout=60)
    assert len(rows) == total and rows["request_id"].is_unique
    assert rows.groupby("server").size().to_dict() == answered
    assert set(rows["version"]) <= {"1", "2", "3"} and (rows["status"] == 400).sum() == 6


def test_a_failed_version_is_retried_after_a_move_or_the_backoff(iris):
    """The deployment in this process, on a clock the test turns: no sleeping."""
    client, now, lines = store_client(iris["root"]), [0.0], []
    set_alias(client, "iris", "inproc", "1")
    deployment = Deployment(
        client,
        parse_source("models:/iris@inproc"),
        poll=3600,
        report=lines.append,
        retry_after=60,
        clock=lambda: now[0],
    )
    deployment.load_first(resolve(client, deployment.source))
    assert deployment.status == "ok" and deployment.current is not None and deployment.current.warmed
    set_alias(client, "iris", "inproc", iris["broken"])
    assert not deployment.check() and deployment.status == "degraded" and len(lines) == 1
    assert not deployment.check() and len(lines) == 1  # not again on the next poll
    now[0] += 61
    assert not deployment.check() and len(lines) == 2  # again after the backoff...
    now[0] += 61
    assert not deployment.check() and len(lines) == 2  # ...which doubles
    set_alias(client, "iris", "inproc", "2")
    assert deployment.check() and deployment.current.version == "2" and deployment.status == "ok"
    set_alias(client, "iris", "inproc", iris["broken"])
    assert not deployment.check() and len(lines) == 4  # a new move to it: tried at once
    assert deployment.current.version == "2" and deployment.health()["last_error"]["version"] == iris["broken"]


def test_a_model_folder_is_served_pinned(iris):
    client = store_client(iris["root"])
    folder = model_files(client, get_version(client, "iris", "3"))
    source = parse_source(folder)
    assert source.kind == "path" and not source.follows_alias
    resolved = resolve(client, source)
    loaded = load_version(resolved)
    assert resolved.files == folder and resolved.version != "local"
    frame = pd.DataFrame(iris["rows"]["data"], columns=iris["rows"]["columns"])
    assert loaded.model.predict(frame).tolist() == iris["expected"]["3"]
    assert requirement_mismatches(folder) == []
    assert check_inputs(loaded.input_schema, loaded.input_schema) is None
