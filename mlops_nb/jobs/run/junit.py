"""JUnit XML for notebook jobs, so CI systems show a failing notebook natively."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from mlops_nb.jobs.run.execution import FINISHED, JobResult

__all__ = ["write_junit"]


def write_junit(results: Iterable[JobResult], path: str | Path, suite: str = "mlops-nb") -> Path:
    """Write one test case a job (a failure names the failing cell) to ``path``."""
    results = list(results)
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(r.status != FINISHED for r in results)),
        errors="0",
        time=f"{sum(r.duration_s for r in results):.3f}",
    )
    for r in results:
        name = Path(r.notebook).name
        case = ET.SubElement(
            root,
            "testcase",
            classname=Path(r.notebook).stem,
            name=name + ("" if not r.params else " " + ", ".join(f"{k}={v!r}" for k, v in r.params.items())),
            time=f"{r.duration_s:.3f}",
        )
        if r.run_id:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="mlflow_run_id", value=r.run_id)
        if r.status != FINISHED:
            failure = ET.SubElement(case, "failure", message=r.error or r.status, type=r.status)
            if r.failed_cell:
                cell = r.failed_cell  # the traceback as the notebook showed it (older results have only the error)
                failure.text = f"cell {cell['index']}:\n{cell['source']}\n\n{cell.get('traceback') or cell['error']}"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)
    return target
