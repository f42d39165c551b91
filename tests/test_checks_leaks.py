"""No check message gives the right answer away (issue 10: "a test scans the check messages").

Every check is fed wrong answers: each of its recognised mistakes, and generic ones (the right
answer scaled by 0.7, 1.07 and 1.3, shifted, negated). Each wrong answer is checked twice, so the
second message carries the hint too. The message must not contain any value of the reference
output of the failing case (`ExerciseCheckError.expected`), written at several precisions.

Allowed in a message, and removed before the scan: the reader's own values ("yours is ...",
"your answer ...") and the case description (the input). Round values (0, 1, 0.5, small
integers) cannot be scanned for and are skipped, except integer answers of two digits or more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch

from qklab.attention import sparsemax
from qklab.checks import attention as ca
from qklab.checks import collapse as cc
from qklab.checks import intro as ci
from qklab.checks import localization as cl
from qklab.checks import metrics as cm
from qklab.checks import spectrum as cs
from qklab.checks import training as ct
from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.collapse import attention_stack_residuals, collapse_regions, localization, qk_from_scale_kappa, running_products
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


def _leaks(err: ExerciseCheckError) -> list[str]:
    text = _scrub(str(err), err)
    found = []
    for v in _numbers(err.expected) if err.expected is not None else []:
        for form in _forms(v):
            if re.search(r"(?<![\d.])" + re.escape(form) + r"(?![\d])", text):
                found.append(form)
    return found


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
    "ex-sweep-entropy": (cc.check_mean_normalized_entropy, cc.mean_normalized_entropy_reference, cc._ENTROPY_MISTAKES),
    "ex-half-entropy": (cc.check_half_entropy_scale, cc.half_entropy_scale_reference, []),
    "ex-localization": (cc.check_localization, localization, cc._LOCALIZATION_MISTAKES),
    "ex-scale-kappa": (cc.check_qk_from_scale_kappa, qk_from_scale_kappa, cc._QK_MISTAKES),
    "ex-regions": (cc.check_collapse_regions, collapse_regions, cc._REGION_MISTAKES),
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
def test_function_check_messages_hold_no_reference_value(label):
    check, reference, mistakes = FUNCTION_CHECKS[label]
    n_failed = 0
    for wrong in _wrong_functions(reference, mistakes):
        reset_attempts()
        for err in _messages(lambda: check(wrong)):
            n_failed += 1
            assert err.expected is not None, f"{label}: the error does not carry the reference it was compared with"
            assert not _leaks(err), f"{label}: the message shows reference value(s) {_leaks(err)}:\n{err}"
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
        "ex-layernorm-norm": (lambda v: ct.check_layernorm_norm(v, d=32), math.sqrt(32), [1.0, 32.0, math.sqrt(31)]),
        "ex-embedding-norm": (lambda v: ct.check_embedding_norm(v, d=32, std=0.02), 0.02 * 8, [0.02, 0.02 * math.sqrt(32)]),
        "ex-zero-eigenvalues (a)": (lambda v: cs.check_zero_counts(v, 40), 36, [12, 0, 48, 30, 40]),
        "ex-zero-eigenvalues (b)": (lambda v: cs.check_zero_counts(36, v), 40, [36, 4, 8, 44, 20]),
        "ex-count (factors)": (lambda v: ca.check_qk_counts(v, counts["entries"], counts["free"]), counts["factors"], [1024, 4096]),
        "ex-count (entries)": (lambda v: ca.check_qk_counts(counts["factors"], v, counts["free"]), counts["entries"], [256, 2048]),
        "ex-count (free)": (lambda v: ca.check_qk_counts(counts["factors"], counts["entries"], v), counts["free"], [2048, 4096, 2032]),
    }


@pytest.mark.parametrize("label", sorted(_value_cases()))
def test_value_check_messages_hold_no_reference_value(label):
    check, want, mistaken = _value_cases()[label]
    wrongs = mistaken + [f * want for f in (0.5, 0.7, 1.07, 1.3, 2.0, -1.0)] + [want + 0.3]
    for wrong in wrongs:
        reset_attempts()
        errors = _messages(lambda: check(wrong))
        assert len(errors) == 2, f"{label}: the wrong answer {wrong} was accepted"
        for err in errors:
            assert err.expected == pytest.approx(want)
            assert not _leaks(err), f"{label}: the message shows the right value {_leaks(err)}:\n{err}"


def test_the_scan_finds_a_planted_leak():
    """The scanner itself: the old message format ("the computed value is 0.6375") is caught."""
    err = ExerciseCheckError("x: you answered 1, but the computed value is 0.6375.", expected=0.637468)
    assert "0.6375" in _leaks(err)
    err = ExerciseCheckError("zero eigenvalues: the answer is 36.", expected=36)
    assert _leaks(err) == ["36"]
    err = ExerciseCheckError("yours is 0.6375, too large", expected=0.637468)
    assert not _leaks(err)  # the reader's own value may be shown
