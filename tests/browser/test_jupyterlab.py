"""A learner notebook opened in JupyterLab (with jupyterlab-myst) renders as the book does.

The test starts `jupyter lab` on 127.0.0.1 (a free port, no token, its own runtime, config and
settings folders, killed at the end), opens `exercises/00_how_to_use.ipynb` (generated afresh) in headless
Chromium and asserts that the exercise is a rendered block (not a code fence with raw LaTeX),
that the hint and the end-of-chapter answers stay hidden until opened, that the math is typeset
and that the citation reads as text, not as a `{cite}` role. The notebook is not trusted (a fresh
copy never is): rendering MyST markdown does not depend on trust. A screenshot is saved under
`_build/browser-artifacts/`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "exercises" / "00_how_to_use.ipynb"
LIVE = Path("live_explorers.ipynb")  # written by the fixture from the chapters' live cells
CHAPTER = Path("07_localization.ipynb")  # a chapter with cross-references to other chapters
LINKED = Path("06_qk_eigenspectrum.ipynb")  # the chapter its first cell links
LIVE_CHAPTERS = ("01_bilinear_form", "03_rank_collapse", "07_localization")
ARTIFACTS = ROOT / "_build" / "browser-artifacts"


def _missing(reason: str):
    if os.environ.get("QKLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (QKLAB_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def _live_notebook() -> str:
    """A notebook of the live explorer cells of chapters 1, 3 and 7 (the cells that call `*_widget`), as committed."""
    import nbformat

    cells = []
    for stem in LIVE_CHAPTERS:
        chapter = nbformat.read(ROOT / "chapters" / f"{stem}.ipynb", as_version=4)
        live = [c for c in chapter.cells if c.cell_type == "code" and "_widget(" in c.source]
        assert len(live) == 1, f"{stem}: expected one live explorer cell, found {len(live)}"
        cells.append(nbformat.v4.new_code_cell(live[0].source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server serving a folder with a copy of the learner notebook; yields its URL."""
    for module in ("jupyterlab", "jupyterlab_myst"):
        try:
            __import__(module)
        except ImportError:
            _missing(f"{module} is not installed (pip install -r requirements.txt)")
    home = tmp_path_factory.mktemp("lab")
    served = home / "work"
    served.mkdir()
    # The learner notebook as `make exercises` writes it (test_exercises checks that the
    # committed one is the same).
    from qklab.exercises import render

    (served / NOTEBOOK.name).write_text(render(ROOT / "chapters" / NOTEBOOK.name), encoding="utf-8")
    # The chapters' live explorer cells, in one notebook, and a chapter as its author opens it.
    (served / LIVE.name).write_text(_live_notebook(), encoding="utf-8")
    for name in (CHAPTER.name, LINKED.name):
        (served / name).write_text((ROOT / "chapters" / name).read_text(encoding="utf-8"), encoding="utf-8")
    # Every cell rendered at once (no windowing), and no news pop-up over the notebook.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"))
    command = [
        str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={served}",
        "--LabApp.expose_app_in_browser=True",  # `window.jupyterapp`: the live test asks it when the kernel is ready
        "--ServerApp.disable_check_xsrf=True",  # the live test shuts its kernel down through the REST API
        f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(home / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=served)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not start:\n" + (home / "server.log").read_text()[-3000:])
                time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_learner_notebook_renders_exercise_hint_answers_and_citation(lab, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(f"{lab}/lab/tree/{NOTEBOOK.name}")
        notebook = page.locator(".jp-Notebook")
        notebook.wait_for(timeout=60_000)
        # jupyterlab-myst renders each markdown cell into a `.myst` widget: wait for all of them.
        page.wait_for_function(
            "() => { const cells = [...document.querySelectorAll('.jp-MarkdownCell')];"
            " return cells.length > 5 && cells.every(c => c.querySelector('.myst')); }", timeout=60_000)
        # The exercise statement is an admonition block.
        exercise = page.locator(".jp-MarkdownCell .myst", has_text="Entropy of a uniform row").first
        text = notebook.inner_text()
        for raw in ("```", "{exercise}", "{admonition}", "{dropdown}", "{cite}", "{numref}", ":class:"):
            assert raw not in text, f"raw MyST markup {raw!r} is shown in JupyterLab"
        assert exercise.locator("aside.myst-admonition").count() == 1, "the exercise is not rendered as a block"
        assert "Exercise" in exercise.locator(".myst-admonition-header").inner_text()
        # Math is typeset (KaTeX), not left as TeX source.
        assert page.locator(".jp-MarkdownCell .myst .katex").count() >= 3
        assert "W_{QK}" not in text and "\\log" not in text
        # The citation reads as text.
        assert "Bao et al. (2024)" in text

        # The hint and the end-of-chapter answers are closed dropdowns: hidden until opened.
        hint = page.locator("details", has_text="Hint").first
        answers = page.locator("details", has_text="Answer")
        assert answers.count() >= 3, f"expected the chapter's answers as dropdowns, found {answers.count()}"
        # the first end-of-chapter answer (the self-check above the summary has answers too)
        first_answer = answers.filter(has_text="one key has weight 1").first
        for dropdown, must_say in ((hint, "weights are equal"), (first_answer, "one key has weight 1")):
            body = dropdown.locator(":scope > :not(summary)").first
            assert must_say in body.text_content()
            assert not body.is_visible(), f"{must_say!r} is visible before its dropdown is opened"
        assert all(not answers.nth(i).evaluate("d => d.open") for i in range(answers.count()))
        page.screenshot(path=str(_artifact("jupyterlab_learner_closed")))

        for dropdown in (hint, first_answer):
            dropdown.locator("summary").first.click()
            dropdown.locator(":scope > :not(summary)").first.wait_for(state="visible", timeout=5_000)
        hint.scroll_into_view_if_needed()
        page.screenshot(path=str(_artifact("jupyterlab_learner_hint_open")))
        first_answer.scroll_into_view_if_needed()
        page.screenshot(path=str(_artifact("jupyterlab_learner_answer_open")))
        assert not errors, "page errors in JupyterLab:\n" + "\n".join(errors)
    except BaseException:
        page.screenshot(path=str(_artifact("jupyterlab_learner_failure")), full_page=True)
        (ARTIFACTS / "jupyterlab_learner_failure.html").write_text(page.content(), encoding="utf-8")
        raise
    finally:
        context.close()


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def test_notebook_7_renders_the_same(lab, browser):
    """`jupyter notebook` (Notebook 7, served by the same server at /notebooks/) uses the same
    renderer: the exercise is a block and the answers are closed dropdowns."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{lab}/notebooks/{NOTEBOOK.name}")
        exercise = page.locator(".jp-MarkdownCell .myst", has_text="Entropy of a uniform row").first
        exercise.wait_for(state="attached", timeout=60_000)
        assert exercise.locator("aside.myst-admonition").count() == 1
        assert "Entropy of a uniform row" in exercise.text_content()
        page.locator(".jp-MarkdownCell").last.evaluate("e => e.scrollIntoView()")
        answers = page.locator("details", has_text="Answer")
        answers.first.wait_for(state="attached", timeout=30_000)
        assert not answers.first.locator(":scope > :not(summary)").first.is_visible()
        # The copy is untrusted, and it renders all the same: MyST markdown does not need trust.
        assert page.get_by_text("Not Trusted").is_visible()
        page.screenshot(path=str(_artifact("notebook7_learner")))
    finally:
        context.close()



# --- live explorers: controls, redraw, a reopened notebook ------------------------------------------

_OUTPUT_STATE = """
() => [...document.querySelectorAll('.jp-CodeCell')].map(cell => ({
  images: [...cell.querySelectorAll('.jp-OutputArea-output img')].map(im => im.getAttribute('src')),
  image_boxes: [...cell.querySelectorAll('.jp-OutputArea-output img')].map(im => { const b = im.getBoundingClientRect(); return [b.top, b.bottom, b.height]; }),
  text: cell.querySelector('.jp-Cell-outputArea') ? cell.querySelector('.jp-Cell-outputArea').innerText : '',
  sliders: cell.querySelectorAll('.widget-slider, .jupyter-widget-slider, .widget-hslider').length,
  buttons: [...cell.querySelectorAll('.jp-OutputArea-output button')].map(b => b.innerText.trim()),
  labels: [...cell.querySelectorAll('.widget-label')].map(l => l.innerText.trim()),
}))
"""


def _lab_url(lab: str, name: str) -> str:
    """The notebook `name` alone in a fresh workspace (no tab of an earlier test restored around it)."""
    return f"{lab}/lab/workspaces/{Path(name).stem}/tree/{name}?reset"


def _open_notebook(page, lab: str, name: str) -> None:
    page.goto(_lab_url(lab, name))
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    page.locator(".jp-CodeCell").first.wait_for(timeout=60_000)
    page.locator(".jp-NotebookPanel .jp-Spinner").wait_for(state="detached", timeout=60_000)  # loaded


def _kernel_ready(page) -> None:
    """Wait until the notebook's session has its kernel connected and idle, asked of JupyterLab itself
    (the server runs with `expose_app_in_browser`, as JupyterLab's own Galata tests do). The toolbar's
    indicator is no signal: it reads `idle` before any kernel socket is open, and Shift+Enter pressed
    then left cells at `[ ]` (seen on a loaded machine and in CI)."""
    page.wait_for_function(
        """async () => {
            const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            if (!panel || !panel.sessionContext) return false;
            await panel.sessionContext.ready;
            const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
            if (!kernel) return false;
            await kernel.info;
            return kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=120_000,
    )


def _run_all(page) -> None:
    """Run every cell with Shift+Enter once the kernel is idle, and wait until each live cell shows its figure."""
    _kernel_ready(page)
    cells = page.locator(".jp-CodeCell")
    cells.first.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    for _ in range(cells.count()):
        page.keyboard.press("Shift+Enter")
    try:
        page.wait_for_function(
            "n => [...document.querySelectorAll('.jp-CodeCell')].slice(0, n)"
            ".every(c => c.querySelector('.jp-OutputArea-output img') && c.querySelector('.noUi-handle, .slider-container'))",
            arg=len(LIVE_CHAPTERS), timeout=180_000,
        )
    except Exception as err:
        prompts = page.evaluate(
            "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.innerText.trim())")
        outputs = page.evaluate(
            "() => [...document.querySelectorAll('.jp-CodeCell')].map(c => (c.querySelector('.jp-Cell-outputArea') || {}).innerText || '')")
        raise AssertionError(
            f"the live cells did not all show a figure and sliders; prompts {prompts}, outputs:\n"
            + "\n---\n".join(o[:500] for o in outputs)) from err


def _nudge(page, cell_index: int, slider_index: int, key: str = "ArrowRight") -> float:
    """Move one slider by one stop with the keyboard, as a learner can; returns seconds until the new figure shows."""
    import time as _time

    cell = page.locator(".jp-CodeCell").nth(cell_index)
    before = cell.locator(".jp-OutputArea-output img").first.get_attribute("src")
    handle = cell.locator(".noUi-handle").nth(slider_index)
    handle.focus()
    start = _time.monotonic()
    page.keyboard.press(key)
    page.wait_for_function(
        "([i, src]) => { const im = document.querySelectorAll('.jp-CodeCell')[i].querySelector('.jp-OutputArea-output img');"
        " return im && im.getAttribute('src') !== src; }",
        arg=[cell_index, before], timeout=30_000,
    )
    return _time.monotonic() - start


def test_live_explorers_controls_redraw_and_survive_reopening(lab, browser):
    """In Lab, the live explorers of chapters 1, 3 and 7 show their controls (chapter 7: the
    variance, the s / s² switch, the chapter's cases), redraw on a slider move, fit chapter 3's
    figure and controls in a 900 px window, and, saved and reopened after the kernel is shut
    down, still show the last figure drawn (with the note saying to run the cell again)."""
    import base64
    import json as _json
    import urllib.request as _request

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        _open_notebook(page, lab, LIVE.name)
        _run_all(page)
        state = page.evaluate(_OUTPUT_STATE)
        ch1, ch3, ch7 = state[:3]
        assert all(len(s["images"]) == 1 for s in (ch1, ch3, ch7)), "each live cell shows one figure"
        text7 = ch7["text"]
        for control in ("mean m", "variance s²", "spread as", "scale", "tokens"):
            assert control in text7, f"chapter 7's explorer has no {control!r} control:\n{text7}"
        for case in ("m = 0, s = 1 (U shape)", "m = 0.01, s = 0 (κ = 1)"):
            assert case in ch7["buttons"], f"no button for the chapter's case {case!r}: {ch7['buttons']}"
        assert "1.0e-06" in text7 and "0.01" in text7  # the readouts: s² = 1e-6 at s = 0.001, m = 0.01
        page.locator(".jp-CodeCell").nth(2).scroll_into_view_if_needed()
        page.screenshot(path=str(_artifact("jupyterlab_live_spectrum")))

        # chapter 7: the U-shaped case in one click, then the spread slider down to s² = 0
        cell7 = page.locator(".jp-CodeCell").nth(2)
        src = cell7.locator(".jp-OutputArea-output img").first.get_attribute("src")
        cell7.locator("button", has_text="U shape").click()
        page.wait_for_function(
            "src => document.querySelectorAll('.jp-CodeCell')[2].querySelector('.jp-OutputArea-output img').getAttribute('src') !== src",
            arg=src, timeout=30_000,
        )
        cell7.locator(".jp-OutputArea-output img").first.scroll_into_view_if_needed()
        page.screenshot(path=str(_artifact("jupyterlab_live_spectrum_u_shape")))
        cell7.locator("button", has_text="κ = 1").click()
        page.wait_for_function(
            "() => /variance s²\\s*0\\b/.test(document.querySelectorAll('.jp-CodeCell')[2].querySelector('.jp-Cell-outputArea').innerText)",
            timeout=30_000,
        )
        # how the controls look on a phone-width window (Lab's single-document mode); looked at, not asserted
        page.keyboard.press("Escape")
        page.keyboard.press("Control+b")  # close the file browser (left sidebar)
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        cell7.locator(".jp-Cell-outputArea").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(_artifact("jupyterlab_live_spectrum_390px")))
        cell7.locator(".jp-OutputArea-output img").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(_artifact("jupyterlab_live_spectrum_390px_figure")))
        page.set_viewport_size({"width": 1280, "height": 900})
        page.wait_for_timeout(500)
        # each live explorer redraws on a slider move (times printed, not asserted: see benchmarks/)
        times = {name: _nudge(page, i, 0) for i, name in enumerate(("chapter 1", "chapter 3", "chapter 7"))}
        print("seconds from key press to new figure in Lab:", times)

        # chapter 3: the controls and the figure fit a 900 px window together
        cell3 = page.locator(".jp-CodeCell").nth(1)
        cell3.locator(".jp-Cell-outputArea").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        out = cell3.locator(".jp-Cell-outputArea").bounding_box()
        img = cell3.locator(".jp-OutputArea-output img").first.bounding_box()
        assert img["y"] + img["height"] <= 900, f"chapter 3's figure ends at {img['y'] + img['height']:.0f} px, below a 900 px window"
        assert img["y"] + img["height"] - out["y"] <= 900 - 110, "chapter 3's controls and figure need more than a 900 px window minus Lab's bars"
        page.screenshot(path=str(_artifact("jupyterlab_live_depth")))

        # save, shut the kernel down, reopen: the last figures are still there
        last = [s["images"][0] for s in page.evaluate(_OUTPUT_STATE)[:3]]
        page.keyboard.press("Control+s")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
        saved = _json.loads(_request.urlopen(f"{lab}/api/contents/{LIVE.name}").read())["content"]
        for k, cell in enumerate(saved["cells"][:3]):
            pngs = [o["data"]["image/png"] for o in cell["outputs"] if "image/png" in o.get("data", {})]
            assert len(pngs) == 1, f"live cell {k} saved {len(pngs)} figures"
            assert last[k].endswith(pngs[0].replace("\n", "")[-200:]), f"live cell {k}: the saved figure is not the last one shown"
            assert base64.b64decode(pngs[0])[:4] == b"\x89PNG"
        for kernel in _json.loads(_request.urlopen(f"{lab}/api/kernels").read()):
            _request.urlopen(_request.Request(f"{lab}/api/kernels/{kernel['id']}", method="DELETE"))
        page.reload()
        _open_notebook(page, lab, LIVE.name)
        page.wait_for_function(
            "n => [...document.querySelectorAll('.jp-CodeCell')].slice(0, n).every(c => c.querySelector('.jp-OutputArea-output img'))",
            arg=3, timeout=60_000,
        )
        page.wait_for_timeout(1500)
        reopened = page.evaluate(_OUTPUT_STATE)[:3]
        for k, s in enumerate(reopened):
            assert s["images"] == [last[k]], f"live cell {k}: the reopened notebook does not show the last figure"
            assert "run this cell again" in s["text"]
        page.locator(".jp-CodeCell").nth(2).scroll_into_view_if_needed()
        page.screenshot(path=str(_artifact("jupyterlab_live_reopened")))
        assert not errors, "page errors in JupyterLab:\n" + "\n".join(errors)
    except BaseException:
        page.screenshot(path=str(_artifact("jupyterlab_live_failure")), full_page=True)
        raise
    finally:
        context.close()


def _first_markdown_text(page, lab: str, name: str) -> str:
    page.goto(_lab_url(lab, name))
    page.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('.jp-MarkdownCell')];"
        " return cells.length > 5 && cells.slice(0, 5).every(c => c.querySelector('.myst')); }", timeout=60_000)
    return page.locator(".jp-MarkdownCell .myst").first.inner_text()


