"""The ``mlops-nb pipeline`` commands: ``run`` and ``show``, over :mod:`mlops_nb.jobs.batch.pipeline`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlops_nb.cli.common import cluster, executor_option, project_option, signals_handled
from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.jobs.run.params import parse_assignments

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    pipeline = sub.add_parser("pipeline", help="run notebooks chained in a pipeline file, reusing unchanged steps")
    commands = pipeline.add_subparsers(dest="pipeline_command", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser(
        "run", help="run the pipeline: changed steps run (in parallel where independent), unchanged ones are reused"
    )
    run.add_argument("file", metavar="FILE", help="the pipeline file (YAML)")
    run.add_argument(
        "-p",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable)",
    )
    run.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STEP",
        help="run STEP again even if cached, and so every step after it (repeatable)",
    )
    run.add_argument("--workers", type=int, default=2, help="steps at a time (default: 2)")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object (quiet)")
    executor_option(run)
    run.set_defaults(func=_cmd_run)
    show = commands.add_parser("show", help="the steps, what each needs, and whether each is cached, stale or failed")
    show.add_argument("file", metavar="FILE", help="the pipeline file (YAML)")
    show.add_argument(
        "-p",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter, as for run (repeatable)",
    )
    show.add_argument("--json", action="store_true", help="print the steps as one JSON object")
    show.set_defaults(func=_cmd_show)
    for command in (pipeline, run, show):
        project_option(command)


def _config(args: argparse.Namespace) -> ProjectConfig:
    return resolve_config(args.project if args.project else Path(args.file).resolve().parent)


def _cmd_run(args: argparse.Namespace) -> int:
    # The pipeline modules load when a pipeline command runs (start-up: see cli/main.py).
    from mlops_nb.jobs.batch.pipeline import load_pipeline, pipeline_table, run_pipeline

    texts = parse_assignments(args.param)
    load_pipeline(args.file, texts)  # bad input: one line and exit 2 before the store is touched

    def report(line: str) -> None:
        print(line, flush=True)

    config = _config(args)
    executor = cluster(args.executor, config)
    try:
        with signals_handled():  # running jobs end KILLED, the pipeline run too
            result = run_pipeline(
                args.file,
                params=texts,
                force=args.force,
                workers=args.workers,
                config=config,
                report=None if args.json else report,
                executor=executor,
            )
    finally:
        if executor is not None:
            executor.close()
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print()
        print(pipeline_table(result))
        if result.error:
            print(f"mlops-nb: {result.error}", file=sys.stderr)
    return 0 if result.ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    from mlops_nb.jobs.batch.pipeline import load_pipeline, pipeline_status, status_table

    texts = parse_assignments(args.param)
    pipeline = load_pipeline(args.file, texts)
    states = pipeline_status(args.file, params=texts, config=_config(args))
    if args.json:
        print(
            json.dumps({"pipeline": pipeline.name, "file": str(pipeline.path), "steps": [s.to_dict() for s in states]})
        )
    else:
        print(status_table(pipeline.name, states))
    return 0
