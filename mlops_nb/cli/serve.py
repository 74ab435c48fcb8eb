"""The ``mlops-nb serve`` and ``mlops-nb servers`` commands, over :mod:`mlops_nb.serving`."""

from __future__ import annotations

import argparse
import json
import sys

from mlops_nb.cli.common import project_option
from mlops_nb.config import resolve_config
from mlops_nb.exceptions import UsageError

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    serve = sub.add_parser(
        "serve",
        help="serve a model over HTTP with MLflow's scoring protocol, following its alias (swaps live)",
    )
    serve.add_argument(
        "model",
        metavar="MODEL",
        help="models:/NAME@ALIAS (follows the alias), or pinned: models:/NAME/VERSION, runs:/RUN_ID/PATH, a model folder",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to bind (default: 127.0.0.1)")
    # Numbers are read as text and checked by the core: a bad one is one line, exit 2.
    serve.add_argument("--port", metavar="PORT", help="the port (default: 5000)")
    serve.add_argument("--token", help="require Authorization: Bearer TOKEN (default: $MLOPS_NB_SERVE_TOKEN)")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve a non-local address without a token (anyone who reaches it)"
    )
    serve.add_argument("--poll", metavar="SECONDS", help="how often the registry is read for alias moves (default: 5)")
    serve.add_argument("--workers", metavar="N", help="worker processes (default: 1)")
    serve.add_argument(
        "--max-batch-size", metavar="N", help="group up to N concurrent requests into one predict (default: 1, off)"
    )
    serve.add_argument("--max-wait-ms", metavar="MS", help="how long a request waits for a batch (default: 5)")
    serve.add_argument("--sample", metavar="FRACTION", help="log this fraction of requests (default: 1)")
    serve.add_argument("--no-log", action="store_true", help="keep no request log")
    serve.add_argument("--max-body-mb", metavar="MB", help="the largest request body accepted (default: 16)")
    serve.set_defaults(func=_cmd_serve)
    servers = sub.add_parser("servers", help="list the project's model servers, or stop one (servers stop ID|PORT)")
    servers.add_argument("action", nargs="?", choices=["stop"], help="stop a server")
    servers.add_argument("target", nargs="?", metavar="ID|PORT", help="the server to stop")
    servers.add_argument("--json", action="store_true", help="print as JSON")
    servers.set_defaults(func=_cmd_servers)
    for command in (serve, servers):
        project_option(command)


def _cmd_serve(args: argparse.Namespace) -> int:
    # Bad options are refused before the server's modules (MLflow, FastAPI: seconds) load.
    from mlops_nb.serving.options import serve_options

    options = serve_options(
        args.model,
        host=args.host,
        port=args.port,
        token=args.token,
        no_auth=args.no_auth,
        poll=args.poll,
        workers=args.workers,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        sample=args.sample,
        log=not args.no_log,
        max_body_mb=args.max_body_mb,
    )
    config = resolve_config(args.project)
    from mlops_nb.serving.server import serve

    return serve(options, config)


def _cmd_servers(args: argparse.Namespace) -> int:
    from mlops_nb.serving.announce import list_servers, stop_server

    config = resolve_config(args.project)
    if args.action == "stop":
        if not args.target:
            raise UsageError("say which server to stop: mlops-nb servers stop ID|PORT (see mlops-nb servers)")
        stopped = stop_server(config, args.target)
        if args.json:
            print(json.dumps(stopped))
        else:
            print(f"mlops-nb: stopped {stopped['id']} ({stopped['model']}, pid {stopped['pid']})")
        return 0
    if args.target:
        raise UsageError(f"unexpected {args.target!r}: mlops-nb servers [--json] or mlops-nb servers stop ID|PORT")
    servers = list_servers(config)
    if args.json:
        print(json.dumps(servers, indent=1))
        return 0
    if not servers:
        print(f"no model servers run for {config.project_root}", file=sys.stderr)
        return 0
    rows = [("ID", "URL", "MODEL", "VERSION", "PID")]
    rows += [
        (str(s["id"]), str(s.get("url")), str(s.get("model")), str(s.get("version")), str(s.get("pid")))
        for s in servers
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
