"""The book's explorers work in a real browser with no network, and a reader can read them.

Each static explorer (`qklab.explore.*_static`) is a plotly figure with a slider, embedded in a
chapter page as `<div class="qklab-explorer" data-explorer=NAME>`; plotly.js comes from the book
itself (`_static/qklab-offline/plotly.min.js`, possibly loaded with `defer`). For every explorer
on the pages below, with every request to a host other than 127.0.0.1 aborted:

- at 1280 px, the test drags the slider's grip across the rail with the mouse, as a reader would,
  and asserts that the slider's step and the figure's title (the parameter and the measured
  entropy and residual; for chapter 7, the measurements printed in the profile panel) change,
  and that what is *drawn* changes: the heatmap's rendered image and the SVG path of every line
  plot (read from the DOM, not from plotly's data); chapter 7's explorer has a second slider, the
  mean, which redraws the same way and leaves the first (the variance) where it was;
- the explorer does not open at a step that shows (almost) nothing: chapter 3's opens deeper
  than depth 1;
- at 1280 px and at 390 px (a phone), the text of the figure is readable where it is drawn: every
  panel title and the figure's title lie inside the figure, their rendered text is the whole
  text (no "..." and nothing cut), no two texts overlap, and the colour bar covers no axis
  title, tick label or panel title; at 390 px the two panels are stacked;
- the page logged no console error, raised no JavaScript error and made no failed or non-local
  request.

Screenshots of each explorer (before and after the move, and at 390 px) are written to
`_build/browser-artifacts/`.
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
  const slider = gd.layout.sliders[0];
  // text traces (chapter 7's measurements, in the profile panel) as drawn, visible ones only
  const texts = [...gd.querySelectorAll('.scatterlayer .trace')]
    .filter(t => getComputedStyle(t).opacity !== '0' && t.style.display !== 'none')
    .map(t => [...t.querySelectorAll('.textpoint text')].map(x => x.textContent).join('|'))
    .filter(x => x.length > 0);
  return {
    active: slider.active,
    actives: gd.layout.sliders.map(s => s.active),
    label: slider.steps[slider.active].label,
    n_steps: slider.steps.length,
    visible: gd.data.map((t, i) => t.visible === true ? i : -1).filter(i => i >= 0),
    title: gd.layout.title.text + (texts.length ? ' | ' + texts.join(' | ') : ''),
    texts: texts,
    images: images,
    lines: lines,
  };
}
"""

# Where the figure's texts and parts are drawn (boxes relative to the figure's SVG, in px), and
# the rendered text of the titles next to the text they were given.
_GEOMETRY = """
(root) => {
  const gd = root.querySelector('.js-plotly-plot');
  const svg = gd.querySelector('.main-svg').getBoundingClientRect();
  const box = (el) => { const b = el.getBoundingClientRect();
    return {x0: b.left - svg.left, y0: b.top - svg.top, x1: b.right - svg.left, y1: b.bottom - svg.top}; };
  const panels = ['xy', 'x2y2'].map(p => box(gd.querySelector(`.draglayer .${p} .nsewdrag`)));
  return {
    width: svg.width, height: svg.height,
    title: {box: box(gd.querySelector('.gtitle')), text: gd.querySelector('.gtitle').textContent.replace(/\u200b/g, ''),
            given: gd.layout.title.text.replace(/<[^>]+>/g, '')},
    panel_titles: [...gd.querySelectorAll('.annotation')].map((a, i) => ({
      box: box(a.querySelector('.annotation-text')), text: a.querySelector('.annotation-text').textContent,
      given: gd.layout.annotations[i].text})),
    colorbars: [...gd.querySelectorAll('.colorbar')].map(box),
    axis_titles: [...gd.querySelectorAll('.g-xtitle, .g-ytitle')].map(t => ({box: box(t), text: t.textContent})),
    tick_labels: [...gd.querySelectorAll('.xtick text, .ytick text')].map(t => ({box: box(t), text: t.textContent})),
    panels: panels,
  };
}
"""


def _assert_clean(visit, what: str) -> None:
    problems = visit.problems()
    assert not problems, f"{what}:\n" + "\n".join(problems)


def _overlap(a: dict, b: dict, tol: float = 1.0) -> bool:
    return a["x0"] + tol < b["x1"] and b["x0"] + tol < a["x1"] and a["y0"] + tol < b["y1"] and b["y0"] + tol < a["y1"]


def _inside(a: dict, width: float, height: float) -> bool:
    return a["x0"] >= -0.5 and a["y0"] >= -0.5 and a["x1"] <= width + 0.5 and a["y1"] <= height + 0.5


