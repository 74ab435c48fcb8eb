"""The monitor's report: one self-contained HTML page (inline CSS and SVG, no script, no
external URL) that opens from an MLflow artifact view, a mail attachment or a file.

Per feature, the reference's and the window's histograms are drawn side by side on one
scale of shares (the two sides have different row counts); each bar is an SVG
``rect`` carrying its row count (``data-count``) and a tooltip. Every value that came
from users (feature names, categories, the model's name) is escaped.

:func:`histogram_svg` and :func:`feature_rows` are public so the notebook widget draws
the same pictures from the same rows.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mlops_nb.monitoring.drift import DriftResult, FeatureDrift
    from mlops_nb.monitoring.monitor import MonitorResult

__all__ = [
    "PREDICTION",
    "VERDICT_COLORS",
    "feature_rows",
    "histogram_svg",
    "render_report",
    "score_text",
    "unseen_text",
]

#: The name the prediction's row goes by in tables (brackets: no feature is confused with it).
PREDICTION = "(prediction)"
#: Badge colours of the verdicts (readable on light and dark backgrounds).
VERDICT_COLORS = {
    "healthy": "#1a7f37",
    "drift": "#bf8700",
    "degraded": "#cf222e",
    "insufficient data": "#6e7781",
}
_REFERENCE_COLOR = "#8c959f"
_CURRENT_COLOR = "#0969da"
_DRIFTED_COLOR = "#cf222e"
_esc = html.escape


# ---------------------------------------------------------------- histograms


def histogram_svg(
    reference_hist: Mapping[str, Any] | None,
    current_hist: Mapping[str, Any] | None,
    *,
    width: int = 320,
    height: int = 80,
    drifted: bool = False,
) -> str:
    """An inline ``<svg>`` of two histograms side by side: the reference (left, grey)
    and the current window (right; red when ``drifted``).

    Each histogram is ``{"edges": [...], "counts": [...]}`` (numbers: ``len(edges) ==
    len(counts) + 1``) or ``{"categories": [...], "counts": [...]}``; ``None`` or no
    rows draws "no data". Bars are shares of their side's rows on one scale for both
    sides; each ``rect`` has ``data-count`` (its rows) and a ``<title>`` tooltip.
    """
    gap = 12
    panel = max((width - gap) // 2, 20)
    label_h = 14
    bars_h = max(height - label_h, 10)
    sides = [_bins(reference_hist), _bins(current_hist)]
    # One scale for both sides: the largest share of a bar on either side fills the height.
    top = max((count / _total(bins) for bins in sides if _total(bins) for _, count in bins), default=0.0)
    parts = [
        f'<svg class="mlops-nb-hist" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="reference and current histograms">'
    ]
    colors = (_REFERENCE_COLOR, _DRIFTED_COLOR if drifted else _CURRENT_COLOR)
    for side, (bins, color, cls, x0) in enumerate(zip(sides, colors, ("reference", "current"), (0, panel + gap))):
        parts.append(f'<g class="{cls}">')
        parts += _panel(bins, color, cls, x0, panel, bars_h, top)
        parts.append(
            f'<text x="{x0 + panel / 2:.1f}" y="{height - 3}" text-anchor="middle" font-size="10" '
            f'fill="currentColor">{"reference" if side == 0 else "current"}{_range_label(bins)}</text>'
        )
        parts.append("</g>")
    parts.append("</svg>")  # inline in HTML: no xmlns needed, and no URL of any kind in the page
    return "".join(parts)


def _bins(hist: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """(label, count) a bar."""
    if not hist:
        return []
    counts = [int(c) for c in hist.get("counts") or []]
    if hist.get("categories") is not None:
        labels = [str(c) for c in hist["categories"]]
    elif hist.get("edges") is not None and len(hist["edges"]) == len(counts) + 1:
        edges = hist["edges"]
        last = len(counts) - 1
        labels = [f"[{_num(edges[i])}, {_num(edges[i + 1])}{']' if i == last else ')'}" for i in range(len(counts))]
    else:
        labels = [str(i) for i in range(len(counts))]
    return list(zip(labels, counts))


def _total(bins: Sequence[tuple[str, int]]) -> int:
    return sum(count for _, count in bins)


def _panel(
    bins: Sequence[tuple[str, int]], color: str, cls: str, x0: float, width: float, height: float, top: float
) -> list[str]:
    total = _total(bins)
    if not bins or not total or not top:
        return [
            f'<text x="{x0 + width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" font-size="10" '
            f'fill="currentColor">no data</text>'
        ]
    step = width / len(bins)
    out = [f'<line x1="{x0}" y1="{height:.1f}" x2="{x0 + width}" y2="{height:.1f}" stroke="{_REFERENCE_COLOR}"/>']
    for i, (label, count) in enumerate(bins):
        share = count / total
        h = height * share / top
        if count > 0:
            h = max(h, 1.0)  # a bin with rows is always seen (and its tooltip reachable)
        tip = f"{label}: {count} rows ({share:.1%})"
        out.append(
            f'<rect class="{cls}" x="{x0 + i * step + 0.5:.2f}" y="{height - h:.2f}" '
            f'width="{max(step - 1, 0.5):.2f}" height="{h:.2f}" fill="{color}" data-count="{count}">'
            f"<title>{_esc(tip)}</title></rect>"
        )
    return out


def _range_label(bins: Sequence[tuple[str, int]]) -> str:
    total = _total(bins)
    return f" ({total} rows)" if total else ""


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _esc(str(value))
    return f"{number:.4g}"


# ---------------------------------------------------------------- rows


def feature_rows(result: MonitorResult | DriftResult | None) -> list[dict[str, Any]]:
    """One dict a feature of a monitor result (or a drift result), drifted features
    first, then the prediction (named :data:`PREDICTION`, ``is_prediction`` true).

    Keys: feature, kind, method, score, threshold, drifted, psi, rows,
    missing_reference, missing_current (rates), out_of_range, unseen (category ->
    rows), reference_hist, current_hist, is_prediction. A profiled column no request
    had is a drifted row with method ``missing`` and no histograms. Empty for no result
    or a window without a drift check (insufficient data).
    """
    # A MonitorResult holds its DriftResult (None for too few rows); a DriftResult is one.
    drift: DriftResult | None = getattr(result, "drift", None) if hasattr(result, "verdict") else result
    if drift is None:
        return []
    rows = [_row(f, False) for f in drift.features] + [_missing_row(name) for name in drift.missing_columns]
    rows.sort(key=lambda r: not r["drifted"])  # stable: the profile's order within each group
    if drift.prediction is not None:
        rows.append(_row(drift.prediction, True))
    return rows


def _row(f: FeatureDrift, is_prediction: bool) -> dict[str, Any]:
    return {
        "feature": PREDICTION if is_prediction else f.feature,
        "kind": f.kind,
        "method": f.method,
        "score": f.score,
        "threshold": f.threshold,
        "drifted": bool(f.drifted),
        "psi": f.psi,
        "rows": f.rows,
        "missing_reference": f.missing_reference,
        "missing_current": f.missing_current,
        "out_of_range": f.out_of_range,
        "unseen": dict(f.unseen or {}),
        "reference_hist": f.reference_hist,
        "current_hist": f.current_hist,
        "is_prediction": is_prediction,
    }


def _missing_row(name: str) -> dict[str, Any]:
    """A profiled column no request had: drifted by definition, nothing to draw."""
    return {
        "feature": name,
        "kind": "",
        "method": "missing",
        "score": None,
        "threshold": None,
        "drifted": True,
        "psi": None,
        "rows": 0,
        "missing_reference": 0.0,
        "missing_current": 1.0,
        "out_of_range": 0,
        "unseen": {},
        "reference_hist": None,
        "current_hist": None,
        "is_prediction": False,
    }


def score_text(value: Any) -> str:
    """A score, threshold or PSI as a table shows it ("" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.4g}"


