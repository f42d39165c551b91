"""Self-attention scores and patterns, written out in full (chapters 1 and 7).

What is here: the attention scores `S = X W_Q (X W_K)^T / sqrt(d_h)` (`attn_scores`), the row
softmax with an optional causal mask (`pattern`), and sparsemax, the piecewise-linear stand-in
for softmax used by the localization analysis (`sparsemax`), and the derivative of one query's
output with respect to that query (`output_query_jacobian`, chapter 5).

What is not here: value/output projections, multi-layer models and the fast fused path used for
training; those live in `qklab.model`. Names follow TransformerLens (`attn_scores`, `pattern`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qklab._validate import as_float_tensor

__all__ = ["attn_scores", "pattern", "causal_mask", "sparsemax", "output_query_jacobian"]


def attn_scores(X: Tensor, W_Q: Tensor, W_K: Tensor, scale: float | None = None) -> Tensor:
    """Attention scores (logits) `S = (X W_Q)(X W_K)^T * scale`.

    Chapter 1 (`chapters/01_bilinear_form`): `S_ij = x_i^T W_QK x_j / sqrt(d_h)` with
    `W_QK = W_Q W_K^T`; only the product `W_QK` matters, not its factors.

    Args:
        X: token representations, `(..., T, d)`.
        W_Q, W_K: projections, `(d, d_h)` for one head or `(H, d, d_h)` for `H` heads.
        scale: multiplies the scores; default `1/sqrt(d_h)`. Must be finite.

    Returns:
        `(..., T, T)` for one head, `(..., H, T, T)` for a stack of heads. Row `i` holds the
        scores of query `i` against every key `j`.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    W_Q = as_float_tensor(W_Q, "W_Q", min_ndim=2)
    W_K = as_float_tensor(W_K, "W_K", min_ndim=2)
    if W_Q.shape != W_K.shape:
        raise ValueError(f"W_Q and W_K must have the same shape, got {tuple(W_Q.shape)} and {tuple(W_K.shape)}")
    if W_Q.ndim > 3:
        raise ValueError(f"W_Q must be (d, d_h) or (H, d, d_h), got shape {tuple(W_Q.shape)}")
    d, d_h = W_Q.shape[-2:]
    if X.shape[-1] != d:
        raise ValueError(f"X has width {X.shape[-1]} but W_Q expects d = {d} (X: {tuple(X.shape)}, W_Q: {tuple(W_Q.shape)})")
    if scale is None:
        scale = 1.0 / math.sqrt(d_h)
    elif not math.isfinite(float(scale)):
        raise ValueError(f"scale must be finite, got {scale}")
    if W_Q.ndim == 3:
        X = X.unsqueeze(-3)  # (..., 1, T, d): broadcast over the H heads
    Q = X @ W_Q  # (..., [H,] T, d_h)
    K = X @ W_K  # (..., [H,] T, d_h)
    return (Q @ K.transpose(-2, -1)) * scale  # (..., [H,] T, T)


