"""The course's answer as numbers: what the one-layer map and the committed LocAteR sweep found.

The book states its central result at the end of chapter 8 (the box "What 'prevents both
collapses' means here") and on the "Results at a glance" page. Both quote numbers, and the numbers
come from here, recomputed at every build, so that the two pages cannot drift apart (chapter 10
computes the same quantities in place, from the same records and `qklab.reproduce` functions).

What is here:

- `MapFindings` / `map_findings(M, scales, kappas)`: from a `qklab.collapse.collapse_map` over
  `(r, kappa)` (chapter 8), the no-collapse window at the lowest and highest `kappa` (rank edge,
  entropy edge, width in decades) and the largest localization reached without either collapse.
- `LocaterFindings` / `locater_findings(records)`: from the committed sweep of chapter 10
  (`load_sweep()`), per training length at the normal learning rate: the verdict of the
  chapter's rule, the best LocAteR strength and its paired perplexity gain, LocAteR against
  sigma-Reparam, where the last query's attention goes (LocAteR against plain training); at the
  too-high rate, weight decay against the best LocAteR strength; LocAteR against sigma-Reparam at
  the same attention entropy.
- `load_controls()` / `control_findings(records)`: the size control of chapter 10 (`qklab.controls`,
  `results/controls.jsonl`): every comparison of its verdicts on the test split, keyed by
  `(family, steps, init, against)`, so that chapters 8, 10, 11 and the glance page quote the same rows.
- `matched_per_seed(records, steps, arm, rho)`: the same matched-entropy comparison seed by seed
  (LocAteR's curve of one seed read at the other method's entropy of that seed), for an interval.
- `value_at(x, y, x0)`: a curve through measured points read at `x0` (no extrapolation), the
  reference of chapter 10's matched-entropy exercise; `spearman(x, y)`: a rank correlation.

Not here: computing the map (`qklab.collapse`), the verdict rule and the statistics
(`qklab.reproduce`), the prose (the chapters).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qklab.collapse import THRESHOLDS, collapse_regions, log_crossing
from qklab.reproduce import SCALES, at_length, completed_runs, locater_points, paired, summarise, t_interval, verdict
from qklab.runner import point_key, read_records

__all__ = ["MapFindings", "map_findings", "LocaterFindings", "locater_findings", "load_sweep", "PEAKED_NATS",
           "spearman", "value_at", "load_controls", "control_findings"]

#: Heads with a mean attention entropy below this many nats are "away from uniform" (the causal
#: ceiling at the sweep's context of 64 is 3.2 nats).
PEAKED_NATS = 2.5

# The committed runs of chapter 10, in the checkout's results/ folder. Not in __all__: the API
# reference would print this machine's absolute path.
# the sweep (`qklab reproduce locater --scale book`)
SWEEP_FILE = Path(__file__).resolve().parents[1] / "results" / "locater-book.jsonl"

# the size control and test split (`qklab reproduce controls`)
CONTROLS_FILE = Path(__file__).resolve().parents[1] / "results" / "controls.jsonl"


@dataclasses.dataclass(frozen=True)
class MapFindings:
    """The one-layer `(r, kappa)` map in a few numbers; index 0 is the lowest `kappa`, 1 the highest.

    `rank_edge` and `entropy_edge` are the scales `r` where the seed-averaged residual falls to its
    threshold and the entropy to its threshold (means over seeds); `window` is
    `log10(entropy_edge / rank_edge)`, the width of the no-collapse window in decades;
    `best_localization` the largest localization (attention on the query's own token over its
    uniform share) at a point of the map with neither collapse.
    """

    kappas: tuple[float, float]
    rank_edge: tuple[float, float]
    entropy_edge: tuple[float, float]
    window: tuple[float, float]
    best_localization: tuple[float, float]


def map_findings(M: dict[str, Tensor], scales, kappas) -> MapFindings:
    """Summarise a `collapse_map(scales, kappas, ...)` result `M` (values `(seeds, scales, kappas)`)
    with the course's thresholds (`qklab.collapse.THRESHOLDS`; chapter 8)."""
    H, R, L = (M[k].mean(dim=0) for k in ("entropy", "residual", "localization"))  # (scales, kappas)
    r_rank = log_crossing(scales, M["residual"].transpose(1, 2), THRESHOLDS["residual"])  # (seeds, kappas)
    r_ent = log_crossing(scales, M["entropy"].transpose(1, 2), THRESHOLDS["entropy"])
    codes = collapse_regions(H, R, L)  # (scales, kappas)
    best = L.where(codes >= 2, L.new_zeros(())).amax(dim=0)  # (kappas,)
    ends = (0, len(kappas) - 1)

    def pair(t: Tensor) -> tuple[float, float]:
        return tuple(float(t[..., j].mean()) for j in ends)

    return MapFindings(
        kappas=(float(kappas[0]), float(kappas[-1])),
        rank_edge=pair(r_rank),
        entropy_edge=pair(r_ent),
        window=pair((r_ent / r_rank).log10()),
        best_localization=pair(best),
    )


