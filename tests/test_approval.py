"""Approval: moves of protected aliases by promotion or registration wait for a person,
on a real store.

Real scikit-learn models are registered once, in a separate process (MLflow's fluent run
is process-global state this process keeps out of), each test on its own models; the
command is a separate process of ``.venv/bin/mlops-nb``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import NotFoundError, PromotionRefusedError, UsageError
from mlops_nb.registry import (
    PendingApproval,
    PromotionResult,
    approve,
    audit_trail,
    pending_approvals,
    promote,
    protected_aliases,
    reject,
    set_protected_aliases,
    version_detail,
)
from mlops_nb.store import get_client
from mlops_nb.tags import APPROVAL_PENDING, APPROVAL_PENDING_PREFIX, MONITOR_LAST

MLOPS_NB = Path(sys.executable).parent / "mlops-nb"

#: Each model's versions: (accuracy, alias). v1 holds @champion, v2 is @challenger.
MODELS = {
    "proj": [(0.80, "champion"), (0.90, "challenger")],
    "own": [(0.80, "champion"), (0.90, "challenger")],
    "free": [(0.80, "champion"), (0.90, "challenger"), (0.70, None)],
    "gone": [(0.80, "champion"), (0.90, "challenger")],
    "cli": [(0.80, "champion"), (0.90, "challenger")],
}
#: Versions registered with an alias after those, as a retraining loop registers them:
#: (model, accuracy, f1, alias, approval passed, the model's own protected aliases).
REGISTRATIONS = [
    ("reg", 0.80, 0.75, "champion", [], None),  # v1: nothing passed, nothing protects: moves
    ("reg", 0.95, 0.90, "champion", ["champion"], None),  # v2: the project's setting: waits
    ("reg", 0.90, 0.85, "challenger", ["champion"], None),  # v3: an unprotected alias moves
    ("fresh", 0.70, 0.65, "prod", [], ["prod"]),  # the model's own setting, and no holder yet
    ("cli", 0.92, 0.88, "prod", ["prod"], None),  # v3: decided with the command
]

_REGISTER = r"""
import dataclasses, json, sys
from pathlib import Path
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from mlops_nb import registry
from mlops_nb.config import resolve_config
from mlops_nb.store import get_client

root, models = sys.argv[1], json.loads(sys.argv[2])
config = resolve_config(root, environ={})
client = get_client(config)
mlflow.set_tracking_uri(config.tracking_uri)
X, y = load_iris(return_X_y=True)
exp = client.create_experiment("approval", artifact_location=config.artifact_root + "/approval")
for name, versions in models.items():
    for k, (accuracy, alias) in enumerate(versions):
        model = LogisticRegression(C=1.0 + k, max_iter=500).fit(X, y)
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_metric("accuracy", accuracy)
            registry.register_model(client, model, name, run.info.run_id, alias=alias, input_example=X[:3])
registered = []
for name, accuracy, f1, alias, approval, protect in json.loads(sys.argv[3]):
    if protect:
        client.create_registered_model(name)
        registry.set_protected_aliases(client, name, protect)
    model = LogisticRegression(C=accuracy, max_iter=500).fit(X, y)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metrics({"accuracy": accuracy, "f1": f1})
        done = registry.register_model(client, model, name, run.info.run_id, alias=alias, approval=approval)
    registered.append(dataclasses.asdict(done))
(Path(root) / "registered.json").write_text(json.dumps(registered))
print("DONE")
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A project whose pyproject protects @champion, with the models of :data:`MODELS` and
    :data:`REGISTRATIONS` (what each registration returned: ``registered.json``)."""
    root = tmp_path_factory.mktemp("approval") / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "p"\n\n[tool.mlops-nb]\napproval_aliases = ["champion"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", _REGISTER, str(root), json.dumps(MODELS), json.dumps(REGISTRATIONS)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=root,
    )
    assert done.returncode == 0 and "DONE" in done.stdout, done.stderr[-3000:]
    return root, get_client(resolve_config(root, environ={}))


def holder(client, name: str, alias: str = "champion") -> str | None:
    version = client.get_registered_model(name).aliases.get(alias)
    return str(version) if version is not None else None


def index(client, name: str) -> dict[str, str]:
    """The model's index of requests: its fixed key and its entries, by tag."""
    tags = client.get_registered_model(name).tags
    return {k: v for k, v in tags.items() if k == APPROVAL_PENDING or k.startswith(APPROVAL_PENDING_PREFIX)}


