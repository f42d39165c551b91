"""The check of chapter 11's ex-induction-score (`qklab.checks.induction`): the right answer passes in three
forms, each named mistake is named, a wrong answer of no known kind fails unnamed."""

from __future__ import annotations

import re

import pytest
import torch

from qklab.checks import induction as ci
from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.metrics import induction_score


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


def _loops(pattern, tokens):
    """One pattern and one sequence at a time, with Python sets of targets."""
    tokens = torch.broadcast_to(tokens, pattern.shape[:-1])
    flat_A, flat_t = pattern.reshape(-1, *pattern.shape[-2:]), tokens.reshape(-1, tokens.shape[-1])
    out = []
    for A, t in zip(flat_A, flat_t):
        T, rows = len(t), []
        for i in range(T // 2, T):
            targets = {j + 1 for j in range(i) if int(t[j]) == int(t[i])}
            if targets:
                rows.append(sum(float(A[i, k]) for k in targets))
        out.append(sum(rows) / len(rows))
    return torch.tensor(out, dtype=pattern.dtype).reshape(pattern.shape[:-2])


def _one_hot_targets(pattern, tokens):
    """With F.one_hot: the earlier positions of each query's token, shifted by one key."""
    T = pattern.shape[-1]
    onehot = torch.nn.functional.one_hot(tokens, int(tokens.max()) + 1).to(pattern.dtype)  # (..., T, V)
    same = (onehot @ onehot.transpose(-2, -1)).tril(-1)  # (..., T, T): 1 where token j == token i, j < i
    targets = torch.nn.functional.pad(same[..., :-1], (1, 0))
    counted = (same.sum(-1) > 0) & (torch.arange(T) >= T // 2)
    return ((pattern * targets).sum(-1) * counted).sum(-1) / counted.sum(-1)


@pytest.mark.parametrize("answer", [induction_score, _loops, _one_hot_targets])
def test_right_answers_pass(answer, capsys):
    ci.check_induction_score(answer)
    assert "matches the reference on all 7 cases" in capsys.readouterr().out


def test_the_uniform_case_is_the_exact_fraction():
    """Uniform causal rows on [5, 2, 7, 1, 5, 2, 7, 1]: queries 4..7, one target among i + 1 keys each."""
    A, tokens = ci.INDUCTION_CASES[1].args
    assert float(induction_score(A, tokens)) == pytest.approx((1 / 5 + 1 / 6 + 1 / 7 + 1 / 8) / 4, rel=1e-12)


@pytest.mark.parametrize("mistake", ci.INDUCTION_MISTAKES, ids=lambda m: m.label)
def test_each_mistake_is_named(mistake):
    with pytest.raises(ExerciseCheckError, match=re.escape(f"This looks like {mistake.label}")):
        ci.check_induction_score(mistake.fn)


def test_an_unknown_mistake_fails_without_a_name():
    def the_query_itself(pattern, tokens):  # the attention of each second-half query on itself
        T = pattern.shape[-1]
        return torch.diagonal(pattern, dim1=-2, dim2=-1)[..., T // 2:].mean(-1)

    with pytest.raises(ExerciseCheckError) as err:
        ci.check_induction_score(the_query_itself)
    assert "This looks like" not in str(err.value)
