"""qklab.localization: batched support statistics against a brute-force loop, and the grid routines."""

import math

import pytest
import torch

from qklab.localization import (
    collapse_curves,
    curve_spread,
    phase_diagram,
    standard_spectrum,
    support_statistics,
    window_share,
)
from qklab.spectrum import haar_orthogonal
from qklab.theory import random_walk_tokens, recent_share


def _support_by_bisection(z):
    """Sparsemax support of one row, from the threshold found by bisection (independent of qklab)."""
    lo, hi = float(z.max()) - 1.0, float(z.max())
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(torch.clamp(z - mid, min=0).sum()) > 1 else (lo, mid)
    return z > (lo + hi) / 2


def test_support_statistics_match_a_loop():
    d, T, n = 5, 7, 20
    g = torch.Generator().manual_seed(0)
    W = torch.randn(2, 3, d, d, generator=g, dtype=torch.float64)  # non-symmetric too
    X = random_walk_tokens(n, T, d, seed=1)
    stats = support_statistics(W, T, n, X=X, scale=0.7, chunk=4)
    assert stats["profile"].shape == (2, 3, T) and stats["support_size"].shape == (2, 3)
    for a in range(2):
        for b in range(3):
            counts, entropy = torch.zeros(T, dtype=torch.float64), 0.0
            weights = torch.zeros(T, dtype=torch.float64)
            for x in X:
                z = torch.stack([0.7 * x[t] @ W[a, b] @ x[-1] for t in range(T)])
                counts += _support_by_bisection(z)
                p = torch.exp(z - z.max()) / torch.exp(z - z.max()).sum()
                entropy += -float((p * p.log()).sum())
                weights += p
            torch.testing.assert_close(stats["profile"][a, b], counts / n)
            torch.testing.assert_close(stats["softmax_profile"][a, b], weights / n)
            assert float(stats["entropy"][a, b]) == pytest.approx(entropy / n, rel=1e-9)
    torch.testing.assert_close(stats["support_size"], stats["profile"].sum(-1))


def test_chunk_and_seed_behaviour():
    W = torch.diag(torch.linspace(0.1, 1.0, 6)).double()
    a = support_statistics(W, 9, 50, seed=3, chunk=7)
    b = support_statistics(W, 9, 50, seed=3, chunk=50)
    c = support_statistics(W, 9, 50, seed=4)
    torch.testing.assert_close(a["profile"], b["profile"])
    assert not torch.equal(a["profile"], c["profile"])


def test_a_rotated_matrix_has_the_same_statistics_as_its_eigenvalues():
    """Isotropic tokens: U diag(lam) U^T and diag(lam) give the same law (here: within Monte Carlo error)."""
    d, T, n = 16, 16, 3000
    lam = 0.05 + 0.05 * standard_spectrum(d, seed=0)
    U = haar_orthogonal(d, seed=1)
    W = torch.stack([torch.diag(lam), U @ torch.diag(lam) @ U.T])
    same = support_statistics(W, T, n, seed=2)  # same tokens: differ through the rotation only
    torch.testing.assert_close(same["profile"][0], same["profile"][1], atol=0.05, rtol=0)
    # exact statement: rotating the tokens instead of W gives identical logits
    X = random_walk_tokens(200, T, d, seed=5)
    a = support_statistics(W[1], T, 200, X=X)
    b = support_statistics(torch.diag(lam), T, 200, X=X @ U)
    torch.testing.assert_close(a["profile"], b["profile"])
    torch.testing.assert_close(a["entropy"], b["entropy"])


def test_standard_spectrum_and_window_share():
    z = standard_spectrum(10, seed=0)
    assert float(z.mean()) == pytest.approx(0, abs=1e-12) and float(z.pow(2).mean()) == pytest.approx(1)
    assert torch.equal(standard_spectrum(1), torch.zeros(1, dtype=torch.float64))
    p = torch.rand(3, 12, dtype=torch.float64) + 0.1
    expected = torch.tensor([recent_share(row, 4) for row in p], dtype=torch.float64)
    torch.testing.assert_close(window_share(p, 4), expected)
    with pytest.raises(ValueError, match="exceeds"):
        window_share(p, 13)
    with pytest.raises(ValueError, match="sums to 0"):
        window_share(torch.zeros(5), 2)


def test_phase_diagram_corners():
    means, stds = [0.0, 1.0], [0.001, 0.1]
    pd = phase_diagram(means, stds, d=32, T=32, n_samples=200, window=4, seed=0)
    for key in ("share", "support_size", "entropy", "kappa", "mean", "std"):
        assert pd[key].shape == (2, 2)
    assert pd["profile"].shape == (2, 2, 32)
    torch.testing.assert_close(pd["kappa"][1, 1], torch.tensor(1 / math.sqrt(1.01), dtype=torch.float64))
    assert float(pd["kappa"][0, 0]) == 0.0
    assert float(pd["share"][1, 1]) > 0.95  # concentrated: support next to the query
    assert float(pd["share"][0, 0]) == pytest.approx(4 / 32, abs=0.04)  # zero mean, tiny spread: flat
    iid = phase_diagram([1.0], [0.1], d=32, T=32, n_samples=200, window=1, tokens="iid", seed=0)
    assert float(iid["share"][0, 0]) > 0.95  # i.i.d. tokens: on the query itself
    assert math.isnan(float(phase_diagram([0.0], [0.0], d=4, T=4, n_samples=5, window=1)["kappa"][0, 0]))
    with pytest.raises(ValueError, match="stds"):
        phase_diagram([0.0], [-1.0], d=4, T=4, n_samples=5, window=1)


def test_collapse_curves_shapes_and_axis():
    c = collapse_curves([4, 16], [0.0, 0.5, 1.0], T=8, n_samples=40, window=2, seeds=(0, 1))
    assert c["share"].shape == (2, 2, 3) and c["support_size"].shape == (2, 2, 3)
    torch.testing.assert_close(c["x"], torch.tensor([[0, 1, 2], [0, 2, 4]], dtype=torch.float64))
    assert bool(((c["share"] > 0) & (c["share"] <= 1)).all())
    with pytest.raises(ValueError, match="kappas"):
        collapse_curves([4], [1.5], T=8, n_samples=4, window=2)
    with pytest.raises(ValueError, match="r must be"):
        collapse_curves([4], [0.5], T=8, n_samples=4, window=2, r=0.0)


def test_curve_spread():
    x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0]])
    same = curve_spread(x, 3 * x)  # the same line y = 3x sampled at different points
    assert same["max"] == pytest.approx(0.0, abs=1e-12)
    shifted = curve_spread(x, torch.stack([x[0], x[1] + 0.25]))
    assert shifted["max"] == pytest.approx(0.25) and float(shifted["grid"][-1]) == 2.0
    with pytest.raises(ValueError, match="increasing"):
        curve_spread(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    with pytest.raises(ValueError, match="do not overlap"):
        curve_spread(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.zeros(2, 2))


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        support_statistics(torch.zeros(3, 4), 4, 2)
    with pytest.raises(ValueError, match="tokens"):
        support_statistics(torch.eye(3), 4, 2, tokens="walk")
    with pytest.raises(ValueError, match="X must have shape"):
        support_statistics(torch.eye(3), 4, 2, X=torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="scale"):
        support_statistics(torch.eye(3), 4, 2, scale=-1.0)
