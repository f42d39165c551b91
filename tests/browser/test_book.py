"""The built book works offline in a real browser: pages load with no console errors and no
request leaving the machine, and MathJax (served from the book itself) typesets the math."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CHAPTER_00 = "chapters/00_how_to_use.html"


def _assert_clean(visit, what):
    problems = visit.problems()
    assert not problems, f"{what}:\n" + "\n".join(problems)


def test_index_loads_offline(open_page):
    visit = open_page("index.html")
    visit.page.wait_for_load_state("networkidle")
    assert "Attention localization" in visit.page.title()
    visit.screenshot("index")
    _assert_clean(visit, "index.html")


def test_chapter_00_typesets_math_offline(open_page):
    visit = open_page(CHAPTER_00)
    page = visit.page
    # MathJax replaces each $...$ by an <mjx-container> once it has typeset the page.
    page.wait_for_selector("mjx-container", timeout=20_000)
    page.wait_for_load_state("networkidle")
    n_math = page.locator("mjx-container").count()
    assert n_math >= 5, f"expected the chapter's formulas to be typeset, found {n_math} mjx-container elements"
    # No raw TeX left in the running text: a sign that MathJax did not run on some math.
    assert "\\sum_" not in page.locator("main").inner_text()
    # The exercise box and its solution dropdown are rendered by sphinx-exercise.
    assert page.locator(".exercise").count() >= 1
    assert page.locator(".solution").count() >= 1
    visit.screenshot("chapter_00")
    _assert_clean(visit, CHAPTER_00)