def _readable(root, what: str) -> dict:
    """Assert that the explorer's titles are whole, inside the figure, apart, and not under the colour bar."""
    g = root.evaluate(_GEOMETRY)
    titles = [g["title"]] + g["panel_titles"]
    for t in titles:
        assert t["text"] == t["given"], f"{what}: title drawn as {t['text']!r}, given {t['given']!r}"
        assert _inside(t["box"], g["width"], g["height"]), f"{what}: title {t['text']!r} leaves the figure: {t['box']}"
        assert t["box"]["x0"] >= 8, f"{what}: title {t['text']!r} is flush against the left edge (x = {t['box']['x0']:.0f} px)"
    for k, (t, panel) in enumerate(zip(g["panel_titles"], g["panels"])):  # each title over its own panel
        other = g["panels"][1 - k]
        right = other["x0"] if other["x0"] >= panel["x1"] else g["width"]
        assert panel["x0"] - 2 <= t["box"]["x0"] and t["box"]["x1"] <= right, (
            f"{what}: panel title {t['text']!r} ({t['box']['x0']:.0f}-{t['box']['x1']:.0f} px) is wider than its "
            f"panel's room ({panel['x0']:.0f}-{right:.0f} px): clipped or spilling over"
        )
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            assert not _overlap(a["box"], b["box"]), f"{what}: titles overlap: {a['text']!r} and {b['text']!r}"
    for bar in g["colorbars"]:
        assert _inside(bar, g["width"], g["height"]), f"{what}: the colour bar leaves the figure: {bar}"
        for t in g["axis_titles"] + g["tick_labels"] + g["panel_titles"]:
            assert not _overlap(bar, t["box"]), f"{what}: the colour bar covers {t['text']!r}"
    for t in g["axis_titles"]:
        assert _inside(t["box"], g["width"], g["height"]), f"{what}: axis title {t['text']!r} leaves the figure"
        for p in g["panel_titles"]:
            assert not _overlap(t["box"], p["box"]), f"{what}: axis title {t['text']!r} under panel title {p['text']!r}"
    return g


def _drag_slider(page, root, fraction: float, which: int = 0) -> None:
    """Press slider `which`'s grip and drag it to `fraction` of the rail, with the mouse."""
    grip = root.locator(".slider-grip-rect").nth(which).bounding_box()
    rail = root.locator(".slider-rail-rect").nth(which).bounding_box()
    assert grip and rail, "the explorer has no plotly slider (grip or rail not rendered)"
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(rail["x"] + fraction * rail["width"], y, steps=12)
    page.mouse.up()


def _explorers(page, path: str):
    explorers = page.locator(".qklab-explorer")
    names = [explorers.nth(i).get_attribute("data-explorer") for i in range(explorers.count())]
    assert names == EXPLORER_PAGES[path], f"{path}: expected explorers {EXPLORER_PAGES[path]}, found {names}"
    for i in range(len(names)):
        root = explorers.nth(i)
        root.locator(".slider-grip-rect").first.wait_for(timeout=20_000)  # plotly has drawn the figure
        assert root.locator("p[id$='-fallback']").first.is_hidden(), "plotly.js did not load: the fallback note shows"
    return [(name, explorers.nth(i)) for i, name in enumerate(names)]


@pytest.mark.parametrize("path", sorted(EXPLORER_PAGES))
def test_explorer_slider_redraws_offline(open_page, path):
    visit = open_page(path)
    page = visit.page
    page.wait_for_load_state("networkidle")
    stem = re.sub(r"\W+", "_", path.removesuffix(".html"))
    for name, root in _explorers(page, path):
        root.scroll_into_view_if_needed()
        before = root.evaluate(_DRAWN)
        assert before["images"] + before["lines"], f"{name}: nothing drawn at the first step shown"
        if name == "depth":
            assert int(before["label"]) > 1, "chapter 3's explorer opens at depth 1 (one layer: a nearly empty plot)"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(ARTIFACTS / f"{stem}-{name}-before.png"))

        # Drag to the first step (or to the last if it opened there): chapter 3's explorer opens
        # where the tokens have merged, so only shallower depths change its cosine map.
        _drag_slider(page, root, 0.02 if before["active"] > 0 else 0.98)
        page.wait_for_function(
            "([root, start]) => root.querySelector('.js-plotly-plot').layout.sliders[0].active !== start",
            arg=[root.element_handle(), before["active"]], timeout=10_000,
        )
        page.wait_for_timeout(300)  # let plotly finish redrawing
        after = root.evaluate(_DRAWN)
        root.screenshot(path=str(ARTIFACTS / f"{stem}-{name}-after.png"))

        assert after["active"] != before["active"] and after["visible"] != before["visible"], f"{name}: the slider did not switch steps"
        assert after["title"] != before["title"], f"{name}: the title (parameter and measurements) did not change"
        if before["images"]:
            assert after["images"] != before["images"], f"{name}: the heatmap was not redrawn"
        if before["lines"]:
            assert after["lines"] != before["lines"], f"{name}: the line plots were not redrawn"
        _readable(root, f"{name} at 1280 px, after the move")
        if name == "spectrum":
            _spectrum_second_slider(page, root, after, ARTIFACTS / f"{stem}-{name}-mean.png")
    visit.screenshot(stem)  # the whole page, sliders moved
    _assert_clean(visit, path)


