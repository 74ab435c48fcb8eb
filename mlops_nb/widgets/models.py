"""The registry browser: models, versions, aliases, the source run's metrics, lineage."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..registry import VersionRow, audit_trail, get_model, list_models, list_versions
from . import TABLE_CSS, FallbackMixin

__all__ = ["RegistryBrowser"]


def _versions_html(rows: list[VersionRow]) -> str:
    esc = html.escape
    keys: dict[str, None] = {}
    for r in rows:
        for k in r.metrics:
            keys.setdefault(k, None)
    metric_keys = list(keys)[:5]
    head = "".join(f"<th>{esc(c)}</th>" for c in ["version", "aliases", "created", "run", "notebook", *metric_keys])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(c))}</td>"
            for c in [
                f"v{r.version}",
                " ".join(f"@{a}" for a in r.aliases),
                r.created.astimezone().strftime("%Y-%m-%d %H:%M") if r.created else "",
                (r.run_id or "")[:8],
                r.notebook,
                *[f"{r.metrics[k]:.4g}" if k in r.metrics else "" for k in metric_keys],
            ]
        )
        + "</tr>"
        for r in rows
    )
    return TABLE_CSS + f"<table class='mlops-nb-table mlops-nb-versions'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class RegistryBrowser(FallbackMixin, W.VBox):
    """Pick a model to see its versions; pick a version to see its lineage and alias history."""

    def __init__(self, client: Any, name: str | None = None, **kwargs: Any) -> None:
        self.client = client
        models, self.more = list_models(client, max_results=1000)
        self.models = models
        names = [m.name for m in models]
        if name and name not in names:
            get_model(client, name)  # raises NotFoundError naming the known models
            names.append(name)  # it exists beyond the first 1,000
        self.model = W.Dropdown(options=names, value=name if name in names else (names[0] if names else None), description="model")
        self.version = W.Dropdown(options=[], description="version")
        self.versions_html = W.HTML()
        self.detail = W.HTML()
        self.versions: list[VersionRow] = []
        self.model.observe(lambda _c: self._show_model(), names="value")
        self.version.observe(lambda _c: self._show_version(), names="value")
        empty = W.HTML(
            "<p>No registered models yet. Register one from a cell: "
            "<code>%mlops register model --name NAME --alias challenger</code></p>"
        )
        super().__init__([self.model, self.versions_html, self.version, self.detail] if names else [empty], **kwargs)
        self._show_model()

    def _show_model(self) -> None:
        if not self.model.value:
            self.versions = []
            return
        self.versions, _ = list_versions(self.client, self.model.value, max_results=200)
        self.versions_html.value = _versions_html(self.versions)
        self.version.options = [(f"v{v.version} {' '.join('@' + a for a in v.aliases)}".strip(), v.version) for v in self.versions]
        self._show_version()

    def _show_version(self) -> None:
        if not self.version.value:
            self.detail.value = ""
            return
        esc = html.escape
        mv = self.client.get_model_version(self.model.value, self.version.value)
        lineage = {k.split(".", 1)[1]: v for k, v in mv.tags.items() if k.startswith("mlops_nb.") and not k.startswith("mlops_nb.audit.")}
        rows = "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(v)}</code></td></tr>" for k, v in sorted(lineage.items()))
        trail = "".join(
            f"<li>{esc(e.get('when', ''))}: {esc(e.get('action', ''))} @{esc(e.get('alias', ''))} "
            f"({esc(str(e.get('from_version')))} → {esc(str(e.get('to_version')))}) by {esc(e.get('who', ''))}: {esc(e.get('why', ''))}</li>"
            for e in audit_trail(self.client, self.model.value, self.version.value)
        )
        ref = f"models:/{self.model.value}/{self.version.value}"
        self.detail.value = (
            f"<p><b>{esc(self.model.value)} v{esc(str(self.version.value))}</b> · load: <code>{esc(ref)}</code></p>"
            f"<table class='mlops-nb-table'><tbody>{rows}</tbody></table>"
            + (f"<p><b>alias history</b></p><ul>{trail}</ul>" if trail else "")
        )

    def fallback_text(self) -> str:
        from ..tables import models_table, versions_table

        if not self.models:
            return str(models_table([], False, self.client.tracking_uri))
        return str(models_table(self.models, self.more, self.client.tracking_uri)) + "\n\n" + str(
            versions_table(self.versions, False, self.model.value)
        )

    def fallback_html(self) -> str:
        return self.versions_html.value + self.detail.value
