"""What produced a run: the notebook, its code, git state and the Python environment.

Everything here is plain Python (no Jupyter, no MLflow) and cached where the answer
rarely changes, because it runs for every tracked cell.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_nb.tags import GIT_DIRTY

__all__ = [
    "NO_CAPTURE_TAG",
    "GitState",
    "NotebookLocation",
    "NotebookSnapshot",
    "environment_lock",
    "git_state",
    "kernel_id",
    "locate_notebook",
    "notebook_saved",
    "parameter_values",
    "process_alive",
    "process_identity",
    "read_snapshot",
    "session_notebook",
    "static_capture",
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


#: How the notebook was found when Jupyter Server's sessions API named it.
SESSIONS_API = "Jupyter Server sessions API"


def locate_notebook(
    environ: Mapping[str, str] | None = None,
    namespace: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
) -> NotebookLocation:
    """Find the notebook this kernel runs, as it is named now.

    In order: ``MLOPS_NB_NOTEBOOK`` (set by mlops-nb jobs); the Jupyter Server sessions
    API, asked for the session of this kernel (``kernel``, default :func:`kernel_id`),
    which follows renames (a new notebook is ``Untitled.ipynb`` until its first save
    names it); ``JPY_SESSION_NAME`` (set by Jupyter Server when the kernel started: the
    notebook's path relative to its root, stale after a rename; the kernel runs in the
    notebook's folder); VS Code's ``__vsc_ipynb_file__``. Without any, the path is
    ``None`` and ``how`` says how to set it. Only the sessions API may name a file that
    does not exist yet (see :func:`notebook_saved`).
    """
    env = os.environ if environ is None else environ
    ns = namespace or {}
    here = Path(cwd or os.getcwd())

    explicit = env.get("MLOPS_NB_NOTEBOOK")
    if explicit:
        return NotebookLocation((here / explicit).resolve(), "MLOPS_NB_NOTEBOOK")
    session = env.get("JPY_SESSION_NAME")
    if session:  # started by Jupyter Server: ask it where the notebook is now
        current = session_notebook(kernel or kernel_id())
        if current is not None:
            return NotebookLocation(current, SESSIONS_API)
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


def kernel_id() -> str | None:
    """This kernel's id, read from its connection file's name (Jupyter Server names it
    ``kernel-<id>.json``); ``None`` outside an ipykernel. Imports nothing."""
    app = getattr(sys.modules.get("ipykernel.kernelapp"), "IPKernelApp", None)
    try:
        if app is None or not app.initialized():
            return None
        name = os.path.basename(app.instance().connection_file)
    except Exception:  # an ipykernel that keeps it elsewhere: no id, no lookup
        return None
    match = re.fullmatch(r"kernel-(.+)\.json", name)
    return match.group(1) if match else None


def _runtime_dirs() -> list[Path]:
    """Where Jupyter servers write ``jpserver-*.json``: the folder of this kernel's
    connection file (a server keeps its kernels' files in its runtime folder), then
    Jupyter's runtime folder."""
    dirs: list[Path] = []
    app = getattr(sys.modules.get("ipykernel.kernelapp"), "IPKernelApp", None)
    try:
        if app is not None and app.initialized():
            dirs.append(Path(app.instance().abs_connection_file).parent)
    except Exception:
        pass
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        dirs.append(Path(jupyter_runtime_dir()))
    except Exception:  # jupyter_core missing: only the kernel's own folder
        pass
    return list(dict.fromkeys(d.resolve() for d in dirs))


def _running_servers(dirs: list[Path]) -> list[dict[str, Any]]:
    """The info files of Jupyter servers whose process is alive (as
    ``jupyter_server.serverapp.list_running_servers``, without importing the server or
    deleting other servers' files)."""
    servers = []
    for folder in dirs:
        try:
            files = sorted(folder.glob("jpserver-*.json"))
        except OSError:
            continue
        for file in files:
            try:
                info = json.loads(file.read_text(encoding="utf-8"))
                alive = process_alive(int(info["pid"]), None)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if alive and str(info.get("url", "")).startswith(("http://", "https://")):
                servers.append(info)
    return servers


def _sessions(server: Mapping[str, Any], timeout: float) -> list[dict[str, Any]]:
    url = str(server["url"]).rstrip("/") + "/api/sessions"
    headers = {"Authorization": f"token {server['token']}"} if server.get("token") else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        data = json.loads(resp.read(1_000_000))
    return data if isinstance(data, list) else []


#: kernel id -> the info of the server that runs it (a kernel never changes server).
_server_of_kernel: dict[str, dict[str, Any]] = {}


def session_notebook(
    kernel: str | None,
    runtime_dirs: list[Path] | None = None,
    timeout: float = 1.0,
    budget: float = 2.0,
) -> Path | None:
    """The notebook path Jupyter Server's session of ``kernel`` has now, or ``None``.

    Asks ``GET /api/sessions`` of the running servers found in ``runtime_dirs`` (default:
    the kernel's and Jupyter's runtime folders) with each server's token, and matches the
    session by kernel id. Bounded: ``timeout`` seconds a server and ``budget`` in all;
    the server found is remembered, so later calls ask it alone. The path may not exist
    yet (a notebook never saved).
    """
    if not kernel:
        return None
    known = _server_of_kernel.get(kernel)
    servers = [known] if known else _running_servers(runtime_dirs if runtime_dirs is not None else _runtime_dirs())
    deadline = time.monotonic() + budget
    for server in servers:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            sessions = _sessions(server, min(timeout, left))
        except (OSError, ValueError, urllib.error.URLError):
            continue  # down, slow, or refused us: try the next, or fall back
        for session in sessions:
            if not isinstance(session, dict) or (session.get("kernel") or {}).get("id") != kernel:
                continue
            path = str(session.get("path") or "")
            if not path.endswith(".ipynb"):
                return None
            _server_of_kernel[kernel] = server
            return (Path(str(server.get("root_dir") or os.getcwd())) / path).resolve()
    if known:
        _server_of_kernel.pop(kernel, None)  # ask every server again next time
    return None


def notebook_saved(path: Path | None) -> bool:
    """Whether ``path`` holds a saved notebook: a file with cells. Jupyter creates a new
    notebook as a file with no cells; its cells reach the disk with the first save."""
    if path is None:
        return False
    snap = read_snapshot(path)
    return snap is not None and snap.cells > 0


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
    #: How many cells the saved file holds (0: a new notebook never saved).
    cells: int = 0

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
        json.dumps(nb, indent=1, ensure_ascii=False),
        frozenset(hidden),
        frozenset(hidden_sources),
        tuple(params),
        len(cells) if isinstance(cells, list) else 0,
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


def static_capture(project_root: Path, capture_code: bool) -> tuple[dict[str, str], dict[str, str]]:
    """What a run records of its surroundings: (tags, artifacts by path) for the git state
    of ``project_root`` and the installed packages; the uncommitted diff too when
    ``capture_code``. Slow (git, the package list): run it off the main thread."""
    tags: dict[str, str] = {}
    artifacts: dict[str, str] = {"environment/requirements.txt": environment_lock()}
    state = git_state(project_root, with_diff=capture_code)
    if state is not None:
        if state.commit:
            tags["mlflow.source.git.commit"] = state.commit
        if state.branch:
            tags["mlflow.source.git.branch"] = state.branch
        tags[GIT_DIRTY] = "true" if state.dirty else "false"
        if state.dirty and capture_code:
            diff = state.diff
            if state.untracked:
                diff += "".join(f"# untracked: {p}\n" for p in state.untracked)
            artifacts["code/git.diff"] = diff
    return tags, artifacts