def _spectrum_second_slider(page, root, before: dict, shot: Path) -> None:
    """Chapter 7's explorer has a second slider, the mean: moving it redraws the map, the profile
    and the measurements and leaves the variance slider where it was."""
    sliders = page.evaluate("r => r.querySelector('.js-plotly-plot').layout.sliders.map(s => s.currentvalue.prefix)", root.element_handle())
    assert len(sliders) == 2 and "variance" in sliders[0] and "mean" in sliders[1], f"chapter 7's sliders: {sliders}"
    start = before["actives"][1]
    _drag_slider(page, root, 0.02 if start > 0 else 0.98, which=1)
    page.wait_for_function(
        "([root, start]) => root.querySelector('.js-plotly-plot').layout.sliders[1].active !== start",
        arg=[root.element_handle(), start], timeout=10_000,
    )
    page.wait_for_timeout(300)
    after = root.evaluate(_DRAWN)
    root.screenshot(path=str(shot))
    assert after["actives"][0] == before["actives"][0], "moving the mean moved the variance slider"
    assert after["texts"] != before["texts"], "the measurements did not change with the mean"
    assert after["images"] != before["images"], "the attention map was not redrawn for the new mean"
    assert after["lines"] != before["lines"], "the support profile was not redrawn for the new mean"


@pytest.mark.parametrize("path", sorted(EXPLORER_PAGES))
def test_explorer_is_readable_at_1280_and_on_a_phone(browser, book_url, offline_tools, path):
    stem = re.sub(r"\W+", "_", path.removesuffix(".html"))
    for width in (1280, 390):
        context = offline_tools.context(browser, width, 844)
        try:
            visit = offline_tools.watch(context.new_page())
            visit.page.goto(f"{book_url}/{path}")
            visit.page.wait_for_load_state("networkidle")
            for name, root in _explorers(visit.page, path):
                root.scroll_into_view_if_needed()
                visit.page.wait_for_timeout(300)  # the layout for this width is applied after the first draw
                g = _readable(root, f"{name} at {width} px")
                assert g["width"] <= width, f"{name}: the figure ({g['width']} px) is wider than the {width} px screen"
                top, bottom = sorted(g["panels"], key=lambda p: p["y0"])
                if width == 390:
                    assert top["y1"] <= bottom["y0"], f"{name}: the two panels are not stacked on a phone"
                    root.screenshot(path=str(ARTIFACTS / f"{stem}-{name}-390px.png"))
                else:
                    assert top["x1"] <= bottom["x0"] or bottom["x1"] <= top["x0"], f"{name}: the panels are not side by side"
            _assert_clean(visit, f"{path} at {width} px")
        finally:
            context.close()


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


@pytest.mark.parametrize("path", sorted(EXPLORER_PAGES))
def test_explorer_sliders_work_from_the_keyboard(open_page, path):
    """Each plotly slider has a native range input with a label a screen reader reads; Tab reaches
    it, the arrow keys move it, the figure follows (step, title) and the plotly slider with it; a
    drag of the plotly slider moves the input back."""
    visit = open_page(path)
    page = visit.page
    page.wait_for_load_state("networkidle")
    for name, root in _explorers(page, path):
        root.scroll_into_view_if_needed()
        n_sliders = root.evaluate("r => r.querySelector('.js-plotly-plot').layout.sliders.length")
        inputs = root.locator(".qklab-explorer-keys input[type=range]")
        assert inputs.count() == n_sliders, f"{name}: {inputs.count()} keyboard sliders for {n_sliders} plotly sliders"
        for i in range(n_sliders):
            box = inputs.nth(i)
            label = page.evaluate("e => e.labels.length ? e.labels[0].textContent.trim() : ''", box.element_handle())
            prefix = root.evaluate(f"r => r.querySelector('.js-plotly-plot').layout.sliders[{i}].currentvalue.prefix")
            assert label and label in prefix, f"{name}, slider {i}: label {label!r} does not name the parameter ({prefix!r})"
            before = root.evaluate(_DRAWN)
            start = root.evaluate(f"r => r.querySelector('.js-plotly-plot').layout.sliders[{i}].active")
            box.focus()
            assert page.evaluate("e => document.activeElement === e", box.element_handle()), f"{name}: the input takes no focus"
            key = "ArrowLeft" if start > 0 else "ArrowRight"
            page.keyboard.press(key)
            page.wait_for_function(
                f"([root, start]) => root.querySelector('.js-plotly-plot').layout.sliders[{i}].active !== start",
                arg=[root.element_handle(), start], timeout=10_000,
            )
            page.wait_for_timeout(300)
            after = root.evaluate(_DRAWN)
            assert after["title"] != before["title"], f"{name}, slider {i}: the keyboard moved the input but not the figure"
            value_text = box.get_attribute("aria-valuetext")
            active = root.evaluate(f"r => r.querySelector('.js-plotly-plot').layout.sliders[{i}]")
            assert value_text == active["steps"][active["active"]]["label"], f"{name}: aria-valuetext {value_text!r} is not the step shown"
        # and back: the mouse on the plotly slider moves the native input
        start = int(inputs.nth(0).input_value())
        _drag_slider(page, root, 0.02 if start > 0 else 0.98)
        page.wait_for_function("([e, start]) => Number(e.value) !== start", arg=[inputs.nth(0).element_handle(), start], timeout=10_000)
    _assert_clean(visit, path)
