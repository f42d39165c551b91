"""Explorers: turn a knob (spectrum mean, spread, scale, temperature, depth) and watch attention change.

Each explorer comes in four layers, so that tests, notebooks and the static website all share the
same computation:

- a *pure data function* (`spectrum_view`, `scale_view`, `depth_view`): parameters in, a frozen
  dataclass of numpy arrays and numbers out, seeded, no plotting;
- a *figure function* (`spectrum_explorer`, `scale_explorer`, `depth_explorer`): parameters in, a
  matplotlib `Figure` out (it calls the data function);
- a *live widget* (`spectrum_widget`, `scale_widget`, `depth_widget`): an `ipywidgets.interactive`
  that redraws the figure function on every change; needs a running kernel;
- a *static explorer* (`spectrum_static`, `scale_static`, `depth_static`): the data function on a
  small grid of one parameter, drawn as a plotly figure with a slider and returned as an
  `IPython.display.HTML` object. The slider works in a browser with no kernel and no network: the
  HTML does not embed plotly.js, the book serves it from a local file (`_ext/qklab_book.py` adds
  it to every page that holds a plotly figure). In a notebook use the live widget, or
  `.figure.show()` to see the plotly figure with JupyterLab's plotly renderer.

Chapters: 1 and 5 (`scale_*`: logit scale = 1/temperature, entropy and rank residual), 3
(`depth_*`: relative token residual per layer of chapter 3's random stacks, with and without
skip connections, MLPs and layer norm, through `qklab.collapse`) and 7
(`spectrum_*`: attention map, sparsemax propagation profile, entropy and residual for a spectrum of
chosen mean and spread). Not here: the science itself (`qklab.attention`, `qklab.metrics`,
`qklab.theory`); this module only wires those into figures.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from IPython.display import HTML

from qklab._validate import check_positive_int
from qklab.attention import pattern
from qklab.metrics import attention_entropy, token_residual
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens, predicted_snr, propagation_probability, random_walk_tokens, recent_share

__all__ = [
    "SpectrumView",
    "spectrum_view",
    "spectrum_explorer",
    "spectrum_widget",
    "spectrum_static",
    "ScaleView",
    "scale_view",
    "scale_explorer",
    "scale_widget",
    "scale_static",
    "DepthView",
    "depth_view",
    "depth_explorer",
    "depth_widget",
    "depth_static",
    "StaticExplorer",
]

TokenModel = Literal["random_walk", "iid"]
_TOKEN_LABEL = {"random_walk": "random-walk tokens", "iid": "i.i.d. Gaussian tokens"}


# --- input checks -------------------------------------------------------------------------------

def _finite(value: object, name: str, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonneg and x < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return x


def _tokens_arg(tokens: str) -> str:
    if tokens not in _TOKEN_LABEL:
        raise ValueError(f"tokens must be 'random_walk' or 'iid', got {tokens!r}")
    return tokens


# --- chapter 7: the spectrum explorer ------------------------------------------------------------

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

    mean = _finite(mean, "mean")
    std = _finite(std, "std", nonneg=True)
    scale = _finite(scale, "scale", positive=True)
    tokens = _tokens_arg(tokens)
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


def _spectrum_title(v: SpectrumView) -> str:
    where = f"last {v.window} keys" if v.window > 1 else "the query itself"
    return (
        f"m = {v.mean:g}, s = {v.std:g}, scale {v.scale:g}: kappa = {v.kappa:.3f}, sqrt(d) kappa = {math.sqrt(v.d) * v.kappa:.2f}; "
        f"{_TOKEN_LABEL[v.tokens]}, d = {v.d}, T = {v.T}<br>last query: softmax entropy {v.entropy:.2f} nats "
        f"(uniform {math.log(v.T):.2f}), sparsemax support {v.support:.1f} keys, {v.share:.2f} of it on {where}<br>"
        f"relative token residual of A X {v.residual:.2f} (of X {v.residual_in:.2f})"
    )


def spectrum_explorer(mean: float = 0.01, std: float = 0.001, scale: float = 1.0, tokens: TokenModel = "random_walk", **kw: Any):
    """Chapter 7: matplotlib figure of `spectrum_view(...)`: attention map and support profile."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    v = spectrum_view(mean, std, scale, tokens, **kw)
    fig, (ax_map, ax_prof) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.3]}, layout="constrained")
    im = ax_map.imshow(v.pattern, norm=PowerNorm(0.5, vmin=0, vmax=1), cmap="viridis")
    fig.colorbar(im, ax=ax_map, label="attention weight (square-root colour scale)")
    ax_map.set(title="causal softmax pattern (one sequence)", xlabel="key position j", ylabel="query position i")
    tau = np.arange(1, v.T + 1)
    ax_prof.plot(tau, v.profile, "o-", ms=3, color="C3", label="P(key in sparsemax support), query = last token")
    ax_prof.set(ylim=(0, 1.05), xlabel="key position tau", ylabel="propagation probability", title="signal propagation profile")
    ax_prof.legend(loc="upper left", fontsize=8)
    fig.suptitle(_spectrum_title(v).replace("<br>", "\n"), fontsize=9)
    return fig


