"""The checks of chapter 1 pass right answers and name each typical wrong one."""

import math

import pytest
import torch

from qklab.checks.attention import (
    ATTENTION_PATTERN_CASES,
    ATTENTION_PATTERN_MISTAKES,
    check_attention_pattern,
    check_qk_counts,
    qk_counts,
)
from qklab.checks.core import ExerciseCheckError, reset_attempts


def written_out(X, W_Q, W_K, causal=False):
    """An independent answer: scores by einsum, the mask as -inf, torch.softmax along the keys."""
    d_h = W_Q.shape[-1]
    if W_Q.ndim == 3:
        Q = torch.einsum("td,hde->hte", X, W_Q)
        K = torch.einsum("td,hde->hte", X, W_K)
    else:
        Q = torch.einsum("...td,de->...te", X, W_Q)
        K = torch.einsum("...td,de->...te", X, W_K)
    S = torch.einsum("...ie,...je->...ij", Q, K) / math.sqrt(d_h)
    if causal:
        T = S.shape[-1]
        S = S.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), -math.inf)
    return torch.softmax(S, dim=-1)


def test_an_independent_correct_answer_passes(capsys):
    check_attention_pattern(written_out)
    assert "matches the reference on all 8 cases" in capsys.readouterr().out


def test_an_answer_in_float32_passes():
    # Rounding to float32 and back must stay inside the check's tolerance.
    check_attention_pattern(lambda X, W_Q, W_K, causal=False: written_out(X.float(), W_Q.float(), W_K.float(), causal).double(), quiet=True)


def test_cases_cover_the_promised_edge_cases():
    descriptions = " | ".join(c.description for c in ATTENTION_PATTERN_CASES)
    for needle in ("one token", "causal", "batch", "heads", "1e4"):
        assert needle in descriptions
    large = ATTENTION_PATTERN_CASES[-1]
    X, W_Q, W_K = large.args
    S = (X @ W_Q) @ (X @ W_K).T / math.sqrt(W_Q.shape[-1])
    assert float(S.abs().max()) > 1e3  # large enough that exp overflows in float64


@pytest.mark.parametrize("mistake", ATTENTION_PATTERN_MISTAKES, ids=lambda m: m.label[:30])
def test_each_mistake_fails_with_its_own_label(mistake):
    reset_attempts()
    with pytest.raises(ExerciseCheckError) as info:
        check_attention_pattern(mistake.fn)
    assert f"This looks like {mistake.label}" in str(info.value)
    assert mistake.hint not in str(info.value)  # the first failure says what, not yet how
    with pytest.raises(ExerciseCheckError) as info:
        check_attention_pattern(mistake.fn)
    assert mistake.hint in str(info.value)


def test_unrecognised_error_gets_the_generic_hint_and_stub_is_reported():
    reset_attempts()
    with pytest.raises(ExerciseCheckError, match='qklab.checks.hint\\("ex-pattern"\\)'):
        check_attention_pattern(lambda X, W_Q, W_K, causal=False: written_out(X, 2 * W_Q, W_K, causal))
    with pytest.raises(ExerciseCheckError, match="Hint: compute S = "):
        check_attention_pattern(lambda X, W_Q, W_K, causal=False: written_out(X, 2 * W_Q, W_K, causal))
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_attention_pattern(lambda X, W_Q, W_K, causal=False: (_ for _ in ()).throw(NotImplementedError()))


def test_qk_counts_against_a_jacobian_rank():
    """The dimension of {W_Q W_K^T} is the rank of the Jacobian of (W_Q, W_K) -> W_Q W_K^T."""
    d, d_h = 5, 2
    g = torch.Generator().manual_seed(0)
    W_Q, W_K = torch.randn(d, d_h, generator=g, dtype=torch.float64), torch.randn(d, d_h, generator=g, dtype=torch.float64)
    J_Q, J_K = torch.autograd.functional.jacobian(lambda a, b: a @ b.T, (W_Q, W_K))
    J = torch.cat([J_Q.reshape(d * d, -1), J_K.reshape(d * d, -1)], dim=1)  # (d^2, 2 d d_h)
    assert int(torch.linalg.matrix_rank(J)) == qk_counts(d, d_h)["free"] == 16
    assert qk_counts(64, 16) == {"factors": 2048, "entries": 4096, "free": 1792}
    with pytest.raises(ValueError, match="d_h <= d"):
        qk_counts(4, 8)


def test_check_qk_counts_right_and_wrong(capsys):
    check_qk_counts(2048, 4096, 1792)
    assert "1792 of them are free" in capsys.readouterr().out
    with pytest.raises(ExerciseCheckError, match="one factor only"):
        check_qk_counts(1024, 4096, 1792)
    with pytest.raises(ExerciseCheckError, match="small core"):
        check_qk_counts(2048, 256, 1792)
    with pytest.raises(ExerciseCheckError, match="forgetting the redundancy"):
        check_qk_counts(2048, 4096, 2048)
    with pytest.raises(ExerciseCheckError, match="one rescaling per column"):
        check_qk_counts(2048, 4096, 2032)
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_qk_counts(..., 4096, 1792)
    check_qk_counts(2 * 8 * 2, 64, 28, d=8, d_h=2, quiet=True)
