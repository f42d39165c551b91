"""The rules an exercise statement sets on *how* to compute, enforced wherever the answer computes.

Chapters 6 and 10 ask for statistics of `W = W_Q W_K^T` (`d x d`) computed from the factors
(`(..., d, d_h)`) without forming `W` and without an eigen-solver: that is what makes them cost
`O(d d_h^2)`. A rule the check does not enforce teaches that rules do not matter, so
`obeying_rules(fn, ...)` runs the reader's function under three watches:

- torch: a `TorchFunctionMode` sees every tensor torch creates; one whose last two dimensions
  are `(d, d)` is the `d x d` matrix (or its transpose), and a call of `torch.linalg.eig`,
  `eigvals`, `eigh` or `eigvalsh` is an eigen-solver;
- numpy (and anything else written in Python, such as a loop that fills a list): `tracemalloc`
  measures the memory allocated during the call. The check's cases give this watch its power:
  with `d` large and `d_h` small (`d = 512`, `d_h = 2`), a `d x d` array needs 1 MiB in float32
  and 2 MiB in float64, while every allowed intermediate (`d x d_h` factors, `d_h x d_h` cores)
  is a few KiB; the watch fails a call that allocates `d * d * 4 * 0.9` bytes at once;
- numpy's eigen-solvers (`numpy.linalg.eig`, `eigvals`, `eigh`, `eigvalsh`, whatever name they
  were imported under): a profile hook sees the call of the Python function in `numpy.linalg`.

What is not caught: a solution that forms the matrix one row at a time and drops each row (it
never holds `W`, so it does not break the letter of the rule), and code in a C extension the
hooks cannot see. Used by `qklab.checks.spectrum` (ex-trace-moments) and
`qklab.checks.penalty_statistics` (chapter 10).
"""

from __future__ import annotations

import functools
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.overrides import TorchFunctionMode

from qklab.checks.feedback import ExerciseCheckError
from qklab.kernel_answers import watch_where_it_runs

__all__ = ["obeying_rules", "EIGEN_SOLVERS"]

#: Names of eigen-solvers, as torch's C functions and numpy's Python functions are called.
EIGEN_SOLVERS = frozenset({"eig", "eigvals", "eigh", "eigvalsh", "linalg_eig", "linalg_eigvals", "linalg_eigh", "linalg_eigvalsh"})


class _TorchWatch(TorchFunctionMode):
    """Records the first `(d, d)` tensor torch creates and the first eigen-solver torch runs."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.square: tuple[int, ...] | None = None
        self.solver: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = getattr(func, "__name__", "")
        if self.solver is None and name in EIGEN_SOLVERS:
            self.solver = f"torch.linalg.{name.removeprefix('linalg_')}"
        out = func(*args, **(kwargs or {}))
        if self.square is None:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, Tensor) and t.ndim >= 2 and tuple(t.shape[-2:]) == (self.d, self.d):
                    self.square = tuple(t.shape)
                    break
        return out


def _numpy_solver_hook(found: list[str]) -> Callable[..., Any]:
    def hook(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call" and not found and frame.f_code.co_name in EIGEN_SOLVERS \
                and "numpy" in frame.f_code.co_filename and "linalg" in frame.f_code.co_filename:
            found.append(f"numpy.linalg.{frame.f_code.co_name}")
        elif event == "c_call" and not found and getattr(arg, "__name__", "") in EIGEN_SOLVERS:
            found.append(f"{getattr(arg, '__module__', '') or ''}.{arg.__name__}".lstrip("."))
    return hook


@watch_where_it_runs
def obeying_rules(fn: Callable[..., Any], *, name: str, no_square: bool = True, no_eigen: bool = True) -> Callable[..., Any]:
    """`fn`, failing with `ExerciseCheckError` when a call breaks the statement's rules.

    The first two positional arguments are `W_Q, W_K` of shape `(..., d, d_h)`; the rules are
    checked only when `d > d_h` (for `d = d_h` the factors are `d x d` themselves).
    `no_square`: do not form the `d x d` matrix (torch shapes, and memory for numpy);
    `no_eigen`: do not call an eigen-solver (torch or numpy).

    For a learner's function that runs in the kernel of `make check-exercise`, the watch runs
    there, around the computation (`qklab.kernel_answers.watch_where_it_runs`).
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        W_Q = args[0] if args else None
        if not isinstance(W_Q, Tensor) or W_Q.ndim < 2 or W_Q.shape[-2] <= W_Q.shape[-1]:
            return fn(*args, **kwargs)
        d, d_h = W_Q.shape[-2], W_Q.shape[-1]
        watch = _TorchWatch(d)
        solvers: list[str] = []
        old_profile = sys.getprofile()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            if no_eigen:
                sys.setprofile(_numpy_solver_hook(solvers))
            with watch:
                out = fn(*args, **kwargs)
        finally:
            if no_eigen:
                sys.setprofile(old_profile)
            peak = tracemalloc.get_traced_memory()[1] - base
            if not was_tracing:
                tracemalloc.stop()
        solver = watch.solver or (solvers[0] if solvers else None)
        if no_eigen and solver:
            raise ExerciseCheckError(
                f"{name}: your function calls an eigen-solver ({solver}). The exercise asks for the statistics "
                "without eigenvalues: use the trace identities of chapter 6 (tr W = <W_Q, W_K>_F, and traces of "
                "products of the d_h x d_h matrices W_K^T W_Q, W_Q^T W_Q, W_K^T W_K). (A symmetric solver such as "
                "eigvalsh would also be wrong here: it reads one triangle of a matrix that is not symmetric.)")
        if no_square and watch.square is not None:
            raise ExerciseCheckError(
                f"{name}: your function built a tensor of shape {watch.square}, a d x d matrix (d = {d}, d_h = {d_h}). "
                "The exercise asks for the result without forming W = W_Q W_K^T (or its transpose): use the trace "
                "identities of chapter 6, which need only d_h x d_h products.")
        if no_square and peak >= 0.9 * 4 * d * d and 4 * d * d > 64 * d * d_h * 8:
            raise ExerciseCheckError(
                f"{name}: your function allocated {peak / 2**20:.1f} MiB while it ran (d = {d}, d_h = {d_h}): that is "
                "the size of a d x d matrix (numpy, or Python lists), not of d x d_h factors and d_h x d_h products. "
                "The exercise asks for the result without forming W = W_Q W_K^T: use the trace identities of chapter 6.")
        return out

    return run
