"""The ``mlops-nb approvals``, ``approve``, ``reject`` and ``protect`` commands: promotions
of protected aliases wait for a person (:mod:`mlops_nb.registry`'s approval flow).

Exit codes as the other commands: 0 done, 1 the operation could not be done (no such
request, model or version: the usage was fine), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops_nb.cli.common import project_option, warn
from mlops_nb.config import resolve_config
from mlops_nb.exceptions import NotFoundError
from mlops_nb.tables import aligned_lines

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from mlops_nb.config import ProjectConfig
    from mlops_nb.registry import PendingApproval

__all__ = ["add_parsers"]

#: How much of a request's evidence a table line shows.
SHOWN_CHARS = 60


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    approvals = sub.add_parser("approvals", help="promotions of protected aliases waiting for a person, with evidence")
    approvals.add_argument("name", nargs="?", metavar="NAME", help="only this model's requests")
    approvals.add_argument("--json", action="store_true", help="print the requests as JSON, with all their evidence")
    approvals.set_defaults(func=_cmd_approvals)
    approve = sub.add_parser("approve", help="approve a waiting promotion: the alias moves now")
    _request_arguments(approve)
    approve.add_argument("--reason", default="", help="why (recorded in the version's audit trail)")
    approve.set_defaults(func=_cmd_approve)
    reject = sub.add_parser("reject", help="reject a waiting promotion: nothing moves, the reason is recorded")
    _request_arguments(reject)
    reject.add_argument("--reason", required=True, help="why (recorded in the version's audit trail)")
    reject.set_defaults(func=_cmd_reject)
    protect = sub.add_parser(
        "protect",
        help="make promotions to a model's aliases wait for a person's approval (the model's own setting)",
    )
    protect.add_argument("name", metavar="NAME")
    protect.add_argument("aliases", nargs="*", metavar="ALIAS", help="aliases to protect (none: show the setting)")
    protect.add_argument("--off", action="store_true", help="lift the protection of these aliases (none: of all)")
    protect.add_argument("--json", action="store_true", help="print the protected aliases as JSON")
    protect.set_defaults(func=_cmd_protect)
    for command in (approvals, approve, reject, protect):
        project_option(command)


def _request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("version", metavar="VERSION")
    parser.add_argument("--alias", default="champion", help="the alias the request is for (default: champion)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _client(args: argparse.Namespace) -> tuple[ProjectConfig, MlflowClient]:
    """The project's config and store client, once the arguments are checked: bad usage is
    one line and exit 2 before MLflow (seconds) loads."""
    from mlops_nb.registry import check_alias, check_model_name, check_version
    from mlops_nb.store import get_client  # MLflow loads when a command runs (start-up: see cli/main.py)

    if getattr(args, "name", None) is not None:
        check_model_name(args.name)
    if getattr(args, "version", None) is not None:
        check_version(args.version)
    for alias in [getattr(args, "alias", None), *getattr(args, "aliases", [])]:
        if alias is not None:
            check_alias(alias)
    config = resolve_config(args.project)
    return config, get_client(config)


def _failed(call: Callable[[], int]) -> int:
    """``call()``; a missing request, model or version is one line and exit 1 (the
    operation failed, the usage was fine), as ``mlops-nb export`` does."""
    try:
        return call()
    except NotFoundError as exc:
        warn(f"error: {exc}")
        return 1


def _cmd_approvals(args: argparse.Namespace) -> int:
    from mlops_nb.registry import pending_approvals

    _, client = _client(args)

    def run() -> int:
        pending = pending_approvals(client, args.name)
        if args.json:
            print(json.dumps([p.to_dict() for p in pending], indent=1, default=str))
        elif not pending:
            which = f" for {args.name}" if args.name else ""
            warn(f"no promotions wait for approval{which}")
        else:
            print("\n".join(_table(pending)))
            first = pending[0]
            print(
                f"decide: mlops-nb approve {shlex.quote(first.name)} {first.version} --alias {first.alias} --reason TEXT"
            )
        return 0

    return _failed(run)


def _table(pending: list[PendingApproval]) -> list[str]:
    header = ["model", "version", "alias", "current", "requested by", "when", "evidence"]
    rows = [
        [
            p.name,
            f"v{p.version}",
            f"@{p.alias}",
            f"v{p.current_version}" if p.current_version else "-",
            p.requested_by,
            _local(p.requested_at),
            _short(p.summary),
        ]
        for p in pending
    ]
    return aligned_lines(header, rows)


def _local(stamp: str) -> str:
    """An ISO time in local time, to the minute; the text as it is when not one."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _cmd_approve(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mlops_nb.registry import approve

    _, client = _client(args)

    def run() -> int:
        result = approve(client, args.name, args.version, args.alias, reason=args.reason)
        if args.json:
            # A registration's request compared no metric: its candidate_value is NaN, which
            # strict JSON has no word for.
            data = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(result).items()}
            print(json.dumps(data))
        else:
            print(f"mlops-nb: {result.message}")
        return 0

    return _failed(run)


def _cmd_reject(args: argparse.Namespace) -> int:
    from mlops_nb.registry import reject

    _, client = _client(args)

    def run() -> int:
        request = reject(client, args.name, args.version, args.alias, reason=args.reason)
        if args.json:
            print(json.dumps({**request.to_dict(), "decision": "rejected", "reason": args.reason.strip()}))
        else:
            held = f"; @{request.alias} stays on v{request.current_version}" if request.current_version else ""
            print(f"mlops-nb: rejected {request.name} v{request.version} for @{request.alias}{held}")
        return 0

    return _failed(run)


def _cmd_protect(args: argparse.Namespace) -> int:
    from mlops_nb.registry import protected_aliases, set_protected_aliases

    config, client = _client(args)

    def run() -> int:
        own = protected_aliases(client, args.name)  # no project aliases: the model's own setting
        if args.off:
            own = own - set(args.aliases) if args.aliases else set()
        else:
            own = own | set(args.aliases)
        changed = bool(args.aliases) or args.off
        if changed:
            set_protected_aliases(client, args.name, sorted(own))
        _show_protection(args, config.approval_aliases, own, changed)
        return 0

    return _failed(run)


def _show_protection(args: argparse.Namespace, project: tuple[str, ...], own: set[str], changed: bool) -> None:
    data: dict[str, Any] = {"name": args.name, "model": sorted(own), "project": list(project)}
    data["protected"] = sorted(own | set(project))
    if args.json:
        print(json.dumps(data))
        return
    parts = [f"@{a} (model setting)" for a in sorted(own - set(project))]
    parts += [f"@{a} (project setting approval_aliases)" for a in project]
    what = ", ".join(parts) if parts else "no alias: promotions move at once"
    print(f"mlops-nb: {args.name}: {'now ' if changed else ''}protected: {what}")
