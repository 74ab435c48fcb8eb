"""The ``mlops-nb monitor`` and ``mlops-nb profile`` commands, over :mod:`mlops_nb.monitoring`.

``monitor`` exits 0 when the window is healthy or has too few rows to judge, 1 on drift
or degradation (so a CI step or a cron line can act on it), 2 on bad usage, including a
version with no reference profile: nothing was judged, which a caller that retrains on
exit 1 must not take for drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.cli.common import project_option, warn
from mlops_nb.config import ProjectConfig, resolve_config
from mlops_nb.exceptions import NotFoundError, UsageError, one_line
from mlops_nb.tables import aligned_lines

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mlops_nb.monitoring.monitor import MonitorResult

__all__ = ["add_parsers"]

#: Data files ``mlops-nb profile`` reads, by suffix.
DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
    mon = sub.add_parser(
        "monitor",
        help="check a served model's recent requests against its reference profile: drift, data quality, "
        "accuracy (exit 1 on drift or degradation)",
    )
    mon.add_argument(
        "model", metavar="MODEL", help="models:/NAME@ALIAS (the version it points at) or models:/NAME/VERSION"
    )
    mon.add_argument("--since", default="24h", metavar="S", help="window start: ISO-8601 or a time ago (default: 24h)")
    mon.add_argument("--until", metavar="S", help="window end: ISO-8601 or a time ago (default: now)")
    mon.add_argument(
        "--min-rows", type=int, default=100, metavar="N", help="fewer rows is 'insufficient data' (default: 100)"
    )
    mon.add_argument(
        "--drift-share",
        type=float,
        default=0.5,
        metavar="F",
        help="share of drifted features that is drift (default: 0.5)",
    )
    mon.add_argument(
        "--max-metric-drop",
        type=float,
        default=0.05,
        metavar="F",
        help="accuracy drop below the version's run metric that is degradation (default: 0.05)",
    )
    mon.add_argument("--json", action="store_true", help="print the verdict and each feature's result as JSON")
    mon.add_argument("--no-log", action="store_true", help="do not record a monitor run")
    mon.set_defaults(func=_cmd_monitor)
    prof = sub.add_parser(
        "profile", help="add or replace a model version's reference profile from a data file (csv or parquet)"
    )
    prof.add_argument("model", metavar="MODEL", help="models:/NAME/VERSION (or models:/NAME@ALIAS)")
    prof.add_argument(
        "--data", required=True, metavar="FILE", help="the training data, .csv or .parquet, inside the project"
    )
    prof.add_argument("--json", action="store_true", help="print the stored profile's summary as JSON")
    prof.set_defaults(func=_cmd_profile)
    for command in (mon, prof):
        project_option(command)


# ---------------------------------------------------------------- monitor


def _cmd_monitor(args: argparse.Namespace) -> int:
    # The core (MLflow, pandas, scipy) loads when the command runs (start-up: see cli/main.py).
    from mlops_nb.monitoring.monitor import MonitorPolicy, monitor
    from mlops_nb.store import get_client

    policy = MonitorPolicy(min_rows=args.min_rows, drift_share=args.drift_share, max_metric_drop=args.max_metric_drop)
    config = resolve_config(args.project)
    result = monitor(
        get_client(config), config, args.model, since=args.since, until=args.until, policy=policy, log=not args.no_log
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print("\n".join(monitor_lines(result)))
    return result.exit_code


def monitor_lines(result: MonitorResult) -> list[str]:
    """What ``mlops-nb monitor`` prints: the verdict line, the features (drifted first),
    notes, and where the report is."""
    from mlops_nb.monitoring.report import feature_rows, score_text, unseen_text

    alias = f" @{result.alias}" if result.alias else ""
    lines = [f"{result.name} v{result.version}{alias}: {result.verdict.upper()} — {result.reason}"]
    rows = feature_rows(result)
    if rows:
        header = [
            "feature",
            "kind",
            "method",
            "score",
            "threshold",
            "drifted",
            "psi",
            "missing",
            "out_of_range",
            "unseen",
        ]
        table = [
            [
                r["feature"],
                r["kind"],
                r["method"],
                score_text(r["score"]),
                score_text(r["threshold"]),
                "DRIFT" if r["drifted"] else "-",
                score_text(r["psi"]),
                f"{r['missing_reference']:.0%}->{r['missing_current']:.0%}",
                r["out_of_range"],
                unseen_text(r["unseen"], limit=3),
            ]
            for r in rows
        ]
        lines += ["", *aligned_lines(header, table)]
    if result.performance:
        perf = result.performance
        ref = perf.get("reference")
        versus = f" (training: {score_text(ref)})" if ref is not None else ""
        lines.append(f"\n{perf['metric']}: {score_text(perf['value'])} on {perf['rows']} labelled rows{versus}")
    lines += [f"note: {n}" for n in result.notes]
    if result.run_id:
        lines.append(f"report: {result.report_uri} (monitor run {result.run_id})")
    return lines


# ---------------------------------------------------------------- profile


def _cmd_profile(args: argparse.Namespace) -> int:
    from mlops_nb.monitoring.profiles import profile_summary, reference_profile, save_profile
    from mlops_nb.registry import get_version, parse_model_uri, resolve_alias
    from mlops_nb.store import get_client

    config = resolve_config(args.project)
    path = data_file(args.data, config)
    name, alias, number = parse_model_uri(args.model)
    client = get_client(config)
    mv = resolve_alias(client, name, alias) if alias else get_version(client, name, number or "")
    data = read_data(path)
    model, why = _load_pyfunc(client, mv)
    data = _model_columns(model, data)
    source = str(path.relative_to(config.project_root.resolve()))
    profile = reference_profile(model, data, source=source)
    uri = save_profile(client, name, str(mv.version), profile, config=config)
    if args.json:
        print(json.dumps({"name": name, "version": str(mv.version), "profile_uri": uri, **profile_summary(profile)}))
        return 0
    if profile.prediction is None:
        warn(f"the profile has no predictions: {why or 'the model gave no one-value-a-row answer on this data'}")
    print(
        f"mlops-nb: profile of {name} v{mv.version} from {source}: {profile.rows} rows, "
        f"{len(profile.features)} features{', predictions' if profile.prediction else ''}; stored at {uri}"
    )
    return 0


def data_file(given: str, config: ProjectConfig) -> Path:
    """The data file ``given`` (relative to the current folder) as an absolute path,
    refused (:class:`UsageError`) outside the project root or with an unknown suffix,
    :class:`NotFoundError` when missing."""
    path = Path(given).expanduser().absolute().resolve()
    root = config.project_root.resolve()
    if not path.is_relative_to(root):
        raise UsageError(f"{given} is outside the project {root}: copy the data into the project, or give --project")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise UsageError(f"{given} is not a .csv or .parquet file: write the training data as CSV or Parquet")
    if not path.is_file():
        raise NotFoundError(f"no data file {given} (looked in {path.parent})")
    return path


def read_data(path: Path) -> pd.DataFrame:
    """The table in ``path`` (CSV with a header row, or Parquet); ``UsageError`` when it
    cannot be read or has no rows."""
    import pandas as pd

    try:
        if DATA_SUFFIXES[path.suffix.lower()] == "csv":
            frame = pd.read_csv(path)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:
        raise UsageError(f"cannot read {path.name}: {one_line(exc, with_type=True)}") from None
    if frame.empty:
        raise UsageError(f"{path.name} has no rows: give the data the version was trained on")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _load_pyfunc(client: Any, mv: Any) -> tuple[Any, str | None]:
    """The version as a pyfunc model, or ``(None, why not)``."""
    try:
        import mlflow.pyfunc

        from mlops_nb.registry import model_files

        return mlflow.pyfunc.load_model(model_files(client, mv)), None
    except Exception as exc:  # the profile is still worth keeping without predictions
        return None, f"cannot load {mv.name} v{mv.version} ({one_line(exc)})"


def _model_columns(model: Any, data: pd.DataFrame) -> pd.DataFrame:
    """Only the model's input columns when its signature names them all (a training
    file often holds the target too); else the whole table."""
    try:
        names = model.metadata.get_input_schema().input_names()
    except Exception:
        return data
    names = [str(n) for n in names or []]
    if not names or not set(names) <= set(data.columns) or len(names) == len(data.columns):
        return data
    dropped = [c for c in data.columns if c not in names]
    print(
        f"mlops-nb: profiling the model's {len(names)} input columns; left out: {', '.join(dropped)}", file=sys.stderr
    )
    return data[names]
