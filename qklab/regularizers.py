"""Penalties and reparametrisations acting on the query-key matrices (chapters 4 and 10).

What is here:

- LocAteR penalties (chapter 10, its Theory section), by name, from the trace identities of
  `qklab.spectrum.QK` (no eigendecomposition, differentiable, `O(d d_h^2)` per head), summed
  over heads and layers, with the normaliser `n` explicit (`over="d"`, the default, or "d_h"):

  ===========================  ============================================================
  form                          penalty per head (`W = W_Q W_K^T`, `m = tr(W)/n`)
  ===========================  ============================================================
  ``"variance"`` (default)      `||W||_F^2/n - m^2`  (= `||W - m I||_F^2 / d` for `n = d`)
  ``"scale"``                   `||W||_F^2/n + mean_weight * (m - m_0)^2`, `m_0` the mean to hold
  ``"symmetric"``               `||W_sym||_F^2/n - m^2`, `W_sym = (W + W^T)/2`
  ``"frobenius"``               `||W||_F^2/n`  -- not LocAteR: the size control of chapter 10
  ``"unsafe_trace_variance"``   `tr(W^2)/n - m^2`  -- UNBOUNDED BELOW, for the failure demo only
  ===========================  ============================================================

  The default is bounded below by 0: for symmetric `W` it equals the eigenvalue variance, and
  for any `W` it bounds the eigenvalue spread `sum |lambda_i - m|^2 / n` from above (Schur).
  `tr(W^2)/n - m^2` counts the antisymmetric part of `W` with a minus sign, so as a penalty it is
  minimised by inflating that part without limit: attention turns one-hot, the very collapse
  LocAteR is meant to prevent. It is offered only under the name "unsafe_trace_variance" (and
  warns) so that chapter 10 can show it failing. The "symmetric" form is bounded but can be
  escaped the same way, more slowly (the antisymmetric part is free).

  "frobenius" is the variance form without its `- m^2`: it penalises the size of `W_QK`, mean
  included. From a start whose mean is near 0 the two are nearly the same penalty; from a start
  with a large mean (mimetic initialisation) they differ, which is what lets chapter 10 ask
  whether penalising the *spread* does anything that penalising the *size* does not.

  Bao, Hataya and Karakida (ICML 2024) describe LocAteR as shrinking the scale of the QK
  eigenspectrum while keeping its mean; their exact parametrisation may differ from these forms,
  which are the course's own. Only "scale" holds the mean; the default
  "variance" shrinks the spread and leaves the mean free (from a start with mean near 0 it pulls
  `W` towards 0 as a whole).
- `SigmaReparam` (Zhai et al. 2023): `W_hat = gamma / sigma(W) * W`, with `sigma` the spectral
  norm estimated by one power-iteration step per training step and `gamma` a learned scalar.
  `ModelConfig(sigma_reparam=True)` puts it on every query and key projection.
- `qk_weight_decay`: the naive baseline `sum ||W_Q||_F^2 + ||W_K||_F^2` (decoupled AdamW
  weight decay on all matrices is `TrainConfig(weight_decay=...)` in `qklab.train`).

What is not here: the statistics themselves (`qklab.spectrum`), the training loop (`qklab.train`).
"""

from __future__ import annotations

import warnings
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qklab.spectrum import QK

__all__ = [
    "LOCATER_FORMS",
    "HasQK",
    "locater_per_head",
    "locater_penalty",
    "qk_weight_decay",
    "SigmaReparam",
]

LOCATER_FORMS = ("variance", "scale", "symmetric", "frobenius", "unsafe_trace_variance")
Over = Literal["d", "d_h"]


class HasQK(Protocol):
    """What the penalties need of a model (`qklab.model.Transformer` has it; this module does not
    import the model, which imports `SigmaReparam` from here): every head's factors."""

    def qk(self) -> QK: ...

    @property
    def W_Q(self) -> Tensor: ...

    @property
    def W_K(self) -> Tensor: ...


def _check_form(form: str) -> None:
    if form not in LOCATER_FORMS:
        raise ValueError(f"LocAteR form must be one of {LOCATER_FORMS}, got {form!r}")


