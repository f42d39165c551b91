"""The exercise-check engine: compare with the reference, say what is wrong, never give the answer.

A check runs the reader's function and the reference on the same `Case`s (edge cases
included). On the first mismatch it raises `ExerciseCheckError` saying what differs (the type,
the shape, where a NaN is, or where the largest difference is and whether the reader's value is
too large or too small, and roughly by how much) and, when the reader's output equals that of a
known `Mistake` (found by running the mistaken variant on the same input), which mistake it looks
like. The message never holds the reference's values: the reader's own values and the inputs
only. A check of a number (`check_value`) says "too large by a factor of about 2" and never the right number.

Hints come when the reader asks (the hint ladder):

1. the first failure of an exercise's check says what is wrong and how to ask for a hint;
2. the next failure of the same exercise in the same session adds the hint (the recognised
   mistake's hint, or the exercise's);
3. `hint("ex-label")` (also `qklab.checks.hint`) prints the hint of the last failure and the
   exercise's full recipe at any time.

Checks are tied to an exercise label with the `exercise` decorator (it also registers the recipe,
so `hint` works before a first attempt). A function that modifies its input in place fails with
a message naming the argument. `ExerciseCheckError` renders in IPython/Jupyter as its message
only (`_render_traceback_`), so a failed check cell does not print the check's source; an error
raised inside the reader's own function shows the reader's frames only.

What is not here: the error's rendering, the hint ladder and `describe_ratio` live in
`qklab.checks.feedback` (re-exported here, so `from qklab.checks.core import ExerciseCheckError,
exercise, hint` keeps working); the checks of each chapter are in `qklab.checks.<topic>`.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qklab.checks.feedback import ExerciseCheckError, current_exercise, describe_ratio, exercise, fail, hint, reset_attempts

__all__ = [
    "Case",
    "Mistake",
    "ExerciseCheckError",
    "check_function",
    "check_value",
    "gaussian",
    "exercise",
    "hint",
    "reset_attempts",
    "describe_ratio",
]


@dataclass(frozen=True)
class Case:
    """One input to try: a short description, positional and keyword arguments."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: `fn` computes what that mistake returns on the same input."""

    label: str
    fn: Callable[..., Any]
    hint: str


def gaussian(shape: tuple[int, ...], seed: int, std: float = 1.0) -> Tensor:
    """A seeded float64 `N(0, std^2)` tensor: the inputs of check cases."""
    return std * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- numbers ----------------------------------------------------------------------------------------

def _as_number(value: Any, name: str, *, what: str = "your answer") -> float:
    """`value` as a float, or an `ExerciseCheckError` that names what is wrong with it."""
    if value is ... or value is None:
        raise ExerciseCheckError(f"{name}: no answer yet. Replace the `...` (or None) with your number.")
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise ExerciseCheckError(f"{name}: {what} is a bool ({value}); expected a number.")
    if isinstance(value, (str, bytes)):
        raise ExerciseCheckError(f"{name}: {what} is a str ({value!r}); expected a number (remove the quotes).")
    if isinstance(value, (Tensor, np.ndarray)):
        size = value.numel() if isinstance(value, Tensor) else value.size
        if size != 1:
            kind = "tensor" if isinstance(value, Tensor) else "numpy array"
            raise ExerciseCheckError(
                f"{name}: {what} is a {kind} of shape {tuple(value.shape)} ({size} numbers); expected a single number."
            )
        value = value.detach().cpu().reshape(()).item() if isinstance(value, Tensor) else value.reshape(()).item()
    if isinstance(value, (list, tuple, dict, set)):
        raise ExerciseCheckError(f"{name}: {what} is a {type(value).__name__} of {len(value)} item(s); expected a single number.")
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        z = complex(value)
        if abs(z.imag) > 1e-9 * max(1.0, abs(z.real)):
            raise ExerciseCheckError(f"{name}: {what} is complex with imaginary part {z.imag:.4g}j; the quantity is real.")
        value = z.real
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExerciseCheckError(f"{name}: {what} is a {type(value).__name__}; expected a number.") from None
    if math.isnan(number):
        raise ExerciseCheckError(f"{name}: {what} is NaN (not a number): look for 0 * inf, 0 / 0 or log of a negative number.")
    if math.isinf(number):
        raise ExerciseCheckError(f"{name}: {what} is infinite: look for a division by zero or log(0).")
    return number


