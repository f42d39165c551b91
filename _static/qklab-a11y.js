// Accessible names and roles that the theme and its extensions get wrong (issue 27; axe-core's WCAG 2.0/2.1
// A and AA rules, tests/browser/test_accessibility.py). Jupyter Book adds this file to every page.
//
// - Buttons whose visible text is not part of their accessible name (WCAG 2.5.3, label in name): the search
//   button is labelled "Search" but shows "Search Ctrl+K"; the colour-mode button is labelled "Color mode" but
//   its icons (Font Awesome turns them into SVGs with titles, after this script first runs) read "Light",
//   "Dark", "System Settings". The search button is named by what it shows; the colour-mode button's icons are
//   hidden from assistive technology and a visually hidden "Color mode" names it.
// - The dropdowns of hidden code cells are named "Toggle hidden content" but show "Show code cell source":
//   their name becomes what they show.
// - The bibliography marks its entries with the deprecated role doc-biblioentry inside a role=list: they
//   become list items.
// - A table that scrolls sideways on a narrow screen must be reachable from the keyboard: it takes focus and
//   is named as a region.
(function () {
  function hide(el) { el.setAttribute("aria-hidden", "true"); }

  function fix() {
    document.querySelectorAll(".search-button-field[aria-label]").forEach(function (button) {
      button.removeAttribute("aria-label");
    });
    document.querySelectorAll(".search-button-field svg, .search-button-field i").forEach(hide);
    document.querySelectorAll(".theme-switch-button").forEach(function (button) {
      button.querySelectorAll("svg, i").forEach(function (icon) {
        hide(icon);
        icon.removeAttribute("aria-labelledby");
        icon.querySelectorAll("title").forEach(function (t) { t.remove(); });
      });
      if (button.hasAttribute("aria-label")) {
        const name = document.createElement("span");
        name.className = "visually-hidden";
        name.textContent = button.getAttribute("aria-label");
        button.appendChild(name);
        button.removeAttribute("aria-label");
      }
    });
    document.querySelectorAll("details > summary[aria-label]").forEach(function (summary) {
      if (summary.textContent.trim()) summary.removeAttribute("aria-label");
    });
    document.querySelectorAll('[role="doc-biblioentry"]').forEach(function (entry) {
      entry.setAttribute("role", "listitem");
    });
    document.querySelectorAll(".qklab-table, .cell_output .text_html.output > div[style*='overflow']")
      .forEach(function (box) {
        if (box.scrollWidth <= box.clientWidth + 1 && !box.classList.contains("qklab-table")) return;
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        if (!box.hasAttribute("aria-label")) {
          const caption = box.querySelector("caption");
          box.setAttribute("aria-label", caption ? caption.textContent.trim() : "table");
        }
      });
  }

  let pending = false;
  function soon() {  // once per batch of DOM changes (Font Awesome replaces icons, the theme adds tooltips)
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; fix(); });
  }
  function start() {
    fix();
    new MutationObserver(soon).observe(document.body, {childList: true, subtree: true});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  window.addEventListener("load", fix);
})();
