"""Registering, aliasing, promoting and loading models from cells, on a real store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import git, new_project

TRAIN = """
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = X[:400], X[400:], y[:400], y[400:]
"""


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).strip("\n"), store_history=True)


def train_and_register(ip, c: float, alias: str = "challenger", accuracy: float | None = None):
    """Fit a model in a tracked cell, log its accuracy and register it."""
    code = f"""
    %%mlops track --name fit-{c} --no-autolog
    model = make_pipeline(StandardScaler(), LogisticRegression(C={c}, max_iter=5000)).fit(X_train, y_train)
    accuracy = float("{accuracy}") if "{accuracy}" != "None" else model.score(X_test, y_test)
    %mlops log accuracy
    %mlops register model --name cancer --alias {alias} --input-example X_example
    """
    result = run(ip, code)
    assert result.success, result.error_in_exec


@pytest.fixture
def trained(ip):
    assert run(ip, TRAIN + "X_example = X_train[:3]").success
    return ip


def test_register_logs_flavor_signature_and_lineage(trained, project: Path, client, capsys):
    ip = trained
    run(ip, "alpha = 0.5")
    run(ip, "%mlops track --no-autolog")
    train_and_register(ip, 1.0)
    out = capsys.readouterr().out
    assert "registered cancer v1 as @challenger (sklearn" in out
    assert "%mlops load models:/cancer@challenger" in out

    mv = client.get_model_version("cancer", "1")
    assert str(client.get_model_version_by_alias("cancer", "challenger").version) == "1"
    tags = mv.tags
    assert tags["mlops_nb.flavor"] == "sklearn"
    assert tags["mlops_nb.notebook"] == "analysis/train.ipynb"
    assert tags["mlops_nb.git.commit"] == git(project, "rev-parse", "HEAD")
    assert json.loads(tags["mlops_nb.params"])["alpha"] == "0.5"  # the notebook run's params
    run_ = client.get_run(mv.run_id)
    assert run_.info.run_name == "fit-1.0" and tags["mlops_nb.run_id"] == mv.run_id
    from mlflow.models import Model

    from mlops_nb.registry import model_files

    signature = Model.load(model_files(client, mv)).signature
    assert signature is not None and "30" in str(signature.inputs.to_dict())


def test_register_outside_a_run_makes_its_own_run(trained, client):
    ip = trained
    assert run(ip, "clf = LogisticRegression(max_iter=5000).fit(X_train, y_train)").success
    assert run(ip, "%mlops register clf --name plain").success
    mv = client.get_model_version("plain", "1")
    r = client.get_run(mv.run_id)
    assert r.info.run_name == "register plain" and r.info.status == "FINISHED"


@pytest.mark.parametrize(
    "setup, line, message",
    [
        ("thing = 5", "%mlops register thing --name m", "a builtins.int is not a model"),
        (
            "from sklearn.linear_model import LogisticRegression\nraw = LogisticRegression()",
            "%mlops register raw --name m",
            "is not fitted yet",
        ),
        ("", "%mlops register nope --name m", "no variable named 'nope'"),
        ("", "%mlops register model --name m --alias latest", "alias 'latest' is reserved"),
        ("", "%mlops register model --name m --alias v3", "alias 'v3' is reserved"),
        ("", "%mlops register model --name a/b", "model name 'a/b' is not allowed"),
        ("", "%mlops register model", "the following arguments are required: --name"),
        ("", "%mlops register model --name m --input-example y_test", "the input example does not fit"),
    ],
)
def test_bad_registrations_register_nothing(trained, client, capsys, setup, line, message):
    ip = trained
    run(ip, "model = LogisticRegression(max_iter=5000).fit(X_train, y_train)")
    if setup:
        run(ip, setup)
    result = run(ip, line)
    assert not result.success
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert client.search_registered_models() == []


def test_alias_set_move_remove_with_audit_trail(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0)
    train_and_register(ip, 0.1)
    assert run(ip, "%mlops alias cancer@champion 1").success
    assert run(ip, "%mlops alias cancer@champion 2").success
    assert "cancer@champion -> v2 (was v1)" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "2"
    assert run(ip, "%mlops alias cancer@champion --remove").success
    assert "champion" not in client.get_registered_model("cancer").aliases

    from mlops_nb.registry import audit_trail

    trail = audit_trail(client, "cancer", "2")
    assert [(e["action"], e["alias"]) for e in trail if e["alias"] == "champion"] == [
        ("set", "champion"),
        ("removed", "champion"),
    ]
    assert trail[-1]["who"] and trail[-1]["when"] and trail[-1]["why"] == "%mlops alias --remove"
    moved_away = [e for e in audit_trail(client, "cancer", "1") if e["action"] == "moved away"]
    assert moved_away and moved_away[0]["to_version"] == "2"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%mlops alias cancer@champion 9", "model 'cancer' has no version 9"),
        ("%mlops alias nosuch@champion 1", "no registered model named 'nosuch'"),
        ("%mlops alias cancer@latest 1", "alias 'latest' is reserved"),
        ("%mlops alias cancer@champion", "give the version @champion should point at"),
        ("%mlops alias cancer 1", "names no alias"),
        ("%mlops alias cancer@gone --remove", "model 'cancer' has no alias 'gone'; its aliases: challenger"),
        ("%mlops load models:/cancer@gone", "model 'cancer' has no alias 'gone'"),
        ("%mlops load cancer", "is not a model reference"),
        ("%mlops models nosuch", "no registered model named 'nosuch'"),
    ],
)
def test_unknown_models_versions_and_aliases_are_one_line(trained, client, capsys, line, message):
    ip = trained
    train_and_register(ip, 1.0)
    capsys.readouterr()
    result = run(ip, line)
    assert not result.success
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_promote_moves_only_when_the_candidate_beats_the_holder(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0, accuracy=0.90)
    assert run(ip, "%mlops promote cancer --metric accuracy").success  # no champion yet
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "1"

    train_and_register(ip, 0.5, accuracy=0.85)  # v2, worse
    capsys.readouterr()
    result = run(ip, "%mlops promote cancer --from challenger --to champion --metric accuracy")
    assert result.success  # a refusal does not fail the cell
    out = capsys.readouterr().out
    assert "refused" in out and "accuracy=0.85" in out and "accuracy=0.9" in out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "1"

    train_and_register(ip, 0.2, accuracy=0.905)  # v3: better, but not by 0.01
    run(ip, "%mlops promote cancer --metric accuracy --min-delta 0.01")
    assert "gain must exceed 0.01" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "1"
    run(ip, "%mlops promote cancer --metric accuracy")
    assert "cancer v3 is now @champion" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "3"
    from mlops_nb.registry import audit_trail

    why = [e["why"] for e in audit_trail(client, "cancer", "3") if e["alias"] == "champion"]
    assert why == ["promoted from @challenger: accuracy 0.905 vs 0.9 (higher is better)"]


def test_promote_lower_is_better_and_bad_metric(trained, client, capsys):
    ip = trained
    for c, loss in ((1.0, 0.3), (0.5, 0.2)):
        code = f"""
        %%mlops track --name loss-{c} --no-autolog
        model = LogisticRegression(C={c}, max_iter=500).fit(X_train, y_train)
        loss = {loss}
        %mlops log loss
        %mlops register model --name lossy --alias challenger
        """
        assert run(ip, code).success
        if c == 1.0:
            run(ip, "%mlops alias lossy@champion 1")
    run(ip, "%mlops promote lossy --metric loss")
    assert "refused" in capsys.readouterr().out  # higher-is-better by default: 0.2 loses
    run(ip, "%mlops promote lossy --metric loss --lower-is-better")
    assert str(client.get_model_version_by_alias("lossy", "champion").version) == "2"
    result = run(ip, "%mlops promote lossy --metric f1 --from champion --to best")
    assert not result.success
    assert "metric 'f1' is on neither version's run" in capsys.readouterr().err
    assert "best" not in client.get_registered_model("lossy").aliases


def test_promote_refuses_an_incompatible_signature(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0, alias="champion", accuracy=0.5)
    code = """
    %%mlops track --name narrow --no-autolog
    model = LogisticRegression(max_iter=5000).fit(X_train[:, :5], y_train)
    accuracy = 0.99
    %mlops log accuracy
    X_narrow = X_train[:3, :5]
    %mlops register model --name cancer --alias challenger --input-example X_narrow
    """
    assert run(ip, code).success
    run(ip, "%mlops promote cancer --metric accuracy")
    out = capsys.readouterr().out
    assert "refused" in out and "signatures differ" in out and "0.99 beats 0.5" in out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "1"


def test_load_by_alias_and_warn_when_the_alias_moves(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0, alias="champion")
    assert run(ip, "%mlops load models:/cancer@champion --as clf").success
    assert "loaded cancer @champion -> v1 into clf (Pipeline)" in capsys.readouterr().out
    assert run(ip, "pred = clf.predict(X_test[:5])").success
    assert len(ip.user_ns["pred"]) == 5
    train_and_register(ip, 0.1, alias="champion")  # v2 takes the alias
    capsys.readouterr()
    run(ip, "%mlops status")  # the next %mlops call says so
    assert "models:/cancer@champion is v1, but @champion now points at v2" in capsys.readouterr().err
    run(ip, "%mlops status")
    assert "now points at v2" not in capsys.readouterr().err  # warned once per move


def test_models_tables(trained, client):
    ip = trained
    train_and_register(ip, 1.0, accuracy=0.93)
    models = str(run(ip, "%mlops models").result)
    assert "cancer" in models and "@challenger=v1" in models
    versions = run(ip, "%mlops models cancer").result
    assert "v1" in str(versions) and "accuracy=0.93" in str(versions)
    assert "<table" in versions._repr_mimebundle_()["text/html"]


def test_python_api_matches_the_magics(trained, client):
    import mlops_nb as mnb

    ip = trained
    run(ip, "model = LogisticRegression(max_iter=5000).fit(X_train, y_train)")
    mnb.track(autolog=False)
    mnb.log(accuracy=0.8)
    v1 = mnb.register(ip.user_ns["model"], "api", alias="champion", input_example=ip.user_ns["X_example"])
    mnb.end()
    mnb.track(autolog=False)
    mnb.log(accuracy=0.9)
    v2 = mnb.register(ip.user_ns["model"], "api", alias="challenger")
    mnb.end()
    assert (v1.version, v2.version) == ("1", "2")
    result = mnb.promote("api", metric="accuracy")
    assert result.version == "2" and result.previous_version == "1"
    from mlops_nb.exceptions import PromotionRefusedError

    with pytest.raises(PromotionRefusedError, match="already holds @champion"):
        mnb.promote("api", metric="accuracy")
    mnb.set_alias("api", "stable", 1)
    model = mnb.load("models:/api@stable")
    assert model.predict(ip.user_ns["X_test"][:2]).shape == (2,)
    assert "api" in str(mnb.models())


def test_a_forest_registers_and_loads_back(trained, client):
    ip = trained
    code = """
    %%mlops track --name forest --no-autolog --no-chart
    from sklearn.ensemble import RandomForestClassifier
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_train, y_train)
    %mlops register forest --name trees --alias champion --input-example X_example
    """
    assert run(ip, code).success
    assert run(
        ip,
        "%mlops load models:/trees@champion --as loaded\nsame = (loaded.predict(X_test) == forest.predict(X_test)).all()",
    ).success
    assert ip.user_ns["same"]
    mv = client.get_model_version("trees", "1")
    from mlflow.models import Model

    from mlops_nb.registry import model_files

    reqs = (Path(model_files(client, mv)) / "requirements.txt").read_text()
    assert "scikit-learn==" in reqs and "skops" in reqs
    assert Model.load(model_files(client, mv)).flavors["sklearn"]["serialization_format"] == "skops"


def test_names_with_quotes_and_wildcards_are_found_exactly(trained, client):
    import mlops_nb as mnb
    from mlops_nb.registry import list_versions, models_page

    ip = trained
    run(ip, "model = LogisticRegression(max_iter=5000).fit(X_train, y_train)")
    for name in ("it's", 'say "hi" it\'s', "50%_x", "50XYx"):
        mnb.register(ip.user_ns["model"], name)
    for name in ("it's", 'say "hi" it\'s'):
        rows, _ = list_versions(client, name)
        assert [(r.name, r.version) for r in rows] == [(name, "1")]
    assert [m.name for m in models_page(client, "it's")[0]] == ["it's", 'say "hi" it\'s']
    assert [m.name for m in models_page(client, "50%_")[0]] == ["50%_x"]


def test_stale_model_warning_once_per_move_and_quiet_when_back(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0, alias="champion")
    run(ip, "%mlops load models:/cancer@champion --as clf")
    run(ip, "%mlops alias cancer@champion --remove")
    capsys.readouterr()
    run(ip, "%mlops status")
    assert "@champion was removed" in capsys.readouterr().err
    run(ip, "%mlops status")
    assert "warning" not in capsys.readouterr().err
    run(ip, "%mlops alias cancer@champion 1")  # back to the version this kernel holds
    capsys.readouterr()
    run(ip, "%mlops status")
    assert "warning" not in capsys.readouterr().err


def test_a_nan_metric_counts_as_missing(trained, client, capsys):
    ip = trained
    train_and_register(ip, 1.0, alias="champion", accuracy=float("nan"))
    train_and_register(ip, 0.5, alias="challenger", accuracy=0.9)
    run(ip, "%mlops promote cancer --metric accuracy")
    out = capsys.readouterr().out
    assert "refused" in out and "has no 'accuracy' to compare with" in out
    assert str(client.get_model_version_by_alias("cancer", "champion").version) == "1"


def test_a_version_keeps_the_metrics_its_run_had_when_registered(trained, client):
    import mlops_nb
    from mlops_nb.registry import versions_page

    ip = trained
    # Metrics wait in the tracker's buffer (written every 0.5 s); hold them there so a
    # registration right after logging meets them unwritten every time, not by chance.
    mlops_nb.get_tracker().buffer._interval = 3600
    code = """
    %%mlops track --name auto
    model = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    accuracy = 0.77
    %mlops log accuracy
    %mlops register model --name quick
    """
    assert run(ip, code).success
    stored = json.loads(client.get_model_version("quick", "1").tags["mlops_nb.metrics"])
    assert stored["accuracy"] == 0.77 and any(k.startswith("training_") for k in stored)  # and autolog's
    rows, _ = versions_page(client, "quick")
    assert rows[0].metrics == stored


def test_the_metrics_snapshot_is_bounded_and_keeps_plain_names_first():
    from mlops_nb.registry import METRICS_TAG, METRICS_TAG_LIMIT, metrics_tag

    metrics = {
        "accuracy": 0.9,
        "loss": float("nan"),
        "f1": float("inf"),
        "flag": True,
        **{f"system/gpu_{i}_utilization_percentage": 1.0 for i in range(200)},
        **{f"val/per_class_recall_{i:03d}": 0.5 for i in range(200)},
    }
    text = metrics_tag(metrics)[METRICS_TAG]
    stored = json.loads(text)
    assert len(text) <= METRICS_TAG_LIMIT < len(json.dumps(metrics))
    assert stored["accuracy"] == 0.9 and not {"loss", "f1", "flag"} & set(stored)
    assert 100 < sum(k.startswith("val/") for k in stored) < 200
    assert not any(k.startswith("system/") for k in stored)
    assert metrics_tag({"a": 1, "b": 0.5}) == {METRICS_TAG: '{"a":1.0,"b":0.5}'}


def test_open_source_notebook_says_the_notebook_was_never_saved_not_that_capture_was_off(tmp_path: Path):
    from mlops_nb.config import resolve_config
    from mlops_nb.exceptions import NotFoundError
    from mlops_nb.registry import version_notebook
    from mlops_nb.store import get_client, get_or_create_experiment

    root = new_project(tmp_path)
    config = resolve_config(root, environ={})
    client = get_client(config)
    exp = get_or_create_experiment(client, config, "untitled")
    tags = {"mlops_nb.kind": "notebook", "mlops_nb.notebook": "Untitled.ipynb"}
    for name, saved in (("unsaved", "false"), ("nocapture", "true")):
        run = client.create_run(exp, tags={**tags, "mlops_nb.notebook_saved": saved})
        client.log_text(run.info.run_id, "numpy==2\n", "environment/requirements.txt")  # what tracking always saves
        client.create_registered_model(name)
        client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    with pytest.raises(NotFoundError) as info:
        version_notebook(client, "unsaved", "1", root)
    assert "the notebook had never been saved when it ran" in str(info.value) and "capture was off" not in str(
        info.value
    )
    with pytest.raises(NotFoundError) as info:
        version_notebook(client, "nocapture", "1", root)
    assert "capture was off" in str(info.value) and "never been saved" not in str(info.value)
