"""Right answers written another way pass, and wrong answers a student writes fail with a useful message.

These are the answers tried as a learner for issue 10 (beyond the issue's own list): einsum,
numpy instead of torch, loops instead of vectorised code, library shortcuts, other return types;
and wrong answers such as a mask that hides the diagonal, a float32 intermediate, a count off by
a few, a bisection that returns the bracket.
"""

import functools
import math

import numpy as np
import pytest
import torch

from qklab.checks import attention as ca
from qklab.checks import collapse as cc
from qklab.checks import localization as cl
from qklab.checks import metrics as cm
from qklab.checks import spectrum as cs
from qklab.checks import training as ct
from qklab.checks.core import ExerciseCheckError, reset_attempts


@pytest.fixture(autouse=True)
def _fresh_attempts():
    reset_attempts()


# --- right answers written differently -------------------------------------------------------------


def pattern_numpy(X, W_Q, W_K, causal=False):
    """numpy, float64, a stable softmax by hand; returns an ndarray."""
    x, q, k = X.numpy(), W_Q.numpy(), W_K.numpy()
    S = np.matmul(x @ q if q.ndim == 2 else np.einsum("...td,hde->...hte", x, q),
                  np.swapaxes(x @ k if k.ndim == 2 else np.einsum("...td,hde->...hte", x, k), -1, -2)) / np.sqrt(q.shape[-1])
    if causal:
        S = np.where(np.triu(np.ones(S.shape[-2:], dtype=bool), 1), -np.inf, S)
    E = np.exp(S - S.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def pattern_row_loop(X, W_Q, W_K, causal=False):
    """One query row at a time, a large negative number instead of -inf."""
    S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1) / math.sqrt(W_Q.shape[-1])
    rows = []
    for i in range(S.shape[-2]):
        row = S[..., i, :].clone()
        if causal:
            row[..., i + 1:] = -1e30
        rows.append(torch.nn.functional.softmax(row, dim=-1))
    return torch.stack(rows, dim=-2)


def entropy_categorical(A):
    return torch.distributions.Categorical(probs=A).entropy().mean()


def entropy_nansum_numpy(A):
    a = A.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(-np.nansum(a * np.log(a), axis=-1).mean())


def residual_loop(X):
    flat = X.reshape(-1, *X.shape[-2:])
    out = [torch.norm(x - x.mean(0)) / torch.norm(x) for x in flat]
    return torch.stack(out).reshape(X.shape[:-2])


def erank_bits(X):
    s = torch.linalg.svd(X).S
    p = s / s.sum(-1, keepdim=True)
    return 2 ** (-torch.special.xlogy(p, p).sum(-1) / math.log(2))  # 2^H_bits = e^H_nats


def products_reduce(A):
    mats = list(A.unbind(-3))
    prods = [functools.reduce(lambda P, M: M @ P, mats[: l + 1]) for l in range(len(mats))]
    return torch.stack(prods, dim=-3)


def sparsemax_row_loop(z):
    """Python loops over rows, support found by the sorted test, -inf skipped."""
    flat = z.reshape(-1, z.shape[-1])
    out = torch.zeros_like(flat)
    for r, row in enumerate(flat):
        finite = sorted([float(v) for v in row if math.isfinite(float(v))], reverse=True)
        total, k_star, cum_star = 0.0, 1, finite[0]
        for k, v in enumerate(finite, start=1):
            total += v
            if 1 + k * v > total:
                k_star, cum_star = k, total
        theta = (cum_star - 1) / k_star
        out[r] = torch.clamp(row - theta, min=0)
    return out.reshape(z.shape)


def snr_numpy(mean, std, d, T):
    tau = np.arange(1, T + 1, dtype=np.float64)
    return np.sqrt(d) * mean / np.hypot(mean, std) * np.sqrt(tau / (T + tau))


def head_stats_formed(W_Q, W_K):
    W = W_Q @ W_K.transpose(-2, -1)
    d = W.shape[-1]
    m = torch.einsum("...ii->...", W) / d
    second = torch.einsum("...ij,...ij->...", W, W) / d
    return torch.stack([m, second - m**2, second.sqrt(), m / second.sqrt()], dim=-1)


def power_step_float_sigma(W, u):
    v = torch.nn.functional.normalize(W.mT @ u, dim=0)
    Wv = W @ v
    return Wv / torch.linalg.vector_norm(Wv), float(torch.linalg.vector_norm(Wv))  # sigma = |W v|, a float


def half_entropy_linear_bisection(X, B):
    """Bisection on r itself (not log r), returning a 0-d tensor."""
    lo, hi = 1e-3, 1e3
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(cc.mean_normalized_entropy_reference(X, mid * B)) > 0.5:
            lo = mid
        else:
            hi = mid
    return torch.tensor((lo + hi) / 2)


def moments_eigvals(W_Q, W_K):
    lam = torch.linalg.eigvals(W_K.mT @ W_Q)  # the core's eigenvalues; the d - d_h others are 0
    d = W_Q.shape[-2]
    return torch.stack([lam.sum(-1) / d, (lam**2).sum(-1) / d], dim=-1)  # complex, imaginary part ~ 0


def core_eigenvalues_numpy(W_Q, W_K):
    return np.linalg.eigvals(np.swapaxes(W_K.numpy(), -1, -2) @ W_Q.numpy())


def symmetric_penalty_formed(W_Q, W_K):
    W = W_Q @ W_K.mT
    S = (W + W.mT) / 2
    d = W.shape[-1]
    m = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d
    return S.pow(2).sum((-2, -1)) / d - m**2


