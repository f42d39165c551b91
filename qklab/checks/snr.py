"""Check for chapter 7's hard exercise (`chapters/07_localization`, ex-general-snr).

`check_general_snr(fn)`: the reader's `fn(W, T)` returns the logit signal-to-noise ratio
`SNR(tau)`, `tau = 1..T`, of random-walk tokens for a square `W` that need not be symmetric,
compared with `qklab.theory.predicted_snr_general` on symmetric, non-symmetric and nearly
antisymmetric matrices, with positive and negative traces (a negative trace gives a negative SNR). Typical wrong answers (`GENERAL_SNR_MISTAKES`) are the symmetric formula
applied as it is (the same as `tr(W^2)` in both variance terms), `||W||_F^2` in both, and a
forgotten cross term;
`tests/test_checks_snr.py` feeds each one back in. The statement's "no eigenvalues" is enforced
(`qklab.checks.rules`: no eigen-solver of torch, numpy or scipy inside `fn`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian
from qklab.checks.rules import obeying_rules
from qklab.theory import predicted_snr_general

__all__ = ["check_general_snr", "GENERAL_SNR_MISTAKES"]


def _parts(W: Tensor, T: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    W = W.to(torch.float64)
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    return tau, torch.trace(W), torch.trace(W @ W), (W * W).sum()


def _symmetric_formula(W: Tensor, T: int) -> Tensor:
    tau, tr, tr2, _ = _parts(W, T)
    return tau * tr / (tau * (T + tau) * tr2).sqrt()  # NaN when tr(W^2) < 0


def _frobenius_everywhere(W: Tensor, T: int) -> Tensor:
    tau, tr, _, fro = _parts(W, T)
    return tau * tr / (tau * (T + tau) * fro).sqrt()


def _no_cross_term(W: Tensor, T: int) -> Tensor:
    tau, tr, tr2, fro = _parts(W, T)
    return tau * tr / (tau**2 * (tr2 + fro)).sqrt()


GENERAL_SNR_MISTAKES = [
    Mistake("the symmetric formula (or tr(W^2) in both variance terms) applied to a non-symmetric W", _symmetric_formula,
            "the derivation of the chapter merged two different traces using W = W^T; keep them apart. "
            "The cross term x_tau^T W u has a variance that cannot be negative: which trace is that?"),
    Mistake("||W||_F^2 in both variance terms (Var(x^T W x) taken as 2 tau^2 ||W||_F^2)", _frobenius_everywhere,
            "the variance of the quadratic form x^T W x is not the same trace as the cross term's: only the "
            "symmetric part of W enters x^T W x."),
    Mistake("a forgotten cross term", _no_cross_term,
            "the query is x_tau plus the later steps; those steps contribute to the variance too."),
]


def _cases() -> list[Case]:
    sym = gaussian((6, 6), seed=11)
    sym = 0.5 * (sym + sym.T) + torch.eye(6, dtype=torch.float64)
    general = gaussian((8, 8), seed=12, std=0.4) + 0.5 * torch.eye(8, dtype=torch.float64)
    skew = gaussian((8, 8), seed=13)
    nearly_antisymmetric = (skew - skew.T) + 0.2 * torch.eye(8, dtype=torch.float64)  # tr(W^2) < 0
    return [
        Case("a symmetric 6 x 6 W, T = 5", (sym, 5)),
        Case("a non-symmetric 8 x 8 W, T = 10", (general, 10)),
        Case("a nearly antisymmetric W (tr(W^2) < 0), T = 16", (nearly_antisymmetric, 16)),
        Case("a 1 x 1 W, T = 1", (torch.tensor([[2.0]], dtype=torch.float64), 1)),
        # tr W < 0: the SNR is negative (the key is disfavoured); an answer that loses the sign fails here.
        Case("a W with a negative trace, 7 x 7, T = 6", (gaussian((7, 7), seed=14, std=0.4) - 0.6 * torch.eye(7, dtype=torch.float64), 6)),
        Case("a nearly antisymmetric W with a negative trace, T = 4", (-nearly_antisymmetric, 4)),
    ]


# The recipe is a path through the derivation, not its result: the derivation is the exercise.
GENERAL_SNR_RECIPE = (
    "E sqrt(d) z_tau = tau tr W. For the variance write x_T = x_tau + u, u independent of x_tau; the quadratic form "
    "x_tau^T W x_tau and the cross term x_tau^T W u are uncorrelated, so their variances add. For g ~ N(0, I): "
    "g^T W g = g^T W_sym g (only the symmetric part enters; compute Var for a symmetric matrix and express it "
    "through traces of W), and for h independent of g, Var(g^T W h) = E|W^T g|^2. Then scale each by the variances "
    "of x_tau and u, and divide the mean by the square root of the sum."
)


@exercise("ex-general-snr", hint=GENERAL_SNR_RECIPE)
def check_general_snr(fn: Callable[[Tensor, int], Tensor]) -> None:
    """Chapter 7, ex-general-snr: `fn(W, T)` returns `SNR(tau)` for `tau = 1..T`, shape `(T,)`."""
    check_function(
        obeying_rules(fn, name="snr_general", no_square=False, eigen_advice=(
            "The exercise asks for the SNR through traces of W (tr W, tr(W^2), ||W||_F^2), without eigenvalues: for a "
            "non-normal W the eigenvalues do not fix the SNR.")),
        predicted_snr_general,
        _cases(),
        name="snr_general",
        mistakes=GENERAL_SNR_MISTAKES,
        hint="derive the mean and the variance of x_tau^T W x_T with x_T = x_tau + u (u the steps after the key), "
        "without using W = W^T.",
        atol=1e-9,
        rtol=1e-7,
        axis_names=("tau",),
        index_from=(1,),
        dtype=torch.float64,  # the statement asks for "the float64 tensor"
    )
