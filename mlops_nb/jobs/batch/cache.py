"""Pipeline cache keys: a step is *cached* when a successful run exists whose key (the
notebook's sources, the resolved parameters, the kernel, the sweep and the upstream
steps' runs) equals the step's key now. The key is stored as the run's tag
``mlops_nb.pipeline.cache_key`` and looked up in the store, so the cache is wherever the
runs are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.jobs.batch.pipeline_file import Step
from mlops_nb.tags import PIPELINE_CACHE_KEY

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


__all__ = ["KEY_TAG", "active_experiment_id", "cache_key", "cached_run"]

KEY_TAG = PIPELINE_CACHE_KEY
# Bumped when the key's recipe changes, so an old key never matches a new recipe.
_KEY_VERSION = 1


def _notebook_sources(path: Path) -> list[list[Any]]:
    """What of a notebook decides its results: each cell's type, tags and source (not
    outputs, execution counts or ids, which change on every save)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for cell in cells:
        source = cell.get("source", "")
        out.append(
            [
                cell.get("cell_type"),
                sorted((cell.get("metadata") or {}).get("tags") or []),
                "".join(source) if isinstance(source, list) else source,
            ]
        )
    return out


def cache_key(step: Step, values: dict[str, Any], texts: dict[str, str], upstream: dict[str, str]) -> str:
    recipe = {
        "v": _KEY_VERSION,
        "notebook": _notebook_sources(step.notebook),
        "kernel": step.kernel,
        "values": values,
        "texts": texts,
        "sweep": asdict(step.sweep) if step.sweep else None,
        "upstream": upstream,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=repr).encode()).hexdigest()


def active_experiment_id(client: MlflowClient, name: str) -> str | None:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp is not None and exp.lifecycle_stage == "active" else None


def cached_run(client: MlflowClient, experiment_id: str | None, key: str) -> Any:
    """The newest successful run stored with cache ``key``, or None."""
    if experiment_id is None:
        return None
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None
