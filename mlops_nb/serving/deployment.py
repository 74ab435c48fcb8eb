"""The version a server answers with, and the watcher that swaps it when the alias moves.

A :class:`Deployment` holds one :class:`LoadedVersion` behind a single reference. A
request reads that reference once when it starts and uses what it got to the end, so a
swap is one assignment: requests in flight finish on the old version, the next one gets
the new version. Nothing on the request path reads the registry or the disk.

The watcher thread asks the registry every ``poll`` seconds which version the alias
names, and on a SQLite store it also watches the mtime of
``<folder of mlflow.db>/alias-moves`` a few times a second (mlops-nb touches it after
every alias move: :data:`mlops_nb.registry.ALIAS_MOVES_FILE`), so a move made with
mlops-nb on the same store is seen at once. On a move it loads the new version (MLflow's
pyfunc loader, on the version's files), warms it with the input example saved with it
(the exact request body MLflow stores, through MLflow's scoring code), checks that it
takes the inputs the served version takes, and only then swaps. When any step fails the
old version keeps answering; the failure is reported (one line on stderr, ``/health``
says ``degraded``, a metric counts it), and that version is tried again only when the
alias moves again or after a backoff.
"""

from __future__ import annotations

import importlib.metadata
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, one_line
from mlops_nb.serving.source import ModelSource, ResolvedModel, current_version, resolve

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = [
    "Deployment",
    "LoadedVersion",
    "check_inputs",
    "iso_time",
    "load_version",
    "report_line",
    "requirement_mismatches",
]

#: Types the served version takes that a new version may take in their place (MLflow's
#: schema enforcement converts these losslessly).
_WIDER = {
    ("integer", "long"),
    ("integer", "float"),
    ("integer", "double"),
    ("long", "double"),
    ("float", "double"),
}
#: A failed version is tried again after this many seconds, doubled each time it fails
#: again, at most :data:`MAX_RETRY_AFTER` (a move of the alias tries it at once).
RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 3600.0


def report_line(line: str) -> None:
    """One ``mlops-nb: ...`` line on the server's log (stderr)."""
    print(f"mlops-nb: {line}", file=sys.stderr, flush=True)


def iso_time(seconds: float) -> str:
    """Seconds since the epoch as ISO-8601 UTC text, as ``/health`` shows times."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LoadedVersion:
    """A model version loaded, warmed and ready to answer.

    ``model`` is MLflow's ``PyFuncModel``; ``input_schema`` its input signature (``None``
    when it has none); ``warmed`` says whether a saved input example was predicted.
    """

    name: str
    version: str
    files: str
    model: Any
    input_schema: Any
    loaded_at: float
    load_seconds: float
    warmed: bool


def load_version(
    resolved: ResolvedModel,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> LoadedVersion:
    """Load ``resolved`` with MLflow's pyfunc loader and warm it with its saved input
    example; :class:`MlopsError` (one line) when either fails."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    what = f"{resolved.name} v{resolved.version}"
    started = clock()
    try:
        # MLflow's own requirement warnings are several lines a load; the server says it
        # in one line (requirement_mismatches).
        model = mlflow.pyfunc.load_model(resolved.files, suppress_warnings=True)
    except Exception as exc:
        raise MlopsError(f"could not load {what}: {one_line(exc, with_type=True)}") from None
    schema = model.metadata.get_input_schema()
    warmed = False
    try:
        body = model.metadata.get_serving_input(resolved.files)
        if body is not None:
            answer = invocations(body, "application/json", model, schema)
            if answer.status != 200:
                raise MlopsError(f"it answered {answer.status}: {str(answer.response)[:200]}")
            warmed = True
        else:
            example = model.metadata.load_input_example(resolved.files)
            if example is not None:
                model.predict(example)
                warmed = True
    except Exception as exc:
        raise MlopsError(
            f"{what} failed on its own input example: {one_line(exc, with_type=not isinstance(exc, MlopsError))}"
        ) from None
    return LoadedVersion(
        resolved.name, resolved.version, resolved.files, model, schema, wall(), clock() - started, warmed
    )


def _type_name(t: Any) -> str:
    return str(getattr(t, "name", None) or t)


