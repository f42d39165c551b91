"""The query-key matrix `W_QK = W_Q W_K^T` as one object, and matrices with a chosen spectrum.

Chapter 6 (`chapters/06_qk_eigenspectrum`) derives everything here. `QK` keeps the two factors
and never forms the `d x d` product unless asked (`.matrix`). Its statistics come from trace
identities on small `d_h x d_h` matrices, cost `O(d d_h^2)`, need no eigendecomposition and are
differentiable, so they can sit inside a training loss (LocAteR, `qklab.regularizers`)::

    tr(W_QK)        = <W_Q, W_K>_F                        (sum of eigenvalues)
    tr(W_QK^2)      = tr((W_K^T W_Q)^2)                   (sum of squared eigenvalues; real)
    ||W_QK||_F^2    = tr((W_Q^T W_Q)(W_K^T W_K))          (>= sum |lambda_i|^2, Schur)

The non-zero eigenvalues of `W_QK` are those of the `d_h x d_h` core `W_K^T W_Q`; the other
`d - d_h` are zero. The normaliser `n` of every per-eigenvalue statistic is explicit:
`over="d"` (all `d` eigenvalues, zeros included; the default) or `over="d_h"` (the core).

Not here: where `W_Q`, `W_K` come from in a model (`qklab.model`), and the penalties built from
these statistics (`qklab.regularizers`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from qklab._validate import as_float_tensor, check_positive_int

__all__ = ["QK", "qk_with_spectrum", "random_qk", "factor_qk", "haar_orthogonal"]

Over = Literal["d", "d_h"]


class QK:
    """The factored query-key matrix `W_QK = W_Q W_K^T` of one head or a stack of heads.

    Args:
        W_Q, W_K: `(..., d, d_h)`; leading dimensions index heads (and layers). The score
            convention is `x_i^T W_QK x_j`, with the `1/sqrt(d_h)` temperature *not* included.
        validate: check dtypes, shapes and finiteness (default). A model passes `False` for
            its own weights: their shapes are right by construction, and skipping the
            finiteness check avoids a host sync every training step and works under
            `torch.vmap` (non-finite weights are caught by the training loop's loss check).

    Statistics return one value per head, shape `(...)`. With `n` the normaliser (`over`):
    `mean m = tr(W)/n`; `variance` (default `kind="bound"`) `||W||_F^2/n - m^2`, which for
    `n = d` equals `||W - m I||_F^2 / d`. It is never negative, equals the eigenvalue variance
    when `W` is symmetric (and `n = d`), and bounds `sum |lambda_i - m|^2 / n` over the `n`
    eigenvalues counted from above otherwise (Schur's inequality); `kind="trace"` gives
    `tr(W^2)/n - m^2`, exact for symmetric `W` but possibly negative for non-symmetric `W`
    (a measurement, never a penalty: see chapter 10); `scale r = sqrt(||W||_F^2 / n)`;
    `kappa = m / r = m / sqrt(m^2 + variance)`.
    """

    def __init__(self, W_Q: Tensor, W_K: Tensor, validate: bool = True) -> None:
        if validate:
            W_Q = as_float_tensor(W_Q, "W_Q", min_ndim=2)
            W_K = as_float_tensor(W_K, "W_K", min_ndim=2)
            if W_Q.shape != W_K.shape:
                raise ValueError(f"W_Q and W_K must have the same shape (..., d, d_h), got {tuple(W_Q.shape)} and {tuple(W_K.shape)}")
            if W_Q.shape[-1] > W_Q.shape[-2]:
                raise ValueError(f"expected d_h <= d for W_Q of shape (..., d, d_h), got {tuple(W_Q.shape)}")
        self.W_Q = W_Q
        self.W_K = W_K

    @property
    def d(self) -> int:
        return self.W_Q.shape[-2]

    @property
    def d_h(self) -> int:
        return self.W_Q.shape[-1]

    def __repr__(self) -> str:
        return f"QK(d={self.d}, d_h={self.d_h}, heads={tuple(self.W_Q.shape[:-2])})"

    def _n(self, over: Over) -> int:
        if over == "d":
            return self.d
        if over == "d_h":
            return self.d_h
        raise ValueError(f"over must be 'd' (all eigenvalues) or 'd_h' (the non-zero core), got {over!r}")

    # --- the matrices -----------------------------------------------------------------------
    @property
    def matrix(self) -> Tensor:
        """`W_Q W_K^T`, `(..., d, d)`. Forms the full product: for analysis, not training."""
        return self.W_Q @ self.W_K.transpose(-2, -1)

    @property
    def core(self) -> Tensor:
        """`W_K^T W_Q`, `(..., d_h, d_h)`: same non-zero eigenvalues as `W_QK`."""
        return self.W_K.transpose(-2, -1) @ self.W_Q

    def symmetric(self) -> Tensor:
        """The symmetric part `(W + W^T)/2`, `(..., d, d)`; it alone sets `x^T W x`."""
        W = self.matrix
        return (W + W.transpose(-2, -1)) / 2

    # --- spectrum ---------------------------------------------------------------------------
    def eigenvalues(self, nonzero_only: bool = False) -> Tensor:
        """Complex eigenvalues, from the `d_h x d_h` core (`O(d_h^3)`, not `O(d^3)`).

        Returns `(..., d_h)` if `nonzero_only` (the core's eigenvalues; some may still be 0
        if `W_QK` has rank below `d_h`), else `(..., d)` with `d - d_h` zeros appended.
        """
        lam = torch.linalg.eigvals(self.core)
        if nonzero_only or self.d == self.d_h:
            return lam
        zeros = lam.new_zeros(*lam.shape[:-1], self.d - self.d_h)
        return torch.cat([lam, zeros], dim=-1)

    def trace(self) -> Tensor:
        """`tr(W_QK) = <W_Q, W_K>_F`, the sum of the eigenvalues."""
        return (self.W_Q * self.W_K).sum(dim=(-2, -1))

    def trace_sq(self) -> Tensor:
        """`tr(W_QK^2) = tr(C^2)` with `C = W_K^T W_Q`; real, the sum of squared eigenvalues."""
        C = self.core
        return (C * C.transpose(-2, -1)).sum(dim=(-2, -1))  # tr(C C) = sum_ij C_ij C_ji

    def fro_sq(self) -> Tensor:
        """`||W_QK||_F^2 = tr((W_Q^T W_Q)(W_K^T W_K))`."""
        G_Q = self.W_Q.transpose(-2, -1) @ self.W_Q  # (..., d_h, d_h)
        G_K = self.W_K.transpose(-2, -1) @ self.W_K  # (..., d_h, d_h)
        return (G_Q * G_K).sum(dim=(-2, -1))  # both symmetric: tr(G_Q G_K) = <G_Q, G_K>_F

    def antisymmetric_fro_sq(self) -> Tensor:
        """`||(W - W^T)/2||_F^2 = (||W||_F^2 - tr(W^2)) / 2`: how far `W_QK` is from symmetric."""
        return (self.fro_sq() - self.trace_sq()) / 2

    def mean(self, over: Over = "d") -> Tensor:
        """Eigenvalue mean `m = tr(W_QK) / n`."""
        return self.trace() / self._n(over)

    def second_moment(self, over: Over = "d") -> Tensor:
        """`tr(W_QK^2) / n`, the mean of the squared eigenvalues (real, can be negative)."""
        return self.trace_sq() / self._n(over)

    def variance(self, over: Over = "d", kind: Literal["bound", "trace"] = "bound") -> Tensor:
        """Eigenvalue spread around the mean; see the class docstring for the two kinds."""
        m = self.mean(over)
        if kind == "bound":
            return self.fro_sq() / self._n(over) - m**2
        if kind == "trace":
            return self.second_moment(over) - m**2
        raise ValueError(f"kind must be 'bound' or 'trace', got {kind!r}")

    def scale(self, over: Over = "d") -> Tensor:
        """Spectrum scale `r = sqrt(||W_QK||_F^2 / n)` (the root mean square of `|lambda|` for symmetric `W`)."""
        return (self.fro_sq() / self._n(over)).sqrt()

    def kappa(self, over: Over = "d") -> Tensor:
        """Concentration `kappa = m / r` in `[-1, 1]`: 1 for `W = c I`, 0 for a zero-mean spectrum."""
        return self.mean(over) / self.scale(over)

    def spectral_norm(self) -> Tensor:
        """`||W_QK||_2`, through QR factors (`O(d d_h^2)`): `||R_Q R_K^T||_2`."""
        R_Q = torch.linalg.qr(self.W_Q, mode="reduced").R  # (..., d_h, d_h)
        R_K = torch.linalg.qr(self.W_K, mode="reduced").R
        return torch.linalg.matrix_norm(R_Q @ R_K.transpose(-2, -1), ord=2)

    def stats(self, over: Over = "d") -> dict[str, Tensor]:
        """All the cheap statistics at once, each of shape `(...)`."""
        return {
            "mean": self.mean(over),
            "variance": self.variance(over, "bound"),
            "trace_variance": self.variance(over, "trace"),
            "scale": self.scale(over),
            "kappa": self.kappa(over),
            "spectral_norm": self.spectral_norm(),
            "antisymmetric_fro_sq": self.antisymmetric_fro_sq(),
        }


# --- matrices with a prescribed spectrum -------------------------------------------------------

def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def haar_orthogonal(d: int, seed: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random `d x d` orthogonal matrix (QR of a Gaussian matrix, signs fixed by `diag R`)."""
    d = check_positive_int(d, "d")
    G = torch.randn(d, d, generator=_generator(seed), dtype=dtype)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R)).unsqueeze(0)  # flips column j by sign(R_jj)


