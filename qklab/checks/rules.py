"""The rules an exercise statement sets on *how* to compute, judged by what the answer computed.

Chapters 6 and 10 ask for statistics of `W = W_Q W_K^T` (`d x d`) computed from the factors
(`(..., d, d_h)`) without forming `W` (and, in chapter 6, without an eigen-solver): that is what
makes them cost `O(d d_h^2)`. A rule the check does not enforce teaches that rules do not matter,
and a rule judged by the wrong thing accuses right answers, so `obeying_rules(fn, ...)` runs the
reader's function under two watches that look at what was computed, not at shapes or names.

The memory rule (`no_square`): the size of the intermediates alive at once, whatever their shape
or container.

- torch: a `TorchDispatchMode` sees the output of every aten operation, whichever Python route
  led to it (`@`, `einsum`, `W[None]`, a row at a time, `torch.stack` of a list of rows). Each
  output's storage that is not an input's is counted once, in elements, from its creation until
  the last tensor on it is freed (a `weakref.finalize`); the watch keeps the peak of that count.
- numpy and plain Python (arrays, lists of floats): `tracemalloc`, to which numpy reports its
  arrays, measures the peak of the bytes allocated during the call and still alive.

A `d x d` matrix (one head's `W`, whatever the route) needs `d * d` elements of torch, or
`4 d * d` bytes of numpy (float32, the narrowest dtype that keeps the precision the checks ask
for; a Python float costs 32 bytes). A right answer needs only `d x d_h` and `d_h x d_h` arrays:
`LEGIT_ARRAYS` of them alive at once is a generous budget (both inputs cast to another dtype, an
elementwise product, a transposed copy, a concatenation of the factors, the cores), that is
`LEGIT_ARRAYS * B * (d d_h + d_h^2)` elements for `B` heads, plus `PYTHON_SLACK` bytes of Python
objects. The rule judges a call only when that budget stays below the size of a `d x d` matrix
(torch: `d * d > budget`; numpy: `4 d * d > 8 budget + slack`), and then fails it when the peak
reaches `d * d` elements (or `4 d * d` bytes). When `2 d_h = d`, `d = d_h + 1` or `d_h = 1` with a
small `d`, a right answer may hold as many elements as `W` has, and the rule does not judge: no
right answer is accused. The checks' cases include heads with `d >= 16 d_h` where it does.

The eigen-solver rule (`no_eigen`): torch's eigen-solvers, seen by the same dispatch mode as the
aten operations they run (`linalg_eig`, `_linalg_eigh`, ...: `torch.linalg.eig`, `eigvals`,
`eigh`, `eigvalsh`, `torch.lobpcg`, whatever name they were imported under), and numpy's and
scipy's (`numpy.linalg.eig*`, `scipy.linalg.eig*`, `scipy.sparse.linalg.eigs`/`eigsh`), seen by a
profile hook as calls of those Python functions.

What is not caught: an eigen-solver written by hand (power or QR iteration: its products cannot
be told from legitimate ones, but on the full `W` they are `d x d` and the memory rule sees them),
LAPACK called directly (`scipy.linalg.lapack.dgeev`), a `d x d` matrix formed in pieces that
are dropped as they are used (it never holds `W`), memory allocated by a C extension that does
not report to `tracemalloc`, and a call that imports modules (their memory would count, so the
numpy measure does not judge that call). Used by `qklab.checks.spectrum` (ex-trace-moments) and
`qklab.checks.penalty_statistics` (ex-symmetric-penalty).
"""

from __future__ import annotations

import functools
import sys
import tracemalloc
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from qklab.checks.feedback import ExerciseCheckError
from qklab.kernel_answers import watch_where_it_runs

__all__ = ["obeying_rules", "Usage", "measure", "torch_rule_judges", "numpy_rule_judges", "EIGEN_SOLVERS", "LEGIT_ARRAYS",
           "PYTHON_SLACK"]

#: Python functions that are eigen-solvers, by module prefix and name.
EIGEN_SOLVERS = {
    "numpy": frozenset({"eig", "eigvals", "eigh", "eigvalsh"}),
    "scipy": frozenset({"eig", "eigvals", "eigh", "eigvalsh", "eig_banded", "eigvals_banded", "eigh_tridiagonal",
                        "eigvalsh_tridiagonal", "eigs", "eigsh", "lobpcg"}),
}

