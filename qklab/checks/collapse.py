"""Checks for the exercises of chapters 3, 5 and 8 (rank collapse, the two collapses, the map).

Each `check_*` compares the reader's function (or number) with the reference of
`qklab.collapse` on several cases, edge cases included, and recognises the typical wrong answers
listed as `Mistake`s (tested in `tests/test_checks_collapse.py`).

Chapter 3: `check_stack_residuals`, `check_running_products`, `check_uniform_causal_residual`.
Chapter 5: `check_half_entropy_scale` (and `mean_normalized_entropy_reference`, the sweep's metric it bisects).
Chapter 8: `check_localization`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from qklab.attention import pattern
from qklab.checks.core import Case, ExerciseCheckError, Mistake, _as_number, check_function, check_value, exercise, gaussian
from qklab.collapse import (
    _band,
    attention_stack_residuals,
    localization,
    qk_pattern,
    random_stochastic,
    running_products,
)
from qklab.metrics import attention_entropy, token_residual
from qklab.spectrum import random_qk

__all__ = [
    "check_stack_residuals",
    "check_running_products",
    "check_uniform_causal_residual",
    "uniform_causal_residual_reference",
    "mean_normalized_entropy_reference",
    "check_half_entropy_scale",
    "half_entropy_scale_reference",
    "check_localization",
]


# --- chapter 3 -------------------------------------------------------------------------------------

def _stack_weights(L: int, d: int, d_h: int, seed: int, gain: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    return (
        gaussian((L, d, d_h), seed=seed, std=gain / math.sqrt(d)),
        gaussian((L, d, d_h), seed=seed + 1, std=gain / math.sqrt(d)),
        gaussian((L, d, d), seed=seed + 2, std=1 / math.sqrt(d)),
    )


def _stack_variant(*, scale: bool = True, softmax_dim: int = -1, norm: str = "l1inf", relative: bool = True,
                   with_input: bool = True, transpose_scores: bool = False, honour_causal: bool = True,
                   values: bool = True) -> Callable[..., Tensor]:
    """A (possibly mistaken) pure-attention stack residual curve, for recognising mistakes."""

    def fn(X: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, causal: bool = False) -> Tensor:
        res = [token_residual(X, relative=relative, norm=norm)] if with_input else []
        for l in range(W_Q.shape[0]):
            S = (X @ W_Q[l]) @ (X @ W_K[l]).transpose(-2, -1)
            if scale:
                S = S / math.sqrt(W_Q.shape[-1])
            if transpose_scores:
                S = S.transpose(-2, -1)
            c = causal and honour_causal
            if softmax_dim == -1:
                A = pattern(S, causal=c)
            else:
                S = S.masked_fill(~torch.ones_like(S, dtype=torch.bool).tril(), float("-inf")) if c else S
                A = torch.softmax(S, dim=softmax_dim)
            X = A @ X @ W_V[l] if values else A @ X
            res.append(token_residual(X, relative=relative, norm=norm))
        return torch.stack(res, dim=-1)

    return fn


_STACK_MISTAKES = [
    Mistake("a missing 1/sqrt(d_h) in the scores", _stack_variant(scale=False),
            "divide X W_Q (X W_K)^T by sqrt(d_h), with d_h = W_Q.shape[-1]."),
    Mistake("softmax over the queries (dim=-2) instead of the keys", _stack_variant(softmax_dim=-2),
            "each row of the pattern (one query) must sum to 1: softmax over dim=-1, or use qklab.attention.pattern."),
    Mistake("the scores transposed (keys used as queries)", _stack_variant(transpose_scores=True),
            "row i of the scores is query i: (X W_Q)(X W_K)^T, not (X W_K)(X W_Q)^T."),
    Mistake("the causal flag ignored", _stack_variant(honour_causal=False),
            "pass causal=causal to qklab.attention.pattern."),
    Mistake("the Frobenius norm instead of the composite norm", _stack_variant(norm="fro"),
            "use qklab.metrics.token_residual(X) with its default norm='l1inf' (Dong et al.'s sqrt(||.||_1 ||.||_inf))."),
    Mistake("the absolute residual instead of the relative one", _stack_variant(relative=False),
            "divide by the norm of X itself: token_residual(X, relative=True), the default."),
    Mistake("a curve without the input's residual", _stack_variant(with_input=False),
            "start the list with the residual of the input X, so the result has L + 1 entries."),
    Mistake("the values W_V left out (X = A X)", _stack_variant(values=False),
            "each layer maps X to A X W_V[l]: multiply by the layer's value matrix too."),
]


@exercise("ex-stack-residuals", hint="layer l: A = pattern(X W_Q[l] (X W_K[l])^T / sqrt(d_h), causal), then X = A X W_V[l]; "
          "record token_residual(X) before the first layer and after every layer.")
def check_stack_residuals(fn: Callable[..., Tensor]) -> None:
    """Chapter 3, exercise `ex-stack-residuals`: `fn(X, W_Q, W_K, W_V, causal=False) -> (..., L + 1)`."""
    X1 = gaussian((6, 4), seed=1)
    cases = [
        Case("one layer, T = 6, d = 4", (X1, *_stack_weights(1, 4, 4, seed=10, gain=2.0))),
        Case("three layers, d_h = 2 < d = 4", (X1, *_stack_weights(3, 4, 2, seed=20, gain=3.0))),
        Case("a batch of 3 sequences, two layers", (gaussian((3, 5, 4), seed=2), *_stack_weights(2, 4, 4, seed=30, gain=2.0))),
        Case("causal mask, two layers", (X1, *_stack_weights(2, 4, 4, seed=40, gain=2.0)), {"causal": True}),
        Case("a single token (T = 1): the residual is 0", (gaussian((1, 4), seed=3), *_stack_weights(2, 4, 4, seed=50))),
    ]
    check_function(fn, attention_stack_residuals, cases, name="stack_residuals", mistakes=_STACK_MISTAKES)


def _wrong_order_products(A: Tensor) -> Tensor:
    """`P_l = A_1 A_2 ... A_l` (the newest layer on the right), batch-friendly."""
    P = A[..., 0, :, :]
    out = [P]
    for l in range(1, A.shape[-3]):
        P = P @ A[..., l, :, :]
        out.append(P)
    return torch.stack(out, dim=-3)


_PRODUCT_MISTAKES = [
    Mistake("the products in the wrong order (A_1 A_2 ... A_l)",
            lambda A: _wrong_order_products(A),
            "the newest layer acts last, on the left: P_l = A_l P_{l-1}."),
    Mistake("an elementwise product instead of a matrix product",
            lambda A: torch.cumprod(A, dim=-3), "use the matrix product @, not *."),
    Mistake("only the last product P_L", lambda A: running_products(A)[..., -1, :, :],
            "return every P_l, stacked along dimension -3: shape (..., L, T, T)."),
]


@exercise("ex-running-products", hint="start with P = A[..., 0, :, :], then P = A[..., l, :, :] @ P, and stack the P's along dim=-3.")
def check_running_products(fn: Callable[[Tensor], Tensor]) -> None:
    """Chapter 3, exercise `ex-running-products`: `fn(A) -> (..., L, T, T)`, `P_l = A_l ... A_1`."""
    cases = [
        Case("a single matrix (L = 1)", (random_stochastic(1, 4, 1.0, seed=1),)),
        Case("three 4 x 4 stochastic matrices", (random_stochastic(3, 4, 2.0, seed=2),)),
        Case("a batch of 2 sequences of 3 causal matrices", (random_stochastic((2, 3), 5, 2.0, causal=True, seed=3),)),
        Case("non-stochastic 3 x 3 matrices (the order matters)", (gaussian((4, 3, 3), seed=4),)),
    ]
    check_function(fn, running_products, cases, name="running_products", mistakes=_PRODUCT_MISTAKES,
                   axis_names=("layer", "row", "column"))


def uniform_causal_residual_reference() -> float:
    """Relative residual (composite norm) after one uniform causal layer on the tokens `I_3`."""
    A = pattern(torch.zeros(3, 3, dtype=torch.float64), causal=True)
    return float(token_residual(A @ torch.eye(3, dtype=torch.float64)))


@exercise("ex-uniform-causal", hint="the output is A itself (X = I); subtract its mean row (the token mean), then take "
          "sqrt(max column abs-sum * max row abs-sum) of the residual and of A, and divide.")
def check_uniform_causal_residual(value: float) -> None:
    """Chapter 3, exercise `ex-uniform-causal`: the predicted residual after one uniform causal layer.

    Mistakes are named only within a tenth of the accepting tolerance (the engine's rule): the
    feature mean (0.7785) and the absolute residual (0.7778) are 1e-3 apart.
    """
    Y = pattern(torch.zeros(3, 3, dtype=torch.float64), causal=True)
    feature_res = Y - Y.mean(dim=-1, keepdim=True)  # each token minus the mean of its own coordinates
    l1inf = lambda M: float(torch.sqrt(M.abs().sum(-2).amax(-1) * M.abs().sum(-1).amax(-1)))  # noqa: E731
    l1 = lambda M: M.abs().sum(-2).amax(-1)  # noqa: E731  (the largest column abs-sum)
    check_value(value, uniform_causal_residual_reference(), name="uniform causal residual", rtol=2e-3, atol=1e-4,
                mistakes={
                    "the answer without the causal mask": (0.0, "row i averages the keys j <= i only, not all three."),
                    # ||A X||_inf = 1 (the rows of A sum to one), so the absolute residual and the
                    # infinity norm alone give the same number (7/9): no case can tell them apart
                    # in this exercise, so the message names both and the hint covers both.
                    "the absolute residual (not divided by the norm of A X), or the infinity norm alone "
                    "instead of the composite norm (the two give the same number here, since ||A X||_inf = 1)": (
                        float(token_residual(Y, relative=False)),
                        "check both: the norm is the composite sqrt(||M||_1 ||M||_inf), for the residual and for A X "
                        "alike (not the largest row sum alone), and the residual's norm is divided by that of A X."),
                    "the 1-norm alone (the largest column abs-sum) instead of the composite norm": (
                        float(l1(Y - Y.mean(dim=-2, keepdim=True))) / float(l1(Y)),
                        "the composite norm is sqrt(||M||_1 ||M||_inf): the largest column sum times the largest row sum, "
                        "then the square root."),
                    "the Frobenius norm": (float(token_residual(Y, norm="fro")), "use the composite norm sqrt(||.||_1 ||.||_inf)."),
                    "the residual of the input X = I": (float(token_residual(torch.eye(3, dtype=torch.float64))),
                                                        "apply the layer first: the output is A X = A."),
                    "the feature mean (each row minus the mean of its own entries) instead of the token mean": (
                        l1inf(feature_res) / l1inf(Y), "the residual subtracts the mean TOKEN (the mean of the rows) from every row."),
                    "the feature mean, and the absolute residual": (
                        l1inf(feature_res), "subtract the mean row (token mean), and divide by the norm of A X."),
                })


# --- chapter 5 -------------------------------------------------------------------------------------

def mean_normalized_entropy_reference(X: Tensor, W: Tensor) -> Tensor:
    """Mean over rows (and sequences) of the entropy of `qk_pattern(X, W)` divided by `log T`; `()`."""
    return attention_entropy(qk_pattern(X, W), normalize="log_T")


def half_entropy_scale_reference(X: Tensor, B: Tensor, lo: float = 1e-3, hi: float = 1e3, steps: int = 40) -> float:
    """The scale `r` at which `mean_normalized_entropy(X, r B)` crosses 1/2, by bisection on `log r`."""
    f = lambda r: float(mean_normalized_entropy_reference(X, r * B)) - 0.5  # noqa: E731
    if f(lo) < 0 or f(hi) > 0:
        raise ValueError("the entropy does not cross 1/2 between lo and hi")
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        mid = (a + b) / 2
        a, b = (mid, b) if f(math.exp(mid)) > 0 else (a, mid)
    return math.exp((a + b) / 2)


def _half_scale_of(metric: Callable[[float], float], target: float, lo: float = 1e-3, hi: float = 1e3) -> float:
    a, b = math.log(lo), math.log(hi)
    for _ in range(40):
        mid = (a + b) / 2
        a, b = (mid, b) if metric(math.exp(mid)) > target else (a, mid)
    return math.exp((a + b) / 2)


@exercise("ex-half-entropy", hint="the entropy falls as r grows: bisect on log r between 1e-3 and 1e3 until H(r) / log T = 1/2.")
def check_half_entropy_scale(fn: Callable[..., float]) -> None:
    """Chapter 5, exercise `ex-half-entropy`: `fn(X, B) -> r` where the mean normalised entropy is 1/2.

    The answer may be any real number type (float, 0-d tensor or array, numpy scalar); a wrong
    shape, a NaN or an exception inside `fn` becomes an `ExerciseCheckError` naming it.
    """
    name = "half_entropy_scale"
    X16 = gaussian((4, 16, 16), seed=7)
    for case, X, B in (("B = I (a concentrated spectrum)", X16, torch.eye(16, dtype=torch.float64)),
                       ("B random, zero mean", X16, random_qk(16, 0.0, 1.0, seed=8, exact=True, dtype=torch.float64)),
                       ("B not symmetric, other sizes (3 sequences of 10 tokens, d = 6)",
                        gaussian((3, 10, 6), seed=9), gaussian((6, 6), seed=10) + torch.eye(6, dtype=torch.float64))):
        try:
            got = fn(X.clone(), B.clone())
        except NotImplementedError:
            raise ExerciseCheckError(f"{name}: not implemented yet. Replace the `raise NotImplementedError(...)` line with your code.") from None
        except Exception as err:
            raise ExerciseCheckError(f"{name} raised {type(err).__name__} on the case '{case}': {err}") from err
        r = _as_number(got, f"{name} ({case})", what="your function's return value")
        want = half_entropy_scale_reference(X, B)
        if math.isclose(r, want, rel_tol=HALF_ENTROPY_RTOL):
            print(f"\u2713 {name} ({case}): your answer is right.")
            continue
        # Only now compute what the typical mistakes give (each is a bisection of its own).
        H = lambda r: float(attention_entropy(qk_pattern(X, r * B)))  # noqa: E731  (nats, not normalised)
        check_value(r, want, name=f"{name} ({case})", rtol=HALF_ENTROPY_RTOL, mistakes=_half_entropy_mistakes(X, B, H))


# A bisection of 40 halvings on log r over [1e-3, 1e3] (the statement's) pins r to about 1e-11; 13
# halvings already reach 1e-3. The closest different quantity, the mean of each sequence's own
# crossing, is 0.5 % to 1.1 % away on the check's cases (2 % let it pass).
HALF_ENTROPY_RTOL = 1e-3


def _half_entropy_mistakes(X: Tensor, B: Tensor, H: Callable[[float], float]) -> dict[str, tuple[float, str]]:
    """What the typical mistakes give on `(X, B)` (`H(r)`: the mean entropy in nats), each a bisection of its own."""
    d = X.shape[-1]
    per_sequence = [_half_scale_of(lambda r, i=i: float(mean_normalized_entropy_reference(X[i], r * B)), 0.5)
                    for i in range(X.shape[0])]
    return {
        "the crossing of 0.5 nats (entropy not normalised by log T)": (_half_scale_of(H, 0.5), "compare H / log T with 1/2."),
        "the crossing of 1/2 with the scores not divided by sqrt(d)":
            (_half_scale_of(lambda r: float(mean_normalized_entropy_reference(X, r * math.sqrt(d) * B)), 0.5),
             "the scores are X (r B) X^T / sqrt(d)."),
        "the mean of each sequence's own crossing (one bisection per sequence)":
            (sum(per_sequence) / len(per_sequence),
             "bisect once, on the entropy averaged over every row of every sequence."),
    }


# --- chapter 8 -------------------------------------------------------------------------------------

def _localization_variant(*, divide: bool = True, edgeless: bool = False, full_baseline: bool = False,
                          ignore_window: bool = False) -> Callable[..., Tensor]:
    def fn(A: Tensor, window: int = 1, causal: bool = False) -> Tensor:
        T = A.shape[-1]
        w = 1 if ignore_window else window
        band = _band(T, w, causal).to(A.dtype)
        mass = (A * band).sum(-1).mean(-1)
        if not divide:
            return mass
        if edgeless:
            return mass / ((w if causal else 2 * w - 1) / T)
        visible = torch.ones(T, T, dtype=A.dtype) if (full_baseline or not causal) else torch.ones(T, T, dtype=A.dtype).tril()
        base = ((band * visible).sum(-1) / visible.sum(-1)).mean()
        return mass / base

    return fn


_LOCALIZATION_MISTAKES = [
    Mistake("the local mass without dividing by the uniform baseline", _localization_variant(divide=False),
            "divide by the local mass of uniform attention over the visible keys (1 means no preference)."),
    Mistake("a baseline (2 window - 1) / T that forgets the ends of the sequence", _localization_variant(edgeless=True),
            "near the first and last tokens the window holds fewer keys: average the uniform band mass over the rows."),
    Mistake("a baseline that ignores the mask", _localization_variant(full_baseline=True),
            "uniform causal attention spreads row i over i + 1 keys, not over T."),
    Mistake("the diagonal only (window ignored)", _localization_variant(ignore_window=True),
            "count every key within the window, not only the query token."),
]


@exercise("ex-localization", hint="mass = mean over rows of the attention on keys in the window; divide by the same quantity "
          "for uniform attention over the keys each query may see.")
def check_localization(fn: Callable[..., Tensor]) -> None:
    """Chapter 8, exercise `ex-localization`: `fn(A, window=1, causal=False) -> (...)`."""
    A1 = pattern(gaussian((6, 6), seed=1, std=2.0))
    cases = [
        Case("uniform attention over T = 5 (gives 1)", (torch.full((5, 5), 0.2, dtype=torch.float64),)),
        Case("a random 6 x 6 pattern, window 1", (A1,)),
        Case("a batch of patterns, window 2", (pattern(gaussian((3, 7, 7), seed=2, std=2.0)),), {"window": 2}),
        Case("a causal pattern, window 3", (pattern(gaussian((7, 7), seed=3, std=2.0), causal=True),), {"window": 3, "causal": True}),
        Case("the identity (all mass on the query), window 1", (torch.eye(4, dtype=torch.float64),)),
    ]
    check_function(fn, localization, cases, name="localization", mistakes=_LOCALIZATION_MISTAKES, axis_names=("pattern",))
