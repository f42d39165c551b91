"""Chapter 7's explorer: the QK spectrum's mean and spread, and where attention goes.

Here: `SpectrumView` / `spectrum_view` (the pure data function: a symmetric `W_QK` of chosen
eigenvalue mean `m` and spread `s`, its causal softmax pattern, the sparsemax support profile of
the last query, entropy, support size and token residual), `spectrum_explorer` (a matplotlib
figure of it, the profile on a square-root axis), `spectrum_widget` (live: mean, spread as the
variance or the sd, scale, tokens and the chapter's cases as buttons; needs a kernel),
`spectrum_static_grid` (the book's: a precomputed grid of means and variances with two plotly
sliders) and `spectrum_static` (a precomputed grid of one parameter with one slider). Not here: the science
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
from qklab.explore.common import (
    TOKEN_LABEL,
    LiveExplorer,
    TokenModel,
    finite,
    fmt,
    freeze_layout,
    grid_slider,
    one_thread,
    one_two_five,
    signed_grid,
    tokens_arg,
)
from qklab.metrics import token_residual
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens, predicted_snr, random_walk_tokens, recent_share

__all__ = ["SpectrumView", "spectrum_view", "spectrum_explorer", "spectrum_widget", "spectrum_static", "spectrum_static_grid"]


@dataclass(frozen=True)
class SpectrumView:
    """What the spectrum explorer shows for one setting (arrays are float64 numpy).

    `pattern`: `(T, T)` causal softmax pattern of one sequence (every query, not only the last);
    `profile`: `(T,)` Monte Carlo probability that key `tau = 1..T` is in the sparsemax support of
    the last query (the signal propagation probability); `snr`: `(T,)` the course's predicted
    logit signal-to-noise ratio (chapter 7, Theory); `support`: mean support size (keys);
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


PROFILE_TICKS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def profile_axis(p: Any) -> Any:
    """Where a support probability is drawn on the profile's axis: `sqrt(p)` (0 at 0, 1 at 1).

    A square-root axis, like the attention map's square-root colour scale: chapter 7's zero-mean
    U-shaped profile (ends near 0.1, middle near 0.01) spans a quarter of the axis instead of a
    tenth, while a localized profile (near 1 next to the query) still fits.
    """
    return np.sqrt(np.clip(np.asarray(p, dtype=np.float64), 0.0, None))


def _profile_axis_inverse(y: Any) -> Any:
    return np.square(np.asarray(y, dtype=np.float64))


def spread_stops() -> list[tuple[float, float]]:
    """The spread slider's stops as `(sd s, variance s^2)` pairs, from 0 to `s = 10`.

    0 (kappa = 1), the 1-2-5 series of `s` from 1e-4 to 10 and that of `s^2` from 1e-8 to 100, so
    that the slider reaches the chapter's values in either unit (`s = 0.001, 0.02, 0.1, 1`;
    `s^2 = 1e-6, 1e-4, 0.01`) and switching the unit keeps the stop.
    """
    pairs = [(0.0, 0.0)] + [(s, s * s) for s in one_two_five(1e-4, 10.0)] + [(math.sqrt(v), v) for v in one_two_five(1e-8, 100.0)]
    pairs.sort()
    out: list[tuple[float, float]] = []
    for sd, var in pairs:
        if out and math.isclose(out[-1][0], sd, rel_tol=1e-9):
            continue
        out.append((sd, var))
    return out


def mean_stops() -> list[float]:
    """The mean slider's stops: 0 and the 1-2-5 series from 1e-4 to 2, both signs (29 stops)."""
    return signed_grid(1e-4, 2.0)


