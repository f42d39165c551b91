"""The course's own localization model: random-walk tokens, sparsemax support, signal-to-noise.

Chapter 7 (`chapters/07_localization`). Bao, Hataya and Karakida (ICML 2024) analyse one-layer
attention with tokens from a random walk and softmax replaced by a piecewise-linear
approximation, so that a key passes signal only when it is in the support; the probability of
that is its *signal propagation probability*. The course uses sparsemax as that map (its own
choice: the paper's exact approximation is not quoted here). This module estimates that probability by Monte
Carlo (`propagation_probability`) and gives the closed form that the course derives itself
(chapter 7, Theory; *not* a formula quoted from the paper)::

    random-walk tokens x_t = x_{t-1} + e_t, e_t ~ N(0, I_d); symmetric W, eigenvalue mean m, sd s
    logit z_tau = x_tau^T W x_T;   E z_tau = tau d m;   Var z_tau = tau (T + tau) d (m^2 + s^2)
    SNR(tau) = E z / sd z = sqrt(d) * kappa * sqrt(tau / (T + tau)),   kappa = m / sqrt(m^2 + s^2)

For i.i.d. Gaussian tokens only the query's own key has a non-zero mean logit:
`SNR(T) = sqrt(d/2) * kappa`, and `SNR(tau) = 0` for `tau < T`.

For a general, not necessarily symmetric `W` (chapter 7's hard exercise), the same steps give
`E sqrt(d) z_tau = tau tr W` and
`Var sqrt(d) z_tau = tau^2 (tr(W^2) + ||W||_F^2) + tau (T - tau) ||W||_F^2`
(`predicted_snr_general`); for symmetric `W` this is the formula above. `snr_with_error` gives
a Monte Carlo estimate of an SNR with its standard error (delta method, no Gaussian assumption).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from qklab._validate import as_float_tensor, check_positive_int
from qklab.attention import sparsemax
from qklab.spectrum import QK

__all__ = [
    "predicted_snr_general",
    "snr_with_error",
    "random_walk_tokens",
    "gaussian_tokens",
    "propagation_probability",
    "predicted_snr",
    "kappa",
    "recent_share",
]

TokenModel = Literal["random_walk", "iid"]


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed)) if seed is not None else g.seed()
    return g


def gaussian_tokens(n: int, T: int, d: int, seed: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """`n` sequences of `T` i.i.d. `N(0, I_d)` tokens, `(n, T, d)`."""
    n, T, d = (check_positive_int(v, name) for v, name in ((n, "n"), (T, "T"), (d, "d")))
    return torch.randn(n, T, d, generator=_generator(seed), dtype=dtype)


def random_walk_tokens(n: int, T: int, d: int, seed: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """`n` random walks of `T` steps in `R^d`, `(n, T, d)`: `x_t = x_{t-1} + e_t`, `x_1 = e_1`.

    Position `t` (1-based) has `x_t ~ N(0, t I_d)`; nearby tokens are similar, which is what
    lets a concentrated spectrum localize attention near the query.
    """
    return gaussian_tokens(n, T, d, seed=seed, dtype=dtype).cumsum(dim=1)  # (n, T, d)


def _as_square_matrix(W: Tensor | QK) -> Tensor:
    if isinstance(W, QK):
        W = W.matrix
    W = as_float_tensor(W, "W", ndim=2)
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square (d, d) matrix, got shape {tuple(W.shape)}")
    return W


def propagation_probability(
    W: Tensor | QK,
    T: int,
    n_samples: int,
    tokens: TokenModel = "random_walk",
    seed: int | None = None,
    scale: float | None = None,
    chunk: int = 512,
) -> Tensor:
    """Monte Carlo signal propagation probability per key position, `(T,)` (chapter 7).

    For each of `n_samples` sequences the last token `x_T` is the query; the logits
    `z_tau = scale * x_tau^T W x_T` over keys `tau = 1..T` go through sparsemax, and entry
    `tau - 1` of the result is the fraction of sequences in which key `tau` is in the support.

    Args:
        W: `(d, d)` query-key matrix (or a `QK`).
        T: sequence length; n_samples: number of sequences.
        tokens: `"random_walk"` or `"iid"` (Gaussian).
        scale: logit multiplier, default `1/sqrt(d)`.
        chunk: sequences per batch. It bounds memory; each chunk draws its own seed from `seed`,
            so the exact numbers (not their distribution) change with it.
    """
    W = _as_square_matrix(W)
    T = check_positive_int(T, "T")
    n_samples = check_positive_int(n_samples, "n_samples")
    chunk = check_positive_int(chunk, "chunk")
    if tokens not in ("random_walk", "iid"):
        raise ValueError(f"tokens must be 'random_walk' or 'iid', got {tokens!r}")
    d = W.shape[0]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    make = random_walk_tokens if tokens == "random_walk" else gaussian_tokens
    g_seed = _generator(seed)
    W = W.to(torch.float64)
    counts = torch.zeros(T, dtype=torch.float64)
    done = 0
    while done < n_samples:
        n = min(chunk, n_samples - done)
        X = make(n, T, d, seed=int(torch.randint(0, 2**62, (1,), generator=g_seed)))  # (n, T, d)
        query = X[:, -1, :] @ W.T  # (n, d): W x_T for every sequence
        z = scale * (X @ query.unsqueeze(-1)).squeeze(-1)  # (n, T): z_tau = x_tau^T W x_T
        counts += (sparsemax(z) > 0).sum(dim=0)
        done += n
    return counts / n_samples


def kappa(mean: float, std: float) -> float:
    """Spectrum concentration `kappa = m / sqrt(m^2 + s^2)`: 1 concentrated, 0 zero-mean."""
    if std < 0 or not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(f"need finite mean and std >= 0, got mean={mean}, std={std}")
    if mean == 0 and std == 0:
        raise ValueError("kappa is undefined for the zero spectrum (mean = std = 0)")
    return mean / math.sqrt(mean**2 + std**2)


def predicted_snr(mean: float, std: float, d: int, T: int, tokens: TokenModel = "random_walk") -> Tensor:
    """The course's closed-form logit signal-to-noise ratio per key position, `(T,)` float64.

    Random walk: `sqrt(d) * kappa * sqrt(tau / (T + tau))` for `tau = 1..T` (chapter 7,
    Theory, our derivation). i.i.d.: `sqrt(d / 2) * kappa` at `tau = T`, 0 elsewhere.
    """
    d = check_positive_int(d, "d")
    T = check_positive_int(T, "T")
    k = kappa(mean, std)
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    if tokens == "random_walk":
        return math.sqrt(d) * k * (tau / (T + tau)).sqrt()
    if tokens == "iid":
        snr = torch.zeros(T, dtype=torch.float64)
        snr[-1] = math.sqrt(d / 2) * k
        return snr
    raise ValueError(f"tokens must be 'random_walk' or 'iid', got {tokens!r}")


def predicted_snr_general(W: Tensor | QK, T: int) -> Tensor:
    """SNR of the logits `z_tau = x_tau^T W x_T / sqrt(d)` for random-walk tokens and ANY square `W`.

    Chapter 7 (`chapters/07_localization`, the hard exercise): with `x_T = x_tau + u` (`u` the steps after the key),
    `E sqrt(d) z_tau = tau tr W` and `Var sqrt(d) z_tau = tau^2 (tr(W^2) + ||W||_F^2) +
    tau (T - tau) ||W||_F^2`, since `Var(g^T W g) = tr(W^2) + tr(W W^T)` for `g ~ N(0, I)`.
    Returns `(T,)` float64 for `tau = 1..T`. For symmetric `W` it equals `predicted_snr`.
    """
    M = _as_square_matrix(W).to(torch.float64)
    T = check_positive_int(T, "T")
    tau = torch.arange(1, T + 1, dtype=torch.float64)
    trace, trace_sq, fro_sq = torch.trace(M), torch.trace(M @ M), (M * M).sum()
    var = tau**2 * (trace_sq + fro_sq) + tau * (T - tau) * fro_sq  # (T,), never negative: tr(W^2) >= -||W||_F^2
    return tau * trace / var.sqrt()


def snr_with_error(samples: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """Monte Carlo signal-to-noise ratio `mean / sd` of `samples` along `dim`, and its standard error.

    The standard error is the delta method's, from the sample's own central moments (no Gaussian
    assumption): with `n` samples, mean `mu`, variance `v`, third and fourth central moments
    `mu_3`, `mu_4`, `se^2 = (1 - mu mu_3 / v^2 + mu^2 (mu_4 - v^2) / (4 v^3)) / n`.
    Chapter 7 compares the derivation with Monte Carlo in units of this error.
    """
    x = as_float_tensor(samples, "samples").to(torch.float64)
    n = x.shape[dim]
    if n < 10:
        raise ValueError(f"need at least 10 samples along dim {dim}, got {n}")
    mu = x.mean(dim, keepdim=True)
    c = x - mu
    v, mu3, mu4 = (c**2).mean(dim), (c**3).mean(dim), (c**4).mean(dim)
    mu = mu.squeeze(dim)
    snr = mu / v.sqrt()
    se = ((1 - mu * mu3 / v**2 + mu**2 * (mu4 - v**2) / (4 * v**3)) / n).clamp_min(0).sqrt()
    return snr, se


def recent_share(profile: Tensor, window: int) -> float:
    """Share of a support profile's total in its last `window` positions (1 = fully local)."""
    profile = as_float_tensor(profile, "profile", ndim=1)
    window = check_positive_int(window, "window")
    if window > profile.shape[0]:
        raise ValueError(f"window = {window} exceeds the profile length {profile.shape[0]}")
    total = float(profile.sum())
    if total <= 0:
        raise ValueError("profile sums to 0: no support anywhere")
    return float(profile[-window:].sum()) / total