def test_the_project_setting_makes_promote_wait_until_a_person_approves(store):
    root, client = store
    config = resolve_config(root, environ={})
    assert config.approval_aliases == ("champion",)
    # The holder's newest monitor verdict is evidence: the approver sees why a retrain ran.
    drift = {"verdict": "drift", "reason": "2 of 4 features drifted", "drifted": ["0", "2"], "rows": 500}
    client.set_model_version_tag("proj", "1", MONITOR_LAST, json.dumps(drift))

    result = promote(client, "proj", "accuracy", who="loop", approval=config.approval_aliases)
    assert result.pending and (result.version, result.previous_version) == ("2", "1")
    assert (
        "waits for a person's approval" in result.message
        and "mlops-nb approve proj 2 --alias champion" in result.message
    )
    assert holder(client, "proj") == "1"  # nothing moved
    assert client.get_registered_model("proj").tags[APPROVAL_PENDING] == "champion"  # the index

    [request] = pending_approvals(client, "proj")
    assert (request.name, request.version, request.alias, request.current_version) == ("proj", "2", "champion", "1")
    assert request.requested_by == "loop" and request.requested_at
    evidence = request.evidence
    assert evidence["metrics"] == {"accuracy": {"candidate": 0.9, "current": 0.8}}
    assert evidence["comparison"] == "promoted from @challenger: accuracy 0.9 vs 0.8 (higher is better)"
    assert evidence["drift"] == drift
    assert evidence["lineage"]["run_id"] == client.get_model_version("proj", "2").run_id
    assert evidence["lineage"]["flavor"] == "sklearn"
    assert request.summary == "accuracy 0.9 vs 0.8; holder monitored: drift (0, 2)"
    assert json.loads(json.dumps(request.to_dict()))["evidence"] == evidence
    assert "approval.pending.champion" not in version_detail(client, "proj", "2")["lineage"]

    done = approve(client, "proj", "2", "champion", who="alice", reason="drift fixed, checked the report")
    assert not done.pending and (done.version, done.previous_version) == ("2", "1")
    assert holder(client, "proj") == "2"
    trail = [e for e in audit_trail(client, "proj", "2") if e["alias"] == "champion"]
    assert [e["action"] for e in trail] == ["approval requested", "set", "approved"]
    assert trail[0]["who"] == "loop"
    assert trail[1]["who"] == "alice" and trail[1]["why"].startswith("approved by alice (drift fixed")
    assert trail[2]["who"] == "alice" and trail[2]["why"] == "drift fixed, checked the report"
    assert pending_approvals(client, "proj") == []
    assert not index(client, "proj")  # a decision clears the index with the request
    with pytest.raises(NotFoundError, match=r"^no pending request to move @champion to proj v2: alice approved it at "):
        approve(client, "proj", "2", "champion", who="bob")


