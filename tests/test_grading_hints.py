"""Issue 19: hints reach a learner who checks with `make check-exercise` (a fresh kernel each run).

Before the change every failing line said "run this check again after your next try" for a hint,
and the next run, in a new kernel, had forgotten the first failure: the hint never came. Now the
grader counts failures between runs in a file, so the second failing run shows the hint, and
`--hint` (`HINT=1`) shows it at once.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from qklab import exercises as ex
from qklab import grading
from qklab.checks.intro import check_uniform_entropy  # noqa: F401  (the check the demo chapter calls)

HINT_TEXT = "a uniform row gives weight 1/T"  # the recipe of ex-uniform-entropy (qklab.checks.intro)


def _chapter():
    cells = [new_markdown_cell("# Hints demo"), new_code_cell("from qklab.checks.intro import check_uniform_entropy"),
             new_markdown_cell("```{exercise}\n:label: ex-uniform-entropy\n\n**Predict** (easy).\n```"),
             new_code_cell("H = ...\n# BEGIN SOLUTION\nimport math\nH = math.log(8)\n# END SOLUTION"),
             new_code_cell("check_uniform_entropy(H, T=8)")]
    for i, cell in enumerate(cells):
        cell.id = f"c{i}"
    cells[3].metadata["tags"] = ["solution"]
    cells[4].metadata["tags"] = ["check"]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _wrong_learner(tmp_path):
    chapter = _chapter()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "exercises").mkdir()
    nbformat.write(chapter, str(tmp_path / "chapters" / "00_demo.ipynb"))
    learner = ex.learner_notebook(chapter, "00_demo.ipynb")
    next(c for c in learner.cells if c.get("id") == "c3").source = "H = 3.0  # wrong: log2(8)"
    path = tmp_path / "exercises" / "00_demo.ipynb"
    nbformat.write(learner, str(path))
    return path


@pytest.mark.slow
def test_the_second_failing_run_shows_the_hint(tmp_path):
    path = _wrong_learner(tmp_path)
    attempts = tmp_path / "cache" / "attempts.json"
    first = grading.grade(path, attempts_file=attempts).outcomes[0]
    assert first.status == "wrong"
    assert HINT_TEXT not in first.message
    assert "HINT=1" in first.message and "run this check again" not in first.message  # a way that works here
    second = grading.grade(path, attempts_file=attempts).outcomes[0]
    assert HINT_TEXT in second.message or "Hint:" in second.message
    assert "Hint:" in second.message


@pytest.mark.slow
def test_the_hint_flag_shows_the_hint_at_once(tmp_path):
    path = _wrong_learner(tmp_path)
    outcome = grading.grade(path, hints=True, attempts_file=None).outcomes[0]
    assert "Hint:" in outcome.message
