"""The whole book as one PDF (`make pdf`): `_build/html` printed by headless Chromium, no LaTeX.

What it does, in order:

1. Opens the built book (`_build/html`) in the system Chromium through Playwright; the browser's
   own request routing answers from the built files, and every request elsewhere is aborted.
2. Reads the reading order from the built sidebar (the order of `_toc.yml`): the home page, then
   every page of every part, the part captions kept for the table of contents.
3. Opens each page with MathJax held back (its TeX stays as written) and takes the page's
   `article`: plotly figures (the explorers included) become SVG images of the state the page
   opens with; folded code cells and dropdowns are unfolded; exercise solutions and the answers
   of the "check yourself" questions are moved to a "Solutions and answers" section at the end
   of their chapter, with a link in place; buttons, scripts, permalink marks and widgets that
   need a live kernel are dropped; image and link addresses are made absolute, ids get a
   per-page prefix and links between pages become links inside the document.
4. Puts everything into one HTML document that reuses the book's style sheets and MathJax
   configuration (SVG output, so that math prints as vector paths): a title page, a table of
   contents, one divider page per part, then every page on a new page. MathJax typesets it once.
5. Prints it twice on A4 with the page number in the footer: the first print tells, from the PDF's
   named destinations (read with poppler's `pdfinfo`), on which page each book page starts; those
   numbers are written into the table of contents, and the second print is the PDF
   (`_build/pdf/qklab.pdf`): tagged, with an outline (bookmarks) made from the headings.

Needs: Chromium (`/usr/bin/chromium`), Playwright's Python package (in `.venv`), poppler-utils.

Not in here: the book build itself (`make book`), and the checks of the PDF
(`tests/browser/test_book_pdf.py`). The package `qklab` does not import this module.

Usage: python _ext/book_pdf.py [--html _build/html] [--out _build/pdf/qklab.pdf] [--keep-html]
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Playwright itself starts Chromium headless with no first-run, sync, component update or
# background networking; as root it needs no sandbox, and there is no GPU to use.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu"]
# The address the browser gives the built book: requests to it are answered from the built files by
# the browser context's route (`offline_context`), so nothing listens on a port; nothing else loads.
ORIGIN = "http://127.0.0.1:9"
# The combined document is served at this path by the same route (never written into the site).
DOCUMENT_PATH = "/__book_pdf__.html"
MATHJAX_SVG = "_static/mathjax/tex-svg-full.js"
LOOKAHEAD = 2  # book pages loading ahead of the one being read
PAGE_MARGIN = {"top": "16mm", "bottom": "18mm", "left": "18mm", "right": "18mm"}
FOOTER = (
    '<div style="width:100%; font-size:8pt; color:#555; padding:0 18mm; display:flex;'
    ' justify-content:space-between; font-family:sans-serif;">'
    "<span>{title}</span><span><span class=\"pageNumber\"></span> / <span class=\"totalPages\"></span></span></div>"
)


@dataclass(frozen=True)
class BookPage:
    """One page of the book in reading order: its address, its sidebar title and its part."""

    path: str  # relative to the site's root, e.g. "chapters/03_rank_collapse.html"
    title: str
    part: str | None  # the sidebar caption above it; None for the home page


@dataclass(frozen=True)
class Extracted:
    """A page's article as HTML ready for the combined document, and what was done to it."""

    html: str
    solutions: int
    plots: int


# --- serving ------------------------------------------------------------------------------------


