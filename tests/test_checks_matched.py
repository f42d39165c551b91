"""Chapter 10's matched-entropy exercise: `qklab.findings.value_at` against numpy, and what the check
says to right answers written three ways and to each typical mistake."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qklab.checks import ExerciseCheckError, reset_attempts
from qklab.checks.matched import MATCHED_MISTAKES, check_ppl_at_entropy
from qklab.findings import value_at


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def test_value_at_matches_numpy_interp_inside_and_is_nan_outside():
    rng = np.random.default_rng(0)
    x = rng.permutation(np.linspace(0.5, 3.0, 9))
    y = rng.normal(size=9)
    order = np.argsort(x)
    for x0 in np.linspace(0.5, 3.0, 41):
        assert float(value_at(x, y, x0)) == pytest.approx(np.interp(x0, x[order], y[order]), abs=1e-12)
    assert math.isnan(float(value_at(x, y, 0.49))) and math.isnan(float(value_at(x, y, 3.01)))


def test_value_at_refuses_bad_points():
    with pytest.raises(ValueError, match="same length"):
        value_at([1.0, 2.0], [1.0], 1.5)
    with pytest.raises(ValueError, match="distinct"):
        value_at([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], 1.5)


def _numpy_answer(entropy, ppl, h):
    e, p = np.asarray(entropy), np.asarray(ppl)
    o = np.argsort(e)
    return float(np.interp(h, e[o], p[o])) if e.min() <= h <= e.max() else float("nan")


def _loop_answer(entropy, ppl, h):
    pts = sorted(zip(entropy.tolist(), ppl.tolist()))
    for (e0, p0), (e1, p1) in zip(pts, pts[1:]):
        if e0 <= h <= e1:
            return torch.tensor(p0 + (h - e0) / (e1 - e0) * (p1 - p0), dtype=torch.float64)
    return torch.tensor(float("nan"), dtype=torch.float64)


@pytest.mark.parametrize("answer", [lambda e, p, h: value_at(e, p, h), _numpy_answer, _loop_answer])
def test_right_answers_pass(answer):
    check_ppl_at_entropy(answer)


@pytest.mark.parametrize("mistake", MATCHED_MISTAKES, ids=lambda m: m.label[:40])
def test_each_mistake_is_rejected_and_named(mistake):
    with pytest.raises(ExerciseCheckError) as err:
        check_ppl_at_entropy(mistake.fn)
    assert mistake.label in str(err.value)


def test_a_python_float_answer_keeps_double_precision():
    """A right answer returned as a Python float must not be judged in float32."""
    check_ppl_at_entropy(lambda e, p, h: float(value_at(e, p, h)))