def check_inputs(old: Any, new: Any) -> str | None:
    """Why a version with input schema ``new`` would refuse inputs the served one
    (``old``) takes, or ``None`` when it takes them all.

    Column signatures: every column ``new`` requires must be required by ``old`` too (a
    client may leave out an optional one), and a column both know must have the same
    type or one ``new`` converts from losslessly. Tensor signatures must be equal. A
    version without a signature takes anything; one with a signature after one without
    cannot be judged and is let through.
    """
    if old is None or new is None:
        return None
    if old.is_tensor_spec() or new.is_tensor_spec() or not old.has_input_names() or not new.has_input_names():
        return None if old.to_dict() == new.to_dict() else "its tensor input signature differs from the served one"
    before = {c.name: c for c in old.inputs}
    missing = [
        c.name
        for c in new.inputs
        if getattr(c, "required", True) and (c.name not in before or not getattr(before[c.name], "required", True))
    ]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        return f"it requires input column(s) {shown} that the served version does not"
    for col in new.inputs:
        if col.name not in before:
            continue
        was, now = before[col.name].type, col.type
        if was == now or (_type_name(was), _type_name(now)) in _WIDER:
            continue
        return f"input column {col.name!r} is {_type_name(now)}, the served version takes {_type_name(was)}"
    return None


