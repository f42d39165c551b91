"""qklab.collapse against independent computations: SDPA, explicit loops, closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from qklab import collapse as C
from qklab.metrics import attention_entropy, token_residual


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


# --- random stacks ---------------------------------------------------------------------------------

def test_init_stack_shapes_and_variances():
    w = C.init_stack(4, 3, 64, n_heads=4, qk_gain=2.0, seed=0)
    assert w["W_Q"].shape == (4, 3, 4, 64, 16) and w["W_O"].shape == (4, 3, 4, 16, 64)
    assert w["W_1"].shape == (4, 3, 64, 256) and w["W_2"].shape == (4, 3, 256, 64)
    assert float(w["W_Q"].var()) == pytest.approx(4.0 / 64, rel=0.05)
    assert float(w["W_V"].var()) == pytest.approx(1.0 / 64, rel=0.05)
    assert float(w["W_1"].var()) == pytest.approx(2.0 / 64, rel=0.05)
    torch.testing.assert_close(w["W_K"], C.init_stack(4, 3, 64, n_heads=4, qk_gain=2.0, seed=0)["W_K"])
    with pytest.raises(ValueError, match="must divide"):
        C.init_stack(1, 1, 10, n_heads=3)


def _sdpa_layer(X, w, l, causal):
    """One attention layer through torch's scaled_dot_product_attention, head by head."""
    out = 0
    for h in range(w["W_Q"].shape[2]):
        Q, K, V = (X @ w[n][:, l, h] for n in ("W_Q", "W_K", "W_V"))
        out = out + F.scaled_dot_product_attention(Q, K, V, is_causal=causal) @ w["W_O"][:, l, h]
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block", C.BLOCKS)
def test_stack_outputs_match_an_sdpa_implementation(block, causal):
    X = randn(3, 7, 8, seed=1)
    w = C.init_stack(3, 2, 8, n_heads=2, seed=2)
    a = 0.5
    outs = C.stack_outputs(X, w, block, causal, branch_scale=a)
    ln = lambda Z: F.layer_norm(Z, (8,))  # noqa: E731
    mlp = lambda Z, l: F.relu(Z @ w["W_1"][:, l]) @ w["W_2"][:, l]  # noqa: E731
    Y = X
    for l in range(2):
        if block == "attention":
            Y = _sdpa_layer(Y, w, l, causal)
        elif block == "skip":
            Y = Y + a * _sdpa_layer(Y, w, l, causal)
        elif block == "mlp":
            Y = mlp(_sdpa_layer(Y, w, l, causal), l)
        else:
            Y = ln(Y + a * _sdpa_layer(Y, w, l, causal))
            Y = ln(Y + a * mlp(Y, l))
        torch.testing.assert_close(outs[l + 1], Y)
    assert len(outs) == 3


def test_uniform_attention_collapses_in_one_layer_and_causal_does_not():
    X = randn(4, 10, 6, seed=3)
    res = C.depth_residuals(X, 2, "attention", causal=False, seed=0, qk_gain=0.0)
    assert res.shape == (4, 3)
    assert float(res[:, 1:].max()) < 1e-12
    # causal uniform attention: output row i is the mean of the first i + 1 tokens (times W_V W_O)
    w = C.init_stack(4, 1, 6, qk_gain=0.0, seed=0)
    prefix = X.cumsum(dim=1) / torch.arange(1, 11, dtype=torch.float64)[:, None]
    expected = prefix @ w["W_V"][:, 0, 0] @ w["W_O"][:, 0, 0]
    res_c = C.depth_residuals(X, 1, "attention", causal=True, seed=0, qk_gain=0.0)
    torch.testing.assert_close(res_c[:, 1], token_residual(expected))
    assert float(res_c[:, 1].min()) > 0.1


