"""Checks for the exercises of chapter 6 (`chapters/06_qk_eigenspectrum`): the QK eigenspectrum.

- `check_zero_counts`: the predicted number of zero eigenvalues of `W_Q W_K^T` for two heads;
- `check_core_eigenvalues`: the non-zero eigenvalues from the `d_h x d_h` core `W_K^T W_Q`;
- `check_spectrum_moments`: the eigenvalue mean and second moment from trace identities.

Each check compares the reader's answer with `qklab.spectrum.QK` and recognises the typical wrong
answers listed in its `MISTAKES`, among them a symmetric eigen-solver (`eigvalsh`) applied to the
non-symmetric core. `check_spectrum_moments` enforces the statement's rules (no `d x d` matrix, no
eigen-solver, in torch or numpy: `qklab.checks.rules`). `tests/test_checks_spectrum.py` feeds every
mistake back in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

import torch
from torch import Tensor

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value, exercise
from qklab.checks.rules import obeying_rules
from qklab.kernel_answers import watch_where_it_runs
from qklab.spectrum import QK

__all__ = [
    "ZERO_COUNT_HEADS",
    "check_zero_counts",
    "zero_count_heads",
    "core_eigenvalues_reference",
    "check_core_eigenvalues",
    "spectrum_moments_reference",
    "check_spectrum_moments",
    "refusing_qk",
    "MOMENT_MISTAKES",
    "CORE_MISTAKES",
]

# --- exercise ex-zero-eigenvalues: predict, then count ---------------------------------------------

#: The two heads of the prediction exercise: width d, head width d_h, and how many of W_K's
#: columns are set to zero (head (b) uses only d_h - 4 of its dimensions).
ZERO_COUNT_HEADS = {"a": {"d": 48, "d_h": 12, "zero_columns": 0}, "b": {"d": 48, "d_h": 12, "zero_columns": 4}}


def zero_count_heads(seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """The two heads of `ZERO_COUNT_HEADS` as float64 `(W_Q, W_K)`, each `(48, 12)`."""
    g = torch.Generator().manual_seed(seed)
    heads = {}
    for name, spec in ZERO_COUNT_HEADS.items():
        W_Q = torch.randn(spec["d"], spec["d_h"], generator=g, dtype=torch.float64)
        W_K = torch.randn(spec["d"], spec["d_h"], generator=g, dtype=torch.float64)
        if spec["zero_columns"]:
            W_K[:, -spec["zero_columns"] :] = 0.0
        heads[name] = (W_Q, W_K)
    return heads


@exercise("ex-zero-eigenvalues")
def check_zero_counts(n_zero_a: object, n_zero_b: object) -> None:
    """Chapter 6, ex-zero-eigenvalues: how many eigenvalues of `W_Q W_K^T` are zero?

    Head (a): `d = 48`, `d_h = 12`, Gaussian factors. Head (b): the same, but the last 4 columns
    of `W_K` are zero.
    """
    a, b = ZERO_COUNT_HEADS["a"], ZERO_COUNT_HEADS["b"]
    rank_a = a["d_h"] - a["zero_columns"]
    rank_b = b["d_h"] - b["zero_columns"]
    check_value(
        n_zero_a,
        a["d"] - rank_a,
        name="zero eigenvalues of head (a)",
        rtol=0,
        atol=0.01,
        mistakes={
            "the number of NON-zero eigenvalues": (rank_a, "W_QK is d x d: it has d eigenvalues, of which at most d_h are non-zero."),
            "assuming a generic matrix has no zero eigenvalue": (0, "W_QK = W_Q W_K^T has rank at most d_h < d: what does that say about its null space?"),
            "all d eigenvalues": (a["d"], "the d_h directions of the column space of W_Q carry non-zero eigenvalues (for Gaussian factors)."),
        },
        hint="the rank of W_Q W_K^T is at most d_h; every vector of its null space is an eigenvector with eigenvalue 0.",
    )
    check_value(
        n_zero_b,
        b["d"] - rank_b,
        name="zero eigenvalues of head (b)",
        rtol=0,
        atol=0.01,
        mistakes={
            "the count for head (a): the zero columns were not taken into account": (
                b["d"] - b["d_h"],
                "W_Q W_K^T = sum over k of (column k of W_Q)(column k of W_K)^T: a zero column of W_K removes a term, so the rank drops.",
            ),
            "the number of zero columns": (b["zero_columns"], "count all eigenvalues that vanish, not only the new ones."),
            "the number of NON-zero eigenvalues": (rank_b, "W_QK is d x d: it has d eigenvalues."),
            "d minus the zero columns (the rank taken as d - 4)": (
                b["d"] - b["zero_columns"], "the rank is at most d_h to begin with; the zero columns lower it further, from d_h."),
        },
        hint="W_Q W_K^T is a sum of d_h outer products, one per column pair; how many of them are non-zero here?",
    )


# --- exercise ex-core-eigenvalues --------------------------------------------------------------------


def core_eigenvalues_reference(W_Q: Tensor, W_K: Tensor) -> Tensor:
    """The `d_h` complex eigenvalues of the core `W_K^T W_Q`, `(..., d_h)` (chapter 6)."""
    return QK(W_Q, W_K).eigenvalues(nonzero_only=True)


def _sorted_complex(fn: Callable[..., object]) -> Callable[..., object]:
    """Wrap `fn`: its output, sorted by (real part, imaginary part), as `(..., k, 2)` float64 pairs.

    The pairs (`torch.view_as_real`) let the check engine print the largest difference, which
    it cannot do for complex numbers.
    """

    @functools.wraps(fn)
    def wrapped(*args: object, **kwargs: object) -> object:
        out = fn(*args, **kwargs)
        if isinstance(out, np.ndarray):
            out = torch.as_tensor(out)
        if not isinstance(out, Tensor):
            return out
        out = out.detach().to(torch.complex128)
        if out.ndim == 0:
            return out
        by_imag = out.imag.sort(dim=-1, stable=True).indices
        out = out.gather(-1, by_imag)
        key = torch.round(out.real * 1e6)  # conjugate pairs share a real part up to rounding
        out = out.gather(-1, key.sort(dim=-1, stable=True).indices)
        return torch.view_as_real(out.contiguous())  # (..., k, 2): real and imaginary parts

    return wrapped


def _core(W_Q: Tensor, W_K: Tensor) -> Tensor:
    return W_K.transpose(-2, -1) @ W_Q  # (..., d_h, d_h)


CORE_MISTAKES = [
    Mistake(
        "the eigenvalues of the full d x d matrix W_Q W_K^T",
        lambda W_Q, W_K: torch.linalg.eigvals(W_Q @ W_K.transpose(-2, -1)),
        "the exercise asks for the d_h eigenvalues of the small core W_K^T W_Q (that is the shortcut): "
        "the other d - d_h eigenvalues of W_QK are zero.",
    ),
    Mistake(
        "a symmetric eigen-solver (eigvalsh) on the non-symmetric core",
        lambda W_Q, W_K: torch.linalg.eigvalsh(_core(W_Q, W_K)),
        "eigvalsh assumes a symmetric matrix and reads only its lower triangle; W_K^T W_Q is not symmetric, "
        "its eigenvalues can be complex: use torch.linalg.eigvals.",
    ),
    Mistake(
        "singular values in place of eigenvalues",
        lambda W_Q, W_K: torch.linalg.svdvals(_core(W_Q, W_K)),
        "singular values are never negative and never complex; eigenvalues are: use torch.linalg.eigvals.",
    ),
    Mistake(
        "the eigenvalues of a Gram matrix (W_Q^T W_Q or W_K^T W_K)",
        lambda W_Q, W_K: torch.linalg.eigvals(W_Q.transpose(-2, -1) @ W_Q),
        "the core mixes both factors: W_K^T W_Q (d_h x d_h).",
    ),
]


def _core_cases() -> list[Case]:
    g = torch.Generator().manual_seed(61)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    rotation_Q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    rotation_K = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    return [
        Case("one head, d = 6, d_h = 2", (rnd(6, 2), rnd(6, 2))),
        Case("a rotation head whose eigenvalues are +i and -i (d = 3, d_h = 2)", (rotation_Q, rotation_K)),
        Case("a stack of 3 heads, d = 8, d_h = 4", (rnd(3, 8, 4), rnd(3, 8, 4))),
        Case("d_h = 1 (rank one: one eigenvalue, <W_Q, W_K>)", (rnd(5, 1), rnd(5, 1))),
        Case("d_h = d = 5", (rnd(5, 5), rnd(5, 5))),
    ]


@exercise("ex-core-eigenvalues", hint="form the d_h x d_h matrix W_K^T W_Q (batch-friendly: W_K.transpose(-2, -1) @ W_Q) and take torch.linalg.eigvals.")
def check_core_eigenvalues(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Chapter 6, ex-core-eigenvalues: `fn(W_Q, W_K)` returns the `d_h` eigenvalues of the core.

    Order does not matter (both sides are sorted); real output is compared as complex. Messages
    show eigenvalues as (real, imaginary) pairs: a shape `(..., k, 2)` means `k` eigenvalues.
    """
    check_function(
        _sorted_complex(fn),
        _sorted_complex(core_eigenvalues_reference),
        _core_cases(),
        name="core_eigenvalues",
        mistakes=[Mistake(m.label, _sorted_complex(m.fn), m.hint) for m in CORE_MISTAKES],
        atol=1e-6,
        rtol=1e-5,
        axis_names=("eigenvalue (sorted)", "part (0: real, 1: imaginary)"),
    )