def load_sweep(path: str | Path | None = None) -> list[dict]:
    """The records of the committed chapter-10 sweep (`results/locater-book.jsonl` of the checkout, unless
    `path` names another file), each with its grid point's tags."""
    found = read_records(SWEEP_FILE if path is None else path)
    return [{**found[point_key(p)], "tags": p["tags"]} for p in locater_points("book")[0] if point_key(p) in found]


def load_controls(path: str | Path | None = None) -> list[dict]:
    """The records of the controls (`qklab.controls`; `results/controls.jsonl` of the checkout unless `path`
    names another file), one per point, in the order they finished."""
    return list(read_records(CONTROLS_FILE if path is None else path).values())


def control_findings(records: list[dict]) -> dict[tuple[str, int, str, str], dict]:
    """`qklab.controls.verdicts(records)` keyed by `(family, steps, arm, against)`, e.g.
    `("spread", 1500, "mimetic + LocAteR variance", "mimetic + Frobenius")`; each row also carries its
    `family`, `steps`, `init`, `arm` and `against`, to filter on."""
    from qklab.controls import verdicts

    return {(v["family"], v["steps"], v["arm"], v["against"]): v for v in verdicts(records)}


@dataclasses.dataclass(frozen=True)
class LocaterFindings:
    """Chapter 10's sweep in the numbers its summary quotes; dicts are keyed by training length.

    At the normal learning rate: `verdict` (the chapter's rule), `best_rho` (the LocAteR strength
    with the lowest mean validation perplexity, chosen on the validation split itself),
    `plain_ppl`, `gain` (plain minus best LocAteR perplexity, mean of paired differences),
    `vs_sigma` (best LocAteR minus sigma-Reparam: mean and 95% interval of paired differences),
    `vs_uniform` (best LocAteR minus the near-uniform control, the largest strength: the two arms
    differ only in `W_Q, W_K`, so only through where attention goes),
    `recent` (share of the last query's attention on its 8 nearest keys: (best LocAteR, plain)).
    At the too-high rate and `high_steps`: `high_wd_ppl`, `high_best_ppl` (weight decay 1 and the
    best LocAteR strength) and `high_verdict`. `kappa_recent_spearman`: across the trained heads of
    the shortest runs (default initialisation, both rates), Spearman's rank correlation of `kappa`
    with the recent share; `kappa_recent_spearman_peaked` the same over the heads whose entropy is
    below `PEAKED_NATS` (away from uniform attention). `scale`: the mean QK scale `r` of (best
    LocAteR, plain, sigma-Reparam). `uniform_cost`: the relative perplexity change of the near-uniform
    control (the largest LocAteR strength, attention entropy at its ceiling) against plain training.
    `matched_sigma`: LocAteR's perplexity read off its strength curve at
    sigma-Reparam's entropy, minus sigma-Reparam's perplexity (means over seeds; `value_at`);
    `matched_sigma_ci` the same seed by seed (`matched_per_seed`): mean and 95% interval over the seeds
    whose curve spans sigma-Reparam's entropy. The interpolation along a curve of a few strengths
    errs by about as much as the means differ, so quote the intervals, not the means alone.
    """

    lengths: tuple[int, ...]
    verdict: dict[int, str]
    best_rho: dict[int, float]
    plain_ppl: dict[int, float]
    gain: dict[int, float]
    vs_sigma: dict[int, tuple[float, float, float]]
    vs_uniform: dict[int, tuple[float, float, float]]
    recent: dict[int, tuple[float, float]]
    high_steps: int
    high_verdict: str
    high_best_ppl: float
    high_wd_ppl: float
    kappa_recent_spearman: float
    kappa_recent_spearman_peaked: float
    matched_sigma: dict[int, float]
    matched_sigma_ci: dict[int, tuple[float, float, float]]
    scale: dict[int, tuple[float, float, float]]
    uniform_cost: dict[int, float]

    def relative_gain(self, steps: int) -> float:
        """The best strength's perplexity gain as a fraction of plain training's perplexity."""
        return self.gain[steps] / self.plain_ppl[steps]

    def tied_with_sigma_from(self) -> int | None:
        """The first length from which every paired interval against sigma-Reparam contains 0."""
        for i, L in enumerate(self.lengths):
            if all(lo <= 0 <= hi for _, lo, hi in (self.vs_sigma[k] for k in self.lengths[i:])):
                return L
        return None


