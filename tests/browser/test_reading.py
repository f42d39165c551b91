"""Every page of the built book as a reader sees it: at 1280 and 390 px, in light and in dark mode.

What a textbook page owes its reader (issue 18), measured in headless Chromium with no network,
with every dropdown closed (as the page opens):

- code: the code input in view (`.cell_input` boxes a reader sees without opening anything) is at
  most `MAX_CODE_SHARE` of the article's height; no `claim(` call is visible anywhere (a claim
  shows its verdict line, its call is folded or removed);
- width: no display equation is wider than the article column, no inline formula runs out of the
  box it sits in (an admonition, a table cell); a table wider than the column sits in a box that
  scrolls sideways *and shows it* (the book's scroll shadows, `background-image` on the box); no
  text output is a table printed with `print` (three or more lines of columns aligned by spaces);
  no code name in a table is broken one character per line;
- figures: a matplotlib figure is an SVG whose smallest text, as shown at 390 px, is at least
  `MIN_FIGURE_TEXT_PX` CSS pixels tall (a bitmap cannot be measured: it fails); plotly figures'
  text likewise;
- colour: every piece of text in the article has a contrast ratio of at least 4.5:1 against the
  background it is drawn on (WCAG 2 formula; background = the first opaque ancestor's colour,
  semi-transparent ones composited on it), in both colour schemes;
- length: the words a reader sees on the chapter pages and the intro (prose and generated text;
  not code, printed output, math or what is folded) add up to at most `MAX_WORDS` (issue 27: a
  third shorter than the 41,000 words measured before; tables of numbers are not counted);
- headings: a section that several chapters have ("Questions", "Explore it", "Summary", ...) has
  the same heading level in all of them.

Screenshots of every page, as opened, go to `_build/screens/pages/<scheme>-<width>/<page>.jpg`.
`QKLAB_BOOK_HTML` (see conftest.py) runs all of this on another built book (an older build, to
see which checks it fails).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_pages import CHAPTERS, PAGES, _WAIT_TYPESET, Visits, _fail_if, _stem  # this folder is on sys.path (pytest's rootdir-relative import)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
BOOK = Path(os.environ["QKLAB_BOOK_HTML"]).resolve() if os.environ.get("QKLAB_BOOK_HTML") else ROOT / "_build" / "html"
SCREENS = BOOK.parent / "screens" / "pages"

WIDTHS = (1280, 390)
SCHEMES = ("light", "dark")
MAX_CODE_SHARE = 0.15
MIN_CONTRAST = 4.5
MAX_WORDS = 28_000  # chapters and intro, as a reader sees them (issue 27)
# Figure text as shown on a 390 px phone, in CSS pixels (the phone's column is about 358 px).
MIN_FIGURE_TEXT_PX = 11.0


VIEWS = [(w, s) for w in WIDTHS for s in SCHEMES]


_MEASURE = r"""
async (args) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const col = article.getBoundingClientRect();
  // In view: laid out with a size, and not inside a closed <details> (Chromium gives the content of
  // a closed <details> a layout box of its own size, hidden by content-visibility).
  const folded = e => { const d = e.closest('details:not([open])'); return !!d && !(e.closest('summary') && d.contains(e.closest('summary'))); };
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !folded(e); };
  const snip = (t, n = 60) => (t || '').replace(/\s+/g, ' ').trim().slice(0, n);
  const out = {theme: document.documentElement.dataset.theme || ''};

  // Code in view.
  let code = 0;
  const inputs = [];
  article.querySelectorAll('.cell_input').forEach(c => {
    const r = c.getBoundingClientRect();
    if (shown(c)) { code += r.height; inputs.push([Math.round(r.height), snip(c.textContent, 50)]); }
  });
  out.code_px = code;
  out.article_px = col.height;
  out.tallest_inputs = inputs.sort((a, b) => b[0] - a[0]).slice(0, 5);
  const text = article.innerText;
  out.claim_calls = [];
  for (const m of text.matchAll(/\bclaim\(/g)) {
    out.claim_calls.push(snip(text.slice(Math.max(0, m.index - 30), m.index + 60), 90));
    if (out.claim_calls.length >= 5) break;
  }
  out.claim_call_count = (text.match(/\bclaim\(/g) || []).length;

  // Equations.
  out.equations = [];
  article.querySelectorAll('mjx-container[display="true"]').forEach(m => {
    if (!shown(m)) return;
    const math = m.querySelector('mjx-math') || m;
    const r = math.getBoundingClientRect();
    const box = m.getBoundingClientRect();  // the equation's own box: as wide as the text column allows
    if (r.width > Math.min(box.width, col.width) + 1 || box.right > col.right + 1) {
      out.equations.push(`${Math.round(r.width)} px wide in a ${Math.round(Math.min(box.width, col.width))} px column: `
        + snip(m.querySelector('mjx-assistive-mml') ? m.querySelector('mjx-assistive-mml').textContent : m.textContent));
    }
  });
  article.querySelectorAll('mjx-container:not([display="true"])').forEach(m => {
    if (!shown(m)) return;
    const box = m.closest('.admonition, td, th, .exercise, .solution, .proof, aside, .sidebar');
    if (!box) return;
    const b = box.getBoundingClientRect();
    for (const r of m.getClientRects()) {
      if (r.right > b.right + 1 || r.left < b.left - 1) {
        out.equations.push(`inline formula out of its ${box.tagName.toLowerCase()}.${[...box.classList].slice(0, 2).join('.')} box: ${snip(m.textContent, 40)}`);
        break;
      }
    }
  });

  // Tables: fit the column or scroll in a box that shows it scrolls.
  out.tables = [];
  article.querySelectorAll('table').forEach((t, i) => {
    const r = t.getBoundingClientRect();
    if (r.width === 0) return;
    const name = `table ${i + 1} ("${snip((t.querySelector('th, td') || t).textContent, 30)}")`;
    if (r.right > col.right + 1 || r.left < col.left - 1 || t.scrollWidth > t.clientWidth + 1) {
      let box = t.parentElement, found = null;
      while (box && box !== article.parentElement) {
        const s = getComputedStyle(box);
        if (['auto', 'scroll'].includes(s.overflowX)) { found = box; break; }
        box = box.parentElement;
      }
      if (!found) { out.tables.push(`${name}: ${Math.round(r.width)} px wide in a ${Math.round(col.width)} px column, not in a scroll box`); return; }
      const b = found.getBoundingClientRect();
      const s = getComputedStyle(found);
      if (b.right > col.right + 1) out.tables.push(`${name}: its scroll box is wider than the column`);
      else if (s.backgroundImage === 'none' && s.boxShadow === 'none') out.tables.push(`${name}: scrolls sideways with no sign that it does (no scroll shadow)`);
    }
  });
  out.broken_names = [];
  article.querySelectorAll('table code, table .pre').forEach(c => {
    const t = c.textContent.trim();
    if (t.length < 5 || !shown(c)) return;
    const lines = new Set([...c.getClientRects()].map(r => Math.round(r.top))).size;
    if (lines > 1 && t.length / lines < 4) out.broken_names.push(`"${snip(t, 40)}" broken over ${lines} lines`);
  });
  out.printed_tables = [];
  article.querySelectorAll('.cell_output pre').forEach(p => {
    if (!shown(p)) return;
    const lines = p.textContent.split('\n');
    let run = 0, best = 0;
    for (const line of lines) {
      const fields = line.trim().split(/\s{2,}/).filter(Boolean);
      run = fields.length >= 3 ? run + 1 : 0;
      best = Math.max(best, run);
    }
    if (best >= 3) out.printed_tables.push(snip(p.textContent, 80));
  });
  out.cut_outputs = [];
  article.querySelectorAll('.cell_output pre').forEach(p => {
    if (shown(p) && p.scrollWidth > p.clientWidth + 1) out.cut_outputs.push(`${p.scrollWidth} px of text in a ${p.clientWidth} px box: ${snip(p.textContent, 50)}`);
  });

  // Figures: text size as shown.
  out.figure_text = [];
  for (const im of article.querySelectorAll('img')) {
    const r = im.getBoundingClientRect();
    if (r.width === 0 || im.naturalWidth < 100) continue;
    const src = im.getAttribute('src') || '';
    const name = src.split('/').pop().slice(0, 16);
    if (!/\.svg(\?|$)/.test(src)) {
      if (im.closest('.cell_output')) out.figure_text.push(`${name}: a bitmap figure (${im.naturalWidth} px shown at ${Math.round(r.width)} px): its text cannot be measured; draw it as SVG`);
      continue;
    }
    const svg = new DOMParser().parseFromString(await (await fetch(im.src)).text(), 'image/svg+xml').documentElement;
    const vb = (svg.getAttribute('viewBox') || '').split(/[\s,]+/).map(Number);
    const scale = r.width / (vb.length === 4 && vb[2] > 0 ? vb[2] : parseFloat(svg.getAttribute('width')));
    // Each text's size; a superscript or subscript (matplotlib writes a formula as a group of
    // texts) is judged by its formula's main size, not its own.
    const sizeOf = t => {
      const style = (t.getAttribute('style') || '') + ';' + (t.getAttribute('font-size') ? `font-size:${t.getAttribute('font-size')}` : '');
      const m = style.match(/font-size:\s*([\d.]+)/) || style.match(/font:[^;]*?([\d.]+)px/);
      return m ? parseFloat(m[1]) : null;
    };
    let smallest = Infinity, which = '';
    svg.querySelectorAll('text').forEach(t => {
      const own = sizeOf(t);
      if (own === null || !t.textContent.trim()) return;
      const siblings = [...t.parentElement.querySelectorAll(':scope > text')].map(sizeOf).filter(v => v !== null);
      const size = Math.max(own, ...siblings) * scale;
      if (size < smallest) { smallest = size; which = t.textContent.trim().slice(0, 20); }
    });
    if (smallest === Infinity && svg.querySelector('path')) {
      out.figure_text.push(`${name}: SVG text drawn as paths (svg.fonttype 'path'): its size cannot be measured`);
    } else if (smallest < args.minText) {
      out.figure_text.push(`${name}: text "${which}" shown ${smallest.toFixed(1)} px tall (figure at ${Math.round(r.width)} px)`);
    }
  }
  article.querySelectorAll('.js-plotly-plot').forEach(gd => {
    let smallest = Infinity, which = '';
    gd.querySelectorAll('svg text').forEach(t => {
      if (!t.textContent.trim() || !shown(t)) return;
      const size = parseFloat(getComputedStyle(t).fontSize);
      if (size < smallest) { smallest = size; which = t.textContent.trim().slice(0, 20); }
    });
    if (smallest < args.minText) out.figure_text.push(`plotly figure: text "${which}" ${smallest.toFixed(1)} px`);
  });

  // Contrast of every piece of text against what it is drawn on.
  const rgba = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const v = m[1].split(/[,\s/]+/).filter(Boolean).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    if (!layers.length || layers[layers.length - 1][3] < 1) bg = rgba(getComputedStyle(document.body).backgroundColor) || bg;
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  out.contrast = [];
  const seen = new Set();
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const el = n.parentElement;
    if (!el || el.closest('mjx-container, svg, script, style, .js-plotly-plot, .headerlink, details:not([open]) > :not(summary)')) continue;
    if (!shown(el)) continue;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || parseFloat(s.opacity) < 0.1) continue;
    const fg = rgba(s.color);
    if (!fg) continue;
    const bg = background(el);
    const c = ratio(over(fg, bg), bg);
    if (c < args.minContrast) {
      const key = `${s.color} on ${bg.slice(0, 3).map(Math.round).join(',')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.contrast.push(`${c.toFixed(2)}:1 ${el.tagName.toLowerCase()}.${[...el.classList].slice(0, 2).join('.')} "${snip(n.textContent, 30)}" (${key})`);
    }
  }

  // Closed dropdowns: nothing they hold may show (a run of text outside any element would).
  out.leaks = [];
  article.querySelectorAll('.admonition.dropdown, details:not([open])').forEach(d => {
    const closed = d.tagName === 'DETAILS' ? !d.open : d.classList.contains('toggle-hidden');
    if (!closed) return;
    for (const n of d.childNodes) {
      if (n.nodeType !== Node.TEXT_NODE || !n.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      if ([...range.getClientRects()].some(r => r.width > 1 && r.height > 1)) out.leaks.push(snip(n.textContent, 50));
    }
  });
  // ... while its title, the only way to open it, stays readable.
  out.hidden_titles = [];
  article.querySelectorAll('.admonition.dropdown.toggle-hidden > .admonition-title, details:not([open]) > summary').forEach(t => {
    const size = parseFloat(getComputedStyle(t).fontSize), box = t.getBoundingClientRect();
    if (!(size >= 11 && box.height >= 11 && t.textContent.trim())) out.hidden_titles.push(`${snip(t.textContent, 40)} (${size}px)`);
  });

  // Words a reader sees without opening anything: prose and generated text, not code, printed
  // output (<pre>), tables, math, folded boxes or the checks' verdict boxes (folded too).
  out.words = 0;
  const word = /[\p{L}\p{N}][\p{L}\p{N}'’.,\-]*/gu;
  const words = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let n = words.nextNode(); n; n = words.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest('script, style, mjx-container, .cell_input, pre, table, .headerlink') || !shown(el)) continue;
    out.words += (n.textContent.match(word) || []).length;
  }

  // Headings.
  out.headings = [...article.querySelectorAll('h1, h2, h3, h4')].map(h => [Number(h.tagName[1]), h.textContent.replace(/[#¶]/g, '').replace(/^[\d.]+\s*/, '').trim()]);
  return out;
}
"""


class Views(Visits):
    """One browser context per (width, colour scheme); each page measured once per view
    (test_pages.Visits keyed by the colour scheme too)."""

    def context(self, width: int, scheme: str = "light"):
        key = (width, scheme)
        if key not in self.contexts:
            context = self.tools.context(self.browser, width, 900 if width > 600 else 844)
            self.contexts[key] = context
        return self.contexts[key]

    def report(self, path: str, width: int, scheme: str) -> dict:
        key = (path, width, scheme)
        if key not in self.reports:
            page = self.context(width, scheme).new_page()
            page.emulate_media(color_scheme=scheme)
            response = page.goto(f"{self.book_url}/{path}", wait_until="load")
            assert response is not None and response.ok, f"{path}: the page did not load"
            page.evaluate(_WAIT_TYPESET)
            theme = page.evaluate("() => document.documentElement.dataset.theme || ''")
            shot = SCREENS / f"{scheme}-{width}" / f"{_stem(path)}.jpg"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=70)
            report = page.evaluate(_MEASURE, {"minText": MIN_FIGURE_TEXT_PX, "minContrast": MIN_CONTRAST})
            report["requested_theme"] = theme
            page.close()
            self.reports[key] = report
        return self.reports[key]


@pytest.fixture(scope="module")
def views(browser, book_url, offline_tools):
    v = Views(browser, book_url, offline_tools)
    yield v
    v.close()


def _where(path: str, width: int, scheme: str = "") -> str:
    return f"{path} at {width} px" + (f", {scheme} mode" if scheme else "")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", PAGES)
def test_code_in_view_is_a_small_share(views, path, width):
    r = views.report(path, width, "light")
    share = r["code_px"] / max(r["article_px"], 1)
    assert share <= MAX_CODE_SHARE, (
        f"{_where(path, width)}: code input takes {share:.0%} of the page (at most {MAX_CODE_SHARE:.0%}); "
        f"tallest inputs in view: {r['tallest_inputs']}"
    )


# The API reference documents `claim` itself: its signature is the one `claim(` a reader should see.
@pytest.mark.parametrize("path", [p for p in PAGES if p != "appendix/2_api.html"])
def test_no_claim_call_in_view(views, path):
    r = views.report(path, 1280, "light")
    _fail_if(r["claim_calls"], f"{r['claim_call_count']} `claim(` calls visible (a claim shows its verdict line)", _where(path, 1280))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", PAGES)
def test_equations_fit(views, path, width):
    _fail_if(views.report(path, width, "light")["equations"], "formulas wider than their column or box", _where(path, width))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", PAGES)
def test_tables_are_tables_and_fit(views, path, width):
    r = views.report(path, width, "light")
    found = (r["tables"] + [f"a table printed as text: {t}" for t in r["printed_tables"]]
             + [f"code name broken in a table cell: {t}" for t in r["broken_names"]]
             + [f"output cut off: {t}" for t in r["cut_outputs"]])
    _fail_if(found, "tables or outputs that do not fit", _where(path, width))


@pytest.mark.parametrize("path", PAGES)
def test_figure_text_is_legible_on_a_phone(views, path):
    _fail_if(views.report(path, 390, "light")["figure_text"],
             f"figure text below {MIN_FIGURE_TEXT_PX:g} px as shown on a 390 px phone", _where(path, 390))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", PAGES)
def test_text_contrast(views, path, width, scheme):
    r = views.report(path, width, scheme)
    assert r["requested_theme"] == scheme, f"{_where(path, width, scheme)}: the page shows theme {r['requested_theme']!r}"
    _fail_if(r["contrast"], f"text with a contrast ratio below {MIN_CONTRAST}:1", _where(path, width, scheme))


@pytest.mark.parametrize("path", PAGES)
def test_closed_dropdowns_hide_everything(views, path):
    _fail_if(views.report(path, 1280, "light")["leaks"], "text showing out of a closed dropdown", _where(path, 1280))
    _fail_if(views.report(path, 1280, "light")["hidden_titles"], "a closed dropdown whose title cannot be read",
             _where(path, 1280))


# Sections that chapters share, by their title without number.
COMMON_SECTIONS = ("Theory", "Build it", "See it", "Stress it", "Explore it", "Summary", "Questions", "Exercises")


def test_headings_are_consistent(views):
    levels: dict[str, dict[int, list[str]]] = {}
    for path in CHAPTERS:
        for level, title in views.report(path, 1280, "light")["headings"]:
            for name in COMMON_SECTIONS:
                if title == name or title.startswith(name + ":"):
                    levels.setdefault(name, {}).setdefault(level, []).append(path.split("/")[-1][:2])
    mixed = [f"{name}: " + "; ".join(f"h{lv} in chapters {', '.join(ch)}" for lv, ch in sorted(by.items()))
             for name, by in levels.items() if len(by) > 1]
    _fail_if(mixed, "the same section at different heading levels in different chapters", "chapters")


def test_search_excerpts_quote_the_text(views):
    """A search result's excerpt quotes the page's prose, not its table of contents ("2.1. Theory 2.1.1. ...")."""
    page = views.context(1280, "light").new_page()
    page.goto(f"{views.book_url}/search.html?q=metrics", wait_until="load")
    page.wait_for_function("document.querySelectorAll('ul.search li p.context').length >= 3", timeout=20_000)
    excerpts = page.evaluate("() => [...document.querySelectorAll('ul.search li p.context')].map(p => p.textContent)")
    page.close()
    # "Contents 2.1. Theory 2.1.1. Metrics of ...", or the page's toolbar (".ipynb .pdf") instead of its text
    toc_like = [e[:100] for e in excerpts
                if "Contents" in e[:80] or re.search(r"\d+\.\d+\.\s+\S+.{0,60}\d+\.\d+\.\d+\.\s", e)
                or re.fullmatch(r"\W*\.?(ipynb|md|pdf)\W*", e.strip())]
    _fail_if(toc_like, f"{len(toc_like)} of {len(excerpts)} search excerpts quote a table of contents or toolbar", "search.html?q=metrics")


def test_the_course_is_short_enough_to_assign(views):
    """The words a reader sees on the intro and the chapter pages (1280 px, light), at most `MAX_WORDS`."""
    counts = {path: views.report(path, 1280, "light")["words"] for path in ["intro.html", *CHAPTERS]}
    total = sum(counts.values())
    table = "\n".join(f"  {n:6,d}  {path}" for path, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"words a reader sees: {total:,} (at most {MAX_WORDS:,})\n{table}")
    assert total <= MAX_WORDS, f"{total:,} words on the intro and the chapters, more than {MAX_WORDS:,}:\n{table}"