#: How many `d x d_h` (or `d_h x d_h`) arrays a right answer may hold at once, per head.
LEGIT_ARRAYS = 6

#: Bytes of Python objects (frames, small tensors' wrappers, lists of `d_h` numbers) a right answer may hold.
PYTHON_SLACK = 64 * 1024


def _is_torch_eigen_solver(func: Any) -> bool:
    name = getattr(getattr(func, "_schema", None), "name", "").removeprefix("aten::").lstrip("_")
    return name.startswith("linalg_eig") or name in {"eig", "symeig"}


@dataclass
class Usage:
    """What a watched call computed: peak live torch elements (beyond the inputs), with the operation
    and output shape that reached it, and the largest storage created; peak traced bytes (numpy,
    Python) and whether the call imported modules; the eigen-solvers called."""

    torch_peak: int = 0
    torch_peak_op: str = ""
    torch_peak_shape: tuple[int, ...] = ()
    torch_largest: int = 0
    torch_largest_op: str = ""
    torch_largest_shape: tuple[int, ...] = ()
    traced_peak: int = 0
    imported: bool = False
    solvers: tuple[str, ...] = ()


class _TorchMemory(TorchDispatchMode):
    """Counts the elements of the storages aten operations create, while they are alive."""

    def __init__(self, inputs: list[Tensor]) -> None:
        super().__init__()
        self.known = {t.untyped_storage().data_ptr() for t in inputs}
        self.alive: dict[int, list[int]] = {}  # storage pointer -> [elements, tensors on it]
        self.live = 0
        self.usage = Usage()
        self.solvers: list[str] = []

    def _drop(self, key: int) -> None:
        entry = self.alive.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.alive[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if _is_torch_eigen_solver(func):
            self.solvers.append(f"torch ({func._schema.name})")
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.known or storage.nbytes() == 0:
                continue
            elements = storage.nbytes() // max(t.element_size(), 1)
            entry = self.alive.get(key)
            if entry is None:
                entry = self.alive[key] = [elements, 0]
                self.live += elements
            elif elements > entry[0]:  # a storage that grew (resize_)
                self.live += elements - entry[0]
                entry[0] = elements
            entry[1] += 1
            weakref.finalize(t, self._drop, key)
            if entry[0] > self.usage.torch_largest:
                self.usage.torch_largest = entry[0]
                self.usage.torch_largest_op, self.usage.torch_largest_shape = str(func), tuple(t.shape)
            if self.live > self.usage.torch_peak:
                self.usage.torch_peak = self.live
                self.usage.torch_peak_op, self.usage.torch_peak_shape = str(func), tuple(t.shape)
        return out


def _python_solver_hook(found: list[str]) -> Callable[..., Any]:
    def hook(frame, event, arg):  # noqa: ANN001, ANN202
        if event != "call":
            return
        name = frame.f_code.co_name
        module = frame.f_globals.get("__name__", "")
        for package, names in EIGEN_SOLVERS.items():
            if name in names and (module == package or module.startswith(package + ".")):
                public = ".".join(part for part in module.split(".") if not part.startswith("_"))
                found.append(f"{public}.{name}")
    return hook


@functools.cache
def _warm_up() -> None:
    """Enter a dispatch mode once: the first time imports torch's machinery for it (about 800
    modules, over a second), which must happen before `tracemalloc` traces, not during a call."""
    with _TorchMemory([]):
        torch.zeros(1).add(1)


def measure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Usage]:
    """`fn(*args, **kwargs)` and what it computed (`Usage`): the peaks of live torch elements and of
    traced bytes beyond the arguments, and the eigen-solvers it called."""
    _warm_up()
    inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
    watch = _TorchMemory(inputs)
    python_solvers: list[str] = []
    old_profile = sys.getprofile()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    modules = len(sys.modules)
    try:
        sys.setprofile(_python_solver_hook(python_solvers))
        with watch:
            out = fn(*args, **kwargs)
    finally:
        sys.setprofile(old_profile)
        traced_peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
    usage = watch.usage
    usage.traced_peak = max(traced_peak, 0)
    usage.imported = len(sys.modules) != modules
    usage.solvers = tuple(dict.fromkeys(watch.solvers + python_solvers))
    return out, usage