class _SpectrumFigure:
    """Chapter 7's figure, made once and redrawn in place: attention map and support profile."""

    def __init__(self, v: SpectrumView) -> None:
        from matplotlib.colors import PowerNorm
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.6, 4.0), layout="constrained")
        ax_map, ax_prof = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
        self.image = ax_map.imshow(v.pattern, norm=PowerNorm(0.5, vmin=0, vmax=1), cmap="viridis")
        fig.colorbar(self.image, ax=ax_map, label="weight (sqrt colour scale)", shrink=0.8)
        ax_map.set(title="attention weights $A$", xlabel="key position $j$", ylabel="query position $i$")
        tau = np.arange(1, v.T + 1)
        (self.line,) = ax_prof.plot(tau, v.profile, "o-", ms=3, color="C3")
        ax_prof.set_yscale("function", functions=(profile_axis, _profile_axis_inverse))
        ax_prof.set_yticks(PROFILE_TICKS, [fmt(t) for t in PROFILE_TICKS])
        ax_prof.set(
            ylim=(0, 1.05), xlabel=r"key position $\tau$ (query at $T$)",
            ylabel=r"P($\tau$ in sparsemax support), sqrt scale", title="support profile, last query",
        )
        ax_prof.grid(axis="y", lw=0.5, alpha=0.5)
        self.title = fig.suptitle("\n".join(spectrum_title(v)), fontsize=9)
        self.figure = fig
        self.T = v.T

    def update(self, v: SpectrumView) -> None:
        if v.T != self.T:
            raise ValueError("the figure was made for another T")
        self.image.set_data(v.pattern)
        self.line.set_ydata(v.profile)
        self.title.set_text("\n".join(spectrum_title(v)))


def spectrum_explorer(mean: float = 0.01, std: float = 0.001, scale: float = 1.0, tokens: TokenModel = "random_walk", **kw: Any):
    """Chapter 7: matplotlib figure of `spectrum_view(...)`: attention map and support profile (6.6 in wide).

    The profile's axis is a square-root scale (`profile_axis`). The figure is a
    `matplotlib.figure.Figure` not registered with pyplot (display it, or `fig.savefig`).
    """
    return _SpectrumFigure(spectrum_view(mean, std, scale, tokens, **kw)).figure


SPECTRUM_PRESETS = (
    ("m = 0.01, s = 0 (κ = 1)", dict(mean=0.01, std=0.0)),
    ("m = 0.01, s = 0.02", dict(mean=0.01, std=0.02)),
    ("m = 1, s = 0.1", dict(mean=1.0, std=0.1)),
    ("m = s = 0.001", dict(mean=0.001, std=0.001)),
    ("m = 0, s = 1 (U shape)", dict(mean=0.0, std=1.0)),
)


def spectrum_widget(
    mean: float = 0.01,
    std: float = 0.001,
    scale: float = 1.0,
    tokens: TokenModel = "random_walk",
    spread: Literal["variance", "sd"] = "variance",
    **kw: Any,
) -> LiveExplorer:
    """Chapter 7, live: the spectrum's mean, its spread as the variance s² (or the sd s), the
    overall scale and the token model; buttons for the chapter's cases (`SPECTRUM_PRESETS`).

    Every slider stops only at exact values (`mean_stops`, `spread_stops`, the 1-2-5 series of the
    scale from 0.01 to 100): the mean through 0 to negative values, the spread from 0 (`kappa = 1`)
    up; a start value off the grid is added to it. The switch "spread as" relabels the spread
    slider in s² or s without moving it. Each change redraws the figure in place
    (`LiveExplorer`); the notebook keeps the last figure as an image output.
    """
    import ipywidgets

    mean = finite(mean, "mean")
    std = finite(std, "std", nonneg=True)
    scale = finite(scale, "scale", positive=True)
    tokens = tokens_arg(tokens)
    if spread not in ("variance", "sd"):
        raise ValueError(f"spread must be 'variance' or 'sd', got {spread!r}")
    stops = spread_stops()
    if not any(math.isclose(sd, std, rel_tol=1e-12) or sd == std for sd, _ in stops):
        stops = sorted(stops + [(std, std * std)])
    spread_slider = ipywidgets.SelectionSlider(
        options=_spread_options(stops, spread), value=std, description=_SPREAD_LABEL[spread],
        continuous_update=False, style={"description_width": "initial"}, layout={"width": "min(100%, 480px)"},
    )
    knob = ipywidgets.ToggleButtons(
        options=[("variance s²", "variance"), ("sd s", "sd")], value=spread, description="spread as",
        style={"description_width": "initial", "button_width": "auto"},
    )
    controls = {
        "mean": grid_slider(mean_stops(), mean, "mean m"),
        "std": spread_slider,
        "scale": grid_slider(one_two_five(0.01, 100.0), scale, "scale"),
        "tokens": ipywidgets.Dropdown(options=[("random walk", "random_walk"), ("i.i.d. Gaussian", "iid")], value=tokens, description="tokens"),
    }
    fig = _SpectrumFigure(spectrum_view(mean, std, scale, tokens, **kw))
    freeze_layout(fig.figure)

    def update(mean: float, std: float, scale: float, tokens: str) -> None:
        fig.update(spectrum_view(mean, std, scale, tokens, **kw))

    presets = [(label, dict(values, scale=1.0, tokens="random_walk")) for label, values in SPECTRUM_PRESETS]
    live = LiveExplorer(controls, fig.figure, update, presets=presets,
                        rows=[controls["mean"], knob, spread_slider, controls["scale"], controls["tokens"]])

    def relabel(change: dict) -> None:
        with live.held():
            value = spread_slider.value
            spread_slider.options = _spread_options(stops, change["new"])
            spread_slider.value = value
            spread_slider.description = _SPREAD_LABEL[change["new"]]

    knob.observe(relabel, names="value")
    live.knob = knob
    return live