# --- exercise ex-trace-moments -----------------------------------------------------------------------


def spectrum_moments_reference(W_Q: Tensor, W_K: Tensor) -> Tensor:
    """`[m, tr(W_QK^2)/d]` per head, `(..., 2)`: eigenvalue mean and second moment over `n = d`,
    from the trace identities (what `QK.mean` and `QK.second_moment` compute; `QK` itself is
    refused inside the reader's function, so the reference does without it too)."""
    d = W_Q.shape[-2]
    C = W_K.transpose(-2, -1) @ W_Q  # the d_h x d_h core
    mean = (W_Q * W_K).sum(dim=(-2, -1)) / d
    second = (C * C.transpose(-2, -1)).sum(dim=(-2, -1)) / d
    return torch.stack([mean, second], dim=-1)


@watch_where_it_runs  # under `make check-exercise`: in the kernel, where the learner's function builds its QK
def refusing_qk(fn: Callable[..., object], *, name: str) -> Callable[..., object]:
    """`fn`, run so that building a `qklab.spectrum.QK` inside it raises `ExerciseCheckError`.

    For the exercises a chapter asks after `QK` is in its notebook (6.3, 10.3): `QK`'s methods
    (and `locater_per_head`, which takes a `QK`) compute their answers, and the statement asks for
    them written from `W_Q` and `W_K`.
    """

    @functools.wraps(fn)
    def guarded(*args: object, **kwargs: object) -> object:
        original = QK.__init__

        def refuse(self: QK, *a: object, **k: object) -> None:
            raise ExerciseCheckError(
                f"{name} builds qklab's QK (directly, or through a function such as locater_per_head): that is the "
                "package's answer to this exercise, not yours. Write it from W_Q and W_K with torch operations.")

        QK.__init__ = refuse  # type: ignore[method-assign]
        try:
            return fn(*args, **kwargs)
        finally:
            QK.__init__ = original  # type: ignore[method-assign]

    return guarded


