"""How peaked is attention, and how alike are the tokens? (chapter 2)

Pattern metrics (input: an attention pattern `A`, rows summing to 1):
`attention_entropy`, `support_size`, `diagonal_mass`, and `induction_score` (with the token ids:
the attention on the key after an earlier occurrence of the query's token, chapter 11).

Token metrics (input: token representations `X`, `(..., T, d)`): `token_residual` (Dong et al.
2021, with the token mean), `token_cosine` (Noci et al. 2022), `effective_rank`
(Roy and Vetterli 2007) and `stable_rank`.

Not here: anything that needs weights (`qklab.spectrum`) or a model (`qklab.model`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from qklab._validate import as_float_tensor

__all__ = [
    "attention_entropy",
    "support_size",
    "diagonal_mass",
    "induction_score",
    "token_residual",
    "token_cosine",
    "effective_rank",
    "stable_rank",
]


def _check_pattern(A: Tensor, name: str = "pattern", atol: float = 1e-4) -> Tensor:
    """Validate that every row of `A` is a probability vector."""
    A = as_float_tensor(A, name, min_ndim=1)
    if bool((A < -atol).any()):
        raise ValueError(f"{name} has negative entries (min {float(A.min()):.3g}): pass probabilities, not scores")
    row_sums = A.sum(dim=-1)
    worst = float((row_sums - 1).abs().max())
    if worst > atol * max(1, A.shape[-1]) ** 0.5:
        raise ValueError(
            f"rows of {name} must sum to 1 (worst row is off by {worst:.3g}); "
            "did you pass attention scores instead of the pattern softmax(scores)?"
        )
    return A


def attention_entropy(
    pattern: Tensor,
    reduce: Literal["mean", "none", "per_head", "min_head"] = "mean",
    eps: float = 0.0,
    normalize: Literal["none", "log_T", "causal"] = "none",
) -> Tensor:
    """Attention entropy in nats, `H_i = -sum_j A_ij log A_ij` (chapter 2).

    Args:
        pattern: `(..., T_q, T_k)` attention pattern; for `per_head`/`min_head`, `(B, H, T, T)`
            or `(H, T, T)`.
        reduce: `"none"` keeps one value per row `(..., T_q)`; `"mean"` averages over all rows,
            heads and batch (Zhai et al.'s convention); `"per_head"` averages all but the head
            dimension (the third from last), giving `(H,)`; `"min_head"` is the minimum of that.
        eps: `0` computes `0 log 0 = 0` exactly. `eps=1e-6` uses `-sum A log(A + eps)` as in
            Zhai et al.'s code.
        normalize: `"log_T"` divides by `log T_k` (1 = uniform over all keys); `"causal"`
            divides row `i` by `log(i + 1)`, the entropy of uniform attention over the keys a
            causal query sees, and drops row 0 (one key, entropy 0 by force).
    """
    A = _check_pattern(pattern)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if eps > 0:
        H = -(A * torch.log(A.clamp_min(0) + eps)).sum(dim=-1)
    else:
        H = -torch.special.xlogy(A.clamp_min(0), A.clamp_min(0)).sum(dim=-1)  # (..., T_q)
    T_k = A.shape[-1]
    if normalize == "log_T":
        if T_k < 2:
            raise ValueError("normalize='log_T' needs at least 2 keys (log 1 = 0)")
        H = H / math.log(T_k)
    elif normalize == "causal":
        T_q = A.shape[-2]
        if T_q < 2:
            raise ValueError("normalize='causal' needs at least 2 queries: row 0 is dropped")
        H = H[..., 1:] / torch.log(torch.arange(2, T_q + 1, dtype=H.dtype, device=H.device))
    elif normalize != "none":
        raise ValueError(f"normalize must be 'none', 'log_T' or 'causal', got {normalize!r}")
    if reduce == "none":
        return H
    if reduce == "mean":
        return H.mean()
    if reduce in ("per_head", "min_head"):
        if A.ndim < 3:
            raise ValueError(f"reduce={reduce!r} needs a head dimension: (H, T, T) or (B, H, T, T), got {tuple(A.shape)}")
        H = H.movedim(-2, 0).flatten(1).mean(dim=1)  # heads are the dim before the (T_q,) rows
        return H if reduce == "per_head" else H.min()
    raise ValueError(f"reduce must be 'mean', 'none', 'per_head' or 'min_head', got {reduce!r}")


def support_size(pattern: Tensor, threshold: float = 0.0) -> Tensor:
    """Number of keys with weight above `threshold`, per row, `(..., T_q)` (integer tensor).

    With sparsemax patterns (`qklab.attention.sparsemax`) the default `threshold = 0` counts the
    support exactly; softmax puts weight on every key, so give a threshold (e.g. `1e-3`) there.
    """
    A = _check_pattern(pattern)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return (A > threshold).sum(dim=-1)


def diagonal_mass(pattern: Tensor) -> Tensor:
    """Mean attention of each query on itself, `mean_i A_ii`, `(...)`. Uniform gives `1/T`."""
    A = _check_pattern(pattern, atol=1e-4)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"diagonal_mass needs square patterns (..., T, T), got {tuple(A.shape)}")
    return torch.diagonal(A, dim1=-2, dim2=-1).mean(dim=-1)


def induction_score(pattern: Tensor, tokens: Tensor) -> Tensor:
    """Mean attention of the second half's queries on their induction targets, `(...)` (chapter 11).

    For a query at position `i >= T // 2` (positions counted from 0) whose token occurred before, at
    positions `j < i`, the induction targets are the keys `j + 1` right after those occurrences (the
    tokens that followed it last time; several occurrences give several targets). The score of a row
    is the attention on its targets together; the score of a pattern is the mean over its counted
    rows: 1 for a head that looks only at the targets. Queries of the second half whose token is new
    are left out; a pattern with no counted query gives NaN. On `qklab.data.InductionTask`, whose
    sequences repeat their first half, every repeated token counts.

    Args:
        pattern: `(..., T, T)` attention patterns (rows summing to 1), causal or not.
        tokens: `(..., T)` integer token ids, broadcastable to `pattern.shape[:-1]` (one sequence for
            all the heads of a layer: `tokens[:, None]` against `(B, H, T, T)`).
    """
    A = _check_pattern(pattern)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"induction_score needs square patterns (..., T, T), got {tuple(A.shape)}")
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor of token ids, got {type(tokens).__name__}"
                        + (f" of dtype {tokens.dtype}" if isinstance(tokens, Tensor) else ""))
    T = A.shape[-1]
    if tokens.shape[-1] != T:
        raise ValueError(f"tokens has {tokens.shape[-1]} positions, the patterns {T} (tokens {tuple(tokens.shape)}, pattern {tuple(A.shape)})")
    earlier = torch.ones(T, T, dtype=torch.bool, device=A.device).tril(-1)  # [i, j]: j < i
    seen = (tokens.unsqueeze(-1) == tokens.unsqueeze(-2)) & earlier  # (..., T, T): token j equals token i, j < i
    targets = torch.zeros_like(seen)
    targets[..., 1:] = seen[..., :-1]  # key k = j + 1 is a target of query i
    counted = seen.any(dim=-1)
    counted[..., : T // 2] = False  # the first half's queries do not count
    mass = (A * targets).sum(dim=-1)  # (..., T): attention on the targets
    return (mass * counted).sum(dim=-1) / counted.sum(dim=-1)


def _composite_norm(M: Tensor) -> Tensor:
    """Dong et al.'s `sqrt(||M||_1 ||M||_inf)`: max column abs-sum times max row abs-sum."""
    norm_1 = M.abs().sum(dim=-2).amax(dim=-1)  # max over columns of the column sums
    norm_inf = M.abs().sum(dim=-1).amax(dim=-1)  # max over rows of the row sums
    return (norm_1 * norm_inf).sqrt()


def token_residual(X: Tensor, relative: bool = True, norm: Literal["l1inf", "fro"] = "l1inf") -> Tensor:
    """Distance of the tokens from rank one, `res(X) = X - 1 xbar^T` with `xbar` the token mean.

    Chapters 2 and 3: Dong et al. (2021) measure rank collapse by `||res(X)|| / ||X||` per layer, with the
    composite norm `sqrt(||.||_1 ||.||_inf)` (`norm="l1inf"`, as their plotting code does, with the
    token mean). `norm="fro"` uses the Frobenius norm. Returns `(...)`, one value per sequence.
    Identical tokens give 0. A zero `X` with `relative=True` is an error (0/0).
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    measures = {"l1inf": _composite_norm, "fro": lambda M: torch.linalg.matrix_norm(M, ord="fro")}
    if norm not in measures:
        raise ValueError(f"norm must be 'l1inf' or 'fro', got {norm!r}")
    measure = measures[norm]
    R = X - X.mean(dim=-2, keepdim=True)  # (..., T, d): subtract the token mean from every row
    res = measure(R)
    if not relative:
        return res
    size = measure(X)
    if bool((size == 0).any()):
        raise ValueError("X is all zeros in some sequence: the relative residual 0/0 is undefined")
    return res / size


def token_cosine(X: Tensor) -> Tensor:
    """Mean cosine similarity over distinct token pairs, `(...)` (Noci et al. 2022, chapter 3).

    1 when all tokens point the same way (rank collapse), about 0 for random high-dimensional
    tokens. Needs `T >= 2` and no zero token.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    T = X.shape[-2]
    if T < 2:
        raise ValueError(f"token_cosine needs at least 2 tokens, got T = {T}")
    norms = X.norm(dim=-1, keepdim=True)  # (..., T, 1)
    if bool((norms == 0).any()):
        raise ValueError("X has a zero token: its cosine similarity is undefined")
    U = X / norms
    G = U @ U.transpose(-2, -1)  # (..., T, T) cosines
    off_diag = G.sum(dim=(-2, -1)) - torch.diagonal(G, dim1=-2, dim2=-1).sum(dim=-1)
    return off_diag / (T * (T - 1))


def effective_rank(X: Tensor) -> Tensor:
    """Roy and Vetterli's effective rank `exp(H(p))`, `p = sigma / sum(sigma)`, `(...)`.

    Between 1 (rank one) and `min(T, d)` (all singular values equal). A zero matrix gives 0.
    """
    X = as_float_tensor(X, "X", min_ndim=2)
    s = torch.linalg.svdvals(X)  # (..., min(T, d))
    total = s.sum(dim=-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    H = -torch.special.xlogy(p, p).sum(dim=-1)
    return torch.where(total.squeeze(-1) > 0, H.exp(), torch.zeros_like(H))


def stable_rank(X: Tensor) -> Tensor:
    """Stable rank `||X||_F^2 / ||X||_2^2`, `(...)`: between 1 and `rank X`. Zero `X` is an error."""
    X = as_float_tensor(X, "X", min_ndim=2)
    s = torch.linalg.svdvals(X)
    top = s[..., 0]
    if bool((top == 0).any()):
        raise ValueError("X is all zeros: its stable rank is undefined")
    return (s**2).sum(dim=-1) / top**2