def locater_findings(records: list[dict]) -> LocaterFindings:
    """Chapter 10's summary numbers from the sweep's records (`load_sweep()`)."""
    rows = {(r["steps"], r["regime"], r["arm"], r["rho"]): r for r in summarise(records)}
    lengths = tuple(sorted({k[0] for k in rows if k[1] == "normal"}))
    loc = "LocAteR variance"

    def best(L: int, regime: str) -> float:
        strengths = [k[3] for k in rows if k[:3] == (L, regime, loc) and not math.isnan(rows[k]["val_ppl"])]
        return min(strengths, key=lambda rho: rows[(L, regime, loc, rho)]["val_ppl"])

    best_rho = {L: best(L, "normal") for L in lengths}

    def curve(L: int) -> list[dict]:
        return [r for k, r in rows.items() if k[:3] == (L, "normal", loc) and not math.isnan(r["val_ppl"])]

    vs_sigma = {L: t_interval(list(paired(records, "normal", loc, best_rho[L], "sigma-Reparam", "val_ppl",
                                          steps=L).values())) for L in lengths}
    largest = {L: max(k[3] for k in rows if k[:3] == (L, "normal", loc)) for L in lengths}
    vs_uniform = {L: t_interval(list(paired(records, "normal", loc, best_rho[L], loc, "val_ppl", base_rho=largest[L],
                                            steps=L).values())) for L in lengths}
    high_steps = max(k[0] for k in rows if k[1] == "too high")
    high_best = best(high_steps, "too high")
    heads = [r["result"] for r in at_length(records, SCALES["book"].steps) if r.get("status") == "ok"
             and r["result"].get("status") == "completed" and not r["tags"]["arm"].startswith("mimetic")]
    peaked = [h for h in heads if h["entropy"] < PEAKED_NATS]

    done = completed_runs(records)

    def mean_scale(L: int, arm: str, rho: float) -> float:
        return float(np.mean([res["qk_scale"] for res in done[(L, "normal", arm, rho)].values()]))
    return LocaterFindings(
        lengths=lengths,
        verdict={L: verdict(records, "normal", steps=L)["verdict"] for L in lengths},
        best_rho=best_rho,
        vs_uniform=vs_uniform,
        plain_ppl={L: rows[(L, "normal", "plain", 0.0)]["val_ppl"] for L in lengths},
        gain={L: -rows[(L, "normal", loc, best_rho[L])]["d_ppl"] for L in lengths},
        vs_sigma=vs_sigma,
        recent={L: (rows[(L, "normal", loc, best_rho[L])]["recent_mass"], rows[(L, "normal", "plain", 0.0)]["recent_mass"])
                for L in lengths},
        high_steps=high_steps,
        high_verdict=verdict(records, "too high", steps=high_steps)["verdict"],
        high_best_ppl=rows[(high_steps, "too high", loc, high_best)]["val_ppl"],
        high_wd_ppl=rows[(high_steps, "too high", "weight decay", 1.0)]["val_ppl"],
        kappa_recent_spearman=spearman([h["qk_kappa"] for h in heads], [h["recent_mass"] for h in heads]),
        kappa_recent_spearman_peaked=spearman([h["qk_kappa"] for h in peaked], [h["recent_mass"] for h in peaked]),
        uniform_cost={L: rows[(L, "normal", loc, max(k[3] for k in rows if k[:3] == (L, "normal", loc)))]["val_ppl"]
                      / rows[(L, "normal", "plain", 0.0)]["val_ppl"] - 1 for L in lengths},
        scale={L: (mean_scale(L, loc, best_rho[L]), mean_scale(L, "plain", 0.0), mean_scale(L, "sigma-Reparam", 0.0))
               for L in lengths},
        matched_sigma={L: float(value_at([r["entropy"] for r in curve(L)], [r["val_ppl"] for r in curve(L)],
                                         rows[(L, "normal", "sigma-Reparam", 0.0)]["entropy"]))
                       - rows[(L, "normal", "sigma-Reparam", 0.0)]["val_ppl"] for L in lengths},
        matched_sigma_ci={L: t_interval(list(d.values())) for L in lengths
                          if len(d := matched_per_seed(records, L, "sigma-Reparam", 0.0)) >= 2},
    )


