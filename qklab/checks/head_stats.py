"""Checks for chapter 9 (`chapters/09_spectra_during_training`): the spectrum statistics of a head.

- `check_head_stats(fn)` (ex-head-stats): mean, variance (the bound `||W||_F^2/d - m^2`), scale
  and kappa of one head's `W_QK = W_Q W_K^T` over `n = d`, against `qklab.spectrum.QK`;
- `check_mimetic_kappa(fn)` (ex-mimetic-kappa): kappa of the mimetic target `alpha I + beta Z` for
  large `d`, `alpha / sqrt(alpha^2 + beta^2)`.

Not here: the eigenvalue exercises of chapter 6 (`qklab.checks.spectrum`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian
from qklab.spectrum import QK

__all__ = ["head_stats_reference", "HEAD_STATS_MISTAKES", "check_head_stats", "mimetic_kappa_reference", "MIMETIC_MISTAKES", "check_mimetic_kappa"]


def head_stats_reference(W_Q: Tensor, W_K: Tensor) -> Tensor:
    """`(..., 4)`: mean, variance (bound), scale, kappa of `W_Q W_K^T` over `n = d` (`qklab.spectrum.QK`)."""
    s = QK(W_Q, W_K).stats("d")
    return torch.stack([s["mean"], s["variance"], s["scale"], s["kappa"]], dim=-1)


def _stats_from(W_Q: Tensor, W_K: Tensor, n: int, fro: Tensor, var_kind: str = "bound") -> Tensor:
    tr = (W_Q * W_K).sum(dim=(-2, -1))
    m = tr / n
    if var_kind == "bound":
        var = fro / n - m**2
    elif var_kind == "trace":
        C = W_K.transpose(-2, -1) @ W_Q
        var = (C * C.transpose(-2, -1)).sum(dim=(-2, -1)) / n - m**2
    else:  # "raw": no mean subtracted
        var = fro / n
    scale = (fro / n).sqrt()
    return torch.stack([m, var, scale, m / scale], dim=-1)


def _fro(W_Q: Tensor, W_K: Tensor) -> Tensor:
    return (W_Q @ W_K.transpose(-2, -1)).pow(2).sum(dim=(-2, -1))


HEAD_STATS_MISTAKES = [
    Mistake(
        "n = d_h (the core) in place of n = d",
        lambda W_Q, W_K: _stats_from(W_Q, W_K, W_Q.shape[-1], _fro(W_Q, W_K)),
        "the exercise averages over all d eigenvalues, the d - d_h zeros included: divide by d = W_Q.shape[-2].",
    ),
    Mistake(
        "the trace variance tr(W^2)/d - m^2 in place of the bound ||W||_F^2/d - m^2",
        lambda W_Q, W_K: _stats_from(W_Q, W_K, W_Q.shape[-2], _fro(W_Q, W_K), "trace"),
        "for a non-symmetric W_QK, tr(W^2)/d - m^2 can be negative; the variance the book tracks is ||W||_F^2/d - m^2.",
    ),
    Mistake(
        "the second moment ||W||_F^2/d without subtracting m^2",
        lambda W_Q, W_K: _stats_from(W_Q, W_K, W_Q.shape[-2], _fro(W_Q, W_K), "raw"),
        "a variance is taken around the mean: subtract m^2.",
    ),
    Mistake(
        "||W_K^T W_Q||_F^2 (the core's Frobenius norm) in place of ||W_Q W_K^T||_F^2",
        lambda W_Q, W_K: _stats_from(W_Q, W_K, W_Q.shape[-2], (W_K.transpose(-2, -1) @ W_Q).pow(2).sum(dim=(-2, -1))),
        "the core has the same eigenvalues as W_QK but not the same Frobenius norm; use "
        "tr((W_Q^T W_Q)(W_K^T W_K)), or form W_Q W_K^T.",
    ),
    Mistake(
        "kappa = m / sqrt(variance) (a signal-to-noise ratio) in place of m / sqrt(m^2 + variance)",
        lambda W_Q, W_K: (lambda s: torch.cat([s[..., :3], (s[..., 0] / s[..., 1].sqrt()).unsqueeze(-1)], dim=-1))(
            _stats_from(W_Q, W_K, W_Q.shape[-2], _fro(W_Q, W_K))
        ),
        "kappa = m / r with the scale r = sqrt(m^2 + variance): it lies in [-1, 1].",
    ),
]


def _head_cases() -> list[Case]:
    d, d_h = 16, 4
    ident_q = torch.eye(d, d_h, dtype=torch.float64) * 0.9 + 0.05 * gaussian((d, d_h), 21)
    ident_k = torch.eye(d, d_h, dtype=torch.float64) * 1.1 + 0.05 * gaussian((d, d_h), 22)
    rot = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    rot_q = torch.zeros(4, 2, dtype=torch.float64)
    rot_q[:2] = torch.eye(2, dtype=torch.float64)
    rot_k = torch.zeros(4, 2, dtype=torch.float64)
    rot_k[:2] = rot.T  # W_Q W_K^T = rotation by 90 degrees in the first two coordinates
    return [
        Case("one Gaussian head, d = 8, d_h = 4", (gaussian((8, 4), 20), gaussian((8, 4), 23))),
        Case("a near-identity head (positive mean), d = 16, d_h = 4", (ident_q, ident_k)),
        Case("three heads at once, (3, 16, 4)", (gaussian((3, 16, 4), 24), gaussian((3, 16, 4), 25))),
        Case("a rotation block: eigenvalues +-i, trace variance negative", (rot_q, rot_k)),
        Case("a full-rank head, d = d_h = 6", (gaussian((6, 6), 26), gaussian((6, 6), 27))),
    ]


@exercise("ex-head-stats", hint="m = tr(W)/d with tr(W) = <W_Q, W_K>_F; variance = ||W||_F^2/d - m^2; r = sqrt(||W||_F^2/d); kappa = m/r.")
def check_head_stats(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Chapter 9, ex-head-stats: `fn(W_Q, W_K)` with `(..., d, d_h)` inputs returns `(..., 4)`."""
    check_function(
        fn,
        head_stats_reference,
        _head_cases(),
        name="head_stats",
        axis_names=("statistic (0: m, 1: variance, 2: r, 3: kappa)",),
        mistakes=HEAD_STATS_MISTAKES,
        atol=1e-9,
        rtol=1e-7,
    )


