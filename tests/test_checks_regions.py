"""Chapter 8's prediction exercise: the measured regions, and what the check says to right and wrong lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qklab.checks import ExerciseCheckError, reset_attempts
from qklab.checks.regions import PREDICTION_HEADS, check_region_predictions, measured_regions
from qklab.collapse import collapse_map, collapse_regions

RIGHT = [0, 3, 1, 0, 2, 1]  # the chapter's solution, written from the Theory's two numbers


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def test_measured_regions_are_the_maps_at_those_points():
    """The six heads measured one by one give the regions of a map over all of them at once."""
    scales = sorted({r for r, _ in PREDICTION_HEADS})
    M = collapse_map(scales, [0.0, 1.0], 64, 64, "iid", seeds=range(3), n=16)
    codes = collapse_regions(*(M[k].mean(dim=0) for k in ("entropy", "residual", "localization")))
    expected = tuple(int(codes[scales.index(r), int(kappa)]) for r, kappa in PREDICTION_HEADS)
    assert measured_regions() == expected
    assert measured_regions() == tuple(RIGHT)


@pytest.mark.parametrize("answer", [RIGHT, tuple(RIGHT), np.array(RIGHT), torch.tensor(RIGHT).tolist()])
def test_right_answers_pass_in_any_sequence_type(answer):
    check_region_predictions(answer)


@pytest.mark.parametrize("head", range(6))
def test_each_single_wrong_code_is_named_by_its_head(head):
    answer = list(RIGHT)
    answer[head] = (answer[head] + 1) % 4
    with pytest.raises(ExerciseCheckError) as err:
        check_region_predictions(answer)
    text = str(err.value)
    assert f"head {head + 1} " in text and "1 of 6" in text
    r, kappa = PREDICTION_HEADS[head]
    assert f"kappa r sqrt(d) = {kappa * r * 8:.1f}" in text
    for other in set(range(6)) - {head}:
        assert f"head {other + 1} (" not in text  # only the wrong head is listed


@pytest.mark.parametrize("bad, words", [
    ([0, 3, 1, 0, 2], "hold 6 codes"),
    ([0, 3, 1.0, 0, 2, 1], "integer from 0 to 3"),
    ([0, 3, True, 0, 2, 1], "integer from 0 to 3"),
    ([0, 3, 4, 0, 2, 1], "integer from 0 to 3"),
    ([0, 3, ..., 0, 2, 1], "no prediction yet"),
    ({(0.05, 1.0): 0}, "not a dict"),
    (3, "list of six codes"),
])
def test_malformed_predictions_get_a_clear_message(bad, words):
    with pytest.raises(ExerciseCheckError, match=words):
        check_region_predictions(bad)