RIGHT = [
    (ca.check_attention_pattern, pattern_numpy),
    (ca.check_attention_pattern, pattern_row_loop),
    (cm.check_mean_row_entropy, entropy_categorical),
    (cm.check_mean_row_entropy, entropy_nansum_numpy),
    (cm.check_relative_residual, residual_loop),
    (cm.check_effective_rank, erank_bits),
    (cc.check_running_products, products_reduce),
    (cl.check_sparsemax, sparsemax_row_loop),
    (cl.check_predicted_snr, snr_numpy),
    (ct.check_head_stats, head_stats_formed),
    (ct.check_power_step, power_step_float_sigma),
    (cc.check_half_entropy_scale, half_entropy_linear_bisection),
    (cs.check_core_eigenvalues, core_eigenvalues_numpy),
]

# Right in value, but against the statement's rules (issue 19: the rules are enforced).
RULE_BREAKERS = [
    (cs.check_spectrum_moments, moments_eigvals, "eigen-solver"),
    (ct.check_symmetric_penalty, symmetric_penalty_formed, "a d x d matrix"),
]


@pytest.mark.parametrize("check, answer, why", RULE_BREAKERS, ids=[a.__name__ for _, a, _ in RULE_BREAKERS])
def test_right_values_computed_against_the_rules_fail(check, answer, why):
    with pytest.raises(ExerciseCheckError, match=why):
        check(answer)


@pytest.mark.parametrize("check, answer", RIGHT, ids=[a.__name__ for _, a in RIGHT])
def test_right_answers_written_differently_pass(check, answer, capsys):
    check(answer)
    assert "\u2713" in capsys.readouterr().out


@pytest.mark.parametrize(
    "check, value",
    [(lambda v: cs.check_zero_counts(v, 40), np.int64(36)),
     (lambda v: cm.check_causal_uniform_ratio(v, T=8), sum(math.log(i) for i in range(1, 9)) / 8 / math.log(8)),
     (lambda v: ct.check_causal_max_entropy(v, T=32), torch.lgamma(torch.tensor(33.0)) / 32),
     (ct.check_unsafe_value, (np.linalg.eigvals(ct.unsafe_example_matrix().numpy()) ** 2).sum() / 4)],  # complex, imag 0
    ids=["np.int64", "1-based sum", "float32 lgamma", "complex eigvals"],
)
def test_right_numbers_in_other_forms_pass(check, value):
    check(value)


# --- wrong answers a student writes ---------------------------------------------------------------


def _msg(check, answer):
    with pytest.raises(ExerciseCheckError) as info:
        check(answer)
    return str(info.value)


def test_wrong_answers_beyond_the_issue_are_caught_with_a_useful_message():
    def pattern_mask(mask_fn):
        def fn(X, W_Q, W_K, causal=False):
            S = (X @ W_Q) @ (X @ W_K).mT / math.sqrt(W_Q.shape[-1])
            if causal:
                S = S.masked_fill(mask_fn(S.shape[-1]), -math.inf)
            return torch.softmax(S, dim=-1)
        return fn

    diag = pattern_mask(lambda T: torch.ones(T, T, dtype=torch.bool).triu())
    assert "hides the diagonal too" in _msg(ca.check_attention_pattern, diag)
    past = pattern_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1))
    assert "wrong side" in _msg(ca.check_attention_pattern, past)

    # A float32 result passes when float32 is within the check's tolerance (the SNR, the pattern);
    # where it is not, the message says so.
    from qklab.checks.core import Case, check_function

    thirds = [Case("thirds", (torch.full((3,), 1 / 3, dtype=torch.float64),))]
    assert "float32 but the inputs are float64" in _msg(
        lambda fn: check_function(fn, lambda x: x, thirds, name="identity", rtol=1e-12, atol=0.0), lambda x: x.float()
    )

    def entropy_no_minus(A):
        return torch.special.xlogy(A, A).sum(-1).mean()

    msg = _msg(cm.check_mean_row_entropy, entropy_no_minus)
    assert "wrong sign" in msg and "minus sign" in msg

    def stack_without_values(X, W_Q, W_K, W_V, causal=False):
        from qklab.attention import pattern
        from qklab.metrics import token_residual

        out = [token_residual(X)]
        for l in range(W_Q.shape[0]):
            X = pattern((X @ W_Q[l]) @ (X @ W_K[l]).mT / math.sqrt(W_Q.shape[-1]), causal=causal) @ X
            out.append(token_residual(X))
        return torch.stack(out, -1)

    assert "W_V left out" in _msg(cc.check_stack_residuals, stack_without_values)

    def sparsemax_k_with_masked(z):
        zs = z.sort(dim=-1, descending=True).values
        fin = zs.masked_fill(torch.isinf(zs), 0.0)
        k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
        cums = fin.cumsum(-1)
        size = (1 + k * fin > cums).sum(-1, keepdim=True)  # the masked zeros pass the test too
        return torch.clamp(z - (cums.gather(-1, size - 1) - 1) / size, min=0)

    assert "counted in the support" in _msg(cl.check_sparsemax, sparsemax_k_with_masked)

    def half_bracket(X, B):
        return (1e-3, 1e3)

    assert "tuple" in _msg(cc.check_half_entropy_scale, half_bracket)

    assert "too small" in _msg(lambda v: cs.check_zero_counts(v, 40), 35)  # one off, and no value given
    assert "base 10" in _msg(lambda v: __import__("qklab.checks.intro", fromlist=["x"]).check_uniform_entropy(v, T=8), math.log10(8))
