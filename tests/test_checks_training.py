"""qklab.checks.training (chapters 4, 9, 10, 11): right answers pass, each typical wrong answer fails
with its own label, and the references agree with independent computations."""

import math
import re

import pytest
import torch

from qklab.checks import training as tc
from qklab.checks.core import ExerciseCheckError


def _label_pattern(label: str) -> str:
    return "This looks like " + re.escape(label)


# --- chapter 4 -----------------------------------------------------------------------------------

def test_causal_max_entropy_matches_brute_force():
    for T in (1, 2, 7, 32, 64):
        A = torch.ones(T, T, dtype=torch.float64).tril()
        A = A / A.sum(-1, keepdim=True)
        H = -(torch.special.xlogy(A, A)).sum(-1).mean()
        assert math.isclose(tc.causal_max_entropy(T), float(H), rel_tol=1e-12, abs_tol=1e-12)
    with pytest.raises(ValueError):
        tc.causal_max_entropy(0)


def test_causal_max_entropy_check(capsys):
    tc.check_causal_max_entropy(math.lgamma(33) / 32, T=32)
    assert "\u2713" in capsys.readouterr().out
    T = 32
    wrong = {
        "no causal mask": math.log(T),
        "bits": math.lgamma(T + 1) / T / math.log(2),
        "sum over rows": math.lgamma(T + 1),
        "normalised by log T": math.lgamma(T + 1) / T / math.log(T),
        "off-by-one": math.lgamma(T + 2) / T,
        "middle row": math.log(T / 2),
    }
    for key, value in wrong.items():
        with pytest.raises(ExerciseCheckError, match="This looks like"):
            tc.check_causal_max_entropy(value, T=T)
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        tc.check_causal_max_entropy(..., T=T)


def _power_step_loop(W, u):
    """An independent right answer written with explicit loops and norms."""
    m, n = W.shape
    v = torch.stack([sum(W[i, j] * u[i] for i in range(m)) for j in range(n)])
    v = v / torch.sqrt((v * v).sum())
    Wv = torch.stack([sum(W[i, j] * v[j] for j in range(n)) for i in range(m)])
    u_new = Wv / torch.sqrt((Wv * Wv).sum())
    return u_new, torch.dot(u_new, Wv)


def test_power_step_right_answers_pass(capsys):
    tc.check_power_step(tc.power_step_reference)
    tc.check_power_step(_power_step_loop)
    assert capsys.readouterr().out.count("\u2713") == 2


def test_power_step_reference_converges_to_svd():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 7, generator=g, dtype=torch.float64)
    u = torch.randn(12, generator=g, dtype=torch.float64)
    for _ in range(500):
        u, sigma = tc.power_step_reference(W, u)
    assert torch.isclose(sigma, torch.linalg.svdvals(W)[0], rtol=1e-8)


@pytest.mark.parametrize("mistake", tc.POWER_MISTAKES, ids=lambda m: m.label)
def test_each_power_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match=_label_pattern(mistake.label)):
        tc.check_power_step(mistake.fn)


def test_power_step_malformed_answers():
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        tc.check_power_step(lambda W, u: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(ExerciseCheckError, match="tuple"):
        tc.check_power_step(lambda W, u: tc.power_step_reference(W, u)[1])


def test_entropy_bound_holds_on_random_rows():
    """The course's bound against brute force: random tokens and W, every causal row."""
    g = torch.Generator().manual_seed(1)
    d, d_h, T = 16, 4, 24
    for scale in (0.1, 1.0, 5.0):
        W_Q = scale * torch.randn(d, d_h, generator=g, dtype=torch.float64)
        W_K = scale * torch.randn(d, d_h, generator=g, dtype=torch.float64)
        X = torch.randn(T, d, generator=g, dtype=torch.float64)
        W = W_Q @ W_K.T
        S = X @ W @ X.T / math.sqrt(d_h)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        A = torch.softmax(S.masked_fill(~mask, float("-inf")), -1)
        H = -(torch.special.xlogy(A, A)).sum(-1)  # (T,)
        sigma = torch.linalg.matrix_norm(W, 2)
        R = X.norm(dim=-1).max()
        bound = tc.entropy_bound_reference(sigma, R, d_h, torch.arange(1, T + 1, dtype=torch.float64))
        assert bool((H >= bound - 1e-12).all())
    # sigma = 0: the bound equals the maximum, log n
    n = torch.tensor([1.0, 5.0, 32.0], dtype=torch.float64)
    assert torch.allclose(tc.entropy_bound_reference(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0), 4, n), n.log())


