"""Chapter 7's explorer: the QK spectrum's mean and spread, and where attention goes.

Here: `SpectrumView` / `spectrum_view` (the pure data function: a symmetric `W_QK` of chosen
eigenvalue mean `m` and spread `s`, its causal softmax pattern, the sparsemax support profile of
the last query, entropy, support size and token residual), `spectrum_explorer` (a matplotlib
figure of it), `spectrum_widget` (live sliders, needs a kernel) and `spectrum_static` (a
precomputed grid with a plotly slider, for the book). Not here: the science
(`qklab.spectrum`, `qklab.localization`, `qklab.theory`); the plotly slider figure in general
(`qklab.explore.slider_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from qklab._validate import check_positive_int
from qklab.attention import pattern
from qklab.explore import slider_grid
from qklab.explore.common import TOKEN_LABEL, TokenModel, finite, fmt, interactive, linear_slider, log_slider, tokens_arg
from qklab.metrics import token_residual
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens, predicted_snr, random_walk_tokens, recent_share

__all__ = ["SpectrumView", "spectrum_view", "spectrum_explorer", "spectrum_widget", "spectrum_static"]


@dataclass(frozen=True)
class SpectrumView:
    """What the spectrum explorer shows for one setting (arrays are float64 numpy).

    `pattern`: `(T, T)` causal softmax pattern of one sequence (every query, not only the last);
    `profile`: `(T,)` Monte Carlo probability that key `tau = 1..T` is in the sparsemax support of
    the last query (the signal propagation probability); `snr`: `(T,)` the course's predicted
    logit signal-to-noise ratio (theory notes, section 6); `support`: mean support size (keys);
    `entropy`: mean softmax entropy of the last query's row, in nats (uniform: `log T`);
    `share`: share of the profile in the last `window` keys (`T // 8` for random walks, 1 for
    i.i.d. tokens: the query itself); `residual`, `residual_in`: relative token residual
    (composite norm) of the attention output `A X` and of `X`, mean over sequences;
    `kappa`: `m / sqrt(m^2 + s^2)` (NaN for the zero spectrum).
    """

    mean: float
    std: float
    scale: float
    tokens: str
    d: int
    T: int
    window: int
    pattern: np.ndarray
    profile: np.ndarray
    snr: np.ndarray
    support: float
    entropy: float
    share: float
    residual: float
    residual_in: float
    kappa: float


def spectrum_view(
    mean: float,
    std: float,
    scale: float = 1.0,
    tokens: TokenModel = "random_walk",
    d: int = 64,
    T: int = 64,
    n_samples: int = 200,
    n_maps: int = 16,
    seed: int = 0,
) -> SpectrumView:
    """Chapter 7: attention for a symmetric `W_QK` with eigenvalue mean `mean` and sd `std`.

    Chapter 7's setting: `W = scale * U diag(lambda) U^T` with `lambda` of exact mean `mean` and
    sd `std` (`qklab.spectrum.random_qk(exact=True)`), logits `z = x_tau^T W x_T / sqrt(d)` on
    unnormalised tokens (random walks, `|x_t|^2 ~ t d`, or i.i.d. `N(0, I_d)`). `scale`
    multiplies the whole spectrum: `kappa` stays, the logits grow. The same seed gives the same
    basis and tokens for every `(mean, std, scale)`, so turning one knob changes nothing else.
    Profile, support size and entropy come from `qklab.localization.support_statistics` over
    `n_samples` sequences; the residuals average `n_maps` sequences.
    """
    from qklab.localization import support_statistics

    mean = finite(mean, "mean")
    std = finite(std, "std", nonneg=True)
    scale = finite(scale, "scale", positive=True)
    tokens = tokens_arg(tokens)
    d, T, n_samples, n_maps = (check_positive_int(v, k) for v, k in ((d, "d"), (T, "T"), (n_samples, "n_samples"), (n_maps, "n_maps")))
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    W = scale * random_qk(d, mean, std, seed=seed, exact=True, dtype=torch.float64)  # (d, d)
    stats = support_statistics(W, T, n_samples, tokens=tokens, seed=seed + 1)
    make = random_walk_tokens if tokens == "random_walk" else gaussian_tokens
    X = make(n_maps, T, d, seed=seed + 2)  # (n_maps, T, d)
    A = pattern(X @ W @ X.transpose(-2, -1) / math.sqrt(d), causal=True)  # (n_maps, T, T)
    window = max(1, T // 8) if tokens == "random_walk" else 1
    degenerate = mean == 0 and std == 0
    profile = stats["profile"]
    return SpectrumView(
        mean=mean,
        std=std,
        scale=scale,
        tokens=tokens,
        d=d,
        T=T,
        window=window,
        pattern=A[0].numpy(),
        profile=profile.numpy(),
        snr=np.full(T, np.nan) if degenerate else predicted_snr(mean, std, d, T, tokens).numpy(),
        support=float(stats["support_size"]),
        entropy=float(stats["entropy"]),
        share=recent_share(profile, window),
        residual=float(token_residual(A @ X).mean()),
        residual_in=float(token_residual(X).mean()),
        kappa=float("nan") if degenerate else mean / math.sqrt(mean**2 + std**2),
    )


def spectrum_title(v: SpectrumView) -> list[str]:
    """The title's lines (each short enough for a phone): the setting, then what was measured."""
    where = f"the last {v.window} keys" if v.window > 1 else "the query itself"
    scale = "" if v.scale == 1 else f", spectrum × {fmt(v.scale)}"
    return [
        f"m = {fmt(v.mean)}, s = {fmt(v.std)}, s² = {fmt(v.std ** 2)}, κ = {fmt(v.kappa)}",
        f"√d κ = {fmt(math.sqrt(v.d) * v.kappa)}{scale}; {TOKEN_LABEL[v.tokens]}, d = {v.d}, T = {v.T}",
        f"last query: entropy {fmt(v.entropy)} nats (uniform {fmt(math.log(v.T))}),",
        f"support {fmt(v.support)} keys, {fmt(v.share)} of it on {where}",
        f"token residual of AX {fmt(v.residual)} (of X {fmt(v.residual_in)})",
    ]