def offline_context(browser, html_dir: Path, extracting: bool, document: str | None = None):
    """A browser context in which `ORIGIN` is the built book, read from `html_dir` by the context's
    own route (no server, no port), and every other request is aborted. `document`, if given, is
    served at `DOCUMENT_PATH`. With `extracting`, MathJax does not load (TeX stays as written), nor
    do images and fonts, which taking a page's article does not need."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    root = html_dir.resolve()

    def route(route_obj):
        url = route_obj.request.url
        if not url.startswith(ORIGIN + "/"):
            route_obj.abort()
            return
        path = unquote(urlsplit(url).path).lstrip("/")
        if document is not None and "/" + path == DOCUMENT_PATH:
            route_obj.fulfill(status=200, content_type="text/html; charset=utf-8", body=document)
            return
        if extracting and (path.startswith("_static/mathjax/") or route_obj.request.resource_type in ("image", "font")):
            route_obj.abort()
            return
        file = (root / path).resolve()
        if file.is_file() and root in file.parents:
            route_obj.fulfill(path=file)
        else:
            route_obj.fulfill(status=404, content_type="text/plain", body=f"not in the built book: {path}")

    context.route("**/*", route)
    return context


# --- the reading order --------------------------------------------------------------------------

_SIDEBAR = """
() => {
  const nav = document.querySelector('nav.bd-docs-nav');
  if (!nav) return null;
  const out = [];
  let part = null;
  for (const el of nav.querySelectorAll('p.caption, a.reference.internal')) {
    if (el.matches('p.caption')) { part = el.textContent.trim(); continue; }
    out.push({href: el.href.split('#')[0], title: el.textContent.trim().replace(/\\s+/g, ' '), part: part});
  }
  return out;
}
"""


def reading_order(context, origin: str, html_dir: Path) -> list[BookPage]:
    """The home page, then the sidebar's pages in order (each once), with their part captions."""
    page = context.new_page()
    page.goto(f"{origin}/{root_page(html_dir)}", wait_until="load")
    home = page.url.split("#")[0]
    title = page.evaluate("() => (document.querySelector('article h1') || document.querySelector('h1')).textContent")
    entries = page.evaluate(_SIDEBAR)
    page.close()
    if not entries:
        raise SystemExit(f"no sidebar (nav.bd-docs-nav) on {home}: is this a Jupyter Book build?")
    pages = [BookPage(_relative(home, origin), _clean_title(title), None)]
    seen = {pages[0].path}
    for entry in entries:
        path = _relative(entry["href"], origin)
        if path not in seen:
            seen.add(path)
            pages.append(BookPage(path, entry["title"], entry["part"]))
    return pages


def root_page(html_dir: Path) -> str:
    """The book's first page: Jupyter Book's `index.html` redirects to the root page of `_toc.yml`."""
    index = (html_dir / "index.html").read_text(encoding="utf-8")
    redirect = re.search(r'http-equiv="Refresh"\s+content="\d+;\s*url=([^"]+)"', index, re.IGNORECASE)
    return redirect.group(1) if redirect else "index.html"


def _relative(url: str, origin: str) -> str:
    if not url.startswith(origin + "/"):
        raise SystemExit(f"the sidebar links outside the book: {url}")
    return urlsplit(url).path.lstrip("/")


def _clean_title(text: str) -> str:
    return " ".join(text.replace("#", " ").split())


# --- one page's article -------------------------------------------------------------------------