def _trace_parts(W_Q: Tensor, W_K: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    C = _core(W_Q, W_K)
    tr = (W_Q * W_K).sum(dim=(-2, -1))
    tr_sq = (C * C.transpose(-2, -1)).sum(dim=(-2, -1))
    return tr, tr_sq, C


MOMENT_MISTAKES = [
    Mistake(
        "dividing by d_h instead of d",
        lambda W_Q, W_K: torch.stack([t / W_Q.shape[-1] for t in _trace_parts(W_Q, W_K)[:2]], dim=-1),
        "this exercise uses n = d: all d eigenvalues count, the d - d_h zeros included.",
    ),
    Mistake(
        "||C||_F^2 in place of tr(C^2)",
        lambda W_Q, W_K: torch.stack(
            [_trace_parts(W_Q, W_K)[0], _trace_parts(W_Q, W_K)[2].pow(2).sum(dim=(-2, -1))], dim=-1
        )
        / W_Q.shape[-2],
        "tr(C^2) = sum_ij C_ij C_ji (C times itself), while ||C||_F^2 = sum_ij C_ij^2 (C times its transpose): "
        "they agree only for symmetric C.",
    ),
    Mistake(
        "the squared mean in place of the mean of the squares",
        lambda W_Q, W_K: torch.stack(
            [_trace_parts(W_Q, W_K)[0] / W_Q.shape[-2], (_trace_parts(W_Q, W_K)[0] / W_Q.shape[-2]) ** 2], dim=-1
        ),
        "the second moment is (1/d) sum_i lambda_i^2 = tr(W^2)/d, not m^2.",
    ),
]


def _moment_cases() -> list[Case]:
    g = torch.Generator().manual_seed(62)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    W = rnd(7, 3)
    return [
        Case("one head, d = 6, d_h = 2", (rnd(6, 2), rnd(6, 2))),
        Case("a stack of 3 heads, d = 8, d_h = 4", (rnd(3, 8, 4), rnd(3, 8, 4))),
        Case("d_h = 1", (rnd(5, 1), rnd(5, 1))),
        Case("a symmetric head, W_Q = W_K (d = 7, d_h = 3)", (W, W.clone())),
        Case("a float32 head, d = 16, d_h = 4", (rnd(16, 4).float(), rnd(16, 4).float())),
        Case("a wide head, d = 512, d_h = 2 (a d x d matrix would be 2 MiB)", (rnd(512, 2), rnd(512, 2))),
        Case("a float32 head, d = 64, d_h = 4 (W would have 4,096 elements)", (rnd(64, 4).float(), rnd(64, 4).float())),
    ]


def _real_if_complex(fn: Callable[..., object]) -> Callable[..., object]:
    """Accept complex output whose imaginary part is negligible (e.g. from eigvals) as real."""

    @functools.wraps(fn)
    def wrapped(*args: object, **kwargs: object) -> object:
        out = fn(*args, **kwargs)
        if isinstance(out, Tensor) and out.is_complex():
            if float(out.imag.abs().max()) <= 1e-6 * max(1.0, float(out.real.abs().max())):
                return out.real
        return out

    return wrapped


@exercise("ex-trace-moments", hint="mean = <W_Q, W_K>_F / d and second moment = tr(C C) / d with C = W_K^T W_Q; stack them on the last axis.")
def check_spectrum_moments(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Chapter 6, ex-trace-moments: `fn(W_Q, W_K)` returns `[mean, second moment]`, `(..., 2)`, over `n = d`."""
    check_function(
        _real_if_complex(obeying_rules(refusing_qk(fn, name="spectrum_moments"), name="spectrum_moments")),
        spectrum_moments_reference,
        _moment_cases(),
        name="spectrum_moments",
        axis_names=("moment (0: mean, 1: second moment)",),
        mistakes=MOMENT_MISTAKES,
        atol=1e-5,
        rtol=1e-4,
    )
