"""Sphinx helpers for the qklab book (loaded through `sphinx.local_extensions` in _config.yml).

What it does: (1) serves plotly.js from the built site instead of a CDN. At the start of an HTML build
it writes `plotly.offline.get_plotlyjs()` to `<outdir>/_static/qklab-offline/plotly.min.js`, and it adds
that script only to pages whose body contains a plotly figure (`class="plotly-graph-div"`), so
other pages do not load 4 MB of JavaScript. (2) Removes repeated identical scripts from a page
(sphinx-thebe's configuration is emitted twice by Jupyter Book 1.0.4, a browser console error).
(3) Drops the ipywidgets manager (require.js and embed-amd.js, from CDNs by default) and the widget
state from pages that display no widget, e.g. chapters whose live explorers sit in `remove-cell`
cells.

How a chapter shows a plotly figure that works in the static book with no network:
`IPython.display.HTML(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False))`.
(A bare `fig.show()` yields plotly's own MIME type, which the book does not render.)

Not in here: anything about the science; the package `qklab` does not import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTLY_JS = "qklab-offline/plotly.min.js"  # relative to _static/ in the built site
_PLOTLY_MARKER = "plotly-graph-div"


def _write_plotly_js(app: Any) -> None:
    if app.builder.format != "html":
        return
    import plotly.offline

    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    text = plotly.offline.get_plotlyjs()
    # Rewrite only when it changed, so incremental builds keep file times.
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def _script_key(js: Any) -> tuple:
    # Sphinx 7 wraps each script in `_JavaScript(filename, priority, attributes)`; older
    # versions use plain strings. Two entries are the same script when file and attributes
    # (inline body included) agree, whatever their priority.
    filename = getattr(js, "filename", js) or ""
    attributes = getattr(js, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(context: dict) -> None:
    """Drop repeated identical <script> entries of a page.

    With Jupyter Book 1.0.4 and sphinx-thebe 0.3.1, every page carries sphinx-thebe's inline
    `const THEBE_JS_URL = ...` script twice, and the browser stops at the second with
    "Identifier 'THEBE_JS_URL' has already been declared". Identical entries are redundant.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set = set()
    unique = []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _add_plotly_to_page(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    _dedupe_scripts(context)
    body = context.get("body") or ""
    if _PLOTLY_MARKER in body:
        # Priority below the default (500) so plotly loads before require.js (if a page has
        # widgets): loaded after require.js, plotly registers as an AMD module, not as `Plotly`.
        app.add_js_file(PLOTLY_JS, priority=200)


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _drop_unused_widget_js(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Leave out the widget manager on pages that display no widget.

    A notebook whose cells create ipywidgets carries their state, and myst-nb then adds to its page
    the state and the scripts of `nb_ipywidgets_js` (by default require.js and the widget manager,
    from public CDNs). The explorers' live widgets sit in `remove-cell` cells: the page shows no
    widget, so those scripts would only be network requests, failing offline. They are dropped
    from every page whose body holds no widget view; pages that show a widget keep them.
    """
    body = context.get("body") or ""
    scripts = context.get("script_files")
    if _WIDGET_VIEW in body or not isinstance(scripts, list):
        return
    loaders = {str(path) for path in (getattr(app.config, "nb_ipywidgets_js", None) or {})}

    def is_widget_js(js: Any) -> bool:
        attributes = getattr(js, "attributes", {}) or {}
        return attributes.get("type") == _WIDGET_STATE or str(getattr(js, "filename", js) or "") in loaders

    scripts[:] = [js for js in scripts if not is_widget_js(js)]


def setup(app: Any) -> dict:
    app.connect("builder-inited", _write_plotly_js)
    app.connect("html-page-context", _add_plotly_to_page)
    # After myst-nb's own handler (default priority 500), which adds the widget scripts.
    app.connect("html-page-context", _drop_unused_widget_js, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
