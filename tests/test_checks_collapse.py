"""The exercise checks of chapters 3, 5 and 8 pass the references and name each typical mistake."""

import math
import re

import pytest
import torch

from qklab.checks import ExerciseCheckError
from qklab.checks import collapse as cc
from qklab.collapse import (
    attention_stack_residuals,
    localization,
    running_products,
)
from qklab.metrics import token_residual


def test_references_pass(capsys):
    cc.check_stack_residuals(attention_stack_residuals)
    cc.check_running_products(running_products)
    cc.check_uniform_causal_residual(cc.uniform_causal_residual_reference())
    cc.check_half_entropy_scale(cc.half_entropy_scale_reference)
    cc.check_localization(localization)
    assert capsys.readouterr().out.count("\u2713") == 7  # half_entropy_scale prints one line per case (3)


@pytest.mark.parametrize(
    "check, mistakes",
    [
        (cc.check_stack_residuals, cc._STACK_MISTAKES),
        (cc.check_running_products, cc._PRODUCT_MISTAKES),
        (cc.check_localization, cc._LOCALIZATION_MISTAKES),
    ],
)
def test_every_function_mistake_fails_with_its_label(check, mistakes):
    assert mistakes
    for mistake in mistakes:
        with pytest.raises(ExerciseCheckError, match=re.escape(mistake.label)):
            check(mistake.fn)


def test_unsolved_stub_is_reported_as_not_implemented():
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: write your solution here")

    for check in (cc.check_stack_residuals, cc.check_running_products,
                  cc.check_half_entropy_scale, cc.check_localization):
        with pytest.raises(ExerciseCheckError, match="not implemented yet"):
            check(stub)
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        cc.check_uniform_causal_residual(...)


def test_uniform_causal_residual_value_and_mistakes():
    # Hand computation: A X = A = [[1,0,0],[1/2,1/2,0],[1/3,1/3,1/3]]; the residual has composite
    # norm 14/18 and A has sqrt(1 * 11/6).
    assert cc.uniform_causal_residual_reference() == pytest.approx((14 / 18) / math.sqrt(11 / 6), rel=1e-12)
    with pytest.raises(ExerciseCheckError, match="without the causal mask"):
        cc.check_uniform_causal_residual(0.0)
    with pytest.raises(ExerciseCheckError, match="absolute residual"):
        cc.check_uniform_causal_residual(14 / 18)
    A = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    with pytest.raises(ExerciseCheckError, match="Frobenius"):
        cc.check_uniform_causal_residual(float(token_residual(A, norm="fro")))


def test_half_entropy_scale_mistakes_are_named():
    def unnormalised(X, B):
        H = lambda r: float(cc.attention_entropy(cc.qk_pattern(X, r * B)))  # noqa: E731
        return cc._half_scale_of(H, 0.5)

    with pytest.raises(ExerciseCheckError, match="0.5 nats"):
        cc.check_half_entropy_scale(unnormalised)

    def unscaled(X, B):
        return cc.half_entropy_scale_reference(X, B) / math.sqrt(X.shape[-1])

    with pytest.raises(ExerciseCheckError, match="not divided by sqrt"):
        cc.check_half_entropy_scale(unscaled)


def test_the_half_entropy_reference_is_a_crossing():
    X = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    B = torch.eye(8, dtype=torch.float64)
    r = cc.half_entropy_scale_reference(X, B)
    assert float(cc.mean_normalized_entropy_reference(X, r * B)) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="does not cross"):
        cc.half_entropy_scale_reference(X, B, lo=10.0, hi=20.0)
