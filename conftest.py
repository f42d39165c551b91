"""Repository-wide pytest set-up for notebook tests (nbval).

nbval compares the outputs of cells that opt in (`# NBVAL_CHECK_OUTPUT` under `--nbval-lax`).
Rich outputs are not stable enough to compare: HTML tables and figures embed random element ids,
plotly figures random div ids, widgets random model ids, images differ by a pixel from one
matplotlib version to the next. We compare their text form only.
"""

from __future__ import annotations

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


# Checking a reader's exercises: in a learner notebook the `solution` and `check` cells carry the
# tag `raises-exception`, so that an unsolved notebook still runs under `make test`. With
# `--check-exercises` those cells must run without error: an unsolved stub or a failing check
# fails the test (this is what `make check-exercise NB=...` runs).
_EXERCISE_TAGS = {"solution", "check"}


def pytest_addoption(parser):
    parser.addoption(
        "--check-exercises",
        action="store_true",
        default=False,
        help="notebook cells tagged 'solution' or 'check' must not raise, even if tagged "
        "'raises-exception' (checks a reader's answers in an exercises/ notebook)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--check-exercises"):
        return
    for item in items:
        cell = getattr(item, "cell", None)
        options = getattr(item, "options", None)
        if cell is None or options is None:
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & _EXERCISE_TAGS:
            options["check_exception"] = False
