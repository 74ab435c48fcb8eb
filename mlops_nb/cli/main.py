"""The ``mlops-nb`` command: the same core calls as the magics, for a terminal or CI.

Exit codes: 0 success, 1 an operation failed (store unreachable, ...), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.cli import approval as cli_approval
from mlops_nb.cli import export as cli_export
from mlops_nb.cli import monitor as cli_monitor
from mlops_nb.cli import pipeline as cli_pipeline
from mlops_nb.cli import requests as cli_requests
from mlops_nb.cli import schedule as cli_schedule
from mlops_nb.cli import serve as cli_serve
from mlops_nb.cli.common import (
    PROJECT_HELP,
    cluster,
    executor_option,
    job_config,
    project_option,
    signals_handled,
    warn,
)
from mlops_nb.config import ProjectConfig, executor_name, resolve_config
from mlops_nb.exceptions import MlopsError, NotFoundError, UsageError
from mlops_nb.jobs.run import agent
from mlops_nb.jobs.run.params import load_params_file, parse_assignments
from mlops_nb.jobs.run.spec import JobResult, notebook_path
from mlops_nb.version import __version__

# A command imports the core it needs when it runs, not at start-up: `mlops-nb run`
# handing its job to the project's agent is a measured figure (README: Figures), and the
# modules behind the other commands (tracking, the registry, the executors, sweeps,
# reproduce) would add about 0.3 s to it. import-linter still sees these imports.
if TYPE_CHECKING:
    from mlops_nb.runs import RunRow
    from mlops_nb.tracking import Tracker

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlops-nb`` (sub-commands are added by later features)."""
    parser = argparse.ArgumentParser(
        prog="mlops-nb",
        description="Notebook-first MLOps on MLflow: list runs and inspect the project store.",
    )
    parser.add_argument("--version", action="version", version=f"mlops-nb {__version__}")
    parser.add_argument("--project", metavar="DIR", default=None, help=PROJECT_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands = _add_store_parsers(sub)
    commands += _add_job_parsers(sub)
    # Pipelines and schedules keep their options beside their commands.
    cli_pipeline.add_parsers(sub)
    cli_schedule.add_parsers(sub)
    # Serving: serve and servers, export, requests (the request log).
    cli_serve.add_parsers(sub)
    cli_export.add_parsers(sub)
    cli_requests.add_parsers(sub)
    cli_monitor.add_parsers(sub)
    cli_approval.add_parsers(sub)
    commands += _add_project_parsers(sub)
    for command in commands:
        project_option(command)
    return parser


def _add_store_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """``runs`` and ``status``."""
    runs = sub.add_parser("runs", help="list the newest runs of the project store")
    runs.add_argument("--experiment", help="only this experiment (default: all)")
    runs.add_argument("-n", type=int, default=20, help="how many runs (default: 20)")
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    status = sub.add_parser("status", help="show the store, why it was chosen and whether it answers (exit 1 when not)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return [runs, status]


def _add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """``run``, ``sweep`` and ``reproduce``."""
    run = sub.add_parser("run", help="run a notebook headless (papermill) as one MLflow run")
    _job_options(
        run,
        "NAME=VALUE",
        "a parameter, converted to the type its parameters cell declares (repeatable)",
        "parameters from a YAML file",
        "the whole job's time limit",
    )
    run.add_argument("--output", metavar="PATH", help="where to write the executed notebook")
    run.add_argument("--junit", metavar="PATH", help="write a JUnit XML report")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object (quiet)")
    sweep = sub.add_parser("sweep", help="run a grid of parameters in parallel, as child runs of one run")
    _job_options(
        sweep,
        "NAME=V1,V2,...",
        "a parameter's values, comma-separated (repeatable: the grid is their product)",
        "parameters from YAML (lists are grids)",
        "each job's time limit",
    )
    sweep.add_argument("--workers", type=int, default=2, help="jobs at a time (default: 2)")
    sweep.add_argument("--metric", help="sort the results by this metric and name the best run")
    sweep.add_argument("--lower-is-better", action="store_true", help="for --metric: lower values win")
    sweep.add_argument("--junit", metavar="PATH", help="write a JUnit XML report (a test case a job)")
    sweep.add_argument("--json", action="store_true", help="print the result as one JSON object")
    repro = sub.add_parser(
        "reproduce", help="re-run the notebook behind a run or model version and compare its metrics"
    )
    repro.add_argument("target", metavar="RUN_ID|models:/NAME@ALIAS")
    repro.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default: 1e-6)")
    repro.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default: 0)")
    repro.add_argument("--timeout", metavar="SECONDS", help="the re-run's time limit")
    repro.add_argument("--kernel", metavar="NAME", help="the kernel (default: the original run's)")
    repro.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    return [run, sweep, repro]


