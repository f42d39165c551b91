"""Checks for chapter 4 (`chapters/04_entropy_collapse`): how high the entropy of a head can be.

- `check_causal_max_entropy(value, T)` (ex-causal-max-entropy): the mean row entropy of uniform
  causal attention, `(1/T) sum_{i=0}^{T-1} log(i + 1) = log(T!)/T` nats, the entropy of a freshly
  initialised head (rows counted from 0: row `i` sees `i + 1` keys);
- `check_entropy_bound(fn)` (ex-entropy-bound): the course's own entropy lower bound
  `log(1 + (n - 1) exp(-2 sigma R^2 / sqrt(d_h)))` for a row with `n` visible keys.

Each check recognises the typical wrong answers listed beside it (`tests/test_checks_training.py`
feeds every one back in). Not here: the power-iteration step of the same chapter
(`qklab.checks.power_iteration`); the engine (`qklab.checks.core`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, check_value, exercise

__all__ = ["causal_max_entropy", "check_causal_max_entropy", "entropy_bound_reference", "BOUND_MISTAKES", "check_entropy_bound"]


# --- ex-causal-max-entropy --------------------------------------------------------------------------

def causal_max_entropy(T: int) -> float:
    """Mean row entropy (nats) of uniform causal attention over `T` tokens: `log(T!)/T`.

    Row `i` (0-based) sees `i + 1` keys; uniform attention over them has entropy `log(i + 1)`,
    the largest a causal row can have. Chapter 4 compares it with a head at initialisation.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return math.lgamma(T + 1) / T


@exercise("ex-causal-max-entropy", hint="row i (0-based) of a causal pattern sees i + 1 keys; uniform attention over n keys has entropy log n.")
def check_causal_max_entropy(value: object, T: int = 32) -> None:
    """Chapter 4, ex-causal-max-entropy: the mean row entropy of uniform causal attention."""
    expected = causal_max_entropy(T)
    check_value(
        value,
        expected,
        name=f"maximum mean entropy of a causal head (T = {T})",
        rtol=2e-3,
        mistakes={
            "log T, the entropy of uniform attention over all T keys (no causal mask)": (
                math.log(T),
                "with the causal mask, row i sees only i + 1 keys; average log(i + 1) over the rows.",
            ),
            "the entropy in bits (log base 2)": (
                expected / math.log(2),
                "the book measures entropy in nats: use the natural logarithm.",
            ),
            "the sum over rows instead of the mean": (math.lgamma(T + 1), "average the T row entropies, do not add them."),
            "the entropy normalised by log T (chapter 2's ratio)": (
                expected / math.log(T),
                "the question asks for nats, not the fraction of log T.",
            ),
            "an off-by-one: rows seeing 2, ..., T + 1 keys": (
                math.lgamma(T + 2) / T,
                "the first row (i = 0) sees one key, itself: its entropy is log 1 = 0.",
            ),
            "log(T/2), the entropy of the middle row": (
                math.log(T / 2),
                "the mean of log(i + 1) is not log of the mean number of keys (log is concave).",
            ),
        },
    )


# --- ex-entropy-bound ---------------------------------------------------------------------------

def entropy_bound_reference(sigma: Tensor, R: Tensor, d_h: int, n: Tensor) -> Tensor:
    """The course's lower bound on the entropy of one attention row (chapter 4, [ours]).

    Scores `x_i^T W x_j / sqrt(d_h)` with `|x| <= R` and `||W||_2 = sigma` lie in an interval of
    width `Delta = 2 sigma R^2 / sqrt(d_h)`; then every weight is at most
    `1 / (1 + (n - 1) exp(-Delta))` and the entropy is at least `log(1 + (n - 1) exp(-Delta))`.
    Broadcasts over `sigma`, `R`, `n`.
    """
    delta = 2 * sigma * R**2 / math.sqrt(d_h)
    return torch.log1p((n - 1) * torch.exp(-delta))


