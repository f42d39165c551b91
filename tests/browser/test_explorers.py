"""The book's explorers work in a real browser with no network: moving a slider redraws the figure.

Each static explorer (`qklab.explore.*_static`) is a plotly figure with a slider, embedded in a
chapter page as `<div class="qklab-explorer" data-explorer=NAME>`; plotly.js comes from the book
itself (`_static/qklab-offline/plotly.min.js`). For every explorer on the pages below, with every
request to a host other than 127.0.0.1 aborted, the test drags the slider's grip across the rail
with the mouse, as a reader would, and asserts that

- the slider's active step and the figure's title (which states the parameter and the measured
  entropy and residual) change;
- what is *drawn* changes: the heatmap's rendered image and the SVG path of every line plot
  (read from the DOM, not from plotly's data), so the attention map and the profile or curves
  visibly move;
- the page logged no console error, raised no JavaScript error and made no failed or non-local
  request.

Screenshots of each explorer before and after the move are written to `_build/browser-artifacts/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "_build" / "browser-artifacts"  # as conftest.py

# page -> the explorers it must hold (data-explorer names, in page order)
EXPLORER_PAGES = {
    "chapters/01_bilinear_form.html": ["temperature"],
    "chapters/03_rank_collapse.html": ["depth"],
    "chapters/05_two_collapses.html": ["scale"],
    "chapters/07_localization.html": ["spectrum"],
}

# What is drawn in one explorer: the slider's state, the title, the rendered heatmap images and
# the SVG paths of the visible line traces.
_DRAWN = """
(root) => {
  const gd = root.querySelector('.js-plotly-plot');
  const images = [...gd.querySelectorAll('.heatmaplayer image')].map(im => im.getAttribute('href') || im.getAttribute('xlink:href') || '');
  const lines = [...gd.querySelectorAll('.scatterlayer .trace')]
    .filter(t => getComputedStyle(t).opacity !== '0' && t.style.display !== 'none')
    .map(t => [...t.querySelectorAll('path.js-line')].map(p => p.getAttribute('d')).join('|'))
    .filter(d => d.length > 0);
  return {
    active: gd.layout.sliders[0].active,
    visible: gd.data.map((t, i) => t.visible === true ? i : -1).filter(i => i >= 0),
    title: gd.layout.title.text,
    images: images,
    lines: lines,
  };
}
"""


def _assert_clean(visit, what: str) -> None:
    problems = visit.problems()
    assert not problems, f"{what}:\n" + "\n".join(problems)


def _drag_slider(page, root, fraction: float) -> None:
    """Press the slider's grip and drag it to `fraction` of the rail, with the mouse."""
    grip = root.locator(".slider-grip-rect").first.bounding_box()
    rail = root.locator(".slider-rail-rect").first.bounding_box()
    assert grip and rail, "the explorer has no plotly slider (grip or rail not rendered)"
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(rail["x"] + fraction * rail["width"], y, steps=12)
    page.mouse.up()


@pytest.mark.parametrize("path", sorted(EXPLORER_PAGES))
def test_explorer_slider_redraws_offline(open_page, path):
    visit = open_page(path)
    page = visit.page
    page.wait_for_load_state("networkidle")
    explorers = page.locator(".qklab-explorer")
    names = [explorers.nth(i).get_attribute("data-explorer") for i in range(explorers.count())]
    assert names == EXPLORER_PAGES[path], f"{path}: expected explorers {EXPLORER_PAGES[path]}, found {names}"
    stem = re.sub(r"\W+", "_", path.removesuffix(".html"))
    for i, name in enumerate(names):
        root = explorers.nth(i)
        root.locator(".slider-grip-rect").first.wait_for(timeout=20_000)  # plotly has drawn the figure
        assert root.locator("p[id$='-fallback']").first.is_hidden(), "plotly.js did not load: the fallback note shows"
        root.scroll_into_view_if_needed()
        before = root.evaluate(_DRAWN)
        assert before["active"] == 0 and before["images"] + before["lines"], f"{name}: nothing drawn at step 0"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(ARTIFACTS / f"{stem}-{name}-before.png"))

        _drag_slider(page, root, 0.7)
        page.wait_for_function(
            "(root) => root.querySelector('.js-plotly-plot').layout.sliders[0].active > 0",
            arg=root.element_handle(), timeout=10_000,
        )
        page.wait_for_timeout(300)  # let plotly finish redrawing
        after = root.evaluate(_DRAWN)
        root.screenshot(path=str(ARTIFACTS / f"{stem}-{name}-after.png"))

        assert after["active"] > 0 and after["visible"] != before["visible"], f"{name}: the slider did not switch steps"
        assert after["title"] != before["title"], f"{name}: the title (parameter and measurements) did not change"
        if before["images"]:
            assert after["images"] != before["images"], f"{name}: the heatmap was not redrawn"
        if before["lines"]:
            assert after["lines"] != before["lines"], f"{name}: the line plots were not redrawn"
    visit.screenshot(stem)  # the whole page, sliders moved
    _assert_clean(visit, path)


def test_chapter_07_typesets_math_offline(open_page):
    """The explorer's page is also a page with math: MathJax, served locally, typesets it."""
    visit = open_page("chapters/07_localization.html")
    page = visit.page
    # The first formula may sit in a closed dropdown: wait for typeset math, visible or not.
    page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
    page.wait_for_load_state("networkidle")
    assert page.locator("mjx-container:visible").count() >= 10
    # No raw TeX left in the prose (code cells may hold TeX in plot labels, so only paragraphs).
    prose = "\n".join(page.locator("main p").all_inner_texts())
    assert "\\kappa" not in prose and "\\sqrt" not in prose, "some math was not typeset"
    _assert_clean(visit, "chapters/07_localization.html")
