"""Repository-wide pytest set-up for notebook tests (nbval).

nbval compares the outputs of cells that opt in (`# NBVAL_CHECK_OUTPUT` under `--nbval-lax`).
Rich outputs are not stable enough to compare: HTML tables and figures embed random element ids,
plotly figures random div ids, widgets random model ids, images differ by a pixel from one
matplotlib version to the next. We compare their text form only.
"""

from __future__ import annotations

import pytest

_SKIPPED_MIME_TYPES = (
    "text/html",
    "text/latex",
    "text/markdown",
    "image/png",
    "image/jpeg",
    "image/svg+xml",
    "application/javascript",
    "application/json",
    "application/vnd.plotly.v1+json",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "stderr",
)


def pytest_collectstart(collector):
    # nbval's notebook collector holds the tuple of output keys it leaves out of comparisons.
    skip = getattr(collector, "skip_compare", None)
    if isinstance(skip, tuple):
        collector.skip_compare = skip + tuple(m for m in _SKIPPED_MIME_TYPES if m not in skip)


# Checking a reader's exercises with pytest: `pytest --check-exercises exercises/07_localization.ipynb`
# collects one test per exercise of each learner notebook given, graded by `qklab.grading` (the
# same run as `make check-exercise`: up to the last check cell, check cells verified against the
# chapter). A failure reads as the grader's line for that exercise, with no traceback.


def pytest_addoption(parser):
    parser.addoption(
        "--check-exercises",
        action="store_true",
        default=False,
        help="collect learner notebooks (exercises/*.ipynb) as one test per exercise, graded by "
        "qklab.grading (what `make check-exercise NB=...` runs)",
    )


def pytest_collect_file(parent, file_path):
    if parent.config.getoption("--check-exercises") and file_path.suffix == ".ipynb":
        return LearnerNotebook.from_parent(parent, path=file_path)
    return None


class ExerciseFailed(Exception):
    """An exercise that did not pass; its message is the grader's line."""


class LearnerNotebook(pytest.File):
    def collect(self):
        from qklab.grading import grade

        report = grade(self.path)
        for outcome in report.outcomes:
            yield ExerciseItem.from_parent(self, name=outcome.exercise.name, outcome=outcome)
        for problem in report.problems:
            yield ExerciseItem.from_parent(self, name="other cells", outcome=problem)


class ExerciseItem(pytest.Item):
    def __init__(self, *, outcome, **kwargs):
        super().__init__(**kwargs)
        self.outcome = outcome

    def runtest(self):
        if isinstance(self.outcome, str):
            raise ExerciseFailed(self.outcome)
        if self.outcome.status != "passed":
            raise ExerciseFailed(self.outcome.line())

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ExerciseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name
