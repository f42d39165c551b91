// Checks out of the argument (issue 27). Every claim a chapter computes shows a verdict line
// (qklab.ledger.claim); between two paragraphs they interrupt the argument. Here the verdicts that
// hold are gathered, per section, into one closed box at the end of the section's own text ("7 checks
// in this section hold"), and a verdict that fails stays where it was computed, loudly. The claims
// ledger (appendix) lists every claim. Jupyter Book adds this file to every page; pages without
// verdict lines are left alone. In a notebook (JupyterLab, the learner notebooks) nothing moves.
(function () {
  function ownSection(el) {
    return el.closest("section") || document.querySelector("article.bd-article") || document.body;
  }

  function gather() {
    const bySection = new Map();
    document.querySelectorAll("p.qklab-verdict.qklab-holds").forEach(function (p) {
      if (p.closest("details.qklab-checks")) return;
      const section = ownSection(p);
      if (!bySection.has(section)) bySection.set(section, []);
      bySection.get(section).push(p);
    });
    bySection.forEach(function (verdicts, section) {
      const box = document.createElement("details");
      box.className = "qklab-checks";
      const summary = document.createElement("summary");
      const n = verdicts.length;
      summary.textContent = "✔ " + n + (n === 1 ? " check in this section holds" : " checks in this section hold");
      box.appendChild(summary);
      verdicts.forEach(function (p) { box.appendChild(p); });
      // at the end of the section's own text: before its first subsection, if it has one
      const sub = Array.prototype.find.call(section.children, function (c) { return c.tagName === "SECTION"; });
      section.insertBefore(box, sub || null);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", gather);
  else gather();
})();
