"""The check of chapter 3's hard exercise (Dobrushin's bound is attained): right answers pass,
typical wrong columns fail with their own label, messages never give a reference value."""

import re

import pytest
import torch

from qklab.checks import ExerciseCheckError, reset_attempts
from qklab.checks import contraction as cc
from qklab.collapse import dobrushin_coefficient


@pytest.fixture(autouse=True)
def _fresh_attempts():
    reset_attempts()
    yield
    reset_attempts()


def _spread(y):
    return y.amax(-1) - y.amin(-1)


def _brute_force_delta(A):
    """delta(A) as the largest spread(Ay) / spread(y) over all 0/1 columns (independent of the package)."""
    T = A.shape[-1]
    best = 0.0
    for bits in range(1, 2**T - 1):
        y = torch.tensor([(bits >> j) & 1 for j in range(T)], dtype=A.dtype)
        best = max(best, float(_spread(A @ y)))
    return best


def test_reference_attains_the_bound_and_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for T in (2, 3, 5, 7):
        A = torch.softmax(torch.randn(T, T, generator=g, dtype=torch.float64), dim=-1)
        y = cc.tight_column(A)
        assert float(_spread(A @ y)) == pytest.approx(_brute_force_delta(A), rel=1e-12)
        assert float(_spread(A @ y)) == pytest.approx(float(dobrushin_coefficient(A)) * float(_spread(y)), rel=1e-12)


def test_no_column_beats_the_bound():
    g = torch.Generator().manual_seed(1)
    A = torch.softmax(2 * torch.randn(50, 6, 6, generator=g, dtype=torch.float64), dim=-1)
    y = torch.randn(50, 6, generator=g, dtype=torch.float64)
    assert bool((cc.attained_fraction(A, y) <= 1 + 1e-12).all())
    assert float(cc.attained_fraction(A, y).max()) < 1  # random columns do not attain it


def test_reference_and_equivalent_answers_pass(capsys):
    cc.check_tight_column(cc.tight_column)
    cc.check_tight_column(lambda A: 3.0 - 2.0 * cc.tight_column(A))  # any a y + b with a != 0
    cc.check_tight_column(lambda A: cc.tight_column(A).float())  # float32 column of 0/1: exact
    cc.check_tight_column(lambda A: cc.tight_column(A).numpy())  # a numpy column
    assert capsys.readouterr().out.count("\u2713") == 4


@pytest.mark.parametrize("mistake", cc._TIGHT_MISTAKES, ids=lambda m: m.label)
def test_every_mistake_fails_with_its_label(mistake):
    column = dict((label, fn) for label, fn, _ in cc._COLUMN_MISTAKES)[mistake.label]
    with pytest.raises(ExerciseCheckError, match=re.escape(mistake.label)):
        cc.check_tight_column(column)


def test_hint_only_on_the_second_failure():
    column = dict((label, fn) for label, fn, _ in cc._COLUMN_MISTAKES)["a row of A used as the column"]
    with pytest.raises(ExerciseCheckError) as first:
        cc.check_tight_column(column)
    assert "Hint:" not in str(first.value)
    with pytest.raises(ExerciseCheckError) as second:
        cc.check_tight_column(column)
    assert "Hint: the column is not a row of A" in str(second.value)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda A: torch.zeros(A.shape[:-1], dtype=A.dtype), "constant"),
        (lambda A: A.sum(-1), "constant"),  # all ones up to rounding
        (lambda A: A[..., 0, :, None], "expected"),
        (lambda A: A[..., 0, :].tolist(), "torch.Tensor"),
        (lambda A: torch.full(A.shape[:-1], float("nan"), dtype=A.dtype), "NaN"),
    ],
)
def test_bad_columns_get_clear_messages(bad, message):
    with pytest.raises(ExerciseCheckError, match=message):
        cc.check_tight_column(bad)


def test_unsolved_stub_and_non_function():
    def stub(A):
        raise NotImplementedError("Exercise ex-dobrushin-tight: write your solution here")

    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        cc.check_tight_column(stub)
    with pytest.raises(ExerciseCheckError, match="expected a function"):
        cc.check_tight_column(torch.ones(3))


def test_in_place_change_of_A_does_not_fool_the_check():
    def sneaky(A):
        A.fill_(0.25)  # makes every row equal, so any column would "attain" delta = 0
        return torch.arange(A.shape[-1], dtype=A.dtype).expand(A.shape[:-1])

    with pytest.raises(ExerciseCheckError):
        cc.check_tight_column(sneaky)


def test_messages_never_give_a_reference_value():
    """A wrong column is told how far off its own fraction is, never delta(A) or a right column."""
    for label, column, _ in cc._COLUMN_MISTAKES:
        for attempt in range(2):
            with pytest.raises(ExerciseCheckError) as err:
                cc.check_tight_column(column)
            text = str(err.value)
            case = err.value.case
            A = case.args[0]
            delta = dobrushin_coefficient(A).flatten()
            for value in delta.tolist():
                if value not in (0.0, 1.0):
                    assert f"{value:.4g}" not in text and f"{value:.6g}" not in text
            for value in cc.tight_column(A).flatten().unique().tolist():
                assert f"[{value:g}" not in text