# Runs in a built page once it has loaded (MathJax held back). Returns the article's HTML.
_EXTRACT = """
async ({prefix, pages, solutionsHeading}) => {
  const article = document.querySelector('article.bd-article');
  if (!article) throw new Error('no article.bd-article on ' + location.href);

  // Plotly figures (explorers included): an SVG image of the state the page opens with.
  let plots = 0;
  for (const gd of [...article.querySelectorAll('.js-plotly-plot')]) {
    const size = gd._fullLayout || {};
    const width = Math.round(size.width || gd.clientWidth || 700);
    const height = Math.round(size.height || gd.clientHeight || 450);
    const url = await Plotly.toImage(gd, {format: 'svg', width: width, height: height});
    const img = document.createElement('img');
    img.src = url;
    img.className = 'pdf-plot';
    img.alt = gd.getAttribute('aria-label') || (gd.layout && gd.layout.title && gd.layout.title.text) || 'figure';
    img.style.aspectRatio = width + ' / ' + height;
    const note = document.createElement('p');
    note.className = 'pdf-plot-note';
    note.textContent = 'An interactive figure in the HTML book, shown here as it opens.';
    const figure = document.createElement('div');
    figure.className = 'pdf-plot-figure';
    figure.append(img, note);
    gd.replaceWith(figure);
    plots += 1;
  }
  // What needs a live page or kernel: scripts, widget views, buttons, permalink marks.
  article.querySelectorAll('script, noscript, button, .headerlink, .copybtn, .toggle-button, ' +
                           '.tb-icon, .sd-summary-state-marker, .qklab-explorer-fallback').forEach(e => e.remove());
  article.querySelectorAll('.jupyter-widgets, .widget-area').forEach(e => e.remove());

  // Folded code cells and dropdowns: unfolded. myst-nb's "Show code cell source" line goes.
  article.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  article.querySelectorAll('details').forEach(d => {
    const div = document.createElement('div');
    div.className = 'pdf-details ' + d.className;
    for (const child of [...d.childNodes]) {
      if (child.nodeName === 'SUMMARY') {
        const text = child.textContent.trim();
        if (/^(Show|Hide) code cell/.test(text)) continue;
        const p = document.createElement('p');
        p.className = 'pdf-summary';
        p.innerHTML = child.innerHTML;
        div.appendChild(p);
      } else {
        div.appendChild(child);
      }
    }
    d.replaceWith(div);
  });

  // Solutions and answers: to the end of the chapter, a link in their place.
  const moved = [];
  const folded = [...article.querySelectorAll('div.admonition.dropdown')].filter(box =>
    box.classList.contains('solution') || /^Answer\\b/.test((box.querySelector('.admonition-title') || {}).textContent || ''));
  for (const box of folded) {
    if (folded.some(other => other !== box && other.contains(box))) continue;
    const title = box.querySelector('.admonition-title');
    const anchor = 'pdf-moved-' + (moved.length + 1);
    if (title && !box.classList.contains('solution')) {
      // An answer follows its question, the last item of the list just before it: the answer
      // takes the question's number and section, and a copy of the question.
      const list = box.previousElementSibling;
      const section = box.closest('section');
      const name = section ? section.querySelector('h1, h2, h3, h4') : null;
      // "1.6. Questions" reads "1.6 Questions"
      const where = name ? name.textContent.trim().replace(/^([\d.]*\d)\.\s/, '$1 ') : '';
      if (list && list.matches('ol') && list.lastElementChild) {
        const n = (parseInt(list.getAttribute('start') || '1', 10) + list.children.length - 1);
        title.textContent = 'Answer to question ' + n + ' of ' + where;
        const question = document.createElement('div');
        question.className = 'pdf-question';
        question.innerHTML = list.lastElementChild.innerHTML;
        title.after(question);
      } else {
        title.textContent = 'Answer (' + where + ')';
      }
    }
    const stub = document.createElement('p');
    stub.className = 'pdf-moved-link';
    const label = title ? title.textContent.trim() : 'Solution';
    stub.innerHTML = '<a href="#' + anchor + '"></a>';
    stub.firstChild.textContent = label + ': at the end of this chapter';
    box.replaceWith(stub);
    box.id = anchor;
    moved.push(box);
  }
  if (moved.length) {
    const section = document.createElement('section');
    section.className = 'pdf-solutions';
    const h = document.createElement('h2');
    h.textContent = solutionsHeading;
    section.appendChild(h);
    moved.forEach(box => section.appendChild(box));
    article.appendChild(section);
  }

  // Addresses: absolute for images, links between book pages become links inside the document.
  article.querySelectorAll('img').forEach(img => {
    img.setAttribute('src', img.src);
    img.removeAttribute('loading');
    img.removeAttribute('srcset');
  });
  article.querySelectorAll('[id]').forEach(e => { e.id = prefix + '-' + e.id; });
  for (const a of [...article.querySelectorAll('a[href]')]) {
    const raw = a.getAttribute('href');
    if (raw.startsWith('#')) {
      a.setAttribute('href', '#' + prefix + '-' + decodeURIComponent(raw.slice(1)));
      continue;
    }
    const url = new URL(raw, location.href);
    if (url.origin !== location.origin) continue;  // a link to the web stays
    const target = pages[url.pathname.replace(/^\\//, '')];
    if (target !== undefined) {
      a.setAttribute('href', '#' + target + (url.hash ? '-' + decodeURIComponent(url.hash.slice(1)) : ''));
    } else {
      // a file of the site (a notebook download, a full-size image): no address outside the PDF
      const span = document.createElement('span');
      span.className = 'pdf-unlinked';
      while (a.firstChild) span.appendChild(a.firstChild);
      a.replaceWith(span);
    }
  }
  return {html: article.innerHTML, solutions: moved.length, plots: plots};
}
"""


@dataclass
class OpenedPage:
    """A book page being loaded in a tab of its own, and the JavaScript errors it raised."""

    page: object
    book_page: BookPage
    errors: list[str]