def check_value(
    value: Any,
    expected: float,
    *,
    name: str,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    mistakes: dict[str, tuple[float, str]] | None = None,
    hint: str = "",
    quiet: bool = False,
) -> None:
    """Check a predicted number against the computed one, without ever printing the computed one.

    Accepts any real number type: `int`, `float`, numpy scalars and 0-d arrays, one-element tensors,
    and complex numbers with a zero imaginary part. A mistake of `mistakes`
    (`{label: (value that mistake gives, hint)}`) is named only within a tolerance ten times
    tighter than the one that accepts the answer, and only when no other mistake gives the same
    number, so that a value near two candidates is not misnamed; a value near a mistake but not
    that near is told to give more digits.
    """
    __tracebackhide__ = True  # noqa: F841
    number = _as_number(value, name)
    expected = float(expected)
    close = lambda a, b, k=1.0: math.isclose(a, b, rel_tol=rtol * k, abs_tol=atol * k)  # noqa: E731
    if close(number, expected):
        if not quiet:
            print(f"\u2713 {name}: your answer is right.")  # no number: the book shows this line under the exercise
        return
    message = f"{name}: your answer {number:.6g} is {describe_ratio(number, expected, scale=atol)}."
    named = [(label, why) for label, (wrong, why) in (mistakes or {}).items() if close(number, float(wrong), 0.1)]
    near = [label for label, (wrong, _) in (mistakes or {}).items() if close(number, float(wrong)) and label not in dict(named)]
    specific, diagnosis = "", ""
    if len(named) == 1:  # two mistakes that give this same number are not told apart: neither is named
        diagnosis = named[0][0]
        message += f"\nThis looks like {diagnosis}."
        specific = named[0][1]
    elif not named and near:
        message += f"\nIt is close to what {' or '.join(near)} would give, but not close enough to tell: give more digits."
    raise fail(message, name=name, specific_hint=specific, diagnosis=diagnosis, fallback_hint=hint)


# --- functions ----------------------------------------------------------------------------------------

def _clone(value: Any) -> Any:
    """A deep copy, so that the reader's function cannot change the case (or the next call)."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return copy.deepcopy(value)


def _call(fn: Callable[..., Any], case: Case) -> Any:
    return fn(*(_clone(a) for a in case.args), **{k: _clone(v) for k, v in case.kwargs.items()})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        both_nan = torch.isnan(a) & torch.isnan(b) if a.is_floating_point() or a.is_complex() else torch.zeros_like(a, dtype=torch.bool)
        return bool(((a == b) | both_nan).all())
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    try:
        return bool(a == b)
    except Exception:  # an object without a usable ==: cannot tell, do not accuse
        return True


def _arg_names(reference: Callable[..., Any], case: Case) -> list[str]:
    try:
        params = [p.name for p in inspect.signature(reference).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"number {i + 1}" for i in range(len(case.args))]


def _modified_inputs(case: Case, passed_args: tuple, passed_kwargs: dict, names: list[str]) -> list[str]:
    changed = [names[i] for i, (before, after) in enumerate(zip(case.args, passed_args)) if not _same(before, after)]
    changed += [k for k, v in case.kwargs.items() if not _same(v, passed_kwargs[k])]
    return changed


def _to_tensor(got: Any, like: Tensor) -> Tensor | str:
    """The reader's output as a tensor comparable with `like`, or a sentence saying why it is not one."""
    if isinstance(got, Tensor):
        return got.detach().cpu()
    if isinstance(got, (np.ndarray, np.generic)) and np.asarray(got).dtype.kind in "biufc":
        return torch.as_tensor(np.asarray(got))
    if isinstance(got, numbers.Number) and not isinstance(got, bool) and like.ndim == 0:
        # a Python float is a double, a Python complex a pair of doubles: keep that precision
        exact = {float: torch.float64, complex: torch.complex128}.get(type(got))
        return torch.as_tensor(got, dtype=exact)
    if got is None:
        return f"returned None (is a `return` missing?), expected a torch.Tensor of shape {tuple(like.shape)}"
    return f"returned a {type(got).__name__}, expected a torch.Tensor of shape {tuple(like.shape)}"


