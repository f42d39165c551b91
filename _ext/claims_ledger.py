"""Sphinx extension: the claims ledger (appendix/3_claims_ledger.md), rendered from what the chapters measured.

Chapters record claims with `qklab.ledger.claim(...)` while they execute (Sphinx's read phase),
which writes `_build/claims/<chapter>.json`. The directive

    ```{claims-ledger}
    ```

leaves a placeholder; after every document has been read (so every chapter has executed), the
`doctree-resolved` event replaces it with one part of the ledger, named by the directive's
argument (the page puts its own headings between them):

- `summary`: how many claims, how many predictions and quoted numbers, how many of each hold,
  and how many claims named in the chapters' code did not run (a cell before them failed);
- `failed`: every claim that did not hold (chapter, statement, measured, expected), so that the
  failed predictions are seen first, then every claim that did not run;
- `table`: all claims, one row each, in four columns that fit the text column (claim with its
  kind and source; chapter as "3. Rank collapse", linked; measured and expected; verdict). Rows
  that do not hold carry the class `qklab-claim-fails` (marked in `_static/qklab.css`); long
  numbers wrap instead of being clipped.

The page holding the directive is marked outdated on every build, so it always shows the latest
measurements. Not in here: what a claim is (`qklab.ledger`), the page's explanatory text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from qklab.ledger import Claim, claims_in_code, claims_not_run, load_claims

KIND_LABEL = {"prediction": "Prediction", "quoted": "Quoted number"}


PARTS = ("summary", "failed", "table")


class claims_ledger_placeholder(nodes.General, nodes.Element):
    """Replaced by one part of the ledger (`part` attribute) in `doctree-resolved`."""


class ClaimsLedgerDirective(SphinxDirective):
    has_content = False
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        part = self.arguments[0].strip()
        if part not in PARTS:
            raise self.error(f"claims-ledger: the argument must be one of {PARTS}, got {part!r}")
        docs = getattr(self.env, "claims_ledger_docs", set())
        docs.add(self.env.docname)
        self.env.claims_ledger_docs = docs
        return [claims_ledger_placeholder(part=part)]


def _paragraph(*parts: nodes.Node | str, classes: list[str] | None = None) -> nodes.paragraph:
    para = nodes.paragraph(classes=classes or [])
    for part in parts:
        para += part if isinstance(part, nodes.Node) else nodes.Text(part)
    return para


def _cell(*paragraphs: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    for para in paragraphs:
        entry += para
    return entry


def chapter_title(app: Any, docname: str) -> str:
    """'3. Rank collapse': the chapter's number in the table of contents (if any) and its title."""
    title = app.env.titles[docname].astext() if docname in app.env.titles else docname
    number = app.env.toc_secnumbers.get(docname, {}).get("")
    return f"{'.'.join(map(str, number))}. {title}" if number else title


def _chapter_link(app: Any, fromdocname: str, chapter: str) -> nodes.paragraph:
    """The chapter (or appendix: `chapter` is the notebook's file stem) as a link to its page."""
    target = next((t for t in (f"chapters/{chapter}", f"appendix/{chapter}") if t in app.env.found_docs), None)
    if target is None:
        return _paragraph(chapter)
    uri = app.builder.get_relative_uri(fromdocname, target)
    return _paragraph(nodes.reference("", chapter_title(app, target), refuri=uri, internal=True))


_CHAPTER_WORDS = re.compile(r"\b([Cc]hapters?) (\d+)\b")


def _chapters_by_number(app: Any) -> dict[int, str]:
    """{3: "chapters/03_rank_collapse", ...}: the numbered chapters of the table of contents."""
    found = {}
    for docname, numbers in app.env.toc_secnumbers.items():
        number = numbers.get("")
        if docname.startswith("chapters/") and number and len(number) == 1:
            found[number[0]] = docname
    return found


def _linked_text(app: Any, fromdocname: str, text: str) -> list[nodes.Node]:
    """`text` with every "chapter N" linked to chapter N (claim statements are plain strings)."""
    chapters = _chapters_by_number(app)
    parts: list[nodes.Node] = []
    at = 0
    for match in _CHAPTER_WORDS.finditer(text):
        target = chapters.get(int(match.group(2)))
        if target is None:
            continue
        parts.append(nodes.Text(text[at:match.start()]))
        uri = app.builder.get_relative_uri(fromdocname, target)
        parts.append(nodes.reference("", match.group(0), refuri=uri, internal=True))
        at = match.end()
    parts.append(nodes.Text(text[at:]))
    return parts


def _verdict(c: Claim) -> nodes.paragraph:
    if c.holds:
        return _paragraph(nodes.strong(text="✔ holds"), classes=["qklab-verdict-holds"])
    return _paragraph(nodes.strong(text="✘ does not hold"), classes=["qklab-verdict-fails"])


