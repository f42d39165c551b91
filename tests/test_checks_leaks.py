"""No failed check gives the right answer away: not in its message, not in what the error reaches.

Every check is fed wrong answers: each of its recognised mistakes, and generic ones (the right
answer scaled by 0.7, 1.07 and 1.3, shifted, negated). Each wrong answer is checked twice, so the
second message carries the hint too. The reference output of the failing case is computed here,
independently of the error (the reference called on the failing case, `err.case`), and:

- the message must not contain any of its values, written at several precisions (issue 10);
- nothing the error reaches may hold it (issue 28: a learner reads `sys.last_value`, walks
  `sys.last_traceback` or opens `%debug` after a failed check): the error's attributes, its
  `__cause__` / `__context__` chain, and the locals of every frame of their tracebacks.

Allowed in a message, and removed before the scan: the reader's own values ("yours is ...",
"your answer ...") and the case description (the input). Round values (0, 1, 0.5, small
integers) cannot be scanned for and are skipped, except integer answers of two digits or more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch

from qklab.attention import sparsemax
from qklab.checks import attention as ca
from qklab.checks import collapse as cc
from qklab.checks import gradients as cgrad
from qklab.checks import intro as ci
from qklab.checks import localization as cl
from qklab.checks import metrics as cm
from qklab.checks import spectrum as cs
from qklab.checks import training as ct
from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.collapse import attention_stack_residuals, localization, running_products
from qklab.metrics import effective_rank
from qklab.theory import predicted_snr


def _numbers(value) -> list[float]:
    if isinstance(value, torch.Tensor):
        t = value.detach().reshape(-1)
        if t.is_complex():
            t = torch.cat([t.real, t.imag])
        return [float(v) for v in t.to(torch.float64)]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _numbers(v)]
    if isinstance(value, complex):
        return [value.real, value.imag]
    return [float(value)]


def _forms(v: float) -> set[str]:
    """How a value may be written in a message."""
    if not math.isfinite(v):
        return set()
    if v == round(v):
        return {str(int(round(v)))} if abs(v) >= 10 else set()  # integer answers of 2+ digits only
    if abs(v - round(v, 1)) < 1e-12 and abs(v) < 10:
        return set()  # 0.5, 2.5: too round to scan for
    forms = {f"{v:.{p}f}" for p in (2, 3, 4, 5, 6)} | {f"{v:.{p}g}" for p in (3, 4, 5, 6, 8)} | {repr(v)}
    return {f for f in forms if len(f.lstrip("-").replace(".", "").lstrip("0")) >= 3}  # at least 3 significant digits


def _scrub(message: str, err: ExerciseCheckError) -> str:
    """Remove what a message may show: the reader's own values and the input's description."""
    message = re.sub(r"(yours is|your answer) -?[\d.e+\-j()]+", r"\1 <own>", message)
    if err.case is not None:
        message = message.replace(err.case.description, "<case>")
    return message


def _leaks(err: ExerciseCheckError, expected) -> list[str]:
    """The forms of `expected`'s values (the reference output of the failing case) in the message."""
    text = _scrub(str(err), err)
    found = []
    for v in _numbers(expected) if expected is not None else []:
        for form in _forms(v):
            if re.search(r"(?<![\d.])" + re.escape(form) + r"(?![\d])", text):
                found.append(form)
    return found


def _holds(value, expected, depth: int = 0) -> bool:
    """True when `value` is, or contains (in lists, tuples, dicts, objects' attributes), the
    reference output `expected`: a tensor or array allclose to it, or its non-round number."""
    if depth > 4 or value is None or callable(value) and not isinstance(value, torch.Tensor):
        return False
    want = expected.detach().to(torch.complex128 if expected.is_complex() else torch.float64) \
        if isinstance(expected, torch.Tensor) else torch.as_tensor(expected, dtype=torch.float64)
    if isinstance(value, (torch.Tensor, np.ndarray)) or isinstance(value, (float, np.floating)):
        got = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value))
        if got.shape != want.shape or got.is_complex() != want.is_complex() or not (got.is_floating_point() or got.is_complex()):
            return False
        if want.numel() == 1 and not want.is_complex() and abs(float(want) - round(float(want))) < 1e-9:
            return False  # a round number: anything may equal it
        return bool(torch.allclose(got.to(want.dtype), want, rtol=1e-9, atol=1e-12, equal_nan=True))
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(v, expected, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_holds(v, expected, depth + 1) for v in value.values())
    if isinstance(value, BaseException):
        return False  # walked by _reachable
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and not isinstance(value, type) and type(value).__module__.startswith("qklab"):
        return any(_holds(v, expected, depth + 1) for v in attrs.values())
    return False


