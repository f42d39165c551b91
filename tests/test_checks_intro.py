"""The chapter-0 check accepts log T (computed independently with math.log) and names typical mistakes."""

import math

import pytest

from qklab.checks import ExerciseCheckError
from qklab.checks.intro import check_uniform_entropy


@pytest.mark.parametrize("T", [1, 2, 8, 1000])
def test_right_answer_passes(T, capsys):
    check_uniform_entropy(math.log(T), T=T)
    assert "is right" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer, label",
    [(3.0, "bits"), (0.125, "weight of one key")],
)
def test_typical_mistakes_are_named(answer, label):
    with pytest.raises(ExerciseCheckError, match=label):
        check_uniform_entropy(answer, T=8)


def test_other_wrong_answer_gets_the_hint():
    with pytest.raises(ExerciseCheckError, match="Hint: a uniform row"):
        check_uniform_entropy(1.0, T=8)


def test_unanswered_and_bad_T():
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_uniform_entropy(..., T=8)
    with pytest.raises(ValueError, match="T must be a positive int"):
        check_uniform_entropy(1.0, T=0)
