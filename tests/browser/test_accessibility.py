"""Accessibility of every page of the built book: axe-core's WCAG 2.0 and 2.1 rules, levels A and AA,
run in headless Chromium on every page in the light and the dark theme (issue 27).

axe-core comes from the npm registry (`make axe` installs the pinned version under
`tests/browser/node_modules`); the test injects it into the page after it has loaded, as the axe
documentation describes for Playwright, and fails with every violation's rule, impact, count and
first few elements.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, offline_context, watch
from test_pages import PAGES

pytestmark = pytest.mark.browser

AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _axe_script() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed at {AXE.relative_to(ROOT)}: run `make axe` (npm install)")
    return AXE.read_text(encoding="utf-8")


def _violations(page, theme: str) -> list[dict]:
    page.evaluate("theme => { document.documentElement.dataset.theme = theme; document.documentElement.dataset.mode = theme; }",
                  theme)
    page.add_script_tag(content=_axe_script())
    return page.evaluate(
        """async tags => {
            const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                               targets: v.nodes.map(n => n.target.join(' '))}));
        }""",
        TAGS,
    )


def _report(found: dict[str, list[dict]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            sample = "; ".join(v["targets"][:3])
            lines.append(f"{where}: {v['id']} ({v['impact']}, {len(v['targets'])} elements): {v['help']}. E.g. {sample}")
    return "\n".join(lines)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_wcag_a_or_aa_violation_on_any_page(browser, book_url, theme):
    context = offline_context(browser, 1280)
    found = {}
    try:
        for path in PAGES:
            page = context.new_page()
            visit = watch(page)
            page.goto(f"{book_url}/{path}", wait_until="load")
            page.wait_for_timeout(300)
            violations = _violations(page, theme)
            if violations:
                found[f"{path} ({theme})"] = violations
            assert not visit.page_errors, visit.page_errors
            page.close()
    finally:
        context.close()
    assert not found, "axe-core found WCAG 2.0/2.1 A or AA violations:\n" + _report(found)


def test_the_axe_run_sees_a_violation(browser, book_url, tmp_path: Path):
    """The harness is live: a page with an image without alternative text fails."""
    context = offline_context(browser, 1280)
    try:
        page = context.new_page()
        page.set_content("<html lang='en'><head><title>t</title></head><body><main><img src='x.png'></main></body></html>")
        ids = {v["id"] for v in _violations(page, "light")}
    finally:
        context.close()
    assert "image-alt" in ids
