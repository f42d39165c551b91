"""Issue 19: the mutation harness (`qklab.checks.mutants`) and the holes it closed.

`make mutants` (a stage of `make test`) runs the harness on every exercise and prints the kill
rate; here: the harness itself finds a hole in a check that covers one sign only (so a 100 % from
it means something), every exercise has a spec, and each wrong answer the issue found passing
(and the others the harness found) is now rejected. Each of those failed before the change.
"""

from __future__ import annotations

import math

import pytest
import torch

from qklab.checks import attention as ca
from qklab.checks import collapse as cc
from qklab.checks import contraction as ck
from qklab.checks import localization as cl
from qklab.checks import mutant_specs
from qklab.checks.core import Case, ExerciseCheckError, check_function, reset_attempts
from qklab.checks.mutants import Spec, evaluate, mutants
from qklab.checks.snr import check_general_snr
from qklab.collapse import collapse_regions
from qklab.theory import predicted_snr_general


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def test_the_harness_finds_the_holes_of_a_check_that_sees_one_sign_and_one_size():
    """A deliberately weak check of `x -> 2x` (one positive case): abs, and a solution right only
    for that size, survive; the harness says so."""

    def weak_check(fn):
        check_function(fn, lambda x: 2 * x, [Case("one positive vector", (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),))],
                       name="double", quiet=True)

    spec = Spec("ex-weak", "x", weak_check, lambda x: 2 * x,
                lambda: [Case("probe", (torch.tensor([-1.0, 0.5], dtype=torch.float64),))],
                sizes=lambda x: (x.shape[-1], x.shape[-1]), core_ndim=(1,))
    result = evaluate(spec)
    assert "abs of the output" in result.survived
    assert "right only for the sizes of the first example" in result.survived
    assert result.kill_rate < 1.0
    assert "negate the output" in result.killed


def test_every_exercise_of_the_book_has_a_spec():
    import json
    from pathlib import Path

    from qklab.exercises import exercises_of

    root = Path(__file__).resolve().parents[1]
    labels = set()
    for path in sorted((root / "chapters").glob("*.ipynb")):
        import nbformat

        labels |= {e.label for e in exercises_of(nbformat.read(str(path), as_version=4), path.name)}
    assert labels == {s.label for s in mutant_specs.SPECS}
    assert json.dumps(sorted(labels))  # 31 exercises
    assert len(labels) == len(mutant_specs.SPECS)


def test_the_mutants_include_every_kind_the_issue_names():
    spec = next(s for s in mutant_specs.SPECS if s.label == "ex-pattern")
    names = " | ".join(m.name for m in mutants(spec, mutant_specs._pattern_probes()[1]))
    for kind in ("negate", "transpose input", "swap the last two axes", "roll the last axis", "scale by 2", "scale by 1/2",
                 "scale by sqrt(2)", "scale by d", "scale by 1/d", "scale by n/(n-1)", "-1e4 instead of -inf", "abs",
                 "batch dimension dropped", "right only for the sizes"):
        assert kind in names, kind
    codes = Spec("ex-codes", "x", lambda fn: None, collapse_regions, sizes=lambda e, r, l: (4.0, 4.0))
    first = Case("probe", (torch.rand(4, dtype=torch.float64),) * 3)
    assert any("floats where integers are asked" in m.name for m in mutants(codes, first))


# --- the holes (each passed before issue 19) -----------------------------------------------------

def _snr_sign_lost(W, T):
    return predicted_snr_general(W, T).abs()


def _pattern_minus_1e4(X, W_Q, W_K, causal=False):
    S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1) / math.sqrt(W_Q.shape[-1])
    if causal:
        T = S.shape[-1]
        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -1e4)
    return torch.softmax(S, dim=-1)


def _column_by_max_abs_pair(A):
    D = (A.unsqueeze(-2) - A.unsqueeze(-3)).abs().amax(-1)  # rows compared by their largest difference
    T = A.shape[-1]
    flat = D.flatten(-2).argmax(-1)
    i, i2 = flat // T, flat % T
    row = lambda k: torch.take_along_dim(A, k[..., None, None], dim=-2).squeeze(-2)  # noqa: E731
    y = (row(i) > row(i2)).to(A.dtype)
    return torch.where(((y.amax(-1) - y.amin(-1)) == 0)[..., None], torch.nn.functional.one_hot(torch.zeros_like(i), T).to(A.dtype), y)


def _sparsemax_minus_1e4(z):
    from qklab.attention import sparsemax

    return sparsemax(z.nan_to_num(neginf=-1e4), dim=-1)


def _half_entropy_transposed(X, B):
    return cc.half_entropy_scale_reference(X, B.T)


def _half_entropy_for_16_only(X, B):
    r = cc.half_entropy_scale_reference(X, B)
    return r if X.shape[-1] == 16 else 1.5 * r


@pytest.mark.parametrize("check, answer", [
    (check_general_snr, _snr_sign_lost),
    (ca.check_attention_pattern, _pattern_minus_1e4),
    (ck.check_tight_column, _column_by_max_abs_pair),
    (cl.check_sparsemax, _sparsemax_minus_1e4),
    (cc.check_half_entropy_scale, _half_entropy_transposed),
    (cc.check_half_entropy_scale, _half_entropy_for_16_only),
], ids=lambda x: getattr(x, "__name__", ""))
def test_wrong_answers_that_passed_before_issue_19_fail(check, answer):
    with pytest.raises(ExerciseCheckError):
        check(answer)
