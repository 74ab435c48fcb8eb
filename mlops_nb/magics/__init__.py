"""The ``%mlops`` line and cell magics: parse a line, call the core, show the result.

Every sub-command calls the same :class:`mlops_nb.tracking.Tracker` as the Python API
and the CLI. Errors a user can cause surface as IPython's one-line ``UsageError`` (no
traceback); errors inside tracking are one warning line and never break the cell.

A ``%%mlops track`` cell runs as a plain cell with a run around it: an input transform
turns its first line into the call that starts the run, and ``post_run_cell`` ends it.
So the user's code runs in IPython's own frame for the cell, and a failure shows the
traceback a plain cell shows (``Cell In[N], line L``, the user's frames only), its
last expression is displayed, and ``await`` works at the top level.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from datetime import datetime
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class

from mlops_nb.exceptions import MlopsError, PromotionRefusedError, one_line
from mlops_nb.magics import warmup
from mlops_nb.provenance import locate_notebook
from mlops_nb.registry import (
    PendingApproval,
    approve,
    parse_model_uri,
    pending_approvals,
    promote,
    reject,
    remove_alias,
    set_alias,
)
from mlops_nb.runs import RunRow, read_run
from mlops_nb.serving.announce import list_servers, start_server, stop_server
from mlops_nb.serving.source import check_reference
from mlops_nb.tables import Table, aligned_lines, status_table
from mlops_nb.tags import NOTEBOOK_SAVED
from mlops_nb.tracking import (
    FAILED,
    FINISHED,
    KILLED,
    RunHandle,
    Tracker,
    current_tracker,
    set_tracker,
    ui_hint,
)

__all__ = [
    "HELP",
    "MlopsMagics",
    "approvals_table",
    "load",
    "run_summary",
    "servers_table",
    "unload",
]

HELP = """\
%mlops: experiment tracking from notebook cells (MLflow underneath)

  %mlops track [--experiment NAME] [--run-name NAME] [--no-autolog]
        start the run for this notebook session (ends the previous one); logs the
        values of the cell tagged 'parameters' as params; scikit-learn autologging on
  %%mlops track [--name NAME] [--experiment NAME] [--no-autolog] [--no-chart]
        (first line of a cell) a new run for this cell each time it runs, nested
        under the notebook run; an error ends it FAILED, Ctrl-C ends it KILLED;
        metrics it logs are drawn live under the cell
  %mlops log NAME [NAME ...]
        log kernel variables: numbers as metrics, strings/booleans/None as params
  %mlops end                      end the notebook run (buffered metrics are written)
  %mlops status                   the store, whether it answers now, why it was chosen,
                                  what is captured
  %mlops runs [--experiment NAME] [-n N]
                                  the newest runs (default: all experiments, 20)
  %mlops capture on|off           capture notebook code with runs, or not
  %mlops register VAR --name NAME [--alias ALIAS] [--input-example VAR] [--description TEXT]
        [--reference VAR]   log the model in VAR under the current run (or a new one)
        and register a version carrying the run's lineage; prints how to load it; stores
        the reference profile monitoring compares with, from --reference (the training
        data, e.g. X_train), else from the input example
  %mlops alias NAME@ALIAS VERSION | %mlops alias NAME@ALIAS --remove
  %mlops promote NAME --metric M [--from challenger] [--to champion] [--min-delta D]
        [--lower-is-better]   move --to only when the --from version beats it on M; a
        protected alias (the project's approval_aliases) waits for %mlops approve
  %mlops approvals [NAME]         promotions waiting for a person, with their evidence
  %mlops approve NAME VERSION [--alias champion] [--reason TEXT]
  %mlops reject NAME VERSION [--alias champion] --reason TEXT
        decide on a waiting promotion (the audit trail records who and why)
  %mlops monitor models:/NAME@ALIAS [--since 24h] [--min-rows N]
        check the served version's recent requests against its reference profile:
        the verdict, drift per feature with both histograms, past verdicts, accuracy
        where labels were fed back; logged as a monitor run
  %mlops load models:/NAME@ALIAS [--as VAR]   load a model version into the kernel
  %mlops run NOTEBOOK [-p NAME=VALUE ...] [--experiment NAME] [--timeout S] [--cell-timeout S]
        [--kernel NAME] [--output PATH] [--wait]   run a notebook headless as a job (its
        own kernel and MLflow run) in the background, with a status widget and Stop
        button; --wait blocks and returns the result
  %mlops models [NAME]            registered models, or one model's versions
  %mlops serve models:/NAME@ALIAS [--port P]
        serve the model over HTTP (MLflow's scoring protocol) from a process of its
        own that follows the alias and outlives the kernel; shows its URL, traffic,
        latency and how to call it; a server already serving the model is reused
  %mlops serve                    the project's model servers
  %mlops serve --stop [ID|PORT]   stop the project's server (give its id or port when
                                  several run)
  %mlops help                     this text

From Python: import mlops_nb as mnb; mnb.track(); mnb.log_metric("loss", v, step=i)
Leave a cell out of every snapshot: tag it mlops:no-capture (or start it with
'# mlops:no-capture').
"""


#: The line magic a tracked cell's first line becomes (see :func:`tracked_cell_lines`).
BEGIN_CELL = "track-cell"
_TRACK_LINE = re.compile(r"%%mlops[ \t]+track(?=\s|$)")


def tracked_cell_lines(lines: list[str]) -> list[str]:
    """IPython input transform: ``%%mlops track ARGS`` as a cell's first line becomes
    ``get_ipython().run_line_magic('mlops', 'track-cell ARGS')``; the other lines are left
    as they are, so the cell keeps its line numbers and runs as a plain cell."""
    if not lines or not _TRACK_LINE.match(lines[0]):
        return lines
    args = lines[0].strip()[len("%%mlops") :].strip()[len("track") :].strip()
    call = f"{BEGIN_CELL} {args}".strip()
    return [f"get_ipython().run_line_magic('mlops', {call!r})\n", *lines[1:]]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def run_summary(row: RunRow, ui: str) -> str:
    """The line that closes a tracked cell: the run, how it ended, how long it took and
    where to see it; then its metrics' last values (``name = value``), which is where a
    value logged once belongs (the live chart draws series only)."""
    took = ""
    if row.duration_s is not None:
        took = (" in " if row.status == FINISHED else " after ") + _duration(row.duration_s)
    line = f"mlops-nb: run {row.run_id} ({row.name}) ended {row.status}{took} · see it: %mlops runs, or {ui}"
    values = " · ".join(f"{k} = {v:.4g}" for k, v in sorted(row.metrics.items()))
    return line + (f"\n  {values}" if values else "")


def _started(iso: Any) -> str:
    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(iso or "")


def servers_table(servers: list[dict[str, Any]]) -> Table:
    """The project's model servers (their announcements) as a table."""
    rows = [
        [
            str(s.get("id", "")),
            str(s.get("url", "")),
            str(s.get("model", "")),
            f"v{s['version']}" if s.get("version") else "",
            _started(s.get("started")),
            str(s.get("pid", "")),
        ]
        for s in servers
    ]
    return Table(
        ["id", "url", "model", "version", "started", "pid"],
        rows,
        title="model servers of this project",
        footer="see one: %mlops serve MODEL · stop one: %mlops serve --stop ID",
    )


def approvals_table(pending: list[PendingApproval]) -> Table:
    """Promotions waiting for a person (:func:`mlops_nb.registry.pending_approvals`), with
    their evidence and the two lines that decide on them."""
    rows = [
        [
            p.name,
            f"v{p.version}",
            f"@{p.alias}",
            f"v{p.current_version}" if p.current_version else "—",
            str(p.requested_by or ""),
            _started(p.requested_at),
            p.summary,
        ]
        for p in pending
    ]
    first = pending[0]
    name = shlex.quote(first.name)
    return Table(
        ["model", "candidate", "alias", "holder now", "requested by", "requested", "evidence"],
        rows,
        title="promotions waiting for approval",
        footer=(
            f"decide: %mlops approve {name} {first.version} --alias {first.alias} --reason TEXT"
            f" · %mlops reject {name} {first.version} --alias {first.alias} --reason TEXT"
        ),
    )


def _status_of(error: BaseException | None) -> str:
    if error is None:
        return FINISHED
    return KILLED if isinstance(error, KeyboardInterrupt) else FAILED


class _ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ParseError(f"{message}\n{self.format_usage().strip()}\nSee %mlops help.")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _ParseError(message or self.format_usage())


def _port(text: str) -> int:
    """argparse type of ``--port``: a TCP port number."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535, e.g. --port 5000")
    return int(text)


def _min_rows(text: str) -> int:
    """argparse type of ``--min-rows``: a count of rows, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows: give 1 or more, e.g. --min-rows 100")
    return int(text)


def _add_monitor_parsers(sub: Any) -> None:
    """``monitor``, ``approvals``, ``approve`` and ``reject``: watching a served model and
    deciding on the promotions that wait for a person."""
    monitor = sub.add_parser("monitor", add_help=False)
    monitor.add_argument("uri", metavar="models:/NAME@ALIAS")
    monitor.add_argument("--since", default="24h")
    monitor.add_argument("--min-rows", type=_min_rows, metavar="N")
    approvals = sub.add_parser("approvals", add_help=False)
    approvals.add_argument("name", nargs="?", metavar="NAME")
    for verb in ("approve", "reject"):
        decide = sub.add_parser(verb, add_help=False)
        decide.add_argument("name", metavar="NAME")
        decide.add_argument("version", metavar="VERSION")
        decide.add_argument("--alias", default="champion")
        # A rejection must say why: the person who asked reads it in the audit trail.
        decide.add_argument("--reason", required=verb == "reject", default="", metavar="TEXT")


def _build_parser(cell: bool) -> _Parser:
    parser = _Parser(prog="%%mlops" if cell else "%mlops", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True
    track = sub.add_parser("track", add_help=False)
    track.add_argument("--experiment")
    track.add_argument("--no-autolog", action="store_true")
    if cell:
        track.add_argument("--name")
        track.add_argument("--no-chart", action="store_true")
    else:
        track.add_argument("--run-name")
        log = sub.add_parser("log", add_help=False)
        log.add_argument("names", nargs="+", metavar="NAME")
        sub.add_parser("end", add_help=False)
        sub.add_parser("status", add_help=False)
        runs = sub.add_parser("runs", add_help=False)
        runs.add_argument("--experiment")
        runs.add_argument("-n", type=int, default=20)
        capture = sub.add_parser("capture", add_help=False)
        capture.add_argument("state", choices=["on", "off"])
        register = sub.add_parser("register", add_help=False)
        register.add_argument("var", metavar="VAR")
        register.add_argument("--name", required=True)
        register.add_argument("--alias")
        register.add_argument("--input-example", metavar="VAR")
        register.add_argument("--description")
        register.add_argument("--reference", metavar="VAR")
        alias = sub.add_parser("alias", add_help=False)
        alias.add_argument("target", metavar="NAME@ALIAS")
        alias.add_argument("version", nargs="?", metavar="VERSION")
        alias.add_argument("--remove", action="store_true")
        promote = sub.add_parser("promote", add_help=False)
        promote.add_argument("name", metavar="NAME")
        promote.add_argument("--from", dest="from_alias", default="challenger")
        promote.add_argument("--to", dest="to_alias", default="champion")
        promote.add_argument("--metric", required=True)
        promote.add_argument("--min-delta", type=float, default=0.0)
        promote.add_argument("--lower-is-better", action="store_true")
        _add_monitor_parsers(sub)
        load = sub.add_parser("load", add_help=False)
        load.add_argument("uri", metavar="models:/NAME@ALIAS")
        load.add_argument("--as", dest="var", metavar="VAR")
        run = sub.add_parser("run", add_help=False)
        run.add_argument("notebook", metavar="NOTEBOOK")
        run.add_argument("-p", dest="param", action="append", default=[], metavar="NAME=VALUE")
        run.add_argument("--experiment")
        run.add_argument("--timeout")
        run.add_argument("--cell-timeout")
        run.add_argument("--kernel")
        run.add_argument("--output")
        run.add_argument("--wait", action="store_true")
        models = sub.add_parser("models", add_help=False)
        models.add_argument("name", nargs="?", metavar="NAME")
        serve = sub.add_parser("serve", add_help=False)
        serve.add_argument("model", nargs="?", metavar="models:/NAME@ALIAS")
        serve.add_argument("--port", type=_port, metavar="P")
        serve.add_argument("--stop", nargs="?", const="", metavar="ID|PORT")
        sub.add_parser("help", add_help=False)
    return parser


@magics_class
class MlopsMagics(Magics):
    """``%mlops`` / ``%%mlops``; holds the kernel's tracker and its cell hooks."""

    shell: InteractiveShell  # set by Magics.__init__: the magics are made for a shell

    def __init__(self, shell: Any, tracker: Tracker) -> None:
        super().__init__(shell)
        self.tracker = tracker
        self._line_parser = _build_parser(cell=False)
        self._cell_parser = _build_parser(cell=True)
        self._cell_info: Any = None
        #: Runs of tracked cells started in the running cell: ended by post_run_cell.
        self._open_cells: list[tuple[RunHandle | None, Any]] = []

    # -- hooks -----------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        self._cell_info = info
        # The user's code never imports while the background import runs (see warmup).
        warmup.wait(lambda message: print(message, flush=True))

    def _start_warmup(self, result: Any) -> None:
        """post_run_cell, once: the cell that loaded the extension has ended."""
        try:
            self.shell.events.unregister("post_run_cell", self._start_warmup)
        except ValueError:
            pass
        self._start_import()

    def post_run_cell(self, result: Any) -> None:
        self._end_open_cells(result)
        try:
            info = result.info
            failed = result.error_before_exec is not None or result.error_in_exec is not None
            self.tracker.record_cell(
                result.execution_count,
                getattr(info, "raw_cell", "") or "",
                getattr(info, "cell_id", None),
                failed=failed,
            )
        except Exception as exc:  # a hook must never break the user's next cell
            self.tracker.report(f"warning: could not record the cell: {exc}")

    # -- the magic ---------------------------------------------------------

    @line_cell_magic
    def mlops(self, line: str, cell: str | None = None) -> Any:
        """Experiment tracking; ``%mlops help`` lists the sub-commands."""
        if cell is None and line.split()[:1] == [BEGIN_CELL]:
            return self._begin_cell(line.strip()[len(BEGIN_CELL) :])
        parser = self._cell_parser if cell is not None else self._line_parser
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise IPythonUsageError(f"cannot parse {line!r}: {exc}; close the quotes.\nSee %mlops help.") from None
        try:
            args = parser.parse_args(words)
        except _ParseError as exc:
            if cell is not None and line.split()[:1] != ["track"]:
                raise IPythonUsageError(
                    "%%mlops on a cell takes 'track' only, e.g. %%mlops track --name fit\nSee %mlops help."
                ) from None
            raise IPythonUsageError(str(exc)) from None
        if args.command != "help":
            self._await_mlflow()
        self._warn_stale_models()
        if cell is not None:
            return self._track_cell(args, cell)
        try:
            return getattr(self, f"_cmd_{args.command}")(args)
        except PromotionRefusedError as exc:
            # A refusal is an answer, not an error: a notebook that promotes only when
            # the candidate is better must go on running when it is not.
            print(f"mlops-nb: {exc}")
            return None
        except MlopsError as exc:
            raise IPythonUsageError(str(exc)) from None

    def _await_mlflow(self) -> None:
        """Before a command that needs MLflow: wait for its import (started now if the
        cell that loaded the extension is still running), saying so if it takes a while."""
        self._start_import()
        warmup.wait(lambda message: print(message, flush=True))

    def _start_import(self) -> None:
        # Not in a job: MLflow's fluent state is per thread, and the hooks that hand the
        # job's run to the notebook's own mlflow calls run where mlflow is imported
        # (mlops_nb.fluent). A headless job has nobody to keep waiting anyway.
        if self.tracker.job is None:
            warmup.start()

    def _execution_count(self) -> int:
        """The running cell's number as the notebook shows it (``In[N]``).

        ``shell.execution_count`` is already the next cell's number while a cell runs
        (IPython 9 counts up before executing); the result IPython fills for the running
        cell holds the right one.
        """
        result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        count = getattr(result, "execution_count", None)
        return count if count is not None else self.shell.execution_count

    def _warn_stale_models(self) -> None:
        try:
            for warning in self.tracker.stale_models():
                self.tracker.report(warning)
        except Exception:  # never let the check break a command
            pass

    def _cmd_help(self, args: argparse.Namespace) -> None:
        print(HELP)

    def _cmd_track(self, args: argparse.Namespace) -> None:
        handle = self.tracker.start_notebook_run(
            args.experiment, args.run_name, autolog=not args.no_autolog, namespace=self.shell.user_ns
        )
        logged = f", params {', '.join(sorted(handle.params))}" if handle.params else ""
        print(
            f"mlops-nb: tracking run {handle.run_id} ({handle.name}) in experiment {handle.experiment_name!r}{logged}"
        )
        if handle.notebook_tags.get(NOTEBOOK_SAVED) == "false" and self.tracker.capture:
            print(
                f"mlops-nb: {handle.notebook_tags.get('mlops_nb.notebook')} was never saved: save it, "
                "and the run keeps a snapshot of it when it ends"
            )

    def _cmd_end(self, args: argparse.Namespace) -> None:
        handle = self.tracker.session
        if handle is None:
            print("mlops-nb: no notebook run is active")
            return
        self.tracker.end_run(handle, FINISHED)
        print(f"mlops-nb: ended run {handle.run_id}")

    def _cmd_log(self, args: argparse.Namespace) -> None:
        ns = self.shell.user_ns
        missing = [n for n in args.names if n not in ns]
        if missing:
            raise MlopsError(f"no variable named {missing[0]!r} in the kernel; define it or check the spelling")
        metrics, params = self.tracker.log_values({n: ns[n] for n in args.names})
        run = self.tracker.active
        parts = []
        if metrics:
            parts.append(f"metrics {', '.join(metrics)}")
        if params:
            parts.append(f"params {', '.join(params)}")
        print(f"mlops-nb: logged {' and '.join(parts)} to run {run.run_id if run else '?'}")

    def _cmd_status(self, args: argparse.Namespace) -> Any:
        return status_table(self.tracker.status())

    def _cmd_runs(self, args: argparse.Namespace) -> Any:
        from mlops_nb.widgets.runs import runs_browser  # ipywidgets: see _live_chart

        return runs_browser(self.tracker.client, args.experiment, args.n)

    def _cmd_capture(self, args: argparse.Namespace) -> None:
        self.tracker.capture_override = args.state == "on"
        print(f"mlops-nb: code capture is {args.state}: {self.tracker.status()['captured']}")

    def _variable(self, name: str) -> Any:
        if not name.isidentifier() or name not in self.shell.user_ns:
            raise MlopsError(f"no variable named {name!r} in the kernel; define it or check the spelling")
        return self.shell.user_ns[name]

    def _cmd_register(self, args: argparse.Namespace) -> None:
        # Every variable is looked up before anything is registered: a misspelt name is
        # this cell's one-line error, not a version without the profile it was meant to have.
        model = self._variable(args.var)
        example = self._variable(args.input_example) if args.input_example else None
        reference = self._variable(args.reference) if args.reference else None
        version = self.tracker.register_model(model, args.name, args.alias, example, args.description)
        alias = f" as @{version.aliases[0]}" if version.aliases else ""
        print(f"mlops-nb: registered {version.name} v{version.version}{alias} ({version.flavor}, run {version.run_id})")
        print(f"  load it with: {version.load_hint}")
        if version.pending:
            print(f"  {version.message}")
        if reference is None and example is None:
            return
        source = args.reference or args.input_example
        try:
            # Imported here: profiles need numpy and pandas, which %load_ext does not pay for.
            from mlops_nb.monitoring.profiles import store_profile

            tracker = self.tracker
            profile = store_profile(
                tracker.client, version.name, version.version, model, reference, example, source=source,
                config=tracker.config,
            )  # fmt: skip
        except MlopsError as exc:  # the version is registered: a missing profile never fails the cell
            print(f"  {exc}")
            return
        print(f"  reference profile: {profile.rows} rows x {len(profile.features)} features, from {source}")

    def _cmd_alias(self, args: argparse.Namespace) -> None:
        name, _, alias = args.target.partition("@")
        if not alias:
            raise MlopsError(f"{args.target!r} names no alias: use NAME@ALIAS, e.g. wine@champion")
        client = self.tracker.client
        if args.remove:
            if args.version:
                raise MlopsError("give either a VERSION or --remove, not both")
            version = remove_alias(client, name, alias, why="%mlops alias --remove")
            print(f"mlops-nb: removed @{alias} from {name} (it pointed at v{version})")
            return
        if not args.version:
            raise MlopsError(f"give the version @{alias} should point at, e.g. %mlops alias {name}@{alias} 3")
        previous = set_alias(client, name, alias, args.version, why="%mlops alias")
        moved = f" (was v{previous})" if previous and previous != args.version else ""
        print(f"mlops-nb: {name}@{alias} -> v{int(args.version)}{moved}")

    def _cmd_promote(self, args: argparse.Namespace) -> None:
        client, config = self.tracker.client, self.tracker.config
        result = promote(
            client,
            args.name,
            args.metric,
            args.from_alias,
            args.to_alias,
            args.min_delta,
            args.lower_is_better,
            approval=config.approval_aliases,
        )
        # A protected alias does not move: the message says the promotion waits for a
        # person (result.pending) and how to decide; the cell goes on either way.
        print(f"mlops-nb: {result.message}")

    def _cmd_approvals(self, args: argparse.Namespace) -> Table | None:
        pending = pending_approvals(self.tracker.client, args.name)
        if not pending:
            of = f" of {args.name}" if args.name else ""
            print(f"mlops-nb: no promotion{of} is waiting for approval")
            return None
        return approvals_table(pending)

    def _cmd_approve(self, args: argparse.Namespace) -> None:
        result = approve(self.tracker.client, args.name, args.version, args.alias, reason=args.reason)
        print(f"mlops-nb: {result.message}")

    def _cmd_reject(self, args: argparse.Namespace) -> None:
        request = reject(self.tracker.client, args.name, args.version, args.alias, reason=args.reason)
        stays = f"@{request.alias} stays on v{request.current_version}" if request.current_version else "nothing moved"
        print(f"mlops-nb: rejected {request.name} v{request.version} for @{request.alias} ({args.reason}); {stays}")

    def _cmd_monitor(self, args: argparse.Namespace) -> Any:
        # Imported here: the monitor needs numpy and pandas, the widget ipywidgets and
        # bqplot (see _live_chart); %load_ext pays for none of them.
        from mlops_nb.monitoring.monitor import MonitorPolicy, monitor, monitor_history
        from mlops_nb.widgets.monitor import MonitorView

        client = self.tracker.client
        policy = MonitorPolicy(min_rows=args.min_rows) if args.min_rows is not None else None
        result = monitor(client, self.tracker.config, args.uri, since=args.since, policy=policy)
        try:
            history = monitor_history(client, result.name)
        except Exception as exc:  # the verdict is in: past runs that cannot be read are a note, not an error
            self.tracker.report(f"warning: past monitor runs of {result.name} could not be read ({one_line(exc)})")
            history = []
        return MonitorView(result, history)

    def _cmd_load(self, args: argparse.Namespace) -> None:
        name, alias, _version = parse_model_uri(args.uri)
        var = args.var or re.sub(r"\W", "_", name)
        if not var.isidentifier():
            var = f"model_{var}"
        model, mv = self.tracker.load_model(args.uri)
        self.shell.user_ns[var] = model
        via = f"@{alias} -> " if alias else ""
        print(f"mlops-nb: loaded {name} {via}v{mv.version} into {var} ({type(model).__name__})")

    def _cmd_run(self, args: argparse.Namespace) -> Any:
        import threading

        from mlops_nb.config import resolve_config
        from mlops_nb.jobs.run.executors import executor_for
        from mlops_nb.jobs.run.params import parse_assignments
        from mlops_nb.jobs.run.spec import job_spec, notebook_path
        from mlops_nb.widgets.job import JobStatus

        path = notebook_path(args.notebook)
        config = resolve_config(path.parent)
        # Checked here, once, so a mistake is this cell's one-line error, not a failed job.
        spec = job_spec(
            path,
            texts=parse_assignments(args.param),
            config=config,
            experiment=args.experiment,
            timeout=args.timeout,
            cell_timeout=args.cell_timeout,
            kernel=args.kernel,
            output=args.output,
        )
        executor = executor_for(None, config, pool_size=0)  # the project's `executor` setting
        if args.wait:
            with executor:
                return executor.run(spec)
        stop = threading.Event()
        future = executor.submit(spec, stop=stop)
        # Closed off the job's own thread, once the job has ended.
        future.add_done_callback(lambda _: threading.Thread(target=executor.close, daemon=True).start())
        return JobStatus(str(path), future, stop)

    def _cmd_models(self, args: argparse.Namespace) -> Any:
        from mlops_nb.widgets.models import RegistryBrowser  # ipywidgets: see _live_chart

        return RegistryBrowser(self.tracker.client, args.name)

    def _cmd_serve(self, args: argparse.Namespace) -> Any:
        config = self.tracker.config
        if args.stop is not None:
            if args.model or args.port:
                raise MlopsError("give either a model to serve or --stop, not both; see %mlops help")
            return self._stop_server(config, args.stop)
        if not args.model:
            if args.port:
                raise MlopsError("--port needs a model to serve: %mlops serve models:/NAME@ALIAS --port P")
            servers = list_servers(config)
            if not servers:
                print(
                    "mlops-nb: no model server of this project is running; start one: %mlops serve models:/NAME@ALIAS"
                )
                return None
            return servers_table(servers)
        args.model = check_reference(self.tracker.client, args.model)
        running = [
            s
            for s in list_servers(config)
            if s.get("model") == args.model and s.get("alive", True) and args.port in (None, s.get("port"))
        ]
        if running:
            server = running[0]
            print(f"mlops-nb: {args.model} is already served at {server['url']} (server {server['id']}): showing it")
        else:
            server = start_server(config, args.model, port=args.port)
            print(
                f"mlops-nb: serving {args.model} v{server.get('version')} at {server['url']} (server {server['id']}); "
                "it runs on after a kernel restart: stop it with %mlops serve --stop"
            )
        return self._serve_status(server)

    def _stop_server(self, config: Any, which: str) -> None:
        """Stop the server ``which`` (an id or port); with none given, the project's only one."""
        if not which:
            servers = list_servers(config)
            if not servers:
                print("mlops-nb: no model server of this project is running")
                return
            if len(servers) > 1:
                lines = aligned_lines(
                    ["id", "url", "model"], [[s["id"], s["url"], s.get("model", "")] for s in servers]
                )
                listed = "\n".join(f"  {line}" for line in lines)
                raise MlopsError(
                    f"{len(servers)} model servers of this project are running: say which, e.g. "
                    f"%mlops serve --stop {servers[0]['id']}\n{listed}"
                )
            which = servers[0]["id"]
        stopped = stop_server(config, which)
        print(f"mlops-nb: stopped server {stopped['id']} at {stopped['url']} ({stopped.get('model')})")

    def _serve_status(self, server: dict[str, Any]) -> Any:
        from mlops_nb.widgets.serve import ServeStatus, serving_example  # ipywidgets: see _live_chart

        example = serving_example(self.tracker.client, str(server.get("model", "")), server.get("version"))
        return ServeStatus(server, self.tracker.config, example=example)

    # -- tracked cells -----------------------------------------------------

    def _begin_cell(self, rest: str) -> None:
        """The first line of a ``%%mlops track`` cell: start its run (ended by post_run_cell)."""
        try:
            args = self._cell_parser.parse_args(["track", *shlex.split(rest)])
        except ValueError as exc:
            raise IPythonUsageError(
                f"cannot parse {rest.strip()!r}: {exc}; close the quotes.\nSee %mlops help."
            ) from None
        except _ParseError as exc:
            raise IPythonUsageError(str(exc)) from None
        self._await_mlflow()
        self._warn_stale_models()
        self._open_cells.append(self._start_cell(args, getattr(self._cell_info, "raw_cell", None) or ""))

    def _end_open_cells(self, result: Any) -> None:
        """End the runs of the tracked cells that just ran, by how the cell ended."""
        error = getattr(result, "error_in_exec", None)
        status = _status_of(error)
        while self._open_cells:
            handle, detach = self._open_cells.pop()
            try:
                # After IPython's traceback, if any: the one line saying how the run ended.
                self._end_cell_run(handle, status, error, detach)
            except Exception as exc:  # a hook must never break the user's next cell
                self.tracker.report(f"warning: could not end the cell's run: {exc}")

    def _start_cell(self, args: argparse.Namespace, raw: str) -> tuple[RunHandle | None, Any]:
        """Start a tracked cell's run and its live chart; (None, None) when it runs untracked."""
        tracker = self.tracker
        try:
            handle = tracker.start_cell_run(
                args.name,
                raw,
                self._execution_count(),
                autolog=False if args.no_autolog else None,
                experiment=args.experiment,
                cell_id=getattr(self._cell_info, "cell_id", None),
            )
        except MlopsError as exc:
            tracker.report(f"warning: {exc}; the cell runs untracked")
            return None, None
        return handle, self._live_chart(handle) if not args.no_chart else None

    def _track_cell(self, args: argparse.Namespace, cell: str) -> Any:
        """``run_cell_magic('mlops', 'track ...', body)`` called directly (a notebook cell
        takes the input transform instead): run the body here, as the cell's code."""
        __tracebackhide__ = True
        raw = getattr(self._cell_info, "raw_cell", None) or f"%%mlops track\n{cell}"
        handle, detach = self._start_cell(args, raw)
        try:
            value = self._execute(cell)
        except BaseException as exc:
            self._end_cell_run(handle, _status_of(exc), exc, detach)
            raise
        self._end_cell_run(handle, FINISHED, None, detach)
        return value

    def _live_chart(self, handle: Any) -> Any:
        # Imported here: ipywidgets and bqplot cost a %load_ext that tracks no cell
        # about 0.2 s, and a kernel without them still tracks (with no chart).
        try:
            from IPython.display import display

            from mlops_nb.widgets.live import attach

            return attach(self.tracker, handle.run_id, handle.name, display)
        except Exception as exc:  # no widgets here: training goes on without a chart
            self.tracker.report(f"warning: no live chart ({exc})")
            return None

    def _end_cell_run(self, handle: Any, status: str, error: BaseException | None, detach: Any) -> None:
        """End the run, title its chart with how it ended, and print the summary line."""
        row = None
        if handle is not None:
            self.tracker.end_run(handle, status, error)
            row = self._read_back(handle, status)
        if detach is not None:
            try:
                detach(row.status if row is not None else status)
            except Exception:
                pass
        if row is not None:
            print(run_summary(row, ui_hint(self.tracker.config)), flush=True)

    def _read_back(self, handle: RunHandle, status: str) -> RunRow:
        """The run as stored now; what this kernel knows of it when the store cannot say."""
        try:
            return read_run(self.tracker.client, handle.run_id)
        except MlopsError as exc:
            self.tracker.report(f"warning: {exc}")
            return RunRow(handle.run_id, handle.name, handle.experiment_name, status, None, None, "", {}, {})

    def _execute(self, cell: str) -> Any:
        """Run the cell body in the user namespace; return the last expression's value."""
        __tracebackhide__ = True
        shell = self.shell
        # One blank line for the %%mlops line: the body keeps the cell's line numbers.
        code = "\n" + shell.transform_cell(cell)
        filename = shell.compile.cache(code, self._execution_count(), raw_code="\n" + cell)
        tree = ast.parse(code, filename=filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        glob, loc = shell.user_global_ns, shell.user_ns
        exec(compile(tree, filename, "exec"), glob, loc)
        if last is not None:
            return eval(compile(ast.Expression(last.value), filename, "eval"), glob, loc)
        return None


_loaded: dict[int, MlopsMagics] = {}


def load(shell: Any) -> MlopsMagics:
    """Register the magics and hooks on ``shell`` (idempotent)."""
    if id(shell) in _loaded:
        return _loaded[id(shell)]
    tracker = current_tracker()
    if tracker is None:
        # Found again at each run: a notebook can be renamed while its kernel runs.
        tracker = Tracker(locate=lambda: locate_notebook(namespace=shell.user_ns))
        set_tracker(tracker)
    magics = MlopsMagics(shell, tracker)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    shell.events.register("post_run_cell", magics.post_run_cell)
    if getattr(getattr(shell, "displayhook", None), "exec_result", None) is not None:
        # %load_ext ran in a cell: MLflow imports in the background from the end of that
        # cell, while the user reads (%load_ext itself stays fast). Loaded outside a cell
        # (a kernel's startup), nothing marks when the user's code starts: MLflow is then
        # imported where it is first used.
        shell.events.register("post_run_cell", magics._start_warmup)
    transforms = _line_transforms(shell)
    if transforms is not None and tracked_cell_lines not in transforms:
        transforms.insert(0, tracked_cell_lines)  # before IPython's own cell-magic transform
    _loaded[id(shell)] = magics
    return magics


def _line_transforms(shell: Any) -> list[Any] | None:
    """IPython's list of line transforms, where %%cell magics are recognised."""
    manager = getattr(shell, "input_transformer_manager", None)
    transforms = getattr(manager, "line_transforms", None)
    return transforms if isinstance(transforms, list) else None


def unload(shell: Any) -> None:
    """End open runs, remove the hooks and forget the tracker."""
    magics = _loaded.pop(id(shell), None)
    if magics is None:
        return
    for name, hook in (
        ("pre_run_cell", magics.pre_run_cell),
        ("post_run_cell", magics.post_run_cell),
        ("post_run_cell", magics._start_warmup),
    ):
        try:
            shell.events.unregister(name, hook)
        except ValueError:
            pass
    transforms = _line_transforms(shell)
    if transforms is not None and tracked_cell_lines in transforms:
        transforms.remove(tracked_cell_lines)
    magics.tracker.close()
    if current_tracker() is magics.tracker:
        set_tracker(None)
