"""The ``mlops-nb export`` command, over :mod:`mlops_nb.serving.export`."""

from __future__ import annotations

import argparse

from mlops_nb.cli.common import project_option, warn
from mlops_nb.config import resolve_config
from mlops_nb.exceptions import NotFoundError

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    export = sub.add_parser(
        "export",
        help="write a model version as an installable package: the model, pinned requirements, "
        "a predict function and command, a Dockerfile that serves it",
    )
    export.add_argument("model", metavar="MODEL", help="models:/NAME@ALIAS (resolved once) or models:/NAME/VERSION")
    export.add_argument("dir", metavar="DIR", help="a new or empty folder to write the package into")
    export.add_argument("--force", action="store_true", help="replace what DIR holds")
    project_option(export)
    export.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    # The export's core loads when the command runs (start-up: see cli/main.py).
    from mlops_nb.registry import parse_model_uri
    from mlops_nb.serving.export import check_target, export_model
    from mlops_nb.store import get_client

    parse_model_uri(args.model)  # bad usage: one line and exit 2 before the store is touched (or made)
    check_target(args.dir, args.force)
    client = get_client(resolve_config(args.project))
    try:
        result = export_model(client, args.model, args.dir, force=args.force)
    except NotFoundError as exc:
        # No such model, version or alias: the operation failed (exit 1), the usage was fine.
        warn(f"error: {exc}")
        return 1
    for line in result.skipped:
        warn(f"not carried over from the model's requirements.txt (a pip option): {line}")
    print(f"mlops-nb: {result.summary}")
    return 0