def test_the_model_setting_makes_promote_wait_and_a_rejection_keeps_the_alias(store):
    _, client = store
    assert set_protected_aliases(client, "own", "champion, prod") == ("champion", "prod")
    assert protected_aliases(client, "own") == {"champion", "prod"}
    assert protected_aliases(client, "own", ("staging",)) == {"champion", "prod", "staging"}

    result = promote(client, "own", "accuracy", who="ci")  # no project aliases: the model's own setting
    assert result.pending and "the model's own setting" in result.message
    with pytest.raises(UsageError, match="give a reason"):
        reject(client, "own", "2", "champion", who="bob", reason="  ")
    rejected = reject(client, "own", "2", "champion", who="bob", reason="accuracy on last week's labels is worse")
    assert isinstance(rejected, PendingApproval) and rejected.current_version == "1"
    assert holder(client, "own") == "1"
    [event] = [e for e in audit_trail(client, "own", "2") if e["action"] == "rejected"]
    assert (event["who"], event["why"], event["alias"]) == (
        "bob",
        "accuracy on last week's labels is worse",
        "champion",
    )
    assert pending_approvals(client, "own") == []
    with pytest.raises(NotFoundError, match="bob rejected it at"):
        approve(client, "own", "2", "champion")

    assert set_protected_aliases(client, "own", []) == ()  # lifted: the next promotion moves at once
    assert not promote(client, "own", "accuracy").pending
    assert holder(client, "own") == "2"


def test_an_unprotected_alias_moves_at_once_and_a_refused_candidate_is_never_pending(store):
    _, client = store
    moved = promote(client, "free", "accuracy", approval=("prod",))
    assert not moved.pending and holder(client, "free") == "2"
    assert PromotionResult("m", "a", "1", None, "x", 1.0, None, "msg").pending is False  # old construction

    client.set_registered_model_alias("free", "challenger", "3")  # v3 is worse: refused, not queued
    with pytest.raises(PromotionRefusedError, match="accuracy=0.7"):
        promote(client, "free", "accuracy", approval=("champion",))
    assert pending_approvals(client, "free") == [] and holder(client, "free") == "2"
    # The first holder of a protected alias waits too.
    client.set_registered_model_alias("free", "challenger", "1")
    first = promote(client, "free", "accuracy", to_alias="prod", approval=("prod",))
    assert first.pending and first.previous_version is None and holder(client, "free", "prod") is None
    [request] = pending_approvals(client, "free")
    assert request.current_version is None and request.evidence["metrics"]["accuracy"]["current"] is None
    assert approve(client, "free", "1", "prod", who="alice").message.startswith("free v1 is now @prod (was no version)")


def test_a_request_whose_version_was_deleted_is_one_clear_line(store):
    _, client = store
    assert promote(client, "gone", "accuracy", approval=("champion",)).pending
    client.delete_model_version("gone", "2")
    assert index(client, "gone")  # stale now: found empty by the next listing, and dropped
    assert pending_approvals(client, "gone") == []
    assert not index(client, "gone")
    with pytest.raises(NotFoundError) as info:
        approve(client, "gone", "2", "champion")
    assert str(info.value) == "no pending request to move @champion to gone v2: model 'gone' has no version 2"
    with pytest.raises(NotFoundError, match="no pending request to move @champion to nosuch v1: no registered model"):
        reject(client, "nosuch", "1", "champion", reason="x")


