"""The registry browser: models, versions, aliases, the source run's metrics, lineage.

Aliases move from elsewhere (the panel, another kernel, the CLI, ``%mlops alias`` in
this kernel), so the browser keeps up by itself: once it is shown, a thread of the
kernel compares the model's aliases and last update with what is drawn every
``poll_s`` seconds (one registry read) and redraws only when they differ; widgets send
their updates from a thread as :mod:`mlops_nb.widgets.job` does, so this works while
another cell runs. Only the :data:`POLLED` most recently shown browsers check (a
re-run cell leaves its old browser behind), and a closed one stops. The Refresh button
rereads everything at once.

(A browser-side timer would stop with the page, but ipywidgets' ``Play`` starts only
when its view sees ``playing`` change, which a kernel cannot time with the view's
creation.)
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

import ipywidgets as W

from mlops_nb.exceptions import MlopsError, one_line
from mlops_nb.registry import VersionRow, get_model, list_models, list_versions, version_detail
from mlops_nb.tables import models_table, versions_table
from mlops_nb.widgets import TABLE_CSS, FallbackMixin

__all__ = ["POLLED", "RegistryBrowser", "key_metrics"]

#: How many of the most recently shown browsers keep checking for changes.
POLLED = 4
_polled: deque[RegistryBrowser] = deque(maxlen=POLLED)

esc = html.escape

# Held-out scores first (test, then validation), then metrics naming no split, training
# scores last; within a split, quality scores before losses. The panel ranks the same
# way (labextension/src/metrics.ts), so both show the same few metrics first.
_SPLITS = [
    re.compile(r"(^|[^a-z])(test|holdout)([^a-z]|$)", re.I),
    re.compile(r"(^|[^a-z])(val|valid|validation|eval)([^a-z]|$)", re.I),
    re.compile(r"(^|[^a-z])(train|training)([^a-z]|$)", re.I),
]
_QUALITY = re.compile(r"accuracy|auc|f1|precision|recall|r2|score", re.I)
_LOSS = re.compile(r"loss|rmse|mae|mse|error|logloss", re.I)


def _rank(key: str) -> tuple[int, int, str]:
    split = 0 if _SPLITS[0].search(key) else 1 if _SPLITS[1].search(key) else 3 if _SPLITS[2].search(key) else 2
    return split, 0 if _QUALITY.search(key) else 1 if _LOSS.search(key) else 2, key


def key_metrics(metrics: dict[str, float], count: int = 3) -> list[str]:
    """The ``count`` metric names most worth a column, most telling first."""
    return sorted(metrics, key=_rank)[:count]


#: Alias badges, and a versions table that scrolls inside the cell instead of past it.
BROWSER_CSS = """<style>
.mlops-nb-models .mlops-nb-scroll { overflow-x: auto; max-width: 100%; }
.mlops-nb-models .mlops-nb-versions td { white-space: nowrap; }
.mlops-nb-models .mlops-nb-versions th { white-space: nowrap; vertical-align: bottom; line-height: 1.3; }
.mlops-nb-models .mlops-nb-versions th.mlops-nb-metric { white-space: normal; max-width: 11em; }
.mlops-nb-models .mlops-nb-versions td.mlops-nb-path { max-width: 18em; overflow: hidden; text-overflow: ellipsis; }
.mlops-nb-alias { display: inline-block; padding: 0 6px; margin-right: 4px; border-radius: 8px;
  font-size: var(--jp-ui-font-size0, 11px); line-height: 16px;
  color: var(--jp-ui-inverse-font-color1, white); background: var(--jp-brand-color1, #1976d2); }
.mlops-nb-models .mlops-nb-lineage td:first-child { color: var(--jp-ui-font-color2, gray); white-space: nowrap; }
.mlops-nb-models .mlops-nb-lineage td { vertical-align: top; }
.mlops-nb-models .mlops-nb-muted { color: var(--jp-ui-font-color2, gray); }
.mlops-nb-models ul.mlops-nb-history { margin: 2px 0; padding-left: 18px; }
</style>"""


def _badges(aliases: Any) -> str:
    return "".join(f"<span class='mlops-nb-alias'>@{esc(a)}</span>" for a in aliases or ())


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else ""


def _versions_html(rows: list[VersionRow]) -> str:
    metrics: dict[str, float] = {}
    for r in rows:
        metrics.update({k: v for k, v in r.metrics.items() if k not in metrics})
    keys = key_metrics(metrics)
    # Long metric names wrap after their underscores, not mid-word, and not past the cell.
    head = "".join(f"<th>{esc(c)}</th>" for c in ["version", "aliases", "created", "notebook"]) + "".join(
        f"<th class='mlops-nb-metric'>{esc(k).replace('_', '_<wbr>')}</th>" for k in keys
    )
    body = "".join(
        f"<tr><td>v{esc(r.version)}</td><td>{_badges(r.aliases)}</td><td>{_when(r.created)}</td>"
        f"<td class='mlops-nb-path' title='{esc(r.notebook)}'>{esc(r.notebook)}</td>"
        + "".join(f"<td>{r.metrics[k]:.4g}</td>" if k in r.metrics else "<td>—</td>" for k in keys)
        + "</tr>"
        for r in rows
    )
    return (
        TABLE_CSS + BROWSER_CSS + "<div class='mlops-nb-scroll'><table class='mlops-nb-table mlops-nb-versions'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


_LINEAGE_LABELS = {
    "run_id": "source run",
    "notebook": "notebook",
    "git.commit": "git commit",
    "git.branch": "git branch",
    "git.dirty": "uncommitted changes",
    "flavor": "flavor",
    "params": "params",
}


def _lineage_value(key: str, value: str) -> str:
    if key == "params":  # a JSON object on the tag: shown as name = value
        try:
            params = json.loads(value)
            return " · ".join(f"{esc(k)} = <code>{esc(str(v))}</code>" for k, v in params.items())
        except (ValueError, AttributeError):
            pass
    if key == "git.dirty":
        return {"true": "yes (the run recorded a diff)", "false": "no"}.get(value, esc(value))
    return f"<code>{esc(value)}</code>"


def _event_html(e: dict[str, Any]) -> str:
    was, now = e.get("from_version"), e.get("to_version")
    moved = f"from v{was}" if now is None else (f"v{was} → v{now}" if was else f"→ v{now}")
    why = f": {esc(str(e['why']))}" if e.get("why") else ""
    return f"<li>{esc(_when(e.get('when')))}: {esc(str(e.get('action', '')))} @{esc(str(e.get('alias', '')))} ({moved}) by {esc(str(e.get('who', '')))}{why}</li>"


def _detail_html(d: dict[str, Any]) -> str:
    """One version as :func:`mlops_nb.registry.version_detail` gives it."""
    alias = "champion" if "champion" in d["aliases"] else (d["aliases"] or [None])[0]
    ref = f"models:/{d['name']}@{alias}" if alias else d["load"]
    order = list(_LINEAGE_LABELS)
    lineage = sorted(d["lineage"].items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
    rows = "".join(
        f"<tr><td>{esc(_LINEAGE_LABELS.get(k, k))}</td><td>{_lineage_value(k, v)}</td></tr>" for k, v in lineage
    )
    metrics = " · ".join(f"{esc(k)} = {d['metrics'][k]:.4g}" for k in key_metrics(d["metrics"], len(d["metrics"])))
    history = "".join(_event_html(e) for e in reversed(d["audit"]))  # newest first
    return (
        f"<p><b>{esc(d['name'])} v{esc(d['version'])}</b> {_badges(d['aliases'])}"
        f"<span class='mlops-nb-muted'> · registered {_when(d['created'])} · load: </span>"
        f"<code>mnb.load({esc(json.dumps(ref))})</code></p>"
        + (f"<p>{esc(d['description'])}</p>" if d["description"] else "")
        + f"<table class='mlops-nb-table mlops-nb-lineage'><tbody>{rows}</tbody></table>"
        + (f"<p><b>metrics</b> <span>{metrics}</span></p>" if metrics else "")
        + (f"<p><b>alias history</b></p><ul class='mlops-nb-history'>{history}</ul>" if history else "")
    )


class RegistryBrowser(FallbackMixin, W.VBox):
    """Pick a model to see its versions; pick a version to see its lineage and alias history.

    Keeps up with alias moves made elsewhere (see the module docstring); ``poll_s`` is
    the check's period while the browser is shown (0 turns the check off).
    """

    def __init__(self, client: Any, name: str | None = None, poll_s: float = 10.0, **kwargs: Any) -> None:
        self.client = client
        self.poll_s = poll_s
        self.model = W.Dropdown(description="model", layout=W.Layout(width="auto", max_width="100%"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.note = W.HTML()
        self.versions_html = W.HTML(layout=W.Layout(max_width="100%"))
        self.version = W.Dropdown(description="version", layout=W.Layout(width="auto", max_width="100%"))
        self.prompt = W.HTML(
            "<span class='mlops-nb-muted'>Choose a version to see its lineage, metrics and alias history.</span>"
        )
        self.detail = W.HTML(layout=W.Layout(max_width="100%"))
        self.models: list[Any] = []
        self.more = False
        self.versions: list[VersionRow] = []
        self._seen: Any = False
        # The checking thread and a person's choices both redraw: one at a time.
        self._lock = threading.RLock()
        self._poller: threading.Thread | None = None
        # A person's choice redraws; the browser's own updates of the choices do not.
        self._quiet: int | None = None
        self.model.observe(self._model_chosen, names="value")
        self.version.observe(self._version_chosen, names="value")
        self._top = W.HBox(
            [self.model, self.refresh_button, self.note], layout=W.Layout(align_items="center", flex_flow="row wrap")
        )
        self._choose = W.HBox([self.version, self.prompt], layout=W.Layout(align_items="center", flex_flow="row wrap"))
        self._empty = W.HBox(
            [
                W.HTML(
                    TABLE_CSS + BROWSER_CSS + "<p>No registered models yet. Register one from a cell: "
                    "<code>%mlops register model --name NAME --alias challenger</code>; it shows here by itself.</p>"
                ),
                self.refresh_button,
            ],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )
        super().__init__(layout=W.Layout(width="100%", max_width="100%"), **kwargs)
        self.add_class("mlops-nb-models")
        self._load_models(name)

    def _load_models(self, name: str | None, note: str = "") -> None:
        """Read the models (keeping ``name`` chosen) and lay the browser out for them."""
        self.models, self.more = list_models(self.client, max_results=1000)
        names = [m.name for m in self.models]
        if name and name not in names:
            get_model(self.client, name)  # raises NotFoundError naming the known models
            names.append(name)  # it exists beyond the first 1,000
        if not names:
            self.children = [self._empty]
            return
        self.children = [self._top, self.versions_html, self._choose, self.detail]
        self._quiet = threading.get_ident()
        try:
            self.model.options = names
            self.model.value = name if name in names else names[0]
        finally:
            self._quiet = None
        self._show_model(note)

    def _signature(self) -> Any:
        """What the periodic check compares: the model's aliases and last update (with no
        model yet: whether one exists now)."""
        if not self.model.value:
            return bool(list(self.client.search_registered_models(max_results=1)))
        m = self.client.get_registered_model(self.model.value)
        return tuple(sorted((a, str(v)) for a, v in m.aliases.items())), m.last_updated_timestamp

    def check(self) -> bool:
        """Redraw if the model changed since drawn (its aliases moved, a version came);
        True when it did."""
        with self._lock:
            try:
                if self._signature() == self._seen:
                    return False
                self.refresh(note="changed elsewhere; redrawn at")
            except Exception as exc:  # the store is away: say so, try again at the next check
                self.note.value = (
                    "<span style='color:var(--jp-error-color1, #c00)'>"
                    f"cannot read the registry: {esc(one_line(exc))}</span>"
                )
                return False
            return True

    def refresh(self, note: str = "") -> None:
        """Reread the models, the chosen model's versions and the chosen version."""
        with self._lock:
            try:
                self._load_models(self.model.value or None, note)
            except MlopsError:  # the chosen model was deleted meanwhile
                self._load_models(None, note)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        self._start_checking()
        return super()._repr_mimebundle_(**kwargs)

    def _start_checking(self) -> None:
        if self.poll_s <= 0 or self._poller is not None:
            return
        _polled.append(self)  # the oldest of POLLED + 1 drops out, and its thread ends
        self._poller = threading.Thread(target=self._check_periodically, name="mlops-nb-models-check", daemon=True)
        self._poller.start()

    def _check_periodically(self) -> None:
        while True:
            time.sleep(self.poll_s)
            if self.comm is None or self not in _polled:  # closed, or superseded
                return
            self.check()

    def _choosing(self) -> bool:
        """True while this thread is setting the choices itself (not a person choosing)."""
        return self._quiet == threading.get_ident()

    def _model_chosen(self, _change: Any) -> None:
        if not self._choosing():
            self._show_model()

    def _version_chosen(self, _change: Any) -> None:
        if not self._choosing():
            self._show_version()

    def _show_model(self, note: str = "") -> None:
        with self._lock:
            self._draw_model(note)

    def _draw_model(self, note: str) -> None:
        if not self.model.value:
            self.versions = []
            return
        self._seen = self._signature()
        self.versions, _ = list_versions(self.client, self.model.value, max_results=200)
        self.versions_html.value = _versions_html(self.versions)
        chosen = self.version.value
        options = [
            (f"v{v.version} {' '.join('@' + a for a in v.aliases or ())}".strip(), v.version) for v in self.versions
        ]
        self._quiet = threading.get_ident()
        try:
            self.version.options = options
            # The version shown stays shown; first time (or gone): the newest.
            self.version.value = chosen if chosen in [v for _, v in options] else (options[0][1] if options else None)
        finally:
            self._quiet = None
        stamp = datetime.now().strftime("%H:%M:%S")
        self.note.value = f"<span class='mlops-nb-muted'>{esc(note or 'as of')} {stamp}</span>"
        self._show_version()

    def _show_version(self) -> None:
        with self._lock:
            if not self.version.value:
                self.detail.value = ""
                return
            self.detail.value = _detail_html(version_detail(self.client, self.model.value, str(self.version.value)))

    def fallback_text(self) -> str:
        if not self.models:
            return str(models_table([], False, self.client.tracking_uri))
        return (
            str(models_table(self.models, self.more, self.client.tracking_uri))
            + "\n\n"
            + str(versions_table(self.versions, False, self.model.value))
        )

    def fallback_html(self) -> str:
        return self.versions_html.value + self.detail.value
