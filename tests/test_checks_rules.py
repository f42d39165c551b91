"""Issues 19 and 28: the rules a statement sets ("do not form the d x d matrix", "do not call an
eigen-solver") are judged by what the answer computed, wherever it computes.

Before issue 28 the rules were judged by tensor shape and by a few functions: `W[None]`, `W` kept as
a list of rows, a float32 numpy `W` and scipy's eigen-solvers passed, and answers that hold only
`d x d_h` arrays were accused whenever a case had `2 d_h = d` (the concatenated factors `(d, 2 d_h)`
look like `(d, d)`). Each such answer is below, with the verdict it must now get.
"""

import sys
import types

import numpy as np
import pytest
import torch

from qklab.checks.core import ExerciseCheckError, reset_attempts
from qklab.checks.mutant_specs import rule_evasions
from qklab.checks.penalty_statistics import check_symmetric_penalty, symmetric_penalty_reference
from qklab.checks.rules import measure, numpy_rule_judges, obeying_rules, torch_rule_judges
from qklab.checks.spectrum import check_spectrum_moments, spectrum_moments_reference


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


def symmetric_numpy_traces(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    d = q.shape[-2]
    qt, kt = np.swapaxes(q, -1, -2), np.swapaxes(k, -1, -2)
    fro = ((qt @ q) * (kt @ k)).sum((-2, -1))
    C = kt @ q
    tr2 = (C * np.swapaxes(C, -1, -2)).sum((-2, -1))
    m = (q * k).sum((-2, -1)) / d
    return (fro + tr2) / 2 / d - m**2


def _moments_of(W):
    """Mean and second moment of the eigenvalues of a formed `W` (torch), over n = d."""
    d = W.shape[-1]
    return torch.stack([torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d, (W * W.mT).sum((-2, -1)) / d], dim=-1)


def _symmetric_of(W):
    d = W.shape[-1]
    S = (W + W.mT) / 2
    return S.pow(2).sum((-2, -1)) / d - (torch.diagonal(W, dim1=-2, dim2=-1).sum(-1) / d) ** 2


# --- right answers in other forms: they keep the rules and must pass ------------------------------

def moments_concatenated(W_Q, W_K):
    """One Gram matrix of the concatenated factors, `(d, 2 d_h)`: `(d, d)` when `2 d_h = d`."""
    d_h, d = W_Q.shape[-1], W_Q.shape[-2]
    F = torch.cat([W_Q, W_K], dim=-1)
    C = (F.mT @ F)[..., d_h:, :d_h]  # W_K^T W_Q
    return torch.stack([torch.diagonal(C, dim1=-2, dim2=-1).sum(-1) / d, (C * C.mT).sum((-2, -1)) / d], dim=-1)


def moments_einsum(W_Q, W_K):
    d = W_Q.shape[-2]
    C = torch.einsum("...ia,...ib->...ab", W_K, W_Q)
    return torch.stack([torch.einsum("...ia,...ia->...", W_Q, W_K) / d, torch.einsum("...ab,...ba->...", C, C) / d], dim=-1)


def moments_in_float64(W_Q, W_K):
    """Casts float32 inputs to float64 first (two more `d x d_h` arrays), returns the input's dtype."""
    q, k = W_Q.double(), W_K.double()
    return moments_einsum(q, k).to(W_Q.dtype)


def symmetric_concatenated(W_Q, W_K):
    d_h, d = W_Q.shape[-1], W_Q.shape[-2]
    F = torch.cat([W_Q, W_K], dim=-1)
    G = F.mT @ F  # [[Q^T Q, Q^T K], [K^T Q, K^T K]]
    QQ, KK, KQ = G[..., :d_h, :d_h], G[..., d_h:, d_h:], G[..., d_h:, :d_h]
    m = torch.diagonal(KQ, dim1=-2, dim2=-1).sum(-1) / d
    return ((QQ * KK).sum((-2, -1)) + (KQ * KQ.mT).sum((-2, -1))) / 2 / d - m**2


def symmetric_with_eigenvalues_of_the_core(W_Q, W_K):
    """10.2 does not forbid eigen-solvers: tr(W^2) from the eigenvalues of the d_h x d_h core."""
    d = W_Q.shape[-2]
    lam = torch.linalg.eigvals(W_K.mT @ W_Q)
    m = lam.sum(-1).real / d
    fro = ((W_Q.mT @ W_Q) * (W_K.mT @ W_K)).sum((-2, -1))
    return (fro + (lam**2).sum(-1).real) / 2 / d - m**2


@pytest.mark.parametrize("check, answer", [
    (check_spectrum_moments, moments_numpy_traces),
    (check_spectrum_moments, moments_concatenated),
    (check_spectrum_moments, moments_einsum),
    (check_spectrum_moments, moments_in_float64),
    (check_symmetric_penalty, symmetric_numpy_traces),
    (check_symmetric_penalty, symmetric_concatenated),
    (check_symmetric_penalty, symmetric_with_eigenvalues_of_the_core),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_right_answers_that_keep_the_rules_pass(check, answer, capsys):
    check(answer)
    assert "\u2713" in capsys.readouterr().out


# --- answers that break a rule with the right numbers: they must fail, naming what was seen ---------

def moments_extra_axis(W_Q, W_K):
    return _moments_of((W_Q[None] @ W_K.mT[None])[0])


def moments_trailing_axis(W_Q, W_K):
    """W held as a (d, d, 1) tensor, built by broadcasting through a (d, d, d_h) product."""
    W = (W_Q[..., :, None, :] * W_K[..., None, :, :]).sum(-1, keepdim=True)
    d = W.shape[-2]
    tr = torch.diagonal(W[..., 0], dim1=-2, dim2=-1).sum(-1)
    return torch.stack([tr / d, (W[..., 0] * W[..., 0].mT).sum((-2, -1)) / d], dim=-1)


def moments_rows_list(W_Q, W_K):
    """W as a Python list of torch rows, built one row at a time: no tensor is ever (d, d)."""
    rows = []
    for i in range(W_Q.shape[-2]):
        rows.append((W_Q[..., i:i + 1, :] @ W_K.mT)[..., 0, :])
    d = len(rows)
    tr = sum(rows[i][..., i] for i in range(d))
    tr2 = sum((rows[i] * (W_Q @ W_K[..., i, :, None])[..., 0]).sum(-1) for i in range(d))  # row i of W times column i
    return torch.stack([tr / d, tr2 / d], dim=-1)


def moments_numpy_dense(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    W = q @ np.swapaxes(k, -1, -2)
    d = W.shape[-1]
    return np.stack([np.trace(W, axis1=-2, axis2=-1) / d, np.trace(W @ W, axis1=-2, axis2=-1) / d], axis=-1)


def moments_numpy_float32_dense(W_Q, W_K):
    """W in float32 numpy: half the bytes of float64, still within 6.3's tolerance."""
    q, k = (a.astype(np.float32) for a in _np(W_Q, W_K))
    W = q @ np.swapaxes(k, -1, -2)
    d = W.shape[-1]
    tr, tr2 = np.trace(W, axis1=-2, axis2=-1), (W * np.swapaxes(W, -1, -2)).sum((-2, -1))
    return np.stack([tr / d, tr2 / d], axis=-1).astype(np.float64)


def moments_power_iteration_on_w(W_Q, W_K):
    """A hand-written eigen-solver (power iteration) needs W's products: the memory rule sees W."""
    W = W_Q @ W_K.mT
    v = torch.ones(W.shape[:-1], dtype=W.dtype)
    for _ in range(3):
        v = (W @ v[..., None])[..., 0]
        v = v / v.norm(dim=-1, keepdim=True)
    return _moments_of(W)


def moments_numpy_eigvals_of_core(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    lam = np.linalg.eigvals(np.swapaxes(k, -1, -2) @ q)
    d = q.shape[-2]
    return np.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], axis=-1)


def moments_torch_eigvals_of_core(W_Q, W_K):
    from torch.linalg import eigvals as ev  # imported under another name

    lam = ev(W_K.mT @ W_Q)
    d = W_Q.shape[-2]
    return torch.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], dim=-1)


def moments_torch_eig_of_core(W_Q, W_K):
    lam = torch.linalg.eig(W_K.mT @ W_Q).eigenvalues
    d = W_Q.shape[-2]
    return torch.stack([lam.sum(-1).real / d, (lam**2).sum(-1).real / d], dim=-1)


def symmetric_extra_axis(W_Q, W_K):
    return _symmetric_of(torch.einsum("...ia,...ja->...ij", W_Q, W_K)[None][0])


def symmetric_numpy_dense(W_Q, W_K):
    q, k = _np(W_Q, W_K)
    W = q @ np.swapaxes(k, -1, -2)
    d = W.shape[-1]
    S = (W + np.swapaxes(W, -1, -2)) / 2
    return (S**2).sum((-2, -1)) / d - (np.trace(W, axis1=-2, axis2=-1) / d) ** 2


def symmetric_python_lists(W_Q, W_K):
    """The d x d matrix as Python lists of floats (only for a single head, traces otherwise)."""
    if W_Q.ndim != 2:
        return symmetric_numpy_traces(W_Q, W_K)
    q, k = W_Q.tolist(), W_K.tolist()
    d = len(q)
    W = [[sum(a * b for a, b in zip(q[i], k[j])) for j in range(d)] for i in range(d)]
    fro = sum(W[i][j] ** 2 for i in range(d) for j in range(d))
    tr2 = sum(W[i][j] * W[j][i] for i in range(d) for j in range(d))
    m = sum(W[i][i] for i in range(d)) / d
    return torch.tensor((fro + tr2) / 2 / d - m * m, dtype=torch.float64)


@pytest.mark.parametrize("check, answer, why", [
    (check_spectrum_moments, moments_extra_axis, "elements of torch tensors"),
    (check_spectrum_moments, moments_trailing_axis, "elements of torch tensors"),
    (check_spectrum_moments, moments_rows_list, "elements of torch tensors"),
    (check_spectrum_moments, moments_numpy_dense, "bytes of numpy arrays"),
    (check_spectrum_moments, moments_numpy_float32_dense, "bytes of numpy arrays"),
    (check_spectrum_moments, moments_power_iteration_on_w, "elements of torch tensors"),
    (check_spectrum_moments, moments_numpy_eigvals_of_core, r"eigen-solver \(numpy.linalg.eigvals\)"),
    (check_spectrum_moments, moments_torch_eigvals_of_core, r"eigen-solver \(torch \(aten::linalg_eig\)\)"),
    (check_spectrum_moments, moments_torch_eig_of_core, r"eigen-solver \(torch \(aten::linalg_eig\)\)"),
    (check_symmetric_penalty, symmetric_extra_axis, "elements of torch tensors"),
    (check_symmetric_penalty, symmetric_numpy_dense, "bytes of numpy arrays"),
    (check_symmetric_penalty, symmetric_python_lists, "bytes of numpy arrays or Python objects"),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_answers_that_break_a_rule_fail_with_the_rule(check, answer, why):
    with pytest.raises(ExerciseCheckError, match=why):
        check(answer)


def test_the_message_names_the_operation_and_the_size():
    W_Q, W_K = torch.randn(64, 8, dtype=torch.float64), torch.randn(64, 8, dtype=torch.float64)
    with pytest.raises(ExerciseCheckError) as caught:
        obeying_rules(moments_extra_axis, name="moments")(W_Q, W_K)
    message = str(caught.value)
    assert "d x d = 4,096 at d = 64, d_h = 8" in message
    assert "the largest: aten.bmm.default, of shape (1, 64, 64)" in message


def test_scipy_eigen_solvers_are_seen_by_their_module():
    """scipy is not a dependency of qklab; a stand-in module named as scipy's stands for it: the
    hook recognises a call of `eigvals` whose code lives in `scipy.linalg._decomp`."""
    module = types.ModuleType("scipy.linalg._decomp")
    exec("import numpy\ndef eigvals(a):\n    return numpy.linalg.eigvals(a)\n", module.__dict__)  # noqa: S102
    sys.modules["scipy.linalg._decomp"] = module
    try:
        _, usage = measure(lambda W_Q, W_K: module.eigvals(W_K.numpy().T @ W_Q.numpy()),
                           torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64))
    finally:
        del sys.modules["scipy.linalg._decomp"]
    assert usage.solvers == ("scipy.linalg.eigvals", "numpy.linalg.eigvals")


# --- the boundary: where the memory rule judges, and where it must not --------------------------------

@pytest.mark.parametrize("d, d_h", [(8, 4), (16, 8), (5, 4), (9, 8), (2, 1), (5, 1), (6, 1)],
                         ids=["d=2d_h (8, 4)", "d=2d_h (16, 8)", "d=d_h+1 (5, 4)", "d=d_h+1 (9, 8)",
                              "d_h=1 (2, 1)", "d_h=1 (5, 1)", "d_h=1 (6, 1)"])
def test_the_memory_rule_does_not_judge_where_a_right_answer_is_as_large_as_w(d, d_h):
    """At these sizes the concatenated factors alone hold `2 d d_h >= d * d` elements: the rule
    stays silent (a right answer could not be told from W), and every right answer passes."""
    assert not torch_rule_judges(d, d_h) and not numpy_rule_judges(d, d_h)
    g = torch.Generator().manual_seed(d * 10 + d_h)
    W_Q, W_K = (torch.randn(d, d_h, generator=g, dtype=torch.float64) for _ in range(2))
    expected = torch.as_tensor(moments_numpy_traces(W_Q, W_K))
    for answer in (moments_concatenated, moments_einsum, moments_in_float64, moments_numpy_traces):
        got = obeying_rules(answer, name="moments")(W_Q.clone(), W_K.clone())
        torch.testing.assert_close(torch.as_tensor(got), expected)
    _, usage = measure(moments_concatenated, W_Q, W_K)
    assert usage.torch_peak >= 2 * d * d_h  # F = [W_Q, W_K] is (d, 2 d_h): as many elements as W, or more


@pytest.mark.parametrize("d, d_h", [(64, 4), (64, 8), (512, 2), (33, 1)])
def test_where_the_rule_judges_right_answers_stay_far_below_w_and_w_reaches_it(d, d_h):
    assert torch_rule_judges(d, d_h)
    g = torch.Generator().manual_seed(d + d_h)
    W_Q, W_K = (torch.randn(d, d_h, generator=g, dtype=torch.float64) for _ in range(2))
    for answer in (moments_concatenated, moments_einsum, moments_in_float64):
        _, usage = measure(answer, W_Q, W_K)
        assert usage.torch_peak <= 4 * (d * d_h + d_h * d_h) < d * d  # the budget has margin 6/4 over the largest
    for answer in (moments_extra_axis, moments_rows_list, moments_power_iteration_on_w):
        with pytest.raises(ExerciseCheckError, match="elements of torch tensors"):
            obeying_rules(answer, name="moments")(W_Q, W_K)


def test_freed_memory_is_subtracted_and_the_inputs_are_not_counted():
    """Rows of W made and dropped one at a time (W never held) peak at a few rows, not at d * d."""
    d, d_h = 256, 2
    W_Q, W_K = torch.randn(d, d_h, dtype=torch.float64), torch.randn(d, d_h, dtype=torch.float64)

    def diagonal_row_by_row(q, k):
        total = torch.zeros((), dtype=q.dtype)
        for i in range(q.shape[0]):
            row = k @ q[i]  # d elements, freed at the next iteration
            total = total + row[i]
        return total

    out, usage = measure(diagonal_row_by_row, W_Q, W_K)
    torch.testing.assert_close(out, (W_Q * W_K).sum())
    assert d <= usage.torch_peak <= 3 * d
    _, usage = measure(lambda q, k: (q.mT, k[:, 0], q.view(-1)), W_Q, W_K)  # views of the inputs only
    assert usage.torch_peak == 0


# --- the mutation class "rule evasion": each is rejected by the rule, not by its numbers -------------

@pytest.mark.parametrize("check, reference, eigen", [
    (check_spectrum_moments, spectrum_moments_reference, True),
    (check_symmetric_penalty, symmetric_penalty_reference, False),
], ids=["6.3", "10.2"])
def test_each_rule_evasion_mutant_is_rejected_by_the_rule(check, reference, eigen):
    evasions = rule_evasions(reference, eigen=eigen)
    assert len(evasions) == (8 if eigen else 5)
    for mutant in evasions:
        reset_attempts()
        with pytest.raises(ExerciseCheckError, match=r"d x d = |eigen-solver \(") as caught:
            check(mutant.answer)
        assert "not right yet" not in str(caught.value), mutant.name  # the verdict is the rule's, not the values'


# --- chapter 7 (ex-general-snr): "through traces of W (no eigenvalues)" on a square W -----------------

def _snr_from_traces(W, T):
    """The SNR of the exercise, from tr W, tr(W^2) and ||W||_F^2 (independent of qklab.theory)."""
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    tr, tr2, fro = torch.trace(W), torch.trace(W @ W), (W * W).sum()
    return tau * tr / (tau**2 * (tr2 + fro) + tau * (T - tau) * fro).sqrt()


def test_snr_general_from_traces_passes_and_from_eigenvalues_fails(capsys):
    from qklab.checks.snr import check_general_snr

    check_general_snr(_snr_from_traces)
    assert "\u2713" in capsys.readouterr().out

    def tr2_from_eigenvalues(W, T):  # right numbers: tr(W^2) = sum of the squared eigenvalues
        lam = np.linalg.eigvals(W.numpy())
        tau = torch.arange(1, T + 1, dtype=torch.float64)
        tr, tr2, fro = torch.trace(W), torch.tensor(float((lam**2).sum().real), dtype=torch.float64), (W * W).sum()
        return tau * tr / (tau**2 * (tr2 + fro) + tau * (T - tau) * fro).sqrt()

    W = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(tr2_from_eigenvalues(W, 5), _snr_from_traces(W, 5))
    reset_attempts()
    with pytest.raises(ExerciseCheckError, match=r"eigen-solver \(numpy.linalg.eigvals\).*non-normal W"):
        check_general_snr(tr2_from_eigenvalues)