def open_page(context, origin: str, book_page: BookPage) -> OpenedPage:
    """Starts loading `book_page` in a new tab and returns at once (pages load while others are read)."""
    page = context.new_page()
    opened = OpenedPage(page, book_page, [])
    page.on("pageerror", lambda err: opened.errors.append(str(err)))
    page.goto(f"{origin}/{book_page.path}", wait_until="commit")
    return opened


def extract(opened: OpenedPage, prefix: str, prefixes: dict[str, str]) -> Extracted:
    """The opened page's article, made ready for the combined document (see `_EXTRACT`)."""
    page, book_page, errors = opened.page, opened.book_page, opened.errors
    page.wait_for_load_state("load")
    # plotly draws on DOMContentLoaded, after its deferred script; wait until every figure has data
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.data && d._fullLayout)",
        timeout=30_000,
    )
    result = page.evaluate(
        _EXTRACT,
        {"prefix": prefix, "pages": prefixes, "solutionsHeading": "Solutions and answers"},
    )
    page.close()
    plotly_errors = [e for e in errors if "Plotly" in e]
    if plotly_errors:
        raise SystemExit(f"{book_page.path}: {plotly_errors[0]}")
    return Extracted(result["html"], result["solutions"], result["plots"])


# --- the combined document ----------------------------------------------------------------------

PRINT_CSS = """
@page { size: A4; }
html { font-size: 12.5px; }
/* the theme's shadows would print as raster masks (slow, and megabytes); the id selector
   outweighs the theme's own !important class rules */
body *:not(#pdf-none), body *:not(#pdf-none)::before, body *:not(#pdf-none)::after {
  box-shadow: none !important; text-shadow: none !important;
}
body.pdf-book { margin: 0; padding: 0; background: #fff; color: #222; }
body.pdf-book, .pdf-book .bd-article { width: 100%; max-width: none; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }

/* every book page starts on a new page; headings stay with what follows them */
.pdf-page, .pdf-part, .pdf-toc { break-before: page; }
h1, h2, h3, h4, dt, .admonition-title, .pdf-summary, .caption { break-after: avoid; }
h1 { font-size: 1.9rem; margin-top: 0; }
h2 { font-size: 1.45rem; margin-top: 1.6rem; }
h3 { font-size: 1.2rem; }
p, li { orphans: 3; widows: 3; }

/* figures to the page width, not split */
img, svg, .pdf-plot { max-width: 100% !important; height: auto; }
figure, .figure, .cell_output img, .pdf-plot, .admonition { break-inside: avoid; }
figure, .figure { margin: 0.8rem 0; }
img.pdf-plot { display: block; margin: 0.5rem auto 0; }
.pdf-plot-figure { break-inside: avoid; margin: 0.8rem 0; }
.pdf-plot-note { text-align: center; font-size: 0.8rem; font-style: italic; color: #555; margin: 0.2rem 0 0; }

/* code and outputs: all of it, long lines wrapped */
pre, .highlight pre, .output pre {
  white-space: pre-wrap !important; overflow-wrap: anywhere; word-break: break-word;
  overflow: visible !important; max-height: none !important;
  font-size: 0.78rem; line-height: 1.35;
}
code, code.literal, .sig { white-space: pre-wrap !important; overflow-wrap: anywhere; }
div.cell, .cell_input, .highlight { break-inside: auto; }
div.cell_output { overflow: visible !important; max-height: none !important; }
.pdf-details.above-input, .pdf-details.below-input { border: none; padding: 0; margin: 0; }

/* tables: at the width of the page, none cut off */
.pst-scrollable-table-container, .table-wrapper, .output_html, .qklab-table { overflow: visible !important; }
table { max-width: 100%; font-size: 0.82rem; break-inside: auto; }
body.pdf-book table td, body.pdf-book table th {
  white-space: normal !important; overflow-wrap: anywhere; padding: 0.2rem 0.4rem !important;
}
tr { break-inside: avoid; }

/* the API reference: autodoc's entries without the screen's spacing */
body.pdf-book dl.py { margin: 0.3rem 0 0.9rem !important; }
body.pdf-book dl.py > dt.sig { margin: 0.2rem 0 0.2rem; padding: 0.15rem 0.3rem; break-after: avoid; }
body.pdf-book dl.py dd { margin-left: 1.2rem; }
body.pdf-book dl.py dd > p { margin-bottom: 0.35rem; }
body.pdf-book dl.field-list { margin: 0.2rem 0 0.3rem; gap: 0; }
body.pdf-book dl.field-list > dt { background: none !important; margin: 0.15rem 0 0 !important; padding: 0; font-weight: 600; }
body.pdf-book dl.field-list > dd { margin: 0 0 0.1rem 1rem; }
body.pdf-book dl.field-list > dd > p, body.pdf-book dl.field-list > dd ul { margin: 0; }

/* unfolded boxes */
.pdf-details { display: block; }
.pdf-summary { font-weight: 600; margin: 0.3rem 0; }
.pdf-moved-link { font-style: italic; font-size: 0.92rem; }
.pdf-question { font-style: italic; margin: 0.4rem 0 0.6rem; }
.pdf-question p { margin: 0; }
.pdf-solutions { break-before: page; }
.pdf-solutions > .admonition { margin-top: 1rem; }
.pdf-unlinked { color: inherit; }

/* links: coloured, no page addresses printed after them */
a { text-decoration: none; }
a[href^="http"]::after { content: none !important; }

/* the first print, which only finds the pages: nothing painted but the contents */
body.pdf-draft .pdf-page, body.pdf-draft .pdf-part, body.pdf-draft .pdf-title { visibility: hidden !important; }

/* title page, table of contents, part pages */
.pdf-title { height: 245mm; display: flex; flex-direction: column; justify-content: center; text-align: center; }
.pdf-title img { width: 46mm; margin: 0 auto 12mm; }
.pdf-title h1 { font-size: 2.3rem; line-height: 1.25; margin: 0 10mm 10mm; }
.pdf-title p { font-size: 1.1rem; margin: 0.3rem 0; color: #444; }
.pdf-title .pdf-build { margin-top: 18mm; font-size: 0.9rem; color: #666; }
.pdf-toc h1 { margin-bottom: 1.2rem; }
.pdf-toc h2 { font-size: 1.15rem; margin: 1.2rem 0 0.35rem; }
.pdf-toc ol { list-style: none; padding: 0; margin: 0; }
.pdf-toc li { display: flex; align-items: baseline; margin: 0.35rem 0; font-size: 1.08rem; }
.pdf-toc li a { color: inherit; }
.pdf-toc .pdf-leader { flex: 1; border-bottom: 1.5px dotted #aaa; margin: 0 0.4rem; }
.pdf-toc .pdf-pageno { min-width: 2.2rem; text-align: right; font-variant-numeric: tabular-nums; }
.pdf-part { height: 230mm; display: flex; align-items: center; justify-content: center; }
.pdf-part h1 { font-size: 2rem; text-align: center; }

/* math */
mjx-container[display="true"] { overflow: visible !important; break-inside: avoid; }
mjx-container svg { max-width: 100%; }
"""