# --- chapters 1 and 5: the scale (temperature) explorer -------------------------------------------

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
    scale = _finite(scale, "scale", positive=True)
    mean = _finite(mean, "mean")
    std = _finite(std, "std", nonneg=True)
    d, T, n_seq = (check_positive_int(v, k) for v, k in ((d, "d"), (T, "T"), (n_seq, "n_seq")))
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    sweep_arr = np.asarray([_finite(c, "sweep entries", positive=True) for c in sweep], dtype=np.float64)
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


def _scale_title(v: ScaleView) -> str:
    mask = "causal mask" if v.causal else "no mask"
    return (
        f"logit scale c = {v.scale:.3g} (temperature {1 / v.scale:.3g}); W_QK eigenvalues mean {v.mean:g}, sd {v.std:g}; "
        f"d = {v.d}, T = {v.T}, {mask}<br>entropy {v.entropy:.2f} of uniform, residual of A X {v.residual:.2f} (input {v.residual_in:.2f})"
    )


Knob = Literal["scale", "temperature"]


def _check_knob(knob: str) -> str:
    if knob not in ("scale", "temperature"):
        raise ValueError(f"knob must be 'scale' (logit scale c) or 'temperature' (tau = 1/c), got {knob!r}")
    return knob


def scale_explorer(scale: float = 1.0, causal: bool = False, knob: Knob = "scale", **kw: Any):
    """Chapters 1 and 5: matplotlib figure of `scale_view(...)`: attention map and the two collapses.

    `knob="temperature"` draws the curves against the temperature `tau = 1/scale` (chapter 1's
    convention) instead of the logit scale (chapter 5's).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    _check_knob(knob)
    v = scale_view(scale, causal=causal, **kw)
    fig, (ax_map, ax_curve) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.3]}, layout="constrained")
    im = ax_map.imshow(v.pattern, norm=PowerNorm(0.5, vmin=0, vmax=1), cmap="viridis")
    fig.colorbar(im, ax=ax_map, label="attention weight (square-root colour scale)")
    ax_map.set(title="softmax pattern (one sequence)", xlabel="key position j", ylabel="query position i")
    x, here = (v.sweep, v.scale) if knob == "scale" else (1 / v.sweep, 1 / v.scale)
    ax_curve.semilogx(x, v.sweep_entropy, "-", label="entropy / uniform entropy")
    ax_curve.semilogx(x, v.sweep_residual, "-", label="relative residual of A X")
    ax_curve.axvline(here, color="k", ls="--", lw=1, label=f"current {knob}")
    if knob == "scale":
        ax_curve.set(xlabel="logit scale c = 1 / temperature", title="uniform (left) to one-hot (right)")
    else:
        ax_curve.set(xlabel="temperature tau (logits divided by tau)", title="one-hot (left) to uniform (right)")
    ax_curve.set(ylim=(0, 1.05), ylabel="value")
    ax_curve.legend(fontsize=8)
    fig.suptitle(_scale_title(v).replace("<br>", "\n"), fontsize=9)
    return fig


# --- chapter 3: the depth explorer ---------------------------------------------------------------

_BLOCK_LABEL = {
    "attention": "attention only",
    "skip": "attention + skip",
    "mlp": "attention + MLP (no skip)",
    "full": "full post-LN block",
}
_BLOCK_COLOR = {"attention": "#d62728", "skip": "#2ca02c", "mlp": "#9467bd", "full": "#1f77b4"}


@dataclass(frozen=True)
class DepthView:
    """What the depth explorer shows for random stacks of `depth` layers at initialisation.

    `residuals`: block name (`"attention"`, `"skip"`, `"mlp"`, `"full"`, as in
    `qklab.collapse.stack_outputs`) -> `(depth + 1,)` median over the `n_seq` random networks of
    the relative token residual (composite norm) at layers `0..depth`; `cosine_attn`,
    `cosine_skip`: `(T, T)` token cosine similarities at the last layer of the first network,
    pure attention and attention with skip connections.
    """

    depth: int
    qk_gain: float
    causal: bool
    d: int
    T: int
    residuals: dict
    cosine_attn: np.ndarray
    cosine_skip: np.ndarray


def _cosines(X: torch.Tensor) -> np.ndarray:
    U = X / X.norm(dim=-1, keepdim=True).clamp_min(1e-300)  # (T, d)
    return (U @ U.T).numpy()


def depth_view(
    depth: int,
    qk_gain: float = 1.0,
    causal: bool = False,
    d: int = 32,
    T: int = 32,
    n_seq: int = 8,
    seed: int = 0,
    max_depth: int = 32,
) -> DepthView:
    """Chapter 3: rank collapse with depth at initialisation, for the four blocks of the chapter.

    The networks are those of chapter 3: `qklab.collapse.init_stack(n_seq, max_depth, d,
    qk_gain=qk_gain, seed=seed)` (scores of standard deviation about `qk_gain^2`), of which the
    first `depth` layers run (`qklab.collapse.stack_outputs`), so a deeper view extends a shallower
    one with the same weights. Tokens are i.i.d. Gaussian, sequence `b` through network `b`.
    """
    from qklab.collapse import BLOCKS, init_stack, stack_outputs

    depth, d, T, n_seq, max_depth = (
        check_positive_int(v, k) for v, k in ((depth, "depth"), (d, "d"), (T, "T"), (n_seq, "n_seq"), (max_depth, "max_depth"))
    )
    qk_gain = _finite(qk_gain, "qk_gain", nonneg=True)
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    weights = init_stack(n_seq, max(depth, max_depth), d, qk_gain=qk_gain, seed=seed)
    weights = {k: w[:, :depth] for k, w in weights.items()}  # the first `depth` layers
    X = gaussian_tokens(n_seq, T, d, seed=seed + 1)  # (n_seq, T, d)
    residuals, last = {}, {}
    with torch.no_grad():
        for block in BLOCKS:
            outs = stack_outputs(X, weights, block, causal)  # depth + 1 tensors (n_seq, T, d)
            res = torch.stack([token_residual(o) for o in outs], dim=-1)  # (n_seq, depth + 1)
            residuals[block] = res.median(dim=0).values.numpy()
            last[block] = outs[-1][0]
    return DepthView(
        depth=depth,
        qk_gain=qk_gain,
        causal=bool(causal),
        d=d,
        T=T,
        residuals=residuals,
        cosine_attn=_cosines(last["attention"]),
        cosine_skip=_cosines(last["skip"]),
    )


_RES_FLOOR = 1e-16  # below float64 rounding: shown as this value on log axes


def _depth_title(v: DepthView) -> str:
    mask = "causal mask" if v.causal else "no mask"
    r = v.residuals
    return (
        f"depth {v.depth}, qk_gain {v.qk_gain:g}, d = {v.d}, T = {v.T}, {mask}; residual at layer {v.depth} "
        f"(median of random networks):<br>{r['attention'][-1]:.1e} attention only, {r['skip'][-1]:.2f} with skip, "
        f"{r['mlp'][-1]:.1e} with MLP, {r['full'][-1]:.2f} full block"
    )


def depth_explorer(depth: int = 6, qk_gain: float = 1.0, causal: bool = False, **kw: Any):
    """Chapter 3: matplotlib figure of `depth_view(...)`: residual per layer and token cosines."""
    import matplotlib.pyplot as plt

    v = depth_view(depth, qk_gain, causal, **kw)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), gridspec_kw={"width_ratios": [1.4, 1, 1]}, layout="constrained")
    layers = np.arange(v.depth + 1)
    for block, res in v.residuals.items():
        axes[0].semilogy(layers, np.maximum(res, _RES_FLOOR), "o-", ms=3, color=_BLOCK_COLOR[block], label=_BLOCK_LABEL[block])
    axes[0].set(xlabel="layer", ylabel="relative residual ||res(X)|| / ||X||", title="rank collapse with depth", ylim=(_RES_FLOOR / 3, 2))
    axes[0].legend(fontsize=8)
    for ax, C, name in ((axes[1], v.cosine_attn, "attention only"), (axes[2], v.cosine_skip, "with skip")):
        im = ax.imshow(C, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=f"token cosines, layer {v.depth}\n({name})", xlabel="token j", ylabel="token i")
    fig.colorbar(im, ax=axes[1:], label="cosine similarity")
    fig.suptitle(_depth_title(v).replace("<br>", "\n"), fontsize=9)
    return fig


# --- live widgets (need a kernel) ---------------------------------------------------------------

def _interactive(draw: Callable[..., None], **controls: Any):
    import ipywidgets

    return ipywidgets.interactive(draw, **controls)


def _log_slider(value: float, lo: float, hi: float, description: str):
    import ipywidgets

    return ipywidgets.FloatLogSlider(
        value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
        description=description, continuous_update=False, readout_format=".3g",
        style={"description_width": "initial"},
    )


def spectrum_widget(mean: float = 0.01, std: float = 0.001, scale: float = 1.0, tokens: TokenModel = "random_walk", **kw: Any):
    """Chapter 7, live: sliders for the spectrum mean and sd (log scales, 1e-4 to 10), the overall
    scale, and the token model. A zero mean or sd is reached as closely as 1e-4 (`kappa ~ 0` or 1)."""
    import ipywidgets
    import matplotlib.pyplot as plt

    def draw(mean: float, std: float, scale: float, tokens: str) -> None:
        spectrum_explorer(mean, std, scale, tokens, **kw)
        plt.show()

    return _interactive(
        draw,
        mean=_log_slider(max(mean, 1e-4), 1e-4, 10, "mean m"),
        std=_log_slider(max(std, 1e-4), 1e-4, 10, "sd s"),
        scale=_log_slider(scale, 0.01, 100, "scale"),
        tokens=ipywidgets.Dropdown(options=[("random walk", "random_walk"), ("i.i.d. Gaussian", "iid")], value=tokens, description="tokens"),
    )


def scale_widget(scale: float = 1.0, causal: bool = False, knob: Knob = "scale", **kw: Any):
    """Chapters 1 and 5, live: a slider for the logit scale `c` (or, with `knob="temperature"`,
    for the temperature `tau = 1/c`; `scale` still gives the starting logit scale) and a
    causal-mask switch."""
    import ipywidgets
    import matplotlib.pyplot as plt

    _check_knob(knob)

    def draw(value: float, causal: bool) -> None:
        scale_explorer(value if knob == "scale" else 1 / value, causal, knob, **kw)
        plt.show()

    start, name = (scale, "logit scale c") if knob == "scale" else (1 / scale, "temperature tau")
    return _interactive(draw, value=_log_slider(start, 0.01, 100, name), causal=ipywidgets.Checkbox(value=causal, description="causal mask"))


def depth_widget(depth: int = 6, qk_gain: float = 1.0, causal: bool = False, **kw: Any):
    """Chapter 3, live: sliders for the depth and the query-key gain, and a causal-mask switch."""
    import ipywidgets
    import matplotlib.pyplot as plt

    def draw(depth: int, qk_gain: float, causal: bool) -> None:
        depth_explorer(depth, qk_gain, causal, **kw)
        plt.show()

    return _interactive(
        draw,
        depth=ipywidgets.IntSlider(value=depth, min=1, max=32, description="depth", continuous_update=False),
        qk_gain=_log_slider(qk_gain, 0.1, 10, "qk_gain"),
        causal=ipywidgets.Checkbox(value=causal, description="causal mask"),
    )


# --- static explorers (precomputed grid, plotly slider, no kernel) -------------------------------

class StaticExplorer(HTML):
    """A precomputed explorer: a plotly figure with a slider, shown as HTML.

    `html` is the fragment the book embeds (no plotly.js inside: the page loads it from a local
    file, so a notebook without plotly.js loaded shows a note pointing to the live widget instead;
    plotly's own MIME type is left out because the book build rejects it as unknown). `figure`
    is the plotly figure (`figure.show()` displays it in JupyterLab); `views` the data of every
    slider step.
    """

    def __init__(self, figure: Any, views: list, name: str) -> None:
        self.figure = figure
        self.views = views
        digest = hashlib.sha1(json.dumps(figure.to_plotly_json(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.div_id = f"qklab-{name}-{digest}"
        plot = figure.to_html(
            full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=self.div_id,
            config={"displaylogo": False, "responsive": True},
        )
        note = html.escape(
            "This precomputed explorer needs plotly.js, which the built book serves. "
            "In a notebook, run the live widget (the next cell) instead."
        )
        self.html = (
            f'<div class="qklab-explorer" data-explorer="{name}">{plot}'
            f'<p id="{self.div_id}-fallback" style="display:none">{note}</p>'
            f'<script>if (typeof window.Plotly === "undefined") {{'
            f'document.getElementById("{self.div_id}-fallback").style.display = "block";}}</script></div>'
        )
        super().__init__(self.html)

    def __repr__(self) -> str:
        return f"<StaticExplorer {self.div_id}: {len(self.views)} slider steps>"


def _sqrt_viridis() -> list:
    """Viridis with its colours at `sqrt`-spaced stops: weights near 0.01-0.1 stay visible.

    The heatmap still holds the true weights (hover and colour bar read true values); only the
    colour map is stretched, as matplotlib's `PowerNorm(0.5)` does in the figure functions.
    """
    from plotly.colors import sample_colorscale

    stops = [(k / 10) ** 2 for k in range(11)]
    colors = sample_colorscale("Viridis", [k / 10 for k in range(11)])
    return [[p, c] for p, c in zip(stops, colors)]


def _r(a: np.ndarray, digits: int = 4) -> np.ndarray:
    """Rounded float32 copy: plotly embeds numpy arrays as compact base64 typed arrays."""
    return np.round(np.asarray(a, dtype=np.float64), digits).astype(np.float32)


def _slider_figure(
    steps: list[tuple[str, str, list[tuple[Any, int, int]]]],
    n_cols: int,
    titles: Sequence[str],
    param: str,
    widths: Sequence[float],
    height: int = 560,
    active: int = 0,
):
    """A plotly figure whose slider shows one group of traces per step (trace-visibility steps).

    `steps`: (slider label, figure title, [(trace, row, col), ...]) per step.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=n_cols, subplot_titles=list(titles), column_widths=list(widths), horizontal_spacing=0.2)
    owner: list[int] = []
    for k, (_, _, traces) in enumerate(steps):
        for trace, row, col in traces:
            trace.visible = k == active
            fig.add_trace(trace, row=row, col=col)
            owner.append(k)
    for trace in fig.data:  # each heatmap's colour bar sits just right of its own panel
        if trace.type == "heatmap":
            axis = fig.layout[trace.xaxis.replace("x", "xaxis", 1)]
            trace.colorbar.update(x=axis.domain[1] + 0.01, thickness=12, len=0.8)
    slider_steps = [
        dict(label=label, method="update", args=[{"visible": [o == k for o in owner]}, {"title.text": title}])
        for k, (label, title, _) in enumerate(steps)
    ]
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin=dict(t=125, b=150, l=50, r=20),
        title=dict(text=steps[active][1], font=dict(size=12), x=0.0, xanchor="left"),
        sliders=[dict(active=active, currentvalue=dict(prefix=f"{param}: "), pad=dict(t=50), steps=slider_steps)],
        showlegend=True,
        legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0.0),
    )
    return fig


