"""The PDF of the whole book (`make pdf`, `_ext/book_pdf.py`), read back with poppler's tools.

What the book should hold is computed here from the sources and the built HTML, not from the
script that printed it: the pages and their order from `_toc.yml` (globs expanded in sorted order,
as Jupyter Book does), each page's title from the first `<h1>` of its built HTML. Checked:

- every page of the book starts a new page of the PDF, in table-of-contents order, and the contents
  page gives that page's number, linked to it;
- every page of the PDF shows its number in the footer ("12 / 340");
- the number of pages is plausible for the amount of text in the built pages;
- no raw TeX in the text: `\\frac`, `$$`, `\\(`, `\\[` and `\\begin{` appear only inside code that
  the book itself shows (a plot label in a code cell), so MathJax typeset all the math;
- figures are embedded: the PDF holds at least as many raster images as the book's figures carry
  (the heat maps inside the SVG figures; the rest of an SVG figure is drawn as vector paths, which
  poppler's tools do not list).

The PDF is built (a subprocess, with Chromium) when it is missing or older than the built book;
`make test` builds it just before (`make pdf`). Needs poppler-utils (pdfinfo, pdftotext, pdfimages):
skipped with the reason without them, failed instead under `QKLAB_REQUIRE_BROWSER=1` (CI).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from functools import cached_property
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "_ext" / "book_pdf.py"
RAW_TEX = ("\\frac", "$$", "\\(", "\\[", "\\begin{")


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _poppler(*command: str) -> str:
    if shutil.which(command[0]) is None:
        reason = f"{command[0]} not found: apt-get install -y poppler-utils"
        if os.environ.get("QKLAB_REQUIRE_BROWSER") == "1":  # CI: as for Chromium, no skipping
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def toc_pages() -> list[str]:
    """The book's pages in reading order, as source paths without suffix, from `_toc.yml`."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]
    for part in toc["parts"]:
        for entry in part["chapters"]:
            if "glob" in entry:
                matches = sorted({p.with_suffix("") for p in ROOT.glob(entry["glob"]) if p.suffix in (".md", ".ipynb")})
                pages += [str(p.relative_to(ROOT)) for p in matches]
            else:
                pages.append(entry["file"])
    return pages


def page_title(built_page: Path) -> str:
    """The text of the first <h1> of a built page's article, without its permalink mark."""
    text = built_page.read_text(encoding="utf-8")
    text = text[text.find("<article"):]
    match = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.DOTALL)
    assert match, f"{built_page} has no <h1>"
    heading = re.sub(r'<a class="headerlink".*?</a>', "", match.group(1), flags=re.DOTALL)
    return _normalize(html.unescape(re.sub(r"<[^>]+>", "", heading)))


class BookPdf:
    """The PDF as poppler reads it: its pages' text, named destinations and images."""

    def __init__(self, path: Path, footer_title: str):
        self.path = path
        self.footer_title = footer_title

    @cached_property
    def pages(self) -> list[str]:
        # pdftotext ends every page with a form feed
        return _poppler("pdftotext", "-enc", "UTF-8", str(self.path), "-").split("\f")[:-1]

    def body(self, number: int) -> str:
        """Page `number`'s text (1-based) without its footer (the book's title and "N / total"),
        whitespace collapsed."""
        lines = [line.strip() for line in self.pages[number - 1].splitlines() if line.strip()]
        if lines and re.fullmatch(r"\d+ / \d+", lines[-1]):
            lines.pop()
        if lines and lines[-1] == self.footer_title:
            lines.pop()
        return _normalize(" ".join(lines))

    @cached_property
    def destinations(self) -> dict[str, int]:
        found = {}
        for line in _poppler("pdfinfo", "-dests", str(self.path)).splitlines():
            match = re.match(r'\s*(\d+)\s+\[.*\]\s+"(.*)"\s*$', line)
            if match:
                found[match.group(2)] = int(match.group(1))
        return found

    @cached_property
    def images(self) -> list[tuple[int, int, int]]:
        """(page, width, height) of every raster image drawn, as `pdfimages -list` gives them."""
        rows = []
        for line in _poppler("pdfimages", "-list", str(self.path)).splitlines()[2:]:
            fields = line.split()
            if fields[2] == "image":  # not the soft masks ("smask") of images with transparency
                rows.append((int(fields[0]), int(fields[3]), int(fields[4])))
        return rows


