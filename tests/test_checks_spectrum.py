"""qklab.checks.spectrum: the references pass, each typical wrong answer fails with its own label."""

import pytest
import torch

from qklab.checks.core import ExerciseCheckError
from qklab.checks.spectrum import (
    CORE_MISTAKES,
    MOMENT_MISTAKES,
    ZERO_COUNT_HEADS,
    check_core_eigenvalues,
    check_spectrum_moments,
    check_zero_counts,
    zero_count_heads,
)


def _moments_by_eigvals(W_Q, W_K):
    """An independent right answer: the full eigendecomposition (complex) of W_Q W_K^T."""
    lam = torch.linalg.eigvals(W_Q @ W_K.transpose(-2, -1))
    d = W_Q.shape[-2]
    return torch.stack([lam.sum(-1) / d, (lam**2).sum(-1) / d], dim=-1)


def _moments_by_traces(W_Q, W_K):
    d = W_Q.shape[-2]
    C = W_K.transpose(-2, -1) @ W_Q
    return torch.stack([torch.einsum("...ij,...ij->...", W_Q, W_K) / d, torch.einsum("...ij,...ji->...", C, C) / d], dim=-1)


def test_right_answers_pass(capsys):
    check_spectrum_moments(_moments_by_traces)
    check_core_eigenvalues(lambda W_Q, W_K: torch.linalg.eigvals(W_K.transpose(-2, -1) @ W_Q))
    check_core_eigenvalues(lambda W_Q, W_K: torch.linalg.eigvals(W_Q.transpose(-2, -1) @ W_K))  # C^T: same eigenvalues
    check_zero_counts(36, 40)
    out = capsys.readouterr().out
    assert out.count("\u2713") == 5


@pytest.mark.parametrize("mistake", MOMENT_MISTAKES, ids=lambda m: m.label)
def test_each_moment_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match="This looks like " + mistake.label.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^").replace("+", r"\+").replace("|", r"\|")):
        check_spectrum_moments(mistake.fn)


@pytest.mark.parametrize("mistake", CORE_MISTAKES, ids=lambda m: m.label)
def test_each_core_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError) as info:
        check_core_eigenvalues(mistake.fn)
    assert f"This looks like {mistake.label}" in str(info.value)


def test_an_eigen_solver_breaks_the_rule_and_the_message_says_eigvalsh_is_wrong_too():
    """The statement forbids eigen-solvers (issue 19): the full eigendecomposition, right in value, fails."""
    with pytest.raises(ExerciseCheckError) as info:
        check_spectrum_moments(_moments_by_eigvals)
    message = str(info.value)
    assert "eigen-solver" in message and "eigvalsh" in message


def test_unsolved_and_malformed_answers():
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_spectrum_moments(lambda W_Q, W_K: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(ExerciseCheckError, match=r"returned shape \(\), expected \(2,\)"):
        check_spectrum_moments(lambda W_Q, W_K: _moments_by_traces(W_Q, W_K)[..., 0])  # the mean alone
    with pytest.raises(ExerciseCheckError, match="returned None"):
        check_core_eigenvalues(lambda W_Q, W_K: None)


def test_zero_count_mistakes():
    with pytest.raises(ExerciseCheckError, match="NON-zero"):
        check_zero_counts(12, 40)
    with pytest.raises(ExerciseCheckError, match="no zero eigenvalue"):
        check_zero_counts(0, 40)
    with pytest.raises(ExerciseCheckError, match="zero columns were not taken"):
        check_zero_counts(36, 36)
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_zero_counts(..., 40)


def test_zero_count_heads_have_the_stated_number_of_zero_eigenvalues():
    """Independent count: eigenvalues of the full 48 x 48 matrix below a relative tolerance."""
    for name, (W_Q, W_K) in zero_count_heads(seed=3).items():
        lam = torch.linalg.eigvals(W_Q @ W_K.T)
        n_zero = int((lam.abs() < 1e-9 * lam.abs().max()).sum())
        spec = ZERO_COUNT_HEADS[name]
        assert n_zero == spec["d"] - spec["d_h"] + spec["zero_columns"]