def test_entropy_bound_check(capsys):
    tc.check_entropy_bound(lambda s, R, d_h, n: torch.log1p((n - 1) / torch.exp(2 * s * R * R / d_h**0.5)))
    tc.check_entropy_bound(lambda s, R, d_h, n: torch.log1p(torch.exp(torch.log(n - 1) - 2 * s * R**2 / d_h**0.5)))
    assert capsys.readouterr().out.count("\u2713") == 2
    # The same bound through log(1 + x), or as -log of the bound on the largest weight, loses a bound
    # near 1e-23 (the statement asks for it): rejected, the first one named.
    with pytest.raises(ExerciseCheckError, match="log\\(1 \\+ x\\) computed directly"):
        tc.check_entropy_bound(lambda s, R, d_h, n: torch.log(1 + (n - 1) / torch.exp(2 * s * R * R / d_h**0.5)))
    with pytest.raises(ExerciseCheckError, match="a collapsed head|entry 4"):
        tc.check_entropy_bound(lambda s, R, d_h, n: -torch.log(1 / (1 + (n - 1) * torch.exp(-2 * s * R**2 / d_h**0.5))))


@pytest.mark.parametrize("mistake", tc.BOUND_MISTAKES, ids=lambda m: m.label)
def test_each_bound_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match=_label_pattern(mistake.label)):
        tc.check_entropy_bound(mistake.fn)


# --- chapter 9 -----------------------------------------------------------------------------------

def _head_stats_by_eig(W_Q, W_K):
    """Independent: form W, take its eigenvalues for the mean and torch.linalg.matrix_norm for the scale."""
    W = W_Q @ W_K.transpose(-2, -1)
    d = W.shape[-1]
    lam = torch.linalg.eigvals(W)
    m = lam.sum(-1).real / d
    fro = torch.linalg.matrix_norm(W) ** 2
    var = fro / d - m**2
    r = (fro / d).sqrt()
    return torch.stack([m, var, r, m / r], dim=-1)


def test_head_stats_right_answers_pass(capsys):
    tc.check_head_stats(tc.head_stats_reference)
    tc.check_head_stats(_head_stats_by_eig)
    assert capsys.readouterr().out.count("\u2713") == 2


def test_head_stats_variance_is_eigen_variance_for_symmetric():
    g = torch.Generator().manual_seed(2)
    W_Q = torch.randn(10, 10, generator=g, dtype=torch.float64)
    stats = tc.head_stats_reference(W_Q, W_Q.clone())  # W = W_Q W_Q^T symmetric
    lam = torch.linalg.eigvalsh(W_Q @ W_Q.T)
    assert torch.isclose(stats[1], lam.var(unbiased=False), rtol=1e-9)


@pytest.mark.parametrize("mistake", tc.HEAD_STATS_MISTAKES, ids=lambda m: m.label)
def test_each_head_stats_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match=_label_pattern(mistake.label)):
        tc.check_head_stats(mistake.fn)


def test_mimetic_kappa_reference_vs_simulation():
    g = torch.Generator().manual_seed(3)
    d = 1024
    for alpha, beta in ((0.7, 0.7), (0.5, 1.0), (2.0, 0.5)):
        W = alpha * torch.eye(d, dtype=torch.float64) + beta * torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        kappa = (torch.trace(W) / d) / (W.pow(2).sum() / d).sqrt()
        ref = tc.mimetic_kappa_reference(torch.tensor(alpha), torch.tensor(beta))
        assert abs(float(kappa) - float(ref)) < 0.01


def test_mimetic_kappa_check(capsys):
    tc.check_mimetic_kappa(lambda a, b: torch.cos(torch.atan2(b, a)))  # same formula, another route
    assert "\u2713" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", tc.MIMETIC_MISTAKES, ids=lambda m: m.label)
def test_each_mimetic_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match=_label_pattern(mistake.label)):
        tc.check_mimetic_kappa(mistake.fn)


# --- chapter 10 ----------------------------------------------------------------------------------

def test_unsafe_value_check(capsys):
    lam = torch.linalg.eigvals(tc.unsafe_example_matrix())
    value = float((lam**2).sum().real) / 4 - float(lam.sum().real / 4) ** 2
    assert math.isclose(value, -4.5, rel_tol=1e-12)
    tc.check_unsafe_value(value)
    assert "\u2713" in capsys.readouterr().out
    for wrong, label in ((4.5, "bounded variance"), (-18.0, "without dividing"), (-9.0, "n = 2"), (0.0, "zero")):
        with pytest.raises(ExerciseCheckError, match=re.escape(label)):
            tc.check_unsafe_value(wrong)


def _symmetric_by_matrix(W_Q, W_K):
    W = W_Q @ W_K.transpose(-2, -1)
    d = W.shape[-1]
    S = (W + W.transpose(-2, -1)) / 2
    m = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d
    eye = torch.eye(d, dtype=W.dtype)
    return (S - m[..., None, None] * eye).pow(2).sum(dim=(-2, -1)) / d  # ||W_sym - m I||_F^2 / d


def test_symmetric_penalty_right_answers_pass(capsys):
    tc.check_symmetric_penalty(tc.symmetric_penalty_reference)
    assert capsys.readouterr().out.count("\u2713") == 1
    with pytest.raises(ExerciseCheckError, match="a d x d matrix"):  # right values, but the rule is broken
        tc.check_symmetric_penalty(_symmetric_by_matrix)


@pytest.mark.parametrize("mistake", tc.SYMMETRIC_MISTAKES, ids=lambda m: m.label)
def test_each_symmetric_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError, match=_label_pattern(mistake.label)):
        tc.check_symmetric_penalty(mistake.fn)
