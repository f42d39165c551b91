"""The exercise-check engine passes right answers and explains wrong ones."""

import pytest
import torch

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value


def reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


CASES = [Case("a 2 x 3 input", (torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]),))]
WRONG_AXIS = Mistake("softmax over the wrong axis", lambda x: torch.softmax(x, dim=0), "rows must sum to 1: use dim=-1")


def test_reference_passes_and_prints(capsys):
    check_function(reference, reference, CASES, name="softmax")
    assert "matches the reference on all 1 cases" in capsys.readouterr().out


def test_recognised_mistake_is_named():
    with pytest.raises(ExerciseCheckError, match="wrong axis.*dim=-1"):
        check_function(lambda x: torch.softmax(x, dim=0), reference, CASES, name="softmax", mistakes=[WRONG_AXIS])


def test_unrecognised_error_reports_location_and_generic_hint():
    with pytest.raises(ExerciseCheckError, match=r"largest difference .* at index .*\nHint: think") as info:
        check_function(lambda x: torch.softmax(2 * x, dim=-1), reference, CASES, name="softmax", mistakes=[WRONG_AXIS], hint="think")
    assert "wrong axis" not in str(info.value)


def test_shape_type_nan_and_not_implemented_messages():
    with pytest.raises(ExerciseCheckError, match=r"returned shape \(2,\), expected \(2, 3\)"):
        check_function(lambda x: x.sum(-1), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="returned a list"):
        check_function(lambda x: x.tolist(), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="NaN/inf"):
        check_function(lambda x: x / 0, reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_function(lambda x: (_ for _ in ()).throw(NotImplementedError()), reference, CASES, name="softmax")
    with pytest.raises(ExerciseCheckError, match="raised ZeroDivisionError"):
        check_function(lambda x: 1 / 0, reference, CASES, name="softmax")


def test_reader_cannot_corrupt_the_reference_by_mutating_input():
    def mutating(x):
        x.zero_()
        return reference(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]))

    check_function(mutating, reference, CASES, name="softmax", quiet=True)


def test_check_value():
    check_value(2.0794, 2.0794415, name="entropy", quiet=True)
    with pytest.raises(ExerciseCheckError, match="log base 2"):
        check_value(3.0, 2.0794415, name="entropy", mistakes={"log base 2": (3.0, "use natural log")})
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_value(..., 1.0, name="entropy")
    with pytest.raises(ExerciseCheckError, match="single number"):
        check_value(torch.ones(2), 1.0, name="entropy")


def test_complex_outputs_are_compared_and_reported():
    ref = lambda x: torch.linalg.eigvals(x)  # noqa: E731
    case = [Case("a rotation", (torch.tensor([[0.0, -1.0], [1.0, 0.0]]),))]
    check_function(ref, ref, case, name="eigenvalues", quiet=True)
    with pytest.raises(ExerciseCheckError, match=r"yours .*j"):
        check_function(lambda x: 2 * torch.linalg.eigvals(x), ref, case, name="eigenvalues")
