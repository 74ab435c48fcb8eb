"""What produced a run: the notebook, its code, git state and the Python environment.

Everything here is plain Python (no Jupyter, no MLflow) and cached where the answer
rarely changes, because it runs for every tracked cell.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "NO_CAPTURE_TAG",
    "NotebookLocation",
    "GitState",
    "NotebookSnapshot",
    "locate_notebook",
    "git_state",
    "environment_lock",
    "read_snapshot",
    "parameter_values",
    "process_identity",
    "process_alive",
]

#: Cells carrying this tag (or starting with a ``# mlops:no-capture`` comment) are left
#: out of every snapshot.
NO_CAPTURE_TAG = "mlops:no-capture"
_NO_CAPTURE_COMMENT = "# mlops:no-capture"
_PLACEHOLDER = "# [mlops:no-capture] this cell was left out of the snapshot"


@dataclass(frozen=True)
class NotebookLocation:
    """Where the running notebook is, and how that was found out."""

    path: Path | None
    how: str

    @property
    def name(self) -> str | None:
        """The notebook's file name without ``.ipynb``."""
        return self.path.stem if self.path else None

    def relative_to(self, root: Path) -> str | None:
        """The notebook path relative to ``root`` (absolute when outside it)."""
        if self.path is None:
            return None
        try:
            return self.path.relative_to(root).as_posix()
        except ValueError:
            return str(self.path)


def locate_notebook(
    environ: Mapping[str, str] | None = None,
    namespace: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> NotebookLocation:
    """Find the notebook this kernel runs.

    In order: ``MLOPS_NB_NOTEBOOK`` (set by mlops-nb jobs), ``JPY_SESSION_NAME`` (set by
    Jupyter Server to the notebook's path relative to its root; the kernel runs in the
    notebook's folder), VS Code's ``__vsc_ipynb_file__``. Without any, the path is
    ``None`` and ``how`` says how to set it.
    """
    env = os.environ if environ is None else environ
    ns = namespace or {}
    here = Path(cwd or os.getcwd())

    explicit = env.get("MLOPS_NB_NOTEBOOK")
    if explicit:
        return NotebookLocation((here / explicit).resolve(), "MLOPS_NB_NOTEBOOK")
    session = env.get("JPY_SESSION_NAME")
    if session:
        candidate = Path(session)
        options = [candidate] if candidate.is_absolute() else [here / candidate.name, here / candidate]
        for option in options:
            if option.suffix == ".ipynb" and option.is_file():
                return NotebookLocation(option.resolve(), "JPY_SESSION_NAME (Jupyter Server)")
    vsc = ns.get("__vsc_ipynb_file__")
    if isinstance(vsc, str) and vsc:
        return NotebookLocation(Path(vsc).resolve(), "__vsc_ipynb_file__ (VS Code)")
    return NotebookLocation(
        None,
        "unknown: not started by Jupyter Server or VS Code; set MLOPS_NB_NOTEBOOK=path/to/notebook.ipynb",
    )


# ---------------------------------------------------------------- git


@dataclass(frozen=True)
class GitState:
    """The git state of the project when a run started."""

    commit: str | None
    branch: str | None
    dirty: bool
    diff: str = ""
    untracked: tuple[str, ...] = ()


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: Path, with_diff: bool = True) -> GitState | None:
    """Return commit, branch and dirty flag of the repository holding ``root``.

    ``None`` when ``root`` is not in a git work tree or git is missing. With
    ``with_diff``, a dirty tree also yields ``git diff HEAD`` and the untracked files.
    """
    status = _git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=normal")
    if status is None:
        return None
    commit = branch = None
    changed = False
    untracked: list[str] = []
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif line.startswith("? "):
            untracked.append(line[2:])
        elif line and not line.startswith("#"):
            changed = True
    dirty = changed or bool(untracked)
    diff = ""
    if dirty and with_diff and commit:
        diff = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff") or ""
    return GitState(commit, branch, dirty, diff, tuple(untracked))


# ---------------------------------------------------------------- environment

_env_cache: tuple[tuple[Any, ...], str] | None = None
_env_lock = threading.Lock()


def _site_signature() -> tuple[Any, ...]:
    sig = []
    for entry in sys.path:
        try:
            sig.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return tuple(sig)


