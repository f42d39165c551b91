"""Check for chapter 4 (`chapters/04_entropy_collapse`): one power-iteration step (ex-power-step).

`check_power_step(fn)`: one step `v = W^T u/|W^T u|`, `u' = W v/|W v|`, `sigma = u'^T W v`, as
sigma-Reparam runs once per training step (`qklab.regularizers.SigmaReparam`); after 30 steps from
a fixed start the estimate must equal `torch.linalg.matrix_norm(W, 2)` (an independent reference,
from the SVD). `POWER_MISTAKES` lists the typical wrong steps. Not here: the entropy checks of the
same chapter (`qklab.checks.entropy_bounds`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, exercise, gaussian

__all__ = ["power_step_reference", "POWER_MISTAKES", "check_power_step"]


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
        if tuple(u_new.shape) != (W.shape[0],):
            raise ExerciseCheckError(f"u_new must have shape (m,) = {(W.shape[0],)} for W of shape {tuple(W.shape)}, got {tuple(u_new.shape)}")
        return torch.cat([u_new.reshape(-1).to(sigma.dtype if sigma.is_floating_point() else u_new.dtype), sigma.reshape(1).to(u_new.dtype)])

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
        axis_names=("entry of [u_new, sigma] (the last is sigma)",),
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
