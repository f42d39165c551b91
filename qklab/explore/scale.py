"""Chapters 1 and 5's explorer: the logit scale (or temperature θ) between the two collapses.

Here: `ScaleView` / `scale_view` (the pure data function: softmax of `logit scale × S` for random
scores, its pattern, normalised entropy and token residual, and both over a sweep of scales),
`scale_explorer` (a matplotlib figure), `scale_widget` (live, needs a kernel) and `scale_static`
(a precomputed grid with a plotly slider, for the book). The knob is the logit scale (chapter 5)
or the temperature θ = 1 / logit scale (chapter 1: `knob="temperature"`). Not here: the science
(`qklab.attention`, `qklab.metrics`); the plotly slider figure in general
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
from qklab.explore.common import LiveExplorer, finite, fmt, freeze_layout, grid_slider, one_two_five
from qklab.metrics import attention_entropy, token_residual
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens

__all__ = ["ScaleView", "scale_view", "scale_explorer", "scale_widget", "scale_static"]


@dataclass(frozen=True)
class ScaleView:
    """What the scale explorer shows. `scale` multiplies the logits (1/temperature).

    `pattern`: `(T, T)` softmax pattern of the first sequence at `scale`; `entropy`: mean entropy
    normalised by its uniform value (`log T`, or `log(i + 1)` per row when causal); `residual`:
    relative token residual of `A X`; `residual_in` that of `X`; `sweep`: the scales of the
    curves; `sweep_entropy`, `sweep_residual`: the same two measures over `sweep`.
    """

    scale: float
    mean: float
    std: float
    causal: bool
    d: int
    T: int
    pattern: np.ndarray
    entropy: float
    residual: float
    residual_in: float
    sweep: np.ndarray
    sweep_entropy: np.ndarray
    sweep_residual: np.ndarray


_DEFAULT_SWEEP = tuple(float(x) for x in np.logspace(-2, 2, 17))


def _scale_measures(S: torch.Tensor, X: torch.Tensor, scales: np.ndarray, causal: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Patterns `(k, n, T, T)`, mean normalised entropy `(k,)` and mean residual of `A X` `(k,)` at `k` scales."""
    c = torch.as_tensor(scales, dtype=S.dtype).reshape(-1, 1, 1, 1)  # (k, 1, 1, 1)
    A = pattern(c * S, causal=causal)  # (k, n, T, T): every scale in one batch
    H = attention_entropy(A, reduce="none", normalize="causal" if causal else "log_T")  # (k, n, T or T - 1)
    res = token_residual(A @ X)  # (k, n)
    return A, H.flatten(1).mean(dim=1).numpy(), res.mean(dim=1).numpy()


def scale_view(
    scale: float,
    mean: float = 0.0,
    std: float = 1.0,
    causal: bool = False,
    d: int = 32,
    T: int = 32,
    n_seq: int = 16,
    seed: int = 0,
    sweep: Sequence[float] = _DEFAULT_SWEEP,
) -> ScaleView:
    """Chapters 1 and 5: softmax of `scale * S` with `S = X W X^T / sqrt(d)`, i.i.d. Gaussian tokens.

    `W` is symmetric with eigenvalue mean `mean` and sd `std` (default: a zero-mean random
    `W_QK`). Small `scale` (high temperature) gives near-uniform rows, whose output `A X` has a
    small token residual (rank collapse, strongest without the causal mask); large `scale` gives
    near one-hot rows, entropy near 0 (entropy collapse).
    """
    scale = finite(scale, "scale", positive=True)
    mean = finite(mean, "mean")
    std = finite(std, "std", nonneg=True)
    d, T, n_seq = (check_positive_int(v, k) for v, k in ((d, "d"), (T, "T"), (n_seq, "n_seq")))
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    sweep_arr = np.asarray([finite(c, "sweep entries", positive=True) for c in sweep], dtype=np.float64)
    if sweep_arr.size == 0:
        raise ValueError("sweep must hold at least one scale")
    W = random_qk(d, mean, std, seed=seed, exact=True, dtype=torch.float64)  # (d, d)
    X = gaussian_tokens(n_seq, T, d, seed=seed + 1)  # (n_seq, T, d)
    S = X @ W @ X.transpose(-2, -1) / math.sqrt(d)  # (n_seq, T, T)
    A, H, res = _scale_measures(S, X, np.array([scale]), bool(causal))
    _, sweep_H, sweep_res = _scale_measures(S, X, sweep_arr, bool(causal))
    return ScaleView(
        scale=scale,
        mean=mean,
        std=std,
        causal=bool(causal),
        d=d,
        T=T,
        pattern=A[0, 0].numpy(),
        entropy=float(H[0]),
        residual=float(res[0]),
        residual_in=float(token_residual(X).mean()),
        sweep=sweep_arr,
        sweep_entropy=sweep_H,
        sweep_residual=sweep_res,
    )