@pytest.fixture(scope="module")
def book_pdf(built_book: Path) -> BookPdf:
    pdf = built_book.parent / "pdf" / "qklab.pdf"
    newest_page = max(p.stat().st_mtime for p in built_book.rglob("*.html"))
    if not pdf.is_file() or pdf.stat().st_mtime < newest_page:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--html", str(built_book), "--out", str(pdf)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if result.returncode != 0:
            pytest.fail("building the PDF failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])
    title = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["title"]
    return BookPdf(pdf, title)


@pytest.fixture(scope="module")
def expected(built_book: Path) -> list[tuple[str, str]]:
    """(built page, title) for every page of the book, in reading order."""
    pages = []
    for source in toc_pages():
        built = built_book / (source + ".html")
        assert built.is_file(), f"{source} is in _toc.yml but {built} was not built"
        pages.append((source, page_title(built)))
    assert len(pages) >= 15, pages
    return pages


def contents_numbers(book_pdf: BookPdf, titles: list[str]) -> dict[str, int]:
    """The page number the contents page(s) give each title."""
    first = next((n for n in range(1, 5) if book_pdf.body(n).startswith("Contents")), None)
    assert first, "no page among the first four begins with 'Contents'"
    contents = " ".join(book_pdf.body(n) for n in range(first, first + 3))
    numbers = {}
    for title in titles:
        match = re.search(re.escape(title) + r" (\d+)\b", contents)
        assert match, f"the contents do not list {title!r} with a page number:\n{contents[:3000]}"
        numbers[title] = int(match.group(1))
    return numbers


def test_every_page_starts_a_page_in_contents_order_at_the_number_the_contents_give(book_pdf, expected):
    titles = [title for _, title in expected]
    numbers = contents_numbers(book_pdf, titles)
    starts = [numbers[title] for title in titles]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), (
        f"the contents do not list the pages in _toc.yml order on distinct pages: {list(zip(titles, starts))}")
    for title, start in numbers.items():
        top = book_pdf.body(start)
        assert top.startswith(title), f"the contents send {title!r} to page {start}, which begins: {top[:200]!r}"


def test_contents_entries_link_to_their_pages(book_pdf, expected):
    """The contents' links point at ids that the PDF resolves to the page the contents print."""
    numbers = contents_numbers(book_pdf, [title for _, title in expected])
    for i, (_, title) in enumerate(expected):
        assert book_pdf.destinations.get(f"p{i}") == numbers[title], (
            f"{title!r}: link target p{i} is on page {book_pdf.destinations.get(f'p{i}')}, "
            f"the contents say {numbers[title]}")


def test_every_page_shows_its_number(book_pdf):
    total = len(book_pdf.pages)
    missing = [i for i, text in enumerate(book_pdf.pages, 1) if f"{i} / {total}" not in text]
    assert not missing, f"pages without 'N / {total}' in their footer: {missing[:20]}"


def test_page_count_is_plausible(book_pdf, built_book, expected):
    """At least one page per book page, and between 150 and 1,500 words of the built pages per page."""
    words = 0
    for source, _ in expected:
        text = (built_book / (source + ".html")).read_text(encoding="utf-8")
        article = re.search(r"<article[^>]*>(.*)</article>", text, re.DOTALL)
        words += len(re.sub(r"<[^>]+>", " ", article.group(1) if article else text).split())
    n = len(book_pdf.pages)
    assert n >= len(expected) + 2
    assert words / 1500 <= n <= words / 150, f"{n} pages for {words} words of built pages"


def test_no_raw_tex_outside_code(book_pdf, built_book, expected):
    code = []
    for source, _ in expected:
        text = (built_book / (source + ".html")).read_text(encoding="utf-8")
        code += [_normalize(html.unescape(re.sub(r"<[^>]+>", "", block)))
                 for block in re.findall(r"<pre[^>]*>(.*?)</pre>", text, re.DOTALL)]
    shown_code = "\n".join(code)
    stray = []
    for number, page in enumerate(book_pdf.pages, 1):
        for line in page.splitlines():
            if any(marker in line for marker in RAW_TEX) and _normalize(line) not in shown_code:
                stray.append(f"page {number}: {line.strip()[:120]}")
    assert not stray, "raw TeX in the PDF's text, not from a code cell:\n" + "\n".join(stray[:20])


def test_figures_are_embedded(book_pdf, built_book, expected):
    """Every raster image inside the book's figures (matplotlib's heat maps are PNGs inside SVG
    figures) is drawn in the PDF, and the figures' pages draw images."""
    figures = set()
    for source, _ in expected:
        built = built_book / (source + ".html")
        for src in re.findall(r'<img[^>]*src="([^"]*_images/[^"]+)"', built.read_text(encoding="utf-8")):
            figures.add((built.parent / src).resolve())
    assert figures, "no figures found in the built pages"
    embedded_rasters = sum(
        len(re.findall(r"<image\b", f.read_text(encoding="utf-8"))) if f.suffix == ".svg" else 1 for f in figures
    )
    assert len(book_pdf.images) >= embedded_rasters > 0, (
        f"{len(book_pdf.images)} raster images in the PDF, the book's figures hold {embedded_rasters}")