def _heads(args: tuple, d: int, d_h: int) -> int:
    sizes = [t.numel() for t in args[:2] if isinstance(t, Tensor)]
    return max(1, max(sizes) // (d * d_h)) if sizes else 1


def _legit_elements(d: int, d_h: int, heads: int) -> int:
    return LEGIT_ARRAYS * heads * (d * d_h + d_h * d_h)


def torch_rule_judges(d: int, d_h: int, heads: int = 1) -> bool:
    """Whether the torch memory rule can tell a `d x d` matrix from a right answer's arrays."""
    return d * d > _legit_elements(d, d_h, heads)


def numpy_rule_judges(d: int, d_h: int, heads: int = 1) -> bool:
    """Whether the numpy (traced bytes) memory rule can tell a float32 `d x d` array from a right answer's."""
    return 4 * d * d > 8 * _legit_elements(d, d_h, heads) + PYTHON_SLACK


_RULES_ADVICE = ("The exercise asks for the result without forming W = W_Q W_K^T (in any shape, container or "
                 "library): use the trace identities of chapter 6, which need only d x d_h and d_h x d_h arrays.")


_EIGEN_ADVICE = ("The exercise asks for the statistics without eigenvalues: use the trace identities of chapter 6 "
                 "(tr W = <W_Q, W_K>_F, and traces of products of the d_h x d_h matrices W_K^T W_Q, W_Q^T W_Q, W_K^T W_K). "
                 "(A symmetric solver such as eigvalsh would also be wrong here: it reads one triangle of a matrix that is not "
                 "symmetric.)")


@watch_where_it_runs
def obeying_rules(fn: Callable[..., Any], *, name: str, no_square: bool = True, no_eigen: bool = True,
                  eigen_advice: str = _EIGEN_ADVICE) -> Callable[..., Any]:
    """`fn`, failing with `ExerciseCheckError` when a call breaks the statement's rules.

    The first positional argument is a tensor of shape `(..., d, d_h)` (`W_Q`, with `W_K` second).
    `no_square`: do not form the `d x d` matrix (judged by the peak of live memory, see the module
    docstring, and only when `d > d_h`: for `d = d_h` the factors are `d x d` themselves);
    `no_eigen`: do not call an eigen-solver of torch, numpy or scipy (judged whatever the shapes,
    so also for a square first argument, as in chapter 7's `snr_general(W, T)`), with
    `eigen_advice` said after the refusal.

    For a learner's function that runs in the kernel of `make check-exercise`, the watch runs
    there, around the computation (`qklab.kernel_answers.watch_where_it_runs`).
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        W_Q = args[0] if args else None
        if not isinstance(W_Q, Tensor) or W_Q.ndim < 2:
            return fn(*args, **kwargs)
        d, d_h = int(W_Q.shape[-2]), int(W_Q.shape[-1])
        no_square_here = no_square and d > d_h
        if not (no_eigen or no_square_here):
            return fn(*args, **kwargs)
        out, usage = measure(fn, *args, **kwargs)
        if no_eigen and usage.solvers:
            raise ExerciseCheckError(f"{name}: your function calls an eigen-solver ({', '.join(usage.solvers)}). " + eigen_advice)
        if not no_square_here:
            return out
        heads, square = _heads(args, d, d_h), d * d
        where = f"d x d = {square:,} at d = {d}, d_h = {d_h}"
        if torch_rule_judges(d, d_h, heads) and usage.torch_peak >= square:
            raise ExerciseCheckError(
                f"{name}: your function held {usage.torch_peak:,} elements of torch tensors at once, as many as a d x d "
                f"matrix ({where}; the largest: {usage.torch_largest_op}, of shape {usage.torch_largest_shape}; the "
                f"operation that reached the peak: {usage.torch_peak_op}, of shape {usage.torch_peak_shape}), where "
                f"d x d_h factors and d_h x d_h products need at most {_legit_elements(d, d_h, heads):,}. " + _RULES_ADVICE)
        if not usage.imported and numpy_rule_judges(d, d_h, heads) and usage.traced_peak >= 4 * square:
            raise ExerciseCheckError(
                f"{name}: your function held {usage.traced_peak:,} bytes of numpy arrays or Python objects at once, as "
                f"many as a d x d matrix ({where}: a float32 d x d array is {4 * square:,} bytes, a float64 one {8 * square:,}), where d x d_h "
                f"factors and d_h x d_h products need at most {8 * _legit_elements(d, d_h, heads) + PYTHON_SLACK:,}. "
                + _RULES_ADVICE)
        return out

    return run
