"""The checks of chapter 2 pass right answers and name each typical wrong one."""

import math

import numpy as np
import pytest
import torch

from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.checks.metrics import (
    ENTROPY_MISTAKES,
    ERANK_MISTAKES,
    RESIDUAL_MISTAKES,
    causal_uniform_ratio,
    check_causal_uniform_ratio,
    check_effective_rank,
    check_mean_row_entropy,
    check_relative_residual,
)

# --- independent answers, written with numpy loops ------------------------------------------------


def entropy_by_loops(A):
    rows = A.detach().numpy().reshape(-1, A.shape[-1])
    total = 0.0
    for row in rows:
        total -= sum(p * math.log(p) for p in row if p > 0)
    return torch.tensor(total / len(rows), dtype=A.dtype)


def residual_by_loops(X):
    flat = X.detach().numpy().reshape(-1, *X.shape[-2:])
    out = []
    for M in flat:
        mean = M.sum(axis=0) / M.shape[0]
        out.append(math.sqrt(((M - mean) ** 2).sum()) / math.sqrt((M**2).sum()))
    return torch.tensor(np.array(out).reshape(X.shape[:-2]), dtype=X.dtype)


def erank_by_numpy(X):
    flat = X.detach().numpy().reshape(-1, *X.shape[-2:])
    out = []
    for M in flat:
        s = np.linalg.svd(M, compute_uv=False)
        p = s / s.sum()
        out.append(math.exp(-sum(q * math.log(q) for q in p if q > 0)))
    return torch.tensor(np.array(out).reshape(X.shape[:-2]), dtype=X.dtype)


def test_independent_answers_pass(capsys):
    check_mean_row_entropy(entropy_by_loops)
    check_relative_residual(residual_by_loops)
    check_effective_rank(erank_by_numpy)
    out = capsys.readouterr().out
    assert "mean_row_entropy: your function matches" in out
    assert "relative_residual: your function matches" in out
    assert "effective_rank: your function matches" in out


def test_small_clamp_passes_and_zhai_epsilon_is_named():
    # A clamp inside the log leaves 0 * log(tiny) = 0 exactly: a correct answer.
    check_mean_row_entropy(lambda A: -(A * torch.log(A.clamp_min(1e-300))).sum(-1).mean(), quiet=True)
    # Zhai et al.'s log(A + 1e-6) is off by up to T * 1e-6: named as a near miss, not a wrong axis.
    zhai = lambda A: -(A * torch.log(A + 1e-6)).sum(-1).mean()  # noqa: E731
    reset_attempts()
    with pytest.raises(ExerciseCheckError, match="too small by less than 1 %.\nThis looks like Zhai et al.'s convention"):
        check_mean_row_entropy(zhai)
    with pytest.raises(ExerciseCheckError, match="Hint: close! This exercise asks for the exact entropy"):
        check_mean_row_entropy(zhai)


@pytest.mark.parametrize(
    "check, mistake",
    [(check_mean_row_entropy, m) for m in ENTROPY_MISTAKES]
    + [(check_relative_residual, m) for m in RESIDUAL_MISTAKES]
    + [(check_effective_rank, m) for m in ERANK_MISTAKES],
    ids=lambda x: getattr(x, "label", getattr(x, "__name__", ""))[:30],
)
def test_each_mistake_fails_with_its_own_label(check, mistake):
    with pytest.raises(ExerciseCheckError) as info:
        check(mistake.fn)
    assert f"This looks like {mistake.label}" in str(info.value)


def test_generic_hints_and_stubs():
    with pytest.raises(ExerciseCheckError, match="Hint: H_i = "):
        check_mean_row_entropy(lambda A: 2 * entropy_by_loops(A))
    with pytest.raises(ExerciseCheckError, match="Hint: subtract the token mean"):
        check_relative_residual(lambda X: residual_by_loops(X) ** 2)
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_effective_rank(lambda X: (_ for _ in ()).throw(NotImplementedError()))


def test_causal_uniform_ratio_against_a_sum():
    for T in (2, 8, 64):
        direct = sum(math.log(i) for i in range(1, T + 1)) / T / math.log(T)
        assert causal_uniform_ratio(T) == pytest.approx(direct, rel=1e-12)
    assert causal_uniform_ratio(8) == pytest.approx(0.63747, abs=1e-5)
    with pytest.raises(ValueError, match="T must be"):
        causal_uniform_ratio(1)


def test_check_causal_uniform_ratio_right_and_wrong(capsys):
    check_causal_uniform_ratio(0.6375)
    assert "is right" in capsys.readouterr().out
    for wrong, label in [
        (1.0, "without the mask"),
        (7 / 8, "its own maximum"),
        (math.lgamma(9) / (7 * math.log(8)), "row 0, which sees one key, dropped"),
        (math.lgamma(9) / 8, "not divided by log T"),
        (math.lgamma(10) / (8 * math.log(8)), "rows seeing 2, ..., T \\+ 1 keys"),
        (math.lgamma(9) / (8 * math.log(8) * math.log(2)), "bits divided by log T"),
    ]:
        with pytest.raises(ExerciseCheckError, match=label):
            check_causal_uniform_ratio(wrong)
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        check_causal_uniform_ratio(...)
