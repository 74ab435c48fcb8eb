"""Run queries shared by tracking, the registry and the jobs: paging through MLflow's searches,
the experiments a project holds."""

from __future__ import annotations
