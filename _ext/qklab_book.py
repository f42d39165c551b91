"""Sphinx helpers for the qklab book (loaded through `sphinx.local_extensions` in _config.yml).

What it does:

1. Serves plotly.js from the built site instead of a CDN. At the start of an HTML build it writes
   `plotly.offline.get_plotlyjs()` to `<outdir>/_static/qklab-offline/plotly.min.js`, and it adds
   that script, with `defer`, only to pages whose body contains a plotly figure
   (`class="plotly-graph-div"`), so other pages do not load 4.8 MB of JavaScript and no page
   waits for it before showing its text. A deferred script runs after the page is parsed, so the
   inline scripts of the page that call `Plotly` (plotly's `Plotly.newPlot(...)`, an explorer's
   "plotly.js did not load" check) are wrapped to run on `DOMContentLoaded`, which fires after
   deferred scripts have run.
2. Removes repeated identical scripts from a page (sphinx-thebe's configuration is emitted twice
   by Jupyter Book 1.0.4, a browser console error).
3. Drops the ipywidgets manager (require.js and embed-amd.js, from CDNs by default) and the widget
   state from pages that display no widget, e.g. chapters whose live explorers sit in
   `remove-cell` cells.
4. Launch buttons (Colab, Binder) and repository links only when `repository.url` in
   `_config.yml` is set (README, "Colab and Binder"); otherwise the site shows none, so that no link
   points at a repository that does not exist.
5. Removes the `# BEGIN SOLUTION` / `# END SOLUTION` marker lines (see `qklab.exercises`) from
   the code of cells tagged `solution` as the book shows them. The chapter notebooks keep them:
   `make exercises` turns the marked blocks into the learner's stubs.

How a chapter shows a plotly figure that works in the static book with no network:
`IPython.display.HTML(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False))`.
(A bare `fig.show()` yields plotly's own MIME type, which the book does not render.)

6. Dataclass signatures in the API reference show each `default_factory`'s value instead of
   autodoc's `= <factory>`.

Not in here: anything about the science; the package `qklab` does not import this module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes

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


# An inline script (no `src`) of the page body, and whether it uses the `Plotly` global (not
# `window.PlotlyConfig`, which plotly reads when it loads and must stay where it is).
_INLINE_SCRIPT = re.compile(r"<script(?P<attrs>(?:(?!\bsrc=)[^>])*)>(?P<code>.*?)</script>", re.DOTALL)
_USES_PLOTLY = re.compile(r"\bPlotly\.|\bwindow\.Plotly\b|typeof\s+Plotly\b")
_ON_READY = 'document.addEventListener("DOMContentLoaded", function () {%s\n});'


def defer_plotly_calls(body: str) -> tuple[str, int]:
    """Wrap every inline script of `body` that uses `Plotly` to run on `DOMContentLoaded`.

    Returns the new body and the number of scripts wrapped. Scripts with a `type` other than
    JavaScript (JSON data, widget state) are left alone.
    """
    count = 0

    def wrap(match: re.Match) -> str:
        nonlocal count
        attrs, code = match.group("attrs"), match.group("code")
        kind = re.search(r"""type=["']?([^"'\s>]+)""", attrs)
        if kind and kind.group(1) not in ("text/javascript", "application/javascript", "module"):
            return match.group(0)
        if not _USES_PLOTLY.search(code):
            return match.group(0)
        count += 1
        return f"<script{attrs}>{_ON_READY % code}</script>"

    return _INLINE_SCRIPT.sub(wrap, body), count


def _add_plotly_to_page(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    _dedupe_scripts(context)
    body = context.get("body") or ""
    if _PLOTLY_MARKER not in body:
        return
    if _WIDGET_VIEW in body:
        # A page that shows ipywidgets loads require.js; plotly loaded after it registers as an
        # AMD module instead of `window.Plotly`. Such a page loads plotly first, not deferred.
        app.add_js_file(PLOTLY_JS, priority=200)
        return
    context["body"], _ = defer_plotly_calls(body)
    app.add_js_file(PLOTLY_JS, priority=200, defer="defer")


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


_REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button")


def _launch_buttons_need_a_repository(app: Any, config: Any) -> None:
    """No launch button and no repository link unless `repository.url` is set in `_config.yml`.

    Jupyter Book passes `repository.url` to the theme as `html_theme_options["repository_url"]`.
    When it is empty the launch buttons (whose targets are built from it) and the repository
    buttons are switched off. A set address must be a full `https://` URL.
    """
    options = config.html_theme_options
    url = str(options.get("repository_url") or "").strip()
    if url:
        if not url.startswith("https://"):
            raise ValueError(f"repository.url in _config.yml must be an https:// address, got {url!r}")
        return
    options.pop("repository_url", None)
    options.pop("launch_buttons", None)
    for key in _REPOSITORY_BUTTONS:
        options[key] = False


_SOLUTION_TAG = "solution"
# The marker lines of `qklab.exercises` (a hint may follow BEGIN SOLUTION after a colon).
_MARKER_LINE = re.compile(r"^[ \t]*#\s*(BEGIN SOLUTION(\s*:.*)?|END SOLUTION)\s*$")


def strip_solution_markers(code: str) -> str:
    """`code` without its `# BEGIN SOLUTION...` and `# END SOLUTION` lines."""
    return "\n".join(line for line in code.split("\n") if not _MARKER_LINE.match(line))


def _hide_solution_markers(app: Any, doctree: nodes.document) -> None:
    """Remove the marker lines from the code shown for each notebook cell tagged `solution`."""
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") != "cell_code":
            continue
        if _SOLUTION_TAG not in (cell.get("cell_metadata") or {}).get("tags", []):
            continue
        for block in cell.findall(nodes.literal_block):
            code = block.astext()
            cleaned = strip_solution_markers(code)
            if cleaned != code:
                block.children = []
                block += nodes.Text(cleaned)
                block.rawsource = cleaned


# `name=<factory>`, `name: type = <factory>`, `name: 'quoted type' = <factory>`
_FACTORY = re.compile(r"""\b(?P<name>\w+)(?P<annotation>\s*:\s*(?:'[^']*'|"[^"]*"|[^=,()'"]+(?:\[[^\]]*\])?))?\s*=\s*<factory>""")


def factory_defaults(obj: Any, signature: str) -> str:
    """`signature` with each dataclass field's `= <factory>` replaced by the value its factory makes.

    autodoc writes a field declared with `field(default_factory=...)` as `name: type = <factory>`;
    a reader wants the default itself (`metrics: tuple = ('entropy',)`). A factory that fails, or
    whose value has a long repr, is shown as `name: type = (made per instance)`.
    """
    import dataclasses

    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return signature
    factories = {f.name: f.default_factory for f in dataclasses.fields(obj) if f.default_factory is not dataclasses.MISSING}

    def default(match: re.Match) -> str:
        head = match.group(0)[: -len("<factory>")]
        factory = factories.get(match.group("name"))
        try:
            text = repr(factory()) if factory else ""
        except Exception:  # noqa: BLE001 - any failure: say what the default is instead
            text = ""
        return head + (text if text and len(text) <= 60 else "(made per instance)")

    return _FACTORY.sub(default, signature)


def _show_factory_defaults(app: Any, what: str, name: str, obj: Any, options: Any, signature: str, return_annotation: str):
    if what == "class" and signature:
        return factory_defaults(obj, signature), return_annotation
    return None


def setup(app: Any) -> dict:
    app.connect("config-inited", _launch_buttons_need_a_repository)
    app.connect("autodoc-process-signature", _show_factory_defaults)
    app.connect("doctree-read", _hide_solution_markers)
    app.connect("builder-inited", _write_plotly_js)
    app.connect("html-page-context", _add_plotly_to_page)
    # After myst-nb's own handler (default priority 500), which adds the widget scripts.
    app.connect("html-page-context", _drop_unused_widget_js, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
