"""Sphinx extension: the claims-ledger table, rendered from what the chapters measured.

Chapters record claims with `qklab.ledger.claim(...)` while they execute (Sphinx's read phase),
which writes `_build/claims/<chapter>.json`. The directive

    ```{claims-ledger}
    ```

leaves a placeholder; after every document has been read (so every chapter has executed), the
`doctree-resolved` event replaces it with a table. The page holding the directive is marked
outdated on every build, so the table always shows the latest measurements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from qklab.ledger import load_claims


class claims_ledger_placeholder(nodes.General, nodes.Element):
    """Replaced by the table in `doctree-resolved`."""


class ClaimsLedgerDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        docs = getattr(self.env, "claims_ledger_docs", set())
        docs.add(self.env.docname)
        self.env.claims_ledger_docs = docs
        return [claims_ledger_placeholder()]


def _cell(content: nodes.Node | str) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=content)
    return entry


def _table(app: Any, fromdocname: str) -> nodes.Node:
    folder = Path(app.srcdir) / "_build" / "claims"
    claims = load_claims(folder) if folder.is_dir() else []
    if not claims:
        return nodes.paragraph(text="No claims were recorded in this build.")
    headers = ["Claim", "Source", "Chapter", "Measured", "Expected", "Verdict"]
    table, group = nodes.table(classes=["claims-ledger"]), nodes.tgroup(cols=len(headers))
    table += group
    for width in (40, 12, 14, 10, 14, 10):
        group += nodes.colspec(colwidth=width)
    head, row = nodes.thead(), nodes.row()
    for title in headers:
        row += _cell(title)
    head += row
    group += head
    body = nodes.tbody()
    for c in claims:
        link = nodes.paragraph()
        target = f"chapters/{c.chapter}"
        if target in app.env.found_docs:
            uri = app.builder.get_relative_uri(fromdocname, target)
            link += nodes.reference(text=c.chapter, refuri=uri, internal=True)
        else:
            link += nodes.Text(c.chapter)
        row = nodes.row()
        for content in (c.statement, c.source, link, c.measured, c.expected, "holds" if c.holds else "does not hold"):
            row += _cell(content)
        body += row
    group += body
    held = sum(c.holds for c in claims)
    summary = nodes.paragraph(text=f"{len(claims)} claims recorded in this build; {held} hold, {len(claims) - held} do not.")
    return nodes.container("", summary, table)


def _resolve(app: Any, doctree: nodes.document, docname: str) -> None:
    for node in doctree.findall(claims_ledger_placeholder):
        node.replace_self(_table(app, docname))


def _always_outdated(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
    return sorted(getattr(env, "claims_ledger_docs", set()) - removed)


def _purge(app: Any, env: Any, docname: str) -> None:
    getattr(env, "claims_ledger_docs", set()).discard(docname)


def setup(app: Any) -> dict:
    app.add_node(claims_ledger_placeholder)
    app.add_directive("claims-ledger", ClaimsLedgerDirective)
    app.connect("doctree-resolved", _resolve)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-purge-doc", _purge)
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
