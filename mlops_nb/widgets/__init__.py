"""ipywidgets over the core: a live training chart, the runs table, compare, and the
registry browser.

Every widget degrades to a readable text or HTML table where widgets cannot render
(plain IPython, headless execution, a notebook converted to HTML): its MIME bundle
carries ``text/plain`` and ``text/html`` beside the widget view, and frontends that
render widgets show only the widget.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W

__all__ = ["TABLE_CSS", "FallbackMixin"]

#: Table styling from JupyterLab's theme variables, so it reads in light and dark themes
#: (with plain fallbacks where the variables are not defined, as in VS Code).
TABLE_CSS = """<style>
.mlops-nb-table { border-collapse: collapse; font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, inherit); margin: 4px 0; }
.mlops-nb-table th { text-align: left; font-weight: 600; padding: 4px 10px;
  border-bottom: 1px solid var(--jp-border-color1, #bbb); }
.mlops-nb-table td { padding: 3px 10px; border-bottom: 1px solid var(--jp-border-color3, #eee);
  font-variant-numeric: tabular-nums; }
.mlops-nb-table tbody tr:hover { background: var(--jp-layout-color2, #f4f4f4); }
</style>"""


class FallbackMixin:
    """Adds text and HTML renderings of the widget's current state to its MIME bundle.

    The widget class defines ``fallback_text()`` and ``fallback_html()``.
    """

    fallback_text: Any
    fallback_html: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = W.DOMWidget._repr_mimebundle_(self, **kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        bundle["text/plain"] = self.fallback_text()
        bundle["text/html"] = self.fallback_html()
        return bundle

    def __str__(self) -> str:
        return self.fallback_text()
