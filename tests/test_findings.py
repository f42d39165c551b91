"""qklab.findings: the numbers the book's answer quotes, against computations done by hand here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qklab.findings import load_sweep, locater_findings, map_findings, matched_per_seed, spearman


def _map(scales: np.ndarray, rank_edges: list[float], entropy_edges: list[float], loc: list[float]) -> dict:
    """A two-kappa map whose residual and entropy cross their thresholds (0.5, 0.25) at known scales:
    both are linear in log r with slope 1 per decade."""
    lr = torch.as_tensor(np.log10(scales))
    residual = torch.stack([(0.5 + (lr - math.log10(e))).clamp(0, 1) for e in rank_edges], dim=-1)  # (scales, 2)
    entropy = torch.stack([(0.25 - (lr - math.log10(e))).clamp(0, 1) for e in entropy_edges], dim=-1)
    localization = torch.tensor(loc, dtype=torch.float64).expand(len(scales), 2).clone()
    localization[-1] = 1000.0  # the largest scale is in entropy collapse: must not count
    return {k: v.unsqueeze(0).expand(2, -1, -1).clone()
            for k, v in (("residual", residual), ("entropy", entropy), ("localization", localization))}


def test_map_findings_reads_edges_windows_and_best_localization():
    scales = np.logspace(-2, 1, 31)
    M = _map(scales, rank_edges=[0.5, 0.2], entropy_edges=[5.0, 0.8], loc=[3.0, 50.0])
    found = map_findings(M, scales, [0.0, 1.0])
    assert found.kappas == (0.0, 1.0)
    assert found.rank_edge == pytest.approx((0.5, 0.2), rel=1e-9)
    assert found.entropy_edge == pytest.approx((5.0, 0.8), rel=1e-9)
    assert found.window == pytest.approx((1.0, math.log10(4.0)), rel=1e-9)
    assert found.best_localization == pytest.approx((3.0, 50.0))


def _record(steps: int, regime: str, arm: str, rho: float, seed: int, ppl: float, entropy: float,
            recent: float, kappa: float = 0.5, scale: float = 1.0) -> dict:
    return {"status": "ok", "tags": {"steps": steps, "regime": regime, "arm": arm, "rho": rho, "seed": seed},
            "result": {"status": "completed", "val_ppl": ppl, "entropy": entropy, "qk_kappa": kappa,
                       "recent_mass": recent, "qk_scale": scale}}


def test_locater_findings_against_hand_computation():
    seeds = range(5)
    noise = [0.01, -0.02, 0.03, 0.0, -0.01]
    records = []
    for L, plain, gains in ((300, 10.0, {0.1: 1.0, 1.0: 0.5}), (1500, 6.0, {0.1: 0.2, 1.0: -0.3})):
        for s in seeds:
            records.append(_record(L, "normal", "plain", 0.0, s, plain + noise[s], 1.0, 0.6, kappa=0.1 * s))
            for rho, g in gains.items():
                records.append(_record(L, "normal", "LocAteR variance", rho, s, plain - g + noise[s] * 0.5, 1.5 + rho,
                                       0.55, kappa=0.1 * s + 0.05))
            records.append(_record(L, "normal", "sigma-Reparam", 0.0, s, plain - 0.1 + noise[s], 1.4, 0.58, scale=0.7 + 0.01 * s))
        for s in seeds:
            records.append(_record(L, "too high", "plain", 0.0, s, 12.0 + noise[s], 0.1, 0.3))
            records.append(_record(L, "too high", "LocAteR variance", 1.0, s, 10.0 + noise[s], 2.0, 0.4))
            records.append(_record(L, "too high", "weight decay", 1.0, s, 8.0 + noise[s], 1.4, 0.8))
    f = locater_findings(records)
    assert f.lengths == (300, 1500)
    assert f.best_rho == {300: 0.1, 1500: 0.1}
    mean_noise = float(np.mean(noise))
    assert f.plain_ppl[300] == pytest.approx(10.0 + mean_noise)
    assert f.gain[300] == pytest.approx(1.0 + 0.5 * mean_noise)  # plain minus LocAteR, paired mean
    assert f.relative_gain(1500) == pytest.approx((0.2 + 0.5 * mean_noise) / (6.0 + mean_noise))
    assert f.recent[1500] == pytest.approx((0.55, 0.6))
    # LocAteR minus sigma-Reparam per seed: (-g + 0.1) - 0.5 noise_s; the t interval by hand (df = 4)
    diffs = np.array([-0.2 + 0.1 - 0.5 * n for n in noise])
    half = 2.7764451051977987 * diffs.std(ddof=1) / math.sqrt(5)
    assert f.vs_sigma[1500] == pytest.approx((diffs.mean(), diffs.mean() - half, diffs.mean() + half))
    assert f.tied_with_sigma_from() is None  # -0.1 +- small: never contains 0
    assert f.scale[300] == pytest.approx((1.0, 1.0, 0.72))  # (best LocAteR, plain, sigma-Reparam), seed means
    assert f.uniform_cost[300] == pytest.approx(((10.0 - 0.5) + 0.5 * mean_noise) / (10.0 + mean_noise) - 1)
    assert math.isnan(f.matched_sigma[300])  # sigma-Reparam's entropy 1.4 lies below LocAteR's curve (1.6 to 2.5)
    assert f.verdict[300] == "reproduced"
    assert f.high_steps == 1500 and f.high_wd_ppl == pytest.approx(8.0 + mean_noise)
    assert f.high_best_ppl == pytest.approx(10.0 + mean_noise)
    heads = [r["result"] for r in records if r["tags"]["steps"] == 300 and r["tags"]["arm"] != "mimetic plain"]
    assert f.kappa_recent_spearman == pytest.approx(spearman([h["qk_kappa"] for h in heads],
                                                             [h["recent_mass"] for h in heads]))


def test_matched_per_seed_reads_each_seeds_curve_at_that_seeds_entropy():
    # LocAteR, seed s: (entropy 1.0, ppl 10 + s) at rho 0.1 and (3.0, 14 + s) at rho 1.0, so its curve
    # at entropy h is 10 + s + 2 (h - 1). sigma-Reparam, seed s: entropy 1.5 + 0.5 s, ppl 11.
    records = []
    for s in range(4):
        records.append(_record(300, "normal", "LocAteR variance", 0.1, s, 10.0 + s, 1.0, 0.5))
        records.append(_record(300, "normal", "LocAteR variance", 1.0, s, 14.0 + s, 3.0, 0.5))
        records.append(_record(300, "normal", "sigma-Reparam", 0.0, s, 11.0, 1.5 + 0.5 * s, 0.5))
        records.append(_record(1500, "normal", "sigma-Reparam", 0.0, s, 99.0, 2.0, 0.5))  # another length: ignored
    records.append(_record(300, "too high", "LocAteR variance", 0.1, 0, 50.0, 2.0, 0.5))  # another regime: ignored
    got = matched_per_seed(records, 300, "sigma-Reparam", 0.0)
    # seed 3: entropy 3.0 is the curve's end (kept); by hand 10 + s + 2 (0.5 + 0.5 s) - 11 = 2 s
    assert got == pytest.approx({0: 0.0, 1: 2.0, 2: 4.0, 3: 6.0})
    records.append(_record(300, "normal", "weight decay", 1.0, 0, 8.0, 0.5, 0.5))  # below the curve: no value
    assert matched_per_seed(records, 300, "weight decay", 1.0) == {}


def test_spearman_matches_a_direct_rank_correlation():
    x, y = [3.0, 1.0, 2.0, 5.0], [30.0, 20.0, 10.0, 40.0]
    rx, ry = np.array([2, 0, 1, 3]), np.array([2, 1, 0, 3])
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])


def test_committed_sweep_findings_are_the_ones_chapter_10_prints():
    f = locater_findings(load_sweep())
    assert f.lengths == (300, 1500, 3000)
    assert f.best_rho[300] == 0.3 and f.verdict[300] == "reproduced"
    assert f.gain[300] > f.gain[1500] > f.gain[3000] > 0
    assert abs(f.matched_sigma[3000]) < 0.05
