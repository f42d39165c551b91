"""qklab.attention against independent computations: PyTorch's fused attention, brute force, and the entmax package."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
import entmax  # test dependency (requirements.txt): an independent sparsemax
from hypothesis import given, settings
from hypothesis import strategies as st

from qklab.attention import attn_scores, causal_mask, output_query_jacobian, pattern, sparsemax


def _values(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_pattern_matches_scaled_dot_product_attention(causal):
    B, H, T, d, d_h = 2, 3, 7, 12, 4
    X, W_Q, W_K, W_V = _values((B, T, d), 0), _values((H, d, d_h), 1), _values((H, d, d_h), 2), _values((H, d, d_h), 3)
    A = pattern(attn_scores(X, W_Q, W_K), causal=causal)  # (B, H, T, T)
    V = X.unsqueeze(1) @ W_V  # (B, H, T, d_h)
    Q, K = X.unsqueeze(1) @ W_Q, X.unsqueeze(1) @ W_K
    expected = F.scaled_dot_product_attention(Q, K, V, is_causal=causal)
    torch.testing.assert_close(A @ V, expected)


def test_scores_single_head_and_explicit_scale():
    X, W_Q, W_K = _values((5, 6), 0), _values((6, 3), 1), _values((6, 3), 2)
    S = attn_scores(X, W_Q, W_K)
    W_QK = W_Q @ W_K.T
    torch.testing.assert_close(S, X @ W_QK @ X.T / math.sqrt(3))
    torch.testing.assert_close(attn_scores(X, W_Q, W_K, scale=1.0), X @ W_QK @ X.T)


def test_only_the_product_W_QK_matters():
    """Two factorisations of the same W_QK give the same scores (chapter 1)."""
    X, W_Q, W_K = _values((6, 8), 0), _values((8, 4), 1), _values((8, 4), 2)
    M = _values((4, 4), 3) + 4 * torch.eye(4, dtype=torch.float64)  # invertible
    S1 = attn_scores(X, W_Q, W_K)
    S2 = attn_scores(X, W_Q @ M, W_K @ torch.linalg.inv(M).T)
    torch.testing.assert_close(S1, S2)


def test_causal_pattern_zero_above_diagonal_and_first_row_one_hot():
    A = pattern(_values((6, 6), 0), causal=True)
    assert torch.all(A.triu(1) == 0)
    assert A[0, 0] == 1


def test_pattern_is_stable_for_large_logits():
    S = torch.tensor([[1e4, 0.0, -1e4], [1e30, 1e30, 0.0]], dtype=torch.float32)
    A = pattern(S)
    assert torch.isfinite(A).all()
    torch.testing.assert_close(A, torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))


def test_pattern_with_key_mask():
    S = _values((3, 4), 0)
    mask = torch.tensor([True, False, True, True])
    A = pattern(S, mask=mask)
    assert torch.all(A[:, 1] == 0)
    torch.testing.assert_close(A[:, [0, 2, 3]], torch.softmax(S[:, [0, 2, 3]], dim=-1))


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 9),
    shift=st.floats(-50, 50),
    seed=st.integers(0, 10_000),
    causal=st.booleans(),
)
def test_pattern_rows_are_distributions_and_shift_invariant(T, shift, seed, causal):
    S = _values((2, T, T), seed) * 5
    A = pattern(S, causal=causal)
    assert torch.all(A >= 0)
    torch.testing.assert_close(A.sum(-1), torch.ones(2, T, dtype=torch.float64))
    torch.testing.assert_close(pattern(S + shift, causal=causal), A)  # softmax ignores row constants


# --- sparsemax ------------------------------------------------------------------------------

def _brute_force_projection(z: torch.Tensor) -> torch.Tensor:
    """Projection onto the simplex by trying every support set (independent of the sort formula)."""
    n = z.shape[0]
    best, best_dist = None, math.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            idx = list(support)
            tau = (z[idx].sum() - 1) / k
            p = torch.zeros_like(z)
            p[idx] = z[idx] - tau
            if torch.all(p >= -1e-12):
                dist = float(((p - z) ** 2).sum())
                if dist < best_dist:
                    best, best_dist = p.clamp_min(0), dist
    return best


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10_000), spread=st.floats(0.01, 10))
def test_sparsemax_is_the_simplex_projection(n, seed, spread):
    z = _values((n,), seed) * spread
    p = sparsemax(z)
    assert torch.all(p >= 0)
    assert abs(float(p.sum()) - 1) < 1e-9
    torch.testing.assert_close(p, _brute_force_projection(z))


def test_sparsemax_known_cases():
    z = torch.tensor([[0.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.5, 0.3, -0.5]])
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.6, 0.4, 0.0]])
    torch.testing.assert_close(sparsemax(z), expected)


def test_sparsemax_along_other_dim_and_masked_keys():
    z = _values((4, 3), 5)
    torch.testing.assert_close(sparsemax(z, dim=0), sparsemax(z.T).T)
    masked = torch.tensor([0.2, -math.inf, 0.1])
    torch.testing.assert_close(sparsemax(masked), torch.tensor([0.55, 0.0, 0.45]))


def test_sparsemax_gradient_matches_its_jacobian():
    """The Jacobian of sparsemax is diag(s) - s s^T / |S| (Martins and Astudillo)."""
    z = torch.tensor([0.9, 0.5, 0.2, -1.0], dtype=torch.float64, requires_grad=True)
    J = torch.autograd.functional.jacobian(sparsemax, z)
    s = (sparsemax(z) > 0).to(torch.float64)
    torch.testing.assert_close(J, torch.diag(s) - torch.outer(s, s) / s.sum())


def test_sparsemax_gradient_at_a_tie_with_the_threshold():
    """z = [1, 0]: p = [1, 0] with the second entry exactly at the threshold. sum(p) = 1 always,
    so its gradient is 0 (autograd through clamp gave [-1, 1])."""
    z = torch.tensor([1.0, 0.0], requires_grad=True)
    sparsemax(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.zeros(2))
    z = torch.tensor([2.0, 1.0, 1.0, 0.5], dtype=torch.float64, requires_grad=True)  # two at the threshold
    J = torch.autograd.functional.jacobian(sparsemax, z)
    torch.testing.assert_close(J, torch.zeros(4, 4, dtype=torch.float64))  # support {0}: 1 - 1 = 0


# --- sparsemax against an independent implementation: the entmax package (Peters, Niculae, Martins) --

def _tied_rows(seed: int, rows: int = 64, n: int = 7) -> torch.Tensor:
    """Rows of half-integers: many ties with each other and entries exactly at the threshold."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 4, (rows, n), generator=g).to(torch.float64) / 2