def unseen_text(unseen: Mapping[str, int], limit: int = 5) -> str:
    """Unseen categories with their rows, the most frequent first (``a (3), b (1)``)."""
    items = sorted(unseen.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} ({v})" for k, v in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------- the page

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;background:#fff}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}td,th{border-color:#30363d!important}}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
table{border-collapse:collapse}td,th{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:middle}
tr.drifted td:first-child{font-weight:600;color:#cf222e}.meta td{border:0;padding:1px 12px 1px 0}
.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_report(result: MonitorResult) -> str:
    """The whole report of ``result`` as one HTML document."""
    title = f"monitor {result.name} v{result.version}: {result.verdict}"
    color = VERDICT_COLORS.get(result.verdict, "#6e7781")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(result.name)} v{_esc(result.version)}"
        f"{' @' + _esc(result.alias) if result.alias else ''} "
        f"<span class='badge' style='background:{color}'>{_esc(result.verdict)}</span></h1>",
        f"<p class='reason'>{_esc(result.reason)}</p>",
        _meta_table(result),
        _performance_html(result.performance),
        _notes_html(result.notes),
        _features_html(result),
        f"<h2>Policy</h2><p>{_esc(', '.join(f'{k} = {v}' for k, v in result.policy.items()))}</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _meta_table(result: MonitorResult) -> str:
    drift = result.drift
    items = [
        ("window", f"{result.since or 'the start of the log'} to {result.until}"),
        ("rows", str(result.rows)),
        ("requests", f"{result.requests} ({result.unreadable} unreadable)"),
        ("labelled rows", str(result.labelled)),
        (
            "drifted features",
            _drift_count(result) if drift else "not checked",
        ),
        ("checked at", result.when),
        ("monitor run", result.run_id or "not recorded"),
    ]
    cells = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in items)
    return f"<table class='meta'>{cells}</table>"