def _reachable(err: BaseException) -> list[tuple[str, object]]:
    """What a learner reaches from a caught error: its attributes and arguments, and for it and every
    error of its `__cause__` / `__context__` chain, the locals of each frame of its traceback."""
    out: list[tuple[str, object]] = []
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out += [(f"{type(e).__name__}.{k}", v) for k, v in vars(e).items()]
        out += [(f"{type(e).__name__}.args", e.args)]
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            out += [(f"frame {frame.f_code.co_name}: {k}", v) for k, v in frame.f_locals.items()]
            tb = tb.tb_next
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
    return out


def _reached(err: BaseException, expected) -> list[str]:
    """Where the reference output `expected` (or a part of a tuple output) is reachable from `err`
    (empty: nowhere). The failing case (`err.case`) is left out: it holds the inputs, which the
    learner has (a single matrix is its own running product)."""
    if isinstance(expected, (tuple, list)):
        return [where for part in expected for where in _reached(err, part)]
    return [where for where, value in _reachable(err) if where != "ExerciseCheckError.case" and _holds(value, expected)]


def _half_entropy_inputs() -> list[tuple]:
    """The inputs of `check_half_entropy_scale`, whose errors name their case in words only."""
    from qklab.checks.core import gaussian
    from qklab.spectrum import random_qk

    X16 = gaussian((4, 16, 16), seed=7)
    return [(X16, torch.eye(16, dtype=torch.float64)),
            (X16, random_qk(16, 0.0, 1.0, seed=8, exact=True, dtype=torch.float64)),
            (gaussian((3, 10, 6), seed=9), gaussian((6, 6), seed=10) + torch.eye(6, dtype=torch.float64))]


CASES_IN_WORDS = {"ex-half-entropy": _half_entropy_inputs}


def _reference_outputs(label: str, reference: Callable, err: ExerciseCheckError) -> list:
    """The reference's output on the case the error names, computed here; for a check whose errors
    name the case in words only, its output on every input of that check."""
    if err.case is not None:
        return [reference(*err.case.args, **err.case.kwargs)]
    return [reference(*args) for args in CASES_IN_WORDS[label]()]


