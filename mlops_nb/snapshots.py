"""Where a run's notebook is: the snapshot mlops-nb captured as an artifact, the path it
was run from, or why there is none."""

from __future__ import annotations
