"""Mutation testing of the exercise checks: does every check reject every wrong answer of a kind?

For every exercise of the book, `SPECS` holds its check, its reference answer (in the learner's
signature), and a set of valid inputs (`probes`) of its own, independent of the check's cases:
several shape families, both signs, the magnitudes the statement names. `mutants(spec)` derives
wrong answers from the reference by rules that do not know the check:

- on the output: negate it; scale it by 2, 1/2, sqrt(2), d, 1/d or n/(n - 1) (`d`, `n` the
  exercise's width and length, read from the input); take abs; reverse or roll the last axis (an
  index off by one); swap the last two axes; return floats where integers are asked;
- on the input: transpose a matrix input; an integer argument off by one; the batch dimension
  dropped (the first element's answer broadcast to the whole batch);
- right only for the sizes of the check's first case (a solution written for the example);
- dtype: the right numbers in float32 where the statement asks for float64 (`Spec.dtype`);
- input type: an answer that fails on numpy arrays where the statement allows them (`Spec.numpy_inputs`);
- and each exercise's own: a term negated, `-inf` written as a finite large negative number,
  another choice of rows, a rule of the statement broken with the right values (`rule=True`),
  and the "regime" class: the reference rewritten naively where the chapter's own inputs make
  that wrong (exp without the max subtracted, an epsilon inside a log, a difference that cancels,
  a strict inequality at the end points of a measured curve), and the "rule evasion" class
  (`qklab.checks.mutant_specs.rule_evasions`, for the exercises whose statement forbids forming
  `W` or calling an eigen-solver): the reference's own numbers computed while `W` is held by a
  route a shape test does not see (an extra axis, a list of rows, numpy, a hand-written power
  iteration) or while an eigen-solver of torch or numpy runs.

`evaluate(spec)` runs each mutant through the check and on the valid inputs (the probes and
the check's own inputs): a mutant that differs from the reference on some valid input must be
rejected (`ExerciseCheckError`); one that equals it on every valid input is *equivalent*
(listed with its reason, not counted); one that breaks a rule must be rejected whatever its
values. The reference must pass, as it is (float64), returning numpy arrays, and returning
float32 where the statement allows any float dtype. `python -m
qklab.checks.mutants` prints the kill rate per exercise; `tests/test_checks_mutants.py` asks for
100 %.

What is not here: the checks themselves (`qklab.checks.<topic>`), the engine (`qklab.checks.core`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qklab.checks.core import Case, ExerciseCheckError, reset_attempts
from qklab.checks.mutant_kinds import Mutant, Spec

__all__ = ["Mutant", "Spec", "Result", "mutants", "evaluate", "specs", "main"]


@dataclass
class Result:
    """What the harness found for one exercise."""

    spec: Spec
    killed: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)  # differ on a valid input, yet passed: a hole
    equivalent: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    stillborn: list[str] = field(default_factory=list)  # raise on every valid input (not counted)
    reference_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def kill_rate(self) -> float:
        n = len(self.killed) + len(self.survived)
        return len(self.killed) / n if n else 1.0


# --- running answers ------------------------------------------------------------------------------

def _clone(v: Any) -> Any:
    return v.clone() if isinstance(v, Tensor) else v


def _run(fn: Callable[..., Any], case: Case) -> Any:
    return fn(*(_clone(a) for a in case.args), **{k: _clone(v) for k, v in case.kwargs.items()})


def _rejects(spec: Spec, answer: Any) -> bool | str:
    """True when the check rejects `answer`; a string when the check itself crashed."""
    reset_attempts()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            spec.check(answer)
    except ExerciseCheckError:
        return True
    except Exception as err:  # noqa: BLE001  (a check must never crash on an answer)
        return f"the check raised {type(err).__name__}: {err}"
    finally:
        reset_attempts()
    return False


def _as_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out.detach()
    if isinstance(out, np.ndarray):
        return torch.from_numpy(out)
    return torch.as_tensor(out)


def _default_agree(spec: Spec) -> Callable[[Any, Any, Case], bool]:
    def agree(a: Any, b: Any, case: Case) -> bool:
        a, b = _as_tensor(spec.pack(a) if spec.pack else a), _as_tensor(spec.pack(b) if spec.pack else b)
        if a.shape != b.shape:
            return False
        int_a, int_b = not (a.is_floating_point() or a.is_complex()), not (b.is_floating_point() or b.is_complex())
        if int_a != int_b:
            return False
        if a.is_complex() or b.is_complex():
            a, b = a.to(torch.complex128), b.to(torch.complex128)
        else:
            a, b = a.to(torch.float64), b.to(torch.float64)
        return bool(torch.allclose(a, b, rtol=spec.rtol, atol=spec.atol, equal_nan=True))

    return agree


def _check_inputs(spec: Spec) -> list[Case]:
    """The inputs the check itself gives the answer (recorded by a spy that answers like the reference)."""
    seen: list[Case] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(Case("check input", tuple(_clone(a) for a in args), {k: _clone(v) for k, v in kwargs.items()}))
        return spec.reference(*args, **kwargs)

    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        spec.check(spy)
    return seen


# --- mutants ---------------------------------------------------------------------------------------

def _fit(out: Tensor, like: Tensor) -> Tensor:
    """`out` cut to the shape of `like` along the last axis when it is longer there (an off-by-one size)."""
    if out.ndim == like.ndim and out.ndim and out.shape[:-1] == like.shape[:-1] and out.shape[-1] > like.shape[-1]:
        return out[..., : like.shape[-1]]
    return out


def _output_mutant(spec: Spec, name: str, op: Callable[[Tensor, tuple, dict], Tensor]) -> Mutant:
    def fn(*args: Any, **kwargs: Any) -> Any:
        out = spec.reference(*args, **kwargs)
        t = _as_tensor(spec.pack(out) if spec.pack else out)
        t = op(t, args, kwargs)
        return spec.unpack(t) if spec.unpack else t

    return Mutant(name, fn)


def _scale(factor: Callable[[tuple, dict], float]) -> Callable[[Tensor, tuple, dict], Tensor]:
    def op(t: Tensor, args: tuple, kwargs: dict) -> Tensor:
        f = factor(args, kwargs)
        return t * f if (t.is_floating_point() or t.is_complex()) else (t.double() * f)

    return op


def _input_mutant(spec: Spec, name: str, change: Callable[[tuple, dict], tuple[tuple, dict]] | None,
                  after: Callable[[Any, tuple, dict], Any] | None = None) -> Mutant:
    def fn(*args: Any, **kwargs: Any) -> Any:
        new_args, new_kwargs = change(args, kwargs) if change else (args, kwargs)
        out = spec.reference(*new_args, **new_kwargs)
        return after(out, args, kwargs) if after else out

    return Mutant(name, fn)


def _function_mutants(spec: Spec, first: Case | None) -> list[Mutant]:
    sizes = spec.sizes or (lambda *a, **k: (1.0, 1.0))
    d_of = lambda a, k: float(sizes(*a, **k)[0])  # noqa: E731
    n_of = lambda a, k: float(sizes(*a, **k)[1])  # noqa: E731
    probe_out = None
    with contextlib.suppress(Exception):
        probe_out = _as_tensor(spec.pack(spec.reference(*first.args, **first.kwargs)) if spec.pack
                               else spec.reference(*first.args, **first.kwargs)) if first else None
    ndim = probe_out.ndim if probe_out is not None else 0
    out: list[Mutant] = [
        _output_mutant(spec, "negate the output", lambda t, a, k: -t),
        _output_mutant(spec, "scale by 2", _scale(lambda a, k: 2.0)),
        _output_mutant(spec, "scale by 1/2", _scale(lambda a, k: 0.5)),
        _output_mutant(spec, "scale by sqrt(2)", _scale(lambda a, k: math.sqrt(2.0))),
        _output_mutant(spec, "scale by d", _scale(d_of)),
        _output_mutant(spec, "scale by 1/d", _scale(lambda a, k: 1.0 / d_of(a, k))),
        _output_mutant(spec, "scale by n/(n-1)", _scale(lambda a, k: n_of(a, k) / (n_of(a, k) - 1) if n_of(a, k) > 1 else 1.0)),
        _output_mutant(spec, "abs of the output", lambda t, a, k: t.abs()),
    ]
    # Mutants that are the identity by construction on this output's shape are not made.
    if ndim >= 1:
        out += [_output_mutant(spec, "reverse the last axis", lambda t, a, k: t.flip(-1) if t.ndim else t),
                _output_mutant(spec, "roll the last axis by one (an index off by one)", lambda t, a, k: t.roll(1, -1) if t.ndim else t)]
    if ndim >= 2:
        out.append(_output_mutant(spec, "swap the last two axes of the output", lambda t, a, k: t.transpose(-2, -1) if t.ndim >= 2 else t))
    if probe_out is not None and not (probe_out.is_floating_point() or probe_out.is_complex()):
        out.append(_output_mutant(spec, "floats where integers are asked", lambda t, a, k: t.to(torch.float64)))
    for i, nd in enumerate(spec.core_ndim):
        if nd is not None and nd >= 2:
            def transpose(a: tuple, k: dict, i: int = i) -> tuple[tuple, dict]:
                a = list(a)
                a[i] = a[i].transpose(-2, -1)
                return tuple(a), k
            out.append(_input_mutant(spec, f"transpose input {i + 1}", transpose))
    if first is not None:
        for i, v in enumerate(first.args):
            if isinstance(v, int) and not isinstance(v, bool):
                for step in (1, -1):
                    def shift(a: tuple, k: dict, i: int = i, step: int = step) -> tuple[tuple, dict]:
                        a = list(a)
                        a[i] = a[i] + step
                        return tuple(a), k

                    def cut(o: Any, a: tuple, k: dict) -> Any:
                        ref = spec.reference(*a, **k)
                        if spec.pack:
                            return o
                        return _fit(_as_tensor(o), _as_tensor(ref))
                    out.append(_input_mutant(spec, f"integer input {i + 1} off by {step:+d}", shift, cut))
        for key, v in first.kwargs.items():
            if isinstance(v, int) and not isinstance(v, bool):
                def shift_kw(a: tuple, k: dict, key: str = key) -> tuple[tuple, dict]:
                    return a, {**k, key: k.get(key, 0) + 1}
                out.append(_input_mutant(spec, f"keyword {key} off by +1", shift_kw))
    if spec.batched and any(nd is not None for nd in spec.core_ndim):
        def first_of_batch(*args: Any, **kwargs: Any) -> Any:
            full = spec.reference(*args, **kwargs)
            batched = [i for i, (a, nd) in enumerate(zip(args, spec.core_ndim))
                       if nd is not None and isinstance(a, Tensor) and a.ndim > nd]
            if not batched:
                return full
            a = list(args)
            for i in batched:
                a[i] = args[i][(0,) * (args[i].ndim - spec.core_ndim[i])]
            one = _as_tensor(spec.pack(spec.reference(*a, **kwargs)) if spec.pack else spec.reference(*a, **kwargs))
            whole = _as_tensor(spec.pack(full) if spec.pack else full)
            try:
                t = one.expand(whole.shape).clone()
            except RuntimeError:
                t = one
            return spec.unpack(t) if spec.unpack else t
        out.append(Mutant("the batch dimension dropped (the first element's answer everywhere)", first_of_batch))
    if first is not None:
        signature = _shapes(first)

        def only_for_example(*args: Any, **kwargs: Any) -> Any:
            right = spec.reference(*args, **kwargs)
            if _shapes(Case("", args, kwargs)) == signature:
                return right
            t = _as_tensor(spec.pack(right) if spec.pack else right)
            t = t * 1.5 + 0.25 if (t.is_floating_point() or t.is_complex()) else t + 1
            return spec.unpack(t) if spec.unpack else t
        out.append(Mutant("right only for the sizes of the first example", only_for_example))
    return out + _dtype_mutants(spec) + _input_type_mutants(spec) + spec.extra()


def _in_dtype(out: Any, dtype: torch.dtype) -> Any:
    """`out` (a tensor, a tuple of them, a number) with its floating tensors in `dtype`."""
    if isinstance(out, tuple):
        return tuple(_in_dtype(o, dtype) for o in out)
    if isinstance(out, Tensor) and out.is_floating_point():
        return out.to(dtype)
    if isinstance(out, float):
        return torch.tensor(out, dtype=dtype)
    return out


def _float32_answer(spec: Spec) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        return _in_dtype(spec.reference(*args, **kwargs), torch.float32)
    return fn


def _dtype_mutants(spec: Spec) -> list[Mutant]:
    """Class "dtype": where the statement asks for a dtype, the right numbers in another one break its rule."""
    if spec.dtype is None:
        return []
    other = torch.float32 if spec.dtype != torch.float32 else torch.float64
    return [Mutant(f"dtype: the right numbers in {str(other).replace('torch.', '')}",
                   lambda *a, **k: _in_dtype(spec.reference(*a, **k), other), rule=True)]


def _input_type_mutants(spec: Spec) -> list[Mutant]:
    """Class "input type": where the statement allows numpy arrays, an answer for tensors only breaks its rule."""
    if not spec.numpy_inputs:
        return []

    def tensors_only(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(v, np.ndarray) for v in (*args, *kwargs.values())):
            raise TypeError("expected a torch.Tensor, got numpy.ndarray (an answer written for tensors only)")
        return spec.reference(*args, **kwargs)

    return [Mutant("input type: works on tensors only, fails on numpy arrays", tensors_only, rule=True)]


def _shapes(case: Case) -> tuple:
    def one(v: Any) -> Any:
        if isinstance(v, Tensor):
            return ("T", tuple(v.shape))
        if isinstance(v, (int, float, bool)) or v is None:
            return ("v", v) if isinstance(v, (int, bool)) or v is None else ("f",)
        return ("o",)
    return tuple(one(a) for a in case.args) + tuple((k, one(v)) for k, v in sorted(case.kwargs.items()))


def _value_mutants(spec: Spec) -> list[Mutant]:
    ref = tuple(spec.reference)
    d, n = spec.value_sizes
    factors = {"negate": -1.0, "scale by 2": 2.0, "scale by 1/2": 0.5, "scale by sqrt(2)": math.sqrt(2.0),
               "scale by d": d, "scale by 1/d": 1.0 / d, "scale by n/(n-1)": n / (n - 1) if n > 1 else 1.0}

    def keep_kind(old: Any, new: float) -> Any:
        """An integer answer (a count, a code) stays an int where the mutated number is whole."""
        if isinstance(old, int) and float(new).is_integer():
            return int(new)
        return float(new)

    def replace(i: int, new: float) -> tuple:
        return tuple(keep_kind(v, new) if j == i else v for j, v in enumerate(ref))

    out = []
    for i in range(len(ref)):
        where = f" (value {i + 1})" if len(ref) > 1 else ""
        zero = "the right value is 0: scaling it gives 0 again" if ref[i] == 0 else ""
        for name, f in factors.items():
            out.append(Mutant(name + where, replace(i, ref[i] * f), reason=zero))
        out.append(Mutant("abs" + where, replace(i, abs(ref[i]))))
        out.append(Mutant("rounded to an integer" + where, replace(i, float(round(ref[i])))))
        if spec.value_at:
            for step in (1, -1):
                with contextlib.suppress(Exception):
                    out.append(Mutant(f"the size off by {step:+d}" + where, replace(i, float(spec.value_at(step)[i]))))
    return out + spec.extra()


def mutants(spec: Spec, first: Case | None = None) -> list[Mutant]:
    """Every mutant of `spec`'s reference answer (see the module docstring)."""
    return _function_mutants(spec, first) if spec.is_function else _value_mutants(spec)