def page_prefixes(pages: list[BookPage]) -> dict[str, str]:
    """Each page's id prefix in the combined document: p0, p1, ... in reading order."""
    return {p.path: f"p{i}" for i, p in enumerate(pages)}


def book_metadata() -> dict[str, str]:
    """Title, author and copyright from `_config.yml`; the commit and date of this build."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "title": str(config.get("title", "")),
        "author": str(config.get("author", "")),
        "copyright": str(config.get("copyright", "")),
        "logo": str(config.get("logo", "")),
        "built": date.today().isoformat() + (f", commit {commit}" if commit else ""),
    }


def _head_assets(context, origin: str, home: str) -> tuple[list[str], str]:
    """The home page's style sheets (absolute addresses) and its MathJax configuration script."""
    page = context.new_page()
    page.goto(f"{origin}/{home}", wait_until="domcontentloaded")
    assets = page.evaluate(
        """() => ({
          sheets: [...document.querySelectorAll('link[rel=stylesheet]')].map(l => l.href),
          config: [...document.querySelectorAll('script')].map(s => s.textContent)
                    .filter(t => /window\\.MathJax\\s*=/.test(t)).join('\\n'),
        })"""
    )
    page.close()
    return assets["sheets"], assets["config"]


def combined_document(
    origin: str,
    pages: list[BookPage],
    articles: list[Extracted],
    sheets: list[str],
    mathjax_config: str,
    meta: dict[str, str],
    page_numbers: dict[str, int] | None = None,
) -> str:
    """The HTML of the whole book: title page, contents, part pages and every page's article."""
    prefixes = page_prefixes(pages)
    esc = html.escape
    head = [
        '<!DOCTYPE html><html lang="en" data-theme="light" data-mode="light"><head><meta charset="utf-8">',
        f"<title>{esc(meta['title'])}</title>",
        *(f'<link rel="stylesheet" href="{esc(s)}">' for s in sheets),
        f"<style>{PRINT_CSS}</style>",
        f"<script>{mathjax_config}</script>",
        # SVG output: the print holds math as vector paths, no web fonts to wait for.
        "<script>window.MathJax = Object.assign(window.MathJax || {}, {svg: Object.assign("
        "(window.MathJax || {}).svg || {}, {fontCache: 'global'})});</script>",
        f'<script defer src="{origin}/{MATHJAX_SVG}"></script>',
        '</head><body class="pdf-book">',
    ]
    logo = f'<img src="{origin}/_static/{esc(Path(meta["logo"]).name)}" alt="">' if meta["logo"] else ""
    title_page = (
        f'<section class="pdf-title">{logo}<h1>{esc(meta["title"])}</h1>'
        f'<p>{esc(meta["author"])}</p><p>© {esc(meta["copyright"])}</p>'
        f'<p class="pdf-build">Printed from the HTML book, {esc(meta["built"])}</p></section>'
    )
    toc = ['<nav class="pdf-toc"><h1>Contents</h1>']
    part = None
    toc.append("<ol>")
    for p in pages:
        if p.part != part and p.part is not None:
            part = p.part
            toc.append(f"</ol><h2>{esc(part)}</h2><ol>")
        number = str(page_numbers[prefixes[p.path]]) if page_numbers else "000"
        toc.append(
            f'<li><a href="#{prefixes[p.path]}">{esc(p.title)}</a><span class="pdf-leader"></span>'
            f'<a class="pdf-pageno" href="#{prefixes[p.path]}">{number}</a></li>'
        )
    toc.append("</ol></nav>")
    body = []
    part = None
    for i, (p, article) in enumerate(zip(pages, articles)):
        if p.part != part and p.part is not None:
            part = p.part
            body.append(f'<section class="pdf-part" id="part-{i}"><h1>{esc(part)}</h1></section>')
        body.append(
            f'<section class="pdf-page bd-content" id="{prefixes[p.path]}">'
            f'<article class="bd-article" role="main">{article.html}</article></section>'
        )
    return "\n".join([*head, title_page, *toc, *body, "</body></html>"])


