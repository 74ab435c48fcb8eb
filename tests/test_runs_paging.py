"""Paging, sorting and filtering runs: past MLflow's silent 1,000 cut."""

from __future__ import annotations

import pytest

from mlops_nb.config import resolve_config
from mlops_nb.exceptions import UsageError
from mlops_nb.provenance import NotebookLocation
from mlops_nb.runs import list_runs, runs_page
from mlops_nb.tracking import Tracker


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    """1,050 finished runs with an accuracy metric and a parity param."""
    from mlflow.entities import Metric, Param

    root = tmp_path_factory.mktemp("paging")
    (root / ".mlops").mkdir()
    config = resolve_config(root, environ={})
    client = Tracker(notebook=NotebookLocation(None, "test"), config=config, fluent=False).client
    exp = client.create_experiment("many")
    for i in range(1050):
        run = client.create_run(exp, run_name=f"r{i:04d}", start_time=1_700_000_000_000 + i)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("accuracy", i / 1050, 0, 0)],
            params=[Param("parity", "even" if i % 2 == 0 else "odd")],
        )
    return client


@pytest.mark.slow
def test_pages_reach_every_run_past_1000(many_runs):
    seen, token, pages = [], None, 0
    while True:
        page = runs_page(many_runs, ["many"], page_size=500, page_token=token)
        seen.extend(r.name for r in page.rows)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 1050
    assert seen[0] == "r1049"  # newest first
    rows, more = list_runs(many_runs, ["many"], max_results=1040)
    assert len(rows) == 1040 and more is True


@pytest.mark.slow
def test_filter_and_sort_by_metric_and_param(many_runs):
    page = runs_page(
        many_runs,
        ["many"],
        filter_string="params.parity = 'odd' and metrics.accuracy > 0.99",
        order_by="metrics.accuracy ASC",
    )
    names = [r.name for r in page.rows]
    assert names == sorted(names) and all(int(n[1:]) % 2 == 1 for n in names)
    assert all(r.metrics["accuracy"] > 0.99 for r in page.rows) and len(names) == 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filter_string": "accuracy >> 1"}, "cannot search runs with filter 'accuracy >> 1'"),
        ({"order_by": "metrics.accuracy SIDEWAYS"}, "cannot search runs"),
        ({"page_size": 0}, "page size must be between 1 and 1000"),
    ],
)
def test_bad_filters_are_one_line(many_runs, kwargs, message):
    with pytest.raises(UsageError, match=message) as info:
        runs_page(many_runs, ["many"], **kwargs)
    assert "\n" not in str(info.value)