def _summary(claims: list[Claim], not_run: list[tuple[str, str]]) -> nodes.paragraph:
    def count(kind: str) -> tuple[int, int]:
        rows = [c for c in claims if c.kind == kind]
        return len(rows), sum(not c.holds for c in rows)

    n_pred, failed_pred = count("prediction")
    n_quoted, failed_quoted = count("quoted")
    quoted = (
        "all within their bands" if not failed_quoted
        else f"{failed_quoted} outside {'its band' if failed_quoted == 1 else 'their bands'} (the build should have stopped there)"
    )
    return _paragraph(
        nodes.strong(text=f"{len(claims)} claims"),
        f" recorded in this build: {n_pred} predictions, of which {n_pred - failed_pred} hold and ",
        nodes.strong(text=f"{failed_pred} do not"),
        f"; {n_quoted} quoted numbers, {quoted}.",
        *((" ", nodes.strong(text=f"{len(not_run)} claims of the chapters' code did not run"),
           " (a cell before them failed; listed below): this build is incomplete.") if not_run else ()),
        classes=["qklab-ledger-summary"],
    )


def _not_run(app: Any, fromdocname: str, not_run: list[tuple[str, str]]) -> list[nodes.Node]:
    items = nodes.bullet_list(classes=["qklab-claims-not-run"])
    for chapter, claim_id in not_run:
        item = nodes.list_item()
        item += _paragraph(*_chapter_link(app, fromdocname, chapter).children, ": ", nodes.literal(text=claim_id),
                           " did not run.")
        items += item
    return [_paragraph(nodes.strong(text="Claims that did not run in this build:")), items]


def _failed(app: Any, fromdocname: str, claims: list[Claim], not_run: list[tuple[str, str]]) -> list[nodes.Node]:
    failed = [c for c in claims if not c.holds]
    if not failed:
        return [_paragraph("Every prediction held in this build."), *(_not_run(app, fromdocname, not_run) if not_run else [])]
    # Predictions first; a quoted number out of its band stops the build, unless it was built
    # with --keep-going, and is then listed too.
    failed.sort(key=lambda c: (c.kind != "prediction", c.chapter, c.id))
    items = nodes.bullet_list(classes=["qklab-failed-claims"])
    for c in failed:
        link = _chapter_link(app, fromdocname, c.chapter)
        item = nodes.list_item()
        item += _paragraph(
            *link.children,
            ": ",
            *_linked_text(app, fromdocname, c.statement),
            " ",
            nodes.emphasis(text=f"({KIND_LABEL.get(c.kind, c.kind)}, {c.source})"),
            " Measured ",
            nodes.literal(text=c.measured),
            f", expected {c.expected}.",
        )
        items += item
    return [items, *(_not_run(app, fromdocname, not_run) if not_run else [])]


def _table(app: Any, fromdocname: str, claims: list[Claim]) -> nodes.table:
    headers = ["Claim", "Chapter", "Measured (expected)", "Verdict"]
    table = nodes.table(classes=["claims-ledger"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in (52, 18, 18, 12):
        group += nodes.colspec(colwidth=width)
    head, row = nodes.thead(), nodes.row()
    for title in headers:
        row += _cell(_paragraph(title))
    head += row
    group += head
    body = nodes.tbody()
    for c in claims:
        row = nodes.row(classes=["qklab-claim-holds" if c.holds else "qklab-claim-fails"])
        meta = _paragraph(
            nodes.emphasis(text=KIND_LABEL.get(c.kind, c.kind)),
            f" · {c.source} · ",
            nodes.literal(text=c.id),
            classes=["qklab-claim-meta"],
        )
        row += _cell(_paragraph(*_linked_text(app, fromdocname, c.statement)), meta)
        row += _cell(_chapter_link(app, fromdocname, c.chapter))
        row += _cell(
            _paragraph(nodes.literal(text=c.measured), classes=["qklab-measured"]),
            _paragraph(f"expected {c.expected}", classes=["qklab-expected"]),
        )
        row += _cell(_verdict(c))
        body += row
    group += body
    return table


def _part(app: Any, fromdocname: str, part: str) -> list[nodes.Node]:
    folder = Path(app.srcdir) / "_build" / "claims"
    claims = load_claims(folder) if folder.is_dir() else []
    in_code = {**claims_in_code(Path(app.srcdir) / "chapters"), **claims_in_code(Path(app.srcdir) / "appendix")}
    not_run = claims_not_run(in_code, claims)
    if not claims:
        return [_paragraph("No claims were recorded in this build.")] if part == "summary" else []
    if part == "summary":
        return [_summary(claims, not_run)]
    if part == "failed":
        return _failed(app, fromdocname, claims, not_run)
    # The table keeps the chapters' order; its failed rows are marked (and listed above it).
    return [_table(app, fromdocname, claims)]


def _resolve(app: Any, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(claims_ledger_placeholder)):
        content = _part(app, docname, node["part"])
        if content:
            node.replace_self(content)
        else:
            node.parent.remove(node)


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
    return {"version": "0.2", "parallel_read_safe": False, "parallel_write_safe": True}
