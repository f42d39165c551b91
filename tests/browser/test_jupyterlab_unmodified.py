"""Issue 19: JupyterLab does not mark a learner notebook as modified when it opens.

The cause, found by opening variants of `exercises/00_how_to_use.ipynb` in JupyterLab 4 and
reading the notebook model: when the kernel starts, JupyterLab writes the kernel's spec
(`display_name` "Python 3 (ipykernel)") and its full `language_info` (mimetype, lexer, version,
...) into the notebook's metadata; the learner notebooks carried the chapters' "Python 3" and a
bare `{"name": "python"}`, so every open changed the metadata and set the dirty mark (cell ids,
`nbformat_minor` and trust were not involved: a notebook with the kernel's exact metadata stays
clean). The learner notebooks now carry what the kernel writes
(`qklab.exercises.LEARNER_KERNELSPEC`, `LEARNER_LANGUAGE_INFO`). The Python version is part of
`language_info`: on a machine whose Python is not the book's (`BOOK_PYTHON`) JupyterLab still
updates it, and this test is skipped there, saying so.

The test serves the learner notebook as `make exercises` writes it, opens it in headless
Chromium, waits until the kernel is idle, and asserts that the tab carries no dirty mark.
"""

from __future__ import annotations

import platform
import time

import pytest

from qklab.exercises import BOOK_PYTHON
from tests.browser.test_jupyterlab import NOTEBOOK, lab  # noqa: F401  (the JupyterLab server fixture)

pytestmark = pytest.mark.browser


def test_opening_a_learner_notebook_does_not_mark_it_modified(lab, browser):  # noqa: F811
    if platform.python_version() != BOOK_PYTHON:
        pytest.skip(f"the kernel's Python is {platform.python_version()}, the learner notebooks name {BOOK_PYTHON}: "
                    "JupyterLab updates language_info.version on open")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{lab}/lab/workspaces/unmodified/tree/{NOTEBOOK.name}?reset")
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    # The kernel has started and reported its language_info once its status is idle.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')].some(e => e.dataset.status === 'idle')",
        timeout=60_000)
    time.sleep(2)  # metadata updates follow the kernel-info reply
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK.name).first
    classes = tab.get_attribute("class") or ""
    assert "jp-mod-dirty" not in classes, "JupyterLab marks the learner notebook as modified on open"
