"""Checks for the exercises of chapter 2 (`chapters/02_measuring_attention`).

What is here:
- `check_mean_row_entropy(fn)`: `fn(A)` must return the attention entropy in nats,
  `H_i = -sum_j A_ij log A_ij` with `0 log 0 = 0`, averaged over every row (and batch, heads),
  as `qklab.metrics.attention_entropy(A)` does. Recognised mistakes: log base 2, `0 log 0` giving
  NaN, summing over the wrong axis, not averaging over rows (or summing them), averaging over
  keys too, one value per sequence and head, and Zhai et al.'s `log(A + 1e-6)` (close, not exact).
- `check_relative_residual(fn)`: `fn(X)` must return `||X - 1 xbar^T||_F / ||X||_F` per sequence,
  `xbar` the token mean, as `qklab.metrics.token_residual(X, norm="fro")`. Recognised mistakes:
  the feature mean instead of the token mean, no division by `||X||`, the mean of all entries,
  Dong et al.'s composite norm instead of Frobenius, one number for the whole batch.
- `check_effective_rank(fn)`: Roy and Vetterli's `exp(H(sigma / sum sigma))`, as
  `qklab.metrics.effective_rank`. Recognised mistakes: squared singular values, no `exp`, the
  ordinary rank, `0 log 0` giving NaN.
- `check_causal_uniform_ratio(value, T)`: the predicted `log T`-normalised entropy of uniform
  causal attention, `(1/T) sum_{i=0}^{T-1} log(i + 1) / log T` (rows counted from 0, as in every
  message: row `i` sees `i + 1` keys).

What is not here: the references (`qklab.metrics`) and the engine (`qklab.checks.core`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, check_value, exercise, gaussian
from qklab.metrics import attention_entropy, effective_rank, token_residual

__all__ = [
    "check_mean_row_entropy",
    "check_relative_residual",
    "check_effective_rank",
    "check_causal_uniform_ratio",
    "causal_uniform_ratio",
    "ENTROPY_CASES",
    "ENTROPY_MISTAKES",
    "RESIDUAL_CASES",
    "RESIDUAL_MISTAKES",
    "ERANK_CASES",
    "ERANK_MISTAKES",
]


def _random_pattern(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.softmax(gaussian(shape, seed), dim=-1)


def _uniform_causal(T: int) -> Tensor:
    L = torch.ones(T, T, dtype=torch.float64).tril()
    return L / L.sum(dim=-1, keepdim=True)


# --- ex-entropy: mean attention entropy --------------------------------------------------------

def _entropy_reference(A: Tensor) -> Tensor:
    return attention_entropy(A)  # mean over all rows, nats, exact 0 log 0 = 0


def _plogp(A: Tensor) -> Tensor:
    return torch.special.xlogy(A, A)  # A log A with 0 log 0 = 0


# 5 queries and 7 keys first: for a square pattern, summing over the wrong axis and then
# averaging gives the same number (both are the total divided by T), so only a non-square
# pattern can tell the axes apart.
ENTROPY_CASES: tuple[Case, ...] = (
    Case("a random 5 x 7 pattern (5 queries, 7 keys)", (_random_pattern((5, 7), 1),)),
    Case("a one-hot 4 x 4 pattern (exact zeros)", (torch.eye(4, dtype=torch.float64),)),
    Case("a uniform causal 6 x 6 pattern (zeros above the diagonal)", (_uniform_causal(6),)),
    Case("a batch of 2 sequences x 3 heads of 4 x 4 causal patterns", (torch.softmax(gaussian((2, 3, 4, 4), 2).masked_fill(torch.ones(4, 4).triu(1).bool(), -math.inf), dim=-1),)),
    Case("a single row over 5 keys, shape (1, 5)", (_random_pattern((1, 5), 3),)),
    # A collapsed head (chapter 4): logits 30 apart, so the small weights are about 1e-13 and the
    # entropy about 1e-11. Any epsilon inside the log (1e-12, not only Zhai et al.'s 1e-6) is
    # then off by more than 1 %, where the exact entropy is still computed to every digit.
    Case("a collapsed head: 3 rows of 8 keys with logits 30 apart (entropy about 1e-11)",
         (torch.softmax(30.0 * (torch.arange(8, dtype=torch.float64) == 0).to(torch.float64).expand(3, 8)
                        + gaussian((3, 8), 4, 0.5), dim=-1),)),
)

ENTROPY_MISTAKES: tuple[Mistake, ...] = (
    Mistake("a logarithm in base 2 (bits, not nats)", lambda A: -(_plogp(A).sum(-1) / math.log(2)).mean(), "use the natural logarithm (torch.log): entropy here is in nats."),
    Mistake(
        "0 log 0 computed as 0 * (-inf) = NaN",
        lambda A: -(A * torch.log(A)).sum(-1).mean(),
        "p log p tends to 0 as p -> 0: use torch.special.xlogy(A, A), or set the terms with A == 0 to 0.",
    ),
    Mistake("the entropy without its minus sign (a negative number)", lambda A: _plogp(A).sum(-1).mean(), "log A_ij <= 0, so H_i = -sum_j A_ij log A_ij is >= 0: keep the minus sign."),
    Mistake("a sum over the wrong axis (over queries instead of keys)", lambda A: -_plogp(A).sum(-2).mean(), "row i (a query) is a distribution over the keys j: sum along the last axis."),
    Mistake("one entropy per row, not averaged", lambda A: -_plogp(A).sum(-1), "return one number: the mean over rows (and over batch and heads)."),
    Mistake("the sum of the row entropies instead of their mean", lambda A: -_plogp(A).sum(), "average over rows instead of adding them up."),
    Mistake("an average over keys as well as rows", lambda A: -_plogp(A).mean(), "sum over the keys of a row, then average over the rows."),
    Mistake(
        "one value per sequence and head (averaged over the rows of each pattern only)",
        lambda A: -_plogp(A).sum(-1).mean(-1),
        "average over every row of every pattern, batch and heads included: one number in all.",
    ),
    Mistake(
        "Zhai et al.'s convention log(A + 1e-6), which is off by up to T * 1e-6 per row",
        lambda A: -(A * torch.log(A + 1e-6)).sum(-1).mean(),
        "close! This exercise asks for the exact entropy: use torch.special.xlogy(A, A), which gives 0 log 0 = 0 without an epsilon.",
    ),
    *(
        Mistake(
            f"an epsilon inside the log, log(A + {eps:g}): off by about {eps:g} per row, as much as a collapsed head's whole entropy",
            lambda A, eps=eps: -(A * torch.log(A + eps)).sum(-1).mean(),
            "close! Any epsilon inside the log changes the entropy of a nearly one-hot row: use torch.special.xlogy(A, A), "
            "which gives 0 log 0 = 0 without an epsilon.",
        )
        for eps in (1e-12, 1e-10, 1e-9, 1e-8)
    ),
)


@exercise("ex-entropy", hint="H_i = -sum_j A_ij log A_ij over the keys j (last axis), with 0 log 0 = 0, then the mean over all rows.")
def check_mean_row_entropy(fn, *, quiet: bool = False) -> None:
    """Check `fn(A)`, the mean attention entropy in nats (chapter 2, ex-entropy)."""
    check_function(
        fn,
        _entropy_reference,
        ENTROPY_CASES,
        name="mean_row_entropy",
        mistakes=ENTROPY_MISTAKES,
        atol=1e-14,  # entropies near 1e-11 (the collapsed head): an epsilon of 1e-12 in the log is 100 times this
        rtol=1e-6,
        quiet=quiet,
    )


# --- ex-residual: relative token residual --------------------------------------------------------

def _residual_reference(X: Tensor) -> Tensor:
    return token_residual(X, norm="fro")


def _fro(M: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(M, ord="fro")


RESIDUAL_CASES: tuple[Case, ...] = (
    Case("4 random tokens in d = 3", (gaussian((4, 3), 10),)),
    Case("5 identical tokens (residual 0)", (torch.ones(5, 1, dtype=torch.float64) * gaussian((1, 3), 11),)),
    Case("one token, shape (1, 4)", (gaussian((1, 4), 12),)),
    Case("a batch of 3 sequences of 6 tokens in d = 4", (gaussian((3, 6, 4), 13),)),
    Case("6 tokens sharing a large offset (10 + noise)", (10.0 + gaussian((6, 4), 14),)),
    # Tokens after many layers (chapter 3): nearly collapsed, residual about 1e-8. The formula
    # sqrt(||X||^2 - T ||xbar||^2) cancels there: ||X||^2 and T ||xbar||^2 agree to 16 digits.
    Case("6 nearly collapsed tokens (one token + noise of size 1e-8)",
         (torch.ones(6, 1, dtype=torch.float64) * gaussian((1, 4), 15) + gaussian((6, 4), 16, 1e-8),)),
)

RESIDUAL_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "the feature mean (the mean over the d coordinates of each token) instead of the token mean",
        lambda X: _fro(X - X.mean(dim=-1, keepdim=True)) / _fro(X),
        "xbar is the average token, a d-vector: X.mean(dim=-2, keepdim=True), the mean over the T rows.",
    ),
    Mistake(
        "the residual not divided by ||X||",
        lambda X: _fro(X - X.mean(dim=-2, keepdim=True)),
        "the relative residual is ||X - 1 xbar^T||_F / ||X||_F: divide by the norm of X itself.",
    ),
    Mistake(
        "the mean of all entries (one number) instead of the token mean (a d-vector)",
        lambda X: _fro(X - X.mean(dim=(-2, -1), keepdim=True)) / _fro(X),
        "subtract the same d-vector from every token: the mean over the T rows, X.mean(dim=-2, keepdim=True).",
    ),
    Mistake(
        "the composite l1-linf norm (Dong et al.'s plots) instead of the Frobenius norm",
        lambda X: token_residual(X, norm="l1inf"),
        "this exercise uses the Frobenius norm: torch.linalg.matrix_norm(M, ord='fro').",
    ),
    Mistake(
        "one number for the whole batch (norms over all sequences together)",
        lambda X: (X - X.mean(dim=-2, keepdim=True)).norm() / X.norm(),
        "return one value per sequence: the norm over the last two axes only (torch.linalg.matrix_norm).",
    ),
)


@exercise("ex-residual", hint="subtract the token mean X.mean(dim=-2, keepdim=True), take the Frobenius norm over the last two axes, divide by ||X||_F.")
def check_relative_residual(fn, *, quiet: bool = False) -> None:
    """Check `fn(X)`, the relative Frobenius token residual per sequence (chapter 2, ex-residual)."""
    check_function(
        fn,
        _residual_reference,
        RESIDUAL_CASES,
        name="relative_residual",
        mistakes=RESIDUAL_MISTAKES,
        axis_names=("sequence",),
        atol=1e-14,  # residuals near 1e-8 (nearly collapsed tokens) are compared to 1e-6 of their size
        rtol=1e-6,
        quiet=quiet,
    )


# --- ex-erank: effective rank ----------------------------------------------------------------------

def _erank_from(p: Tensor) -> Tensor:
    return torch.exp(-torch.special.xlogy(p, p).sum(-1))


def _erank_squared(X: Tensor) -> Tensor:
    s2 = torch.linalg.svdvals(X) ** 2
    return _erank_from(s2 / s2.sum(-1, keepdim=True))


def _erank_no_exp(X: Tensor) -> Tensor:
    s = torch.linalg.svdvals(X)
    p = s / s.sum(-1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(-1)


def _erank_nan(X: Tensor) -> Tensor:
    s = torch.linalg.svdvals(X)
    p = s / s.sum(-1, keepdim=True)
    return torch.exp(-(p * torch.log(p)).sum(-1))


ERANK_CASES: tuple[Case, ...] = (
    Case("the 4 x 4 identity (effective rank 4)", (torch.eye(4, dtype=torch.float64),)),
    Case("a random 6 x 3 matrix", (gaussian((6, 3), 20),)),
    Case("a diagonal 3 x 3 matrix with singular values 3, 1, 0", (torch.diag(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)),)),
    Case("a batch of 2 random 5 x 5 matrices", (gaussian((2, 5, 5), 21),)),
)

ERANK_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "squared singular values (eigenvalues of X^T X) in p",
        _erank_squared,
        "p_k = sigma_k / sum_l sigma_l uses the singular values themselves (torch.linalg.svdvals), not their squares.",
    ),
    Mistake("the entropy H(p) without the exponential", _erank_no_exp, "the effective rank is exp(H(p)), a number between 1 and min(T, d)."),
    Mistake(
        "the ordinary rank (the count of non-zero singular values)",
        lambda X: torch.linalg.matrix_rank(X).to(X.dtype),
        "weigh the singular values: p_k = sigma_k / sum sigma, then exp of the entropy of p.",
    ),
    Mistake(
        "0 log 0 computed as 0 * (-inf) = NaN",
        _erank_nan,
        "a zero singular value contributes 0 to the entropy: use torch.special.xlogy(p, p).",
    ),
)


@exercise("ex-erank", hint="sigma = torch.linalg.svdvals(X); p = sigma / sigma.sum(-1, keepdim=True); return exp(-sum p log p).")
def check_effective_rank(fn, *, quiet: bool = False) -> None:
    """Check `fn(X)`, the effective rank of each `(T, d)` matrix (chapter 2, ex-erank)."""
    check_function(
        fn,
        effective_rank,
        ERANK_CASES,
        name="effective_rank",
        mistakes=ERANK_MISTAKES,
        axis_names=("matrix",),
        atol=1e-8,
        rtol=1e-6,
        quiet=quiet,
    )


# --- ex-causal-ratio: a prediction ---------------------------------------------------------------

def causal_uniform_ratio(T: int) -> float:
    """`(1/T) sum_{i=0}^{T-1} log(i + 1) / log T`: the `log T`-normalised mean entropy of uniform causal attention."""
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T!r}")
    return math.lgamma(T + 1) / (T * math.log(T))


@exercise(
    "ex-causal-ratio",
    hint="rows count from 0: row i sees the i + 1 keys j <= i, uniformly, so H_i = log(i + 1); "
    "average H_i / log T over the T rows i = 0, ..., T - 1.",
)
def check_causal_uniform_ratio(value, *, T: int = 8, quiet: bool = False) -> None:
    """Check the prediction of exercise ex-causal-ratio (chapter 2) for sequence length `T`.

    Rows are counted from 0 in every message: row `i` sees the `i + 1` keys `j <= i`.
    """
    log_T = math.log(T)
    check_value(
        value,
        causal_uniform_ratio(T),
        name=f"normalised entropy of uniform causal attention (T = {T})",
        rtol=1e-3,
        mistakes={
            "the value for uniform attention without the mask": (1.0, "with the mask, row i (counting from 0) sees only i + 1 keys: its entropy is log(i + 1), not log T."),
            "each row normalised by its own maximum log(i + 1)": (
                (T - 1) / T,
                "divide every row by the same log T; the per-row normalisation is the 'causal' one, which gives 1 to every row but row 0.",
            ),
            "an average over rows 1..T - 1 only (row 0, which sees one key, dropped)": (
                math.lgamma(T + 1) / ((T - 1) * log_T),
                "row 0 (entropy log 1 = 0) counts too: average over all T rows.",
            ),
            "the mean entropy in nats, not divided by log T": (math.lgamma(T + 1) / T, "divide by log T."),
            "an off-by-one: rows seeing 2, ..., T + 1 keys": (
                math.lgamma(T + 2) / (T * log_T),
                "row 0 sees one key, itself: row i (counting from 0) sees i + 1 keys, not i + 2.",
            ),
            "the entropy in bits divided by log T in nats": (
                math.lgamma(T + 1) / (T * log_T * math.log(2)),
                "use the natural logarithm for both, or one base for both: the ratio does not depend on the base.",
            ),
        },
        quiet=quiet,
    )
