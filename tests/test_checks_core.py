"""The exercise-check engine passes right answers and explains wrong ones."""

import math

import pytest
import torch

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value, reset_attempts


def reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


CASES = [Case("a 2 x 3 input", (torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]),))]
WRONG_AXIS = Mistake("softmax over the wrong axis", lambda x: torch.softmax(x, dim=0), "rows must sum to 1: use dim=-1")


def test_reference_passes_and_prints(capsys):
    check_function(reference, reference, CASES, name="softmax")
    assert "matches the reference on all 1 cases" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _fresh_attempts():
    reset_attempts()
    yield
    reset_attempts()


def test_recognised_mistake_is_named_and_its_hint_comes_second():
    with pytest.raises(ExerciseCheckError, match="wrong axis") as info:
        check_function(lambda x: torch.softmax(x, dim=0), reference, CASES, name="softmax", mistakes=[WRONG_AXIS])
    assert "dim=-1" not in str(info.value)
    with pytest.raises(ExerciseCheckError, match="wrong axis.*\nHint: rows must sum to 1: use dim=-1"):
        check_function(lambda x: torch.softmax(x, dim=0), reference, CASES, name="softmax", mistakes=[WRONG_AXIS])


def test_unrecognised_error_reports_location_and_generic_hint():
    # Reported: the entry furthest outside its tolerance (here the smallest weight, 0.016 for 0.090),
    # not the largest absolute difference (0.867 for 0.665).
    wrong = lambda x: torch.softmax(2 * x, dim=-1)  # noqa: E731
    with pytest.raises(ExerciseCheckError, match=r"index \(0, 0\) \(counting from 0\): yours is 0.0158762, too small by a factor of 4 to 7 \(the largest difference; 6 of 6") as info:
        check_function(wrong, reference, CASES, name="softmax", mistakes=[WRONG_AXIS], hint="think")
    assert "wrong axis" not in str(info.value) and "think" not in str(info.value)
    assert "0.665" not in str(info.value) and "0.0900" not in str(info.value)  # softmax([1, 2, 3]), the right values
    with pytest.raises(ExerciseCheckError, match=r"\nHint: think"):
        check_function(wrong, reference, CASES, name="softmax", mistakes=[WRONG_AXIS], hint="think")


def test_shape_type_nan_and_not_implemented_messages():
    with pytest.raises(ExerciseCheckError, match=r"returned shape \(2,\), expected \(2, 3\)"):
        check_function(lambda x: x.sum(-1), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="returned a list"):
        check_function(lambda x: x.tolist(), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match=r"index \(0, 0\) \(counting from 0\) is inf where the right value is finite \(6 entries"):
        check_function(lambda x: x / 0, reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_function(lambda x: (_ for _ in ()).throw(NotImplementedError()), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="raised ZeroDivisionError"):
        check_function(lambda x: 1 / 0, reference, CASES, name="softmax")


def test_reader_cannot_corrupt_the_reference_by_mutating_input_and_is_told_so():
    def mutating(x):
        x.zero_()
        return reference(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]))

    with pytest.raises(ExerciseCheckError, match="right values .* modified its argument `x` in place"):
        check_function(mutating, reference, CASES, name="softmax", quiet=True)
    assert torch.equal(CASES[0].args[0], torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]))  # the case itself is intact


def test_check_value():
    check_value(2.0794, 2.0794415, name="entropy", quiet=True)
    with pytest.raises(ExerciseCheckError, match="log base 2"):
        check_value(3.0, 2.0794415, name="entropy", mistakes={"log base 2": (3.0, "use natural log")})
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_value(..., 1.0, name="entropy")
    with pytest.raises(ExerciseCheckError, match="single number"):
        check_value(torch.ones(2), 1.0, name="entropy")
    with pytest.raises(ExerciseCheckError, match="your answer 3 is too large by a factor of about 2") as info:
        check_value(3.0, 1.5, name="x")
    assert "1.5" not in str(info.value)


def test_complex_outputs_are_compared_and_reported():
    ref = lambda x: torch.linalg.eigvals(x)  # noqa: E731
    case = [Case("a rotation", (torch.tensor([[0.0, -1.0], [1.0, 0.0]]),))]
    check_function(ref, ref, case, name="eigenvalues", quiet=True)
    with pytest.raises(ExerciseCheckError, match=r"yours .*j"):
        check_function(lambda x: 2 * torch.linalg.eigvals(x), ref, case, name="eigenvalues")


def test_describe_ratio_words_are_coarse():
    from qklab.checks.core import describe_ratio

    assert describe_ratio(2.0794 * 1.0005, 2.0794) == "too large by less than 1 %"
    assert describe_ratio(1.3, 1.0) == "too large by 10 to 50 %"
    assert describe_ratio(0.5, 1.0) == "too small by a factor of about 2"
    assert describe_ratio(3.0, 2.0794415) == "too large by 10 to 50 % (a factor close to 1/ln 2, bits instead of nats?)"
    assert describe_ratio(math.sqrt(2) * 0.3, 0.3) == "too large by 10 to 50 % (a factor close to sqrt(2))"
    assert describe_ratio(math.sqrt(2) * 0.3, 0.3, name_factor=False) == "too large by 10 to 50 %"
    assert describe_ratio(-1.0, 2.0) == "of the wrong sign (the right value is positive)"
    assert describe_ratio(0.0, 2.0, scale=1e-9) == "too small in size (the right value is not zero)"
    assert describe_ratio(1e5, 1.0) == "too large by a factor of about 10^5"
    assert describe_ratio(40.0, 1.0) == "too large by a factor of tens"