def locater_per_head(
    qk: QK,
    form: str = "variance",
    over: Over = "d",
    target_mean: Tensor | float | None = None,
    mean_weight: float = 1.0,
) -> Tensor:
    """LocAteR penalty of every head of `qk`, shape `qk.W_Q.shape[:-2]` (see the module table).

    Args:
        qk: the heads' query-key matrices.
        form: "variance" (default), "scale", "symmetric", "frobenius" (the size control) or
            "unsafe_trace_variance".
        over: normaliser `n`: "d" (all eigenvalues, zeros included) or "d_h" (the core).
        target_mean: for "scale", the eigenvalue mean `m_0` to hold (broadcast to the heads).
            Required for that form: the training loop uses each head's mean at initialisation.
        mean_weight: for "scale", the weight `mu` of `(m - m_0)^2`. The penalty alone is minimised
            over `W = cI` at `c = mu m_0 / (1 + mu)`, so a large `mu` holds the mean closer to `m_0`
            (chapter 10 uses `mu = 10`).
    """
    _check_form(form)
    n = qk.d if over == "d" else qk.d_h if over == "d_h" else None
    if n is None:
        raise ValueError(f"over must be 'd' or 'd_h', got {over!r}")
    m = qk.trace() / n
    if form == "variance":
        return qk.fro_sq() / n - m**2
    if form == "scale":
        if target_mean is None:
            raise ValueError("LocAteR form 'scale' holds the eigenvalue mean at target_mean; pass target_mean")
        return qk.fro_sq() / n + mean_weight * (m - target_mean) ** 2
    if form == "symmetric":
        sym_fro_sq = (qk.fro_sq() + qk.trace_sq()) / 2  # ||(W + W^T)/2||_F^2
        return sym_fro_sq / n - m**2
    if form == "frobenius":
        return qk.fro_sq() / n
    return qk.trace_sq() / n - m**2  # "unsafe_trace_variance": unbounded below


def locater_penalty(
    model: HasQK,
    form: str = "variance",
    over: Over = "d",
    target_mean: Tensor | None = None,
    mean_weight: float = 1.0,
) -> Tensor:
    """LocAteR penalty of a model, summed over layers and heads (multiply by the strength yourself).

    `loss_total = loss + rho * locater_penalty(model, form, over)`, `rho` the strength. `target_mean` (form
    "scale") is `(n_layers, n_heads)`; `qklab.train` takes it from the model at initialisation.
    """
    _check_form(form)
    if form == "unsafe_trace_variance":
        warnings.warn(
            "LocAteR form 'unsafe_trace_variance' (tr(W^2)/n - m^2) is unbounded below for non-symmetric "
            "W_QK: training will inflate the antisymmetric part and collapse attention. Use form='variance'.",
            RuntimeWarning,
            stacklevel=2,
        )
    qk = model.qk()  # W_Q, W_K: (L, H, d, d_h)
    return locater_per_head(qk, form, over, target_mean, mean_weight).sum()


def qk_weight_decay(model: HasQK) -> Tensor:
    """Naive baseline: `sum over layers and heads of ||W_Q||_F^2 + ||W_K||_F^2`.

    It shrinks the scale of `W_QK` *and* its mean, unlike LocAteR's "variance" form (which only
    penalises the spread) and its "scale" form (which holds the mean near `m_0`).
    """
    return model.W_Q.pow(2).sum() + model.W_K.pow(2).sum()


class SigmaReparam(nn.Module):
    """sigma-Reparam of one weight matrix (Zhai et al. 2023): `W_hat = gamma / sigma(W) * W`.

    `sigma(W) = u^T W v` with `u`, `v` (buffers) the power-iteration estimates of the top singular
    vectors; `forward(W, update=True)` first runs one power-iteration step `v <- W^T u / |.|`,
    `u <- W v / |.|` (no gradient through `u`, `v`). Gradients flow through `W` and `gamma`.

    `reset(W)` converges `u`, `v` on the initial `W` and sets `gamma = sigma(W)`, so that the
    initial `W_hat` equals `W` and a run with sigma-Reparam starts from the same function as
    one without (our choice, which makes the comparison of chapter 4 clean).
    """

    def __init__(self, out_features: int, in_features: int) -> None:
        super().__init__()
        self.register_buffer("u", F.normalize(torch.ones(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.ones(in_features), dim=0))
        self.gamma = nn.Parameter(torch.ones(()))

    @torch.no_grad()
    def reset(self, W: Tensor, generator: torch.Generator | None = None, iters: int = 100) -> None:
        u = torch.randn(self.u.shape, generator=generator, dtype=W.dtype)
        self.u.copy_(F.normalize(u, dim=0))
        for _ in range(iters):
            self.power_step(W)
        self.gamma.fill_(float(self.sigma(W)))

    @torch.no_grad()
    def power_step(self, W: Tensor) -> None:
        """One power-iteration step on `W (out, in)`, updating the buffers `u`, `v` in place."""
        v = F.normalize(W.detach().t() @ self.u, dim=0)  # (in,)
        u = F.normalize(W.detach() @ v, dim=0)  # (out,)
        self.v.copy_(v)
        self.u.copy_(u)

    def sigma(self, W: Tensor) -> Tensor:
        """The spectral-norm estimate `u^T W v` (differentiable in `W`)."""
        return self.u @ (W @ self.v)

    def forward(self, W: Tensor, update: bool = False) -> Tensor:
        if update:
            self.power_step(W)
        return W * (self.gamma / self.sigma(W))