# --- printing -----------------------------------------------------------------------------------


def typeset(page) -> int:
    """Waits for MathJax's first typesetting of the document; returns the number of formulas."""
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=60_000)
    page.evaluate("() => MathJax.startup.promise")
    status = page.evaluate(
        """() => ({
          formulas: document.querySelectorAll('mjx-container').length,
          errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
          raw: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'))
                 .map(e => e.textContent.slice(0, 80)).slice(0, 5),
        })"""
    )
    if status["errors"]:
        raise SystemExit(f"MathJax could not typeset: {status['errors']}")
    if status["raw"]:
        raise SystemExit(f"math left untypeset: {status['raw']}")
    return status["formulas"]


def print_pdf(page, path: Path, title: str, final: bool) -> None:
    """Prints the open document to `path`. The `final` print is a tagged PDF (its structure read by
    screen readers) with an outline, the bookmarks of a PDF reader, which Chromium builds from the
    tags: both cost time that the first print, which only finds the pages, does without."""
    page.pdf(
        path=str(path),
        format="A4",
        margin=PAGE_MARGIN,
        print_background=True,
        display_header_footer=True,
        header_template="<span></span>",
        footer_template=FOOTER.format(title=html.escape(title)),
        tagged=final,
        outline=final,
    )


def named_destinations(pdf: Path) -> dict[str, int]:
    """The named destinations of `pdf` (Chromium makes one for every id a link points to) and their
    pages, 1-based, as poppler's `pdfinfo -dests` lists them."""
    listing = _poppler("pdfinfo", "-dests", str(pdf))
    found = {}
    for line in listing.splitlines():
        match = re.match(r'\s*(\d+)\s+\[.*\]\s+"(.*)"\s*$', line)
        if match:
            found[match.group(2)] = int(match.group(1))
    return found


def page_count(pdf: Path) -> int:
    match = re.search(r"^Pages:\s+(\d+)", _poppler("pdfinfo", str(pdf)), re.MULTILINE)
    if not match:
        raise SystemExit(f"pdfinfo does not tell the number of pages of {pdf}")
    return int(match.group(1))