def test_depth_residuals_single_sequence_and_errors():
    X = randn(5, 4, seed=4)
    assert C.depth_residuals(X, 3, seed=0).shape == (4,)
    with pytest.raises(ValueError, match="block"):
        C.depth_residuals(X, 3, block="transformer")
    with pytest.raises(ValueError, match="depth"):
        C.depth_residuals(X, 0)
    with pytest.raises(ValueError, match="branch_scale"):
        C.depth_residuals(X, 2, "skip", branch_scale=float("nan"))


def test_attention_stack_residuals_matches_an_explicit_loop():
    X = randn(2, 6, 4, seed=5)
    W_Q, W_K, W_V = randn(3, 4, 2, seed=6), randn(3, 4, 2, seed=7), randn(3, 4, 4, seed=8) / 2
    for causal in (False, True):
        got = C.attention_stack_residuals(X, W_Q, W_K, W_V, causal=causal)
        Y, want = X, [token_residual(X)]
        for l in range(3):
            Y = F.scaled_dot_product_attention(Y @ W_Q[l], Y @ W_K[l], Y @ W_V[l], is_causal=causal)
            want.append(token_residual(Y))
        torch.testing.assert_close(got, torch.stack(want, -1))
    with pytest.raises(ValueError, match="W_V"):
        C.attention_stack_residuals(X, W_Q, W_K, W_V[:, :, :2])


# --- products of stochastic matrices ---------------------------------------------------------------

def test_random_stochastic_rows_and_mask():
    A = C.random_stochastic((2, 3), 5, 2.0, causal=True, seed=0)
    assert A.shape == (2, 3, 5, 5)
    torch.testing.assert_close(A.sum(-1), torch.ones(2, 3, 5, dtype=torch.float64))
    assert float(A.triu(1).abs().max()) == 0.0


def test_running_products_against_multi_dot():
    A = randn(2, 4, 3, 3, seed=1)
    P = C.running_products(A)
    for b in range(2):
        for l in range(4):
            mats = [A[b, k] for k in range(l, -1, -1)]  # A_l ... A_1
            want = mats[0] if l == 0 else torch.linalg.multi_dot(mats)
            torch.testing.assert_close(P[b, l], want)


def test_product_residuals_uniform_and_identity():
    X = randn(6, 3, seed=2)
    U = torch.full((2, 6, 6), 1 / 6, dtype=torch.float64)
    res = C.product_residuals(X, U)
    assert res.shape == (3,) and float(res[1:].max()) < 1e-12
    I = torch.eye(6, dtype=torch.float64).expand(4, 6, 6)
    torch.testing.assert_close(C.product_residuals(X, I), token_residual(X).expand(5))


def test_dobrushin_coefficient_brute_force_and_contraction():
    A = C.random_stochastic(5, 6, 1.5, seed=3)
    tau = C.dobrushin_coefficient(A)
    for k in range(5):
        rows = A[k]
        overlap = min(float(torch.minimum(rows[i], rows[j]).sum()) for i in range(6) for j in range(6))
        assert float(tau[k]) == pytest.approx(1 - overlap, abs=1e-12)
    assert float(C.dobrushin_coefficient(torch.full((4, 4), 0.25))) == 0.0
    assert float(C.dobrushin_coefficient(torch.eye(4))) == 1.0
    X = randn(5, 6, 3, seed=4)
    assert bool((C.row_spread(A @ X) <= tau * C.row_spread(X) + 1e-12).all())


def test_row_spread_by_hand():
    X = torch.tensor([[0.0, 5.0], [2.0, 1.0], [-1.0, 3.0]])
    assert float(C.row_spread(X)) == 4.0  # column 2: 5 - 1; column 1: 2 - (-1) = 3


# --- gradients --------------------------------------------------------------------------------------

