"""Issue 28: with the checks evaluated outside the learner's kernel, `grade()` gives the verdicts and
messages a check gives in the notebook.

On three chapters' learner notebooks: the chapter's own solutions pass; wrong answers of several
kinds (a wrong number, a wrong function, a named mistake, a function that changes its argument in
place, one that raises an exception of its own class, one that breaks the statement's rule "do not
form the d x d matrix") are reported wrong with the message the same check raises when it runs in
this process on the same answer: the independent reference for "the same message as before".
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nbformat
import pytest

from qklab import grading
from qklab.checks.feedback import ExerciseCheckError, configure_delivery, reset_attempts
from qklab.exercises import exercises_of

ROOT = Path(__file__).resolve().parents[1]

WRONG = {
    "02_measuring_attention.ipynb": {
        "c015": "ratio = sum(math.log(i) for i in range(1, 9)) / 8  # not divided by log T",
        "c025": ("def relative_residual(X):\n"
                 "    R = X - X.mean(dim=-1, keepdim=True)  # the mean over the wrong axis\n"
                 "    return torch.linalg.matrix_norm(R) / torch.linalg.matrix_norm(X)"),
        "c007": ("def mean_row_entropy(A):\n"
                 "    A.clamp_(min=1e-300)  # in place: the caller's pattern changes\n"
                 "    return -(A * A.log()).sum(-1).mean()"),
        "c033": ("def erank(X):\n"
                 "    s = torch.linalg.svdvals(X)\n"
                 "    p = s / s.sum()  # over the whole batch\n"
                 "    return torch.exp(-(p * p.log()).sum(-1))"),
    },
    "04_entropy_collapse.ipynb": {
        "c007": "T = 32\nH_max = math.log(T)  # as if every row saw every key",
        "c015": ("def power_step(W, u):\n"
                 "    v = W.T @ u\n"
                 "    v = v / v.norm()\n"
                 "    Wv = W @ v\n"
                 "    return Wv / Wv.norm(), Wv @ Wv  # sigma squared"),
        "c023": ("class BoundError(ValueError):\n"
                 "    pass\n\n"
                 "def entropy_lower_bound(sigma, R, d_h, n):\n"
                 "    raise BoundError('not finished: the range of the scores first')"),
    },
    "06_qk_eigenspectrum.ipynb": {
        "c007": "n_zero_a = 48 - 12\nn_zero_b = 48 - 16",
        "c015": ("def core_eigenvalues(W_Q, W_K):\n"
                 "    return torch.linalg.eigvals(W_K.transpose(-2, -1) @ W_K)"),
        "c023": ("def spectrum_moments(W_Q, W_K):\n"
                 "    d = W_Q.shape[-2]\n"
                 "    W = W_Q @ W_K.transpose(-2, -1)  # the d x d matrix the statement forbids\n"
                 "    return torch.stack([W.diagonal(dim1=-2, dim2=-1).sum(-1) / d, (W * W.transpose(-2, -1)).sum((-2, -1)) / d], -1)"),
    },
}

SAYS = {
    "ex-entropy": "modified its argument `A` in place",  # read back from the kernel after the call
    "ex-entropy-bound": "raised BoundError on the case",  # the learner's own exception class, by name
    "ex-trace-moments": "d x d",  # the rule watch ran in the kernel, around the computation
}


def _notebook(tmp_path: Path, name: str, answers: dict[str, str]) -> Path:
    learner = nbformat.read(str(ROOT / "exercises" / name), as_version=4)
    for cell in learner.cells:
        if cell.get("id") in answers:
            cell.source = answers[cell.get("id")]
    path = tmp_path / "exercises" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(learner, str(path))
    return path


def _solutions(name: str) -> dict[str, str]:
    chapter = nbformat.read(str(ROOT / "chapters" / name), as_version=4)
    return {c.get("id"): c.source for c in chapter.cells if "solution" in c.metadata.get("tags", [])}


def _in_process_message(name: str, answers: dict[str, str], solution_ids: tuple[str, ...], check_source: str,
                        rerun: str) -> str:
    """What the check cell raises when it runs here, after the chapter's imports and the answer,
    with the hints delivered as at the command line (first failure: the offer of a hint)."""
    chapter = nbformat.read(str(ROOT / "chapters" / name), as_version=4)
    namespace: dict = {}
    first = next(c for c in chapter.cells if c.cell_type == "code")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(first.source, "<imports>", "exec"), namespace)
        for cid in solution_ids:
            exec(compile(answers[cid], cid, "exec"), namespace)
        reset_attempts()
        configure_delivery(rerun=rerun)
        try:
            exec(compile(check_source, "<check>", "exec"), namespace)
        except ExerciseCheckError as err:
            return str(err)
        finally:
            configure_delivery()
            reset_attempts()
    pytest.fail(f"{name}: the wrong answer passes the check in this process too")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRONG))
def test_the_chapter_solutions_pass(tmp_path, name):
    report = grading.grade(_notebook(tmp_path, name, _solutions(name)), chapters_dir=ROOT / "chapters",
                           attempts_file=None)
    assert [o.status for o in report.outcomes] == ["passed"] * len(report.outcomes), report.summary()
    assert report.passed and report.outcomes


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answers_get_the_message_the_check_gives_in_the_notebook(tmp_path, name):
    path = _notebook(tmp_path, name, WRONG[name])
    report = grading.grade(path, chapters_dir=ROOT / "chapters", attempts_file=None)
    chapter = nbformat.read(str(ROOT / "chapters" / name), as_version=4)
    by_id = {c.get("id"): c for c in chapter.cells}
    exercises = {e.label: e for e in exercises_of(chapter, name)}
    assert len(report.outcomes) == len(exercises) == len(WRONG[name])
    for outcome in report.outcomes:
        ex = exercises[outcome.exercise.label]
        (check_id,) = ex.check_ids
        want = _in_process_message(name, WRONG[name], ex.solution_ids, by_id[check_id].source,
                                   rerun=f"make check-exercise NB={path} HINT=1")
        assert outcome.status == "wrong", outcome.line()
        assert outcome.message == want
        if ex.label in SAYS:  # and the kinds of wrong answer reach the report as what they are
            assert SAYS[ex.label] in outcome.message


@pytest.mark.slow
def test_a_watch_of_the_check_runs_in_the_kernel_around_the_learners_function(tmp_path):
    """The checks' watches (`qklab.kernel_answers.watch_where_it_runs`) are applied where the
    function runs: building qklab's QK inside spectrum_moments is refused by the check of 6.3, as
    in the notebook (the watch patches the kernel's QK, not the grader's)."""
    name = "06_qk_eigenspectrum.ipynb"
    answers = {**_solutions(name), "c023": (
        "from qklab.spectrum import QK as _QK\n\n"
        "def spectrum_moments(W_Q, W_K):\n"
        "    qk = _QK(W_Q, W_K)\n"
        "    return torch.stack([qk.mean(), qk.second_moment()], -1)")}
    report = grading.grade(_notebook(tmp_path, name, answers), chapters_dir=ROOT / "chapters", attempts_file=None)
    outcome = {o.exercise.label: o for o in report.outcomes}["ex-trace-moments"]
    assert outcome.status == "wrong" and "builds qklab's QK" in outcome.message, outcome.line()
    assert [o.status for o in report.outcomes if o is not outcome] == ["passed", "passed"]


@pytest.mark.slow
def test_all_runs_every_cell_and_the_checks_still_run_in_the_grader(tmp_path):
    name = "00_how_to_use.ipynb"
    path = _notebook(tmp_path, name, _solutions(name))
    report = grading.grade(path, chapters_dir=ROOT / "chapters", everything=True, attempts_file=None)
    assert report.cells_run == report.cells_total
    assert [o.status for o in report.outcomes] == ["passed"], report.summary()
    assert report.problems == []  # the chapter's demonstration of a failing check is expected to fail
    wrong = grading.grade(_notebook(tmp_path, name, {"ex-uniform-entropy-solution": "uniform_entropy_T8 = 3.0"}),
                          chapters_dir=ROOT / "chapters", everything=True, attempts_file=None)
    assert [o.status for o in wrong.outcomes] == ["wrong"], wrong.summary()
