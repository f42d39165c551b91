"""qklab.spectrum: trace identities against torch.linalg.eigvals, and prescribed spectra."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qklab.spectrum import QK, factor_qk, haar_orthogonal, qk_with_spectrum, random_qk


def _factors(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 12), frac=st.floats(0.1, 1.0), heads=st.integers(1, 3), seed=st.integers(0, 1000))
def test_trace_identities_match_full_eigendecomposition(d, frac, heads, seed):
    d_h = max(1, int(d * frac))
    W_Q, W_K = _factors((heads, d, d_h), seed)
    qk = QK(W_Q, W_K)
    lam = torch.linalg.eigvals(qk.matrix)  # independent: the full d x d eigendecomposition
    torch.testing.assert_close(qk.trace(), lam.sum(-1).real)
    torch.testing.assert_close(qk.trace_sq(), (lam**2).sum(-1).real)
    torch.testing.assert_close(qk.fro_sq(), torch.linalg.matrix_norm(qk.matrix) ** 2)
    torch.testing.assert_close(qk.mean("d"), lam.mean(-1).real)
    torch.testing.assert_close(qk.mean("d_h"), lam.sum(-1).real / d_h)
    # Schur: the bound variance is never below the true spread sum |lambda - m|^2 / d
    spread = (lam - qk.mean("d").unsqueeze(-1)).abs().pow(2).mean(-1)
    assert torch.all(qk.variance("d") >= spread - 1e-8)
    torch.testing.assert_close(qk.spectral_norm(), torch.linalg.matrix_norm(qk.matrix, ord=2))


def test_eigenvalues_core_shortcut_and_zeros():
    W_Q, W_K = _factors((10, 3), 0)
    qk = QK(W_Q, W_K)
    ev = qk.eigenvalues()
    assert ev.shape == (10,) and ev.is_complex()
    assert torch.all(ev[3:] == 0)
    full = torch.linalg.eigvals(qk.matrix)
    nonzero = full[full.abs() > 1e-8]
    key = lambda z: (round(float(z.real), 6), round(float(z.imag), 6))  # noqa: E731
    assert sorted(map(key, nonzero)) == sorted(map(key, qk.eigenvalues(nonzero_only=True)))


def test_symmetric_matrix_variance_kinds_agree_with_eigvalsh():
    lam = torch.tensor([0.5, 1.0, 1.5, 2.0, -0.5], dtype=torch.float64)
    W = qk_with_spectrum(lam, seed=1)
    qk = QK(*factor_qk(W))
    torch.testing.assert_close(qk.matrix, W)
    ev = torch.linalg.eigvalsh(W)
    torch.testing.assert_close(ev, lam.sort().values)
    var = ev.var(correction=0)
    torch.testing.assert_close(qk.variance(kind="bound"), var)
    torch.testing.assert_close(qk.variance(kind="trace"), var)
    torch.testing.assert_close(qk.kappa(), ev.mean() / (ev**2).mean().sqrt())
    assert float(qk.antisymmetric_fro_sq()) == pytest.approx(0.0, abs=1e-10)


def test_trace_variance_can_be_negative_for_non_symmetric():
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # eigenvalues +-i
    qk = QK(*factor_qk(rotation))
    assert float(qk.variance(kind="trace")) == pytest.approx(-1.0)
    assert float(qk.variance(kind="bound")) == pytest.approx(1.0)


def test_statistics_are_differentiable():
    W_Q, W_K = _factors((6, 2), 3)
    W_Q.requires_grad_(True)
    loss = QK(W_Q, W_K).variance() + QK(W_Q, W_K).trace_sq()
    loss.backward()
    assert W_Q.grad is not None and torch.isfinite(W_Q.grad).all()


def test_prescribed_spectra():
    W = random_qk(32, mean=1.0, std=0.2, seed=4, exact=True, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(W)
    assert float(ev.mean()) == pytest.approx(1.0, abs=1e-10)
    assert float(ev.std(correction=0)) == pytest.approx(0.2, abs=1e-10)
    torch.testing.assert_close(W, W.T)
    drawn = torch.linalg.eigvalsh(random_qk(400, mean=0.5, std=0.1, seed=0, dtype=torch.float64))
    assert abs(float(drawn.mean()) - 0.5) < 0.02 and abs(float(drawn.std()) - 0.1) < 0.02


def test_haar_orthogonal_and_seeding():
    U = haar_orthogonal(6, seed=2)
    torch.testing.assert_close(U.T @ U, torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(haar_orthogonal(6, seed=2), U)
    assert not torch.allclose(haar_orthogonal(6, seed=3), U)
    torch.testing.assert_close(random_qk(8, 1.0, 0.5, seed=9), random_qk(8, 1.0, 0.5, seed=9))


def test_factor_qk_truncates_to_best_rank():
    W = random_qk(8, 0.0, 1.0, seed=5, dtype=torch.float64)
    W_Q, W_K = factor_qk(W, d_h=3)
    assert W_Q.shape == (8, 3)
    U, S, Vh = torch.linalg.svd(W)
    best = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    torch.testing.assert_close(W_Q @ W_K.T, best)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        QK(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="d_h <= d"):
        QK(torch.randn(2, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="over must be"):
        QK(torch.randn(4, 2), torch.randn(4, 2)).mean(over="heads")
    with pytest.raises(ValueError, match="square"):
        factor_qk(torch.randn(3, 4))
    with pytest.raises(ValueError, match="cannot exceed"):
        factor_qk(torch.randn(3, 3), d_h=4)
    with pytest.raises(ValueError, match="std"):
        random_qk(4, 0.0, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        QK(torch.full((4, 2), float("nan")), torch.randn(4, 2))
    with pytest.raises(TypeError, match="real"):
        qk_with_spectrum(torch.tensor([1 + 1j, 2 + 0j]))
    with pytest.raises(ValueError, match="1 dimensions"):
        qk_with_spectrum(torch.eye(2))