def test_correlated_tokens_cosine():
    X = C.correlated_tokens(8, 10, 400, 0.6, seed=0)
    from qklab.metrics import token_cosine

    assert float(token_cosine(X).mean()) == pytest.approx(0.6, abs=0.05)
    Y = C.correlated_tokens(2, 5, 4, 1.0, seed=1)
    torch.testing.assert_close(Y, Y[:, :1].expand_as(Y))
    with pytest.raises(ValueError, match="rho"):
        C.correlated_tokens(1, 2, 3, 1.5)


def test_qkv_gradient_norms_against_an_sdpa_autograd():
    X = randn(3, 6, 8, seed=5)
    got = C.qkv_gradient_norms(X, 2, "skip", seed=11, n_heads=2, branch_scale=0.7)
    w = C.init_stack(3, 2, 8, n_heads=2, seed=11)
    for n in ("W_Q", "W_K", "W_V"):
        w[n].requires_grad_(True)
    Y = X
    for l in range(2):
        Y = Y + 0.7 * _sdpa_layer(Y, w, l, False)
    G = torch.randn(Y.shape, generator=gen(13), dtype=torch.float64)
    ((Y * G).sum() / math.sqrt(6 * 8)).backward()
    for n in ("W_Q", "W_K", "W_V"):
        torch.testing.assert_close(got[n], w[n].grad.pow(2).sum(dim=(-3, -2, -1)).sqrt())
    assert got["cosine"].shape == (3, 2)


def test_query_key_gradients_vanish_for_identical_tokens():
    X = C.correlated_tokens(4, 6, 8, 1.0, seed=0)
    g = C.qkv_gradient_norms(X, 1, "attention", seed=1)
    assert float(g["W_Q"].max()) < 1e-12 and float(g["W_K"].max()) < 1e-12
    assert float(g["W_V"].min()) > 0.1


# --- (scale, kappa) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("r, kappa", [(0.5, 0.0), (2.0, 0.6), (1.0, 1.0), (0.3, -0.5)])
def test_qk_from_scale_kappa_spectrum(r, kappa):
    W = C.qk_from_scale_kappa(32, r, kappa, seed=3)
    torch.testing.assert_close(W, W.T)
    lam = torch.linalg.eigvalsh(W)
    assert float(lam.mean()) == pytest.approx(kappa * r, abs=1e-10)
    assert float(lam.std(unbiased=False)) == pytest.approx(r * math.sqrt(1 - kappa**2), abs=1e-10)
    assert float((lam.pow(2).mean()).sqrt()) == pytest.approx(r, rel=1e-10)


def test_common_random_numbers_identity():
    B = C.qk_from_scale_kappa(16, 1.0, 0.0, seed=9)
    W = C.qk_from_scale_kappa(16, 0.7, 0.8, seed=9)
    torch.testing.assert_close(W, 0.7 * 0.8 * torch.eye(16, dtype=torch.float64) + 0.7 * 0.6 * B)


def test_qk_pattern_and_scores():
    X, W = randn(5, 4, seed=1), randn(4, 4, seed=2)
    torch.testing.assert_close(C.qk_scores(X, W), X @ W @ X.T / 2)
    torch.testing.assert_close(C.qk_pattern(X, W), torch.softmax(X @ W @ X.T / 2, dim=-1))
    with pytest.raises(ValueError, match="W must be"):
        C.qk_pattern(X, randn(3, 3, seed=0))


def test_make_tokens_norms():
    X = C.make_tokens(3, 20, 5, "random_walk", seed=0, token_norm=2.0)
    torch.testing.assert_close(X.pow(2).sum(-1).mean(-1).sqrt(), torch.full((3,), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="tokens"):
        C.make_tokens(1, 2, 3, "gaussian")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 3])
