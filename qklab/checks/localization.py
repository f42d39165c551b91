"""Checks for the exercises of chapter 7 (`chapters/07_localization`): sparsemax and the SNR.

- `check_sparsemax`: the reader's sparsemax against `qklab.attention.sparsemax`, on edge cases
  (one key, ties, large logits, masked keys written as `-inf`, including masked keys that would
  sit above the threshold if read as logit 0);
- `check_predicted_snr`: the course's closed-form logit signal-to-noise ratio for random-walk
  tokens against `qklab.theory.predicted_snr`.

Typical wrong answers are listed in `SPARSEMAX_MISTAKES` and `SNR_MISTAKES`;
`tests/test_checks_localization.py` feeds each one back in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from qklab.attention import sparsemax
from qklab.checks.core import Case, Mistake, check_function, exercise
from qklab.theory import kappa, predicted_snr

__all__ = ["check_sparsemax", "check_predicted_snr", "SPARSEMAX_MISTAKES", "SNR_MISTAKES"]


# --- exercise ex-sparsemax ---------------------------------------------------------------------------


def _threshold(z: Tensor) -> Tensor:
    """The sparsemax threshold of each row of a finite `z`, `(..., 1)`."""
    zs = z.sort(dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cums = zs.cumsum(-1)
    size = (1 + k * zs > cums).sum(-1, keepdim=True).clamp_min(1)
    return (cums.gather(-1, size - 1) - 1) / size.to(z.dtype)


def _all_keys_threshold(z: Tensor) -> Tensor:
    zeta = (z.sum(-1, keepdim=True) - 1) / z.shape[-1]
    return torch.clamp(z - zeta, min=0)


def _no_minus_one(z: Tensor) -> Tensor:
    zs = z.sort(dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cums = zs.cumsum(-1)
    size = (1 + k * zs > cums).sum(-1, keepdim=True).clamp_min(1)
    return torch.clamp(z - cums.gather(-1, size - 1) / size.to(z.dtype), min=0)


def _no_clamp(z: Tensor) -> Tensor:
    return z - _threshold(z)


def _masked_as_zero(z: Tensor) -> Tensor:
    return sparsemax(z.masked_fill(torch.isinf(z), 0.0), dim=-1)  # a masked key competes with logit 0


def _masked_in_support(z: Tensor) -> Tensor:
    """-inf replaced by 0 in the sorted row, and those zeros allowed into the support count k*."""
    zs = z.sort(dim=-1, descending=True).values
    finite = zs.masked_fill(torch.isinf(zs), 0.0)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cums = finite.cumsum(-1)
    size = (1 + k * finite > cums).sum(-1, keepdim=True).clamp_min(1)
    zeta = (cums.gather(-1, size - 1) - 1) / size.to(z.dtype)
    return torch.clamp(z - zeta, min=0)


SPARSEMAX_MISTAKES = [
    Mistake(
        "softmax",
        lambda z: torch.softmax(z, dim=-1),
        "sparsemax is the Euclidean projection onto the simplex: p_j = max(z_j - zeta, 0), not exp(z_j) / sum exp.",
    ),
    Mistake(
        "a threshold computed from all keys instead of the support",
        _all_keys_threshold,
        "zeta = (sum of the k* largest z - 1) / k*, where k* is the support size found from the sorted row; "
        "averaging over all T keys gives rows that do not sum to 1.",
    ),
    Mistake(
        "a threshold without the -1: zeta = (sum of the k* largest) / k*",
        _no_minus_one,
        "the threshold makes the row sum to 1: sum_{j<=k*} (z_(j) - zeta) = 1 gives zeta = (sum_{j<=k*} z_(j) - 1) / k*.",
    ),
    Mistake(
        "a missing max(., 0)",
        _no_clamp,
        "keys below the threshold get exactly 0: clamp z - zeta at 0 (torch.clamp(..., min=0)).",
    ),
    Mistake(
        "masked (-inf) keys treated as logit 0 (they then compete for the support)",
        _masked_as_zero,
        "a masked key must stay out of the support even when 0 would be above the threshold: compute the "
        "threshold from the finite entries only, and give the -inf entries probability 0.",
    ),
    Mistake(
        "masked (-inf) keys counted in the support size k*",
        _masked_in_support,
        "after replacing -inf by 0 for the cumulative sum, exclude those entries from the support test "
        "(k* counts finite keys only).",
    ),
]


def _sparsemax_cases() -> list[Case]:
    g = torch.Generator().manual_seed(71)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    masked = rnd(2, 5)
    masked[0, 1] = float("-inf")
    masked[1, 3:] = float("-inf")
    return [
        Case("one row z = [0, 0.5, 2] (support of one key)", (torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64),)),
        Case("a batch of 4 rows of 6 small logits (wide support)", (0.3 * rnd(4, 6),)),
        Case("a (2, 3, 8) batch of logits of size about 1", (rnd(2, 3, 8),)),
        Case("equal logits (the uniform row)", (torch.full((3, 4), 2.5, dtype=torch.float64),)),
        Case("a single key", (torch.tensor([[1.7], [-3.0]], dtype=torch.float64),)),
        Case("large logits (size 1000)", (1000 * rnd(3, 6),)),
        Case("masked keys written as -inf", (masked,)),
        # Masked keys that logit 0 would put in the support: [-1, -inf, -0.5] and a row where the
        # masked key sits between finite ones.
        Case("masked keys above the threshold if read as 0: rows [-1, -inf, -0.5] and [0.2, -inf, -0.3]",
             (torch.tensor([[-1.0, float("-inf"), -0.5], [0.2, float("-inf"), -0.3]], dtype=torch.float64),)),
        # Logits far below any finite stand-in for -inf (-1e4): the masked key must stay out.
        Case("very negative logits next to -inf: rows [-2e4, -inf, -2e4 + 1] and [-inf, -3e4, -3e4 + 0.5]",
             (torch.tensor([[-2e4, float("-inf"), -2e4 + 1.0], [float("-inf"), -3e4, -3e4 + 0.5]], dtype=torch.float64),)),
    ]


SPARSEMAX_RECIPE = (
    "sort each row in descending order, find the support size k* with 1 + k z_(k) > cumsum_k, "
    "set zeta = (cumsum_{k*} - 1) / k*, return max(z - zeta, 0). For -inf entries, make sure no NaN appears "
    "(e.g. replace -inf by 0 inside the cumulative sum and keep them out of the support)."
)


@exercise("ex-sparsemax", hint=SPARSEMAX_RECIPE)
def check_sparsemax(fn: Callable[[Tensor], Tensor]) -> None:
    """Chapter 7, ex-sparsemax: `fn(z)` is sparsemax over the last axis of `z`, `(..., T)` to `(..., T)`.

    Masked keys are `-inf` and must get probability 0.
    """
    check_function(
        fn,
        lambda z: sparsemax(z, dim=-1),
        _sparsemax_cases(),
        name="my_sparsemax",
        mistakes=SPARSEMAX_MISTAKES,
        atol=1e-9,
        rtol=1e-7,
        axis_names=("row", "key"),
    )


# --- exercise ex-predicted-snr -----------------------------------------------------------------------


def _tau(T: int) -> Tensor:
    return torch.arange(1, T + 1, dtype=torch.float64)


SNR_MISTAKES = [
    Mistake(
        "kappa = m / s (the sd alone) instead of m / sqrt(m^2 + s^2)",
        lambda m, s, d, T: math.sqrt(d) * (m / s) * (_tau(T) / (T + _tau(T))).sqrt(),
        "Var z involves tr(W^2) = d (m^2 + s^2): the mean eigenvalue adds to the noise too.",
    ),
    Mistake(
        "T - tau in place of T + tau",
        lambda m, s, d, T: math.sqrt(d) * kappa(m, s) * (_tau(T) / (T - _tau(T))).sqrt(),
        "the variance has two parts: the cross term x_tau^T W u and the quadratic form x_tau^T W x_tau itself "
        "(2 tau^2 tr(W^2)); check that both are in your sum, with their signs.",
    ),
    Mistake(
        "Var(x^T W x) without its factor 2 (tau^2 tr(W^2) instead of 2 tau^2 tr(W^2))",
        lambda m, s, d, T: math.sqrt(d) * kappa(m, s) * (_tau(T) / T).sqrt(),
        "for g ~ N(0, I) and symmetric W, g^T W g is a sum of lambda_i g_i^2, and Var(g_i^2) = 2.",
    ),
    Mistake(
        "a missing sqrt(d)",
        lambda m, s, d, T: kappa(m, s) * (_tau(T) / (T + _tau(T))).sqrt(),
        "E z = tau tr(W) = tau d m grows like d, sd z like sqrt(d): their ratio carries sqrt(d).",
    ),
    Mistake(
        "the i.i.d. formula sqrt(d/2) kappa at every position",
        lambda m, s, d, T: torch.full((T,), math.sqrt(d / 2) * kappa(m, s), dtype=torch.float64),
        "for a random walk the key x_tau and the query x_T share only the first tau steps: the variance is tau (T + tau) tr(W^2), not 2 tau^2 tr(W^2).",
    ),
    Mistake(
        "positions counted from 0",
        lambda m, s, d, T: math.sqrt(d) * kappa(m, s) * ((_tau(T) - 1) / (T + _tau(T) - 1)).sqrt(),
        "positions run over tau = 1, ..., T (x_1 is one step from the origin), so the last entry is the query's own key, tau = T.",
    ),
]


def _snr_cases() -> list[Case]:
    return [
        Case("mean 1, std 0.1, d = 64, T = 8", (1.0, 0.1, 64, 8)),
        Case("mean 0.5, std 0.5, d = 16, T = 4", (0.5, 0.5, 16, 4)),
        Case("zero mean (mean 0, std 1, d = 8, T = 5)", (0.0, 1.0, 8, 5)),
        Case("a negative mean (-0.3, std 0.2, d = 32, T = 6)", (-0.3, 0.2, 32, 6)),
        Case("a single token, T = 1", (0.7, 0.4, 10, 1)),
    ]


@exercise("ex-predicted-snr", hint="condition on x_tau: then x_tau^T W u is Gaussian with variance (T - tau) |W x_tau|^2, "
          "and E |W x_tau|^2 = tau tr(W^2) = tau d (m^2 + s^2). Add 2 tau^2 tr(W^2) for the quadratic form, take the "
          "square root, and divide the mean tau d m by it, for tau = 1..T.")
def check_predicted_snr(fn: Callable[[float, float, int, int], Tensor]) -> None:
    """Chapter 7, ex-predicted-snr: `fn(mean, std, d, T)` returns `SNR(tau)`, `tau = 1..T`, shape `(T,)`."""
    check_function(
        fn,
        lambda m, s, d, T: predicted_snr(m, s, d, T, tokens="random_walk"),
        _snr_cases(),
        name="snr_random_walk",
        mistakes=SNR_MISTAKES,
        atol=1e-9,
        rtol=1e-7,
        axis_names=("tau",),
        index_from=(1,),
        dtype=torch.float64,  # the statement asks for "the float64 tensor"
    )
