"""The exercise-check engine: compare with the reference, explain the difference.

A check runs the reader's function and the reference on the same `Case`s (edge cases
included). On the first mismatch it raises `ExerciseCheckError` with what differs (the type,
the shape, non-finite values, or the largest difference and where), a diagnosis when the
reader's output equals that of a known `Mistake` (for instance "softmax over the wrong axis",
found by running the mistaken variant on the same input), and one hint. On success it prints a single line. Tests (`tests/test_checks_*.py`) feed every registered
mistake back in and assert that it fails with its own label.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Case", "Mistake", "ExerciseCheckError", "check_function", "check_value", "gaussian"]


class ExerciseCheckError(AssertionError):
    """An exercise answer differs from the reference; the message says how and hints why."""


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


def _clone(value: Any) -> Any:
    """Deep copy so that a function that modifies its input cannot affect the next call."""
    return value.clone() if isinstance(value, Tensor) else copy.deepcopy(value)


def _call(fn: Callable[..., Any], case: Case) -> Any:
    return fn(*(_clone(a) for a in case.args), **{k: _clone(v) for k, v in case.kwargs.items()})


def _difference(got: Any, expected: Tensor, atol: float, rtol: float) -> str | None:
    """None when `got` matches `expected`, else a sentence saying what differs."""
    if not isinstance(got, Tensor):
        return f"returned a {type(got).__name__}, expected a torch.Tensor of shape {tuple(expected.shape)}"
    if got.shape != expected.shape:
        return f"returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    got = got.detach().to(expected.dtype) if not got.is_complex() else got.detach()
    finite = torch.isfinite(expected)
    if bool((~torch.isfinite(got) & finite).any()):
        n_bad = int((~torch.isfinite(got) & finite).sum())
        return f"returned {n_bad} NaN/inf value(s) where the reference is finite"
    if torch.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
        return None
    err = (got - expected).abs().nan_to_num(nan=math.inf)
    where = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
    show = lambda v: f"{complex(v):.4g}" if v.is_complex() else f"{float(v):.4g}"  # noqa: E731
    return (
        f"values differ: largest difference {float(err.max()):.3g} at index {where} "
        f"(yours {show(got[where])}, expected {show(expected[where])})"
    )


def _diagnose(got: Any, case: Case, mistakes: Sequence[Mistake], atol: float, rtol: float) -> Mistake | None:
    for mistake in mistakes:
        try:
            wrong = _call(mistake.fn, case)
        except Exception:  # a mistaken variant may itself fail on this input; then it is not this one
            continue
        if isinstance(wrong, Tensor) and _difference(got, wrong, atol, rtol) is None:
            return mistake
    return None


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
) -> None:
    """Compare `fn` with `reference` on every case; raise `ExerciseCheckError` on the first mismatch.

    Args:
        fn: the reader's function. reference: the package's implementation.
        cases: inputs to try, simplest first (the message names the failing case).
        name: the exercise's name, used in messages.
        mistakes: typical wrong answers to recognise by their output.
        hint: the hint given when no mistake is recognised.
    """
    if not callable(fn):
        raise ExerciseCheckError(f"{name}: expected a function, got {type(fn).__name__}")
    for case in cases:
        expected = _call(reference, case)
        try:
            got = _call(fn, case)
        except NotImplementedError:
            raise ExerciseCheckError(
                f"{name}: not implemented yet. Replace the `raise NotImplementedError(...)` line with your code."
            ) from None
        except Exception as err:
            raise ExerciseCheckError(
                f"{name} raised {type(err).__name__} on the case '{case.description}': {err}"
            ) from err
        problem = _difference(got, expected, atol, rtol)
        if problem is None:
            continue
        message = f"{name} is not right yet on the case '{case.description}': {problem}."
        mistake = _diagnose(got, case, mistakes, atol, rtol)
        if mistake is not None:
            message += f"\nThis looks like {mistake.label}. Hint: {mistake.hint}"
        elif hint:
            message += f"\nHint: {hint}"
        raise ExerciseCheckError(message)
    if not quiet:
        print(f"\u2713 {name}: your function matches the reference on all {len(cases)} cases.")


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
    """Check a predicted number against the computed one.

    Args:
        mistakes: `{label: (value that mistake gives, hint)}`, recognised within the tolerance.
    """
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ExerciseCheckError(f"{name}: expected a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if value is ... or value is None:
        raise ExerciseCheckError(f"{name}: no answer yet. Replace the `...` (or None) with your number.")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ExerciseCheckError(f"{name}: expected a number, got {type(value).__name__}")
    close = lambda a, b: math.isclose(a, b, rel_tol=rtol, abs_tol=atol)  # noqa: E731
    if close(float(value), float(expected)):
        if not quiet:
            print(f"\u2713 {name}: {value:.4g} is right.")
        return
    message = f"{name}: you answered {value:.4g}, but the computed value is {expected:.4g}."
    for label, (wrong, why) in (mistakes or {}).items():
        if close(float(value), float(wrong)):
            message += f"\nThis looks like {label}. Hint: {why}"
            break
    else:
        if hint:
            message += f"\nHint: {hint}"
    raise ExerciseCheckError(message)