def _grid(values: Sequence[Any], name: str) -> list:
    vals = list(values)
    if not 1 <= len(vals) <= 40:
        raise ValueError(f"{name} must hold between 1 and 40 slider values, got {len(vals)}")
    return vals


def spectrum_static(
    param: Literal["std", "mean", "scale"] = "std",
    values: Sequence[float] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
    **fixed: Any,
) -> StaticExplorer:
    """Chapter 7, static: `spectrum_view` on a grid of one parameter, with a plotly slider.

    `param` is the knob: by default the spectrum's sd `s` at mean `m = 0.01`, from a fully
    concentrated spectrum (`kappa = 1`) to a spread one (`kappa = 0.1`); `fixed` are the other
    arguments of `spectrum_view` (e.g. `mean=0.1, tokens="iid"`). About 0.2 s per value with the
    defaults on a laptop CPU.
    """
    import plotly.graph_objects as go

    if param not in ("std", "mean", "scale"):
        raise ValueError(f"param must be 'std', 'mean' or 'scale', got {param!r}")
    if param in fixed:
        raise ValueError(f"{param!r} is the slider's parameter: give its values in `values`, not as a fixed argument")
    args = {"mean": 0.01, "std": 0.001, "scale": 1.0, **fixed}
    views = [spectrum_view(**{**args, param: float(x)}) for x in _grid(values, "values")]
    steps = []
    for v in views:
        tau = np.arange(1, v.T + 1)
        heat = go.Heatmap(z=_r(v.pattern, 3), zmin=0, zmax=1, colorscale=_sqrt_viridis(), colorbar=dict(title="weight", tickvals=[0, 0.1, 0.25, 0.5, 0.75, 1]), showlegend=False, name="pattern")
        prof = go.Scatter(x=tau, y=_r(v.profile, 3), mode="lines+markers", marker=dict(size=4), line=dict(color="#d62728"), name="P(key in sparsemax support), query = last token")
        steps.append((f"{getattr(v, param):g}", _spectrum_title(v), [(heat, 1, 1), (prof, 1, 2)]))
    label = {"std": "eigenvalue sd s", "mean": "eigenvalue mean m", "scale": "spectrum scale"}[param]
    fig = _slider_figure(steps, 2, ["causal softmax pattern (one sequence)", "signal propagation profile"], label, (0.42, 0.58))
    fig.update_yaxes(autorange="reversed", title_text="query position i", row=1, col=1)
    fig.update_xaxes(title_text="key position j", row=1, col=1)
    fig.update_xaxes(title_text="key position tau (query at T)", row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], title_text="propagation probability", row=1, col=2)
    return StaticExplorer(fig, views, "spectrum")


