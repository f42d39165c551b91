"""Checks for the capstone exercise of part II (chapter 10, `chapters/10_locater`).

What is here: `check_scale_mean_penalty(fn)`, the check of exercise `ex-scale-mean-penalty`:
LocAteR's scale-with-mean-held penalty of every head,

    P(W) = ||W||_F^2 / d + mu (tr(W)/d - m_0)^2,    W = W_Q W_K^T,

computed from `W_Q, W_K` (`(..., d, d_h)`) through the trace identities of chapter 6, without
forming the `d x d` matrix and without eigenvalues; the reference is that formula from the
factors (what `qklab.regularizers.locater_per_head(..., form="scale")` computes). Building a `QK`
inside the answer (directly or through `locater_per_head`) is refused: chapter 10 imports both
above the exercise, and they are the package's answer. The check runs the reader's function
under a watch on the shapes of the tensors it creates, so a solution that builds a `d x d` tensor
fails with that message even when its numbers are right; so does one that forms it in numpy
(the watch measures the memory allocated) or calls an eigen-solver (`qklab.checks.rules`). Recognised wrong answers (`MISTAKES`):
the mean term forgotten; `tr(W^2)` in place of `||W||_F^2`; normalising by `d_h` instead of `d`;
the weight `mu` dropped; the variance form `||W||_F^2/d - m^2` (which holds no mean).
`tests/test_checks_locater.py` feeds each of them, and a `d x d` solution, back in.

What is not here: the penalties used in training (`qklab.regularizers`), the engine
(`qklab.checks.core`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian
from qklab.checks.rules import obeying_rules
from qklab.checks.spectrum import refusing_qk

__all__ = ["scale_mean_penalty_reference", "MISTAKES", "check_scale_mean_penalty"]


def scale_mean_penalty_reference(W_Q: Tensor, W_K: Tensor, m0: float | Tensor, mu: float) -> Tensor:
    """`||W||_F^2/d + mu (tr(W)/d - m0)^2` per head, `(...)`: the package's "scale" form
    (`locater_per_head(..., form="scale")`), written from the factors, since `QK` is refused
    inside the reader's function (`qklab.checks.spectrum.refusing_qk`)."""
    d = W_Q.shape[-2]
    fro_sq = ((W_Q.transpose(-2, -1) @ W_Q) * (W_K.transpose(-2, -1) @ W_K)).sum(dim=(-2, -1))  # tr(G_Q G_K)
    mean = (W_Q * W_K).sum(dim=(-2, -1)) / d
    return fro_sq / d + mu * (mean - torch.as_tensor(m0, dtype=W_Q.dtype)) ** 2


def _dense(W_Q: Tensor, W_K: Tensor) -> tuple[Tensor, int, int]:
    return W_Q @ W_K.transpose(-2, -1), W_Q.shape[-2], W_Q.shape[-1]


def _tr(W: Tensor) -> Tensor:
    return W.diagonal(dim1=-2, dim2=-1).sum(-1)


def _no_mean(q, k, m0, mu):
    W, d, _ = _dense(q, k)
    return W.pow(2).sum((-2, -1)) / d


def _trace_sq(q, k, m0, mu):
    W, d, _ = _dense(q, k)
    return _tr(W @ W) / d + mu * (_tr(W) / d - m0) ** 2


def _over_dh(q, k, m0, mu):
    W, _, dh = _dense(q, k)
    return W.pow(2).sum((-2, -1)) / dh + mu * (_tr(W) / dh - m0) ** 2


def _no_mu(q, k, m0, mu):
    W, d, _ = _dense(q, k)
    return W.pow(2).sum((-2, -1)) / d + (_tr(W) / d - m0) ** 2


def _variance_form(q, k, m0, mu):
    W, d, _ = _dense(q, k)
    return W.pow(2).sum((-2, -1)) / d - (_tr(W) / d) ** 2


MISTAKES = [
    Mistake("the mean term forgotten (only ||W||_F^2/d)", _no_mean,
            "without the second term nothing holds the mean: the penalty would pull W to 0 and switch attention off."),
    Mistake("tr(W^2) in place of ||W||_F^2", _trace_sq,
            "tr(W W) counts the antisymmetric part with a minus sign (the unsafe statistic); the scale is the Frobenius norm, the sum of squared entries."),
    Mistake("normalised by d_h instead of d", _over_dh,
            "the spectrum of W has d eigenvalues (d - d_h of them zero): the mean and the scale are taken over all d."),
    Mistake("the weight mu dropped", _no_mu, "the mean term is multiplied by mu."),
    Mistake("the variance form ||W||_F^2/d - m^2", _variance_form,
            "that form leaves the mean free; this one pulls the mean towards m_0 with weight mu and adds the scale."),
]


@exercise("ex-scale-mean-penalty",
          hint="tr(W) is the Frobenius inner product of W_Q and W_K; ||W||_F^2 = tr((W_Q^T W_Q)(W_K^T W_K)), "
               "a product of two d_h x d_h Gram matrices; then divide by d and add the weighted mean term.")
def check_scale_mean_penalty(fn: Callable[[Tensor, Tensor, Any, float], Tensor]) -> None:
    """Chapter 10, ex-scale-mean-penalty: `fn(W_Q, W_K, m0, mu)` `(..., d, d_h)` -> `(...)`."""
    eye_q = torch.eye(12, 3, dtype=torch.float64)
    cases = [
        Case("one Gaussian head, d = 12, d_h = 3, m_0 = 0.5, mu = 10", (gaussian((12, 3), 40), gaussian((12, 3), 41), 0.5, 10.0)),
        Case("a head whose mean is exactly m_0 (the mean term vanishes)", (eye_q * 2.0, eye_q.clone(), 0.5, 10.0)),
        Case("a skewed head (W_K = W_Q rotated), mu = 1", (gaussian((12, 3), 42), gaussian((12, 3), 42).flip(0), -0.2, 1.0)),
        Case("two layers of three heads, (2, 3, 16, 4), m_0 per head",
             (gaussian((2, 3, 16, 4), 43), gaussian((2, 3, 16, 4), 44), gaussian((2, 3), 45, 0.1), 3.0)),
        Case("a wide head, d = 512, d_h = 2 (a d x d matrix would be 2 MiB), m_0 = -0.1, mu = 2",
             (gaussian((512, 2), 46), gaussian((512, 2), 47), -0.1, 2.0)),
    ]
    check_function(obeying_rules(refusing_qk(fn, name="scale_mean_penalty"), name="scale_mean_penalty"), scale_mean_penalty_reference, cases, name="scale_mean_penalty", mistakes=MISTAKES,
                   atol=1e-9, rtol=1e-7)
