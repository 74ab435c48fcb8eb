"""The request log (mlops_nb.serving.requestlog): rows written off the caller's path into
real SQLite files in tmp_path (and one private PostgreSQL cluster), read back as
DataFrames, through the facade and through ``mlops-nb requests``.

A database that is down is a SQLite path under a regular file: its folder cannot be
created, whoever runs the tests (root included)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from helpers import new_project, run_cli

import mlops_nb as mnb
from mlops_nb.config import resolve_config
from mlops_nb.exceptions import ConfigError, UsageError
from mlops_nb.serving.requestlog import COLUMNS, RequestLog, log_url, read_log

NOW = time.time()


def _url(tmp_path: Path, name: str = "requests.db") -> str:
    return f"sqlite:///{tmp_path / 'logs' / name}"


def _record(log: RequestLog, i: int, **over) -> None:
    fields = {
        "request_id": f"r{i:04d}",
        "model": "m",
        "version": "1",
        "status": 200,
        "latency_ms": 1.5 + i,
        "inputs": json.dumps({"inputs": [[i]]}),
        "outputs": json.dumps({"predictions": [i]}),
        "time": NOW - 1000 + i,
        **over,
    }
    log.record(**fields)


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.05)


# ---------------------------------------------------------------- writing and reading


def test_every_record_is_one_row_with_its_fields_and_its_latest_feedback(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with RequestLog(url, server="host-5000", clock=lambda: NOW) as log:
        for i in range(25):
            _record(log, i, version=str(1 + i // 20), status=200 if i % 10 else 400)
        _record(log, 3, model="replayed")  # a replayed request id: the first row stays
        log.record(request_id="untimed", model="m", version="2", status=200, latency_ms=0.1, inputs=None, outputs=None)
        log.feedback("r0001", {"y": 1}, time=NOW - 10)
        log.feedback("r0002", 0, time=NOW - 10)
        log.feedback("r0002", "cat", time=NOW - 5)  # a correction: the later label wins
        assert log.flush(timeout=60)
        stats = log.stats()
    assert stats == {"written": 30, "dropped": 0, "queued": 0, "sampled_out": 0, "error": None}

    frame = read_log(url)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 26
    assert list(frame["request_id"]) == [f"r{i:04d}" for i in range(25)] + ["untimed"]  # oldest first
    first = frame.iloc[0]
    assert (first["model"], first["version"], first["status"], first["server"]) == ("m", "1", 400, "host-5000")
    assert first["latency_ms"] == 1.5
    assert json.loads(first["inputs"]) == {"inputs": [[0]]} and json.loads(first["outputs"]) == {"predictions": [0]}
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["time"].iloc[0].timestamp() == pytest.approx(NOW - 1000)
    assert frame["time"].iloc[-1].timestamp() == pytest.approx(NOW)  # the injected clock
    assert frame.set_index("request_id")["model"]["r0003"] == "m"
    labels = frame.set_index("request_id")
    assert labels["label"]["r0001"] == {"y": 1} and labels["label"]["r0002"] == "cat"
    assert labels["label_time"]["r0002"].timestamp() == pytest.approx(NOW - 5)
    assert labels["label"]["r0000"] is None and labels["label_time"].isna()["r0000"]
    assert list(frame[frame["version"] == "2"]["request_id"]) == [f"r{i:04d}" for i in range(20, 25)] + ["untimed"]


def test_sampling_zero_records_no_request_but_keeps_feedback_and_one_records_all(tmp_path: Path) -> None:
    none_url, all_url = _url(tmp_path, "none.db"), _url(tmp_path, "all.db")
    with RequestLog(none_url, sample=0.0) as log:
        for i in range(20):
            _record(log, i)
        log.feedback("r0001", 1)
        assert log.flush(timeout=60)
        assert log.stats()["sampled_out"] == 20 and log.stats()["written"] == 1
    assert read_log(none_url).empty
    with RequestLog(all_url, sample=1.0) as log:
        for i in range(20):
            _record(log, i)
        assert log.flush(timeout=60)
        assert log.stats()["sampled_out"] == 0
    assert len(read_log(all_url)) == 20


def test_long_inputs_and_outputs_are_cut_and_say_how_much(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with RequestLog(url, max_field_bytes=100) as log:
        _record(log, 0, inputs="é" * 200, outputs="short")  # 400 bytes
        _record(log, 1, inputs=None, outputs="x" * 101)
    frame = read_log(url).set_index("request_id")
    assert frame["inputs"]["r0000"] == "é" * 50 + "…[truncated 300 bytes]"
    assert frame["outputs"]["r0000"] == "short"
    assert pd.isna(frame["inputs"]["r0001"])
    assert frame["outputs"]["r0001"] == "x" * 100 + "…[truncated 1 bytes]"


def test_a_full_queue_on_a_dead_database_drops_and_counts_and_never_blocks(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the log's folder should be")
    log = RequestLog(f"sqlite:///{blocker / 'requests.db'}", max_queue=5)
    for i in range(50):
        _record(log, i)  # returns although nothing can be written
    log.feedback("r0001", 1)
    stats = log.stats()
    assert stats["dropped"] >= 41  # at most 5 queued and 5 in the writer's hands
    assert stats["written"] == 0
    _wait_for(lambda: log.stats()["error"] is not None, "the writer's first failure")
    error = log.stats()["error"]
    assert "\n" not in error and ("FileExistsError" in error or "NotADirectoryError" in error), error
    assert log.flush(timeout=0.5) is False  # the database is down: not written
    log.close(timeout=60)
    assert log.stats()["dropped"] == 51 and log.stats()["queued"] == 0 and log.stats()["written"] == 0
    _record(log, 99)  # after close: dropped, not raised
    assert log.stats()["dropped"] == 52


def test_rows_wait_for_a_database_that_comes_back(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    folder.write_text("not a folder yet")
    url = f"sqlite:///{folder / 'requests.db'}"
    with RequestLog(url) as log:
        for i in range(3):
            _record(log, i)
        _wait_for(lambda: log.stats()["error"] is not None, "the writer's first failure")
        folder.unlink()  # the database is back
        assert log.flush(timeout=60)
        assert log.stats()["dropped"] == 0 and log.stats()["written"] == 3
    assert list(read_log(url)["request_id"]) == ["r0000", "r0001", "r0002"]


def test_since_until_model_and_limit_select_rows(tmp_path: Path) -> None:
    url = _url(tmp_path)
    ages = {"a": 3 * 3600, "b": 90 * 60, "c": 10 * 60, "d": 30}
    with RequestLog(url) as log:
        for i, (rid, age) in enumerate(ages.items()):
            _record(log, i, request_id=rid, time=time.time() - age, model="other" if rid == "c" else "m")

    def ids(**kwargs) -> list[str]:
        return list(read_log(url, **kwargs)["request_id"])

    assert ids(since="1h") == ["c", "d"]
    assert ids(since="2h", until="1h") == ["b"]
    assert ids(since="100m", until="90s") == ["b", "c"]
    assert ids(since="7200s") == ids(since="2h") == ids(since="0.1d") == ["b", "c", "d"]
    iso = datetime.fromtimestamp(time.time() - 100 * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(since=iso) == ["b", "c", "d"]
    assert ids(until=datetime.now(timezone.utc) - timedelta(hours=1)) == ["a", "b"]
    assert ids(since=datetime.now() - timedelta(hours=2)) == ["b", "c", "d"]  # naive: local time
    assert ids(model="m") == ["a", "b", "d"] and ids(model="m", since="1h") == ["d"]
    assert ids(limit=2) == ["c", "d"] and ids(model="m", limit=1) == ["d"]
    for bad in ("yesterday", "1y", "", 5):
        with pytest.raises(UsageError) as exc:
            read_log(url, since=bad)
        assert "\n" not in str(exc.value) and "since must be" in str(exc.value)
    with pytest.raises(UsageError):
        read_log(url, limit=0)


def test_reading_a_log_not_written_yet_is_an_empty_frame_and_creates_nothing(tmp_path: Path) -> None:
    frame = read_log(f"sqlite:///{tmp_path / 'nothing' / 'requests.db'}", "m", since="1h")
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- several writers


_WRITER = """
import sys
from mlops_nb.serving.requestlog import RequestLog
url, server, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = RequestLog(url, server=server)
for i in range(n):
    log.record(request_id=f"{server}-{i}", model="m", version="1", status=200, latency_ms=1.0,
               inputs="[1]", outputs="[2]")
