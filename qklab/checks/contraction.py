"""Check of chapter 3's hard exercise (`chapters/03_rank_collapse`): Dobrushin's bound is attained.

Dobrushin's coefficient of a row-stochastic `A` (`T x T`) is
`delta(A) = max_{i,i'} (1/2) sum_j |A_ij - A_i'j|`, and for every column `y`

    spread(A y) <= delta(A) spread(y),   spread(y) = max_j y_j - min_j y_j.

The exercise asks for the column that makes this an equality (so that `delta(A)` is the best
constant, not just a bound): `tight_column(A)` returns `y` of shape `(..., T)` with
`spread(y) > 0` and `spread(A y) = delta(A) spread(y)`. Many columns are right (any `a y + b`
with `a != 0` of a right one, and either orientation of the pair of rows), so the check does not
compare `y` with a reference column: it measures the fraction of the bound that the reader's
column attains, `q = spread(A y) / (delta(A) spread(y))` (`q = 1` when `delta(A) = 0`, where
every non-constant column attains the bound `0`), and asks for `q = 1` on every case. Typical
wrong columns (a row of `A`, a single column, the first two rows, columns of `A` instead of rows)
are recognised by the `q` they give.

Here: the reference `tight_column` (used by the chapter after the exercise), `attained_fraction`,
and `check_tight_column`. Not here: `delta(A)` itself, which is
`qklab.collapse.dobrushin_coefficient`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian
from qklab.checks.feedback import ExerciseCheckError, current_exercise
from qklab.collapse import dobrushin_coefficient

__all__ = ["tight_column", "attained_fraction", "check_tight_column"]


def _spread(y: Tensor) -> Tensor:
    """`max_j y_j - min_j y_j` over the last axis: `(..., T) -> (...)`."""
    return y.amax(dim=-1) - y.amin(dim=-1)


def _pair_indicator(A: Tensor, D: Tensor) -> Tensor:
    """`y_j = 1` where row `i` of `A` exceeds row `i'`, for the pair `(i, i')` maximising `D`: `(..., T)`."""
    T = A.shape[-1]
    flat = D.flatten(-2).argmax(dim=-1)  # (...,): index of the pair in the flattened (T, T) grid
    i, i2 = flat // T, flat % T
    row_i = torch.take_along_dim(A, i[..., None, None], dim=-2).squeeze(-2)  # (..., T)
    row_i2 = torch.take_along_dim(A, i2[..., None, None], dim=-2).squeeze(-2)  # (..., T)
    return (row_i > row_i2).to(A.dtype)


def tight_column(A: Tensor) -> Tensor:
    """A column `y` with `spread(A y) = delta(A) spread(y)`: the reference solution, `(..., T, T) -> (..., T)`.

    Take the pair of rows `(i, i')` with the largest `sum_j |A_ij - A_i'j|` and set `y_j = 1` where
    `A_ij > A_i'j`, else 0. Then `(A y)_i - (A y)_i' = delta(A)`, and Dobrushin's inequality caps
    the spread there. When all rows are equal (`delta = 0`) that indicator is 0 everywhere, and any
    non-constant column attains the bound: `e_0` is returned.
    """
    A = torch.as_tensor(A)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2] or A.shape[-1] < 2:
        raise ValueError(f"A must hold square matrices (..., T, T) with T >= 2, got shape {tuple(A.shape)}")
    D = (A.unsqueeze(-2) - A.unsqueeze(-3)).abs().sum(dim=-1)  # (..., T, T): ||A_i - A_i'||_1
    y = _pair_indicator(A, D)
    e0 = torch.zeros_like(y)
    e0[..., 0] = 1.0
    constant = (_spread(y) == 0)[..., None]
    return torch.where(constant, e0, y)


def attained_fraction(A: Tensor, y: Tensor, *, tol: float = 1e-12) -> Tensor:
    """`spread(A y) / (delta(A) spread(y))`, `(...)`: 1 when `y` attains Dobrushin's bound.

    Where `delta(A) <= tol` (all rows equal) the bound is `spread(A y) = 0`, attained by every
    column: the fraction is 1 there. Raises `ValueError` for a column of the wrong shape, with a
    non-finite entry, or constant (for which the bound says `0 <= 0`); a numpy column is accepted.
    """
    if isinstance(y, np.ndarray) and y.dtype.kind in "biuf":
        y = torch.from_numpy(y)
    if not isinstance(y, Tensor):
        raise ValueError(f"the column must be a torch.Tensor (or numpy array) of shape {tuple(A.shape[:-1])}, got a {type(y).__name__}")
    if y.shape != A.shape[:-1]:
        raise ValueError(f"the column has shape {tuple(y.shape)}, expected {tuple(A.shape[:-1])} (one entry per key)")
    if y.is_complex():
        raise ValueError("the column is complex; a real column is expected")
    y = y.detach().to(A.dtype)
    if not bool(torch.isfinite(y).all()):
        raise ValueError("the column has NaN or inf entries")
    spread_y = _spread(y)
    if bool((spread_y <= 1e-9 * y.abs().amax(dim=-1).clamp_min(1e-300)).any()):
        raise ValueError(
            "the column is constant (max = min, up to rounding): the bound then reads 0 <= 0 and shows nothing; "
            "return a column whose entries differ"
        )
    spread_Ay = _spread((A @ y.unsqueeze(-1)).squeeze(-1))  # (...,)
    delta = dobrushin_coefficient(A)  # (...,)
    flat = delta <= tol
    return torch.where(flat, torch.ones_like(delta), spread_Ay / (delta.clamp_min(tol) * spread_y))


def _fraction_of(column: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The function the check compares: the attained fraction of `column`'s answer (its input is not changed)."""

    def fraction(A: Tensor) -> Tensor:
        y = column(A.clone())  # an error here is the reader's own: check_function reports it as such
        try:
            return attained_fraction(A, y)
        except Exception as err:  # noqa: BLE001  (the check's own code refused the column: say so, not "raised")
            # An ExerciseCheckError passes through check_function as it is (and, unlike `fail`, does
            # not count an attempt: the engine also runs this on the other cases to name a mistake).
            raise ExerciseCheckError(
                f"tight_column ran without error, but the column it returned for a pattern of shape "
                f"{tuple(A.shape)} cannot be judged: {err}",
                label=current_exercise(),
            ) from None

    return fraction


