"""qklab.checks.localization: the references pass, each typical wrong answer fails with its own label."""

import math

import pytest
import torch

from qklab.checks.core import ExerciseCheckError
from qklab.checks.localization import SNR_MISTAKES, SPARSEMAX_MISTAKES, check_predicted_snr, check_sparsemax


def _sparsemax_by_loop(z):
    """An independent sparsemax: bisection on the threshold theta, row by row (sum max(z - theta, 0) = 1)."""
    flat = z.reshape(-1, z.shape[-1])
    out = torch.zeros_like(flat)
    for i, row in enumerate(flat):
        finite = row[torch.isfinite(row)]
        lo, hi = float(finite.max()) - 1.0, float(finite.max())
        for _ in range(200):
            mid = (lo + hi) / 2
            if float(torch.clamp(finite - mid, min=0).sum()) > 1:
                lo = mid
            else:
                hi = mid
        theta = (lo + hi) / 2
        out[i] = torch.clamp(row - theta, min=0)
    return out.reshape(z.shape)


def _snr_by_moments(mean, std, d, T):
    """From the logit moments E z = tau d m and Var z = tau (T + tau) d (m^2 + s^2)."""
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    return tau * d * mean / torch.sqrt(tau * (T + tau) * d * (mean**2 + std**2))


def test_right_answers_pass(capsys):
    check_sparsemax(_sparsemax_by_loop)
    check_predicted_snr(_snr_by_moments)
    assert capsys.readouterr().out.count("\u2713") == 2


@pytest.mark.parametrize("mistake", SPARSEMAX_MISTAKES, ids=lambda m: m.label)
def test_each_sparsemax_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError) as info:
        check_sparsemax(mistake.fn)
    assert f"This looks like {mistake.label}" in str(info.value)


@pytest.mark.parametrize("mistake", SNR_MISTAKES, ids=lambda m: m.label)
def test_each_snr_mistake_is_recognised(mistake):
    with pytest.raises(ExerciseCheckError) as info:
        check_predicted_snr(mistake.fn)
    assert f"This looks like {mistake.label}" in str(info.value)


def test_nan_on_masked_keys_is_reported():
    def nan_on_inf(z):
        zs = z.sort(dim=-1, descending=True).values  # -inf makes the cumulative sum -inf, then NaN
        k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
        cums = zs.cumsum(-1)
        size = (1 + k * zs > cums).sum(-1, keepdim=True)
        theta = (cums.gather(-1, size - 1) - 1) / size
        return torch.clamp(z - theta, min=0) * (z - z + 1)  # inf - inf = NaN on masked keys

    with pytest.raises(ExerciseCheckError, match="masked keys.*NaN"):
        check_sparsemax(nan_on_inf)


def test_unsolved_and_shape_errors():
    with pytest.raises(ExerciseCheckError, match="not implemented yet"):
        check_predicted_snr(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(ExerciseCheckError, match=r"returned shape \(1,\), expected \(8,\)"):
        check_predicted_snr(lambda m, s, d, T: torch.tensor([math.sqrt(d)], dtype=torch.float64))