def _add_project_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """``agent`` and ``relocate``."""
    agent = sub.add_parser("agent", help="the project's job agent: keeps MLflow loaded and a kernel warm for `run`")
    agent.add_argument("action", choices=["start", "stop", "status"])
    agent.add_argument("--json", action="store_true", help="print the agent's state as JSON")
    relocate = sub.add_parser(
        "relocate",
        help="point the embedded store's artifact locations under folder OLD at NEW (artifacts moved outside the project)",
    )
    relocate.add_argument("old", metavar="OLD_FOLDER")
    relocate.add_argument("new", metavar="NEW_FOLDER")
    return [agent, relocate]


def _job_options(
    parser: argparse.ArgumentParser, metavar: str, param_help: str, file_help: str, timeout_help: str
) -> None:
    """The options `run` and `sweep` share."""
    parser.add_argument("notebook", metavar="NOTEBOOK")
    parser.add_argument("-p", dest="param", action="append", default=[], metavar=metavar, help=param_help)
    parser.add_argument("-f", dest="params_file", metavar="PARAMS.yaml", help=file_help)
    parser.add_argument("--experiment", help="the experiment (default: the project's, else the notebook's name)")
    parser.add_argument("--timeout", metavar="SECONDS", help=timeout_help)
    parser.add_argument("--cell-timeout", metavar="SECONDS", help="each cell's time limit")
    parser.add_argument("--kernel", metavar="NAME", help="the kernel (default: the notebook's)")
    executor_option(parser)


def _tracker(project: str | None) -> Tracker:
    from mlops_nb.provenance import NotebookLocation
    from mlops_nb.tracking import Tracker

    return Tracker(
        notebook=NotebookLocation(None, "none: the mlops-nb command"),
        config=resolve_config(project),
        fluent=False,
    )


def _run_dict(r: RunRow) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "name": r.name,
        "experiment": r.experiment,
        "status": r.status,
        "start_time": r.start_time.isoformat() if r.start_time else None,
        "duration_s": r.duration_s,
        "notebook": r.notebook,
        "params": r.params,
        "metrics": r.metrics,
    }


def _cmd_runs(args: argparse.Namespace) -> int:
    from mlops_nb.runs import list_runs
    from mlops_nb.tables import runs_table

    tracker = _tracker(args.project)
    rows, more = list_runs(tracker.client, [args.experiment] if args.experiment else None, args.n)
    if args.json:
        store = tracker.config.tracking_uri
        print(json.dumps({"store": store, "more": more, "runs": [_run_dict(r) for r in rows]}, indent=2))
    else:
        print(runs_table(rows, more, tracker.config.tracking_uri))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from mlops_nb.tables import status_table

    status = _tracker(args.project).status()
    print(json.dumps(status, indent=2) if args.json else status_table(status))
    return 1 if status.get("store_reachable") is False else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mlops_nb.jobs.run.junit import write_junit

    texts = parse_assignments(args.param)
    values = load_params_file(args.params_file) if args.params_file else {}
    clash = sorted(set(texts) & set(values))
    if clash:
        raise UsageError(f"{', '.join(clash)} given both with -p and in {args.params_file}: give each once")
    path = notebook_path(args.notebook)
    config = resolve_config(args.project if args.project else path.parent)
    where = executor_name(args.executor, config)
    mode = agent.agent_mode() if where == "local" else "off"
    progress = not args.json and sys.stderr.isatty()
    with signals_handled():
        result = None
        if mode != "off" and _json_safe(values):
            result = _run_on_agent(args, config, path, texts, values, progress)
        on_agent = result is not None
        if result is None:
            result = _run_on_executor(args, config, where, path, texts, values, progress)
    if not on_agent and mode == "auto" and not _in_ci():
        try:
            agent.spawn_agent(config.project_root)  # the next job skips the imports and the kernel start
        except (OSError, MlopsError):
            pass
    if args.junit:
        write_junit([result], args.junit)
    _show_result(result, args.json)
    return 0 if result.ok else 1


def _run_on_agent(
    args: argparse.Namespace,
    config: ProjectConfig,
    path: Path,
    texts: dict[str, str],
    values: dict[str, Any],
    progress: bool,
) -> JobResult | None:
    """The job run by the project's agent; ``None`` when no agent took it."""
    job = {
        "notebook": str(path),
        "params": values,
        "texts": texts,
        "experiment": args.experiment,
        "timeout": args.timeout,
        "cell_timeout": args.cell_timeout,
        "kernel": args.kernel,
        "output": str(Path(args.output).resolve()) if args.output else None,
    }
    done = agent.run_via_agent(config, job, sys.stderr if progress else None, sys.stderr)
    if done is None:
        return None
    return JobResult(**{f.name: done[f.name] for f in fields(JobResult)})


def _run_on_executor(
    args: argparse.Namespace,
    config: ProjectConfig,
    where: str,
    path: Path,
    texts: dict[str, str],
    values: dict[str, Any],
    progress: bool,
) -> JobResult:
    """The job run by the executor ``where`` names, from this process."""
    from mlops_nb.jobs.run.executors import executor_for
    from mlops_nb.jobs.run.spec import job_spec

    spec = job_spec(
        path,
        values,
        texts=texts,
        experiment=args.experiment,
        timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        kernel=args.kernel,
        output=args.output,
        config=config,
    )
    with executor_for(where, config, pool_size=0, progress=progress, report=warn) as executor:
        return executor.run(spec)