def _where(index: tuple[int, ...], axis_names: Sequence[str], index_from: Sequence[int] = ()) -> str:
    """`(1, 2, 3)` with axis names `("row", "key")` -> "at index [1] of the leading axes, row 2, key 3".

    `index_from` gives, for each named axis, the number its first entry has in the exercise's
    statement (1 for `tau = 1..T`; 0, the default, for rows counted from 0). Without names the
    position is "entry 7 (counting from 0)".
    """
    if not index:
        return "your value"
    k = min(len(axis_names), len(index))
    starts = list(index_from) + [0] * (len(axis_names) - len(index_from))
    starts = starts[len(axis_names) - k:]
    named = [f"{n} {i + s}" if s == 0 else f"{n} = {i + s}"
             for n, i, s in zip(axis_names[len(axis_names) - k:], index[len(index) - k:], starts)]
    lead = index[: len(index) - k]
    parts = ([f"index {list(lead)} of the leading (batch/head) axes"] if lead else []) + named
    if named:
        return ", ".join(parts)
    if len(index) == 1:
        return f"entry {index[0]} (counting from 0)"
    return f"index {index} (counting from 0)"


def _show(v: Tensor) -> str:
    return f"{complex(v):.4g}" if v.is_complex() else f"{float(v):.6g}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _difference(got: Any, expected: Tensor, atol: float, rtol: float, axis_names: Sequence[str] = (),
                index_from: Sequence[int] = ()) -> str | None:
    """None when `got` matches `expected`, else a sentence saying what differs (without `expected`'s values).

    An integer `expected` (category codes, counts) asks for integers: float output is refused
    even when its values are whole numbers, and a wrong entry is "not the right code", never
    "too small by a factor". A complex `expected` with non-zero imaginary parts refuses real
    output (the imaginary parts dropped, e.g. by `.real`).
    """
    got_t = _to_tensor(got, expected)
    if isinstance(got_t, str):
        return got_t
    if got_t.shape != expected.shape:
        extra = " (the right number of entries in another shape: a missing keepdim, or an axis in the wrong place?)" \
            if got_t.numel() == expected.numel() else ""
        return f"returned shape {tuple(got_t.shape)}, expected {tuple(expected.shape)}{extra}"
    integer = not (expected.is_floating_point() or expected.is_complex() or expected.dtype == torch.bool)
    if integer and (got_t.is_floating_point() or got_t.is_complex()):
        return (f"returned {_dtype_name(got_t.dtype)} values, but the exercise asks for integers "
                f"({_dtype_name(expected.dtype)}): build the result with dtype=torch.int64, or convert it with .long()")
    if expected.is_complex() and not got_t.is_complex() and expected.numel() \
            and float(expected.imag.abs().max()) > max(atol, 1e-9 * float(expected.abs().max())):
        return ("returned real values, but some of the right values are complex (non-zero imaginary parts): "
                "keep the complex output (do not take .real or abs)")
    if got_t.is_complex() and not expected.is_complex():
        if float(got_t.imag.abs().max(initial=0.0) if got_t.numel() else 0.0) > 1e-9 * max(1.0, float(got_t.abs().max())):
            return "returned complex values with non-zero imaginary parts; the answer is real"
        got_t = got_t.real
    if got_t.dtype == torch.bool:
        got_t = got_t.to(torch.int64)
    got_dtype = got_t.dtype
    low_precision = got_t.is_floating_point() and expected.is_floating_point() and got_t.dtype != expected.dtype \
        and torch.finfo(got_t.dtype).eps > torch.finfo(expected.dtype).eps
    got_t = got_t.to(expected.dtype)
    if not integer:
        bad = ~torch.isfinite(got_t) & torch.isfinite(expected)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            what = "NaN" if bool(torch.isnan(got_t[first])) else "inf"
            more = f" ({int(bad.sum())} entries in all are NaN or inf)" if int(bad.sum()) > 1 else ""
            where = _where(first, axis_names, index_from)
            return f"{where} is {what} where the right value is finite{more}"
    if integer:
        off = got_t != expected
        if not bool(off.any()):
            return None
        first = tuple(int(i) for i in off.nonzero()[0])
        at = _where(first, axis_names, index_from) if first else "your value"
        n_off = int(off.sum())
        return (f"{at}: yours is {int(got_t[first])}, which is not the right value there "
                f"({n_off} of {expected.numel()} values are off)")
    if torch.allclose(got_t, expected, atol=atol, rtol=rtol, equal_nan=True):
        return None
    err = (got_t - expected).abs().nan_to_num(nan=math.inf)
    allowed = atol + rtol * expected.abs()
    n_off = int((err > allowed).sum())
    # The entry furthest outside its tolerance: with a relative tolerance, a tiny value off by 100 %
    # matters more than a large one off in its last digit (0 / 0, an exact zero, counts as 0).
    excess = (err / allowed).nan_to_num(nan=0.0, posinf=math.inf)
    where = tuple(int(i) for i in torch.unravel_index(excess.argmax(), excess.shape)) if err.ndim else ()
    g, e = got_t[where], expected[where]
    at = f"{_where(where, axis_names, index_from)}: yours is" if where else "yours is"
    if got_t.is_complex():
        sentence = f"{at} {_show(g)}, off by {float(err.max()):.2g} in absolute value"
    else:
        sentence = f"{at} {_show(g)}, {describe_ratio(float(g), float(e), scale=atol, name_factor=expected.numel() == 1)}"
    if expected.numel() > 1:
        sentence += f" (the largest difference; {n_off} of {expected.numel()} values are off)"
    if not got_t.is_complex() and expected.numel() > 1:
        nz = expected.abs() > atol
        if int(nz.sum()) >= 2 and bool((got_t[~nz].abs() <= atol).all()):
            q = got_t[nz] / expected[nz]
            q0 = float(q[0])
            if q0 != 0.0 and math.isfinite(q0) and float((q - q[0]).abs().max()) <= 1e-6 * abs(q0) and abs(q0 - 1) > 1e-3:
                sentence += f". Every value of yours is the right one times the same factor: {describe_ratio(q0, 1.0)}"
    if low_precision:
        sentence += (f". Your output is {_dtype_name(got_dtype)} but the inputs are "
                     f"{_dtype_name(expected.dtype)}: keep their dtype (e.g. dtype=X.dtype in torch.tensor, torch.arange)")
    return sentence


