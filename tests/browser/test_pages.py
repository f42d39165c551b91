"""Every page of the built book, as a reader sees it in Chromium with no network, at 1280 and 390 px.

Each page (the intro, every chapter, every appendix) is opened once per width in one shared
browser context per width (the network cut: every request to a host other than 127.0.0.1 is
aborted and recorded); what the tests below assert is measured during that one visit and cached,
so that each check is its own test, named by page, and a failure says what is wrong where.

A visit: load the page, wait until MathJax has typeset it (`MathJax.startup.promise`) and every
image has loaded, take a full-page screenshot (`<artifacts>/pages/<width>/<page>.jpg`, as the
reader sees the page, dropdowns closed), then open every dropdown (`<details>`, solution and
toggle blocks) so that what they hide is measured too, and measure:

- problems: console errors, JavaScript errors, failed requests (HTTP >= 400 or aborted) and
  requests to other hosts;
- prose: the text of the article outside MathJax output, code, SVG and plotly figures, searched
  for raw TeX (`\\command`, `$`, `_{`, `^{`), MyST syntax that was not parsed (`{role}`,
  ```` ```{ ````, `:::`, `(label)=`), cross-references left unresolved, and "chapter N" written
  as plain text instead of a link;
  MathJax error nodes (`mjx-merror`) anywhere;
- outputs: a text output with a line that is only `True` or `False`, a traceback (its frames: an
  error output that shows only the exception's message is what a failed check should show), a Python
  warning, or a file path of the machine that built the book; solution code still showing the
  `# BEGIN SOLUTION` / `# END SOLUTION` markers;
- tables: each table fits the article column, or sits in a box that scrolls sideways (overflow-x
  auto/scroll) which itself fits; no cell clips its content;
- figures: see `FIGURE_MIN_SCALE`; images: every `<img>` has an alt text that is not a file path;
- scripts and links: plotly.js only on pages with a plotly figure, and deferred; launch (Colab,
  Binder) and repository links only to the repository set in `_config.yml`, none when it is empty;
- numbering: chapters 1-11 carry their number in their title, chapter 0 and the appendices none;
  exercises are numbered within their chapter ("Exercise 7.1").

At 390 px (a phone): no page scrolls sideways as a whole; the menu button opens the table of
contents and a chapter link in it navigates; the chapter 7 explorer fits the screen and its
slider redraws the figure.

`QKLAB_BOOK_HTML` (see conftest.py) runs all of this on another built book.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

# As conftest.py (whose module cannot be imported by name: the repository root has a conftest.py too).
ROOT = Path(__file__).resolve().parents[2]
BOOK = Path(os.environ["QKLAB_BOOK_HTML"]).resolve() if os.environ.get("QKLAB_BOOK_HTML") else ROOT / "_build" / "html"
ARTIFACTS = BOOK.parent / "browser-artifacts"

WIDE, PHONE = 1280, 390

# A figure is legible when it is shown at 70% or more of its natural width. Measured as the
# <img>'s rendered CSS width (getBoundingClientRect, device scale factor 1) divided by its
# naturalWidth (an SVG's width at 96 px per inch). The book draws figures as SVG at most 4.6 in
# wide with text of 10.5 pt or more (qklab.plotting.use_book_style); test_reading.py measures the
# text itself on a phone. Images narrower than 100 px (icons) are not figures.
FIGURE_MIN_SCALE = 0.70
FIGURE_MIN_NATURAL_WIDTH = 100


def _source_pages() -> list[str]:
    pages = ["intro.html", "syllabus.html"]
    pages += sorted(f"chapters/{p.stem}.html" for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    pages += sorted(f"appendix/{p.stem}.html" for p in (ROOT / "appendix").glob("*.md"))
    return pages


def _built_pages() -> list[str]:
    if not (BOOK / "intro.html").is_file():
        return []
    pages = ["intro.html"] + (["syllabus.html"] if (BOOK / "syllabus.html").is_file() else [])
    pages += sorted(f"chapters/{p.name}" for p in (BOOK / "chapters").glob("[0-9][0-9]_*.html"))
    pages += sorted(f"appendix/{p.name}" for p in (BOOK / "appendix").glob("*.html"))
    return pages


# The pages of the book: those of the built book when it exists (an older build may have other
# chapters), else those the sources will give.
PAGES = _built_pages() or _source_pages()
CHAPTERS = [p for p in PAGES if p.startswith("chapters/")]


def _stem(path: str) -> str:
    return re.sub(r"\W+", "_", path.removesuffix(".html"))


@lru_cache(maxsize=1)
def _repository_url() -> str:
    """`repository.url` of `_config.yml` (empty when not set)."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8")) or {}
    return str((config.get("repository") or {}).get("url") or "").strip()