def matched_per_seed(records: list[dict], steps: int, arm: str, rho: float,
                     curve_arm: str = "LocAteR variance", regime: str = "normal") -> dict[int, float]:
    """Per seed: `curve_arm`'s perplexity at the attention entropy that (`arm`, `rho`) reached, minus
    the perplexity of (`arm`, `rho`), both from the runs of that seed at training length `steps`
    (chapter 10's matched-entropy comparison, paired over seeds).

    `curve_arm`'s curve of one seed runs through its strengths' (entropy, perplexity) points and is read
    with `value_at`. A seed whose curve does not span the other method's entropy (`value_at` gives
    NaN: no extrapolation) is left out, so the dict may hold fewer seeds than were run, or none.
    """
    runs = {(a, q): by_seed for (L, g, a, q), by_seed in completed_runs(records).items() if L == steps and g == regime}
    other = runs.get((arm, rho), {})
    strengths = sorted(k[1] for k in runs if k[0] == curve_arm)
    out = {}
    for seed, res in sorted(other.items()):
        points = [runs[(curve_arm, q)][seed] for q in strengths if seed in runs[(curve_arm, q)]]
        if len(points) < 2:
            continue
        at = float(value_at([p["entropy"] for p in points], [p["val_ppl"] for p in points], res["entropy"]))
        if not math.isnan(at):
            out[seed] = at - res["val_ppl"]
    return out


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences without ties."""
    rank = lambda v: np.argsort(np.argsort(np.asarray(v)))  # noqa: E731
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def value_at(x, y, x0: float) -> Tensor:
    """`y` read off the piecewise-linear curve through the points `(x_k, y_k)` at `x = x0`
    (chapter 10's matched-entropy comparison: a method's perplexity at a given attention entropy,
    along its strength grid).

    `x`, `y`: 1-D, the same length (at least 2), `x` distinct and in any order. Returns a 0-d
    float64 tensor, NaN when `x0` lies outside `[min x, max x]` (no extrapolation).
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    order = torch.argsort(x)
    x, y = x[order], y[order]
    if bool((x[1:] == x[:-1]).any()):
        raise ValueError("x must hold distinct values")
    if not float(x[0]) <= x0 <= float(x[-1]):
        return torch.tensor(float("nan"), dtype=torch.float64)
    k = int(torch.searchsorted(x, torch.tensor(x0, dtype=torch.float64), right=True).clamp(1, len(x) - 1)) - 1
    t = (x0 - x[k]) / (x[k + 1] - x[k])
    return y[k] + t * (y[k + 1] - y[k])
