"""qklab.checks.locater (chapter 10's capstone): the reference against a dense computation, right
answers pass (two ways), every typical wrong answer and a d x d solution fail with a useful
message that does not reveal the reference value."""

import re

import pytest
import torch

from qklab.checks import locater as lc
from qklab.checks.core import ExerciseCheckError, gaussian, reset_attempts


def test_reference_against_dense_eigenvalues():
    Wq, Wk = gaussian((3, 10, 4), 0), gaussian((3, 10, 4), 1)
    W = Wq @ Wk.transpose(-2, -1)  # (3, 10, 10)
    lam = torch.linalg.eigvals(W)  # (3, 10)
    mean = lam.mean(-1).real  # the eigenvalue mean: tr(W)/d
    expected = (W**2).sum((-2, -1)) / 10 + 4.0 * (mean - 0.3) ** 2
    assert torch.allclose(lc.scale_mean_penalty_reference(Wq, Wk, 0.3, 4.0), expected, atol=1e-10)


def _trace_identities(W_Q, W_K, m0, mu):
    d = W_Q.shape[-2]
    m = (W_Q * W_K).sum((-2, -1)) / d
    fro = ((W_Q.transpose(-2, -1) @ W_Q) * (W_K.transpose(-2, -1) @ W_K)).sum((-2, -1))
    return fro / d + mu * (m - m0) ** 2


def _einsum_way(W_Q, W_K, m0, mu):
    d = W_Q.shape[-2]
    m = torch.einsum("...ij,...ij->...", W_Q, W_K) / d
    C = torch.einsum("...ia,...ib->...ab", W_K, W_Q)  # W_K^T W_Q, (d_h, d_h)
    Gq = torch.einsum("...ia,...ib->...ab", W_Q, W_Q)
    Gk = torch.einsum("...ia,...ib->...ab", W_K, W_K)
    return torch.einsum("...ab,...ba->...", Gq, Gk) / d + mu * (m - m0) ** 2 + 0 * C.sum()


@pytest.mark.parametrize("fn", [_trace_identities, _einsum_way])
def test_right_answers_pass(fn, capsys):
    reset_attempts()
    lc.check_scale_mean_penalty(fn)
    assert "\u2713" in capsys.readouterr().out


def _parts(W_Q, W_K):
    """What a learner computes without forming W: d, d_h, tr W, ||W||_F^2, tr(W^2)."""
    d, dh = W_Q.shape[-2], W_Q.shape[-1]
    tr = (W_Q * W_K).sum((-2, -1))
    fro = ((W_Q.transpose(-2, -1) @ W_Q) * (W_K.transpose(-2, -1) @ W_K)).sum((-2, -1))
    C = W_K.transpose(-2, -1) @ W_Q
    return d, dh, tr, fro, (C * C.transpose(-2, -1)).sum((-2, -1))


def _learner_mistake(label):
    """Each typical wrong answer as a learner would write it (trace identities, no d x d tensor)."""
    def fn(W_Q, W_K, m0, mu):
        d, dh, tr, fro, trsq = _parts(W_Q, W_K)
        if label.startswith("the mean term forgotten"):
            return fro / d
        if label.startswith("tr(W^2)"):
            return trsq / d + mu * (tr / d - m0) ** 2
        if label.startswith("normalised by d_h"):
            return fro / dh + mu * (tr / dh - m0) ** 2
        if label.startswith("the weight mu"):
            return fro / d + (tr / d - m0) ** 2
        assert label.startswith("the variance form")
        return fro / d - (tr / d) ** 2
    return fn


@pytest.mark.parametrize("mistake", lc.MISTAKES, ids=lambda m: m.label)
def test_each_mistake_is_named_without_the_value(mistake):
    reset_attempts()
    with pytest.raises(ExerciseCheckError) as info:
        lc.check_scale_mean_penalty(_learner_mistake(mistake.label))
    msg = str(info.value)
    assert "This looks like " + mistake.label in msg
    case = info.value.case
    expected = lc.scale_mean_penalty_reference(*case.args, **case.kwargs)  # the failing case's right output, computed here
    for v in torch.as_tensor(expected).reshape(-1)[:3].tolist():
        for fmt in ("{:.3g}", "{:.4f}", "{:.6g}"):
            assert fmt.format(v) not in msg


def test_forming_the_dense_matrix_fails_even_when_right():
    def dense(W_Q, W_K, m0, mu):
        W = W_Q @ W_K.transpose(-2, -1)  # the d x d matrix the exercise forbids
        d = W.shape[-1]
        return (W**2).sum((-2, -1)) / d + mu * (W.diagonal(dim1=-2, dim2=-1).sum(-1) / d - m0) ** 2

    def dense_transposed(W_Q, W_K, m0, mu):  # W_QK^T = W_K W_Q^T: same numbers, same fault
        Wt = W_K @ W_Q.transpose(-2, -1)
        d = Wt.shape[-1]
        return (Wt**2).sum((-2, -1)) / d + mu * (torch.diagonal(Wt, dim1=-2, dim2=-1).sum(-1) / d - m0) ** 2

    for fn in (dense, dense_transposed):
        reset_attempts()
        with pytest.raises(ExerciseCheckError, match=re.escape("a d x d matrix")):
            lc.check_scale_mean_penalty(fn)


def test_not_implemented_and_wrong_shape():
    def stub(W_Q, W_K, m0, mu):
        raise NotImplementedError

    with pytest.raises(ExerciseCheckError, match="not implemented"):
        lc.check_scale_mean_penalty(stub)
    with pytest.raises(ExerciseCheckError):
        lc.check_scale_mean_penalty(lambda q, k, m0, mu: _trace_identities(q, k, m0, mu).sum())