def qk_with_spectrum(eigenvalues: Tensor, seed: int | None = None) -> Tensor:
    """A symmetric `d x d` matrix `U diag(eigenvalues) U^T` with a Haar-random basis `U`.

    Chapter 6: builds `W_QK` with exactly the requested (real) eigenvalues, `d = len(eigenvalues)`.
    Computed in float64; returns the dtype of `eigenvalues` when it is floating point.
    """
    lam = as_float_tensor(eigenvalues, "eigenvalues", ndim=1)
    if lam.is_complex():
        raise TypeError("eigenvalues must be real: qk_with_spectrum builds a symmetric matrix")
    U = haar_orthogonal(lam.shape[0], seed=seed)
    W = (U * lam.to(torch.float64)) @ U.T  # U diag(lam) U^T
    W = (W + W.T) / 2  # exact symmetry despite rounding
    return W.to(lam.dtype)


def random_qk(
    d: int, mean: float, std: float, seed: int | None = None, exact: bool = False, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A symmetric `d x d` matrix whose eigenvalues are drawn i.i.d. from `N(mean, std^2)`.

    With `exact=True` the drawn eigenvalues are shifted and rescaled so that their sample mean
    is exactly `mean` and their (population) standard deviation exactly `std`.
    """
    d = check_positive_int(d, "d")
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        raise ValueError(f"mean must be finite and std finite and >= 0, got mean={mean}, std={std}")
    g = _generator(seed)
    z = torch.randn(d, generator=g, dtype=torch.float64)
    if exact:
        z = z - z.mean()
        sd = z.pow(2).mean().sqrt()
        z = z / sd if d > 1 and float(sd) > 0 else torch.zeros_like(z)
    lam = mean + std * z
    basis_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return qk_with_spectrum(lam, seed=basis_seed).to(dtype)


def factor_qk(W: Tensor, d_h: int | None = None) -> tuple[Tensor, Tensor]:
    """Factor `W` (`(..., d, d)`) into `W_Q, W_K` (`(..., d, d_h)`) with `W_Q W_K^T ~ W`.

    Uses the SVD `W = U S V^T`: `W_Q = U_r S_r^{1/2}`, `W_K = V_r S_r^{1/2}` with the `r = d_h`
    largest singular values, so `W_Q W_K^T` is the best rank-`d_h` approximation of `W`
    (exact when `d_h >= rank W`). This is how a prescribed `W_QK` is loaded into a model
    head; chapter 9 shows how truncation to `d_h < d` changes the spectrum.
    """
    W = as_float_tensor(W, "W", min_ndim=2)
    d = W.shape[-1]
    if W.shape[-2] != d:
        raise ValueError(f"W must be square (..., d, d), got shape {tuple(W.shape)}")
    d_h = d if d_h is None else check_positive_int(d_h, "d_h")
    if d_h > d:
        raise ValueError(f"d_h = {d_h} cannot exceed d = {d}")
    U, S, Vh = torch.linalg.svd(W)
    root = S[..., :d_h].sqrt().unsqueeze(-2)  # (..., 1, d_h)
    W_Q = U[..., :, :d_h] * root  # (..., d, d_h)
    W_K = Vh[..., :d_h, :].transpose(-2, -1) * root  # (..., d, d_h)
    return W_Q, W_K