_HINT = ("in the proof, (Ay)_i - (Ay)_i' is a sum over keys of (A_ij - A_i'j) y_j; it is largest when y is at its "
         "maximum on the keys where row i exceeds row i' and at its minimum on the others, for the pair of rows that "
         "attains delta(A).")


def _reference_fraction(A: Tensor) -> Tensor:
    return torch.ones(A.shape[:-2], dtype=A.dtype)


def _row_as_column(A: Tensor) -> Tensor:
    D = (A.unsqueeze(-2) - A.unsqueeze(-3)).abs().sum(dim=-1)
    i = D.amax(dim=-1).argmax(dim=-1)  # (...,): a row of the most different pair
    return torch.take_along_dim(A, i[..., None, None], dim=-2).squeeze(-2)


def _single_column(A: Tensor) -> Tensor:
    D = (A.unsqueeze(-2) - A.unsqueeze(-3)).abs().sum(dim=-1)
    flat = D.flatten(-2).argmax(dim=-1)
    T = A.shape[-1]
    i, i2 = flat // T, flat % T
    diff = (torch.take_along_dim(A, i[..., None, None], dim=-2) - torch.take_along_dim(A, i2[..., None, None], dim=-2)).squeeze(-2)
    j = diff.abs().argmax(dim=-1)  # (...,): the key where the two rows differ most
    return torch.nn.functional.one_hot(j, T).to(A.dtype)