def test_registering_into_a_protected_alias_registers_the_version_and_waits_for_a_person(store):
    root, client = store
    reg1, reg2, reg3, fresh, _ = json.loads((root / "registered.json").read_text())
    assert (reg1["aliases"], reg1["pending"], reg1["message"]) == (
        ["champion"],
        False,
        "registered reg v1 as @champion",
    )
    assert (reg3["aliases"], reg3["pending"]) == (["challenger"], False)  # protecting champion spares challenger
    assert reg2["version"] == "2" and reg2["pending"] and reg2["aliases"] == []
    assert reg2["message"].startswith(
        "registered reg v2; it waits for a person's approval to become @champion "
        "(protected by the project's approval_aliases); nothing moved. "
        "registered asking for @champion; no promotion compared it with the holder v1."
    )
    assert "mlops-nb approve reg 2 --alias champion" in reg2["message"]
    assert holder(client, "reg") == "1" and holder(client, "reg", "challenger") == "3"

    [request] = pending_approvals(client, "reg")
    assert (request.version, request.alias, request.current_version) == ("2", "champion", "1")
    evidence = request.evidence
    assert evidence["metrics"] == {  # the new version's metrics beside the holder's; no guard compared them
        "accuracy": {"candidate": 0.95, "current": 0.8},
        "f1": {"candidate": 0.9, "current": 0.75},
    }
    assert (evidence["comparison"], evidence["via"], evidence["compared_with"]) == ("", "register", "1")
    assert evidence["lineage"]["run_id"] == reg2["run_id"] and evidence["lineage"]["flavor"] == "sklearn"
    assert request.summary == "accuracy 0.95 vs 0.8; f1 0.9 vs 0.75"
    [asked] = [e for e in audit_trail(client, "reg", "2") if e["action"] == "approval requested"]
    assert (asked["alias"], asked["from_version"], asked["to_version"]) == ("champion", "1", "2")

    # The model's own setting protects too, and the first holder of an alias waits.
    assert (
        fresh["pending"] and "the model's own setting" in fresh["message"] and holder(client, "fresh", "prod") is None
    )
    [first] = pending_approvals(client, "fresh")
    assert first.current_version is None and first.evidence["compared_with"] is None
    assert first.summary == "accuracy 0.7 (no holder); f1 0.65 (no holder)"
    assert first.why == "registered asking for @prod, which no version holds"

    assert approve(client, "reg", "2", "champion", who="alice").message.startswith("reg v2 is now @champion (was v1)")
    assert holder(client, "reg") == "2"
    reject(client, "fresh", "1", "prod", who="bob", reason="first version: evaluate it before serving")
    assert holder(client, "fresh", "prod") is None
    assert pending_approvals(client, "reg") == pending_approvals(client, "fresh") == [] and not index(client, "fresh")


