"""Checks for chapter 10 (`chapters/10_locater`): the statistics a LocAteR penalty may use.

- `check_unsafe_value(value)` (ex-unsafe-value): `tr(W^2)/n - m^2` of a scaled rotation block
  (`UNSAFE_EXAMPLE`), a negative number: why that statistic cannot be a penalty;
- `check_symmetric_penalty(fn)` (ex-symmetric-penalty): the symmetric-part variance
  `||W_sym||_F^2/d - m^2` from the trace identities, as
  `qklab.regularizers.locater_per_head(..., form="symmetric")`.

Not here: the regulariser itself (`qklab.regularizers`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, check_value, exercise, gaussian
from qklab.checks.rules import obeying_rules
from qklab.regularizers import locater_per_head
from qklab.spectrum import QK

__all__ = ["UNSAFE_EXAMPLE", "unsafe_example_matrix", "check_unsafe_value", "symmetric_penalty_reference", "SYMMETRIC_MISTAKES", "check_symmetric_penalty"]


#: The exercise's example: `d = 4`, `W = a [[0, 1], [-1, 0]]` in the first two coordinates, zeros elsewhere.
UNSAFE_EXAMPLE = {"d": 4, "a": 3.0}


def unsafe_example_matrix() -> Tensor:
    """The `4 x 4` matrix of `UNSAFE_EXAMPLE` (float64)."""
    d, a = UNSAFE_EXAMPLE["d"], UNSAFE_EXAMPLE["a"]
    W = torch.zeros(d, d, dtype=torch.float64)
    W[0, 1], W[1, 0] = a, -a
    return W


@exercise("ex-unsafe-value", hint="m = tr(W)/d; tr(W^2) = sum_ij W_ij W_ji (the sum of the squared eigenvalues, complex ones included); "
          "divide by d = 4 and subtract m^2.")
def check_unsafe_value(value: object) -> None:
    """Chapter 10, ex-unsafe-value: `tr(W^2)/d - m^2` for the rotation block of `UNSAFE_EXAMPLE`."""
    W = unsafe_example_matrix()
    d = UNSAFE_EXAMPLE["d"]
    m = float(torch.trace(W)) / d
    expected = float(torch.trace(W @ W)) / d - m**2
    fro = float(W.pow(2).sum())
    check_value(
        value,
        expected,
        name="tr(W^2)/d - m^2 of the rotation block",
        rtol=1e-6,
        mistakes={
            "the bounded variance ||W||_F^2/d - m^2": (fro / d, "tr(W^2) = sum_ij W_ij W_ji, not sum_ij W_ij^2: the antisymmetric entries enter with a minus sign."),
            "tr(W^2) without dividing by d": (float(torch.trace(W @ W)), "the statistic is per eigenvalue: divide by n = d = 4."),
            "n = 2 (only the non-zero block)": (float(torch.trace(W @ W)) / 2, "the exercise uses n = d = 4, all eigenvalues."),
            "zero (as if the penalty saw only the symmetric part)": (0.0, "compute tr(W W) entry by entry: W_01 W_10 + W_10 W_01."),
        },
    )


def symmetric_penalty_reference(W_Q: Tensor, W_K: Tensor) -> Tensor:
    """LocAteR form "symmetric", `||(W + W^T)/2||_F^2/d - m^2` per head, `(...)` (chapter 10)."""
    return locater_per_head(QK(W_Q, W_K), form="symmetric", over="d")


def _sym_variant(W_Q: Tensor, W_K: Tensor, which: str) -> Tensor:
    """A typical wrong penalty, from the trace identities (no `d x d` matrix, as the rule asks)."""
    d = W_Q.shape[-2]
    m = (W_Q * W_K).sum(dim=(-2, -1)) / d
    fro = ((W_Q.transpose(-2, -1) @ W_Q) * (W_K.transpose(-2, -1) @ W_K)).sum(dim=(-2, -1))
    C = W_K.transpose(-2, -1) @ W_Q
    tr2 = (C * C.transpose(-2, -1)).sum(dim=(-2, -1))
    if which == "bound":
        return fro / d - m**2
    if which == "trace":
        return tr2 / d - m**2
    if which == "no_half":
        return (fro + tr2) / d - m**2
    if which == "antisym":
        return (fro - tr2) / 2 / d - m**2
    raise ValueError(which)


SYMMETRIC_MISTAKES = [
    Mistake("the bounded variance of the whole W (form 'variance')", lambda q, k: _sym_variant(q, k, "bound"),
            "||W_sym||_F^2 = (||W||_F^2 + tr(W^2)) / 2: only the symmetric part counts here."),
    Mistake("the unsafe trace variance tr(W^2)/d - m^2", lambda q, k: _sym_variant(q, k, "trace"),
            "that is the unbounded statistic; the symmetric part's Frobenius norm is the average of ||W||_F^2 and tr(W^2)."),
    Mistake("||W||_F^2 + tr(W^2) without the factor 1/2", lambda q, k: _sym_variant(q, k, "no_half"),
            "||(W + W^T)/2||_F^2 = (||W||_F^2 + tr(W W))/2: (W + W^T)/2 has a factor 1/2 that is squared, and the cross term appears twice."),
    Mistake("the antisymmetric part (||W||_F^2 - tr(W^2))/2", lambda q, k: _sym_variant(q, k, "antisym"),
            "the symmetric part has a PLUS sign: ||W_sym||_F^2 = (||W||_F^2 + tr(W^2))/2."),
]


@exercise("ex-symmetric-penalty", hint="m = <W_Q, W_K>_F / d; ||W_sym||_F^2 = (||W||_F^2 + tr(W^2))/2 with the trace identities of chapter 6.")
def check_symmetric_penalty(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Chapter 10, ex-symmetric-penalty: `fn(W_Q, W_K)` `(..., d, d_h)` -> `(...)`.

    The statement's rule is enforced (`qklab.checks.rules`): an answer whose intermediates reach
    the size of the `d x d` matrix, in torch, numpy or Python lists, fails even when its numbers
    are right (judged on the cases where `d` is large against `d_h`).
    """
    rot = unsafe_example_matrix()
    U, S, Vh = torch.linalg.svd(rot)
    rot_q, rot_k = U[:, :2] * S[:2].sqrt(), Vh[:2].T * S[:2].sqrt()  # W_Q W_K^T = the rotation block
    cases = [
        Case("one Gaussian head, d = 8, d_h = 4", (gaussian((8, 4), 30), gaussian((8, 4), 31))),
        Case("a symmetric head (W_Q = W_K): all forms agree", (gaussian((6, 3), 32), None)),
        Case("a pure rotation block: symmetric part zero", (rot_q, rot_k)),
        Case("two layers of three heads, (2, 3, 12, 4)", (gaussian((2, 3, 12, 4), 33), gaussian((2, 3, 12, 4), 34))),
        Case("a wide head, d = 512, d_h = 2 (a d x d matrix would be 2 MiB)", (gaussian((512, 2), 35), gaussian((512, 2), 36))),
        Case("a head with d = 64, d_h = 8 (W would have 4,096 elements)", (gaussian((64, 8), 37), gaussian((64, 8), 38))),
    ]
    cases[1] = Case(cases[1].description, (cases[1].args[0], cases[1].args[0].clone()))
    check_function(obeying_rules(fn, name="symmetric_penalty", no_eigen=False), symmetric_penalty_reference, cases,
                   name="symmetric_penalty", mistakes=SYMMETRIC_MISTAKES,
                   atol=1e-9, rtol=1e-7)
