"""Where a run's notebook is: the snapshot mlops-nb captured as an artifact, the path it
was run from, or why there is none.

Shared by the registry (a version's notebook), the reproduction of a run and the job
history (a job's executed notebook), so they choose the same file and fail the same way.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import NotFoundError, StoreError, one_line
from mlops_nb.store import explain_missing_run_artifacts
from mlops_nb.tags import NOTEBOOK_SAVED

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = [
    "download_snapshot",
    "file_inside",
    "html_exporter",
    "is_missing",
    "notebook_html",
    "read_snapshot",
    "why_no_snapshot",
]


def is_missing(exc: BaseException) -> bool:
    """Whether an MLflow error says the thing asked for does not exist."""
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def file_inside(root: Path, path: Path) -> Path | None:
    """``path`` relative to ``root`` if it is a file there once symlinks are resolved;
    ``None`` for anything outside, missing or not a file."""
    try:
        base, target = root.resolve(), path.resolve()
        if not target.is_relative_to(base) or not target.is_file():
            return None
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte in the tag
        return None
    return target.relative_to(base)


def _choose(client: MlflowClient, run_id: str, recorded: str | None, folder: str, suffix: str) -> str | None:
    """The name of the ``*<suffix>`` file the run saved under ``<folder>/`` (the one named
    like ``recorded`` if there is one), or ``None`` when it saved none or the run is gone."""
    try:
        names = [Path(f.path).name for f in client.list_artifacts(run_id, folder) if not f.is_dir]
    except Exception as exc:
        if is_missing(exc):
            return None  # the run is gone
        raise StoreError(f"cannot list the artifacts of run {run_id}: {one_line(exc, with_type=True)}") from None
    files = sorted(n for n in names if n.endswith(suffix))
    if not files:
        # An empty listing is also what a run whose artifact folder is gone gives.
        line = explain_missing_run_artifacts(client, run_id, f"the files saved with run {run_id}")
        if line:
            raise NotFoundError(line)
        return None
    wanted = Path(recorded).stem + suffix if recorded else None
    return wanted if wanted in files else files[0]


def read_snapshot(
    client: MlflowClient, run_id: str, recorded: str | None, folder: str = "code", suffix: str = ".ipynb"
) -> tuple[str, str] | None:
    """(file name, text) of the ``*<suffix>`` file the run saved under ``<folder>/`` (the
    one named like ``recorded`` if there is one), or ``None``: the notebook snapshot by
    default; a job's executed notebook (``job/``) too.

    Raises :class:`NotFoundError` when the run's artifact folder is gone, and
    :class:`StoreError` when the store fails.
    """
    chosen = _choose(client, run_id, recorded, folder, suffix)
    if chosen is None:
        return None
    with tempfile.TemporaryDirectory(prefix="mlops-nb-snapshot-") as tmp:
        try:
            local = client.download_artifacts(run_id, f"{folder}/{chosen}", tmp)
            return chosen, Path(local).read_text(encoding="utf-8")
        except Exception as exc:
            raise StoreError(
                f"cannot read the file {folder}/{chosen} of run {run_id}: {one_line(exc, with_type=True)}"
            ) from None


def download_snapshot(
    client: MlflowClient,
    run_id: str,
    recorded: str | None,
    into: Path,
    folder: str = "code",
    suffix: str = ".ipynb",
) -> Path | None:
    """The file :func:`read_snapshot` would read, downloaded into ``into`` under its own
    name; ``None`` when the run has none. Raises as :func:`read_snapshot` does."""
    chosen = _choose(client, run_id, recorded, folder, suffix)
    if chosen is None:
        return None
    try:
        return Path(client.download_artifacts(run_id, f"{folder}/{chosen}", str(into)))
    except Exception as exc:
        raise StoreError(
            f"cannot download the file {folder}/{chosen} of run {run_id}: {one_line(exc, with_type=True)}"
        ) from None


def why_no_snapshot(client: MlflowClient, run_id: str) -> str:
    """Why a run kept no notebook snapshot, as its tags tell (read only on an error path)."""
    try:
        saved = client.get_run(run_id).data.tags.get(NOTEBOOK_SAVED)
    except Exception:
        saved = None
    if saved == "false":
        return "the notebook had never been saved when it ran"
    return "capture was off, or the run was not tracked from a notebook"


_exporter: Any = None
_exporter_lock = threading.Lock()


def html_exporter() -> Any:
    """The process's one HTML exporter (nbconvert's lab template): building one compiles
    its templates (~70 ms), so every job and request of the process shares it."""
    global _exporter
    with _exporter_lock:
        if _exporter is None:
            from nbconvert import HTMLExporter  # about 0.5 s to import: only when rendering

            _exporter = HTMLExporter(template_name="lab")
        return _exporter


def notebook_html(text: str) -> str:
    """A notebook (its JSON text) as nbconvert renders it for JupyterLab (the 'lab'
    template), as the panel shows a snapshot and a job's executed notebook. Raises what
    nbformat or nbconvert raise for a damaged file."""
    import nbformat

    node = nbformat.reads(text, as_version=4)
    exporter = html_exporter()
    with _exporter_lock:  # an exporter is not safe to share between threads at once
        body, _ = exporter.from_notebook_node(node)
    return str(body)