def spectrum_explorer(mean: float = 0.01, std: float = 0.001, scale: float = 1.0, tokens: TokenModel = "random_walk", **kw: Any):
    """Chapter 7: matplotlib figure of `spectrum_view(...)`: attention map and support profile (6.6 in wide)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    v = spectrum_view(mean, std, scale, tokens, **kw)
    fig, (ax_map, ax_prof) = plt.subplots(1, 2, figsize=(6.6, 4.0), gridspec_kw={"width_ratios": [1, 1.2]}, layout="constrained")
    im = ax_map.imshow(v.pattern, norm=PowerNorm(0.5, vmin=0, vmax=1), cmap="viridis")
    fig.colorbar(im, ax=ax_map, label="weight (sqrt colour scale)", shrink=0.8)
    ax_map.set(title="attention weights $A$", xlabel="key position $j$", ylabel="query position $i$")
    tau = np.arange(1, v.T + 1)
    ax_prof.plot(tau, v.profile, "o-", ms=3, color="C3")
    ax_prof.set(ylim=(0, 1.05), xlabel=r"key position $\tau$ (query at $T$)", ylabel=r"P($\tau$ in sparsemax support)", title="support profile, last query")
    fig.suptitle("\n".join(spectrum_title(v)), fontsize=9)
    return fig


def spectrum_widget(mean: float = 0.01, std: float = 0.001, scale: float = 1.0, tokens: TokenModel = "random_walk", **kw: Any):
    """Chapter 7, live: sliders for the spectrum mean (linear, -1 to 1: zero and negative means
    included), the sd (log scale, 1e-4 to 10), the overall scale, and the token model.

    Displays a note on re-running the cell above the widget (a reopened notebook shows "Error
    displaying widget" until the cell runs again).
    """
    import ipywidgets
    import matplotlib.pyplot as plt

    def draw(mean: float, std: float, scale: float, tokens: str) -> None:
        spectrum_explorer(mean, std, scale, tokens, **kw)
        plt.show()

    return interactive(
        draw,
        mean=linear_slider(mean, -1.0, 1.0, 0.001, "mean m"),
        std=log_slider(std, 1e-4, 10, "sd s"),
        scale=log_slider(scale, 0.01, 100, "scale"),
        tokens=ipywidgets.Dropdown(options=[("random walk", "random_walk"), ("i.i.d. Gaussian", "iid")], value=tokens, description="tokens"),
    )


def spectrum_static(
    param: Literal["std", "mean", "scale"] = "std",
    values: Sequence[float] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
    start: float | None = None,
    **fixed: Any,
) -> slider_grid.StaticExplorer:
    """Chapter 7, static: `spectrum_view` on a grid of one parameter, with a plotly slider.

    `param` is the knob: by default the spectrum's sd `s` at mean `m = 0.01`, from a fully
    concentrated spectrum (`kappa = 1`) to a spread one (`kappa = 0.1`); `start` the value the
    slider opens at (default: the first); `fixed` are the other arguments of `spectrum_view`
    (e.g. `mean=0.1, tokens="iid"`). About 0.2 s per value with the defaults on a laptop CPU.
    """
    import plotly.graph_objects as go

    if param not in ("std", "mean", "scale"):
        raise ValueError(f"param must be 'std', 'mean' or 'scale', got {param!r}")
    if param in fixed:
        raise ValueError(f"{param!r} is the slider's parameter: give its values in `values`, not as a fixed argument")
    args = {"mean": 0.01, "std": 0.001, "scale": 1.0, **fixed}
    vals = [finite(x, "values") for x in slider_grid.grid(values, "values")]
    active = 0 if start is None else slider_grid.start_index(vals, start, "start")
    views = [spectrum_view(**{**args, param: x}) for x in vals]
    steps = []
    for v in views:
        tau = np.arange(1, v.T + 1)
        heat = go.Heatmap(
            z=slider_grid.rounded(v.pattern, 3), zmin=0, zmax=1, colorscale=slider_grid.sqrt_viridis(),
            colorbar=dict(title=dict(text="weight"), tickvals=[0, 0.1, 0.25, 0.5, 0.75, 1]), showlegend=False, name="weight",
        )
        prof = go.Scatter(x=tau, y=slider_grid.rounded(v.profile, 3), mode="lines+markers", marker=dict(size=4), line=dict(color="#d62728"), name="P(τ in support)")
        steps.append((fmt(getattr(v, param)), "<br>".join(spectrum_title(v)), [(heat, 1), (prof, 2)]))
    label = {"std": "eigenvalue sd s", "mean": "eigenvalue mean m", "scale": "spectrum scale"}[param]
    fig, narrow = slider_grid.slider_figure(steps, ["attention weights A", "sparsemax support, last query"], label, heat_col=1, active=active, legend=False)
    fig.update_yaxes(autorange="reversed", title_text="query position i", row=1, col=1)
    fig.update_xaxes(title_text="key position j", row=1, col=1)
    fig.update_xaxes(title_text="key position τ (query at T)", row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], title_text="P(τ in support)", row=1, col=2)
    return slider_grid.StaticExplorer(fig, views, "spectrum", narrow)