def _masked_rows(seed: int, rows: int = 64, n: int = 7) -> torch.Tensor:
    """Gaussian rows with about a third of the keys masked (-inf), never a whole row."""
    z = _values((rows, n), seed) * 2
    drop = torch.rand(rows, n, generator=torch.Generator().manual_seed(seed + 1)) < 0.35
    drop[:, 0] = False
    return z.masked_fill(drop, -math.inf)


@pytest.mark.parametrize("make", [_tied_rows, _masked_rows, lambda seed: _values((64, 7), seed) * 3])
def test_sparsemax_forward_and_gradient_match_entmax(make):
    for seed in range(3):
        z = make(seed)
        z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
        p, q = sparsemax(z1), entmax.sparsemax(z2, dim=-1)
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
        g = _values(z.shape, seed + 100)  # a random upstream gradient: a vector-Jacobian product
        (p * g).sum().backward()
        (q * g).sum().backward()
        torch.testing.assert_close(z1.grad, z2.grad, atol=1e-12, rtol=0)
        assert torch.isfinite(z1.grad).all()


def test_tied_rows_really_hit_the_threshold():
    """The tie test above is only a test if some entries sit exactly at the threshold."""
    z = _tied_rows(0)
    p = sparsemax(z)
    tau = (z - p).masked_fill(p == 0, -math.inf).amax(-1, keepdim=True)  # z_j - p_j on the support
    at_threshold = (p == 0) & (z == tau)
    assert int(at_threshold.sum()) > 5


@pytest.mark.parametrize("offset", [1e3, 1e5, 1e6, -1e5])
def test_sparsemax_float32_with_a_large_common_offset(offset):
    """Rows shifted by a common offset: sparsemax is shift-invariant, so float32 must not drift.
    The reference is float64 on the same float32 inputs with the offset removed exactly."""
    z = (_values((32, 9), 7) + offset).to(torch.float32)  # the float32 inputs
    reference = entmax.sparsemax((z.to(torch.float64) - offset), dim=-1)
    p = sparsemax(z)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.to(torch.float64), reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(p, entmax.sparsemax(z, dim=-1), atol=1e-6, rtol=0)