_SPREAD_LABEL = {"variance": "variance s²", "sd": "sd s"}


def _spread_options(stops: list[tuple[float, float]], spread: str) -> list[tuple[str, float]]:
    """The spread slider's (label, sd) options: labelled by s² or by s, valued by s."""
    return [(fmt(var if spread == "variance" else sd), sd) for sd, var in stops]


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


GRID_MEANS = (-0.01, 0.0, 0.001, 0.01, 0.1, 1.0)
GRID_VARIANCES = (0.0, 1e-6, 1e-5, 1e-4, 4e-4, 1e-3, 1e-2, 0.1, 1.0)
_STATS_BAND = 0.45  # the profile panel's top band (sqrt units above 1.05) that holds the measurements


def grid_stats(v: SpectrumView) -> str:
    """The measurements of one grid point, as the website's explorer prints them (4 short lines)."""
    where = f"last {v.window} keys" if v.window > 1 else "the query"
    return "<br>".join([
        f"κ = {fmt(v.kappa)}, √d κ = {fmt(math.sqrt(v.d) * v.kappa)}, s = {fmt(v.std)}",
        f"entropy {fmt(v.entropy)} nats (uniform {fmt(math.log(v.T))})",
        f"support {fmt(v.support)} keys, {fmt(v.share)} on {where}",
        f"token residual of AX {fmt(v.residual)}",
    ])