def test_cross_references_read_as_chapters_in_the_learner_notebook(lab, browser):
    """The learner notebook of chapter 7 (what `make exercises` writes) in Lab: its `{numref}` to
    chapter 6 reads "Chapter 6", not the role's template ("Chapter %s")."""
    import re

    from qklab.exercises import render

    learner = Path("07_localization_learner.ipynb")
    _put_notebook(lab, learner.name, render(ROOT / "chapters" / CHAPTER.name))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        text = _first_markdown_text(page, lab, learner.name)
        page.screenshot(path=str(_artifact("jupyterlab_learner_numref")))
        assert "%s" not in text and "{numref}" not in text, f"a cross-reference reads as its template: {text[:300]!r}"
        assert re.search(r"\bChapter 6\b", text), f"the reference to chapter 6 does not read 'Chapter 6': {text[:300]!r}"
    finally:
        context.close()


def test_cross_references_read_as_chapters_in_the_chapter_source(lab, browser):
    """A chapter as its author opens it (`jupyter lab chapters/`): the reference to another chapter
    reads "Chapter 6" and is a link that opens that chapter's notebook. (jupyterlab-myst resolves labels
    only inside one notebook, so a `{numref}` would read "Chapter %s"; the chapters link the
    notebook instead, tests/test_cross_references.py checks the numbers.)"""
    import re
    from urllib.parse import urlsplit

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        text = _first_markdown_text(page, lab, CHAPTER.name)
        page.screenshot(path=str(_artifact("jupyterlab_chapter_numref")))
        assert "%s" not in text and "{numref}" not in text, f"a cross-reference reads as its template: {text[:300]!r}"
        assert re.search(r"\bChapter 6\b", text), f"the reference to chapter 6 does not read 'Chapter 6': {text[:300]!r}"
        link = page.locator(".jp-MarkdownCell .myst").first.locator("a", has_text="Chapter 6").first
        # Lab resolves a relative link to its files URL (/files/06_qk_eigenspectrum.ipynb?_xsrf=...)
        # and opens the notebook in a tab when it is clicked.
        href = urlsplit(link.get_attribute("href") or "").path
        assert href.endswith(f"/{LINKED.name}"), link.get_attribute("href")
        link.click()  # Lab opens the linked chapter in a new tab
        page.locator(".lm-TabBar-tab", has_text=LINKED.stem).first.wait_for(timeout=30_000)
    finally:
        context.close()


def _request_json(url: str) -> dict:
    import json as _json
    import urllib.request as _request

    return _json.loads(_request.urlopen(url).read())


def _put_notebook(lab: str, name: str, text: str) -> None:
    """Write a notebook into the served folder through the contents API."""
    import json as _json
    import urllib.request as _request

    body = _json.dumps({"type": "notebook", "format": "json", "content": _json.loads(text)}).encode()
    _request.urlopen(_request.Request(f"{lab}/api/contents/{name}", data=body, method="PUT", headers={"Content-Type": "application/json"}))
