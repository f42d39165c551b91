"""Checks for the exercises of the training chapters 4, 9, 10 and 11.

What is here, by chapter (each check compares the reader's answer with an independent reference
and recognises the typical wrong answers listed beside it; `tests/test_checks_training.py` feeds
every one of them back in):

- Chapter 4 (`chapters/04_entropy_collapse`):
  `check_causal_max_entropy(value, T)`: the mean row entropy of uniform causal attention,
  `(1/T) sum_{i=1}^{T} log i = log(T!)/T` nats, the entropy of a freshly initialised head;
  `check_power_step(fn)`: one power-iteration step `v = W^T u/|W^T u|`, `u' = W v/|W v|`,
  `sigma = u'^T W v`, as sigma-Reparam runs once per training step (`qklab.regularizers.SigmaReparam`);
  after 30 steps from a fixed start the estimate must equal `torch.linalg.matrix_norm(W, 2)`;
  `check_entropy_bound(fn)`: the course's own entropy lower bound
  `log(1 + (n - 1) exp(-2 sigma R^2 / sqrt(d_h)))` for a row with `n` visible keys.
- Chapter 9 (`chapters/09_spectra_during_training`):
  `check_head_stats(fn)`: mean, variance (the bound `||W||_F^2/d - m^2`), scale and kappa of one
  head's `W_QK = W_Q W_K^T` over `n = d`, as `qklab.spectrum.QK`;
  `check_mimetic_kappa(fn)`: kappa of the mimetic target `alpha I + beta Z` for large `d`,
  `alpha / sqrt(alpha^2 + beta^2)`.
- Chapter 10 (`chapters/10_locater`):
  `check_unsafe_value(value)`: `tr(W^2)/n - m^2` of a scaled rotation block, a negative number;
  `check_symmetric_penalty(fn)`: the symmetric-part variance `||W_sym||_F^2/d - m^2` from the
  trace identities, as `qklab.regularizers.locater_per_head(..., form="symmetric")`.
- Chapter 11 (`chapters/11_where_next`):
  `check_layernorm_norm(value, d)`: the norm `sqrt(d)` of a LayerNorm output (no affine part);
  `check_embedding_norm(value, d, std)`: the expected norm `std sqrt(2 d)` of a token plus
  position embedding at initialisation (post-LN attention sees it directly).

What is not here: the engine (`qklab.checks.core`) and the training code (`qklab.train`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value, exercise, gaussian
from qklab.regularizers import locater_per_head
from qklab.spectrum import QK

__all__ = [
    "causal_max_entropy",
    "check_causal_max_entropy",
    "power_step_reference",
    "POWER_MISTAKES",
    "check_power_step",
    "entropy_bound_reference",
    "BOUND_MISTAKES",
    "check_entropy_bound",
    "head_stats_reference",
    "HEAD_STATS_MISTAKES",
    "check_head_stats",
    "mimetic_kappa_reference",
    "MIMETIC_MISTAKES",
    "check_mimetic_kappa",
    "UNSAFE_EXAMPLE",
    "unsafe_example_matrix",
    "check_unsafe_value",
    "symmetric_penalty_reference",
    "SYMMETRIC_MISTAKES",
    "check_symmetric_penalty",
    "check_layernorm_norm",
    "check_embedding_norm",
]


# === Chapter 4 ====================================================================================

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


# --- ex-power-step -------------------------------------------------------------------------------

def power_step_reference(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """One power-iteration step for the spectral norm of `W (m, n)` from `u (m,)`.

    `v = W^T u / |W^T u|`, `u' = W v / |W v|`, `sigma = u'^T W v`; returns `(u', sigma)`.
    The same step as `qklab.regularizers.SigmaReparam.power_step` (chapter 4).
    """
    v = F.normalize(W.transpose(-2, -1) @ u, dim=0)  # (n,)
    Wv = W @ v  # (m,)
    u_new = F.normalize(Wv, dim=0)  # (m,)
    return u_new, u_new @ Wv


def _no_normalisation(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    v = W.transpose(-2, -1) @ u
    u_new = W @ v
    return u_new, u_new @ (W @ v)


def _w_not_transposed(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    v = F.normalize(W @ u, dim=0)  # only runs for square W
    Wv = W @ v
    u_new = F.normalize(Wv, dim=0)
    return u_new, u_new @ Wv


def _sigma_old_u(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    v = F.normalize(W.transpose(-2, -1) @ u, dim=0)
    Wv = W @ v
    return F.normalize(Wv, dim=0), u @ Wv


def _sigma_squared(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    v = F.normalize(W.transpose(-2, -1) @ u, dim=0)
    Wv = W @ v
    return F.normalize(Wv, dim=0), Wv @ Wv


def _returns_v(W: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    v = F.normalize(W.transpose(-2, -1) @ u, dim=0)
    Wv = W @ v
    return v, F.normalize(Wv, dim=0) @ Wv


POWER_MISTAKES = [
    Mistake(
        "no normalisation of v and u",
        _no_normalisation,
        "divide W^T u and W v by their norms; otherwise the vectors grow like sigma^k and sigma = u^T W v is no longer "
        "an estimate of the spectral norm.",
    ),
    Mistake(
        "W u in place of W^T u for the first half-step",
        _w_not_transposed,
        "u lives in the output space of W (its rows); to map it to the input space use W^T: v = W^T u / |W^T u|.",
    ),
    Mistake(
        "sigma computed with the old u",
        _sigma_old_u,
        "after updating u to W v / |W v|, use the new u: sigma = u_new^T W v (= |W v|).",
    ),
    Mistake(
        "sigma squared (|W v|^2, an eigenvalue of W^T W)",
        _sigma_squared,
        "sigma is |W v| = u_new^T W v, not its square: the eigenvalues of W^T W are the squared singular values.",
    ),
    Mistake(
        "v returned in place of the new u",
        _returns_v,
        "return the left vector u_new = W v / |W v| (the one the next step starts from), not v.",
    ),
]


def _stacked(fn: Callable[..., object]) -> Callable[[Tensor, Tensor], object]:
    """`(W, u) -> cat([u', sigma])`: one tensor the check engine can compare."""

    def wrapped(W: Tensor, u: Tensor) -> object:
        out = fn(W, u)
        if not isinstance(out, tuple) or len(out) != 2:
            raise ExerciseCheckError(
                f"power_step must return a tuple (u_new, sigma), got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, tuple) else "")
            )
        u_new, sigma = out
        if isinstance(sigma, (int, float, np.floating, np.ndarray)) and not isinstance(sigma, bool):
            sigma = torch.as_tensor(np.asarray(sigma, dtype=np.float64))
        if isinstance(u_new, np.ndarray):
            u_new = torch.as_tensor(u_new)
        if not isinstance(u_new, Tensor) or not isinstance(sigma, Tensor):
            raise ExerciseCheckError(
                f"power_step must return two tensors, u_new of shape (m,) and sigma (a 0-d tensor); got "
                f"{type(u_new).__name__} and {type(sigma).__name__}"
            )
        if sigma.numel() != 1:
            raise ExerciseCheckError(f"sigma must be a single number (a 0-d tensor), got shape {tuple(sigma.shape)}")
        return torch.cat([u_new.reshape(-1), sigma.reshape(1)])

    return wrapped


def _iterated(fn: Callable[..., object], steps: int) -> Callable[[Tensor, Tensor], Tensor]:
    """`(W, u0) -> sigma` after `steps` applications of `fn`."""

    def wrapped(W: Tensor, u: Tensor) -> Tensor:
        sigma = None
        for _ in range(steps):
            u, sigma = fn(W, u)
        return sigma.reshape(()) if isinstance(sigma, Tensor) else sigma

    return wrapped


def _with_gap(m: int, n: int, seed: int) -> Tensor:
    """A float64 `(m, n)` matrix with singular values 3, 1.5, 1, 0.8, ...: a clear spectral gap."""
    U, _ = torch.linalg.qr(gaussian((m, m), seed))
    V, _ = torch.linalg.qr(gaussian((n, n), seed + 1))
    k = min(m, n)
    s = torch.tensor([3.0, 1.5] + [1.0 / (1 + 0.25 * i) for i in range(k - 2)], dtype=torch.float64)[:k]
    return (U[:, :k] * s) @ V[:, :k].T


def _power_cases() -> list[Case]:
    return [
        Case("a square 4 x 4 matrix, one step", (gaussian((4, 4), 1), gaussian((4,), 2))),
        Case("a wide 3 x 6 matrix, one step", (gaussian((3, 6), 3), gaussian((3,), 4))),
        Case("a tall 6 x 3 matrix, one step", (gaussian((6, 3), 5), gaussian((6,), 6))),
        Case("a large 64 x 64 matrix (entries of order 0.02), one step", (0.02 * gaussian((64, 64), 7), gaussian((64,), 8))),
    ]


@exercise("ex-power-step", hint="v = W^T u / |W^T u|, then u_new = W v / |W v|, and sigma = u_new^T W v.")
def check_power_step(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> None:
    """Chapter 4, ex-power-step: `fn(W (m, n), u (m,)) -> (u_new (m,), sigma ())`."""
    check_function(
        _stacked(fn),
        _stacked(power_step_reference),
        _power_cases(),
        name="power_step",
        mistakes=[Mistake(m.label, _stacked(m.fn), m.hint) for m in POWER_MISTAKES],
        atol=1e-8,
        rtol=1e-6,
        quiet=True,
    )
    converge = [
        Case("30 steps on a 5 x 5 matrix with singular values 3, 1.5, ...", (_with_gap(5, 5, 10), gaussian((5,), 11))),
        Case("30 steps on a 8 x 4 matrix with singular values 3, 1.5, ...", (_with_gap(8, 4, 12), gaussian((8,), 13))),
    ]
    check_function(
        _iterated(fn, 30),
        lambda W, u: torch.linalg.matrix_norm(W, ord=2),  # independent: from the SVD
        converge,
        name="power_step iterated 30 times vs torch.linalg.matrix_norm(W, 2)",
        mistakes=[Mistake(m.label, _iterated(m.fn, 30), m.hint) for m in POWER_MISTAKES],
        hint="each step must keep u and v of unit length; sigma then converges to the largest singular value.",
        atol=1e-8,
        rtol=1e-7,
        quiet=True,
    )
    print("\u2713 power_step: one step matches the reference on 4 matrices, and 30 steps converge to "
          "torch.linalg.matrix_norm(W, 2).")


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
    ]
    check_function(
        fn,
        entropy_bound_reference,
        cases,
        name="entropy_lower_bound",
        mistakes=BOUND_MISTAKES,
        atol=1e-9,
        rtol=1e-7,
    )


# === Chapter 9 ====================================================================================

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


# === Chapter 10 ===================================================================================

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
    d = W_Q.shape[-2]
    W = W_Q @ W_K.transpose(-2, -1)
    m = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d
    fro = W.pow(2).sum(dim=(-2, -1))
    tr2 = (W * W.transpose(-2, -1)).sum(dim=(-2, -1))
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
    """Chapter 10, ex-symmetric-penalty: `fn(W_Q, W_K)` `(..., d, d_h)` -> `(...)`."""
    rot = unsafe_example_matrix()
    U, S, Vh = torch.linalg.svd(rot)
    rot_q, rot_k = U[:, :2] * S[:2].sqrt(), Vh[:2].T * S[:2].sqrt()  # W_Q W_K^T = the rotation block
    cases = [
        Case("one Gaussian head, d = 8, d_h = 4", (gaussian((8, 4), 30), gaussian((8, 4), 31))),
        Case("a symmetric head (W_Q = W_K): all forms agree", (gaussian((6, 3), 32), None)),
        Case("a pure rotation block: symmetric part zero", (rot_q, rot_k)),
        Case("two layers of three heads, (2, 3, 12, 4)", (gaussian((2, 3, 12, 4), 33), gaussian((2, 3, 12, 4), 34))),
    ]
    cases[1] = Case(cases[1].description, (cases[1].args[0], cases[1].args[0].clone()))
    check_function(fn, symmetric_penalty_reference, cases, name="symmetric_penalty", mistakes=SYMMETRIC_MISTAKES,
                   atol=1e-9, rtol=1e-7)


# === Chapter 11 ===================================================================================

@exercise("ex-layernorm-norm", hint="after LayerNorm the d coordinates have mean 0 and (biased) variance 1: what is the sum of their squares?")
def check_layernorm_norm(value: object, d: int = 32) -> None:
    """Chapter 11, ex-layernorm-norm: `|LayerNorm(x)|` for `x` in `R^d` (gain 1, bias 0) is `sqrt(d)`."""
    check_value(
        value,
        math.sqrt(d),
        name=f"norm of a LayerNorm output (d = {d})",
        rtol=1e-3,
        mistakes={
            "1: LayerNorm does not normalise the vector to unit length": (1.0, "it makes each coordinate have mean 0 and variance 1 across the d coordinates."),
            "d, the squared norm": (float(d), "the sum of d squares of variance 1 is d; the norm is its square root."),
            "sqrt(d - 1) (an unbiased variance)": (math.sqrt(d - 1), "LayerNorm divides by the biased standard deviation (1/d, not 1/(d - 1))."),
        },
    )


@exercise("ex-embedding-norm", hint="each of the d coordinates is the sum of two independent N(0, std^2) numbers.")
def check_embedding_norm(value: object, d: int = 32, std: float = 0.02) -> None:
    """Chapter 11, ex-embedding-norm: typical norm of a token plus a position embedding at init, `std sqrt(2 d)`."""
    check_value(
        value,
        std * math.sqrt(2 * d),
        name=f"norm of token + position embedding at init (d = {d}, std = {std})",
        rtol=1e-3,
        mistakes={
            "std sqrt(d), the token embedding alone": (std * math.sqrt(d), "the attention input is the token embedding PLUS the learned position embedding: two independent vectors."),
            "std, one coordinate's standard deviation": (std, "a vector of d coordinates, each of standard deviation std, has norm about std sqrt(d)."),
            "2 std sqrt(d) (norms added)": (2 * std * math.sqrt(d), "independent random vectors add in squares: |a + b|^2 is about |a|^2 + |b|^2."),
            "sqrt(d) (as if a LayerNorm came first)": (math.sqrt(d), "in post-LN the first attention layer sees the raw embeddings, before any LayerNorm."),
        },
    )