def _show_result(result: JobResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        return
    print(f"mlops-nb: {result.status} in {result.duration_s:.1f} s: run {result.run_id} ({result.experiment})")
    if result.error:
        print(f"mlops-nb: {result.error}", file=sys.stderr)
    if result.output:
        print(f"executed notebook: {result.output}")


def _json_safe(values: dict[str, Any]) -> bool:
    try:
        json.dumps(values)
    except (TypeError, ValueError):
        return False  # a YAML date, say: the job runs in this process
    return True


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _cmd_agent(args: argparse.Namespace) -> int:
    root = resolve_config(args.project).project_root
    info: agent.AgentInfo | None
    if args.action == "start":
        info = agent.start_agent(root)
        message = f"job agent {info.pid} running for {root}; it stops after {info.idle_timeout_s:g} s without a job"
    elif args.action == "stop":
        info = agent.stop_agent(root)
        message = f"job agent {info.pid} stopped" if info else f"no job agent runs for {root}"
    else:
        info = agent.agent_status(root)
        message = (
            f"job agent {info.pid} running for {root}: {info.jobs_running} job(s) running, {info.jobs_done} done"
            if info
            else f"no job agent runs for {root}"
        )
    if args.json:
        print(json.dumps({"project_root": str(root), "agent": asdict(info) if info else None}))
    else:
        print(f"mlops-nb: {message}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mlops_nb.jobs.batch.sweep import sweep, sweep_table
    from mlops_nb.jobs.run.junit import write_junit

    texts = parse_assignments(args.param)
    values = load_params_file(args.params_file) if args.params_file else {}
    config = job_config(args, args.notebook)
    executor = cluster(args.executor, config)
    try:
        with signals_handled():
            result = sweep(
                args.notebook,
                texts,
                values,
                workers=args.workers,
                metric=args.metric,
                lower_is_better=args.lower_is_better,
                experiment=args.experiment,
                timeout=args.timeout,
                cell_timeout=args.cell_timeout,
                kernel=args.kernel,
                config=config,
                executor=executor,
            )
    finally:
        if executor is not None:
            executor.close()
    if args.junit:
        write_junit(result.jobs, args.junit, suite=f"sweep {result.notebook}")
    print(json.dumps(result.to_dict(), default=str) if args.json else sweep_table(result))
    return 0 if result.ok else 1


def _skip_slow_optional_imports() -> None:
    """jsonschema (imported by nbformat, so by papermill) imports ``rfc3987_syntax`` when
    installed (jupyter-events pulls it in) and builds a grammar with it at import: about
    2 s of the command's start, for IRI format checks nbformat never uses. This command
    process does without them; kernels and Jupyter are unaffected."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from mlops_nb.jobs.run.reproduce import reproduce, reproduction_table

    result = reproduce(
        args.target,
        rtol=args.rtol,
        atol=args.atol,
        config=resolve_config(args.project),
        timeout=args.timeout,
        kernel=args.kernel,
    )
    print(json.dumps(result.to_dict(), default=str) if args.json else reproduction_table(result))
    return 0 if result.reproduced else 1


def _cmd_relocate(args: argparse.Namespace) -> int:
    from mlops_nb.store import relocate_artifacts

    old, new = (str(Path(p).expanduser().absolute()) for p in (args.old, args.new))
    if not Path(new).is_dir():
        raise UsageError(f"{new} is not a folder: give the folder the artifacts were moved to")
    changed = relocate_artifacts(resolve_config(args.project), old, new)
    print(f"{changed} artifact location(s) moved from {old} to {new}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlops-nb``; return the exit code.

    When the reader of stdout goes away (``mlops-nb runs --json | head -c 400``) the
    command ends quietly with exit code 141, as a command killed by SIGPIPE does in a
    shell (128 + 13): Python's recipe (the ``signal`` module's note on SIGPIPE) of
    pointing stdout at devnull, so that the flush at exit does not fail again.
    """
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a small output is written here, not at exit, so a closed pipe fails in this try
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass  # stdout is not a file (a test's capture): nothing is left to flush at exit
        return 141


def _main(argv: Sequence[str] | None) -> int:
    _skip_slow_optional_imports()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "n", 1) < 1:
            raise UsageError(f"-n must be at least 1, not {args.n}")
        if getattr(args, "func", None) is not None:
            return args.func(args)
        return {
            "runs": _cmd_runs,
            "status": _cmd_status,
            "run": _cmd_run,
            "sweep": _cmd_sweep,
            "reproduce": _cmd_reproduce,
            "agent": _cmd_agent,
            "relocate": _cmd_relocate,
        }[args.command](args)
    except (UsageError, NotFoundError) as exc:
        print(f"mlops-nb: error: {exc}", file=sys.stderr)
        return 2
    except MlopsError as exc:
        print(f"mlops-nb: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