def test_sparsemax_gradcheck_float64():
    """Finite differences in float64, away from ties (gradcheck needs a differentiable point)."""
    for z in (_values((3, 6), 11) * 2, _masked_rows(12, rows=3, n=6)):
        z = z.clone().requires_grad_()
        assert torch.autograd.gradcheck(sparsemax, (z,), eps=1e-6, atol=1e-8)
        assert torch.autograd.gradcheck(lambda x: sparsemax(x, dim=0), (z[:, :1].clone().detach().requires_grad_(),))


# --- bad input ------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    X, W = torch.randn(4, 6), torch.randn(6, 2)
    with pytest.raises(ValueError, match="X has width 5"):
        attn_scores(torch.randn(4, 5), W, W)
    with pytest.raises(ValueError, match="same shape"):
        attn_scores(X, W, torch.randn(6, 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        attn_scores(torch.randn(6), W, W)
    with pytest.raises(TypeError, match="floating-point"):
        attn_scores(torch.ones(4, 6, dtype=torch.long), W, W)
    with pytest.raises(ValueError, match="NaN"):
        attn_scores(X.masked_fill(X > 1, float("nan")) if (X > 1).any() else X / 0 * 0, W, W)
    with pytest.raises(ValueError, match="inf"):
        pattern(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="square"):
        pattern(torch.randn(3, 4), causal=True)
    with pytest.raises(ValueError, match="no key"):
        pattern(torch.randn(2, 2), mask=torch.tensor([False, False]))
    with pytest.raises(TypeError, match="boolean"):
        pattern(torch.randn(2, 2), mask=torch.ones(2))
    with pytest.raises(ValueError, match="empty"):
        pattern(torch.randn(0, 0))
    with pytest.raises(ValueError, match="positive"):
        causal_mask(0)
    with pytest.raises(ValueError, match="NaN"):
        sparsemax(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="-inf"):
        sparsemax(torch.tensor([-math.inf, -math.inf]))


# --- output_query_jacobian (chapter 5) ------------------------------------------------------------

def _autograd_jacobian(q, K, V):
    """d o / d q by autograd through o = softmax(K q / sqrt(d_h)) V, one query at a time."""
    out = lambda q_: torch.softmax(K @ q_ / math.sqrt(K.shape[-1]), dim=-1) @ V  # noqa: E731
    return torch.autograd.functional.jacobian(out, q)


@pytest.mark.parametrize("T, d_h, d_v, q_scale", [(7, 4, 3, 1.0), (5, 5, 5, 0.0), (9, 3, 6, 20.0), (1, 2, 2, 1.0)])
def test_output_query_jacobian_matches_autograd(T, d_h, d_v, q_scale):
    q, K, V = q_scale * _values((d_h,), 40 + T), _values((T, d_h), 41 + T), _values((T, d_v), 42 + T)
    a = torch.softmax(K @ q / math.sqrt(d_h), dim=-1)
    J = output_query_jacobian(a, K, V)
    assert J.shape == (d_v, d_h)
    torch.testing.assert_close(J, _autograd_jacobian(q, K, V), atol=1e-12, rtol=1e-9)


def test_output_query_jacobian_batched_and_zero_at_both_collapses():
    q, K, V = _values((2, 3, 4), 50), _values((2, 3, 6, 4), 51), _values((2, 3, 6, 5), 52)
    a = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / 2.0, dim=-1)
    J = output_query_jacobian(a, K, V)
    for b, h in itertools.product(range(2), range(3)):
        torch.testing.assert_close(J[b, h], _autograd_jacobian(q[b, h], K[b, h], V[b, h]), atol=1e-12, rtol=1e-9)
    same_keys = _values((1, 4), 53).expand(6, 4)  # rank collapse: every key alike
    assert float(output_query_jacobian(torch.full((6,), 1 / 6, dtype=torch.float64), same_keys, V[0, 0]).abs().max()) < 1e-15
    one_hot = torch.nn.functional.one_hot(torch.tensor(2), 6).to(torch.float64)  # entropy collapse
    assert float(output_query_jacobian(one_hot, K[0, 0], V[0, 0]).abs().max()) == 0.0


def test_output_query_jacobian_rejects_bad_input():
    K, V = _values((4, 3), 60), _values((4, 2), 61)
    with pytest.raises(ValueError, match="same number of keys"):
        output_query_jacobian(torch.full((5,), 0.2, dtype=torch.float64), K, V)
    with pytest.raises(ValueError, match="summing to 1"):
        output_query_jacobian(torch.ones(4, dtype=torch.float64), K, V)