# --- what is measured on a page (one evaluate call) ---------------------------------------------

_WAIT_TYPESET = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = [...document.images].filter(im => !im.complete);
  images.forEach(im => { im.loading = 'eager'; });
  const loaded = Promise.all(images.map(im => new Promise(done => { im.onload = im.onerror = done; })));
  await Promise.race([loaded, new Promise(done => setTimeout(done, 15000))]);
  return true;
}
"""

_OPEN_DROPDOWNS = """
() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  // sphinx-togglebutton hides blocks with the class toggle-hidden until its button is pressed.
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('.toggle-details__container, .toggle-content').forEach(e => { e.style.display = ''; });
}
"""

_MEASURE = r"""
(args) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const out = {};

  // Prose: a copy of the article without MathJax output, code, figures drawn by scripts.
  const copy = article.cloneNode(true);
  copy.querySelectorAll('mjx-container, mjx-assistive-mml, pre, code, kbd, samp, script, style, svg, '
      + 'textarea, .js-plotly-plot, .plotly-graph-div, .cell_input, .headerlink').forEach(e => e.remove());
  // Links are prose too, but "chapter 3" inside a link is what we want: mark link text.
  const proseWithLinks = copy.textContent;
  copy.querySelectorAll('a').forEach(a => a.remove());
  // Docstrings rendered by autodoc (appendix/2_api) name chapters in plain words, as help() shows them.
  copy.querySelectorAll('dl.py').forEach(e => e.remove());
  const proseWithoutLinks = copy.textContent;
  const hits = (text, re) => {
    const found = [];
    for (const m of text.matchAll(re)) {
      const at = m.index;
      found.push(text.slice(Math.max(0, at - 40), at + m[0].length + 40).replace(/\s+/g, ' ').trim());
      if (found.length >= 8) break;
    }
    return found;
  };
  out.raw_tex = hits(proseWithLinks, /\\[A-Za-z]+|\$|_\{|\^\{/g);
  out.raw_myst = hits(proseWithLinks, /\{[a-z][\w:-]*\}`?|```|:::|\([a-z][\w-]*\)=/g);
  // A cross-reference Sphinx could not resolve is left as code text, not a link ("chapter %s").
  article.querySelectorAll('.xref.std-numref, .xref.std-ref, .xref.std-doc, .xref.eq').forEach(x => {
    if (!x.closest('a')) out.raw_myst.push(`unresolved reference "${x.textContent.trim()}"`);
  });
  out.unlinked_chapters = hits(proseWithoutLinks, /\b[Cc]hapters? \d+/g);
  out.mathjax_errors = [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 8);

  // Outputs.
  const outputs = [...article.querySelectorAll('.cell_output .output, .cell_output > div')];
  out.bare_bools = [];
  out.tracebacks = [];
  out.warnings = [];
  out.paths = [];
  for (const o of outputs) {
    const pres = [...o.querySelectorAll('pre')];
    const texts = pres.length ? pres.map(p => p.textContent) : [o.textContent];
    for (const text of texts) {
      if (text.split('\n').some(line => /^\s*(True|False)\s*$/.test(line))) out.bare_bools.push(text.trim().slice(0, 120));
      // An error output may show just the exception's message (a failed check in chapter 0): only
      // the frames of a traceback are flagged.
      if (/Traceback \(most recent call last\)|Cell In\[\d+\]|^\s*File ".*", line \d+|^-{20,}$/m.test(text)) {
        out.tracebacks.push(text.trim().slice(0, 200));
      }
      if (/\b\w*Warning: /.test(text)) out.warnings.push(text.trim().slice(0, 200));
      const path = text.match(/(\/(work|tmp|home|root|usr|opt)\/\S+|site-packages\S*)/);
      if (path) out.paths.push(path[0].slice(0, 120));
    }
  }
  out.bare_bools = [...new Set(out.bare_bools)];
  out.tracebacks = [...new Set(out.tracebacks)];
  out.warnings = [...new Set(out.warnings)];
  out.paths = [...new Set(out.paths)];
  out.solution_markers = [...article.querySelectorAll('pre')]
    .map(p => p.textContent).filter(t => /#\s*(BEGIN|END) SOLUTION/.test(t)).map(t => t.trim().slice(0, 120));

  // Tables.
  const col = article.getBoundingClientRect();
  out.tables = [];
  article.querySelectorAll('table').forEach((t, i) => {
    const r = t.getBoundingClientRect();
    if (r.width === 0) return;  // not rendered
    const name = `table ${i + 1} ("${(t.querySelector('th, td') || t).textContent.trim().slice(0, 30)}")`;
    if (r.left < col.left - 1 || r.right > col.right + 1) {
      let box = t.parentElement, scrolls = false;
      while (box && box !== article.parentElement) {
        const s = getComputedStyle(box);
        if (['auto', 'scroll'].includes(s.overflowX)) {
          const b = box.getBoundingClientRect();
          scrolls = b.left >= col.left - 1 && b.right <= col.right + 1;
          break;
        }
        box = box.parentElement;
      }
      if (!scrolls) out.tables.push(`${name}: ${Math.round(r.width)} px wide in a ${Math.round(col.width)} px column, not in a scroll box`);
    }
    t.querySelectorAll('td, th').forEach(c => {
      const s = getComputedStyle(c);
      if (c.scrollWidth > c.clientWidth + 1 && ['hidden', 'clip'].includes(s.overflowX)) {
        out.tables.push(`${name}: cell "${c.textContent.trim().slice(0, 30)}" clipped`);
      }
    });
  });

  // Figures and alt texts.
  out.figures = [];
  out.broken_images = [];
  article.querySelectorAll('img').forEach(im => {
    const r = im.getBoundingClientRect();
    const src = (im.getAttribute('src') || '').split('/').pop();
    if (im.complete && im.naturalWidth === 0) { out.broken_images.push(src); return; }
    if (r.width === 0 || im.naturalWidth < args.minNatural) return;
    const scale = r.width / im.naturalWidth;
    if (scale < args.minScale) out.figures.push(`${src}: ${im.naturalWidth} px shown at ${Math.round(r.width)} px (${Math.round(100 * scale)}%)`);
  });
  out.alts = [];
  document.querySelectorAll('img').forEach(im => {
    const alt = (im.getAttribute('alt') || '').trim();
    const src = (im.getAttribute('src') || '').split('/').pop();
    if (!alt) out.alts.push(`${src}: no alt text`);
    else if (/^\S*\.(png|jpe?g|gif|svg|webp)$/i.test(alt) || /_build\/|jupyter_execute|^\S*\/\S*$/.test(alt)) out.alts.push(`${src}: alt text is a path ("${alt.slice(0, 60)}")`);
  });

  // Scripts and links.
  out.plotly_figures = document.querySelectorAll('.plotly-graph-div').length;
  out.plotly_scripts = [...document.querySelectorAll('script[src*="plotly"]')].map(s => ({
    src: s.getAttribute('src'), deferred: s.defer || s.async, in_head: s.parentElement === document.head,
  }));
  out.external_links = [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => /^https?:/.test(h) && !/^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(h));

  // Numbering.
  const h1 = article.querySelector('h1');
  out.title = h1 ? h1.textContent.replace(/[#¶]/g, '').trim() : '';
  out.exercise_titles = [...article.querySelectorAll('.exercise .admonition-title, .exercise p.admonition-title')].map(e => e.textContent.trim());
  return out;
}
"""


class Visits:
    """One shared browser context per width; each page visited once per width, its report cached."""

    def __init__(self, browser, book_url: str, tools) -> None:
        self.browser = browser
        self.book_url = book_url
        self.tools = tools
        self.contexts: dict[int, object] = {}
        self.reports: dict[tuple[str, int], dict] = {}

    def context(self, width: int):
        if width not in self.contexts:
            self.contexts[width] = self.tools.context(self.browser, width, 900 if width > 600 else 844)
        return self.contexts[width]

    def open(self, path: str, width: int):
        """A fresh page of the width's context, watched, at `path`, typeset."""
        page = self.context(width).new_page()
        visit = self.tools.watch(page)
        response = page.goto(f"{self.book_url}/{path}", wait_until="load")
        assert response is not None and response.ok, f"{path}: the page did not load ({response and response.status})"
        page.evaluate(_WAIT_TYPESET)
        return visit

    def report(self, path: str, width: int) -> dict:
        key = (path, width)
        if key not in self.reports:
            visit = self.open(path, width)
            page = visit.page
            shot = ARTIFACTS / "pages" / str(width) / f"{_stem(path)}.jpg"
            shot.parent.mkdir(parents=True, exist_ok=True)
            # JPEG: a full chapter is 15-30 thousand pixels tall; PNG took twice as long to write.
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=75)
            if width == WIDE:
                page.evaluate(_OPEN_DROPDOWNS)
                page.wait_for_timeout(100)
                report = page.evaluate(_MEASURE, {"minScale": FIGURE_MIN_SCALE, "minNatural": FIGURE_MIN_NATURAL_WIDTH})
            else:
                report = page.evaluate(
                    "() => ({page_width: document.documentElement.scrollWidth, viewport: window.innerWidth})"
                )
            report["problems"] = visit.problems()
            report["screenshot"] = str(shot)
            page.close()
            self.reports[key] = report
        return self.reports[key]

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


@pytest.fixture(scope="session")
def visits(browser, book_url, offline_tools):
    v = Visits(browser, book_url, offline_tools)
    yield v
    v.close()


def _fail_if(found: list, what: str, path: str) -> None:
    assert not found, f"{path}: {what}:\n  " + "\n  ".join(map(str, found))


def _fail_if_any(path: str, checks: list[tuple[list, str]]) -> None:
    """One failure listing every check of `checks` (found, what) that found something."""
    failed = [f"{what}:\n  " + "\n  ".join(map(str, found)) for found, what in checks if found]
    assert not failed, f"{path}:\n" + "\n".join(failed)


# --- every page at 1280 px ----------------------------------------------------------------------


def test_every_source_document_has_a_page(built_book):
    missing = [p for p in _source_pages() if not (built_book / p).is_file()]
    assert not missing, f"pages missing from the built book: {missing}"


def test_no_page_shows_a_path_of_the_build_machine(built_book):
    """A default argument or a printed path must not put this checkout's absolute path on a page (issue 27)."""
    shown = [str(p.relative_to(built_book)) for p in sorted(built_book.rglob("*.html"))
             if str(ROOT) in p.read_text(encoding="utf-8", errors="replace")]
    assert not shown, f"pages that show {ROOT}: {shown}"


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_offline_without_errors(visits, path):
    _fail_if(visits.report(path, WIDE)["problems"], "console errors, failed or non-local requests", path)


@pytest.mark.parametrize("path", PAGES)
def test_math_and_markup_render(visits, path):
    report = visits.report(path, WIDE)
    _fail_if_any(path, [
        (report["mathjax_errors"], "MathJax errors"),
        (report["raw_tex"], "raw TeX in the prose (math that was not typeset)"),
        (report["raw_myst"], "MyST markup shown as text"),
    ])


# The API reference renders the package's docstrings, which name chapters in plain words (they
# are read with help() too): they are not prose of the book.
API_PAGE = "appendix/2_api.html"


@pytest.mark.parametrize("path", [p for p in PAGES if p != API_PAGE])
def test_chapter_references_are_links(visits, path):
    _fail_if(visits.report(path, WIDE)["unlinked_chapters"], '"chapter N" written as plain text, not a {numref} link', path)


@pytest.mark.parametrize("path", PAGES)
def test_outputs_are_for_a_reader(visits, path):
    report = visits.report(path, WIDE)
    _fail_if_any(path, [
        (report["bare_bools"], "bare True/False outputs"),
        (report["tracebacks"], "tracebacks in outputs (a failed check shows its message, not a traceback)"),
        (report["paths"], "outputs showing file paths of the machine that built the book"),
        (report["warnings"], "Python warnings in outputs"),
        (report["solution_markers"], "BEGIN/END SOLUTION markers shown in the code"),
    ])


@pytest.mark.parametrize("path", PAGES)
def test_tables_fit_the_column(visits, path):
    _fail_if(visits.report(path, WIDE)["tables"], "tables that do not fit the column", path)


@pytest.mark.parametrize("path", PAGES)
def test_figures_are_shown_near_full_size(visits, path):
    report = visits.report(path, WIDE)
    _fail_if_any(path, [
        (report["broken_images"], "images that did not load"),
        (report["figures"], f"figures shown below {FIGURE_MIN_SCALE:.0%} of their natural width (text too small)"),
    ])


@pytest.mark.parametrize("path", PAGES)
def test_images_have_alt_text(visits, path):
    _fail_if(visits.report(path, WIDE)["alts"], "images without a description as alt text", path)


@pytest.mark.parametrize("path", PAGES)
def test_plotly_only_where_needed_and_deferred(visits, path):
    report = visits.report(path, WIDE)
    scripts = report["plotly_scripts"]
    if report["plotly_figures"]:
        assert scripts, f"{path}: shows {report['plotly_figures']} plotly figures but does not load plotly.js"
        _fail_if([s["src"] for s in scripts if not s["deferred"]], "plotly.js loaded without defer (blocks the page)", path)
    else:
        _fail_if([s["src"] for s in scripts], "plotly.js loaded on a page with no plotly figure", path)


_LAUNCH_HOSTS = ("mybinder.org", "colab.research.google.com", "github.com", "gitlab.com", "deepnote.com")


@pytest.mark.parametrize("path", PAGES)
def test_repository_links_follow_the_config(visits, path):
    url = _repository_url()
    links = [h for h in visits.report(path, WIDE)["external_links"] if (urlsplit(h).hostname or "").endswith(_LAUNCH_HOSTS)]
    if not url:
        _fail_if(links, "launch or repository links, but repository.url in _config.yml is empty", path)
    else:
        repo = urlsplit(url).path.strip("/")
        _fail_if([h for h in links if repo not in h], f"launch or repository links not to {url}", path)


def _chapter_number(path: str) -> int | None:
    m = re.match(r"chapters/(\d+)_", path)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("path", PAGES)
def test_numbering(visits, path):
    report = visits.report(path, WIDE)
    number = _chapter_number(path)
    title = report["title"]
    if number:
        assert re.match(rf"{number}\.\s", title), f"{path}: the title should start with '{number}. ', it is {title!r}"
        wrong = [t for t in report["exercise_titles"] if not re.match(rf"Exercise {number}\.\d+\b", t)]
        _fail_if(wrong, f"exercises not numbered within chapter {number} ('Exercise {number}.k')", path)
    else:
        assert not re.match(r"\d+(\.\d+)*\.?\s", title), f"{path}: an unnumbered page is numbered: {title!r}"
        # "Exercise 1" on an unnumbered page reads like chapter 1's (use the exercise's :nonumber:).
        wrong = [t for t in report["exercise_titles"] if re.match(r"Exercise \d", t)]
        _fail_if(wrong, "numbered exercises on an unnumbered page (they read as another chapter's)", path)


def test_claims_ledger_page(visits, built_book):
    """The ledger shows the kind of each claim, the counts, the failed predictions first,
    failed rows marked, and chapters by number and title."""
    path = "appendix/3_claims_ledger.html"
    visit = visits.open(path, WIDE)
    page = visit.page
    data = page.evaluate(
        """() => {
          const rows = [...document.querySelectorAll('table.claims-ledger tbody tr')];
          return {
            rows: rows.length,
            failing_rows: rows.filter(r => /does not hold/.test(r.textContent)).length,
            marked_rows: rows.filter(r => r.classList.contains('qklab-claim-fails')).length,
            kinds: rows.filter(r => /Prediction|Quoted number/.test(r.textContent)).length,
            chapters: rows.map(r => { const a = r.cells[1] && r.cells[1].querySelector('a.reference'); return a ? [a.getAttribute('href'), a.textContent.trim()] : ['', r.cells[1] ? r.cells[1].textContent.trim() : '']; }),
            failed_listed: document.querySelectorAll('.qklab-failed-claims > li').length,
            summary: (document.querySelector('.qklab-ledger-summary') || {textContent: ''}).textContent,
            first_heading: [...document.querySelectorAll('article h2')].map(h => h.textContent)[0] || '',
          };
        }"""
    )
    page.close()
    assert data["rows"] > 0, f"{path}: no claims table"
    assert data["kinds"] == data["rows"], f"{path}: {data['rows'] - data['kinds']} rows do not say their kind"
    assert re.search(r"\d+ predictions.*\d+ quoted numbers", data["summary"]), f"{path}: no counts of each kind: {data['summary']!r}"
    assert data["marked_rows"] == data["failing_rows"], f"{path}: {data['failing_rows']} rows do not hold, {data['marked_rows']} marked"
    assert data["failed_listed"] == data["failing_rows"], (
        f"{path}: {data['failing_rows']} claims do not hold but {data['failed_listed']} are listed above the table"
    )
    assert "did not hold" in data["first_heading"], f"{path}: the failed predictions are not the first section"
    wrong = set()
    for href, text in data["chapters"]:
        m = re.search(r"(\d\d)_\w+\.html", href)
        if not m and re.search(r"(^|/)\d_\w+\.html", href):
            continue  # a claim computed in an appendix notebook (appendix 8): linked by the appendix's title
        if not m:
            wrong.add(f"{text!r} (not a link to a chapter or appendix)")
        elif int(m.group(1)) > 0 and not text.startswith(f"{int(m.group(1))}. "):
            wrong.add(f"{text!r} (links {href}: should read '{int(m.group(1))}. <title>')")
    assert not wrong, f"{path}: chapter column not as 'number. title' links: {sorted(wrong)[:5]}"


# --- every page at 390 px -----------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_phone_page_does_not_scroll_sideways(visits, path):
    report = visits.report(path, PHONE)
    _fail_if(report["problems"], "console errors, failed or non-local requests at 390 px", path)
    assert report["page_width"] <= report["viewport"] + 1, (
        f"{path}: at {PHONE} px the page is {report['page_width']} px wide: it scrolls sideways "
        f"(something wider than the screen is not in a scroll box)"
    )


MENU_PAGES = ["intro.html", "chapters/03_rank_collapse.html", "appendix/1_notation.html"]


@pytest.mark.parametrize("path", [p for p in MENU_PAGES if p in PAGES])
def test_phone_menu_opens_and_navigates(visits, path):
    visit = visits.open(path, PHONE)
    page = visit.page
    toggles = page.locator(".primary-toggle:visible")
    assert toggles.count() >= 1, f"{path}: no visible menu button at {PHONE} px"
    # Links to chapter pages other than this one (hrefs are relative: "04_x.html" or "chapters/04_x.html").
    here = path.split("/")[-1]
    links = page.locator("nav.bd-docs-nav a.reference.internal:visible")
    assert links.count() == 0, f"{path}: the table of contents is already shown at {PHONE} px"
    toggles.first.click()
    try:
        links.first.wait_for(state="visible", timeout=3_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; say what the reader sees instead
        pytest.fail(f"{path}: the menu button did not open the table of contents at {PHONE} px")
    shot = ARTIFACTS / "pages" / str(PHONE) / f"menu_{_stem(path)}.jpg"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), type="jpeg", quality=75)  # the opened menu, as the reader sees it
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    chapters = [i for i, h in enumerate(hrefs) if re.search(r"(^|/)\d\d_\w+\.html", h) and not h.split("#")[0].endswith(here)]
    assert chapters, f"{path}: the opened menu shows no link to another chapter: {hrefs}"
    href = hrefs[chapters[-1]]
    links.nth(chapters[-1]).click()
    page.wait_for_load_state("load")
    wanted = href.split("#")[0].split("/")[-1]
    assert page.url.split("#")[0].endswith(wanted), f"{path}: clicking {href!r} in the menu led to {page.url}"
    page.close()
    _fail_if(visit.problems(), "console errors, failed or non-local requests", path)


_EXPLORER_STATE = """
(root) => {
  const gd = root.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const rail = root.querySelector('.slider-rail-rect').getBoundingClientRect();
  // Titles, subplot titles, axis titles and the colour bar, as drawn (for clipping and overlaps).
  const svg = gd.querySelector('.main-svg').getBoundingClientRect();
  const texts = [...gd.querySelectorAll('.gtitle, .annotation-text, .g-xtitle text, .g-ytitle text, .colorbar')]
    .map(e => { const r = e.getBoundingClientRect();
      return {kind: e.classList.contains('colorbar') ? 'colour bar' : 'text', text: (e.textContent || '').trim().slice(0, 40),
              left: r.left, right: r.right, top: r.top, bottom: r.bottom,
              clipped: r.width > 0 && (r.left < svg.left - 1 || r.right > svg.right + 1)}; })
    .filter(t => t.right > t.left);
  return {
    right: box.right, left: box.left, width: box.width, viewport: window.innerWidth,
    rail_width: rail.width, rail_left: rail.left, rail_right: rail.right,
    active: gd.layout.sliders[0].active,
    // the title, with the measurements chapter 7 prints in its profile panel (visible text traces)
    title: (gd.layout.title.text || '') + ' | ' + [...gd.querySelectorAll('.scatterlayer .trace')]
      .filter(t => getComputedStyle(t).opacity !== '0' && t.style.display !== 'none')
      .map(t => [...t.querySelectorAll('.textpoint text')].map(x => x.textContent).join('|')).join(' | '),
    drawn: [...gd.querySelectorAll('.heatmaplayer image, .scatterlayer path.js-line')]
      .map(e => e.getAttribute('href') || e.getAttribute('d') || '').join('|').length,
    signature: [...gd.querySelectorAll('.heatmaplayer image, .scatterlayer path.js-line')]
      .map(e => e.getAttribute('href') || e.getAttribute('d') || '').join('|'),
    texts: texts,
  };
}
"""


def test_phone_chapter_7_explorer_is_usable(visits):
    """At 390 px the explorer of chapter 7 fits the screen (or scrolls in its own box), its slider
    is within reach and wide enough to move, and dragging it redraws the figure."""
    path = "chapters/07_localization.html"
    visit = visits.open(path, PHONE)
    page = visit.page
    root = page.locator(".qklab-explorer").first
    root.locator(".slider-grip-rect").first.wait_for(timeout=20_000)
    root.scroll_into_view_if_needed()
    before = root.evaluate(_EXPLORER_STATE)
    shot = ARTIFACTS / "pages" / str(PHONE) / "chapters_07_explorer.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(shot))
    assert before["drawn"] > 0, f"{path}: the explorer draws nothing at {PHONE} px"
    assert before["rail_left"] >= 0 and before["rail_right"] <= before["viewport"] + 1, (
        f"{path}: the slider runs off the screen ({before['rail_left']:.0f}-{before['rail_right']:.0f} px of {before['viewport']})"
    )
    assert before["rail_width"] >= 150, f"{path}: the slider is {before['rail_width']:.0f} px long, too short to use"
    texts = before["texts"]
    clipped = [t["text"] for t in texts if t["clipped"]]
    _fail_if(clipped, f"titles cut off at the edge of the figure at {PHONE} px", path)
    overlaps = [
        f"{a['text'] or a['kind']!r} over {b['text'] or b['kind']!r}"
        for i, a in enumerate(texts) for b in texts[i + 1:]
        if min(a["right"], b["right"]) - max(a["left"], b["left"]) > 2
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 2
    ]
    _fail_if(overlaps, f"titles or colour bar overlapping at {PHONE} px", path)
    grip = root.locator(".slider-grip-rect").first.bounding_box()
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(before["rail_left"] + 0.7 * before["rail_width"], y, steps=12)
    page.mouse.up()
    page.wait_for_function(
        "(root) => root.querySelector('.js-plotly-plot').layout.sliders[0].active > 0",
        arg=root.element_handle(), timeout=10_000,
    )
    page.wait_for_timeout(300)
    after = root.evaluate(_EXPLORER_STATE)
    root.screenshot(path=str(shot.with_name("chapters_07_explorer_moved.png")))
    page.close()
    assert after["title"] != before["title"], f"{path}: the title did not change when the slider moved"
    assert after["signature"] != before["signature"], f"{path}: the figure was not redrawn when the slider moved"
    _fail_if(visit.problems(), "console errors, failed or non-local requests", path)
