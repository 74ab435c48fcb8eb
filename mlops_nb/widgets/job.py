"""A job started from a cell (``%mlops run``): its status, live, and a Stop button.

The job was submitted to the project's executor (its notebook runs in a kernel of its
own), so the notebook stays usable; the widget watches the job's future and says how it
ended and where its run is. Stop sets the stop event the job was submitted with.
"""

from __future__ import annotations

import html
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import ipywidgets as W

from mlops_nb.widgets import FallbackMixin

__all__ = ["JobStatus"]


class JobStatus(FallbackMixin, W.VBox):
    """Status of one background job: running (elapsed time), then how it ended."""

    def __init__(self, notebook: str, future: Future[Any], stop_event: threading.Event) -> None:
        self.notebook = Path(notebook).name
        self.result: Any = None
        self.error: BaseException | None = None
        self.future = future
        self.stop_event = stop_event
        self._started = time.monotonic()
        self._label = W.HTML()
        self._stop = W.Button(
            description="Stop", icon="stop", button_style="warning", tooltip="Stop the job (its run ends KILLED)"
        )
        self._stop.on_click(lambda _: self.stop())
        super().__init__([W.HBox([self._label, self._stop])])
        self.add_class("mlops-nb-job")
        self._render()
        self._ended = threading.Event()
        future.add_done_callback(self._on_done)
        self._ticker = threading.Thread(target=self._tick, name="mlops-nb-run-clock", daemon=True)
        self._ticker.start()

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    def stop(self) -> None:
        """Stop the job: its kernel is shut down and its run ends KILLED."""
        self.stop_event.set()
        self._stop.disabled = True

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result."""
        self._ended.wait(timeout)
        return self.result

    def _on_done(self, future: Future[Any]) -> None:
        try:
            self.result = future.result()
        except BaseException as exc:  # shown in the widget, never raised into the kernel
            self.error = exc
        self._stop.disabled = True
        self._render()
        self._ended.set()

    def _tick(self) -> None:
        while not self.done:
            time.sleep(1.0)
            if not self.done:
                self._render()

    def status_line(self) -> str:
        r = self.result
        if self.error is not None:
            return f"{self.notebook}: could not run: {self.error}"
        if r is None:
            return f"{self.notebook}: running ({time.monotonic() - self._started:.0f} s)"
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items()) if k != "job_duration_s")[:300]
        line = f"{self.notebook}: {r.status} in {r.duration_s:.1f} s, run {r.run_id} ({r.experiment})"
        if r.error:
            line += f": {r.error}"
        return line + (f"; {metrics}" if metrics else "")

    def _render(self) -> None:
        r = self.result
        colour = (
            "var(--jp-success-color1, green)"
            if r is not None and r.ok
            else (
                "var(--jp-error-color1, #c00)"
                if (r is not None or self.error is not None)
                else "var(--jp-ui-font-color1, inherit)"
            )
        )
        self._label.value = f'<span style="color:{colour}">{html.escape(self.status_line())}</span>'

    def fallback_text(self) -> str:
        return "mlops-nb job " + self.status_line()

    def fallback_html(self) -> str:
        return f"<p>mlops-nb job {html.escape(self.status_line())}</p>"