Knob = Literal["scale", "temperature"]


def _check_knob(knob: str) -> str:
    if knob not in ("scale", "temperature"):
        raise ValueError(f"knob must be 'scale' (the logit scale) or 'temperature' (theta = 1 / logit scale), got {knob!r}")
    return knob


def scale_title(v: ScaleView, knob: Knob = "scale") -> list[str]:
    """The title's lines (each short enough for a phone): the knob, the setting, what was measured."""
    mask = "causal mask" if v.causal else "no mask"
    if knob == "scale":
        first = f"logits × {fmt(v.scale)} (temperature θ = {fmt(1 / v.scale)}), {mask}"
    else:
        first = f"temperature θ = {fmt(1 / v.scale)} (logits × {fmt(v.scale)}), {mask}"
    return [
        first,
        f"W_QK eigenvalues m = {fmt(v.mean)}, s = {fmt(v.std)}; d = {v.d}, T = {v.T}",
        f"entropy / uniform entropy: {fmt(v.entropy)}",
        f"token residual of AX {fmt(v.residual)} (of X {fmt(v.residual_in)})",
    ]


class _ScaleFigure:
    """Chapters 1 and 5's figure, made once and redrawn in place: attention map and the two
    collapses against the knob, with a line at the current value."""

    def __init__(self, v: ScaleView, knob: Knob) -> None:
        from matplotlib.colors import PowerNorm
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.6, 3.6), layout="constrained")
        ax_map, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
        self.image = ax_map.imshow(v.pattern, norm=PowerNorm(0.5, vmin=0, vmax=1), cmap="viridis")
        fig.colorbar(self.image, ax=ax_map, label="weight (sqrt colour scale)", shrink=0.8)
        ax_map.set(title="attention weights $A$", xlabel="key position $j$", ylabel="query position $i$")
        self.knob = knob
        x, here = self._x(v)
        (self.entropy,) = ax_curve.semilogx(x, v.sweep_entropy, "-", label="entropy / uniform")
        (self.residual,) = ax_curve.semilogx(x, v.sweep_residual, "-", label="token residual of $AX$")
        self.here = ax_curve.axvline(here, color="k", ls="--", lw=1, label="current value")
        if knob == "scale":
            ax_curve.set(xlabel=r"logit scale $1/\theta$", title="uniform (left) to one-hot (right)")
        else:
            ax_curve.set(xlabel=r"temperature $\theta$", title="one-hot (left) to uniform (right)")
        ax_curve.set(ylim=(0, 1.05), ylabel="value")
        ax_curve.legend(fontsize=8)
        self.title = fig.suptitle(self._title(v), fontsize=9)
        self.figure = fig

    def _x(self, v: ScaleView) -> tuple[np.ndarray, float]:
        return (v.sweep, v.scale) if self.knob == "scale" else (1 / v.sweep, 1 / v.scale)

    def _title(self, v: ScaleView) -> str:
        return "\n".join(scale_title(v, self.knob)).replace("W_QK", "$W_{QK}$")

    def update(self, v: ScaleView) -> None:
        x, here = self._x(v)
        self.image.set_data(v.pattern)
        self.entropy.set_data(x, v.sweep_entropy)
        self.residual.set_data(x, v.sweep_residual)
        self.here.set_xdata([here, here])
        self.title.set_text(self._title(v))


def scale_explorer(scale: float = 1.0, causal: bool = False, knob: Knob = "scale", **kw: Any):
    """Chapters 1 and 5: matplotlib figure of `scale_view(...)`: attention map and the two collapses.

    `knob="temperature"` draws the curves against the temperature `theta = 1/scale` (chapter 1's
    convention) instead of the logit scale (chapter 5's). 6.6 in wide; a
    `matplotlib.figure.Figure` not registered with pyplot.
    """
    _check_knob(knob)
    return _ScaleFigure(scale_view(scale, causal=causal, **kw), knob).figure