def requirement_mismatches(files: str) -> list[str]:
    """The packages the version's ``requirements.txt`` names whose installed version does
    not satisfy it, as ``name==wanted (installed: x)``; packages not installed here are
    not compared (the model may not need them to predict)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = (Path(files) / "requirements.txt").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.url or not req.specifier or (req.marker is not None and not req.marker.evaluate()):
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if not req.specifier.contains(installed, prereleases=True):
            found.append(f"{req.name}{req.specifier} (installed: {installed})")
    return found


class Deployment:
    """The version one server answers with, and the watcher that swaps it.

    Parameters
    ----------
    client:
        An ``MlflowClient`` on the project's store (never MLflow's global state).
    source:
        What to serve; only an ``@ALIAS`` reference ever swaps.
    poll:
        Seconds between two reads of the registry.
    moves_file:
        The store's alias-moves file (SQLite stores), watched a few times a second.
    report:
        Where one-line events go (default: stderr).
    retry_after:
        Seconds before a version that failed is tried again without a new move.
    clock, wall:
        Monotonic seconds (intervals) and seconds since the epoch (shown times).
    """

    def __init__(
        self,
        client: MlflowClient,
        source: ModelSource,
        *,
        poll: float = 5.0,
        moves_file: Path | None = None,
        report: Callable[[str], None] = report_line,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.source = source
        self.poll = poll
        self.moves_file = moves_file
        self.report = report
        self.retry_after = retry_after
        self.clock = clock
        self.wall = wall
        #: The version answering now: read once per request, replaced whole on a swap.
        self.current: LoadedVersion | None = None
        self.swaps = 0
        self.last_swap: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self._failed: tuple[str, float, int] | None = None  # (version, retry at, attempts)
        self._last_target: str | None = None
        self._watch_problem: str | None = None
        self._on_swap: list[Callable[[LoadedVersion, LoadedVersion | None], None]] = []
        self._on_failure: list[Callable[[str, str], None]] = []
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ listeners

    def on_swap(self, callback: Callable[[LoadedVersion, LoadedVersion | None], None]) -> None:
        """Call ``callback(new, old)`` after each swap (and after the first load)."""
        self._on_swap.append(callback)

    def on_failure(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(version, error line)`` when a version could not be swapped in."""
        self._on_failure.append(callback)

    # ------------------------------------------------------------ loading

    def load_first(self, resolved: ResolvedModel) -> LoadedVersion:
        """Load and serve ``resolved`` (the start); :class:`MlopsError` when it fails."""
        loaded = load_version(resolved, clock=self.clock, wall=self.wall)
        self._warn_requirements(loaded)
        self._last_target = loaded.version
        self._install(loaded, None)
        return loaded

    def _warn_requirements(self, loaded: LoadedVersion) -> None:
        mismatches = requirement_mismatches(loaded.files)
        if mismatches:
            shown = ", ".join(mismatches[:6]) + (f" and {len(mismatches) - 6} more" if len(mismatches) > 6 else "")
            self.report(
                f"warning: {loaded.name} v{loaded.version} was saved with {shown}; it may predict differently here"
            )

    def _install(self, new: LoadedVersion, old: LoadedVersion | None) -> None:
        self.current = new  # the swap: one reference
        self._failed = None
        for callback in self._on_swap:
            try:
                callback(new, old)
            except Exception as exc:  # a listener never undoes a swap
                self.report(f"after the swap to v{new.version}: {one_line(exc, with_type=True)}")

    # ------------------------------------------------------------ watching

    def start(self) -> None:
        """Start the watcher thread (only for a source that follows an alias)."""
        if not self.source.follows_alias or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="mlops-nb-deployment-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watcher; a load in progress finishes first (at most ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _moves_mtime(self) -> int | None:
        if self.moves_file is None:
            return None
        try:
            return self.moves_file.stat().st_mtime_ns
        except OSError:
            return None

    def _watch(self) -> None:
        tick = min(self.poll, 0.2) if self.moves_file is not None else self.poll
        seen = self._moves_mtime()
        next_poll = self.clock() + self.poll
        while not self._stop.wait(tick):
            mtime = self._moves_mtime()
            moved, seen = mtime != seen, mtime
            if moved or self.clock() >= next_poll:
                next_poll = self.clock() + self.poll
                self.check()

    def check(self) -> bool:
        """Read the registry once; swap when the alias names another version. Returns
        whether a swap happened. Never raises: problems are reported."""
        with self._check_lock:
            try:
                target = current_version(self.client, self.source)
            except Exception as exc:
                self._watch_failed(f"cannot read the registry: {one_line(exc, with_type=True)}")
                return False
            if target is None:
                self._watch_failed(f"{self.source.text} names no version any more; still serving the last one")
                return False
            self._watch_problem = None
            moved, self._last_target = target != self._last_target, target
            current = self.current
            if current is not None and target == current.version:
                self._failed = None  # the alias came back to the served version
                return False
            if self._failed is not None and self._failed[0] == target and not moved and self.clock() < self._failed[1]:
                return False
            return self._swap_to(target, current)

    def _watch_failed(self, line: str) -> None:
        if line != self._watch_problem:  # once, not every poll
            self._watch_problem = line
            self.report(line)

    def _swap_to(self, target: str, current: LoadedVersion | None) -> bool:
        try:
            new = load_version(resolve(self.client, self.source, target), clock=self.clock, wall=self.wall)
            problem = check_inputs(current.input_schema if current else None, new.input_schema)
            if problem:
                raise MlopsError(f"refused {self.source.name} v{target}: {problem}")
        except Exception as exc:
            self._failure(target, current, exc)
            return False
        self._warn_requirements(new)
        self.swaps += 1
        self.last_swap = {
            "from": current.version if current else None,
            "to": new.version,
            "at": iso_time(self.wall()),
            "load_seconds": round(new.load_seconds, 3),
        }
        self._install(new, current)
        was = f" (was v{current.version})" if current else ""
        self.report(f"now serving {new.name} v{new.version}{was}, loaded and warmed in {new.load_seconds:.2f} s")
        return True

    def _failure(self, target: str, current: LoadedVersion | None, exc: Exception) -> None:
        line = one_line(exc, with_type=not isinstance(exc, MlopsError))
        attempts = self._failed[2] + 1 if self._failed is not None and self._failed[0] == target else 1
        wait = min(self.retry_after * 2 ** (attempts - 1), MAX_RETRY_AFTER)
        self._failed = (target, self.clock() + wait, attempts)
        self.last_error = {"version": target, "at": iso_time(self.wall()), "error": line}
        still = f"; still serving v{current.version}" if current else ""
        self.report(f"could not swap to {self.source.name} v{target}{still}: {line}")
        for callback in self._on_failure:
            try:
                callback(target, line)
            except Exception:
                pass

    # ------------------------------------------------------------ state

    @property
    def status(self) -> str:
        """``loading`` (nothing served yet), ``degraded`` (the version the alias names
        failed; an older one answers) or ``ok``."""
        if self.current is None:
            return "loading"
        return "degraded" if self._failed is not None else "ok"

    def health(self) -> dict[str, Any]:
        """The deployment's part of ``/health``."""
        current = self.current
        return {
            "status": self.status,
            "model": self.source.text,
            "name": self.source.name,
            "alias": self.source.alias,
            "version": current.version if current else None,
            "loaded_at": iso_time(current.loaded_at) if current else None,
            "last_swap": self.last_swap,
            "swaps": self.swaps,
            "last_error": self.last_error,
        }
