"""The kernel pool on real kernels: jobs run through papermill on pooled kernels, one
kernel a job, and the pool is papermill's ``mlops-nb`` engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import papermill
import psutil
import pytest
from jupyter_core.utils import ensure_event_loop

from mlops_nb.exceptions import KernelPoolError, UsageError
from mlops_nb.jobs.run.pool import JOB_FILE_ENV, KernelPool, PooledKernel

pytestmark = pytest.mark.slow

START = 60  # seconds any kernel start may take on a loaded machine


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "stream"
    )


def run(tmp_path: Path, kernel: PooledKernel, *sources: str, name: str = "job") -> str:
    """Execute a notebook of ``sources`` on ``kernel`` the way the runner does; its output."""
    src = notebook(tmp_path / f"{name}.ipynb", *sources)
    out = papermill.execute_notebook(str(src), str(tmp_path / f"{name}-out.ipynb"), km=kernel.km, progress_bar=False)
    return stdout(out)


def kernels_in(folder: str) -> list[psutil.Process]:
    """Live kernel processes of this process started with a connection file in ``folder``."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and any(folder in arg for arg in proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_for(condition: Callable[[], object], what: str, timeout: float = START) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """The process has exited. A killed multi-threaded process shows as a zombie while
    its other threads still exit, and cannot be reaped until they have."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() <= 1
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[KernelPool]:
    with KernelPool(size=1, cwd=tmp_path) as pool:
        yield pool


def test_acquired_kernel_runs_a_notebook_through_papermill(pool: KernelPool, tmp_path: Path):
    kernel = pool.acquire(timeout=START)
    try:
        assert kernel.km.is_alive()
        assert run(tmp_path, kernel, "x = 6 * 7", "print('answer', x)") == "answer 42\n"
    finally:
        kernel.discard()


def test_each_job_gets_a_fresh_kernel_that_is_shut_down_like_papermill_does(pool: KernelPool, tmp_path: Path):
    marker = tmp_path / "atexit-ran"
    first = pool.acquire(timeout=START)
    pid = first.km.provisioner.pid
    run(
        tmp_path,
        first,
        "secret = 'job 1'",
        f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')",
        name="one",
    )
    first.discard()
    assert not first.km.is_alive() and not first.km.has_kernel
    assert gone(pid)
    # A graceful shutdown, as papermill's: the kernel's atexit handlers ran (the
    # tracker ends its runs there).
    assert marker.read_text() == "yes"

    second = pool.acquire(timeout=START)
    try:
        assert second.km.provisioner.pid != pid
        assert run(tmp_path, second, "print('secret' in globals())", name="two") == "False\n"
    finally:
        second.discard()
    second.discard()  # twice is harmless


def test_kernel_sees_its_job_file_the_pool_env_and_cwd(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    with KernelPool(size=1, cwd=work, env={"MLOPS_NB_TEST_VAR": "from the pool"}) as pool:
        kernel = pool.acquire(timeout=START)
        assert not Path(kernel.job_file).exists()
        # The runner writes the job right before executing; the kernel reads it then.
        Path(kernel.job_file).write_text(json.dumps({"run_id": "abc"}))
        printed = run(
            tmp_path,
            kernel,
            "import json, os\n"
            f"print(os.environ[{JOB_FILE_ENV!r}])\n"
            "print(json.load(open(os.environ['MLOPS_NB_JOB_FILE']))['run_id'])\n"
            "print(os.getcwd())\n"
            "print(os.environ['MLOPS_NB_TEST_VAR'])",
        ).splitlines()
        assert printed == [kernel.job_file, "abc", str(work), "from the pool"]
        kernel.discard()
        assert not Path(kernel.job_file).exists()
        other = pool.acquire(timeout=START)
        assert other.job_file != kernel.job_file
        other.discard()


def test_kernel_points_mlflow_at_its_job_before_the_first_cell_without_importing_it(tmp_path: Path):
    """A notebook that never imports mlops_nb still writes its mlflow.* calls to the
    job's store, experiment and notebook (the pooled kernel loads mlops_nb.fluent)."""
    root = tmp_path / "proj"
    (root / "nbs").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    uri = f"sqlite:///{root / '.mlops' / 'mlflow.db'}"
    with KernelPool(size=1, cwd=root / "nbs") as pool:
        kernel = pool.acquire(timeout=START)
        try:
            job = {"run_id": "r1", "experiment_id": "7", "notebook": str(root / "nbs" / "a.ipynb"), "tracking_uri": uri}
            Path(kernel.job_file).write_text(json.dumps(job))
            printed = run(
                tmp_path,
                kernel,
                "import json, os, sys\n"
                "print(os.environ['MLFLOW_TRACKING_URI'])\n"
                "print(os.environ['MLFLOW_EXPERIMENT_ID'])\n"
                "print(json.loads(os.environ['MLFLOW_RUN_CONTEXT'])['mlflow.source.name'])\n"
                "print('mlflow' in sys.modules)",
            ).splitlines()
        finally:
            kernel.discard()
    assert printed == [uri, "7", "nbs/a.ipynb", "False"]


def test_pool_starts_a_replacement_as_soon_as_a_kernel_is_taken(pool: KernelPool, tmp_path: Path):
    first = pool.acquire(timeout=START)
    folder = os.path.dirname(first.km.connection_file)
    # Nobody asked for a second kernel, yet one is starting.
    wait_for(lambda: len(kernels_in(folder)) == 2, "the replacement kernel to start")
    time.sleep(0.5)
    second = pool.acquire(timeout=START)
    try:
        assert second.km.is_alive() and second.km is not first.km
        assert run(tmp_path, second, "print('ok')") == "ok\n"
    finally:
        first.discard()
        second.discard()


def test_threads_acquiring_at_once_each_run_their_notebook(pool: KernelPool, tmp_path: Path):
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def job(i: int) -> None:
        try:
            with pool.acquire(timeout=START) as kernel:
                results[i] = run(tmp_path, kernel, f"print({i} * 10)", name=f"job{i}")
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)
        finally:
            # papermill and jupyter_client ran on an event loop of this thread's own.
            ensure_event_loop().close()

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * START)
    assert not errors, errors
    assert results == {i: f"{i * 10}\n" for i in range(4)}


