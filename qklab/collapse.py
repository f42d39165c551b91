"""Rank collapse with depth, and where rank and entropy collapse live on the (scale, kappa) map.

Chapters 3 (`chapters/03_rank_collapse`), 5 (`chapters/05_two_collapses`) and 8
(`chapters/08_resolving_the_contradiction`). Everything here is a pure function: parameters in,
tensors out, every random draw from a local `torch.Generator` seeded by `seed`, so the explorers
(`qklab.explore`) and the tests can call the same code as the book.

What is here:

- random-init stacks of attention layers (`init_stack`, `stack_outputs`, `depth_residuals`) in four
  variants, as in Dong et al. (2021): pure attention, attention with skip connections, attention
  followed by an MLP, and the full post-LN block; and the single-head stack with explicit weights
  that chapter 3's exercise writes (`attention_stack_residuals`);
- products of random row-stochastic matrices (`random_stochastic`, `running_products`,
  `product_residuals`) and Dobrushin's contraction coefficient (`dobrushin_coefficient`,
  `row_spread`), the classical reason those products lose rank;
- gradients of `W_Q`, `W_K`, `W_V` at initialisation by autograd (`qkv_gradient_norms`), and tokens
  with a chosen pairwise cosine (`correlated_tokens`), for the observation of Noci et al. (2022)
  that query and key gradients vanish under rank collapse;
- one-layer attention with a symmetric `W_QK` of prescribed scale `r` and concentration `kappa`
  (`qk_from_scale_kappa`, `qk_pattern`), the localization measures `local_mass` and
  `localization`, and `collapse_map`, which sweeps `(r, kappa)` and returns normalised entropy,
  relative token residual and localization for every seed, and `collapse_regions`, which labels
  a map with the course's collapse thresholds (`THRESHOLDS`).

What is not here: the metrics themselves (`qklab.metrics`), matrices with a prescribed spectrum
(`qklab.spectrum`), token models (`qklab.theory`), trained models (`qklab.model`).

Conventions. Scores of the random stacks are `X W_Q (X W_K)^T / sqrt(d_h)`; scores of the
`(r, kappa)` experiments are `X W_QK X^T / sqrt(d)` (`W_QK` is `d x d`, so `d_h = d`). The token
residual is `qklab.metrics.token_residual` (token mean, composite norm `sqrt(||.||_1 ||.||_inf)`
unless `norm="fro"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from qklab._validate import as_float_tensor, check_positive_int
from qklab.attention import pattern
from qklab.metrics import attention_entropy, token_cosine, token_residual
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens, random_walk_tokens

__all__ = [
    "BLOCKS",
    "product_basis",
    "init_stack",
    "stack_outputs",
    "depth_residuals",
    "attention_stack_residuals",
    "random_stochastic",
    "running_products",
    "product_residuals",
    "dobrushin_coefficient",
    "row_spread",
    "correlated_tokens",
    "qkv_gradient_norms",
    "qk_from_scale_kappa",
    "qk_scores",
    "qk_pattern",
    "make_tokens",
    "local_mass",
    "localization",
    "collapse_map",
    "log_crossing",
    "THRESHOLDS",
    "REGIONS",
    "collapse_regions",
]

Block = Literal["attention", "skip", "mlp", "full"]
Norm = Literal["l1inf", "fro"]
Tokens = Literal["iid", "random_walk"]
BLOCKS: tuple[str, ...] = ("attention", "skip", "mlp", "full")


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed)) if seed is not None else g.seed()
    return g


def _check_block(block: str) -> str:
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    return block


def _as_batch(X: object, name: str = "X") -> tuple[Tensor, bool]:
    """`X` as `(B, T, d)`; the flag says whether a single `(T, d)` sequence was given."""
    X = as_float_tensor(X, name, min_ndim=2)
    if X.ndim == 2:
        return X.unsqueeze(0), True  # (1, T, d)
    if X.ndim != 3:
        raise ValueError(f"{name} must be (T, d) or (B, T, d), got shape {tuple(X.shape)}")
    return X, False


# --- random-init stacks (chapter 3) -----------------------------------------------------------------

def init_stack(
    batch: int,
    depth: int,
    d: int,
    *,
    n_heads: int = 1,
    qk_gain: float = 1.0,
    mlp: bool = True,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, Tensor]:
    """Weights of `batch` independent random networks of `depth` layers (chapter 3).

    Every entry is Gaussian with mean 0; the variances keep token norms about constant at init:

    - `W_Q`, `W_K`: `(batch, depth, H, d, d_h)`, variance `qk_gain^2 / d`, so that the scores
      `q . k / sqrt(d_h)` of tokens with `|x|^2 ~ d` have standard deviation about `qk_gain^2`;
    - `W_V`: `(batch, depth, H, d, d_h)`, variance `1/d`; `W_O`: `(batch, depth, H, d_h, d)`,
      variance `1/d`;
    - with `mlp=True`, the MLP (ReLU, width `4d`, no bias): `W_1` `(batch, depth, d, 4d)` with
      variance `2/d` (He) and `W_2` `(batch, depth, 4d, d)` with variance `1/(4d)`.

    `d_h = d / n_heads` (must divide). The attention weights and the MLP weights come from two
    generators (seeded `seed` and `seed + 1`), so the attention weights of a seed are the same
    whether or not the MLP is drawn: the four variants of chapter 3's figure differ only in how
    the layers are wired.
    """
    batch, depth, d, n_heads = (check_positive_int(v, n) for v, n in ((batch, "batch"), (depth, "depth"), (d, "d"), (n_heads, "n_heads")))
    if d % n_heads:
        raise ValueError(f"n_heads = {n_heads} must divide d = {d}")
    if not (math.isfinite(qk_gain) and qk_gain >= 0):
        raise ValueError(f"qk_gain must be finite and >= 0, got {qk_gain}")
    d_h = d // n_heads
    g_attn = _generator(seed)
    g_mlp = _generator(None if seed is None else seed + 1)

    def normal(g: torch.Generator, shape: tuple[int, ...], var: float) -> Tensor:
        return torch.randn(shape, generator=g, dtype=dtype) * math.sqrt(var)

    head_shape = (batch, depth, n_heads, d, d_h)
    weights = {
        "W_Q": normal(g_attn, head_shape, qk_gain**2 / d),
        "W_K": normal(g_attn, head_shape, qk_gain**2 / d),
        "W_V": normal(g_attn, head_shape, 1.0 / d),
        "W_O": normal(g_attn, (batch, depth, n_heads, d_h, d), 1.0 / d),
    }
    if mlp:
        weights["W_1"] = normal(g_mlp, (batch, depth, d, 4 * d), 2.0 / d)
        weights["W_2"] = normal(g_mlp, (batch, depth, 4 * d, d), 1.0 / (4 * d))
    return weights


def _self_attention(X: Tensor, w: dict[str, Tensor], layer: int, causal: bool) -> Tensor:
    """Multi-head attention of layer `layer`: `sum_h A_h X W_V^h W_O^h`, `X: (B, T, d)`."""
    W_Q, W_K = w["W_Q"][:, layer], w["W_K"][:, layer]  # (B, H, d, d_h)
    d_h = W_Q.shape[-1]
    Xh = X.unsqueeze(1)  # (B, 1, T, d): broadcast over heads
    scores = (Xh @ W_Q) @ (Xh @ W_K).transpose(-2, -1) / math.sqrt(d_h)  # (B, H, T, T)
    A = pattern(scores, causal=causal)
    Z = A @ (Xh @ w["W_V"][:, layer])  # (B, H, T, d_h)
    return (Z @ w["W_O"][:, layer]).sum(dim=1)  # (B, T, d): heads summed


def _mlp(X: Tensor, w: dict[str, Tensor], layer: int) -> Tensor:
    return torch.relu(X @ w["W_1"][:, layer]) @ w["W_2"][:, layer]  # (B, T, d)


def _layer_norm(X: Tensor) -> Tensor:
    return F.layer_norm(X, X.shape[-1:])  # per token, no learned gain or bias


def stack_outputs(
    X: Tensor, weights: dict[str, Tensor], block: Block = "attention", causal: bool = False, branch_scale: float = 1.0
) -> list[Tensor]:
    """Token representations after each layer of a random stack (chapter 3).

    Blocks (`SA` = multi-head self-attention, `MLP` = ReLU MLP, `LN` = layer norm, no gain/bias):

    - `"attention"`: `X <- SA(X)` (pure attention, Dong et al.'s SAN);
    - `"skip"`: `X <- X + SA(X)`;
    - `"mlp"`: `X <- MLP(SA(X))` (no skip);
    - `"full"`: `X <- LN(X + SA(X))`, then `X <- LN(X + MLP(X))` (post-LN transformer block).

    With `branch_scale = alpha`, the residual branches of `"skip"` and `"full"` are multiplied by
    `alpha` (`X + alpha SA(X)`), the remedy Noci et al. (2022) discuss (`alpha ~ 1/sqrt(depth)`).

    Args:
        X: `(B, T, d)` inputs, sequence `b` goes through network `b` of `weights` (`init_stack`).
        weights: from `init_stack(B, depth, d, ...)`.
        causal: causal mask in every attention layer.
        branch_scale: multiplier of the residual branches (ignored by `"attention"` and `"mlp"`).

    Returns:
        `[X_0, X_1, ..., X_depth]`, each `(B, T, d)`; `X_0` is the input.
    """
    _check_block(block)
    X, _ = _as_batch(X)
    B, depth = weights["W_Q"].shape[:2]
    if block in ("mlp", "full") and "W_1" not in weights:
        raise ValueError(f"block {block!r} needs MLP weights: draw them with init_stack(..., mlp=True)")
    if X.shape[0] != B:
        raise ValueError(f"X holds {X.shape[0]} sequences but the weights hold {B} networks")
    if X.shape[-1] != weights["W_Q"].shape[-2]:
        raise ValueError(f"X has width {X.shape[-1]} but the weights expect d = {weights['W_Q'].shape[-2]}")
    if not (math.isfinite(branch_scale) and branch_scale >= 0):
        raise ValueError(f"branch_scale must be finite and >= 0, got {branch_scale}")
    a = float(branch_scale)
    X = X.to(weights["W_Q"].dtype)
    outs = [X]
    for layer in range(depth):
        if block == "attention":
            X = _self_attention(X, weights, layer, causal)
        elif block == "skip":
            X = X + a * _self_attention(X, weights, layer, causal)
        elif block == "mlp":
            X = _mlp(_self_attention(X, weights, layer, causal), weights, layer)
        else:  # "full"
            X = _layer_norm(X + a * _self_attention(X, weights, layer, causal))
            X = _layer_norm(X + a * _mlp(X, weights, layer))
        outs.append(X)
    return outs


def depth_residuals(
    X: Tensor,
    depth: int,
    block: Block = "attention",
    causal: bool = False,
    seed: int | None = None,
    *,
    n_heads: int = 1,
    qk_gain: float = 1.0,
    branch_scale: float = 1.0,
    norm: Norm = "l1inf",
) -> Tensor:
    """Relative token residual after each layer of random-init stacks (chapter 3, Dong et al.'s figure).

    `res_l = ||X_l - 1 xbar_l^T|| / ||X_l||` (`qklab.metrics.token_residual`), for `l = 0..depth`.

    Args:
        X: `(T, d)` or `(B, T, d)`; each of the `B` sequences goes through its own network, drawn
            by `init_stack(B, depth, d, n_heads=..., qk_gain=..., seed=seed)` (the MLP weights only
            for the blocks that use them), so the spread over
            the batch is the spread over random networks and inputs.
        depth: number of layers; block: `"attention"`, `"skip"`, `"mlp"` or `"full"` (`stack_outputs`).
        causal: causal mask in every layer.
        n_heads, qk_gain: see `init_stack`; branch_scale: see `stack_outputs`.
        norm: `"l1inf"` (Dong et al.'s composite norm) or `"fro"`.

    Returns:
        `(B, depth + 1)` (or `(depth + 1,)` for a single sequence); column 0 is the input.
    """
    _check_block(block)
    Xb, single = _as_batch(X)
    depth = check_positive_int(depth, "depth")
    w = init_stack(Xb.shape[0], depth, Xb.shape[-1], n_heads=n_heads, qk_gain=qk_gain, mlp=block in ("mlp", "full"), seed=seed)
    with torch.no_grad():
        outs = stack_outputs(Xb, w, block, causal, branch_scale)
        res = torch.stack([token_residual(o, norm=norm) for o in outs], dim=-1)  # (B, depth + 1)
    return res[0] if single else res


def attention_stack_residuals(
    X: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, causal: bool = False, norm: Norm = "l1inf"
) -> Tensor:
    """Relative residual of a single-head pure-attention stack with given weights (chapter 3 exercise).

    Layer `l`: `X <- softmax_row(X W_Q[l] (X W_K[l])^T / sqrt(d_h) + mask) X W_V[l]`.

    Args:
        X: `(..., T, d)`. W_Q, W_K: `(L, d, d_h)`. W_V: `(L, d, d)` (keeps the width `d`).

    Returns:
        `(..., L + 1)`: the relative token residual of the input and after each layer.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    W_Q = as_float_tensor(W_Q, "W_Q", ndim=3)
    W_K = as_float_tensor(W_K, "W_K", ndim=3)
    W_V = as_float_tensor(W_V, "W_V", ndim=3)
    if W_Q.shape != W_K.shape or W_Q.shape[:2] != W_V.shape[:2] or W_V.shape[-1] != W_V.shape[-2]:
        raise ValueError(
            f"expected W_Q, W_K (L, d, d_h) and W_V (L, d, d), got {tuple(W_Q.shape)}, {tuple(W_K.shape)}, {tuple(W_V.shape)}"
        )
    if X.shape[-1] != W_Q.shape[1]:
        raise ValueError(f"X has width {X.shape[-1]} but the weights expect d = {W_Q.shape[1]}")
    d_h = W_Q.shape[-1]
    res = [token_residual(X, norm=norm)]
    for l in range(W_Q.shape[0]):
        S = (X @ W_Q[l]) @ (X @ W_K[l]).transpose(-2, -1) / math.sqrt(d_h)  # (..., T, T)
        X = pattern(S, causal=causal) @ X @ W_V[l]  # (..., T, d)
        res.append(token_residual(X, norm=norm))
    return torch.stack(res, dim=-1)


# --- products of stochastic matrices (chapter 3) ---------------------------------------------------

def random_stochastic(
    shape: Sequence[int] | int, T: int, logit_std: float = 1.0, causal: bool = False, seed: int | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Random row-stochastic matrices `softmax_row(logit_std * G + mask)`, `G` standard Gaussian.

    Chapter 3. Returns `(*shape, T, T)`; with `causal=True` they are lower triangular (row `i`
    sees keys `j <= i`), like attention patterns under a causal mask.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    for s in shape:
        check_positive_int(s, "shape")
    T = check_positive_int(T, "T")
    if not (math.isfinite(logit_std) and logit_std >= 0):
        raise ValueError(f"logit_std must be finite and >= 0, got {logit_std}")
    G = torch.randn(*shape, T, T, generator=_generator(seed), dtype=dtype)
    return pattern(logit_std * G, causal=causal)


def running_products(A: Tensor) -> Tensor:
    """Running products `P_l = A_l A_{l-1} ... A_1` of a sequence of matrices (chapter 3).

    Args:
        A: `(..., L, T, T)`, `A[..., l - 1, :, :]` being `A_l`, the matrix of layer `l`.

    Returns:
        `(..., L, T, T)`; entry `l - 1` is `P_l`, so that `P_l X` is the output of `l` linear
        mixing layers applied to `X` (layer 1 first).
    """
    A = as_float_tensor(A, "A", min_ndim=3)
    if A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must hold square matrices (..., L, T, T), got {tuple(A.shape)}")
    P = A[..., 0, :, :]
    out = [P]
    for l in range(1, A.shape[-3]):
        P = A[..., l, :, :] @ P  # the new layer acts after the previous ones
        out.append(P)
    return torch.stack(out, dim=-3)


def product_residuals(X: Tensor, A: Tensor, norm: Norm = "l1inf") -> Tensor:
    """Relative token residual of `P_l X` for `l = 0..L` (`P_0 = I`), chapter 3.

    Args:
        X: `(..., T, d)` tokens; A: `(..., L, T, T)` stochastic matrices (broadcast with `X`).

    Returns:
        `(..., L + 1)`.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    P = running_products(A)  # (..., L, T, T)
    if P.shape[-1] != X.shape[-2]:
        raise ValueError(f"A mixes {P.shape[-1]} tokens but X has T = {X.shape[-2]}")
    Y = P @ X.unsqueeze(-3)  # (..., L, T, d)
    return torch.cat([token_residual(X, norm=norm).unsqueeze(-1), token_residual(Y, norm=norm)], dim=-1)


def dobrushin_coefficient(A: Tensor) -> Tensor:
    """Dobrushin's ergodicity coefficient `delta(A) = max_{i,i'} ||A_i - A_i'||_1 / 2`, `(...)`.

    Chapter 3. For a row-stochastic `A` it lies in `[0, 1]`; 0 iff all rows are equal (uniform
    attention gives 0), and `delta(A) = 1 - min_{i,i'} sum_j min(A_ij, A_i'j)`. Classical fact
    (Dobrushin 1956, see Seneta's *Non-negative Matrices and Markov Chains*): for every column
    `y`, `max(Ay) - min(Ay) <= delta(A) (max(y) - min(y))`, so `row_spread(A X) <= delta(A)
    row_spread(X)` and products of matrices with `delta < 1` drive the tokens together.
    """
    A = as_float_tensor(A, "A", min_ndim=2)
    diff = (A.unsqueeze(-2) - A.unsqueeze(-3)).abs().sum(dim=-1)  # (..., T, T): ||A_i - A_i'||_1
    return diff.amax(dim=(-2, -1)) / 2


def row_spread(X: Tensor) -> Tensor:
    """`max_k (max_i X_ik - min_i X_ik)`, `(...)`: the largest spread of a feature over tokens (chapter 3)."""
    X = as_float_tensor(X, "X", min_ndim=2)
    return (X.amax(dim=-2) - X.amin(dim=-2)).amax(dim=-1)


# --- query/key gradients under collapse (chapter 3, Noci et al.) ------------------------------------

def correlated_tokens(
    n: int, T: int, d: int, rho: float, seed: int | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Tokens `x_i = sqrt(rho) z + sqrt(1 - rho) e_i`, `z, e_i ~ N(0, I_d)`: `(n, T, d)` (chapter 3).

    One shared direction `z` per sequence; the expected pairwise cosine is about `rho` for
    large `d` (`rho = 1`: all tokens equal, complete rank collapse; `rho = 0`: i.i.d. tokens).
    Chapter 3 writes this cosine as xi (rho is a regulariser strength in the book).
    """
    if not (0.0 <= rho <= 1.0):
        raise ValueError(f"rho must lie in [0, 1], got {rho}")
    n, T, d = (check_positive_int(v, name) for v, name in ((n, "n"), (T, "T"), (d, "d")))
    g = _generator(seed)
    z = torch.randn(n, 1, d, generator=g, dtype=dtype)
    e = torch.randn(n, T, d, generator=g, dtype=dtype)
    return math.sqrt(rho) * z + math.sqrt(1.0 - rho) * e  # (n, T, d)


def qkv_gradient_norms(
    X: Tensor,
    depth: int,
    block: Block = "attention",
    causal: bool = False,
    seed: int | None = None,
    *,
    n_heads: int = 1,
    qk_gain: float = 1.0,
    branch_scale: float = 1.0,
) -> dict[str, Tensor]:
    """Gradient norms of `W_Q`, `W_K`, `W_V` per layer at init, by autograd (chapter 3, Noci et al.).

    The networks are those of `depth_residuals` (same seed, same weights). The loss is a random
    linear read-out of the last layer, `L = sum_b <X_depth[b], G_b> / sqrt(T d)` with `G` standard
    Gaussian (drawn from `seed + 2`), so every network gets its own gradient and nothing depends
    on a task. If all tokens entering a layer are equal, its output `A X W_V` does not depend on
    `A`, so the gradients of its `W_Q` and `W_K` are exactly zero.

    Args:
        X: `(T, d)` or `(B, T, d)`, one network per sequence.

    Returns:
        Dictionary with keys `"W_Q"`, `"W_K"`, `"W_V"` (the `(B, depth)` Frobenius norms of
        the gradients) and `"cosine"` (the `(B, depth)` token cosine of each layer's input),
        without the batch dimension for a single sequence.
    """
    _check_block(block)
    Xb, single = _as_batch(X)
    depth = check_positive_int(depth, "depth")
    B, T, d = Xb.shape
    w = init_stack(B, depth, d, n_heads=n_heads, qk_gain=qk_gain, mlp=block in ("mlp", "full"), seed=seed)
    for name in ("W_Q", "W_K", "W_V"):
        w[name].requires_grad_(True)
    with torch.enable_grad():
        outs = stack_outputs(Xb, w, block, causal, branch_scale)
        G = torch.randn(outs[-1].shape, generator=_generator(None if seed is None else seed + 2), dtype=outs[-1].dtype)
        loss = (outs[-1] * G).sum() / math.sqrt(T * d)
        grads = torch.autograd.grad(loss, [w["W_Q"], w["W_K"], w["W_V"]])
    result = {name: g.detach().pow(2).sum(dim=(-3, -2, -1)).sqrt() for name, g in zip(("W_Q", "W_K", "W_V"), grads)}  # (B, depth)
    result["cosine"] = torch.stack([token_cosine(o.detach()) for o in outs[:-1]], dim=-1)  # (B, depth)
    return {k: v[0] for k, v in result.items()} if single else result


# --- one layer with a prescribed (scale, kappa) spectrum (chapters 5 and 8) -------------------------

def qk_from_scale_kappa(d: int, r: float, kappa: float, seed: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Symmetric `W_QK` `(d, d)` with scale `r` and concentration `kappa` (chapters 5 and 8).

    `qklab.spectrum.random_qk(d, mean=kappa r, std=r sqrt(1 - kappa^2), seed, exact=True)`: the
    eigenvalues have mean exactly `m = kappa r` and standard deviation exactly `s = r sqrt(1 -
    kappa^2)`, hence `sqrt(m^2 + s^2) = r` and `m / r = kappa`. For a fixed seed the basis and the
    standardised eigenvalues do not depend on `(r, kappa)`: `W = kappa r I + r sqrt(1 - kappa^2) B`
    with the same `B`, which is what `collapse_map` uses.
    """
    d = check_positive_int(d, "d")
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"r must be finite and >= 0, got {r}")
    if not (-1.0 <= kappa <= 1.0):
        raise ValueError(f"kappa must lie in [-1, 1], got {kappa}")
    return random_qk(d, mean=kappa * r, std=r * math.sqrt(max(0.0, 1.0 - kappa**2)), seed=seed, exact=True, dtype=dtype)


def product_basis(d: int, seed: int | None = None) -> Tensor:
    """A zero-mean `d x d` direction a real head could have: `G_Q G_K^T` of two independent Gaussian
    factors, made traceless and scaled to `||B||_F^2 / d = 1` (chapter 8's reference at `kappa = 0`).

    A symmetric matrix with zero-mean eigenvalues (`qk_from_scale_kappa`) gives the diagonal
    logit `x^T W x` of an i.i.d. token `sqrt(2)` times the standard deviation of an off-diagonal
    one (`Var x^T W x = tr(W^2) + ||W||_F^2 = 2 ||W||_F^2` for symmetric `W`), a bias towards the
    query's own key that no mean put there. For this product `tr(B^2)` is of order `1/d` of
    `||B||_F^2`, so diagonal and off-diagonal logits have nearly the same spread.
    """
    d = check_positive_int(d, "d")
    g = _generator(seed)
    G_Q = torch.randn(d, d, generator=g, dtype=torch.float64)
    G_K = torch.randn(d, d, generator=g, dtype=torch.float64)
    B = G_Q @ G_K.T  # (d, d)
    B = B - torch.trace(B) / d * torch.eye(d, dtype=torch.float64)  # eigenvalue mean exactly 0
    return B / (B.pow(2).sum() / d).sqrt()


def qk_scores(X: Tensor, W: Tensor, scale: float | None = None) -> Tensor:
    """Scores `X W X^T * scale` of a `d x d` query-key matrix, `(..., T, T)` (chapters 5 and 8).

    `scale` defaults to `1/sqrt(d)` (chapter 1's `1/sqrt(d_h)` with `d_h = d`). `W` may carry
    leading dimensions that broadcast with those of `X`.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    W = as_float_tensor(W, "W", min_ndim=2)
    d = X.shape[-1]
    if W.shape[-2:] != (d, d):
        raise ValueError(f"W must be (..., d, d) with d = {d} (the width of X), got {tuple(W.shape)}")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return (X @ W @ X.transpose(-2, -1)) * scale  # (..., T, T)


def qk_pattern(X: Tensor, W: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """Attention pattern `softmax_row(X W X^T * scale + mask)`, `(..., T, T)` (chapters 5 and 8)."""
    return pattern(qk_scores(X, W, scale), causal=causal)


def make_tokens(
    n: int, T: int, d: int, tokens: Tokens = "iid", seed: int | None = None, token_norm: float | None = None
) -> Tensor:
    """`n` sequences `(n, T, d)`, float64: i.i.d. Gaussian or random-walk tokens (`qklab.theory`).

    With `token_norm`, each sequence is rescaled so that its root-mean-square token norm
    `sqrt(mean_t |x_t|^2)` equals `token_norm`; otherwise i.i.d. tokens have `|x|^2 ~ d` and
    random-walk token `t` has `|x_t|^2 ~ t d`. Chapters 5 and 8 state the token norm with every
    figure, because the logit size is about `r |x|^2 / sqrt(d)`, not `r` alone.
    """
    if tokens == "iid":
        X = gaussian_tokens(n, T, d, seed=seed)
    elif tokens == "random_walk":
        X = random_walk_tokens(n, T, d, seed=seed)
    else:
        raise ValueError(f"tokens must be 'iid' or 'random_walk', got {tokens!r}")
    if token_norm is not None:
        if not (math.isfinite(token_norm) and token_norm > 0):
            raise ValueError(f"token_norm must be finite and > 0, got {token_norm}")
        rms = X.pow(2).sum(dim=-1).mean(dim=-1).sqrt()  # (n,)
        X = X * (token_norm / rms)[:, None, None]
    return X


def _band(T: int, window: int, causal: bool, device: torch.device | None = None) -> Tensor:
    i = torch.arange(T, device=device)
    gap = i[:, None] - i[None, :]  # query minus key
    return (gap >= 0) & (gap < window) if causal else gap.abs() < window  # (T, T) boolean


def local_mass(A: Tensor, window: int = 1, causal: bool = False) -> Tensor:
    """Mean attention mass near the query, `(...)` (chapters 5 and 8).

    Row `i` contributes `sum_j A_ij` over keys with `|i - j| < window` (or `0 <= i - j < window`
    with `causal=True`). `window = 1` is the mass on the query token itself (`diagonal_mass`).
    """
    A = as_float_tensor(A, "A", min_ndim=2)
    T = A.shape[-1]
    if A.shape[-2] != T:
        raise ValueError(f"A must be square (..., T, T), got {tuple(A.shape)}")
    window = check_positive_int(window, "window")
    band = _band(T, window, causal, A.device)
    return (A * band).sum(dim=-1).mean(dim=-1)


def localization(A: Tensor, window: int = 1, causal: bool = False) -> Tensor:
    """`local_mass(A)` divided by that of uniform attention, `(...)`: 1 = no preference for nearby keys.

    Uniform attention over the keys a query may see (all `T`, or `i + 1` with a causal mask)
    gives the baseline. With `window = 1` and no mask the value is `T * mean_i A_ii`, between 0
    and `T`.
    """
    A = as_float_tensor(A, "A", min_ndim=2)
    T = A.shape[-1]
    band = _band(T, check_positive_int(window, "window"), causal).to(A.dtype)
    visible = (torch.ones(T, T, dtype=A.dtype).tril() if causal else torch.ones(T, T, dtype=A.dtype)).to(A.device)
    baseline = float(((band.to(A.device) * visible).sum(-1) / visible.sum(-1)).mean())
    return local_mass(A, window, causal) / baseline


def collapse_map(
    scales: Sequence[float],
    kappas: Sequence[float],
    d: int,
    T: int,
    tokens: Tokens = "iid",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    n: int = 16,
    causal: bool = False,
    token_norm: float | None = None,
    window: int = 1,
    depth: int = 1,
    reference: Literal["symmetric", "product"] = "symmetric",
) -> dict[str, Tensor]:
    """Entropy, rank residual and localization over a grid of `(r, kappa)` (chapters 5 and 8).

    For every seed `s`, `n` token sequences (`make_tokens(n, T, d, tokens, seed=s, token_norm)`)
    go through `depth` pure-attention layers `X <- A X` (value matrix the identity) with
    `A = qk_pattern(X, W_l, causal)` and `W_l = qk_from_scale_kappa(d, r, kappa, seed)` (layer 1
    uses `seed = s`, layer `l` uses `s + 1000 (l - 1)`), for every `r` in `scales` and `kappa` in
    `kappas`. The same seed gives the same basis and standardised eigenvalues at every grid point
    (common random numbers), so the map is smooth in `(r, kappa)`. With `reference="product"` the
    zero-mean part is `product_basis(d, seed)` instead of the symmetric one: `W_l = kappa r I +
    r sqrt(1 - kappa^2) B` keeps `m = kappa r` and `||W||_F^2 / d = r^2`, but `W` is no longer
    symmetric, as a head's `W_Q W_K^T` is not.

    Returns, each of shape `(len(seeds), len(scales), len(kappas))`, averaged over the `n` sequences:

    - `"entropy"`: first-layer attention entropy divided by `log T` (by `log(i + 1)` per row,
      row 0 dropped, with `causal=True`): 1 = uniform, 0 = one-hot;
    - `"residual"`: relative token residual (`token_residual`, composite norm) after `depth` layers;
    - `"input_residual"`: the same for the input tokens;
    - `"local_mass"`, `"localization"`: first-layer `local_mass` and `localization` (`window`);
    - `"logit_rms"`: root mean square of the first layer's logits `x_i^T W x_j / sqrt(d)` over the
      entries a query may see; with i.i.d. `N(0, I_d)` tokens it is about `r sqrt(1 + kappa^2 d)`
      (off-diagonal logits have standard deviation `r`, diagonal ones mean `kappa r sqrt(d)`);
    - `"logit_spread"`: root mean square over queries of the standard deviation of a query's
      logits across the keys it sees (rows with a single key count as 0). Softmax only feels
      differences within a row, so this, not `logit_rms`, is what sets the entropy when tokens
      share a large common part (random-walk tokens).

    and `"residual_per_layer"`: `(len(seeds), len(scales), len(kappas), depth)`.
    """
    scales_t = torch.as_tensor(list(scales), dtype=torch.float64)
    kappas_t = torch.as_tensor(list(kappas), dtype=torch.float64)
    if scales_t.ndim != 1 or kappas_t.ndim != 1 or len(scales_t) == 0 or len(kappas_t) == 0:
        raise ValueError("scales and kappas must be non-empty sequences of numbers")
    if bool((scales_t < 0).any()) or not bool(torch.isfinite(scales_t).all()):
        raise ValueError("scales must be finite and >= 0")
    if bool((kappas_t.abs() > 1).any()):
        raise ValueError("kappas must lie in [-1, 1]")
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty")
    d, T, n, depth = (check_positive_int(v, name) for v, name in ((d, "d"), (T, "T"), (n, "n"), (depth, "depth")))
    R, K = len(scales_t), len(kappas_t)
    root = (1 - kappas_t**2).clamp_min(0).sqrt()  # (K,): sqrt(1 - kappa^2)
    eye = torch.eye(d, dtype=torch.float64)
    visible = torch.ones(T, T, dtype=torch.bool).tril() if causal else torch.ones(T, T, dtype=torch.bool)
    vis = visible.to(torch.float64)
    count = vis.sum(-1)  # (T,): keys seen by each query
    keys = ("entropy", "local_mass", "localization", "logit_rms", "logit_spread", "residual_per_layer")
    out: dict[str, list[Tensor]] = {k: [] for k in (*keys, "residual", "input_residual")}
    for s in seeds:
        X0 = make_tokens(n, T, d, tokens, seed=int(s), token_norm=token_norm)  # (n, T, d)
        if reference == "symmetric":
            bases = [random_qk(d, 0.0, 1.0, seed=int(s) + 1000 * layer, exact=True, dtype=torch.float64)
                     for layer in range(depth)]
        elif reference == "product":
            bases = [product_basis(d, seed=int(s) + 1000 * layer) for layer in range(depth)]
        else:
            raise ValueError(f"reference must be 'symmetric' or 'product', got {reference!r}")
        rows: dict[str, list[Tensor]] = {k: [] for k in keys}
        for r in scales_t:  # one scale at a time keeps memory at (K, n, T, T)
            X = X0.unsqueeze(0).expand(K, n, T, d)  # (K, n, T, d)
            per_layer = []
            for layer, B in enumerate(bases):
                W = (r * kappas_t)[:, None, None] * eye + (r * root)[:, None, None] * B  # (K, d, d)
                S = qk_scores(X, W.unsqueeze(1))  # (K, n, T, T)
                A = pattern(S, causal=causal)
                if layer == 0:
                    rows["logit_rms"].append(((S**2 * vis).sum(dim=(-2, -1)) / vis.sum()).mean(-1).sqrt())  # (K,)
                    row_mean = (S * vis).sum(-1, keepdim=True) / count[:, None]  # (K, n, T, 1)
                    row_var = (((S - row_mean) * vis) ** 2).sum(-1) / count  # (K, n, T): population variance
                    rows["logit_spread"].append(row_var.mean(dim=(-2, -1)).sqrt())
                    norm_mode = "causal" if causal else "log_T"
                    rows["entropy"].append(attention_entropy(A, reduce="none", normalize=norm_mode).mean(dim=(-2, -1)))
                    rows["local_mass"].append(local_mass(A, window, causal).mean(-1))
                    rows["localization"].append(localization(A, window, causal).mean(-1))
                X = A @ X  # (K, n, T, d)
                per_layer.append(token_residual(X).mean(-1))  # (K,)
            rows["residual_per_layer"].append(torch.stack(per_layer, dim=-1))  # (K, depth)
        for k in keys:
            out[k].append(torch.stack(rows[k]))  # (R, K[, depth])
        out["residual"].append(out["residual_per_layer"][-1][..., -1])
        out["input_residual"].append(token_residual(X0).mean().expand(R, K).clone())
    return {k: torch.stack(v) for k, v in out.items()}


def log_crossing(x: Sequence[float] | Tensor, y: Tensor, level: float) -> Tensor:
    """Where a sampled curve first crosses `level`, interpolated linearly in `log x` (chapters 5 and 8).

    Args:
        x: `(N,)` increasing positive grid (scales `r`, say). y: `(..., N)` values on that grid.
        level: the threshold.

    Returns:
        `(...)` float64: the first `x` at which `y - level` changes sign (or touches 0), NaN where
        the curve never reaches `level`.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    y = as_float_tensor(y, "y", min_ndim=1).to(torch.float64)
    if x.ndim != 1 or x.shape[0] != y.shape[-1] or x.shape[0] < 2:
        raise ValueError(f"x must be 1-D with at least 2 points matching y's last dimension, got {tuple(x.shape)} and {tuple(y.shape)}")
    if bool((x <= 0).any()) or bool((x[1:] <= x[:-1]).any()):
        raise ValueError("x must be positive and strictly increasing")
    lx = x.log()
    z = y - level  # (..., N)
    hit = (z[..., :-1] * z[..., 1:]) <= 0  # (..., N - 1): a sign change between k and k + 1
    out = torch.full(y.shape[:-1], float("nan"), dtype=torch.float64)
    any_hit = hit.any(dim=-1)
    k = hit.to(torch.int64).argmax(dim=-1, keepdim=True)  # first crossing interval
    z0, z1 = z.gather(-1, k).squeeze(-1), z.gather(-1, k + 1).squeeze(-1)
    denom = torch.where(z0 == z1, torch.ones_like(z0), z0 - z1)
    frac = torch.where(z0 == z1, torch.zeros_like(z0), z0 / denom)
    lo = lx[k.squeeze(-1)]
    hi = lx[k.squeeze(-1) + 1]
    out[any_hit] = (lo + frac * (hi - lo)).exp()[any_hit]
    return out


#: The course's collapse thresholds for one layer on `T = d = 64` i.i.d. tokens (chapter 8):
#: rank collapse when the relative token residual of the output falls below 0.5 (the input has
#: about 0.99), entropy collapse when the normalised entropy falls below 0.25 (as peaked as uniform
#: attention over `T^(1/4)`, about 3 of 64 keys), localized when the attention on the query token
#: is at least 4 times that of uniform attention. They are choices, not constants of any paper.
THRESHOLDS: dict[str, float] = {"residual": 0.5, "entropy": 0.25, "localization": 4.0}

#: Names of the codes returned by `collapse_regions`, in order.
REGIONS: tuple[str, ...] = ("rank collapse", "entropy collapse", "no collapse, not localized", "localized, no collapse")


def collapse_regions(
    entropy: Tensor,
    residual: Tensor,
    localization: Tensor,
    *,
    residual_min: float = THRESHOLDS["residual"],
    entropy_min: float = THRESHOLDS["entropy"],
    localization_min: float = THRESHOLDS["localization"],
) -> Tensor:
    """Label each point of a map with a region code (chapter 8); names in `REGIONS`.

    `0` rank collapse (`residual < residual_min`); otherwise `1` entropy collapse
    (`entropy < entropy_min`); otherwise `2` no collapse but not localized
    (`localization < localization_min`); otherwise `3` localized without collapse. Rank collapse
    is tested first. The three tensors must have the same shape; returns int64 of that shape.
    """
    entropy = as_float_tensor(entropy, "entropy")
    residual = as_float_tensor(residual, "residual")
    localization = as_float_tensor(localization, "localization")
    if not (entropy.shape == residual.shape == localization.shape):
        raise ValueError(
            f"entropy, residual and localization must have the same shape, got {tuple(entropy.shape)}, "
            f"{tuple(residual.shape)}, {tuple(localization.shape)}"
        )
    codes = torch.full(entropy.shape, 3, dtype=torch.int64)
    codes[localization < localization_min] = 2
    codes[entropy < entropy_min] = 1
    codes[residual < residual_min] = 0
    return codes
