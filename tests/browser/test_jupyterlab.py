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
ARTIFACTS = ROOT / "_build" / "browser-artifacts"


def _missing(reason: str):
    if os.environ.get("QKLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (QKLAB_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


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
        first_answer = answers.first
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

