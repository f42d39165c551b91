"""Issue 19: the rules a statement sets ("do not form the d x d matrix", "do not compute
eigenvalues") are enforced wherever the answer computes, numpy included.

Before the change, each `*_numpy_dense` and `*_eig*` answer below passed (their values are right);
only a torch `(d, d)` tensor in exercise 10.3 was seen. Right answers that keep the rules, in torch
and in numpy, still pass.
"""

import numpy as np
import pytest
import torch

from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.checks.penalty_statistics import check_symmetric_penalty
from qklab.checks.spectrum import check_spectrum_moments


@pytest.fixture(autouse=True)
def _fresh():
    reset_attempts()


# --- independent computations, in numpy ----------------------------------------------------------

def _np(*ts):
    return [t.numpy() if isinstance(t, torch.Tensor) else t for t in ts]


def moments_numpy_traces(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    d = q.shape[-2]
    C = np.swapaxes(k, -1, -2) @ q
    return np.stack([(q * k).sum((-2, -1)) / d, (C * np.swapaxes(C, -1, -2)).sum((-2, -1)) / d], axis=-1)


def moments_numpy_dense(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    W = q @ np.swapaxes(k, -1, -2)  # the d x d matrix, in numpy: the torch watch cannot see it
    d = W.shape[-1]
    return np.stack([np.trace(W, axis1=-2, axis2=-1) / d, np.trace(W @ W, axis1=-2, axis2=-1) / d], axis=-1)


def moments_numpy_eigvals_of_core(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    lam = np.linalg.eigvals(np.swapaxes(k, -1, -2) @ q)  # small, but an eigen-solver
    d = q.shape[-2]
    return np.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], axis=-1)


def moments_torch_eigvals_of_core(W_Q, W_K):
    from torch.linalg import eigvals as ev  # imported under another name

    lam = ev(W_K.mT @ W_Q)
    d = W_Q.shape[-2]
    return torch.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], dim=-1)


def symmetric_numpy_traces(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    d = q.shape[-2]
    qt, kt = np.swapaxes(q, -1, -2), np.swapaxes(k, -1, -2)
    fro = ((qt @ q) * (kt @ k)).sum((-2, -1))
    C = kt @ q
    tr2 = (C * np.swapaxes(C, -1, -2)).sum((-2, -1))
    m = (q * k).sum((-2, -1)) / d
    return (fro + tr2) / 2 / d - m**2


def symmetric_numpy_dense(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    W = q @ np.swapaxes(k, -1, -2)
    d = W.shape[-1]
    S = (W + np.swapaxes(W, -1, -2)) / 2
    return (S**2).sum((-2, -1)) / d - (np.trace(W, axis1=-2, axis2=-1) / d) ** 2


def symmetric_python_lists(W_Q, W_K):
    """The d x d matrix as Python lists of floats, one entry at a time (slow, but against the rule)."""
    if W_Q.ndim != 2:
        return symmetric_numpy_traces(W_Q, W_K)
    q, k = W_Q.tolist(), W_K.tolist()
    d = len(q)
    W = [[sum(a * b for a, b in zip(q[i], k[j])) for j in range(d)] for i in range(d)]
    fro = sum(W[i][j] ** 2 for i in range(d) for j in range(d))
    tr2 = sum(W[i][j] * W[j][i] for i in range(d) for j in range(d))
    m = sum(W[i][i] for i in range(d)) / d
    return torch.tensor((fro + tr2) / 2 / d - m * m, dtype=torch.float64)


@pytest.mark.parametrize("check, answer", [
    (check_spectrum_moments, moments_numpy_traces),
    (check_symmetric_penalty, symmetric_numpy_traces),
], ids=["6.3", "10.2"])
def test_rule_keeping_numpy_answers_pass(check, answer, capsys):
    check(answer)
    assert "\u2713" in capsys.readouterr().out


@pytest.mark.parametrize("check, answer, why", [
    (check_spectrum_moments, moments_numpy_dense, "allocated"),
    (check_spectrum_moments, moments_numpy_eigvals_of_core, "numpy.linalg.eigvals"),
    (check_spectrum_moments, moments_torch_eigvals_of_core, "torch.linalg.eigvals"),
    (check_symmetric_penalty, symmetric_numpy_dense, "allocated"),
    (check_symmetric_penalty, symmetric_python_lists, "allocated"),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_answers_that_break_a_rule_fail_with_the_rule(check, answer, why):
    with pytest.raises(ExerciseCheckError, match=why):
        check(answer)