def _scaled(fn: Callable, factor: float, shift: float = 0.0) -> Callable:
    def wrong(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(factor * o + shift for o in out)
        return factor * out + shift

    return wrong


def _wrong_functions(reference: Callable, mistakes) -> list[Callable]:
    generic = [_scaled(reference, f) for f in (0.7, 1.07, 1.3, -1.0)] + [_scaled(reference, 1.0, 0.3)]
    return [m.fn for m in mistakes] + generic


FUNCTION_CHECKS = {
    "ex-pattern": (ca.check_attention_pattern, ca.attention_pattern_reference, ca.ATTENTION_PATTERN_MISTAKES),
    "ex-entropy": (cm.check_mean_row_entropy, cm._entropy_reference, cm.ENTROPY_MISTAKES),
    "ex-residual": (cm.check_relative_residual, cm._residual_reference, cm.RESIDUAL_MISTAKES),
    "ex-erank": (cm.check_effective_rank, effective_rank, cm.ERANK_MISTAKES),
    "ex-stack-residuals": (cc.check_stack_residuals, attention_stack_residuals, cc._STACK_MISTAKES),
    "ex-running-products": (cc.check_running_products, running_products, cc._PRODUCT_MISTAKES),
    "ex-query-jacobian": (cgrad.check_output_query_jacobian, cgrad.output_query_jacobian_autograd, cgrad.JACOBIAN_MISTAKES),
    "ex-half-entropy": (cc.check_half_entropy_scale, cc.half_entropy_scale_reference, []),
    "ex-localization": (cc.check_localization, localization, cc._LOCALIZATION_MISTAKES),
    "ex-core-eigenvalues": (cs.check_core_eigenvalues, cs.core_eigenvalues_reference, cs.CORE_MISTAKES),
    "ex-trace-moments": (cs.check_spectrum_moments, cs.spectrum_moments_reference, cs.MOMENT_MISTAKES),
    "ex-sparsemax": (cl.check_sparsemax, lambda z: sparsemax(z, dim=-1), cl.SPARSEMAX_MISTAKES),
    "ex-predicted-snr": (cl.check_predicted_snr, lambda m, s, d, T: predicted_snr(m, s, d, T, tokens="random_walk"), cl.SNR_MISTAKES),
    "ex-power-step": (ct.check_power_step, ct.power_step_reference, ct.POWER_MISTAKES),
    "ex-entropy-bound": (ct.check_entropy_bound, ct.entropy_bound_reference, ct.BOUND_MISTAKES),
    "ex-head-stats": (ct.check_head_stats, ct.head_stats_reference, ct.HEAD_STATS_MISTAKES),
    "ex-mimetic-kappa": (ct.check_mimetic_kappa, ct.mimetic_kappa_reference, ct.MIMETIC_MISTAKES),
    "ex-symmetric-penalty": (ct.check_symmetric_penalty, ct.symmetric_penalty_reference, ct.SYMMETRIC_MISTAKES),
}


def _messages(call: Callable[[], None]) -> list[ExerciseCheckError]:
    errors = []
    for _ in range(2):  # the second failure adds the hint
        try:
            call()
        except ExerciseCheckError as err:
            errors.append(err)
    return errors


@pytest.mark.parametrize("label", sorted(FUNCTION_CHECKS))
def test_function_check_failures_hold_no_reference_value(label):
    check, reference, mistakes = FUNCTION_CHECKS[label]
    n_failed = 0
    for wrong in _wrong_functions(reference, mistakes):
        reset_attempts()
        for err in _messages(lambda: check(wrong)):
            n_failed += 1
            assert err.case is not None or label in CASES_IN_WORDS, f"{label}: the error does not say which case failed"
            for expected in _reference_outputs(label, reference, err):
                assert not _leaks(err, expected), f"{label}: the message shows reference value(s) {_leaks(err, expected)}:\n{err}"
                assert not _reached(err, expected), f"{label}: the reference output is reachable from the error: {_reached(err, expected)}"
            assert err.__cause__ is None and err.__context__ is None
    assert n_failed >= 2 * len(mistakes)  # every mistake failed, twice


def _value_cases():
    log8 = math.log(8)
    ratio = cm.causal_uniform_ratio(8)
    resid = cc.uniform_causal_residual_reference()
    hmax = ct.causal_max_entropy(32)
    W = ct.unsafe_example_matrix()
    unsafe = float(torch.trace(W @ W)) / 4
    counts = ca.qk_counts(64, 16)
    return {
        "ex-uniform-entropy": (lambda v: ci.check_uniform_entropy(v, T=8), log8, [3.0, 1 / 8, log8 / math.log(10), 8 * log8]),
        "ex-causal-ratio": (lambda v: cm.check_causal_uniform_ratio(v, T=8), ratio, [1.0, 7 / 8]),
        "ex-uniform-causal": (cc.check_uniform_causal_residual, resid, [0.0, 14 / 18, 0.7785]),
        "ex-causal-max-entropy": (lambda v: ct.check_causal_max_entropy(v, T=32), hmax, [math.log(32), math.lgamma(33)]),
        "ex-unsafe-value": (ct.check_unsafe_value, unsafe, [4.5, -18.0, 0.0]),
        "ex-zero-eigenvalues (a)": (lambda v: cs.check_zero_counts(v, 40), 36, [12, 0, 48, 30, 40]),
        "ex-zero-eigenvalues (b)": (lambda v: cs.check_zero_counts(36, v), 40, [36, 4, 8, 44, 20]),
        "ex-count (factors)": (lambda v: ca.check_qk_counts(v, counts["entries"], counts["free"]), counts["factors"], [1024, 4096]),
        "ex-count (entries)": (lambda v: ca.check_qk_counts(counts["factors"], v, counts["free"]), counts["entries"], [256, 2048]),
        "ex-count (free)": (lambda v: ca.check_qk_counts(counts["factors"], counts["entries"], v), counts["free"], [2048, 4096, 2032]),
    }


@pytest.mark.parametrize("label", sorted(_value_cases()))
def test_value_check_failures_hold_no_reference_value(label):
    check, want, mistaken = _value_cases()[label]
    wrongs = mistaken + [f * want for f in (0.5, 0.7, 1.07, 1.3, 2.0, -1.0)] + [want + 0.3]
    for wrong in wrongs:
        reset_attempts()
        errors = _messages(lambda: check(wrong))
        assert len(errors) == 2, f"{label}: the wrong answer {wrong} was accepted"
        for err in errors:
            assert not _leaks(err, want), f"{label}: the message shows the right value {_leaks(err, want)}:\n{err}"
            assert not _reached(err, float(want)), f"{label}: the right value is reachable from the error: {_reached(err, float(want))}"
            assert err.__cause__ is None and err.__context__ is None


def test_an_error_in_the_readers_function_shows_the_readers_frames_but_holds_no_cause():
    """The reader's own frames are shown (as text), the reader's exception is not kept: its traceback
    runs through the check's engine, whose frames hold the reference's output."""
    def erank(P):
        return P.sum() / undefined_name  # noqa: F821

    reset_attempts()
    [err, _] = _messages(lambda: cm.check_effective_rank(erank))
    assert err.__cause__ is None and err.__context__ is None
    shown = "\n".join(err._render_traceback_())
    assert "NameError" in shown and "undefined_name" in shown and "(your code first)" in shown
    assert not _reached(err, _reference_outputs("ex-erank", effective_rank, err)[0])


def test_the_error_a_learner_gets_starts_at_the_check_it_called():
    """`%debug` after a failed check: the frames of the error's traceback are the caller's and the
    check's outer wrapper; none of the engine (`check_function`, `check_value`, `_difference`)."""
    reset_attempts()
    [err, _] = _messages(lambda: cm.check_effective_rank(lambda P: 2 * effective_rank(P)))
    names = []
    tb = err.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names[-1] == "wrapped" and not {"check_function", "check_value", "_difference", "check_effective_rank"} & set(names), names


def test_the_scan_finds_a_planted_leak():
    """The scanners themselves: the old message format ("the computed value is 0.6375") is caught,
    and so is an error that carries the reference output (the old `expected` attribute) or whose
    context's frames hold it."""
    err = ExerciseCheckError("x: you answered 1, but the computed value is 0.6375.")
    assert "0.6375" in _leaks(err, 0.637468)
    err = ExerciseCheckError("zero eigenvalues: the answer is 36.")
    assert _leaks(err, 36) == ["36"]
    err = ExerciseCheckError("yours is 0.6375, too large")
    assert not _leaks(err, 0.637468)  # the reader's own value may be shown

    want = torch.tensor([0.25, 1.75, 3.125], dtype=torch.float64)
    err = ExerciseCheckError("wrong")
    err.expected = want.clone()
    assert _reached(err, want) == ["ExerciseCheckError.expected"]

    def engine(expected):
        raise ValueError("inner")

    def check():
        try:
            engine(want.clone())
        except ValueError:
            raise ExerciseCheckError("wrong")

    [planted] = [e for e in _messages(check)][:1]
    assert any("frame engine: expected" in where for where in _reached(planted, want))
    assert not _reached(planted, torch.tensor([0.25, 1.75, 3.0], dtype=torch.float64))
