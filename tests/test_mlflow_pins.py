"""MLflow internals mlops-nb relies on, pinned on a real SQLite store (no mocks).

:mod:`mlops_nb.fluent` reads and pushes onto MLflow's private active-run stack
(``mlflow.tracking.fluent._active_run_stack``) and replaces ``mlflow.start_run`` and
``mlflow.end_run`` process-wide; it also swaps the SQLite store builder and wraps one
private function of scikit-learn autologging. MLflow documents none of these: when an
upgrade moves one, a test here fails and names it, rather than a notebook silently
logging to the wrong run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_nb.fluent import stack_ids


@pytest.fixture
def mlflow_store(tmp_path: Path) -> Iterator[str]:
    """MLflow's fluent API pointed at a fresh SQLite store, its default experiment active
    (an experiment an earlier test set in this process does not exist here), and left as
    it was found."""
    import mlflow
    from mlflow.tracking import fluent

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = fluent._active_experiment_id
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id="0")
    try:
        yield uri
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        fluent._active_experiment_id = experiment


def test_the_active_run_stack_is_a_per_thread_list_bottom_first(mlflow_store: str) -> None:
    from mlflow.tracking import fluent

    assert isinstance(fluent._active_run_stack.get(), list)
    assert stack_ids() == []
    outer = fluent.start_run(nested=True)
    inner = fluent.start_run(nested=True)
    assert [r.info.run_id for r in fluent._active_run_stack.get()] == [outer.info.run_id, inner.info.run_id]
    assert stack_ids() == [outer.info.run_id, inner.info.run_id]
    fluent.end_run()
    assert stack_ids() == [outer.info.run_id]
    fluent.end_run()
    assert stack_ids() == []


def test_a_run_pushed_onto_the_stack_is_the_active_run_and_ends_as_usual(mlflow_store: str) -> None:
    """What fluent._ensure_job_run_active does for a job's run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.tracking import fluent

    client = MlflowClient(mlflow_store)
    run = client.create_run(client.create_experiment("pins"))
    stack = fluent._active_run_stack.get()
    stack.append(fluent.ActiveRun(client.get_run(run.info.run_id)))
    active = mlflow.active_run()
    assert active is not None and active.info.run_id == run.info.run_id
    child = mlflow.start_run(nested=True)
    assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
    mlflow.end_run()
    mlflow.end_run("KILLED")
    assert stack_ids() == []
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def test_start_run_and_end_run_are_the_fluent_modules_own() -> None:
    """Replacing them in both places (install_start_run_defaults) is what reaches
    ``mlflow.start_run`` and MLflow's own internal callers."""
    import mlflow
    from mlflow.tracking import fluent

    assert mlflow.start_run is fluent.start_run
    assert mlflow.end_run is fluent.end_run
    assert mlflow.active_run is fluent.active_run


def test_the_internals_the_kernel_hooks_replace_exist() -> None:
    from mlflow.sklearn import utils as sklearn_utils
    from mlflow.tracking._tracking_service import utils
    from mlflow.utils import autologging_utils
    from mlflow.utils.mlflow_tags import MLFLOW_AUTOLOGGING, MLFLOW_RUN_NOTE

    registry = utils._tracking_store_registry
    assert callable(registry._registry.get("sqlite")) and callable(registry.register)
    assert callable(sklearn_utils._log_specialized_estimator_content)
    assert isinstance(autologging_utils.AUTOLOGGING_INTEGRATIONS, dict)
    assert MLFLOW_AUTOLOGGING and MLFLOW_RUN_NOTE