# --- evaluating -------------------------------------------------------------------------------------

def _numpy_answer(spec: Spec) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        out = spec.reference(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.detach().numpy() if isinstance(o, Tensor) else o for o in out)
        return out.detach().numpy() if isinstance(out, Tensor) else np.float64(out)
    return fn


def _float64_answer(spec: Spec) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        up = lambda v: v.to(torch.float64) if isinstance(v, Tensor) and v.is_floating_point() else v  # noqa: E731
        return spec.reference(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})
    return fn


def evaluate(spec: Spec) -> Result:
    """Run every mutant of `spec` through its check; see the module docstring."""
    start = time.perf_counter()
    result = Result(spec)
    if spec.is_function:
        right_variants = [("the reference", spec.reference), ("the reference in float64", _float64_answer(spec)),
                          ("the reference returning numpy", _numpy_answer(spec))]
        if spec.dtype is None and spec.float32_passes:  # the statement allows any float dtype
            right_variants.append(("the reference returning float32", _float32_answer(spec)))
        for what, answer in right_variants:
            verdict = _rejects(spec, answer)
            if verdict:
                result.reference_problems.append(f"{what} is rejected" + (f" ({verdict})" if isinstance(verdict, str) else ""))
        inputs = _check_inputs(spec) + (spec.probes() if spec.probes else [])
        agree = spec.agree or _default_agree(spec)
        expected = [_run(spec.reference, c) for c in inputs]
    else:
        verdict = _rejects(spec, spec.reference)
        if verdict:
            result.reference_problems.append("the reference is rejected" + (f" ({verdict})" if isinstance(verdict, str) else ""))
        numpy_values = tuple(np.int64(v) if isinstance(v, int) else np.float64(v) for v in spec.reference)
        verdict = _rejects(spec, numpy_values)
        if verdict:
            result.reference_problems.append("the reference as numpy numbers is rejected")
        inputs, expected = [], []
    for mutant in mutants(spec, inputs[0] if inputs else None):
        if spec.is_function:
            differs, ran = False, False
            for case, want in zip(inputs, expected):
                try:
                    got = _run(mutant.answer, case)
                except Exception:  # noqa: BLE001  (raising where the reference does not: a difference)
                    differs = True
                    continue
                ran = True
                if not agree(got, want, case):
                    differs = True
            if not ran and not mutant.rule:
                result.stillborn.append(mutant.name)
                continue
        else:
            differs = any(not math.isclose(a, b, rel_tol=max(1e-9, spec.value_rtol), abs_tol=1e-12) or type(a) is not type(b)
                          for a, b in zip(mutant.answer, spec.reference))
        if not (differs or mutant.rule):
            result.equivalent.append((mutant.name, mutant.reason or spec.reasons.get(mutant.name, "equal to the reference on every valid input tried")))
            continue
        verdict = _rejects(spec, mutant.answer if spec.is_function else mutant.answer)
        if verdict is True:
            result.killed.append(mutant.name)
        else:
            result.survived.append(mutant.name + (f" ({verdict})" if isinstance(verdict, str) else ""))
    result.seconds = time.perf_counter() - start
    return result


