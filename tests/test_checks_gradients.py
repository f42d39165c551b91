"""The check of chapter 5's ex-query-jacobian (`qklab.checks.gradients`): the right answer passes in
three forms, each named mistake is named, and a wrong answer of no known kind fails unnamed."""

from __future__ import annotations

import math
import re

import pytest
import torch

from qklab.attention import output_query_jacobian
from qklab.checks import gradients as cg
from qklab.checks.core import ExerciseCheckError, reset_attempts


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def _covariance_form(a, K, V):
    """Both sides centred: sum_j a_j (v_j - v_bar)(k_j - k_bar)^T / sqrt(d_h), the same matrix."""
    k_bar = (a[..., None] * K).sum(-2, keepdim=True)
    v_bar = (a[..., None] * V).sum(-2, keepdim=True)
    return torch.einsum("...j,...jc,...je->...ce", a, V - v_bar, K - k_bar) / math.sqrt(K.shape[-1])


def _softmax_jacobian_form(a, K, V):
    """The chain rule written as matrices: V^T (diag(a) - a a^T) K / sqrt(d_h)."""
    D = torch.diag_embed(a) - a[..., :, None] * a[..., None, :]
    return V.transpose(-2, -1) @ D @ K / K.shape[-1] ** 0.5


@pytest.mark.parametrize("answer", [output_query_jacobian, _covariance_form, _softmax_jacobian_form])
def test_right_answers_pass(answer, capsys):
    cg.check_output_query_jacobian(answer)
    assert "matches the reference on all 6 cases" in capsys.readouterr().out


def test_the_reference_is_autograd_and_agrees_with_the_package():
    for case in cg.JACOBIAN_CASES:
        torch.testing.assert_close(cg.output_query_jacobian_autograd(*case.args), output_query_jacobian(*case.args),
                                   atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("mistake", cg.JACOBIAN_MISTAKES, ids=lambda m: m.label)
def test_each_mistake_is_named(mistake):
    with pytest.raises(ExerciseCheckError, match=re.escape(f"This looks like {mistake.label}")):
        cg.check_output_query_jacobian(mistake.fn)


def test_an_unknown_mistake_fails_without_a_name():
    def half_centred(a, K, V):  # k_bar counted half: no mistake of the list
        k_bar = (a[..., None] * K).sum(-2, keepdim=True)
        return (a[..., None] * V).transpose(-2, -1) @ (K - k_bar / 2) / math.sqrt(K.shape[-1])

    with pytest.raises(ExerciseCheckError) as err:
        cg.check_output_query_jacobian(half_centred)
    assert "This looks like" not in str(err.value)


def test_a_stub_is_not_implemented_yet():
    def stub(a, K, V):
        raise NotImplementedError("Exercise")

    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        cg.check_output_query_jacobian(stub)


def test_float32_output_is_refused_with_a_reason():
    with pytest.raises(ExerciseCheckError):
        cg.check_output_query_jacobian(lambda a, K, V: output_query_jacobian(a.float(), K.float(), V.float()))
