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


@pytest.mark.parametrize("answer", [RIGHT, tuple(RIGHT), np.array(RIGHT), torch.tensor(RIGHT).tolist(), torch.tensor(RIGHT),
                                    list(torch.tensor(RIGHT))])
def test_right_answers_pass_in_any_sequence_type(answer):
    check_region_predictions(answer)


@pytest.mark.parametrize("head", range(6))
def test_a_wrong_code_is_counted_never_located(head):
    """Issue 28: the message named the wrong heads, so a few runs found every code by trial. It says
    how many are wrong and gives every head's two numbers, the same whichever head is wrong."""
    answer = list(RIGHT)
    answer[head] = (answer[head] + 1) % 4
    with pytest.raises(ExerciseCheckError) as err:
        check_region_predictions(answer)
    text = str(err.value)
    assert "1 of 6" in text
    for i, (r, kappa) in enumerate(PREDICTION_HEADS):
        assert f"head {i + 1}: r = {r:g}, kappa r sqrt(d) = {kappa * r * 8:.1f}" in text  # all six, wrong or not
    reset_attempts()
    other = list(RIGHT)
    other[(head + 1) % 6] = (other[(head + 1) % 6] + 1) % 4
    with pytest.raises(ExerciseCheckError) as err_other:
        check_region_predictions(other)
    assert str(err_other.value) == text  # another wrong head: the very same message


@pytest.mark.parametrize("answer, kind", [
    ([1] * 6, "every head in the same region"),
    ([{0: 2, 1: 0, 2: 3, 3: 1}[c] for c in RIGHT], "codes mixed up"),
])
def test_mistakes_of_the_whole_list_are_named(answer, kind):
    with pytest.raises(ExerciseCheckError, match=kind):
        check_region_predictions(answer)


@pytest.mark.parametrize("bad, words", [
    ([0, 3, 1, 0, 2], "hold 6 codes"),
    ([0, 3, 1.0, 0, 2, 1], "integer from 0 to 3"),
    (torch.tensor([0.0, 3, 1, 0, 2, 1]), "integer from 0 to 3"),
    ([0, 3, True, 0, 2, 1], "integer from 0 to 3"),
    ([0, 3, 4, 0, 2, 1], "integer from 0 to 3"),
    ([0, 3, ..., 0, 2, 1], "no prediction yet"),
    ({(0.05, 1.0): 0}, "not a dict"),
    (3, "list of six codes"),
])
def test_malformed_predictions_get_a_clear_message(bad, words):
    with pytest.raises(ExerciseCheckError, match=words):
        check_region_predictions(bad)
