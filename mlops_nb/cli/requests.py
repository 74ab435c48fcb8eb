"""The ``mlops-nb requests`` command: the newest requests of the project's request log
(:mod:`mlops_nb.serving.requestlog`), as a table or as JSON lines."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, Any

from mlops_nb.cli.common import project_option, warn
from mlops_nb.config import resolve_config
from mlops_nb.tables import aligned_lines

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["add_parsers"]

#: How much of a request's inputs and outputs a table line shows.
SHOWN_CHARS = 40


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    requests = sub.add_parser(
        "requests",
        help="the newest requests the project's model servers answered: version, status, latency, labels",
    )
    requests.add_argument("name", nargs="?", metavar="NAME", help="only this model's requests")
    requests.add_argument("--since", metavar="S", help="from this time: ISO-8601 or a time ago (90s, 30m, 1h, 2d)")
    requests.add_argument("--until", metavar="S", help="up to this time: ISO-8601 or a time ago (90s, 30m, 1h, 2d)")
    requests.add_argument("-n", type=int, default=20, help="how many of the newest requests (default: 20)")
    requests.add_argument("--json", action="store_true", help="print one JSON object a request")
    project_option(requests)
    requests.set_defaults(func=_cmd_requests)


def _cmd_requests(args: argparse.Namespace) -> int:
    # The log's module (SQLAlchemy, pandas) loads when the command runs (start-up: see cli/main.py).
    from mlops_nb.serving.requestlog import log_url, read_log, shown_url

    url = log_url(resolve_config(args.project))
    frame = read_log(url, args.name, since=args.since, until=args.until, limit=args.n)
    if args.json:
        for record in _records(frame):
            print(json.dumps(record, default=str))
    elif frame.empty:
        which = f" for {args.name}" if args.name else ""
        when = " in that time" if args.since or args.until else ""
        warn(f"no requests logged{which}{when} in {shown_url(url)}")
    else:
        print("\n".join(_table(frame)))
    return 0


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-safe objects, times in ISO-8601 (UTC)."""
    out = []
    for row in frame.to_dict("records"):
        clean = {key: None if _missing(value) else value for key, value in row.items()}
        for key in ("time", "label_time"):
            stamp = clean[key]
            clean[key] = stamp.isoformat() if stamp is not None else None
        out.append(clean)
    return out


def _table(frame: pd.DataFrame) -> list[str]:
    header = ["time", "request_id", "model", "version", "status", "latency_ms", "label", "server", "inputs", "outputs"]
    rows = [
        [
            row.time.to_pydatetime().astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],  # local time
            row.request_id,
            row.model,
            row.version,
            row.status,
            f"{row.latency_ms:.1f}",
            "" if row.label is None else json.dumps(row.label, default=str),
            row.server,
            _short(row.inputs),
            _short(row.outputs),
        ]
        for row in frame.itertuples(index=False)
    ]
    return aligned_lines(header, rows)


def _short(text: object) -> str:
    if not isinstance(text, str):
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "NaT"
