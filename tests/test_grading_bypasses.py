"""Issue 28: a learner's cell cannot make `make check-exercise` (`qklab.grading.grade`) pass.

Each test takes a committed learner notebook, leaves its exercises unsolved or answers them
wrong, and adds one cell of the learner's that tries to pass anyway:

(a) a custom exception handler installed through IPython (every error output disappears);
(b) a replaced `showtraceback` (same);
(c) monkeypatched checks: the check functions the check modules call, or `torch.allclose` and
    `math.isclose` that they compare with;
(d) an IPython input transformer that empties every later cell (the check cells then run as
    empty cells, with no error output);
(e) an answer that is a tensor subclass whose `__torch_function__` makes every `torch.allclose`
    true, so that a tensor of zeros compares equal to the right values.

Before the grader evaluated the check cells outside the learner's kernel, each of these made it
report every exercise passed. Now every exercise must stay unsolved or wrong.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from qklab import grading

ROOT = Path(__file__).resolve().parents[1]

BYPASSES = {
    "custom exception handler": "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)",
    "replaced showtraceback": "get_ipython().showtraceback = lambda *a, **k: None",
    "patched check modules": (
        "import sys; [setattr(m, n, lambda *a, **k: None) for m in list(sys.modules.values()) "
        "if getattr(m, '__name__', '').startswith('qklab.checks') "
        "for n in ('check_function', 'check_value', 'fail') if hasattr(m, n)]"),
    "patched comparisons": "import math, torch; torch.allclose = lambda *a, **k: True; math.isclose = lambda *a, **k: True",
    "input transformer that empties later cells": "get_ipython().input_transformers_post.append(lambda lines: [])",
}


def _learner_with(tmp_path: Path, name: str, first_cell: str, answers: dict[str, str] | None = None) -> Path:
    """The committed learner notebook `name`, with a cell `first_cell` of the learner's just above
    its first exercise and the solution cells of `answers` (cell id -> source) replaced."""
    (tmp_path / "exercises").mkdir(exist_ok=True)
    learner = nbformat.read(str(ROOT / "exercises" / name), as_version=4)
    first = next(i for i, c in enumerate(learner.cells) if "solution" in c.metadata.get("tags", []))
    cell = new_code_cell(first_cell)
    cell.id = "learner-added"
    learner.cells.insert(first, cell)
    for cid, source in (answers or {}).items():
        next(c for c in learner.cells if c.get("id") == cid).source = source
    path = tmp_path / "exercises" / name
    nbformat.write(learner, str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("bypass", sorted(BYPASSES), ids=lambda b: b.replace(" ", "-"))
def test_a_bypass_cell_does_not_pass_unsolved_exercises(tmp_path, bypass):
    path = _learner_with(tmp_path, "02_measuring_attention.ipynb", BYPASSES[bypass],
                         answers={"c015": "ratio = 0.5  # wrong"})
    report = grading.grade(path, chapters_dir=ROOT / "chapters", attempts_file=None)
    statuses = {o.exercise.label: o.status for o in report.outcomes}
    assert len(statuses) == 4
    assert "passed" not in statuses.values(), report.summary()
    assert statuses["ex-causal-ratio"] in ("wrong", "error"), report.summary()  # a wrong number, not "passed"
    assert not report.passed


@pytest.mark.slow
def test_a_bypass_cell_does_not_pass_a_value_exercise(tmp_path):
    # chapter 0's single exercise is a number: its check is `check_value`, compared with math.isclose
    path = _learner_with(tmp_path, "00_how_to_use.ipynb",
                         BYPASSES["patched check modules"] + "; " + BYPASSES["patched comparisons"])
    report = grading.grade(path, chapters_dir=ROOT / "chapters", attempts_file=None)
    assert [o.status for o in report.outcomes] == ["not solved yet"], report.summary()


LIAR = '''
import torch

class Liar(torch.Tensor):
    """Says yes to every torch.allclose."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.allclose:
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
'''


@pytest.mark.slow
def test_a_tensor_subclass_that_says_yes_to_every_comparison_is_wrong(tmp_path):
    zeros = ("def mean_row_entropy(A):\n"
             "    return torch.zeros((), dtype=A.dtype).as_subclass(Liar)")
    path = _learner_with(tmp_path, "02_measuring_attention.ipynb", LIAR, answers={"c007": zeros})
    report = grading.grade(path, chapters_dir=ROOT / "chapters", attempts_file=None)
    outcome = next(o for o in report.outcomes if o.exercise.label == "ex-entropy")
    assert outcome.status == "wrong", report.summary()
    assert "mean_row_entropy is not right yet" in outcome.message


@pytest.mark.slow
def test_a_kernel_that_dies_inside_the_learners_function_fails_the_rest(tmp_path):
    path = _learner_with(tmp_path, "02_measuring_attention.ipynb", "import os",
                         answers={"c025": "def relative_residual(X):\n    os._exit(0)  # ends the kernel quietly"})
    report = grading.grade(path, chapters_dir=ROOT / "chapters", attempts_file=None)
    statuses = {o.exercise.label: (o.status, o.message) for o in report.outcomes}
    assert statuses["ex-residual"] == ("error", "the kernel did not answer when the grader called `relative_residual` "
                                                "(DeadKernelError: Kernel died)")
    for later in ("ex-entropy", "ex-erank"):
        assert statuses[later][0] == "error" and "the kernel died in code cell" in statuses[later][1]
    assert not report.passed and any("the kernel died" in p for p in report.problems)