def test_local_mass_and_localization_brute_force(causal, window):
    T = 7
    A = C.qk_pattern(randn(2, T, 3, seed=4), 3 * torch.eye(3, dtype=torch.float64), causal=causal)
    near = lambda i, j: (0 <= i - j < window) if causal else abs(i - j) < window  # noqa: E731
    for b in range(2):
        mass = sum(float(A[b, i, j]) for i in range(T) for j in range(T) if near(i, j)) / T
        assert float(C.local_mass(A, window, causal)[b]) == pytest.approx(mass, abs=1e-12)
        seen = [(i + 1) if causal else T for i in range(T)]
        base = sum(sum(1 for j in range(T) if near(i, j) and (j <= i or not causal)) / seen[i] for i in range(T)) / T
        assert float(C.localization(A, window, causal)[b]) == pytest.approx(mass / base, abs=1e-12)
    U = torch.ones(T, T, dtype=torch.float64)
    U = (U.tril() if causal else U)
    U = U / U.sum(-1, keepdim=True)
    assert float(C.localization(U, window, causal)) == pytest.approx(1.0, abs=1e-12)


def test_localization_of_the_identity_is_T():
    assert float(C.localization(torch.eye(9, dtype=torch.float64))) == pytest.approx(9.0)


@pytest.mark.parametrize("causal", [False, True])
def test_collapse_map_matches_a_direct_computation(causal):
    scales, kappas = [0.2, 1.5], [0.0, 0.8]
    m = C.collapse_map(scales, kappas, 8, 6, "iid", seeds=(3, 4), n=5, causal=causal, window=2, depth=2)
    assert m["entropy"].shape == (2, 2, 2) and m["residual_per_layer"].shape == (2, 2, 2, 2)
    s, i, k = 1, 1, 1  # seed 4, r = 1.5, kappa = 0.8
    X = C.make_tokens(5, 6, 8, "iid", seed=4)
    W1 = C.qk_from_scale_kappa(8, 1.5, 0.8, seed=4)
    W2 = C.qk_from_scale_kappa(8, 1.5, 0.8, seed=4 + 1000)
    S = X @ W1 @ X.transpose(-2, -1) / math.sqrt(8)
    A = torch.softmax(S.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), -math.inf) if causal else S, dim=-1)
    H = attention_entropy(A, normalize="causal" if causal else "log_T")
    assert float(m["entropy"][s, i, k]) == pytest.approx(float(H), abs=1e-10)
    assert float(m["localization"][s, i, k]) == pytest.approx(float(C.localization(A, 2, causal).mean()), abs=1e-10)
    Y = A @ X
    assert float(m["residual_per_layer"][s, i, k, 0]) == pytest.approx(float(token_residual(Y).mean()), abs=1e-10)
    Y = C.qk_pattern(Y, W2, causal) @ Y
    assert float(m["residual"][s, i, k]) == pytest.approx(float(token_residual(Y).mean()), abs=1e-10)
    keep = torch.ones(6, 6, dtype=torch.bool).tril() if causal else torch.ones(6, 6, dtype=torch.bool)
    assert float(m["logit_rms"][s, i, k]) == pytest.approx(float(S[:, keep].pow(2).mean().sqrt()), rel=1e-10)


def test_collapse_map_limits_and_errors():
    m = C.collapse_map([0.0, 50.0], [1.0], 16, 16, seeds=(0,), n=4)
    assert float(m["entropy"][0, 0, 0]) == pytest.approx(1.0) and float(m["residual"][0, 0, 0]) < 1e-12
    assert float(m["entropy"][0, 1, 0]) < 1e-3 and float(m["localization"][0, 1, 0]) == pytest.approx(16.0, rel=1e-3)
    with pytest.raises(ValueError, match="kappas"):
        C.collapse_map([1.0], [1.5], 4, 4)
    with pytest.raises(ValueError, match="scales"):
        C.collapse_map([-1.0], [0.5], 4, 4)


def test_collapse_regions_codes():
    e = torch.tensor([0.9, 0.1, 0.9, 0.9, 0.1])
    r = torch.tensor([0.1, 0.9, 0.9, 0.9, 0.1])
    loc = torch.tensor([1.0, 50.0, 2.0, 10.0, 50.0])
    assert C.collapse_regions(e, r, loc).tolist() == [0, 1, 2, 3, 0]
    assert len(C.REGIONS) == 4
    with pytest.raises(ValueError, match="same shape"):
        C.collapse_regions(e, r, loc[:2])