def _dtype_problem(got: Any, dtype: torch.dtype) -> str | None:
    """A sentence when `got` is a tensor or numpy array of another dtype than `dtype`, the one the statement asks for.

    A Python float is a double, so it counts as float64; anything else is left to `_difference`.
    """
    if isinstance(got, Tensor):
        got_dtype = got.dtype
    elif isinstance(got, (np.ndarray, np.generic)) and np.asarray(got).dtype.kind in "biufc":
        got_dtype = torch.as_tensor(np.asarray(got)).dtype
    elif isinstance(got, float):
        got_dtype = torch.float64
    else:
        return None
    if got_dtype == dtype:
        return None
    return (f"returned {_dtype_name(got_dtype)} values, but the exercise asks for {_dtype_name(dtype)}: "
            f"compute in {_dtype_name(dtype)} (e.g. dtype=torch.{_dtype_name(dtype)} in torch.tensor and torch.arange, "
            f"or convert the inputs first)")


def _outputs(fn: Callable[..., Any], cases: Sequence[Case]) -> list[Any]:
    """`fn`'s output on every case; `_FAILED` where it raised."""
    out = []
    for case in cases:
        try:
            out.append(_call(fn, case))
        except Exception:  # noqa: BLE001  (a failing call only means "no match")
            out.append(_FAILED)
    return out


_FAILED = object()


def _diagnose(got_all: Sequence[Any], cases: Sequence[Case], mistakes: Sequence[Mistake], atol: float,
              rtol: float) -> tuple[list[Mistake], list[Mistake]]:
    """The mistakes that behave like the reader's function on EVERY case: the same output within
    a tolerance ten times tighter than the check's (named), or only within the check's own
    tolerance (near). `got_all` holds the reader's outputs on `cases`, `_FAILED` where the
    reader's function raised; there the mistake must raise too."""
    named, near = [], []
    for mistake in mistakes:
        tight, loose = True, True
        for got, case in zip(got_all, cases):
            try:
                wrong = _call(mistake.fn, case)
            except Exception:  # noqa: BLE001  (a mistaken variant may fail on this input, as the reader's may)
                wrong = _FAILED
            if (got is _FAILED) or (wrong is _FAILED):
                if (got is _FAILED) != (wrong is _FAILED):
                    tight = loose = False
                    break
                continue
            wrong_t = _to_tensor(wrong, torch.as_tensor(0.0)) if not isinstance(wrong, Tensor) else wrong
            if not isinstance(wrong_t, Tensor):
                tight = loose = False
                break
            wrong_t = wrong_t.detach()
            if tight and _difference(got, wrong_t, atol / 10, rtol / 10) is not None:
                tight = False
            if _difference(got, wrong_t, atol, rtol) is not None:
                loose = False
                break
        if tight:
            named.append(mistake)
        elif loose:
            near.append(mistake)
    return named, near