def _drift_count(result: MonitorResult) -> str:
    drift = result.drift
    assert drift is not None
    lost = len(drift.missing_columns)
    total = len(drift.features) + lost
    text = f"{len(drift.drifted) + lost} of {total} (share {result.share or 0.0:.0%})"
    return text + (f", {lost} missing from the requests" if lost else "")


def _performance_html(perf: Mapping[str, Any] | None) -> str:
    if not perf:
        return "<h2>Performance</h2><p>No labels fed back for this window's requests (POST /feedback).</p>"
    reference = perf.get("reference")
    versus = (
        f", {_esc(score_text(reference))} at training" if reference is not None else ", no training value to compare"
    )
    return (
        f"<h2>Performance</h2><p class='performance'><b>{_esc(perf['metric'])} "
        f"{_esc(score_text(perf['value']))}</b> on {int(perf['rows'])} labelled rows{versus}.</p>"
    )


def _notes_html(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"


def _features_html(result: MonitorResult) -> str:
    rows = feature_rows(result)
    if not rows:
        return "<h2>Features</h2><p>No drift check: the window has too few rows.</p>"
    header = [
        "feature", "kind", "method", "score", "threshold", "drifted", "PSI",
        "missing (ref → cur)", "out of range", "unseen", "reference | current",
    ]  # fmt: skip
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(_feature_tr(row) for row in rows)
    return f"<h2>Features</h2><table class='features'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _feature_tr(row: Mapping[str, Any]) -> str:
    cells = [
        _esc(str(row["feature"])),
        _esc(str(row["kind"])),
        _esc(str(row["method"])),
        score_text(row["score"]),
        score_text(row["threshold"]),
        "yes" if row["drifted"] else "no",
        score_text(row["psi"]),
        f"{row['missing_reference']:.1%} → {row['missing_current']:.1%}",
        str(row["out_of_range"]),
        _esc(unseen_text(row["unseen"])),
        histogram_svg(row["reference_hist"], row["current_hist"], drifted=row["drifted"]),
    ]
    numeric = {3, 4, 6, 8}
    tds = "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(cells))
    cls = "drifted" if row["drifted"] else "stable"
    return f"<tr class='{cls}' data-feature='{_esc(str(row['feature']), quote=True)}'>{tds}</tr>"