def _poppler(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise SystemExit(f"{command[0]} not found: install poppler-utils (apt-get install -y poppler-utils)") from None


def start_pages(pdf: Path, prefixes: list[str]) -> dict[str, int]:
    """On which page (1-based) each id of `prefixes` lies in `pdf`, from its named destinations."""
    destinations = named_destinations(pdf)
    found = {key: destinations[key] for key in prefixes if key in destinations}
    missing = [p for p in prefixes if p not in found]
    if missing:
        raise SystemExit(f"the PDF has no destination for {missing}: links of the contents are broken")
    return found


def build(html_dir: Path, out: Path, keep_html: bool = False) -> Path:
    """Prints the book built in `html_dir` to `out`; returns `out`."""
    from playwright.sync_api import sync_playwright

    if not (html_dir / "index.html").is_file():
        raise SystemExit(f"no built book in {html_dir} (no index.html): run `make book` first")
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[pdf {time.perf_counter() - started:5.1f} s] {text}", flush=True)

    meta = book_metadata()
    out.parent.mkdir(parents=True, exist_ok=True)
    origin = ORIGIN
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            pages_context = offline_context(browser, html_dir, extracting=True)
            pages = reading_order(pages_context, origin, html_dir)
            prefixes = page_prefixes(pages)
            sheets, mathjax_config = _head_assets(pages_context, origin, pages[0].path)
            say(f"{len(pages)} pages in reading order")
            articles: list[Extracted] = []
            loading: dict[int, OpenedPage] = {}
            for i, book_page in enumerate(pages):
                # the next LOOKAHEAD pages load (in renderer processes of their own) while this one is read
                for j in range(i, min(i + 1 + LOOKAHEAD, len(pages))):
                    if j not in loading:
                        loading[j] = open_page(pages_context, origin, pages[j])
                articles.append(extract(loading.pop(i), prefixes[book_page.path], prefixes))
                done = articles[-1]
                notes = [f"{done.plots} plotly figures as images"] * bool(done.plots) + [
                    f"{done.solutions} solutions and answers moved to the chapter's end"] * bool(done.solutions)
                say(f"{i + 1:2d}/{len(pages)} {book_page.path}" + (f" ({', '.join(notes)})" if notes else ""))
            pages_context.close()

            document = combined_document(origin, pages, articles, sheets, mathjax_config, meta)
            if keep_html:
                out.with_suffix(".html").write_text(document, encoding="utf-8")
            context = offline_context(browser, html_dir, extracting=False, document=document)
            page = context.new_page()
            page.emulate_media(media="print")
            page.goto(f"{origin}{DOCUMENT_PATH}", wait_until="load")
            formulas = typeset(page)
            say(f"MathJax typeset {formulas} formulas")
            # The first print only tells where the pages start: everything but the contents is
            # hidden with `visibility`, which keeps every box where it is (the same pages) and
            # saves painting it.
            first = out.with_suffix(".draft.pdf")
            page.evaluate("() => document.body.classList.add('pdf-draft')")
            print_pdf(page, first, meta["title"], final=False)
            numbers = start_pages(first, list(prefixes.values()))
            first.unlink()
            say(f"first print (layout only): the contents' page numbers ({max(numbers.values())} is the last start)")
            page.evaluate(
                """(numbers) => {
                  document.body.classList.remove('pdf-draft');
                  for (const a of document.querySelectorAll('.pdf-toc a.pdf-pageno')) {
                    a.textContent = String(numbers[a.getAttribute('href').slice(1)]);
                  }
                }""",
                numbers,
            )
            print_pdf(page, out, meta["title"], final=True)
            context.close()
        finally:
            browser.close()
    count = page_count(out)
    say(f"wrote {out} ({count} pages, {out.stat().st_size / 1e6:.1f} MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the built HTML book to one PDF (headless Chromium).")
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book (default: _build/html)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "qklab.pdf", help="the PDF to write")
    parser.add_argument("--keep-html", action="store_true", help="also write the combined HTML next to the PDF (to debug the print; its addresses resolve only "
        "inside this script's browser)")
    args = parser.parse_args(argv)
    build(args.html.resolve(), args.out.resolve(), keep_html=args.keep_html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