def check_function(
    fn: Callable[..., Any],
    reference: Callable[..., Tensor],
    cases: Sequence[Case],
    *,
    name: str,
    mistakes: Sequence[Mistake] = (),
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    quiet: bool = False,
    axis_names: Sequence[str] = (),
    index_from: Sequence[int] = (),
    dtype: torch.dtype | None = None,
) -> None:
    """Compare `fn` with `reference` on every case; raise `ExerciseCheckError` on the first mismatch.

    Args:
        fn: the reader's function. reference: the package's implementation.
        cases: inputs to try, simplest first (the message names the failing case).
        name: the exercise's name, used in messages.
        mistakes: typical wrong answers to recognise by their output.
        hint: the recipe, given on request (see the module docstring), when no mistake is recognised.
        axis_names: names of the output's trailing axes for messages, e.g. `("row", "key")`.
        index_from: the number of the first entry of each named axis in the statement (1 for
            `tau = 1..T`); 0 when not given.
        dtype: the dtype the statement asks for (e.g. "the float64 tensor"): an output of another
            dtype is refused with a message naming both, whatever its values. None (the default):
            any float dtype whose values are within the tolerance passes.

    A typical mistake is named only when the reader's output equals that mistake's on every
    case (not only the failing one) and no other mistake's does: two formulas that coincide on
    one case are not told apart by it.

    The reader's output may be a tensor, a numpy array, or (for a 0-d answer) a Python number.
    A function that changes one of its inputs in place fails, even when its output is right.
    """
    __tracebackhide__ = True  # noqa: F841
    if not callable(fn):
        raise ExerciseCheckError(f"{name}: expected a function, got {type(fn).__name__}")
    for case in cases:
        # The reader's function runs before the reference, so that no frame above it holds this
        # case's right output.
        args = tuple(_clone(a) for a in case.args)
        kwargs = {k: _clone(v) for k, v in case.kwargs.items()}
        try:
            got = fn(*args, **kwargs)
        except ExerciseCheckError:  # a check's wrapper around the reader's function said what is wrong
            raise
        except NotImplementedError:
            raise ExerciseCheckError(
                f"{name}: not implemented yet. Replace the `raise NotImplementedError(...)` line with your code.",
                label=current_exercise(),
            ) from None
        except Exception as err:
            raise fail(
                f"{name} raised {type(err).__name__} on the case '{case.description}': {err}",
                name=name, specific_hint="", diagnosis="", fallback_hint=hint, case=case, cause=err,
            ) from None
        expected = _call(reference, case)
        expected_t = expected.detach() if isinstance(expected, Tensor) else torch.as_tensor(expected)
        changed = _modified_inputs(case, args, kwargs, _arg_names(reference, case))
        problem = (dtype is not None and _dtype_problem(got, dtype)) or \
            _difference(got, expected_t, atol, rtol, axis_names, index_from)
        if problem is None and not changed:
            continue
        in_place = (
            f"your function modified its argument{'s' if len(changed) > 1 else ''} "
            + ", ".join(f"`{c}`" for c in changed)
            + " in place (e.g. `X -= ...`, `X.mul_(...)`, `X[...] = ...`): the caller's data changed. "
            "Compute on new tensors instead (`X = X - ...`), or work on a copy (`X.clone()`)."
        ) if changed else ""
        if problem is None:
            message = f"{name} gives the right values on the case '{case.description}', but {in_place}"
            raise fail(message, name=name, specific_hint="", diagnosis="", fallback_hint=hint, case=case)
        message = f"{name} is not right yet on the case '{case.description}': {problem}."
        if in_place:
            message += f"\nAlso, {in_place}"
        named, near = _diagnose(_outputs(fn, cases), cases, mistakes, atol, rtol) if mistakes else ([], [])
        specific, diagnosis = "", ""
        if len(named) == 1:
            diagnosis = named[0].label
            message += f"\nThis looks like {diagnosis}."
            specific = named[0].hint
        elif not named and len(near) == 1:
            message += f"\nIt is close to what {near[0].label} gives, but not equal."
        raise fail(message, name=name, specific_hint=specific, diagnosis=diagnosis, fallback_hint=hint, case=case)
    if not quiet:
        print(f"\u2713 {name}: your function matches the reference on all {len(cases)} cases.")
