"""qklab.theory: the Monte Carlo propagation probability against the course's derivation."""

import math

import pytest
import torch

from qklab.spectrum import random_qk
from qklab.theory import (
    gaussian_tokens,
    kappa,
    predicted_snr,
    propagation_probability,
    random_walk_tokens,
    recent_share,
)

D = T = 64


def test_random_walk_statistics():
    X = random_walk_tokens(4000, 8, 3, seed=0)
    var = X.var(dim=(0, 2))  # per position, should be t
    torch.testing.assert_close(var, torch.arange(1, 9, dtype=torch.float64), rtol=0.06, atol=0)
    steps = X.diff(dim=1)
    assert abs(float(steps.mean())) < 0.02 and abs(float(steps.var()) - 1) < 0.03


def test_logit_moments_match_the_derivation():
    """E z = tau d m and Var z = tau (T + tau) d (m^2 + s^2), checked by sampling (section 6)."""
    d, T, m, s = 16, 10, 0.5, 0.3
    W = random_qk(d, m, s, seed=1, exact=True, dtype=torch.float64)
    X = random_walk_tokens(20000, T, d, seed=2)
    z = (X @ (X[:, -1, :] @ W.T).unsqueeze(-1)).squeeze(-1)  # (n, T)
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    torch.testing.assert_close(z.mean(0), tau * d * m, rtol=0.05, atol=0.5)
    torch.testing.assert_close(z.var(0), tau * (T + tau) * d * (m**2 + s**2), rtol=0.08, atol=0)
    snr = z.mean(0) / z.std(0)
    torch.testing.assert_close(snr, predicted_snr(m, s, d, T), rtol=0.06, atol=0)


def test_zero_mean_spectrum_gives_a_flat_profile():
    """Zero mean: predicted SNR is 0 everywhere, and with a wide support the profile is flat."""
    assert torch.all(predicted_snr(0.0, 1.0, D, T) == 0)
    W = random_qk(D, 0.0, 0.001, seed=0, exact=True)
    p = propagation_probability(W, T, 400, seed=0)
    assert float(p.max() / p.min()) < 1.5
    assert recent_share(p, 8) == pytest.approx(8 / T, abs=0.03)


def test_concentrated_spectrum_localizes_near_the_query():
    W = random_qk(D, 1.0, 0.1, seed=0, exact=True)
    p = propagation_probability(W, T, 400, seed=0)
    assert recent_share(p, 8) > 0.95
    assert int(p.argmax()) == T - 1  # the query's own key is the likeliest to be in the support


def test_profile_follows_the_predicted_snr():
    """Where the SNR grows with tau, so does the support probability (rank correlation)."""
    W = random_qk(D, 0.001, 0.001, seed=0, exact=True)
    p = propagation_probability(W, T, 400, seed=0)
    snr = predicted_snr(0.001, 0.001, D, T)
    rank = lambda v: v.argsort().argsort().to(torch.float64)  # noqa: E731
    rho = torch.corrcoef(torch.stack([rank(p), rank(snr)]))[0, 1]
    assert float(rho) > 0.7


def test_iid_tokens_localize_on_the_query_itself():
    W = random_qk(D, 1.0, 0.1, seed=0, exact=True)
    p = propagation_probability(W, T, 200, tokens="iid", seed=0)
    assert float(p[-1]) > 0.95 and float(p[:-1].mean()) < 0.05
    snr = predicted_snr(1.0, 0.1, D, T, tokens="iid")
    assert snr[-1] == pytest.approx(math.sqrt(D / 2) * kappa(1.0, 0.1)) and torch.all(snr[:-1] == 0)


def test_seeded_functions_are_deterministic():
    torch.testing.assert_close(random_walk_tokens(2, 3, 4, seed=7), random_walk_tokens(2, 3, 4, seed=7))
    assert not torch.allclose(gaussian_tokens(2, 3, 4, seed=7), gaussian_tokens(2, 3, 4, seed=8))
    W = random_qk(8, 0.5, 0.5, seed=1)
    a = propagation_probability(W, 6, 50, seed=3, chunk=7)
    b = propagation_probability(W, 6, 50, seed=3, chunk=7)
    torch.testing.assert_close(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        propagation_probability(torch.randn(3, 4), 5, 10)
    with pytest.raises(ValueError, match="T must be positive"):
        propagation_probability(torch.eye(3), 0, 10)
    with pytest.raises(ValueError, match="tokens"):
        propagation_probability(torch.eye(3), 4, 10, tokens="markov")
    with pytest.raises(ValueError, match="undefined"):
        kappa(0.0, 0.0)
    with pytest.raises(TypeError, match="int"):
        random_walk_tokens(2.5, 3, 4)
    with pytest.raises(ValueError, match="window"):
        recent_share(torch.ones(4), 5)


# --- general (non-symmetric) W and Monte Carlo standard errors (chapter 7's hard exercise) ---------

def test_general_snr_equals_symmetric_formula_for_symmetric_w():
    from qklab.spectrum import random_qk
    from qklab.theory import predicted_snr, predicted_snr_general

    W = random_qk(16, 0.4, 0.3, seed=2, exact=True, dtype=torch.float64)
    torch.testing.assert_close(predicted_snr_general(W, 20), predicted_snr(0.4, 0.3, 16, 20), rtol=1e-10, atol=1e-12)


def test_general_snr_matches_monte_carlo_for_a_non_symmetric_w():
    from qklab.theory import predicted_snr_general, random_walk_tokens, snr_with_error

    d, T = 8, 12
    g = torch.Generator().manual_seed(0)
    W = 0.3 * torch.eye(d, dtype=torch.float64) + torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5
    W = W + 1.5 * (W - W.T)  # a large antisymmetric part: tr(W^2) far from ||W||_F^2
    X = random_walk_tokens(40000, T, d, seed=3)  # (n, T, d)
    z = torch.einsum("ntd,de,ne->nt", X, W, X[:, -1]) / d**0.5  # z_tau = x_tau^T W x_T / sqrt(d)
    snr, se = snr_with_error(z, dim=0)
    gap = ((snr - predicted_snr_general(W, T)) / se).abs()
    assert float(gap.max()) < 4.5, gap
    # the symmetric formula applied to this W is wrong by far more than the error
    trace, trace_sq = torch.trace(W), torch.trace(W @ W)
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    naive = tau * trace / (tau * (T + tau) * trace_sq.abs()).sqrt()
    assert float(((snr - naive) / se).abs().max()) > 10


def test_snr_standard_error_matches_the_spread_of_repeated_estimates():
    from qklab.theory import snr_with_error

    g = torch.Generator().manual_seed(1)
    samples = torch.distributions.Exponential(1.0).sample((300, 400)).to(torch.float64) + 0.5  # skewed, (batches, n)
    snr, se = snr_with_error(samples, dim=1)
    assert abs(float(snr.std()) / float(se.mean()) - 1) < 0.15
    with pytest.raises(ValueError, match="at least 10 samples"):
        snr_with_error(torch.ones(5))
