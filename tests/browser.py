"""A real JupyterLab in a real headless Chromium, for tests of what a person sees.

The server runs on 127.0.0.1 with a token, in a temporary root, with its own settings,
runtime and workspace folders (so nothing of the machine's Jupyter set-up leaks in),
and the news/update toasts switched off. Chromium is Debian's (``make test`` installs
it); Playwright drives it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import REPO
from services import JupyterServer, jupyter_server

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
ARTIFACTS = REPO / "test-artifacts"
#: A Jupyter Server configuration with the mlops-nb server extension switched off.
SERVER_EXTENSION_OFF = {"ServerApp": {"jpserver_extensions": {"mlops_nb": False}}}


def chromium_path() -> str | None:
    path = os.environ.get("MLOPS_NB_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else None


@contextmanager
def jupyterlab(root: Path, tmp: Path, app: str = "lab", *, config: dict | None = None) -> Iterator[JupyterServer]:
    """Start JupyterLab (or, with ``app="notebook"``, Notebook 7) serving ``root``, with
    its own settings and workspace folders in ``tmp``, the news/update toasts off and
    ``config`` (when given) as its Jupyter Server configuration."""
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {"JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
    app_flags = (
        ("--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True")
        if app == "lab"
        else ("--JupyterNotebookApp.expose_app_in_browser=True",)
    )
    with jupyter_server(root, tmp, app, config=config, env=env, args=app_flags) as lab:
        yield lab


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


def set_theme(page: object, theme: str, light: str) -> None:
    """Switch JupyterLab to ``theme`` (``light``: "true" or "false", what the body says)
    and wait until its stylesheet applies."""
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
    page.wait_for_selector(f"body[data-jp-theme-light='{light}']", state="attached", timeout=30_000)
    page.wait_for_timeout(500)  # the theme's stylesheet applies


# The WCAG contrast ratio between an element's text and the opaque background behind it
# (Playwright: locator.evaluate(CONTRAST_JS)). Theme colours like --jp-ui-font-color2 are
# translucent: with locator.evaluate(CONTRAST_JS, {"blend": True}) the text colour is
# blended over that background (what is drawn); without, its alpha is ignored.
CONTRAST_JS = """
(el, options) => {
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
  bg = bg || [255, 255, 255];
  const [r, g, b, alpha = 1] = rgb(getComputedStyle(el).color);
  const fg = options && options.blend ? [r, g, b].map((v, i) => alpha * v + (1 - alpha) * bg[i]) : [r, g, b];
  const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
"""
