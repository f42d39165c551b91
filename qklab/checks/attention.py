"""Checks for the exercises of chapter 1 (`chapters/01_bilinear_form`).

What is here:
- `check_attention_pattern(fn)`: the reader's `attention_pattern(X, W_Q, W_K, causal=False)`,
  which must return `A = softmax_row(X W_Q (X W_K)^T / sqrt(d_h) + mask)`, is compared with
  `qklab.attention.pattern(qklab.attention.attn_scores(...))` on edge cases (one token, causal
  rows, a batch, several heads, logits of order 1e4 of both signs: a row whose visible scores are
  all about -2e4 tells a mask by -inf from one by a finite number such as -1e4). Typical wrong answers are recognised by name:
  softmax over the wrong axis, no `1/sqrt(d_h)`, `1/sqrt(d)` or `1/d_h` instead, transposed
  scores, no causal mask, a mask that hides the diagonal or the past, a mask applied after the
  softmax without renormalising, no max-subtraction (overflow).
- `check_qk_counts(n_factors, n_entries, n_free, d, d_h)`: the parameter-counting prediction
  (numbers in `W_Q` and `W_K`; entries of `W_QK`; dimension of the set of products).

What is not here: the references themselves (`qklab.attention`) and the check engine
(`qklab.checks.core`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qklab.attention import attn_scores, pattern
from qklab.checks.core import Case, Mistake, check_function, check_value, exercise, gaussian

__all__ = [
    "check_attention_pattern",
    "check_qk_counts",
    "qk_counts",
    "attention_pattern_reference",
    "ATTENTION_PATTERN_CASES",
    "ATTENTION_PATTERN_MISTAKES",
]


def attention_pattern_reference(X: Tensor, W_Q: Tensor, W_K: Tensor, causal: bool = False) -> Tensor:
    """The reference answer: `pattern(attn_scores(X, W_Q, W_K), causal)`, `(..., [H,] T, T)`."""
    return pattern(attn_scores(X, W_Q, W_K), causal=causal)


# --- the inputs ------------------------------------------------------------------------------

def _case(description: str, X_shape: tuple[int, ...], W_shape: tuple[int, ...], seed: int, causal: bool, token_scale: float = 1.0) -> Case:
    """Tokens `N(0, token_scale^2)`, weights `N(0, 1/d)`, so that scores are of order 1 when `token_scale = 1`."""
    d = W_shape[-2]
    X = gaussian(X_shape, seed, token_scale)
    W_Q = gaussian(W_shape, seed + 1, 1 / math.sqrt(d))
    W_K = gaussian(W_shape, seed + 2, 1 / math.sqrt(d))
    return Case(description, (X, W_Q, W_K), {"causal": causal})


def _negative_case(description: str, seed: int) -> Case:
    """Nearly equal tokens with `W_K = -W_Q`: every score is about `-2e4`, so every visible key of a
    row is far below 0 and a mask by a finite number such as `-1e4` outweighs them (it must not)."""
    W_Q = gaussian((6, 2), seed, 1 / math.sqrt(6))
    v = gaussian((1, 6), seed + 1)
    q = v @ W_Q
    v = v * math.sqrt(2e4 * math.sqrt(2) / float((q * q).sum()))
    X = v + gaussian((5, 6), seed + 2)  # scores differ by hundreds within a row: one-hot rows, float32 is enough
    return Case(description, (X, W_Q, -W_Q), {"causal": True})


# d = 6 and d_h = 2 are chosen so that 1, 1/sqrt(d_h) and 1/sqrt(d) give visibly different patterns.
ATTENTION_PATTERN_CASES: tuple[Case, ...] = (
    _case("4 tokens, one head (d = 6, d_h = 2), no mask", (4, 6), (6, 2), seed=10, causal=False),
    _case("one token, causal", (1, 6), (6, 2), seed=20, causal=True),
    _case("5 tokens with the causal mask", (5, 6), (6, 2), seed=30, causal=True),
    _case("a batch of 2 sequences of 4 tokens, causal", (2, 4, 6), (6, 2), seed=40, causal=True),
    _case("3 heads (W_Q of shape (3, 6, 2)), 4 tokens, causal", (4, 6), (3, 6, 2), seed=50, causal=True),
    _case("another width: d = 5, d_h = 3, 3 tokens, causal", (3, 5), (5, 3), seed=55, causal=True),
    _case("large logits (about 1e4), causal", (5, 6), (6, 2), seed=60, causal=True, token_scale=100.0),
    _negative_case("large negative logits (every visible score about -2e4), causal", seed=70),
)


# --- typical wrong answers -------------------------------------------------------------------

def _scores(X: Tensor, W_Q: Tensor, W_K: Tensor, scale: float | None = None) -> Tensor:
    Q = X @ W_Q  # (..., [H,] T, d_h)
    K = X @ W_K
    if scale is None:
        scale = 1 / math.sqrt(W_Q.shape[-1])
    return (Q @ K.transpose(-2, -1)) * scale  # (..., [H,] T, T)


def _mask_scores(S: Tensor, causal: bool) -> Tensor:
    if not causal:
        return S
    T = S.shape[-1]
    keep = torch.ones(T, T, dtype=torch.bool).tril()
    return S.masked_fill(~keep, float("-inf"))


def _softmax_wrong_axis(X, W_Q, W_K, causal=False):
    return torch.softmax(_mask_scores(_scores(X, W_Q, W_K), causal), dim=-2)


def _no_scale(X, W_Q, W_K, causal=False):
    return torch.softmax(_mask_scores(_scores(X, W_Q, W_K, scale=1.0), causal), dim=-1)


def _scale_by_d(X, W_Q, W_K, causal=False):
    d = W_Q.shape[-2]
    return torch.softmax(_mask_scores(_scores(X, W_Q, W_K, scale=1 / math.sqrt(d)), causal), dim=-1)


def _transposed_scores(X, W_Q, W_K, causal=False):
    S = _scores(X, W_Q, W_K).transpose(-2, -1)  # row i holds the scores of key i against every query
    return torch.softmax(_mask_scores(S, causal), dim=-1)


def _no_mask(X, W_Q, W_K, causal=False):
    return torch.softmax(_scores(X, W_Q, W_K), dim=-1)


def _mask_after_softmax(X, W_Q, W_K, causal=False):
    A = torch.softmax(_scores(X, W_Q, W_K), dim=-1)
    if causal:
        A = A.tril()  # zeroes the future keys but leaves the rows summing to less than 1
    return A


def _scale_by_d_h(X, W_Q, W_K, causal=False):
    d_h = W_Q.shape[-1]
    return torch.softmax(_mask_scores(_scores(X, W_Q, W_K, scale=1 / d_h), causal), dim=-1)


def _diagonal_masked(X, W_Q, W_K, causal=False):
    S = _scores(X, W_Q, W_K)
    if causal:
        T = S.shape[-1]
        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(), float("-inf"))  # j >= i hidden: row 0 is all -inf
    return torch.softmax(S, dim=-1)


def _past_masked(X, W_Q, W_K, causal=False):
    S = _scores(X, W_Q, W_K)
    if causal:
        T = S.shape[-1]
        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))  # hides j < i instead of j > i
    return torch.softmax(S, dim=-1)


def _no_max_subtraction(X, W_Q, W_K, causal=False):
    E = _mask_scores(_scores(X, W_Q, W_K), causal).exp()  # exp(1e4) = inf, then inf / inf = NaN
    return E / E.sum(dim=-1, keepdim=True)


ATTENTION_PATTERN_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "softmax over the wrong axis (columns sum to 1, not rows)",
        _softmax_wrong_axis,
        "row i of A is a distribution over the keys j: normalise along the last axis (dim=-1).",
    ),
    Mistake(
        "scores without the 1/sqrt(d_h) factor",
        _no_scale,
        "divide Q K^T by sqrt(d_h), with d_h = W_Q.shape[-1] (the head width).",
    ),
    Mistake(
        "scores divided by sqrt(d) instead of sqrt(d_h)",
        _scale_by_d,
        "the temperature uses the head width d_h = W_Q.shape[-1], not the model width d = W_Q.shape[-2].",
    ),
    Mistake(
        "scores divided by d_h instead of sqrt(d_h)",
        _scale_by_d_h,
        "the temperature is the square root of the head width: S / sqrt(d_h), not S / d_h.",
    ),
    Mistake(
        "a causal mask that hides the diagonal too (query i cannot see key i, so row 0 has no key at all)",
        _diagonal_masked,
        "query i sees the keys j <= i, itself included: hide only j > i (torch.triu(..., diagonal=1)).",
    ),
    Mistake(
        "the causal mask on the wrong side (the past keys j < i hidden instead of the future ones)",
        _past_masked,
        "under the causal mask query i sees j <= i: the entries above the diagonal (j > i) get -inf.",
    ),
    Mistake(
        "transposed scores (K Q^T instead of Q K^T)",
        _transposed_scores,
        "row i must hold query i against every key: S = (X W_Q)(X W_K)^T, queries on the left.",
    ),
    Mistake(
        "a missing causal mask",
        _no_mask,
        "when causal=True, query i may only see keys j <= i: set the scores with j > i to -inf before the softmax.",
    ),
    Mistake(
        "the mask applied after the softmax without renormalising",
        _mask_after_softmax,
        "zeroing future keys after the softmax leaves rows that sum to less than 1; "
        "mask the scores with -inf before the softmax instead.",
    ),
    Mistake(
        "a softmax without max-subtraction (exp overflows to inf, and inf/inf = NaN)",
        _no_max_subtraction,
        "subtract each row's maximum score before exp (softmax does not change), or use torch.softmax.",
    ),
)


PATTERN_RECIPE = (
    "compute S = (X W_Q)(X W_K)^T / sqrt(d_h), set S_ij = -inf where j > i if causal, "
    "then softmax along the last axis; use @ and .transpose(-2, -1) so batches and heads broadcast."
)


@exercise("ex-pattern", hint=PATTERN_RECIPE)
def check_attention_pattern(fn, *, quiet: bool = False) -> None:
    """Check `fn(X, W_Q, W_K, causal=False)` against the reference pattern (chapter 1, ex-pattern).

    `X` is `(..., T, d)`; `W_Q`, `W_K` are `(d, d_h)` or `(H, d, d_h)`; the answer must be the
    `(..., [H,] T, T)` pattern. Raises `ExerciseCheckError` naming the first failing case, what
    differs and, when recognised, the mistake.
    """
    check_function(
        fn,
        attention_pattern_reference,
        ATTENTION_PATTERN_CASES,
        name="attention_pattern",
        mistakes=ATTENTION_PATTERN_MISTAKES,
        atol=1e-8,
        rtol=1e-6,
        quiet=quiet,
        axis_names=("row", "key"),
    )


# --- counting parameters -----------------------------------------------------------------------

def qk_counts(d: int, d_h: int) -> dict[str, int]:
    """Chapter 1: numbers in `W_Q, W_K` (`2 d d_h`), entries of `W_QK` (`d^2`), and the dimension of
    the set of products `W_Q W_K^T` (`2 d d_h - d_h^2`: every invertible `d_h x d_h` matrix `M`
    gives the same product from `(W_Q M, W_K M^{-T})`), for `d_h <= d`."""
    if not (isinstance(d, int) and isinstance(d_h, int)) or not 0 < d_h <= d:
        raise ValueError(f"need integers 0 < d_h <= d, got d = {d}, d_h = {d_h}")
    return {"factors": 2 * d * d_h, "entries": d * d, "free": 2 * d * d_h - d_h * d_h}


@exercise("ex-count", hint="n_factors: two d x d_h matrices; n_entries: the d x d product; n_free: the factors minus "
          "the d_h x d_h entries of an invertible M, since (W_Q M, W_K M^{-T}) gives the same product.")
def check_qk_counts(n_factors, n_entries, n_free, *, d: int = 64, d_h: int = 16, quiet: bool = False) -> None:
    """Check the three parameter counts of exercise ex-count (chapter 1) for widths `d`, `d_h`."""
    want = qk_counts(d, d_h)
    check_value(
        n_factors,
        want["factors"],
        name="numbers in W_Q and W_K together",
        rtol=0,
        atol=0.01,  # a count: exact
        mistakes={
            "the count of one factor only": (d * d_h, "W_Q and W_K are two d x d_h matrices."),
            "d^2 (the entries of the product)": (d * d, "count the factors here; the product comes next."),
        },
        hint="each of W_Q and W_K has d rows and d_h columns.",
        quiet=True,
    )
    check_value(
        n_entries,
        want["entries"],
        name="entries of W_QK",
        rtol=0,
        atol=0.01,  # a count: exact
        mistakes={
            "the size of the small core W_K^T W_Q": (d_h * d_h, "W_QK = W_Q W_K^T is d x d."),
            "the count of the factors": (2 * d * d_h, "count the entries of the d x d product itself."),
        },
        hint="W_QK = W_Q W_K^T has shape (d, d).",
        quiet=True,
    )
    check_value(
        n_free,
        want["free"],
        name="free parameters of W_QK",
        rtol=0,
        atol=0.01,  # a count: exact
        mistakes={
            "the count of the factors, forgetting the redundancy": (
                2 * d * d_h,
                "(W_Q M, W_K M^{-T}) gives the same product for every invertible d_h x d_h matrix M: subtract those directions.",
            ),
            "all d^2 entries": (d * d, "W_QK has rank at most d_h, so it cannot be an arbitrary d x d matrix."),
            "a redundancy of d_h (one rescaling per column) instead of d_h^2": (
                2 * d * d_h - d_h,
                "M can be any invertible d_h x d_h matrix, not only a diagonal one: it has d_h^2 entries.",
            ),
        },
        hint="start from the factors and subtract the number of entries of the matrix M that cancels in W_Q M (W_K M^{-T})^T.",
        quiet=True,
    )
    if not quiet:
        print(
            f"\u2713 ex-count: W_Q and W_K hold {want['factors']} numbers, W_QK has {want['entries']} entries, "
            f"and {want['free']} of them are free (d = {d}, d_h = {d_h})."
        )
