"""Plain tables that read well in a terminal and render as HTML in a notebook.

Jupyter picks up ``_repr_html_``; a terminal, a log or plain IPython gets ``str()``.
No Jupyter import is needed for either.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mlops_nb.runs import RunRow

if TYPE_CHECKING:  # pragma: no cover
    from mlops_nb.registry import ModelRow, VersionRow

__all__ = ["Table", "aligned_lines", "models_table", "runs_table", "status_table", "versions_table"]


def aligned_lines(header: Sequence[object], rows: Sequence[Sequence[object]], *, strip: bool = True) -> list[str]:
    """The header and rows as text lines, each column padded to its widest cell and two
    spaces between columns; ``strip`` drops the padding at the end of each line."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in [header, *rows]]
    return [line.rstrip() for line in lines] if strip else lines


class Table:
    """A titled table of strings with a text and an HTML rendering."""

    def __init__(
        self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "", footer: str = ""
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.title = title
        self.footer = footer

    def __str__(self) -> str:
        widths = [max(len(c) for c in col) for col in zip(self.columns, *self.rows)]
        header, *rows = aligned_lines(self.columns, self.rows)
        lines = [self.title] if self.title else []
        lines += [header, "  ".join("-" * w for w in widths), *rows]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th style='text-align:left'>{esc(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{esc(cell)}</td>" for cell in row) + "</tr>"
            for row in self.rows
        )
        title = f"<p><b>{esc(self.title)}</b></p>" if self.title else ""
        footer = f"<p>{esc(self.footer)}</p>" if self.footer else ""
        return (
            f"{title}<table class='mlops-nb-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{footer}"
        )


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _fmt_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    items = sorted(metrics.items())[:limit]
    text = " ".join(f"{k}={v:.4g}" for k, v in items)
    return text + (" ..." if len(metrics) > limit else "")


def runs_table(rows: Sequence[RunRow], more: bool, store: str) -> Table:
    """The runs listing shared by ``%mlops runs`` and ``mlops-nb runs``."""
    if not rows:
        return Table(["run"], [], title=f"No runs yet in {store}.", footer="Start one with %mlops track in a notebook.")
    body = [
        [
            r.run_id[:12],
            r.name,
            r.experiment,
            r.status,
            _fmt_time(r.start_time),
            _fmt_duration(r.duration_s),
            r.notebook,
            _fmt_metrics(r.metrics),
        ]
        for r in rows
    ]
    footer = f"{len(rows)} run(s) shown" + ("; more exist: raise -n to see them" if more else "")
    return Table(
        ["run", "name", "experiment", "status", "started", "took", "notebook", "metrics"],
        body,
        title=f"Runs in {store}",
        footer=footer,
    )


def status_table(status: dict[str, object]) -> Table:
    """``%mlops status`` as a two-column table; its ``connection`` row says in one line
    whether the store answered just now."""
    labels = [
        ("store", "store"),
        ("connection", "store_health"),
        ("why this store", "store_reason"),
        ("project root", "project_root"),
        ("notebook", "notebook"),
        ("notebook found by", "notebook_how"),
        ("experiment", "experiment"),
        ("notebook run", "notebook_run"),
        ("cell runs", "cell_runs"),
        ("autolog", "autolog"),
        ("captured with each run", "captured"),
        ("metrics waiting to be written", "pending_metrics"),
        ("browse runs", "ui"),
    ]
    rows = []
    for label, key in labels:
        value = status.get(key)
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        elif value is None:
            value = "none"
        elif isinstance(value, bool):
            value = "on" if value else "off"
        rows.append([label, str(value)])
    return Table(["", ""], rows, title="mlops-nb status")


def models_table(rows: Sequence[ModelRow], more: bool, store: str) -> Table:
    """``%mlops models``: the registered models."""
    if not rows:
        return Table(
            ["model"],
            [],
            title=f"No registered models yet in {store}.",
            footer="Register one from a cell: %mlops register VAR --name NAME --alias challenger",
        )
    body = [
        [
            r.name,
            r.latest_version or "",
            " ".join(f"@{a}=v{v}" for a, v in sorted(r.aliases.items())),
            _fmt_time(r.updated),
            r.description[:60],
        ]
        for r in rows
    ]
    footer = f"{len(rows)} model(s)" + ("; more exist: narrow with a name" if more else "")
    return Table(
        ["model", "latest", "aliases", "updated", "description"], body, title=f"Models in {store}", footer=footer
    )


def versions_table(rows: Sequence[VersionRow], more: bool, name: str) -> Table:
    """``%mlops models NAME``: a model's versions with their runs' metrics."""
    body = [
        [
            f"v{r.version}",
            " ".join(f"@{a}" for a in r.aliases or ()),
            _fmt_time(r.created),
            (r.run_id or "")[:12],
            r.notebook,
            _fmt_metrics(r.metrics),
        ]
        for r in rows
    ]
    footer = f"{len(rows)} version(s)" + ("; more exist" if more else "")
    return Table(
        ["version", "aliases", "created", "run", "notebook", "metrics"],
        body,
        title=f"Versions of {name}",
        footer=footer,
    )