def test_attention_weights_do_not_depend_on_drawing_the_mlp():
    with_mlp = C.init_stack(2, 3, 8, mlp=True, seed=5)
    without = C.init_stack(2, 3, 8, mlp=False, seed=5)
    assert "W_1" not in without
    for n in ("W_Q", "W_K", "W_V", "W_O"):
        torch.testing.assert_close(with_mlp[n], without[n])
    with pytest.raises(ValueError, match="MLP weights"):
        C.stack_outputs(randn(2, 4, 8, seed=0), without, "full")


@pytest.mark.parametrize("causal", [False, True])
def test_logit_spread_is_the_within_row_deviation(causal):
    m = C.collapse_map([0.7], [0.3], 6, 5, "random_walk", seeds=(2,), n=3, causal=causal)
    X = C.make_tokens(3, 5, 6, "random_walk", seed=2)
    S = C.qk_scores(X, C.qk_from_scale_kappa(6, 0.7, 0.3, seed=2))
    var = []
    for b in range(3):
        for i in range(5):
            row = S[b, i, : i + 1] if causal else S[b, i]
            var.append(float(row.var(unbiased=False)))
    assert float(m["logit_spread"][0, 0, 0]) == pytest.approx(math.sqrt(sum(var) / len(var)), rel=1e-10)


def test_log_crossing():
    x = [1.0, 10.0, 100.0]
    y = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    got = C.log_crossing(x, y, 0.25)
    assert float(got[0]) == pytest.approx(10 ** 1.5)  # halfway between 0.5 and 0 in log10 x
    assert float(got[1]) == pytest.approx(10 ** 0.25)
    assert math.isnan(float(got[2]))
    assert float(C.log_crossing(x, torch.tensor([1.0, 0.5, 0.0]), 0.5)) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="increasing"):
        C.log_crossing([1.0, 1.0], torch.tensor([0.0, 1.0]), 0.5)


def test_product_basis_is_traceless_unit_scale_and_has_no_diagonal_bias():
    B = C.product_basis(64, seed=0)
    assert abs(float(torch.trace(B))) < 1e-10 and float(B.pow(2).sum() / 64) == pytest.approx(1.0)
    assert not torch.allclose(B, B.T)  # a head's W_Q W_K^T is not symmetric
    # Var x^T W x = tr(W^2) + ||W||_F^2 for x ~ N(0, I): symmetric zero-mean W doubles the diagonal variance,
    # the product does not (tr(B^2) is small against ||B||_F^2)
    sym = C.qk_from_scale_kappa(64, 1.0, 0.0, seed=0)
    for W, ratio in ((sym, 2.0), (B, 1.0)):
        assert float(torch.trace(W @ W) + W.pow(2).sum()) / float(W.pow(2).sum()) == pytest.approx(ratio, abs=0.1)


def test_collapse_map_product_reference_keeps_mean_and_scale_and_agrees_at_kappa_one():
    scales = [0.3, 3.0]
    sym = C.collapse_map(scales, [1.0, 0.0], 16, 16, "iid", seeds=(0,), n=4)
    prod = C.collapse_map(scales, [1.0, 0.0], 16, 16, "iid", seeds=(0,), n=4, reference="product")
    # at kappa = 1 the zero-mean part is multiplied by 0: both references give W = r I
    assert torch.allclose(sym["entropy"][..., 0], prod["entropy"][..., 0])
    assert not torch.allclose(sym["entropy"][..., 1], prod["entropy"][..., 1])
    with pytest.raises(ValueError, match="reference"):
        C.collapse_map(scales, [0.0], 16, 16, "iid", seeds=(0,), n=4, reference="skew")