def scale_widget(scale: float = 1.0, causal: bool = False, knob: Knob = "scale", **kw: Any) -> LiveExplorer:
    """Chapters 1 and 5, live: a slider for the logit scale (or, with `knob="temperature"`, for the
    temperature `theta = 1/scale`; `scale` still gives the starting logit scale), on the 1-2-5
    series from 0.01 to 100, and a causal-mask switch. Each change redraws the figure in place
    (`LiveExplorer`); the notebook keeps the last figure as an image output."""
    import ipywidgets

    _check_knob(knob)
    scale = finite(scale, "scale", positive=True)
    fig = _ScaleFigure(scale_view(scale, causal=causal, **kw), knob)
    freeze_layout(fig.figure)

    def update(value: float, causal: bool) -> None:
        fig.update(scale_view(value if knob == "scale" else 1 / value, causal=causal, **kw))

    start, name = (scale, "logit scale 1/θ") if knob == "scale" else (1 / scale, "temperature θ")
    controls = {
        "value": grid_slider(one_two_five(0.01, 100.0), start, name),
        "causal": ipywidgets.Checkbox(value=bool(causal), description="causal mask"),
    }
    return LiveExplorer(controls, fig.figure, update)


def scale_static(
    values: Sequence[float] = tuple(float(x) for x in np.logspace(-2, 2, 9)),
    knob: Knob = "scale",
    start: float | None = None,
    **fixed: Any,
) -> slider_grid.StaticExplorer:
    """Chapters 1 and 5, static: `scale_view` over a grid, with a plotly slider.

    `values` are logit scales (`knob="scale"`) or temperatures `theta = 1/scale`
    (`knob="temperature"`); `start` the value the slider opens at (default: the one closest to 1
    on a log scale, where the two collapses are both in view); `fixed` are the other arguments of
    `scale_view` (e.g. `causal=True`).
    """
    import plotly.graph_objects as go

    _check_knob(knob)
    if "scale" in fixed:
        raise ValueError("'scale' is the slider's parameter: give its values in `values`")
    vals = [finite(x, "values", positive=True) for x in slider_grid.grid(values, "values")]
    if start is None:
        active = int(np.argmin([abs(math.log(x)) for x in vals]))
    else:
        active = slider_grid.start_index(vals, start, "start")
    views = [scale_view(c if knob == "scale" else 1 / c, **fixed) for c in vals]
    steps = []
    for value, v in zip(vals, views):
        x = v.sweep if knob == "scale" else 1 / v.sweep
        heat = go.Heatmap(
            z=slider_grid.rounded(v.pattern), zmin=0, zmax=1, colorscale=slider_grid.sqrt_viridis(),
            colorbar=dict(title=dict(text="weight"), tickvals=[0, 0.1, 0.25, 0.5, 0.75, 1]), showlegend=False, name="weight",
        )
        ent = go.Scatter(x=x, y=slider_grid.rounded(v.sweep_entropy), mode="lines", name="entropy / uniform", line=dict(color="#1f77b4"))
        res = go.Scatter(x=x, y=slider_grid.rounded(v.sweep_residual), mode="lines", name="token residual of AX", line=dict(color="#ff7f0e"))
        here = go.Scatter(x=[value, value], y=[0, 1.05], mode="lines", name="current value", line=dict(color="black", dash="dash"))
        title = "<br>".join(scale_title(v, knob)).replace("W_QK", "W<sub>QK</sub>")
        steps.append((fmt(value), title, [(heat, 1), (ent, 2), (res, 2), (here, 2)]))
    if knob == "scale":
        label, axis, panel = "logit scale 1/θ", "logit scale 1/θ", "uniform (left) to one-hot (right)"
    else:
        label, axis, panel = "temperature θ", "temperature θ", "one-hot (left) to uniform (right)"
    fig, narrow = slider_grid.slider_figure(steps, ["attention weights A", panel], label, heat_col=1, active=active)
    fig.update_yaxes(autorange="reversed", title_text="query position i", row=1, col=1)
    fig.update_xaxes(title_text="key position j", row=1, col=1)
    fig.update_xaxes(type="log", title_text=axis, exponentformat="power", row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], title_text="value", row=1, col=2)
    return slider_grid.StaticExplorer(fig, views, "temperature" if knob == "temperature" else "scale", narrow)