def environment_lock() -> str:
    """The Python version and installed distributions, one ``name==version`` a line.

    Cached until a folder on ``sys.path`` changes (a ``%pip install`` does that).
    """
    global _env_cache
    signature = _site_signature()
    with _env_lock:
        if _env_cache is not None and _env_cache[0] == signature:
            return _env_cache[1]
        from importlib import metadata

        seen: dict[str, str] = {}
        for dist in metadata.distributions():
            name = dist.metadata["Name"]
            if name and name.lower() not in seen:
                seen[name.lower()] = f"{name}=={dist.version}"
        lines = [
            f"# python {platform.python_version()} ({sys.executable})",
            f"# platform {platform.platform()}",
            *sorted(seen.values(), key=str.lower),
        ]
        text = "\n".join(lines) + "\n"
        _env_cache = (signature, text)
        return text


# ---------------------------------------------------------------- notebook snapshot


@dataclass(frozen=True)
class NotebookSnapshot:
    """The saved notebook, with cells tagged ``mlops:no-capture`` blanked out."""

    text: str
    no_capture_ids: frozenset[str] = field(default_factory=frozenset)
    no_capture_sources: frozenset[str] = field(default_factory=frozenset)
    parameter_names: tuple[str, ...] = ()

    def hides(self, cell_id: str | None, source: str) -> bool:
        """True when the executed cell is one tagged ``mlops:no-capture`` in the notebook.

        Matched by cell id where the frontend sends one, else by source.
        """
        return bool(cell_id and cell_id in self.no_capture_ids) or source.strip() in self.no_capture_sources


_snapshot_cache: dict[Path, tuple[tuple[int, int], NotebookSnapshot]] = {}


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def is_no_capture(source: str, tags: list[str] | tuple[str, ...] = ()) -> bool:
    """True when a cell opted out of capture by tag or by a first-line comment."""
    if NO_CAPTURE_TAG in tags:
        return True
    first = source.lstrip().split("\n", 1)[0].strip()
    return first.startswith(_NO_CAPTURE_COMMENT)


def _assigned_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in names:
                names.append(target.id)
    return names


def read_snapshot(path: Path) -> NotebookSnapshot | None:
    """Read the saved notebook at ``path``; ``None`` if it is missing or not a notebook.

    Cached by modification time and size, so repeated runs of one notebook read it once
    per save.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _snapshot_cache.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    hidden: set[str] = set()
    hidden_sources: set[str] = set()
    params: list[str] = []
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", []) or []
        source = _source(cell)
        if cell.get("cell_type") == "code" and ("parameters" in tags or "injected-parameters" in tags):
            params.extend(n for n in _assigned_names(source) if n not in params)
        if is_no_capture(source, tags):
            if cell.get("id"):
                hidden.add(cell["id"])
            hidden_sources.add(source.strip())
            cell["source"] = _PLACEHOLDER
            if "outputs" in cell:
                cell["outputs"] = []
            cell.pop("attachments", None)
    snap = NotebookSnapshot(
        json.dumps(nb, indent=1, ensure_ascii=False), frozenset(hidden), frozenset(hidden_sources), tuple(params)
    )
    _snapshot_cache[path] = (key, snap)
    return snap


_SCALARS = (str, int, float, bool, type(None))


def parameter_values(names: tuple[str, ...] | list[str], namespace: Mapping[str, Any]) -> dict[str, str]:
    """The current values of the notebook's parameters, as MLflow param strings.

    Values come from the kernel's namespace, so papermill's injected values win over
    the defaults. Names not (yet) defined, and values that are not scalars, are skipped.
    """
    out: dict[str, str] = {}
    for name in names:
        if name in namespace:
            value = namespace[name]
            if isinstance(value, _SCALARS) or _is_number(value):
                out[name] = str(value)
    return out


def _is_number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Number) and not isinstance(value, bool)


# ---------------------------------------------------------------- processes


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_identity() -> dict[str, str]:
    """Host, pid and (on Linux) process start time, to tell later whether we died."""
    ident = {"host": socket.gethostname(), "pid": str(os.getpid())}
    start = _start_ticks(os.getpid())
    if start:
        ident["pid_start"] = start
    return ident


def process_alive(pid: int, start: str | None) -> bool:
    """True when process ``pid`` runs on this host and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if start is not None:
        now = _start_ticks(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True
