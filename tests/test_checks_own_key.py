"""The check of chapter 8's ex-own-key-bias (`qklab.checks.own_key`): the measurement it compares with is
the chapter's, recomputed here by hand; the prediction passes in two forms; each named mistake is named."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from qklab.checks import own_key as ck
from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.collapse import make_tokens, qk_from_scale_kappa


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def test_the_measurement_is_the_own_key_weight_of_the_maps_heads():
    """T times the mean diagonal weight of softmax(X W X^T / sqrt(d)), seeds 0-2, 16 sequences each."""
    per_seed = []
    for seed in range(3):
        X = make_tokens(16, 64, 64, "iid", seed=seed)
        W = qk_from_scale_kappa(64, 0.5, 0.0, seed=seed)
        A = torch.softmax(X @ W @ X.transpose(-2, -1) / 8.0, dim=-1)
        per_seed.append(64 * float(torch.diagonal(A, dim1=-2, dim2=-1).mean()))
    assert ck.own_key_measured(0.5) == pytest.approx(np.mean(per_seed), rel=1e-10)
    # the prediction the exercise asks for is within the check's tolerance of it (the claim of the chapter)
    assert abs(ck.own_key_measured(0.5) / math.exp(0.125) - 1) < ck.OWN_KEY_RTOL


@pytest.mark.parametrize("value", [math.exp(0.5**2 / 2), np.float32(math.exp(2 * 0.25 / 2) / math.exp(0.25 / 2))],
                         ids=["e^(r^2/2)", "ratio of moments, float32"])
def test_the_prediction_passes(value, capsys):
    ck.check_own_key_bias(value)
    assert "is right" in capsys.readouterr().out


@pytest.mark.parametrize("value, label", [(1.0, "no bias at all"), (math.exp(0.25), "diagonal's full variance"),
                                          (math.sqrt(2), "ratio of the standard deviations")])
def test_each_mistake_is_named(value, label):
    with pytest.raises(ExerciseCheckError, match=re.escape(label)):
        ck.check_own_key_bias(value)


def test_an_unknown_wrong_number_fails_unnamed_and_without_the_measurement():
    with pytest.raises(ExerciseCheckError) as err:
        ck.check_own_key_bias(1.5)
    assert "This looks like" not in str(err.value)
    assert f"{ck.own_key_measured():.3f}" not in str(err.value)


def test_no_answer_yet():
    with pytest.raises(ExerciseCheckError, match="no answer yet"):
        ck.check_own_key_bias(...)