def mimetic_kappa_reference(alpha: Tensor, beta: Tensor) -> Tensor:
    """kappa (over `n = d`, large `d`) of `alpha I + beta Z`, `Z` with i.i.d. `N(0, 1/d)` entries.

    `m = alpha + beta tr(Z)/d -> alpha` and `||W||_F^2/d -> alpha^2 + beta^2` (the cross term
    `2 alpha beta tr(Z)/d` vanishes), so `kappa -> alpha / sqrt(alpha^2 + beta^2)` (chapter 9).
    """
    return alpha / torch.sqrt(alpha**2 + beta**2)


MIMETIC_MISTAKES = [
    Mistake("alpha / (alpha + beta)", lambda a, b: a / (a + b),
            "kappa = m / r with r the root mean square of the entries' contribution: r^2 = alpha^2 + beta^2, not (alpha + beta)^2."),
    Mistake("alpha / beta (a signal-to-noise ratio)", lambda a, b: a / b,
            "kappa divides the mean by the scale sqrt(m^2 + variance), which includes the mean itself."),
    Mistake("alpha^2 / (alpha^2 + beta^2) (kappa squared)", lambda a, b: a**2 / (a**2 + b**2),
            "take the square root of the denominator only: kappa = m / sqrt(m^2 + s^2)."),
    Mistake("alpha / sqrt(alpha^2 + beta^2 / d) with d = 64 (Z's entries taken with variance 1/d^2)",
            lambda a, b: a / torch.sqrt(a**2 + b**2 / 64),
            "Z has d^2 entries of variance 1/d, so ||Z||_F^2 / d is about 1, not 1/d."),
]


@exercise("ex-mimetic-kappa", hint="m -> alpha and ||W||_F^2/d -> alpha^2 + beta^2 for large d; kappa = m / sqrt(||W||_F^2/d).")
def check_mimetic_kappa(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Chapter 9, ex-mimetic-kappa: `fn(alpha, beta)` (tensors, broadcast) returns kappa."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [
        Case("alpha = 0.5, beta = 1", (t(0.5), t(1.0))),
        Case("the package defaults alpha = beta = 0.7", (t(0.7), t(0.7))),
        Case("a grid of alpha with beta = 1", (t(0.1, 0.5, 1.0, 2.0, 4.0), t(1.0))),
        Case("no noise, beta = 0 (kappa = 1)", (t(0.3, 1.0), t(0.0))),
        Case("no identity, alpha = 0 (kappa = 0)", (t(0.0), t(0.5, 2.0))),
        Case("a negative identity weight", (t(-0.5), t(0.5))),
    ]
    check_function(fn, mimetic_kappa_reference, cases, name="mimetic_kappa", mistakes=MIMETIC_MISTAKES,
                   atol=1e-9, rtol=1e-7)
