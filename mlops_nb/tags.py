"""The names of every MLflow tag mlops-nb writes: one home, so a reader finds what a tag
means and a writer cannot misspell it. All start with :data:`PREFIX`."""

from __future__ import annotations

PREFIX = "mlops_nb."

# What a run is and where it came from (tracking, provenance).
KIND = PREFIX + "kind"  # "job", "sweep", "pipeline", "reproduction", ...
NOTEBOOK = PREFIX + "notebook"
NOTEBOOK_SAVED = PREFIX + "notebook_saved"
NOTEBOOK_HOW = PREFIX + "notebook_how"
CELL = PREFIX + "cell"
PARAMS = PREFIX + "params"
HOST = PREFIX + "host"
PYTHON = PREFIX + "python"
GIT_COMMIT = PREFIX + "git.commit"
GIT_BRANCH = PREFIX + "git.branch"
GIT_DIRTY = PREFIX + "git.dirty"
# A run's process, so a dead one can be found and ended (tracking's recovery).
PID = PREFIX + "pid"
PID_START = PREFIX + "pid_start"
ENDED_BY = PREFIX + "ended_by"
ERROR = PREFIX + "error"

# Models (registry).
RUN_ID = PREFIX + "run_id"  # a version's source run, in its lineage
FLAVOR = PREFIX + "flavor"
METRICS = PREFIX + "metrics"
AUDIT_PREFIX = PREFIX + "audit."
REPRODUCED = PREFIX + "reproduced"
REPRODUCES = PREFIX + "reproduces"
REPRODUCED_BY = PREFIX + "reproduced_by"

# Jobs (jobs.run).
JOB_KERNEL = PREFIX + "job.kernel"
JOB_FAILED_CELL = PREFIX + "job.failed_cell"
JOB_KEY = PREFIX + "job.key"
JOB_ATTEMPT = PREFIX + "job.attempt"
JOB_WORKER = PREFIX + "job.worker"
JOB_LOST = PREFIX + "job.lost"

# Sweeps and pipelines (jobs.batch).
SWEEP_SIZE = PREFIX + "sweep.size"
SWEEP_BEST_RUN_ID = PREFIX + "sweep.best_run_id"
PIPELINE_CACHE_KEY = PREFIX + "pipeline.cache_key"
PIPELINE_STEP = PREFIX + "pipeline.step"
PIPELINE_STEPS = PREFIX + "pipeline.steps"
PIPELINE_STATES = PREFIX + "pipeline.states"
PIPELINE_FILE = PREFIX + "pipeline.file"
PIPELINE_RUN_ID = PREFIX + "pipeline.run_id"

# Schedules (jobs.schedules).
SCHEDULE = PREFIX + "schedule"
SCHEDULE_JOB = PREFIX + "schedule.job"
SCHEDULE_TRIGGER = PREFIX + "schedule.trigger"
SCHEDULE_ATTEMPT = PREFIX + "schedule.attempt"

# Monitoring (mlops_nb.monitoring): runs whose mlops_nb.kind is "monitor" or "profile".
MONITOR_MODEL = PREFIX + "monitor.model"  # on a monitor run: the model's name
MONITOR_VERSION = PREFIX + "monitor.version"  # ...and the version it watched
MONITOR_ALIAS = PREFIX + "monitor.alias"  # ...and the alias it was asked for, if any
MONITOR_VERDICT = PREFIX + "monitor.verdict"  # healthy, drift, degraded, insufficient data
MONITOR_LAST = PREFIX + "monitor.last"  # on a model version: JSON summary of its newest monitor run
PROFILE = PREFIX + "profile"  # on a model version: the runs:/ URI of its reference profile (JSON)

# Approval (registry): protected aliases wait for a person.
APPROVAL_ALIASES = PREFIX + "approval.aliases"  # on a registered model: comma-separated protected aliases
APPROVAL_PENDING_PREFIX = PREFIX + "approval.pending."  # + alias, on a model version: JSON request
APPROVAL_PENDING = PREFIX + "approval.pending"  # on a registered model with any pending request: the index