def scale_static(
    values: Sequence[float] = tuple(float(x) for x in np.logspace(-2, 2, 9)), knob: Knob = "scale", **fixed: Any
) -> StaticExplorer:
    """Chapters 1 and 5, static: `scale_view` over a grid, with a plotly slider.

    `values` are logit scales `c` (`knob="scale"`) or temperatures `tau = 1/c`
    (`knob="temperature"`); `fixed` are the other arguments of `scale_view` (e.g. `causal=True`).
    """
    import plotly.graph_objects as go

    _check_knob(knob)
    if "scale" in fixed:
        raise ValueError("'scale' is the slider's parameter: give its values in `values`")
    grid = [_finite(x, "values", positive=True) for x in _grid(values, "values")]
    views = [scale_view(c if knob == "scale" else 1 / c, **fixed) for c in grid]
    steps = []
    for value, v in zip(grid, views):
        x = v.sweep if knob == "scale" else 1 / v.sweep
        heat = go.Heatmap(z=_r(v.pattern), zmin=0, zmax=1, colorscale=_sqrt_viridis(), colorbar=dict(title="weight", tickvals=[0, 0.1, 0.25, 0.5, 0.75, 1]), showlegend=False, name="pattern")
        ent = go.Scatter(x=x, y=_r(v.sweep_entropy), mode="lines", name="entropy / uniform entropy", line=dict(color="#1f77b4"))
        res = go.Scatter(x=x, y=_r(v.sweep_residual), mode="lines", name="relative residual of A X", line=dict(color="#ff7f0e"))
        here = go.Scatter(x=[value, value], y=[0, 1.05], mode="lines", name=f"current {knob}", line=dict(color="black", dash="dash"))
        steps.append((f"{value:.3g}", _scale_title(v), [(heat, 1, 1), (ent, 1, 2), (res, 1, 2), (here, 1, 2)]))
    if knob == "scale":
        label, axis, panel = "logit scale c", "logit scale c = 1 / temperature", "uniform (left) to one-hot (right)"
    else:
        label, axis, panel = "temperature tau", "temperature tau (logits divided by tau)", "one-hot (left) to uniform (right)"
    fig = _slider_figure(steps, 2, ["softmax pattern (one sequence)", panel], label, (0.42, 0.58))
    fig.update_yaxes(autorange="reversed", title_text="query position i", row=1, col=1)
    fig.update_xaxes(title_text="key position j", row=1, col=1)
    fig.update_xaxes(type="log", title_text=axis, row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], title_text="value", row=1, col=2)
    return StaticExplorer(fig, views, "temperature" if knob == "temperature" else "scale")


