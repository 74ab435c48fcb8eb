"""The ``mlops-nb schedule`` commands and ``mlops-nb scheduler``.

``schedule add|list|pause|resume|remove|run-now|history`` edit and read the project's
schedule database; ``scheduler`` runs due jobs until SIGTERM or Ctrl-C. ``schedule add
NAME --cron EXPR --monitor models:/NAME@ALIAS [--on-drift PIPELINE]`` adds a schedule
that monitors a served model and retrains it on drift. Each handler
returns the exit code: 0 done, 1 a job failed, 2 bad usage (raised as UsageError and
mapped by ``mlops_nb.cli.main.main``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops_nb.cli.common import project_option, signals_handled
from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.run.params import parse_assignments
from mlops_nb.jobs.schedules.store import MONITOR, MONITOR_TRIGGER, JobRecord, Schedule, ScheduleStore, verdict_of
from mlops_nb.tables import aligned_lines

__all__ = ["add_parsers"]


class _IntermixedParser(argparse.ArgumentParser):
    """A verb's parser that takes positionals anywhere among the options.

    ``schedule add NAME --cron EXPR NOTEBOOK`` puts the notebook after the options, and
    the notebook is optional (``--monitor MODEL`` instead): argparse's own parsing gives
    an optional positional only to the first run of positionals and rejects the later
    one. Its intermixed parsing takes them all; the guard keeps Python 3.11's version of
    it, which calls ``parse_known_args`` itself, from recursing.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schedule ...`` and ``scheduler``; each sets ``func`` (args -> exit code)."""
    schedule = sub.add_parser("schedule", help="run a notebook or pipeline on a cron schedule")
    verbs = schedule.add_subparsers(dest="verb", metavar="VERB", parser_class=_IntermixedParser)
    verbs.required = True
    _add_add_parser(verbs)
    _add_verb_parsers(verbs)
    run = _add_scheduler_parser(sub)
    for command in (schedule, *verbs.choices.values(), run):
        project_option(command)


def _add_add_parser(verbs: argparse._SubParsersAction[_IntermixedParser]) -> None:
    """``schedule add``: everything a schedule holds."""
    add = verbs.add_parser("add", help="add a schedule (everything is checked first)")
    add.add_argument("name", metavar="NAME", help="a short slug: lower-case letters, digits, - and _")
    add.add_argument(
        "target",
        nargs="?",
        metavar="NOTEBOOK|PIPELINE",
        help="a notebook (.ipynb) or pipeline (.yaml) of the project (not with --monitor)",
    )
    add.add_argument(
        "--cron", required=True, metavar="EXPR", help='five cron fields, e.g. "0 2 * * *" (or @daily, @hourly)'
    )
    add.add_argument(
        "--timezone", default="UTC", metavar="TZ", help="the IANA time zone of the cron expression (default: UTC)"
    )
    add.add_argument(
        "-p",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter, checked against the target now (repeatable)",
    )
    add.add_argument(
        "--missed",
        choices=["skip", "once"],
        default="skip",
        help="occurrences missed while no scheduler ran: skip them, or run once (default: skip)",
    )
    add.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="retries of a failure that may pass: kernel died, timeout, scheduler stopped (default: 2)",
    )
    add.add_argument("--timeout", metavar="SECONDS", help="the whole job's time limit")
    add.add_argument(
        "--webhook", metavar="URL", help="POST the outcome here (JSON) when a job fails or a monitor finds drift"
    )
    add.add_argument("--notify-success", action="store_true", help="call the webhook on success too")
    add.add_argument("--json", action="store_true", help="print the schedule as JSON")
    _add_monitor_options(add)
    add.set_defaults(func=_cmd_add)


def _add_monitor_options(add: argparse.ArgumentParser) -> None:
    """``schedule add --monitor``: watch a served model, retrain on drift."""
    watch = add.add_argument_group("monitoring a served model (instead of NOTEBOOK|PIPELINE)")
    watch.add_argument(
        "--monitor", metavar="MODEL", help="check models:/NAME@ALIAS (or models:/NAME/VERSION) at each occurrence"
    )
    watch.add_argument(
        "--on-drift",
        metavar="PIPELINE|NOTEBOOK",
        help="run this pipeline or notebook of the project on drift or degradation (-p goes to it)",
    )
    watch.add_argument("--since", metavar="DURATION", help="the request-log window each check reads (default: 24h)")
    watch.add_argument(
        "--min-rows", metavar="N", help="fewer rows in the window is 'insufficient data', never an alarm (default: 100)"
    )
    watch.add_argument(
        "--cooldown", metavar="DURATION", help="the least time between two retrains (default: 6h; 0 for none)"
    )
    watch.add_argument("--max-retrains", metavar="N", help="at most this many retrains in 24 hours (default: 2)")


def _add_verb_parsers(verbs: argparse._SubParsersAction[_IntermixedParser]) -> None:
    """``schedule list|pause|resume|remove|run-now|history``."""
    lst = verbs.add_parser("list", help="list the schedules with their next run")
    lst.add_argument("--json", action="store_true", help="print the schedules as JSON")
    lst.set_defaults(func=_cmd_list)

    for verb, what in (
        ("pause", "stop firing a schedule"),
        ("resume", "fire a paused schedule again from its next occurrence"),
    ):
        p = verbs.add_parser(verb, help=what)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print the schedule as JSON")
        p.set_defaults(func=_cmd_pause if verb == "pause" else _cmd_resume)

    rm = verbs.add_parser("remove", help="remove a schedule and its job history (its MLflow runs stay)")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(func=_cmd_remove)

    now = verbs.add_parser("run-now", help="run a schedule's job now, in this process, and wait for it")
    now.add_argument("name", metavar="NAME")
    now.add_argument("--json", action="store_true", help="print the job record as JSON")
    now.set_defaults(func=_cmd_run_now)

    hist = verbs.add_parser("history", help="a schedule's jobs, newest first")
    hist.add_argument("name", metavar="NAME")
    hist.add_argument("-n", type=int, default=20, help="how many jobs (default: 20)")
    hist.add_argument("--json", action="store_true", help="print the job records as JSON")
    hist.set_defaults(func=_cmd_history)


def _add_scheduler_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """``scheduler``: runs due jobs until stopped."""
    run = sub.add_parser("scheduler", help="run due scheduled jobs until SIGTERM or Ctrl-C")
    run.add_argument("--max-running", type=int, default=2, metavar="N", help="jobs at once (default: 2)")
    run.add_argument("--tick", type=float, default=0.5, metavar="SECONDS", help="seconds between checks (default: 0.5)")
    run.add_argument(
        "--lease",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a dead scheduler's job on another host stays claimed (default: 60)",
    )
    run.add_argument(
        "--retry-backoff",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait before a first retry, doubling after (default: 30)",
    )
    run.add_argument("--name", help="a label for this scheduler in job records")
    run.set_defaults(func=_cmd_scheduler)
    return run


# ---------------------------------------------------------------- helpers


def _open(args: argparse.Namespace) -> tuple[ProjectConfig, ScheduleStore]:
    config = resolve_config(args.project)
    return config, ScheduleStore.for_project(config)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(aligned_lines(header, rows))


def _schedule_line(s: Schedule) -> str:
    state = "paused" if s.paused else f"next run {_when(s.next_run)}"
    what = f"{s.kind} {s.target}"
    if s.monitor is not None:
        what = f"monitors {s.target} ({s.monitor.describe()})"
    return f"mlops-nb: schedule {s.name}: {what} at {s.cron!r} ({s.timezone}); {state}"


def _target_cell(s: Schedule) -> str:
    """A schedule's target in the list: a monitor's model, and what it runs on drift."""
    if s.monitor is None:
        return s.target
    return f"{s.target} -> {s.monitor.on_drift}" if s.monitor.on_drift else s.target


def _last_cell(store: ScheduleStore, s: Schedule) -> str:
    """A schedule's last state; a monitor's last verdict where its last check gave one."""
    if s.kind == MONITOR:
        for record in store.history(s.name, limit=20):
            if record.trigger != MONITOR_TRIGGER and record.done:
                return verdict_of(record.output) or record.state
    return s.last_state or "-"


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- commands


def _project_path(config: ProjectConfig, text: str) -> Path:
    """A file typed relative to where the user stands, relative to the project root
    when inside it (the store names it so in its messages)."""
    path = Path(os.path.abspath(text))
    return path.relative_to(config.project_root) if path.is_relative_to(config.project_root) else path


def _count(text: str | None, option: str, default: int) -> int:
    if text is None:
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise UsageError(f"{option} must be a whole number, not {text!r}") from None


def _cmd_add(args: argparse.Namespace) -> int:
    texts = parse_assignments(args.param)
    watch = {"--on-drift": args.on_drift, "--since": args.since, "--min-rows": args.min_rows}
    retrain = {"--cooldown": args.cooldown, "--max-retrains": args.max_retrains}
    if args.monitor is None:
        given = [option for option, value in {**watch, **retrain}.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} goes with --monitor MODEL: give --monitor, or leave {given[0]} out")
        if args.target is None:
            raise UsageError("give a NOTEBOOK or PIPELINE to run, or --monitor models:/NAME@ALIAS to watch a model")
    elif args.target is not None:
        raise UsageError(
            f"give either {args.target} or --monitor {args.monitor}, not both: "
            "a monitor schedule runs its --on-drift pipeline or notebook when the model drifts"
        )
    elif args.on_drift is None and (texts or any(v is not None for v in retrain.values())):
        option = "-p" if texts else next(o for o, v in retrain.items() if v is not None)
        raise UsageError(f"{option} applies to the retraining: give --on-drift PIPELINE|NOTEBOOK too")
    config, store = _open(args)
    common = {
        "timezone": args.timezone,
        "params": texts,
        "missed": args.missed,
        "retries": args.retries,
        "timeout_s": args.timeout,
        "webhook": args.webhook,
        "notify_success": args.notify_success,
    }
    if args.monitor is None:
        assert args.target is not None  # refused above
        schedule = store.add(args.name, args.cron, _project_path(config, args.target), **common)
    else:
        schedule = store.add_monitor(
            args.name,
            args.cron,
            args.monitor,
            on_drift=_project_path(config, args.on_drift) if args.on_drift is not None else None,
            since=args.since if args.since is not None else "24h",
            min_rows=_count(args.min_rows, "--min-rows", 100),
            cooldown=args.cooldown if args.cooldown is not None else "6h",
            max_retrains=_count(args.max_retrains, "--max-retrains", 2),
            **common,
        )
    if args.json:
        _print(schedule.to_dict())
    else:
        print(_schedule_line(schedule))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    _, store = _open(args)
    schedules = store.list()
    if args.json:
        _print({"schedules": [s.to_dict() for s in schedules]})
        return 0
    if not schedules:
        print("mlops-nb: no schedules (add one with mlops-nb schedule add NAME --cron EXPR NOTEBOOK)")
        return 0
    rows = [
        [s.name, s.cron, s.timezone, _target_cell(s), "paused" if s.paused else _when(s.next_run), _last_cell(store, s)]
        for s in schedules
    ]
    print(_table(["NAME", "CRON", "TIME ZONE", "TARGET", "NEXT RUN", "LAST"], rows))
    return 0


def _cmd_pause(args: argparse.Namespace) -> int:
    _, store = _open(args)
    schedule = store.pause(args.name)
    _print(schedule.to_dict()) if args.json else print(_schedule_line(schedule))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    _, store = _open(args)
    schedule = store.resume(args.name)
    _print(schedule.to_dict()) if args.json else print(_schedule_line(schedule))
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    _, store = _open(args)
    store.remove(args.name)
    print(f"mlops-nb: schedule {args.name} removed")
    return 0


def _job_line(r: JobRecord) -> str:
    took = f" in {(r.finished - r.started).total_seconds():.1f} s" if r.started and r.finished else ""
    run = f", run {r.run_id}" if r.run_id else ""
    return f"mlops-nb: job {r.id} of {r.schedule} (attempt {r.attempt}) {r.state}{took}{run}"


def _cmd_run_now(args: argparse.Namespace) -> int:
    # The scheduler (and the pipelines and jobs it runs) loads when a command needs it:
    # start-up, see cli/main.py.
    from mlops_nb.jobs.schedules.scheduler import run_now

    config, store = _open(args)
    quiet = args.json
    with signals_handled():  # the job's kernel is shut down and its run ends KILLED
        record = run_now(
            store,
            config,
            args.name,
            wait=True,
            report=None if quiet else (lambda line: print(f"mlops-nb: {line}", file=sys.stderr)),
        )
    # A monitor's retrain ran in this process too, after the monitor's own record.
    retrains = [r for r in store.history(args.name, limit=20) if r.trigger == MONITOR_TRIGGER and r.id > record.id][
        ::-1
    ]
    if args.json:
        _print({**record.to_dict(), "retrains": [r.to_dict() for r in retrains]} if retrains else record.to_dict())
    else:
        for r in (record, *retrains):
            print(_job_line(r))
            if r.error:
                print(f"mlops-nb: {r.error}", file=sys.stderr)
            if r.output:
                print(f"mlops-nb: {r.output}" if verdict_of(r.output) else f"executed notebook: {r.output}")
    return 0 if all(r.state == "succeeded" for r in (record, *retrains)) else 1


def _cmd_history(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError(f"-n must be at least 1, not {args.n}")
    _, store = _open(args)
    records: list[JobRecord] = store.history(args.name, limit=args.n)
    monitor = store.get(args.name).kind == MONITOR
    if args.json:
        _print({"schedule": args.name, "jobs": [r.to_dict() for r in records]})
        return 0
    if not records:
        print(f"mlops-nb: schedule {args.name} has run no jobs yet")
        return 0
    rows = [
        [
            str(r.id),
            _when(r.occurrence),
            r.trigger,
            str(r.attempt),
            r.state,
            f"{(r.finished - r.started).total_seconds():.1f} s" if r.started and r.finished else "-",
            r.run_id or "-",
            (r.error or (r.output if monitor else "") or "")[: 120 if monitor else 80],
        ]
        for r in records
    ]
    # A monitor's jobs say their verdict and what it decided (or why they failed).
    last = "RESULT" if monitor else "ERROR"
    print(_table(["JOB", "OCCURRENCE", "TRIGGER", "ATTEMPT", "STATE", "TOOK", "RUN", last], rows))
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from mlops_nb.jobs.schedules.scheduler import Scheduler

    if args.max_running < 1:
        raise UsageError(f"--max-running must be at least 1, not {args.max_running}")
    for option, value in (("--tick", args.tick), ("--lease", args.lease)):
        if not value > 0:
            raise UsageError(f"{option} must be more than 0 seconds, not {value}")
    if args.retry_backoff < 0:
        raise UsageError(f"--retry-backoff must be 0 or more seconds, not {args.retry_backoff}")
    config, store = _open(args)

    def say(line: str) -> None:
        print(f"mlops-nb scheduler: {line}", file=sys.stderr, flush=True)

    scheduler = Scheduler(
        store,
        config,
        max_running=args.max_running,
        tick_s=args.tick,
        name=args.name,
        lease_s=args.lease,
        retry_backoff_s=args.retry_backoff,
        report=say,
    )
    stop = threading.Event()
    # Running jobs are stopped, marked interrupted and retried by the next scheduler.
    with signals_handled(stop.set, (signal.SIGTERM, signal.SIGINT)):
        say(
            f"{scheduler.owner} running {len(store.list())} schedule(s) from {store.url} "
            f"(up to {args.max_running} at once)"
        )
        scheduler.run_forever(stop)
    say("stopped")
    return 0