def test_a_kernel_killed_while_idle_is_replaced_on_acquire(pool: KernelPool, tmp_path: Path):
    with pool.acquire(timeout=START) as first:
        folder = os.path.dirname(first.km.connection_file)
    wait_for(lambda: pool.idle == 1, "an idle kernel")
    (idle,) = kernels_in(folder)
    os.kill(idle.pid, signal.SIGKILL)
    wait_for(lambda: gone(idle.pid), "the killed kernel to exit")

    with pool.acquire(timeout=START) as kernel:
        assert kernel.km.is_alive() and kernel.km.provisioner.pid != idle.pid
        assert run(tmp_path, kernel, "print('alive')") == "alive\n"


def test_close_leaves_no_kernel_behind(tmp_path: Path):
    pool = KernelPool(size=2, cwd=tmp_path)
    kernel = pool.acquire(timeout=START)
    folder = os.path.dirname(kernel.km.connection_file)
    pool.close()
    # Idle kernels and kernels that were still starting are gone; the acquired one
    # belongs to its job until it is discarded.
    assert [p.pid for p in kernels_in(folder)] == [kernel.km.provisioner.pid]
    assert run(tmp_path, kernel, "print('still mine')") == "still mine\n"
    kernel.discard()
    assert kernels_in(folder) == []
    assert not os.path.exists(folder)
    with pytest.raises(UsageError, match="closed"):
        pool.acquire()
    pool.close()  # twice is harmless


def test_a_kernel_that_cannot_start_fails_acquire_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = tmp_path / "share" / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", "import sys; sys.exit(3)", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    with (
        KernelPool("broken", size=1, cwd=tmp_path) as pool,
        pytest.raises(KernelPoolError, match="broken kernel failed to start.*died"),
    ):
        pool.acquire(timeout=START)
    with pytest.raises(UsageError, match="no kernel named 'nope'"):
        KernelPool("nope")


def test_papermill_command_line_runs_on_the_mlops_nb_engine(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    src = notebook(
        tmp_path / "in.ipynb", "import os\nprint(os.getcwd())", "print(os.environ['MLOPS_NB_JOB_FILE'] != '')"
    )
    out = tmp_path / "out.ipynb"
    private = tmp_path / "tmp"  # where the command's pool keeps its kernels' files
    private.mkdir()
    subprocess.run(
        [sys.executable, "-m", "papermill", "--engine", "mlops-nb", "--cwd", str(work), str(src), str(out)],
        check=True,
        capture_output=True,
        timeout=3 * START,
        env={**os.environ, "TMPDIR": str(private)},
    )
    assert stdout(nbformat.read(str(out), as_version=4)) == f"{work}\nTrue\n"
    # The kernel started ahead for a next notebook was shut down when papermill exited.
    assert list(private.iterdir()) == []
    assert [p for p in psutil.process_iter(["cmdline"]) if str(private) in " ".join(p.info["cmdline"] or [])] == []


def test_papermill_in_process_runs_on_the_mlops_nb_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    src = notebook(tmp_path / "in.ipynb", "import os\nprint(os.getpid())")
    out = papermill.execute_notebook(str(src), str(tmp_path / "out.ipynb"), engine_name="mlops-nb", progress_bar=False)
    pid = int(stdout(out))
    assert gone(pid)  # the job's kernel was discarded after the run

    failing = notebook(tmp_path / "fail.ipynb", "import os\nprint(os.getpid())", "raise ValueError('boom')")
    with pytest.raises(papermill.PapermillExecutionError, match="boom"):
        papermill.execute_notebook(
            str(failing), str(tmp_path / "fail-out.ipynb"), engine_name="mlops-nb", progress_bar=False
        )
    failed = nbformat.read(str(tmp_path / "fail-out.ipynb"), as_version=4)
    assert gone(int(stdout(failed)))  # discarded after a failure too


def test_mlops_nb_engine_leaves_a_kernel_it_was_given_running(pool: KernelPool, tmp_path: Path):
    src = notebook(tmp_path / "in.ipynb", "print('given')")
    with pool.acquire(timeout=START) as kernel:
        out = papermill.execute_notebook(
            str(src), str(tmp_path / "out.ipynb"), engine_name="mlops-nb", km=kernel.km, progress_bar=False
        )
        assert stdout(out) == "given\n"
        assert kernel.km.is_alive()


def test_importing_the_pool_before_papermill_registers_the_engine():
    # papermill loads engine entry points while papermill.engines is half-imported.
    code = (
        "import mlops_nb.jobs.run.pool as pool\n"
        "from papermill.engines import papermill_engines\n"
        "assert papermill_engines.get_engine('mlops-nb') is pool.PooledEngine\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=START)