BOUND_MISTAKES = [
    Mistake(
        "n in place of n - 1 (the row's own top key counted among the others)",
        lambda sigma, R, d_h, n: torch.log1p(n * torch.exp(-2 * sigma * R**2 / math.sqrt(d_h))),
        "the largest weight is e^{s_max} / (e^{s_max} + sum of the other n - 1 terms): there are n - 1 others.",
    ),
    Mistake(
        "a score interval of width sigma R^2 / sqrt(d_h) (the factor 2 is missing)",
        lambda sigma, R, d_h, n: torch.log1p((n - 1) * torch.exp(-sigma * R**2 / math.sqrt(d_h))),
        "each score lies in [-sigma R^2 / sqrt(d_h), +sigma R^2 / sqrt(d_h)]: two scores can differ by twice that.",
    ),
    Mistake(
        "no 1/sqrt(d_h) temperature",
        lambda sigma, R, d_h, n: torch.log1p((n - 1) * torch.exp(-2 * sigma * R**2)),
        "the scores are x_i^T W x_j / sqrt(d_h): divide by sqrt(d_h).",
    ),
    Mistake(
        "R in place of R^2",
        lambda sigma, R, d_h, n: torch.log1p((n - 1) * torch.exp(-2 * sigma * R / math.sqrt(d_h))),
        "|x_i^T W x_j| <= |x_i| ||W||_2 |x_j| <= sigma R^2: both tokens contribute a factor R.",
    ),
    Mistake(
        "log(1 + x) computed directly: it rounds to 0 where x is below about 1e-16",
        lambda sigma, R, d_h, n: torch.log(1 + (n - 1) * torch.exp(-2 * sigma * R**2 / math.sqrt(d_h))),
        "1 + x is 1 in floating point for a tiny x, and its log is 0; torch.log1p(x) keeps every digit.",
    ),
    Mistake(
        "log n - Delta (a linear bound that turns negative)",
        lambda sigma, R, d_h, n: torch.log(n) - 2 * sigma * R**2 / math.sqrt(d_h),
        "bound the largest weight first, then use H >= -log(max weight).",
    ),
]


@exercise("ex-entropy-bound", hint="Delta = 2 sigma R^2 / sqrt(d_h); the bound is log(1 + (n - 1) exp(-Delta)).")
def check_entropy_bound(fn: Callable[..., Tensor]) -> None:
    """Chapter 4, ex-entropy-bound: `fn(sigma, R, d_h, n)` (tensors broadcast, `d_h` an int)."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [
        Case("one row: sigma = 0.5, R = 1, d_h = 4, n = 10 keys", (t(0.5), t(1.0), 4, t(10.0))),
        Case("sigma = 0 (the bound is log n)", (t(0.0), t(2.0), 16, t(1.0, 2.0, 32.0))),
        Case("a single key, n = 1 (the bound is 0)", (t(3.0), t(1.5), 8, t(1.0))),
        Case("a training run: sigma grows, R = sqrt(32), d_h = 32, n = 32",
             (t(0.01, 0.1, 0.3, 1.0, 3.0), torch.full((5,), math.sqrt(32.0), dtype=torch.float64), 32, t(32.0))),
        Case("broadcasting over rows: n = 1, ..., 8", (t(0.2), t(1.0), 2, torch.arange(1, 9, dtype=torch.float64))),
        Case("a collapsed head: sigma = 5, R = sqrt(32), d_h = 32, n = 32 (a bound near 1e-23)",
             (t(5.0), t(math.sqrt(32.0)), 32, t(32.0))),
    ]
    check_function(
        fn,
        entropy_bound_reference,
        cases,
        name="entropy_lower_bound",
        mistakes=BOUND_MISTAKES,
        atol=0.0,  # relative only: the statement asks for every digit of a bound near 1e-23
        rtol=1e-7,
    )
