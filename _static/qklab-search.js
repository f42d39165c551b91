// Search result excerpts from the article's own text (issue 18). Sphinx's search page fetches each
// result page and quotes the text of its [role=main] element, which in this theme starts with the
// page's table of contents ("2.1. Theory 2.1.1. Metrics ..."). Here the excerpt is taken from the
// article alone, without code cells, heading links and MathJax's copies. Jupyter Book adds this
// file to every page; it does something only where Sphinx's search (searchtools.js) is loaded.
(function () {
  function patch() {
    if (typeof Search === "undefined" || !Search.htmlToText || Search.qklabPatched) return;
    const original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      const article = doc.querySelector("article.bd-article");
      if (!article) return original(htmlString, anchor);
      article.querySelectorAll(".headerlink, script, style, .cell_input, nav, .toctree-wrapper, .tag_remove-input")
        .forEach(function (e) { e.remove(); });
      let scope = article;
      if (anchor) {
        try { scope = article.querySelector(anchor) || article; } catch (e) { scope = article; }
      }
      return scope.textContent.replace(/\s+/g, " ").trim();
    };
    Search.qklabPatched = true;
  }
  patch();
  document.addEventListener("DOMContentLoaded", patch);
})();
