"""Check for chapter 10's matched-entropy exercise (`chapters/10_locater`, ex-matched-entropy).

`check_ppl_at_entropy(fn)`: the reader's `fn(entropy, ppl, h)` reads a method's perplexity off the
piecewise-linear curve through its (entropy, perplexity) points at entropy `h`, NaN outside the
points' range, compared with `qklab.findings.value_at`. The cases give the points in the order a
strength grid gives them (entropy not sorted), ask for `h` on a point, between points and outside
the range. Typical wrong answers (`MATCHED_MISTAKES`): the nearest point instead of a line between
two, points taken in the given order, and clamping to the nearest end (numpy's `interp`
default) instead of NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise
from qklab.findings import value_at

__all__ = ["check_ppl_at_entropy", "MATCHED_MISTAKES"]


def _nearest(entropy: Tensor, ppl: Tensor, h: float) -> Tensor:
    entropy, ppl = torch.as_tensor(entropy, dtype=torch.float64), torch.as_tensor(ppl, dtype=torch.float64)
    if not float(entropy.min()) <= h <= float(entropy.max()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    return ppl[int((entropy - h).abs().argmin())]


def _unsorted(entropy: Tensor, ppl: Tensor, h: float) -> Tensor:
    e, p = np.asarray(entropy, dtype=np.float64), np.asarray(ppl, dtype=np.float64)
    if not e.min() <= h <= e.max():
        return torch.tensor(float("nan"), dtype=torch.float64)
    return torch.tensor(float(np.interp(h, e, p)), dtype=torch.float64)  # np.interp assumes sorted x


def _clamped(entropy: Tensor, ppl: Tensor, h: float) -> Tensor:
    e, p = np.asarray(entropy, dtype=np.float64), np.asarray(ppl, dtype=np.float64)
    order = np.argsort(e)
    return torch.tensor(float(np.interp(h, e[order], p[order])), dtype=torch.float64)


MATCHED_MISTAKES = [
    Mistake("the perplexity of the nearest point instead of the line between the two around h", _nearest,
            "between two measured strengths the curve is a straight line: weigh the two neighbours by their distance to h."),
    Mistake("the points taken in the order given (the entropies are not sorted)", _unsorted,
            "the strengths come in their own order and the entropy does not always grow with them: sort the points by "
            "entropy first."),
    Mistake("a value outside the points' range clamped to the nearest end (numpy's interp default) instead of NaN",
            _clamped,
            "outside the measured entropies there is no curve to read: return NaN (float('nan')) there."),
]


def _cases() -> list[Case]:
    def t(v):
        return torch.tensor(v, dtype=torch.float64)

    grid_e, grid_p = t([1.02, 2.15, 1.61, 3.20, 2.02]), t([9.5, 8.6, 8.9, 9.5, 8.5])  # a strength grid's order
    return [
        Case("three points in increasing entropy, h between two of them", (t([1.0, 2.0, 3.0]), t([9.0, 8.0, 10.0]), 1.25)),
        Case("five points in a strength grid's order (entropy not sorted), h = 1.9", (grid_e, grid_p, 1.9)),
        Case("the same points, h on a measured point (2.15)", (grid_e, grid_p, 2.15)),
        Case("the same points, h = 2.6, between the two largest entropies", (grid_e, grid_p, 2.6)),
        Case("h below every measured entropy (0.5)", (grid_e, grid_p, 0.5)),
        Case("h above every measured entropy (3.5)", (grid_e, grid_p, 3.5)),
        Case("two points, perplexity falling with entropy, h = 1.5", (t([1.0, 2.0]), t([6.0, 5.0]), 1.5)),
        # The end points are measured: the curve is defined there (a strict inequality returns NaN).
        Case("h on the smallest measured entropy (1.02), an end of the curve", (grid_e, grid_p, 1.02)),
        Case("h on the largest measured entropy (3.20), the other end", (grid_e, grid_p, 3.20)),
        # The statement allows arrays: the committed sweep may come as numpy.
        Case("the five points as numpy arrays, h = 2.6", (grid_e.numpy(), grid_p.numpy(), 2.6)),
        Case("the five points as numpy arrays, h above every entropy (3.5)", (grid_e.numpy(), grid_p.numpy(), 3.5)),
    ]


@exercise("ex-matched-entropy", hint="sort the points by entropy; outside the range of the entropies return NaN; "
          "inside it, find the two neighbours of h and move along the straight line between them.")
def check_ppl_at_entropy(fn: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Chapter 10, ex-matched-entropy: `fn(entropy, ppl, h)` returns a 0-d perplexity (NaN outside the range)."""
    check_function(fn, value_at, _cases(), name="ppl_at_entropy", mistakes=MATCHED_MISTAKES, atol=1e-9, rtol=1e-6)  # any float dtype: a float32 answer (7 digits) passes; the named mistakes are off by more than 1e-3