log.close(timeout=120)
stats = log.stats()
assert stats["written"] == n and stats["dropped"] == 0, stats
"""


@pytest.mark.slow
def test_two_processes_write_one_sqlite_file_and_the_rows_add_up(tmp_path: Path) -> None:
    url = _url(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WRITER), url, f"w{k}", "300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    frame = read_log(url)
    assert len(frame) == 600
    assert frame["server"].value_counts().to_dict() == {"w0": 300, "w1": 300}


@pytest.mark.slow
def test_two_logs_write_one_postgresql_database(tmp_path: Path) -> None:
    from services import postgres

    with postgres(tmp_path) as pg:
        url = pg.url("requests")
        logs: list[RequestLog] = []

        def start(server: str) -> None:  # both create the tables at once
            logs.append(RequestLog(url, server=server))

        threads = [threading.Thread(target=start, args=(f"replica-{k}",)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logs.sort(key=lambda log: log.server)
        for k, log in enumerate(logs):
            for i in range(50):
                _record(log, i, request_id=f"{log.server}-{i}", inputs="a\x00b")
            log.feedback(f"{log.server}-0", k)
        for log in logs:
            log.close(timeout=60)
            assert log.stats()["written"] == 51 and log.stats()["dropped"] == 0, log.stats()
        frame = read_log(url)
        assert len(frame) == 100
        assert frame["server"].value_counts().to_dict() == {"replica-0": 50, "replica-1": 50}
        labels = frame.set_index("request_id")["label"]
        assert labels["replica-0-0"] == 0 and labels["replica-1-0"] == 1
        assert frame["inputs"].iloc[0] == "a\ufffdb"
        assert len(read_log(url, since="1d", limit=10)) == 10


# ---------------------------------------------------------------- where the log is


def test_the_log_is_the_env_var_else_the_project_setting_else_under_mlops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = new_project(tmp_path)
    monkeypatch.delenv("MLOPS_NB_REQUEST_LOG", raising=False)
    assert log_url(resolve_config(root, environ={})) == f"sqlite:///{root / '.mlops' / 'requests.db'}"
    (root / "pyproject.toml").write_text('[tool.mlops-nb]\nrequest_log = "sqlite:///logs/requests.db"\n')
    (root / "notebooks").mkdir()
    config = resolve_config(root / "notebooks", environ={})
    assert config.request_log == f"sqlite:///{root / 'logs' / 'requests.db'}"
    assert log_url(config, environ={}) == config.request_log
    assert resolve_config(root).request_log == config.request_log  # also with the real environment
    monkeypatch.chdir(tmp_path)
    assert log_url(config, environ={"MLOPS_NB_REQUEST_LOG": "sqlite:///env.db"}) == f"sqlite:///{tmp_path / 'env.db'}"
    pg = "postgresql://u:secret@db.internal:5432/logs"
    assert log_url(config, environ={"MLOPS_NB_REQUEST_LOG": pg}) == pg
    with pytest.raises(ConfigError) as exc:
        log_url(config, environ={"MLOPS_NB_REQUEST_LOG": "not a url"})
    assert "MLOPS_NB_REQUEST_LOG" in str(exc.value) and "sqlite:///" in str(exc.value) and "\n" not in str(exc.value)
    (root / "pyproject.toml").write_text('[tool.mlops-nb]\nrequest_log = "nosuchdb://x"\n')
    with pytest.raises(ConfigError, match="request_log in"):
        log_url(resolve_config(root, environ={}), environ={})
    (root / "pyproject.toml").write_text("[tool.mlops-nb]\nrequest_log = 3\n")
    with pytest.raises(ConfigError, match="request_log"):
        resolve_config(root, environ={})
    with pytest.raises(UsageError):
        RequestLog(_url(tmp_path), sample=1.5)


def test_the_facade_reads_the_projects_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = new_project(tmp_path)
    monkeypatch.delenv("MLOPS_NB_REQUEST_LOG", raising=False)
    with RequestLog(log_url(resolve_config(root, environ={}))) as log:
        _record(log, 0, time=time.time() - 7200)
        _record(log, 1, time=time.time() - 60)
        _record(log, 2, model="other")
    assert list(mnb.inference_log("m", since="1h", project=str(root))["request_id"]) == ["r0001"]
    assert len(mnb.inference_log(project=str(root))) == 3
    monkeypatch.setenv("MLOPS_NB_REQUEST_LOG", _url(tmp_path, "elsewhere.db"))
    assert mnb.inference_log(project=str(root)).empty


# ---------------------------------------------------------------- the command


@pytest.mark.slow
def test_the_requests_command_prints_the_newest_rows_and_refuses_a_bad_since(tmp_path: Path) -> None:
    root = new_project(tmp_path)
    env = {"MLOPS_NB_REQUEST_LOG": ""}
    done = run_cli("requests", cwd=root, env=env)
    assert done.returncode == 0 and done.stdout == "" and "no requests logged" in done.stderr
    with RequestLog(log_url(resolve_config(root, environ={})), server="h-1") as log:
        for i in range(5):
            _record(log, i, time=time.time() - 50 + i)
        _record(log, 9, model="other")  # the oldest
        log.feedback("r0004", "spam")
    done = run_cli("requests", "m", "-n", "2", "--since", "1h", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:6] == ["time", "request_id", "model", "version", "status", "latency_ms"]
    assert [row.split()[2] for row in rows] == ["r0003", "r0004"]
    assert '"spam"' in rows[1] and "h-1" in rows[1]
    done = run_cli("requests", "--json", "--project", str(root), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["request_id"] for r in records] == ["r0009", "r0000", "r0001", "r0002", "r0003", "r0004"]
    assert records[5]["label"] == "spam" and records[0]["label"] is None and records[0]["label_time"] is None
    assert datetime.fromisoformat(records[0]["time"]).tzinfo is not None
    done = run_cli("requests", "--since", "yesterday", cwd=root, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "since must be" in done.stderr