class Counting:
    """The store's client, counting the calls made through it (each one is a query)."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call


def test_the_index_finds_requests_among_many_models_with_one_search_and_stays_right(store):
    root, client = store
    exp = client.create_experiment("bulk")
    runs = []
    for accuracy in (0.8, 0.9):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        runs.append(run.info.run_id)
    asking = {"bulk-07": ["champion"], "bulk-31": ["champion", "prod"], "bulk-44": ["champion", "champion"]}
    for i in range(50):  # versions without model files: only their tags are read here
        name = f"bulk-{i:02d}"
        client.create_registered_model(name)
        for k in range(1 + len(asking.get(name, []))):
            client.create_model_version(name, str(root / "no-files"), run_id=runs[min(k, 1)])
    for name, aliases in asking.items():  # as a loop promotes: v2 (and v3) ask, v1 holds champion
        client.set_registered_model_alias(name, "champion", "1")
        for k, alias in enumerate(aliases):
            client.set_registered_model_alias(name, "challenger", str(2 + k) if alias == "champion" else "2")
            assert promote(client, name, "accuracy", to_alias=alias, who="loop", approval=("champion", "prod")).pending
    assert index(client, "bulk-31")[APPROVAL_PENDING] == "champion,prod" and not index(client, "bulk-30")

    counting = Counting(client)
    started = time.perf_counter()
    found = pending_approvals(counting)
    took = time.perf_counter() - started
    bulk = sorted((p.name, p.version, p.alias) for p in found if p.name.startswith("bulk-"))
    assert bulk == [
        ("bulk-07", "2", "champion"),
        ("bulk-31", "2", "champion"),
        ("bulk-31", "2", "prod"),
        ("bulk-44", "2", "champion"),
        ("bulk-44", "3", "champion"),
    ]
    # One filtered search finds the models with requests, whatever their number; then one
    # version search per alias asked for and one read per holder (its monitor verdict).
    holders = len({(p.name, p.current_version) for p in found if p.current_version})
    aliases = len({p.alias for p in found})
    assert counting.calls == Counter(
        search_registered_models=1, search_model_versions=aliases, get_model_version=holders
    ), counting.calls
    assert took < 1.0, f"pending_approvals took {took:.2f} s over 50 models"  # about 0.03 s on a busy 2-core machine

    # Decisions keep the index right: it lists what is still asked, and nothing else.
    approve(client, "bulk-07", "2", "champion", who="alice")
    reject(client, "bulk-31", "2", "prod", who="alice", reason="prod is not for this model")
    approve(client, "bulk-44", "3", "champion", who="alice")
    assert not index(client, "bulk-07")
    assert index(client, "bulk-31") == {APPROVAL_PENDING: "champion", APPROVAL_PENDING_PREFIX + "champion": "2"}
    [left] = pending_approvals(client, "bulk-44")  # v2's request stays, compared with the old holder
    assert left.version == "2" and left.summary == "accuracy 0.9 vs 0.8; compared with v1, @champion is now v3"
    # A deleted version leaves a stale entry: skipped, and dropped by the next listing.
    client.delete_model_version("bulk-31", "2")
    client.delete_model_version("bulk-44", "2")
    assert [p for p in pending_approvals(client) if p.name.startswith("bulk-")] == []
    assert not index(client, "bulk-31") and not index(client, "bulk-44")


def _cli(root: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.Popen(
        [str(MLOPS_NB), *args, "--project", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _done(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_the_commands_list_decide_and_protect_with_exit_codes_and_one_line_errors(store):
    root, client = store
    assert promote(client, "cli", "accuracy", who="loop", approval=("champion",)).pending
    set_protected_aliases(client, "cli", ["prod", "staging"])
    # Independent commands run at once: each start costs seconds of imports.
    listing = _cli(root, "approvals", "cli")
    unknown = _cli(root, "approve", "nosuch", "1")
    protect = _cli(root, "protect", "cli", "staging", "--off")
    code, _, err = _done(_cli(root, "reject", "cli", "2"))  # bad usage: refused before MLflow loads
    assert code == 2 and "the following arguments are required: --reason" in err
    code, _, err = _done(_cli(root, "approve", "cli", "two"))
    assert code == 2 and err.strip().splitlines() == [
        "mlops-nb: error: version must be a positive whole number such as 3 (at most 9 digits), not 'two'"
    ]

    code, out, err = _done(listing)
    assert code == 0, err
    header, registered, promoted = out.splitlines()[:3]  # oldest request first
    assert header.split() == ["model", "version", "alias", "current", "requested", "by", "when", "evidence"]
    assert registered.split()[:4] == ["cli", "v3", "@prod", "-"] and "accuracy 0.92 (no holder)" in registered
    assert promoted.split()[:5] == ["cli", "v2", "@champion", "v1", "loop"] and "accuracy 0.9 vs 0.8" in promoted
    assert "decide: mlops-nb approve cli 3 --alias prod --reason TEXT" in out
    code, _, err = _done(unknown)  # the usage was fine, the operation could not be done
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("mlops-nb: error: no pending request to move @champion to nosuch v1: no registered model")
    code, out, err = _done(protect)
    assert code == 0, err
    assert (
        out.strip()
        == "mlops-nb: cli: now protected: @prod (model setting), @champion (project setting approval_aliases)"
    )
    assert protected_aliases(client, "cli") == {"prod"}

    # Two decisions on one model at once: each settles the model's index as it clears.
    promotion = _cli(root, "approve", "cli", "2", "--reason", "looks right", "--json")
    code, out, err = _done(_cli(root, "approve", "cli", "3", "--alias", "prod", "--json"))
    assert code == 0, err
    answer = json.loads(out)  # strict JSON: a registration's request compared no metric
    assert (answer["previous_version"], answer["candidate_value"], answer["metric"]) == (None, None, "")
    code, out, err = _done(promotion)
    assert code == 0, err
    assert json.loads(out)["previous_version"] == "1" and holder(client, "cli") == "2"
    assert holder(client, "cli", "prod") == "3"
    [event] = [e for e in audit_trail(client, "cli", "2") if e["action"] == "approved"]
    assert event["why"] == "looks right" and event["who"]  # the user running the command
    assert pending_approvals(client, "cli") == [] and not index(client, "cli")
