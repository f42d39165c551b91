"""qklab.regularizers: LocAteR against eigenvalues, its bound property, sigma-Reparam."""

import pytest
import torch

from qklab.model import ModelConfig, Transformer
from qklab.regularizers import SigmaReparam, locater_penalty, locater_per_head, qk_weight_decay
from qklab.spectrum import QK


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_variance_equals_eigenvalue_variance_for_symmetric_W():
    d = 12
    A = torch.randn(d, d, dtype=torch.float64, generator=_gen(0))
    W = A @ A.T / d + 0.5 * torch.eye(d, dtype=torch.float64)  # symmetric positive definite
    W_Q, W_K = torch.linalg.cholesky(W), None
    W_K = W_Q  # W = L L^T
    qk = QK(W_Q, W_K)
    lam = torch.linalg.eigvalsh(W)
    pen = locater_per_head(qk, "variance", over="d")
    assert float(pen) == pytest.approx(float(lam.var(unbiased=False)), rel=1e-10)
    sym = locater_per_head(qk, "symmetric", over="d")
    assert float(sym) == pytest.approx(float(lam.var(unbiased=False)), rel=1e-10)
    unsafe = locater_per_head(qk, "unsafe_trace_variance", over="d")
    assert float(unsafe) == pytest.approx(float(lam.var(unbiased=False)), rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("over", ["d", "d_h"])
def test_variance_bounds_eigenvalue_spread_for_any_W(seed, over):
    d, d_h = 10, 4
    g = _gen(seed)
    W_Q = torch.randn(3, d, d_h, dtype=torch.float64, generator=g)
    W_K = torch.randn(3, d, d_h, dtype=torch.float64, generator=g)
    qk = QK(W_Q, W_K)
    n = d if over == "d" else d_h
    lam = torch.linalg.eigvals(qk.matrix)  # (3, d)
    if over == "d_h":
        lam = torch.linalg.eigvals(qk.core)
    m = lam.sum(-1) / n
    spread = ((lam - m.unsqueeze(-1)).abs() ** 2).sum(-1) / n
    pen = locater_per_head(qk, "variance", over=over)
    assert (pen >= spread.real - 1e-9).all()
    assert (pen >= 0).all()
    # the matrix form ||W - m I||_F^2 / d (over d)
    if over == "d":
        W = qk.matrix
        mI = (torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d)[:, None, None] * torch.eye(d, dtype=torch.float64)
        assert torch.allclose(pen, (W - mI).pow(2).sum((-2, -1)) / d)


def test_unsafe_form_is_unbounded_below():
    d = 6
    S = torch.zeros(d, d, dtype=torch.float64)
    S[0, 1], S[1, 0] = 100.0, -100.0  # a large antisymmetric W
    W_Q, W_K = torch.eye(d, dtype=torch.float64), S.T  # W_Q W_K^T = S
    qk = QK(W_Q, W_K)
    assert float(locater_per_head(qk, "unsafe_trace_variance")) < -1000
    assert float(locater_per_head(qk, "variance")) > 0


def test_scale_form_holds_mean():
    qk = QK(torch.eye(4, dtype=torch.float64), 2 * torch.eye(4, dtype=torch.float64))  # W = 2 I
    with pytest.raises(ValueError, match="target_mean"):
        locater_per_head(qk, "scale")
    val = locater_per_head(qk, "scale", target_mean=1.0, mean_weight=3.0)
    assert float(val) == pytest.approx(16 / 4 + 3 * (2 - 1) ** 2)


def test_frobenius_control_is_the_size_of_W_and_differs_from_the_variance_form_by_the_mean():
    g = torch.Generator().manual_seed(3)
    W_Q, W_K = torch.randn(2, 6, 3, generator=g, dtype=torch.float64), torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    W = W_Q @ W_K.transpose(-1, -2)  # (2, 6, 6), formed directly
    qk = QK(W_Q, W_K)
    fro = locater_per_head(qk, "frobenius")
    assert fro == pytest.approx((W**2).sum((-1, -2)) / 6)
    mean = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / 6
    assert fro - locater_per_head(qk, "variance") == pytest.approx(mean**2)


def test_model_penalty_sums_layers_and_heads():
    model = Transformer(ModelConfig(vocab_size=7, d_model=8, n_heads=2, n_layers=3, seq_len=4), seed=0).double()
    total = locater_penalty(model, "variance", "d")
    by_layer = sum(locater_per_head(model.qk(l), "variance", "d").sum() for l in range(3))
    assert torch.allclose(total, by_layer)
    total.backward()
    assert model.blocks[0].attn.W_qkv.grad is not None
    with pytest.warns(RuntimeWarning, match="unbounded"):
        locater_penalty(model, "unsafe_trace_variance")
    with pytest.raises(ValueError, match="form"):
        locater_penalty(model, "spread")
    wd = qk_weight_decay(model)
    assert torch.allclose(wd, model.W_Q.pow(2).sum() + model.W_K.pow(2).sum())


def test_sigma_reparam_estimate_converges_to_spectral_norm():
    W = torch.randn(24, 16, dtype=torch.float64, generator=_gen(0))
    sr = SigmaReparam(24, 16).double()
    for _ in range(200):  # one power-iteration step per "training step"
        sr(W, update=True)
    assert float(sr.sigma(W)) == pytest.approx(float(torch.linalg.matrix_norm(W, 2)), rel=1e-6)


def test_sigma_reparam_reset_keeps_initial_weight():
    W = torch.randn(8, 8, generator=_gen(1))
    sr = SigmaReparam(8, 8)
    sr.reset(W, _gen(2))
    with torch.no_grad():
        assert torch.allclose(sr(W), W, atol=1e-5)
        assert float(torch.linalg.matrix_norm(sr(3 * W), 2)) == pytest.approx(float(torch.linalg.matrix_norm(W, 2)), rel=1e-4)


def test_sigma_reparam_in_model_updates_only_in_training():
    model = Transformer(ModelConfig(vocab_size=7, d_model=8, seq_len=4, sigma_reparam=True), seed=0)
    sq = model.blocks[0].attn.sigma_q
    u0 = sq.u.clone()
    model.eval()
    model(torch.zeros(1, 4, dtype=torch.long))
    _ = model.W_Q
    assert torch.equal(sq.u, u0)
    with torch.no_grad():
        model.blocks[0].attn.W_qkv.mul_(torch.linspace(0.5, 2, 24).unsqueeze(1))
    model.train()
    model(torch.zeros(1, 4, dtype=torch.long))
    assert not torch.equal(sq.u, u0)