def _first_two_rows(A: Tensor) -> Tensor:
    return (A[..., 0, :] > A[..., 1, :]).to(A.dtype)


def _columns_not_rows(A: Tensor) -> Tensor:
    At = A.transpose(-2, -1)
    D = (At.unsqueeze(-2) - At.unsqueeze(-3)).abs().sum(dim=-1)
    return _pair_indicator(At, D)


_COLUMN_MISTAKES = [
    ("a row of A used as the column", _row_as_column,
     "the column is not a row of A: it is built from how two rows of A differ, key by key."),
    ("a single key (one-hot on the key where the two rows differ most)", _single_column,
     "one key carries only part of the difference between two rows; the bound adds up every key where one row exceeds the other."),
    ("the first two rows instead of the two most different rows", _first_two_rows,
     "delta(A) is a maximum over all pairs of rows: use the pair that attains it."),
    ("columns of A compared instead of rows", _columns_not_rows,
     "delta(A) compares rows of A (one row per query), not columns."),
]
_TIGHT_MISTAKES = [Mistake(label, _fraction_of(fn), why) for label, fn, why in _COLUMN_MISTAKES]


def _cases() -> list[Case]:
    def softmax(shape: tuple[int, ...], seed: int, std: float, causal: bool = False) -> Tensor:
        S = gaussian(shape, seed, std)
        if causal:
            T = shape[-1]
            S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(S, dim=-1)

    disjoint = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.7], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    disjoint = torch.cat([disjoint, disjoint[2:]], dim=0)  # (4, 4): rows 0 and 1 share no key, delta = 1
    return [
        Case("two keys (T = 2)", (softmax((2, 2), 1, 1.0),)),
        Case("random softmax rows, T = 6", (softmax((6, 6), 2, 1.0),)),
        Case("the middle rows differ most (T = 6)", (torch.softmax(gaussian((6, 6), 3, 0.1) + 4 * torch.diag(torch.tensor([0, 0, 1, 0, 0, 0.0], dtype=torch.float64)), dim=-1),)),
        Case("a causal pattern (row 0 is one-hot), T = 5", (softmax((5, 5), 4, 1.0, causal=True),)),
        Case("two rows with disjoint supports (delta = 1)", (disjoint,)),
        Case("all rows equal (delta = 0)", (torch.full((4, 4), 0.25, dtype=torch.float64),)),
        Case("a batch of 3 patterns, T = 7, peaked rows", (softmax((3, 7, 7), 5, 3.0),)),
        # Many random matrices of several sizes: a rule that picks another pair of rows (the first
        # two, the farthest apart in another distance, row 0 and its farthest row) attains the bound
        # on some matrices and not on others; on these batches it misses on at least one.
        Case("a batch of 64 random 4 x 4 patterns", (softmax((64, 4, 4), 6, 1.0),)),
        Case("a batch of 32 random 3 x 3 patterns, peaked rows", (softmax((32, 3, 3), 7, 2.0),)),
        Case("a batch of 16 random 6 x 6 causal patterns", (softmax((16, 6, 6), 8, 1.5, causal=True),)),
    ]


@exercise("ex-dobrushin-tight", hint=_HINT)
def check_tight_column(fn: Callable[[Tensor], Tensor]) -> None:
    """Check that `fn(A)` returns, for row-stochastic `A` `(..., T, T)`, a column attaining Dobrushin's bound.

    The compared quantity is `attained_fraction(A, fn(A))`, which must be 1 on every case (a
    right answer is not unique; see the module docstring).
    """
    if not callable(fn):
        raise ExerciseCheckError(f"tight_column: expected a function, got {type(fn).__name__}")
    check_function(
        _fraction_of(fn),
        _reference_fraction,
        _cases(),
        name="tight_column (fraction of the bound attained)",
        mistakes=_TIGHT_MISTAKES,
        atol=1e-9,
        rtol=1e-7,
    )