def depth_static(values: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16), **fixed: Any) -> StaticExplorer:
    """Chapter 3, static: `depth_view` over depths, with a plotly slider (residual per layer, cosines).

    `fixed` are the other arguments of `depth_view` (e.g. `qk_gain=2.0, causal=True`).
    """
    import plotly.graph_objects as go

    if "depth" in fixed:
        raise ValueError("'depth' is the slider's parameter: give its values in `values`")
    depths = [int(L) for L in _grid(values, "values")]
    fixed.setdefault("max_depth", max(depths))  # the same networks for every step, drawn once deep enough
    views = [depth_view(L, **fixed) for L in depths]
    steps = []
    for v in views:
        layers = np.arange(v.depth + 1)
        traces = [
            (go.Scatter(x=layers, y=np.maximum(res, _RES_FLOOR), mode="lines+markers", name=_BLOCK_LABEL[block], line=dict(color=_BLOCK_COLOR[block])), 1, 1)
            for block, res in v.residuals.items()
        ]
        cos = go.Heatmap(z=_r(v.cosine_attn, 3), zmin=-1, zmax=1, colorscale="RdBu", reversescale=True, colorbar=dict(title="cosine"), showlegend=False, name="cosines")
        steps.append((str(v.depth), _depth_title(v), traces + [(cos, 1, 2)]))
    fig = _slider_figure(steps, 2, ["relative residual per layer", "token cosines at the last layer (attention only)"], "depth", (0.58, 0.42))
    # Fixed ranges, so moving the slider grows the curves instead of rescaling the axes.
    fig.update_yaxes(type="log", range=[math.log10(_RES_FLOOR) - 0.5, 0.3], title_text="relative residual", exponentformat="power", row=1, col=1)
    fig.update_xaxes(range=[-0.3, max(v.depth for v in views) + 0.3], title_text="layer", row=1, col=1)
    fig.update_yaxes(autorange="reversed", title_text="token i", row=1, col=2)
    fig.update_xaxes(title_text="token j", row=1, col=2)
    return StaticExplorer(fig, views, "depth")