def causal_mask(T: int, device: torch.device | None = None) -> Tensor:
    """Boolean `(T, T)` mask, True where query `i` may attend to key `j` (that is, `j <= i`)."""
    if T <= 0:
        raise ValueError(f"sequence length T must be positive, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def _masked(scores: Tensor, causal: bool, mask: Tensor | None) -> Tensor:
    """Scores with disallowed entries set to -inf; checks that no row is fully masked."""
    keep = None
    if causal:
        if scores.shape[-1] != scores.shape[-2]:
            raise ValueError(f"a causal mask needs square scores (T, T), got {tuple(scores.shape)}")
        keep = causal_mask(scores.shape[-1], scores.device)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean (True = may attend), got dtype {mask.dtype}")
        try:
            keep = mask if keep is None else keep & mask
            torch.broadcast_shapes(keep.shape, scores.shape)
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to scores {tuple(scores.shape)}") from err
    if keep is None:
        return scores
    if not bool(keep.any(dim=-1).all()):
        raise ValueError("the mask leaves at least one query row with no key to attend to")
    return scores.masked_fill(~keep, float("-inf"))


def pattern(scores: Tensor, causal: bool = False, mask: Tensor | None = None) -> Tensor:
    """Attention pattern `A = softmax_row(S + mask)`: each row is a probability vector.

    Chapter 1: `A_ij = exp(S_ij) / sum_k exp(S_ik)` over the keys `k` that query `i` may see.
    Numerically stable (the row maximum is subtracted before exponentiating), so logits of
    size 1e4 give a one-hot row instead of NaN.

    Args:
        scores: `(..., T_q, T_k)` attention scores.
        causal: if True, query `i` sees only keys `j <= i` (needs `T_q == T_k`).
        mask: optional boolean mask broadcastable to `scores`, True where attending is allowed.

    Returns:
        `(..., T_q, T_k)`, rows non-negative and summing to 1; masked entries are exactly 0.
    """
    scores = as_float_tensor(scores, "scores", min_ndim=2)
    z = _masked(scores, causal, mask)
    z = z - z.amax(dim=-1, keepdim=True)  # the largest entry of every row becomes 0
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


class _Sparsemax(torch.autograd.Function):
    """Sparsemax over the last axis with the Jacobian of Martins and Astudillo on the support.

    Autograd through `clamp(z - zeta, min=0)` is wrong at a tie with the threshold: an entry with
    `z_j == zeta` has `p_j = 0` but `clamp` passes its gradient, so for `z = [1, 0]` the gradient of
    `sum(p)` came out as `[-1, 1]` instead of `0`. Here the backward pass uses the support
    `S = {j : p_j > 0}` explicitly: `dp/dz = diag(s) - s s^T / |S|`.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # z: (..., n), finite or -inf, no row all -inf
        n = z.shape[-1]
        # Subtract the row maximum first: the cumulative sum then adds numbers of the size of the
        # spread of the row, not of its offset (in float32 at offset 1e5 the threshold drifted by 8e-3).
        z = z - z.amax(dim=-1, keepdim=True)
        z_sorted = z.sort(dim=-1, descending=True).values
        masked = torch.isneginf(z_sorted)
        finite_sorted = z_sorted.masked_fill(masked, 0.0)
        cumsum = finite_sorted.cumsum(dim=-1)
        k = torch.arange(1, n + 1, device=z.device, dtype=z.dtype)
        # Entry k of the sorted row is in the support iff 1 + k z_(k) > sum_{j <= k} z_(j).
        in_support = (1 + k * finite_sorted > cumsum) & ~masked
        support_size = in_support.sum(dim=-1, keepdim=True)  # >= 1: the largest entry always qualifies
        zeta = (cumsum.gather(-1, support_size - 1) - 1) / support_size.to(z.dtype)  # the threshold
        p = torch.clamp(z - zeta, min=0.0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad_p: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        s = (p > 0).to(grad_p.dtype)  # support indicator; an entry exactly at the threshold is out
        mean_on_support = (grad_p * s).sum(dim=-1, keepdim=True) / s.sum(dim=-1, keepdim=True)
        return s * (grad_p - mean_on_support)


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """Sparsemax (Martins and Astudillo 2016): the Euclidean projection of `z` onto the simplex.

    Chapter 7 (`chapters/07_localization`): `sparsemax(z) = argmin_{p in simplex} ||p - z||^2`,
    in closed form `p_j = max(z_j - zeta, 0)` with the threshold `zeta` (chapter 7's symbol) chosen
    so that `p` sums to 1. It is piecewise linear, so a key either lies in the *support*
    (`p_j > 0`) and passes signal forward and gradient backward, or it does not. The gradient is the Jacobian
    `diag(s) - s s^T / |S|`, `s` the support indicator, with an entry exactly at the threshold
    counted outside the support (as in the `entmax` package). The row maximum is subtracted
    before the threshold is computed, so a large common offset does not cost precision.

    Args:
        z: scores, any shape with at least one dimension.
        dim: the axis that is projected onto the simplex.

    Returns:
        `p`, the shape of `z`, non-negative and summing to 1 along `dim`.

    Entries equal to `-inf` (masked keys) get probability 0; NaN and `+inf` are rejected.
    """
    z = as_float_tensor(z, "z", min_ndim=1, finite=False)
    if bool(torch.isnan(z).any()) or bool(torch.isposinf(z).any()):
        raise ValueError("z contains NaN or +inf; sparsemax accepts finite values and -inf (masked)")
    if z.shape[dim] == 0:
        raise ValueError(f"z has no entries along dim {dim} (shape {tuple(z.shape)})")
    z = z.movedim(dim, -1)
    if bool(torch.isneginf(z).all(dim=-1).any()):
        raise ValueError("every entry of some row of z is -inf; there is nothing to project")
    return _Sparsemax.apply(z).movedim(-1, dim)


def output_query_jacobian(a: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """`d o / d q` for one query: `o = sum_j a_j v_j`, `a = softmax(K q / sqrt(d_h))` (chapter 5).

    Chapter 5 (`chapters/05_two_collapses`): the derivative is a covariance, under the attention
    distribution `a`, between the values and the keys,
    `(1/sqrt(d_h)) sum_j a_j v_j (k_j - k_bar)^T` with `k_bar = sum_l a_l k_l`. It vanishes when
    the keys the query sees are identical (rank collapse: nothing to tell apart) and when `a` is
    one-hot (entropy collapse: nothing left to move), which is why both collapses stall the
    training of `W_Q` (and, by the symmetric argument, of `W_K`).

    Args:
        a: the query's attention weights, `(..., T)`, non-negative, summing to 1.
        K: the keys, `(..., T, d_h)`. V: the values, `(..., T, d_v)`.

    Returns:
        `(..., d_v, d_h)`: entry `(c, e)` is `d o_c / d q_e`.
    """
    a = as_float_tensor(a, "a", min_ndim=1)
    K = as_float_tensor(K, "K", min_ndim=2)
    V = as_float_tensor(V, "V", min_ndim=2)
    T = a.shape[-1]
    if K.shape[-2] != T or V.shape[-2] != T:
        raise ValueError(f"a, K and V must have the same number of keys T: a {tuple(a.shape)}, K {tuple(K.shape)}, V {tuple(V.shape)}")
    if bool((a < -1e-12).any()) or not torch.allclose(a.sum(-1), torch.ones((), dtype=a.dtype), atol=1e-6):
        raise ValueError("a must hold attention weights: non-negative, summing to 1 over its last axis")
    w = a.unsqueeze(-1)  # (..., T, 1)
    k_bar = (w * K).sum(dim=-2, keepdim=True)  # (..., 1, d_h): the a-weighted mean key
    return (w * V).transpose(-2, -1) @ (K - k_bar) / math.sqrt(K.shape[-1])  # (..., d_v, d_h)