def specs() -> list[Spec]:
    """Every exercise of the book, in the book's order (`qklab.checks.mutant_specs`)."""
    from qklab.checks.mutant_specs import SPECS

    return list(SPECS)


def _book_numbers() -> dict[str, str]:
    """The book's number of every exercise ("7.3"), read from `chapters/` when this is a checkout."""
    from pathlib import Path

    chapters = Path(__file__).resolve().parents[2] / "chapters"
    numbers: dict[str, str] = {}
    with contextlib.suppress(Exception):
        import nbformat

        from qklab.exercises import exercises_of

        for path in sorted(chapters.glob("*.ipynb")):
            numbers |= {e.label: e.number or "0" for e in exercises_of(nbformat.read(str(path), as_version=4), path.name)}
    return numbers


def table(results: Sequence[Result]) -> str:
    """The kill rate per exercise, as a Markdown table, with the equivalent mutants and their reasons."""
    lines = ["| exercise | label | mutants killed | kill rate | equivalent (not counted) | seconds |",
             "|---|---|---|---|---|---|"]
    book = _book_numbers()
    for r in results:
        n = len(r.killed) + len(r.survived)
        lines.append(f"| {book.get(r.spec.label, r.spec.number)} | {r.spec.label} | {len(r.killed)} of {n} | {100 * r.kill_rate:.0f} % | "
                     f"{len(r.equivalent)} | {r.seconds:.1f} |")
    total_k = sum(len(r.killed) for r in results)
    total = sum(len(r.killed) + len(r.survived) for r in results)
    lines.append(f"| all | | {total_k} of {total} | {100 * total_k / max(total, 1):.1f} % | "
                 f"{sum(len(r.equivalent) for r in results)} | {sum(r.seconds for r in results):.1f} |")
    notes = []
    for r in results:
        for name in r.survived:
            notes.append(f"- {r.spec.number} {r.spec.label}: SURVIVED: {name}")
        for problem in r.reference_problems:
            notes.append(f"- {r.spec.number} {r.spec.label}: {problem}")
    for r in results:
        for name, why in r.equivalent:
            notes.append(f"- {r.spec.number} {r.spec.label}: equivalent: {name}: {why}")
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qklab.checks.mutants",
                                     description="Mutation testing of the exercise checks: the kill rate per exercise.")
    parser.add_argument("labels", nargs="*", help="exercise labels (default: all)")
    args = parser.parse_args(argv)
    chosen = [s for s in specs() if not args.labels or s.label in args.labels]
    results = [evaluate(s) for s in chosen]
    print(table(results))
    bad = any(r.survived or r.reference_problems for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
