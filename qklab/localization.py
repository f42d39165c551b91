"""Localization experiments over many spectra at once (chapter 7, `chapters/07_localization`).

`qklab.theory` holds the course's random-walk model for *one* query-key matrix: the tokens, the
Monte Carlo signal propagation probability of one `W`, the predicted signal-to-noise ratio. This
module runs the same experiment for a whole stack of matrices on *shared* tokens (common random
numbers: the differences across a grid are then not Monte Carlo noise), and builds the chapter's
grid experiments from it:

- `support_statistics`: for a stack of `W`s, the support profile `P(key tau in the sparsemax
  support of the query x_T)`, the mean support size and the softmax entropy of the query's row;
- `phase_diagram`: the same over a grid of eigenvalue means and standard deviations;
- `collapse_curves`: localization against `sqrt(d) * kappa` for several widths `d` at a fixed
  spectrum scale (the course's "collapse onto one curve" test), and `curve_spread`, how far
  apart such curves lie.

Why diagonal matrices are enough: the tokens are isotropic (random-walk steps or i.i.d. tokens
drawn from `N(0, I_d)`), so `X U` has the law of `X` for every orthogonal `U`, and the logits
`x_tau^T U diag(lam) U^T x_T` have the same joint law as `x_tau^T diag(lam) x_T`. A symmetric `W`
acts on such tokens through its eigenvalues alone. Chapter 7 checks this against
`qklab.theory.propagation_probability` on Haar-rotated matrices.

Not here: one-matrix Monte Carlo and the closed-form SNR (`qklab.theory`), building matrices
with a prescribed spectrum (`qklab.spectrum`), widgets (`qklab.explore`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from qklab._validate import as_float_tensor, check_positive_int
from qklab.attention import sparsemax
from qklab.theory import TokenModel, gaussian_tokens, random_walk_tokens

__all__ = [
    "standard_spectrum",
    "support_statistics",
    "window_share",
    "phase_diagram",
    "collapse_curves",
    "curve_spread",
]


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed)) if seed is not None else g.seed()
    return g


def _child_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=g))


def _tokens(kind: TokenModel, n: int, T: int, d: int, seed: int) -> Tensor:
    if kind == "random_walk":
        return random_walk_tokens(n, T, d, seed=seed)
    if kind == "iid":
        return gaussian_tokens(n, T, d, seed=seed)
    raise ValueError(f"tokens must be 'random_walk' or 'iid', got {kind!r}")


def standard_spectrum(d: int, seed: int | None = None) -> Tensor:
    """`d` Gaussian draws shifted and rescaled to mean exactly 0 and (population) sd exactly 1, `(d,)`.

    `m + s * standard_spectrum(d)` is then a spectrum with mean exactly `m` and sd exactly `s`,
    as `qklab.spectrum.random_qk(..., exact=True)` builds it. `d = 1` gives `[0.]` (sd 0).
    """
    d = check_positive_int(d, "d")
    z = torch.randn(d, generator=_generator(seed), dtype=torch.float64)
    z = z - z.mean()
    sd = z.pow(2).mean().sqrt()
    return z / sd if d > 1 and float(sd) > 0 else torch.zeros_like(z)


def support_statistics(
    W: Tensor,
    T: int,
    n_samples: int,
    tokens: TokenModel = "random_walk",
    scale: float | None = None,
    seed: int | None = None,
    chunk: int = 128,
    X: Tensor | None = None,
) -> dict[str, Tensor]:
    """Sparsemax support and softmax entropy of the last query, for a stack of matrices (chapter 7).

    For each of `n_samples` sequences of `T` tokens (the same sequences for every matrix) the last
    token `x_T` is the query and `z_tau = scale * x_tau^T W x_T` (`tau = 1..T`) its logits.

    Args:
        W: `(..., d, d)` query-key matrices (any leading shape `G`).
        T: sequence length; n_samples: number of sequences.
        tokens: `"random_walk"` or `"iid"` (`qklab.theory`).
        scale: logit multiplier, default `1/sqrt(d)`.
        chunk: sequences per batch (memory only: the result does not depend on it).
        X: optional tokens `(n_samples, T, d)` to use instead of drawing them (then `tokens`
            and `seed` are ignored).

    Returns:
        `profile`: `(..., T)`, the fraction of sequences in which key `tau` is in the sparsemax
        support (the signal propagation probability, as `qklab.theory.propagation_probability`);
        `support_size`: `(...)`, the mean support size, equal to `profile.sum(-1)`;
        `entropy`: `(...)`, the mean entropy in nats of the softmax row `softmax(z)`;
        `softmax_profile`: `(..., T)`, the mean softmax weight of key `tau` (it sums to 1): the
        same question as `profile` asked of softmax, which a trained model uses.
    """
    W = as_float_tensor(W, "W", min_ndim=2)
    if W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must be square, (..., d, d), got shape {tuple(W.shape)}")
    T = check_positive_int(T, "T")
    n_samples = check_positive_int(n_samples, "n_samples")
    chunk = check_positive_int(chunk, "chunk")
    d = W.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be finite and positive, got {scale}")
    batch = W.shape[:-2]
    Wf = W.reshape(-1, d, d).to(torch.float64)  # (G, d, d)
    if X is None:
        X = _tokens(tokens, n_samples, T, d, seed=_child_seed(_generator(seed)))  # (n, T, d)
    else:
        X = as_float_tensor(X, "X", ndim=3).to(torch.float64)
        if X.shape != (n_samples, T, d):
            raise ValueError(f"X must have shape (n_samples, T, d) = {(n_samples, T, d)}, got {tuple(X.shape)}")
    counts = torch.zeros(Wf.shape[0], T, dtype=torch.float64)
    entropy = torch.zeros(Wf.shape[0], dtype=torch.float64)
    weights = torch.zeros(Wf.shape[0], T, dtype=torch.float64)
    for start in range(0, n_samples, chunk):
        Xc = X[start : start + chunk]  # (c, T, d)
        q = torch.einsum("gij,cj->gci", Wf, Xc[:, -1, :])  # (G, c, d): W x_T per matrix and sequence
        z = scale * torch.einsum("ctd,gcd->gct", Xc, q)  # (G, c, T): z_tau = x_tau^T W x_T
        counts += (sparsemax(z) > 0).sum(dim=1)
        logp = torch.log_softmax(z, dim=-1)
        entropy += -(logp.exp() * logp).sum(dim=-1).sum(dim=1)
        weights += logp.exp().sum(dim=1)  # (G, T)
    profile = counts / n_samples
    return {
        "profile": profile.reshape(*batch, T),
        "support_size": profile.sum(-1).reshape(batch),
        "entropy": (entropy / n_samples).reshape(batch),
        "softmax_profile": (weights / n_samples).reshape(*batch, T),
    }


def window_share(profile: Tensor, window: int) -> Tensor:
    """Share of each support profile's total in its last `window` positions, `(...)` from `(..., T)`.

    The batched form of `qklab.theory.recent_share`: 1 when all support lies within `window` keys
    of the query, `window / T` for a flat profile.
    """
    profile = as_float_tensor(profile, "profile", min_ndim=1)
    window = check_positive_int(window, "window")
    if window > profile.shape[-1]:
        raise ValueError(f"window = {window} exceeds the profile length {profile.shape[-1]}")
    total = profile.sum(-1)
    if bool((total <= 0).any()):
        raise ValueError("some profile sums to 0: no support anywhere")
    return profile[..., -window:].sum(-1) / total


def _as_grid(values: Sequence[float] | Tensor, name: str) -> Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers")
    return v


def phase_diagram(
    means: Sequence[float] | Tensor,
    stds: Sequence[float] | Tensor,
    d: int,
    T: int,
    n_samples: int,
    window: int,
    tokens: TokenModel = "random_walk",
    scale: float | None = None,
    seed: int | None = None,
) -> dict[str, Tensor]:
    """Localization over a grid of eigenvalue means and standard deviations (chapter 7).

    Grid point `(i, j)` uses `W = diag(means[i] + stds[j] * z0)` with one shared
    `z0 = standard_spectrum(d)`: its eigenvalue mean is exactly `means[i]`, its sd exactly
    `stds[j]` (a diagonal `W` stands for every `U W U^T`, see the module docstring). All grid
    points see the same tokens.

    Returns a dict of `(M, S)` tensors (`M = len(means)`, `S = len(stds)`): `share` (the
    `window_share` of the support profile; with `tokens="iid"` and `window=1`, the share on the
    query's own key), `support_size`, `entropy` (softmax, nats), `softmax_share` (the softmax
    mass on the same keys: the share asked of softmax, not of the sparsemax support), `kappa`
    (`m / sqrt(m^2 + s^2)`, NaN where both are 0), `mean`, `std`; and `profile`, `(M, S, T)`.
    """
    m = _as_grid(means, "means")
    s = _as_grid(stds, "stds")
    if bool((s < 0).any()):
        raise ValueError("stds must be >= 0")
    d = check_positive_int(d, "d")
    g = _generator(seed)
    z0 = standard_spectrum(d, seed=_child_seed(g))  # (d,)
    lam = m[:, None, None] + s[None, :, None] * z0  # (M, S, d)
    stats = support_statistics(torch.diag_embed(lam), T, n_samples, tokens=tokens, scale=scale, seed=_child_seed(g))
    M, S = lam.shape[:2]
    mm, ss = m[:, None].expand(M, S), s[None, :].expand(M, S)
    r = (mm**2 + ss**2).sqrt()
    return {
        "share": window_share(stats["profile"], window),
        "support_size": stats["support_size"],
        "entropy": stats["entropy"],
        "softmax_share": window_share(stats["softmax_profile"], window),
        "profile": stats["profile"],
        "kappa": torch.where(r > 0, mm / r.clamp_min(1e-300), torch.full_like(r, float("nan"))),
        "mean": mm.clone(),
        "std": ss.clone(),
    }


def collapse_curves(
    ds: Sequence[int],
    kappas: Sequence[float] | Tensor,
    T: int,
    n_samples: int,
    window: int,
    r: float = 1.0,
    seeds: Sequence[int] = (0, 1, 2),
    tokens: TokenModel = "random_walk",
) -> dict[str, Tensor]:
    """Localization against `sqrt(d) * kappa` for several widths: the course's collapse test.

    Chapter 7 (the course's own derivation): at fixed `T` and logit scale, the course's
    derivation predicts that how localized the support is depends on `d`, `m`, `s` only through
    `sqrt(d) * kappa`. For each width `d` and concentration `kappa` in `[0, 1]` the spectrum
    has mean `m = r kappa` and sd `s = r sqrt(1 - kappa^2)`, so its scale `sqrt(m^2 + s^2) = r`
    is held fixed; logits use the default scale `1/sqrt(d)`, which keeps their noise the same
    for every `d`.

    Returns `x`: `(D, K)` the values `sqrt(d) * kappa`; `share`: `(n_seeds, D, K)` the
    `window_share` of the support profile per seed; `support_size`: `(n_seeds, D, K)`.
    """
    k = _as_grid(kappas, "kappas")
    if bool(((k < 0) | (k > 1)).any()):
        raise ValueError("kappas must lie in [0, 1]")
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"r must be finite and positive, got {r}")
    ds = [check_positive_int(d, "d") for d in ds]
    if not ds or not seeds:
        raise ValueError("ds and seeds must be non-empty")
    means, stds = r * k, r * (1 - k**2).clamp_min(0).sqrt()
    share = torch.zeros(len(seeds), len(ds), len(k), dtype=torch.float64)
    size = torch.zeros_like(share)
    for a, seed in enumerate(seeds):
        for b, d in enumerate(ds):
            g = _generator(1_000_003 * int(seed) + d)
            z0 = standard_spectrum(d, seed=_child_seed(g))
            lam = means[:, None] + stds[:, None] * z0  # (K, d)
            stats = support_statistics(torch.diag_embed(lam), T, n_samples, tokens=tokens, seed=_child_seed(g))
            share[a, b] = window_share(stats["profile"], window)
            size[a, b] = stats["support_size"]
    x = torch.tensor([math.sqrt(d) for d in ds], dtype=torch.float64)[:, None] * k[None, :]
    return {"x": x, "share": share, "support_size": size}


def curve_spread(x: Tensor, y: Tensor, n_points: int = 50) -> dict[str, Tensor | float]:
    """How far apart several curves `y_i(x)` lie where their `x` ranges overlap.

    Args:
        x, y: `(D, K)`, one curve per row, `x` increasing along each row.
        n_points: points of the common grid.

    Returns `grid`: `(n_points,)` over the overlap of the `x` ranges; `spread`: `(n_points,)`,
    `max_i y_i - min_i y_i` after linear interpolation; `max`: its largest value (a float).
    A single curve has spread 0.
    """
    x = as_float_tensor(x, "x", ndim=2)
    y = as_float_tensor(y, "y", ndim=2)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (D, K), got {tuple(x.shape)} and {tuple(y.shape)}")
    if bool((x.diff(dim=1) <= 0).any()):
        raise ValueError("x must be strictly increasing along each row")
    lo, hi = float(x[:, 0].max()), float(x[:, -1].min())
    if lo > hi:
        raise ValueError(f"the curves' x ranges do not overlap (common range would be [{lo}, {hi}])")
    grid = np.linspace(lo, hi, check_positive_int(n_points, "n_points"))
    ys = np.stack([np.interp(grid, xr.numpy(), yr.numpy()) for xr, yr in zip(x.double(), y.double())])
    spread = torch.from_numpy(ys.max(0) - ys.min(0))
    return {"grid": torch.from_numpy(grid), "spread": spread, "max": float(spread.max())}
