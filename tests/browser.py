"""A real JupyterLab in a real headless Chromium, for tests of what a person sees.

The server runs on 127.0.0.1 with a token, in a temporary root, with its own settings,
runtime and workspace folders (so nothing of the machine's Jupyter set-up leaks in),
and the news/update toasts switched off. Chromium is Debian's (``make test`` installs
it); Playwright drives it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def chromium_path() -> str | None:
    path = os.environ.get("MLOPS_NB_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: its URL, token and root folder."""

    def __init__(self, base: str, token: str, root: Path) -> None:
        self.base = base
        self.token = token
        self.root = root

    def url(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}"


@contextmanager
def jupyterlab(root: Path, tmp: Path, app: str = "lab") -> Iterator[Lab]:
    """Start JupyterLab (or, with ``app="notebook"``, Notebook 7) serving ``root``."""
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "MLOPS_NB_NOTEBOOK")
        },
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
    }
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp / "lab.log").open("w")
    app_flags = (
        ["--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True"]
        if app == "lab"
        else ["--JupyterNotebookApp.expose_app_in_browser=True"]
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            app,
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            *app_flags,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield Lab(base, token, root)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def browser_page(tmp: Path, name: str) -> Iterator[object]:
    """A Playwright page in a fresh Chromium profile; a screenshot is saved on failure."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp / "profile"),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            except Exception:
                pass
            raise
        finally:
            context.close()


def wait_for_kernel(page: object, timeout: float = 90_000) -> None:
    """Wait until the open notebook's kernel is idle."""
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
    page.wait_for_function(
        "() => { const w = window.jupyterapp?.shell.currentWidget;"
        " return w?.sessionContext?.session?.kernel?.status === 'idle'; }",
        timeout=timeout,
    )


# The WCAG contrast ratio between an element's text and the opaque background behind it
# (Playwright: locator.evaluate(CONTRAST_JS)).
CONTRAST_JS = """
(el) => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let bg = null;
  for (let n = el; n; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { bg = c.slice(0, 3); break; }
  }
  const fg = rgb(getComputedStyle(el).color).slice(0, 3);
  const [a, b] = [lum(fg), lum(bg || [255, 255, 255])].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}
"""