def spectrum_static_grid(
    means: Sequence[float] = GRID_MEANS,
    variances: Sequence[float] = GRID_VARIANCES,
    start: tuple[float, float] = (0.01, 0.0),
    **fixed: Any,
) -> slider_grid.StaticExplorer:
    """Chapter 7, static: `spectrum_view` on a grid of means and variances, with two plotly sliders.

    The first slider is the variance `s^2` (`variances`, each >= 0; `s = sqrt(s^2)`), the second
    the mean `m` (`means`). Both work with no kernel and no custom JavaScript, so in the book and
    in JupyterLab alike: the variance slider shows one group of traces (attention map, support
    profile, measurements) per variance, and the mean slider restyles every group's data to that
    mean, so each slider keeps the other's position. The measurements of the point shown are a
    text trace in the profile panel's top band (`grid_stats`); the figure's title gives the fixed
    setting. `start`: the `(mean, variance)` the sliders open at. `fixed`: the other arguments of
    `spectrum_view` (`scale`, `tokens`, `d`, `T`, `n_samples`, ...). The profile's axis is a
    square-root scale (`profile_axis`), labelled in probabilities. Heatmaps carry the weights in
    thousandths (integers, so that the 54 maps of the default grid stay well under 1 MB; the colour
    bar and the hover read them as weights).
    """
    import plotly.graph_objects as go

    for name in ("mean", "std"):
        if name in fixed:
            raise ValueError(f"{name!r} is set by the sliders: give the grid in `means` and `variances`")
    ms = [finite(x, "means") for x in slider_grid.grid(means, "means")]
    vs = [finite(x, "variances", nonneg=True) for x in slider_grid.grid(variances, "variances")]
    i0 = slider_grid.start_index(ms, start[0], "start mean")
    j0 = slider_grid.start_index(vs, start[1], "start variance")
    with one_thread():  # 54 small views: one thread each is as fast, and much faster on shared cores
        views = [[spectrum_view(m, math.sqrt(v), **fixed) for v in vs] for m in ms]  # views[i][j]
    first = views[0][0]
    tau = np.arange(1, first.T + 1)
    top = 1.05 + _STATS_BAND

    def heat_z(v: SpectrumView) -> np.ndarray:  # weights in thousandths: small integers keep the page light
        return np.rint(v.pattern * 1000).astype(np.int16)

    steps = []
    for j, v in enumerate(views[i0]):
        heat = go.Heatmap(
            z=heat_z(v), zmin=0, zmax=1000, colorscale=slider_grid.sqrt_viridis(),
            colorbar=dict(title=dict(text="weight"), tickvals=[0, 100, 250, 500, 750, 1000], ticktext=["0", "0.1", "0.25", "0.5", "0.75", "1"]),
            showlegend=False, name="weight", hovertemplate="query %{y}, key %{x}: weight %{z}/1000<extra></extra>",
        )
        prof = go.Scatter(
            x=tau, y=slider_grid.rounded(profile_axis(v.profile), 4), customdata=slider_grid.rounded(v.profile, 3),
            mode="lines+markers", marker=dict(size=4), line=dict(color="#d62728"), name="P(τ in support)",
            hovertemplate="key %{x}: %{customdata:.3f}<extra></extra>",
        )
        stats = go.Scatter(
            x=[1], y=[top - 0.03], text=[grid_stats(v)], mode="text", textposition="bottom right",
            textfont=dict(size=11), hoverinfo="skip", showlegend=False, name="measurements",
        )
        steps.append((fmt(vs[j]), _grid_title(first), [(heat, 1), (prof, 2), (stats, 2)]))
    fig, narrow = slider_grid.slider_figure(
        steps, ["attention weights A", "sparsemax support, last query"], "variance s²", heat_col=1, active=j0, legend=False,
    )
    # The mean slider: restyle every variance group's traces to mean i (visibility untouched).
    n = len(fig.data)  # 3 traces per variance: heatmap, profile, measurements
    mean_steps = []
    for i, m in enumerate(ms):
        z, y, custom, text = [], [], [], []
        for j in range(len(vs)):
            v = views[i][j]
            z += [heat_z(v).tolist(), None, None]
            y += [None, np.round(profile_axis(v.profile), 4).tolist(), [top - 0.03]]
            custom += [None, np.round(v.profile, 3).tolist(), None]
            text += [None, None, [grid_stats(v)]]
        mean_steps.append(dict(label=fmt(m), method="restyle", args=[{"z": z, "y": y, "customdata": custom, "text": text}, list(range(n))]))
    variance_slider = fig.layout.sliders[0]
    mean_slider = dict(
        active=i0, currentvalue=dict(prefix="mean m = ", font=dict(size=12)), pad=dict(t=variance_slider.pad.t + _SLIDER_PX, l=0, r=0),
        len=1.0, x=0.0, font=dict(size=11), steps=mean_steps,
    )
    fig.layout.sliders = [variance_slider, mean_slider]
    fig.layout.sliders[0].currentvalue.prefix = "variance s² = "
    fig.layout.margin.b += _SLIDER_PX
    fig.layout.height += _SLIDER_PX
    narrow = dict(narrow, height=narrow["height"] + _SLIDER_PX, margin=dict(narrow["margin"], b=narrow["margin"]["b"] + _SLIDER_PX))
    fig.update_yaxes(autorange="reversed", title_text="query position i", row=1, col=1)
    fig.update_xaxes(title_text="key position j", row=1, col=1)
    fig.update_xaxes(title_text="key position τ (query at T)", row=1, col=2)
    fig.update_yaxes(
        range=[0, top], tickvals=[float(profile_axis(t)) for t in PROFILE_TICKS], ticktext=[fmt(t) for t in PROFILE_TICKS],
        title_text="P(τ in support), sqrt scale", row=1, col=2,
    )
    return slider_grid.StaticExplorer(fig, [views[i][j] for i in range(len(ms)) for j in range(len(vs))], "spectrum", narrow)


_SLIDER_PX = 72  # the second slider's height, below the first


def _grid_title(v: SpectrumView) -> str:
    scale = "" if v.scale == 1 else f", spectrum × {fmt(v.scale)}"
    return "<br>".join([
        f"eigenvalue mean m and variance s² (sliders){scale}",
        f"{TOKEN_LABEL[v.tokens]}, d = {v.d}, T = {v.T}",
    ])
