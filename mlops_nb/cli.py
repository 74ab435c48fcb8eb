"""The ``mlops-nb`` command: the same core calls as the magics, for a terminal or CI.

Exit codes: 0 success, 1 an operation failed (store unreachable, ...), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .exceptions import MlopsError, NotFoundError, UsageError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlops-nb`` (sub-commands are added by later features)."""
    parser = argparse.ArgumentParser(
        prog="mlops-nb",
        description="Notebook-first MLOps on MLflow: list runs and inspect the project store.",
    )
    parser.add_argument("--version", action="version", version=f"mlops-nb {__version__}")
    parser.add_argument(
        "--project",
        metavar="DIR",
        default=None,
        help="a folder inside the project (default: the current folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    runs = sub.add_parser("runs", help="list the newest runs of the project store")
    runs.add_argument("--experiment", help="only this experiment (default: all)")
    runs.add_argument("-n", type=int, default=20, help="how many runs (default: 20)")
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    status = sub.add_parser("status", help="show the store and why it was chosen")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def _tracker(project: str | None):
    from .config import resolve_config
    from .provenance import NotebookLocation
    from .tracking import Tracker

    return Tracker(
        notebook=NotebookLocation(None, "none: the mlops-nb command"),
        config=resolve_config(project),
        fluent=False,
    )


def _cmd_runs(args: argparse.Namespace) -> int:
    from .tables import runs_table
    from .tracking import list_runs

    tracker = _tracker(args.project)
    rows, more = list_runs(tracker.client, [args.experiment] if args.experiment else None, args.n)
    if args.json:
        print(
            json.dumps(
                {
                    "store": tracker.config.tracking_uri,
                    "more": more,
                    "runs": [
                        {
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
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
    else:
        print(runs_table(rows, more, tracker.config.tracking_uri))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .tables import status_table

    status = _tracker(args.project).status()
    print(json.dumps(status, indent=2) if args.json else status_table(status))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlops-nb``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "n", 1) < 1:
            raise UsageError(f"-n must be at least 1, not {args.n}")
        return {"runs": _cmd_runs, "status": _cmd_status}[args.command](args)
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
