"""Chapter 3's explorer: rank collapse with depth, for the four blocks of the chapter.

Here: `DepthView` / `depth_view` (the pure data function: chapter 3's random stacks at
initialisation, the relative token residual per layer for pure attention, attention + skip,
attention + MLP and the full post-LN block, and the token cosines at the last layer),
`depth_explorer` (a matplotlib figure), `depth_widget` (live, needs a kernel) and `depth_static`
(a precomputed grid with a plotly slider, for the book). Not here: the networks themselves
(`qklab.collapse`); the plotly slider figure in general (`qklab.explore.slider_grid`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from qklab._validate import check_positive_int
from qklab.explore import slider_grid
from qklab.explore.common import LiveExplorer, finite, fmt, freeze_layout, grid_slider, one_two_five
from qklab.metrics import token_residual
from qklab.theory import gaussian_tokens

__all__ = ["DepthView", "depth_view", "depth_explorer", "depth_widget", "depth_static"]

BLOCK_LABEL = {
    "attention": "attention only",
    "skip": "attention + skip",
    "mlp": "attention + MLP (no skip)",
    "full": "full post-LN block",
}
BLOCK_COLOR = {"attention": "#d62728", "skip": "#2ca02c", "mlp": "#9467bd", "full": "#1f77b4"}
RES_FLOOR = 1e-16  # below float64 rounding: shown as this value on log axes
ROUNDING = 1e-12  # residuals below this are rounding noise: the title says "≈ 0"


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


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero inside the block (where the CPU supports it), then stop."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@functools.lru_cache(maxsize=32)
def _depth_run(qk_gain: float, causal: bool, d: int, T: int, n_seq: int, seed: int, depth: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """All `depth` layers of chapter 3's stacks, once per setting (cached: a depth change only slices).

    Returns the median residuals `(depth + 1,)` per block and the token cosines of the first
    network at every layer, `(depth + 1, T, T)`, for pure attention and attention + skip.
    """
    from qklab.collapse import BLOCKS, init_stack, stack_outputs

    weights = init_stack(n_seq, depth, d, qk_gain=qk_gain, seed=seed)
    X = gaussian_tokens(n_seq, T, d, seed=seed + 1)  # (n_seq, T, d)
    residuals, cos = {}, {}
    # Deep stacks at a large gain drive attention weights below 1e-308 (float64 subnormals), which
    # the CPU computes with 10-100x slower: flushed to zero here (they weigh nothing against 1e-16).
    with torch.no_grad(), _flush_denormals():
        for block in BLOCKS:
            outs = stack_outputs(X, weights, block, causal)  # depth + 1 tensors (n_seq, T, d)
            res = torch.stack([token_residual(o) for o in outs], dim=-1)  # (n_seq, depth + 1)
            residuals[block] = res.median(dim=0).values.numpy()
            if block in ("attention", "skip"):
                cos[block] = np.stack([_cosines(o[0]) for o in outs])
    for a in (*residuals.values(), *cos.values()):
        a.setflags(write=False)
    return residuals, cos["attention"], cos["skip"]


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
    first `depth` layers are shown (`qklab.collapse.stack_outputs`), so a deeper view extends a shallower
    one with the same weights. Tokens are i.i.d. Gaussian, sequence `b` through network `b`.
    All `max(depth, max_depth)` layers run once per setting of the other arguments and are kept
    (`_depth_run`, cached), so moving the depth alone costs no computation.
    """
    depth, d, T, n_seq, max_depth = (
        check_positive_int(v, k) for v, k in ((depth, "depth"), (d, "d"), (T, "T"), (n_seq, "n_seq"), (max_depth, "max_depth"))
    )
    qk_gain = finite(qk_gain, "qk_gain", nonneg=True)
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    residuals, cos_attn, cos_skip = _depth_run(qk_gain, bool(causal), d, T, n_seq, seed, max(depth, max_depth))
    return DepthView(
        depth=depth,
        qk_gain=qk_gain,
        causal=bool(causal),
        d=d,
        T=T,
        residuals={block: res[: depth + 1].copy() for block, res in residuals.items()},
        cosine_attn=cos_attn[depth].copy(),
        cosine_skip=cos_skip[depth].copy(),
    )


def depth_title(v: DepthView) -> list[str]:
    """The title's lines (each short enough for a phone): the setting, the four last residuals."""
    mask = "causal mask" if v.causal else "no mask"
    # below ROUNDING a residual is float64 rounding noise, whose digits differ from one CPU to another
    r = {block: "≈ 0" if abs(res[-1]) < ROUNDING else fmt(res[-1]) for block, res in v.residuals.items()}
    return [
        f"depth {v.depth}, qk_gain {fmt(v.qk_gain)}, d = {v.d}, T = {v.T}, {mask}",
        f"token residual at layer {v.depth} (network median):",
        f"attention only {r['attention']}, + skip {r['skip']},",
        f"+ MLP {r['mlp']}, full block {r['full']}",
    ]


def _layer_range(depth: int) -> tuple[float, float]:
    """The layer axis's range: layers 0 to `depth` (at least 0 to 4, so one layer is not a wide gap)."""
    return (-0.3, max(depth, 4) + 0.3)


class _DepthFigure:
    """Chapter 3's figure, made once and redrawn in place (5.0 in high: with its controls it fits
    a 900 px window): residual per layer on top, token cosines at the last layer below."""

    def __init__(self, v: DepthView) -> None:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(6.6, 5.0), layout="constrained")
        axd = fig.subplot_mosaic([["res", "res"], ["attn", "skip"]], height_ratios=[1, 1.25])
        ax_res = axd["res"]
        self.lines = {}
        for block, res in v.residuals.items():
            (self.lines[block],) = ax_res.semilogy(np.arange(v.depth + 1), np.maximum(res, RES_FLOOR), "o-", ms=3, color=BLOCK_COLOR[block], label=BLOCK_LABEL[block])
        ax_res.set(xlabel="layer", ylabel="token residual", title="rank collapse with depth", ylim=(RES_FLOOR / 3, 2), xlim=_layer_range(v.depth))
        ax_res.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_res.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        self.ax_res = ax_res
        self.images, self.titles = {}, {}
        self.names = {"attn": "attention only", "skip": "with skip"}
        for key, C, name in (("attn", v.cosine_attn, "attention only"), ("skip", v.cosine_skip, "with skip")):
            self.images[key] = axd[key].imshow(C, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")  # fill the row
            axd[key].set(xlabel="token $j$", ylabel="token $i$")
            self.titles[key] = axd[key].set_title(f"token cosines, layer {v.depth}\n({name})", fontsize=9)
        fig.colorbar(self.images["attn"], ax=[axd["attn"], axd["skip"]], label="cosine similarity", shrink=0.8)
        self.title = fig.suptitle("\n".join(depth_title(v)), fontsize=9)
        self.figure = fig

    def update(self, v: DepthView) -> None:
        layers = np.arange(v.depth + 1)
        for block, res in v.residuals.items():
            self.lines[block].set_data(layers, np.maximum(res, RES_FLOOR))
        self.ax_res.set_xlim(_layer_range(v.depth))
        for key, C in (("attn", v.cosine_attn), ("skip", v.cosine_skip)):
            self.images[key].set_data(C)
            self.titles[key].set_text(f"token cosines, layer {v.depth}\n({self.names[key]})")
        self.title.set_text("\n".join(depth_title(v)))


def depth_explorer(depth: int = 6, qk_gain: float = 1.0, causal: bool = False, **kw: Any):
    """Chapter 3: matplotlib figure of `depth_view(...)`: residual per layer (top) and token
    cosines at the last layer (bottom, attention only and with skip). 6.6 x 5.0 in; a
    `matplotlib.figure.Figure` not registered with pyplot."""
    v = depth_view(depth, qk_gain, causal, **kw)
    return _DepthFigure(v).figure


def depth_widget(depth: int = 6, qk_gain: float = 1.0, causal: bool = False, max_depth: int = 32, **kw: Any) -> LiveExplorer:
    """Chapter 3, live: sliders for the depth (1 to `max_depth`) and the query-key gain (the
    1-2-5 series from 0.1 to 10), and a causal-mask switch. Each change redraws the figure in
    place (`LiveExplorer`; a depth change only slices the cached stack); the notebook keeps the
    last figure as an image output. The figure is 5 in high, so that it and its controls fit a
    900 px window."""
    import ipywidgets

    fig = _DepthFigure(depth_view(depth, qk_gain, causal, max_depth=max_depth, **kw))
    freeze_layout(fig.figure)

    def update(depth: int, qk_gain: float, causal: bool) -> None:
        fig.update(depth_view(depth, qk_gain, causal, max_depth=max_depth, **kw))

    controls = {
        "depth": ipywidgets.IntSlider(value=depth, min=1, max=max_depth, description="depth", continuous_update=False, layout={"width": "min(100%, 480px)"}),
        "qk_gain": grid_slider(one_two_five(0.1, 10.0), qk_gain, "qk_gain"),
        "causal": ipywidgets.Checkbox(value=bool(causal), description="causal mask"),
    }
    return LiveExplorer(controls, fig.figure, update)


def depth_static(values: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16), start: int | None = None, **fixed: Any) -> slider_grid.StaticExplorer:
    """Chapter 3, static: `depth_view` over depths, with a plotly slider (residual per layer, cosines).

    `start` is the depth the slider opens at (default: the middle of `values`, deep enough for
    the curves to part ways; depth 1 shows one step only); `fixed` are the other arguments of
    `depth_view` (e.g. `qk_gain=2.0, causal=True`).
    """
    import plotly.graph_objects as go

    if "depth" in fixed:
        raise ValueError("'depth' is the slider's parameter: give its values in `values`")
    depths = [check_positive_int(L, "values") for L in slider_grid.grid(values, "values")]
    active = len(depths) // 2 if start is None else slider_grid.start_index(depths, start, "start")
    fixed.setdefault("max_depth", max(depths))  # the same networks for every step, drawn once deep enough
    views = [depth_view(L, **fixed) for L in depths]
    steps = []
    for v in views:
        layers = np.arange(v.depth + 1)
        traces = [
            (go.Scatter(x=layers, y=np.maximum(res, RES_FLOOR), mode="lines+markers", name=BLOCK_LABEL[block], line=dict(color=BLOCK_COLOR[block])), 1)
            for block, res in v.residuals.items()
        ]
        cos = go.Heatmap(
            z=slider_grid.rounded(v.cosine_attn, 3), zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
            colorbar=dict(title=dict(text="cosine")), showlegend=False, name="cosine",
        )
        steps.append((str(v.depth), "<br>".join(depth_title(v)), traces + [(cos, 2)]))
    fig, narrow = slider_grid.slider_figure(
        steps, ["token residual per layer", "token cosines (attention only)"], "depth", heat_col=2, active=active,
    )
    # Fixed ranges, so moving the slider grows the curves instead of rescaling the axes.
    fig.update_yaxes(type="log", range=[math.log10(RES_FLOOR) - 0.5, 0.3], title_text="token residual", exponentformat="power", dtick=4, row=1, col=1)
    fig.update_xaxes(range=[-0.3, max(v.depth for v in views) + 0.3], title_text="layer", row=1, col=1)
    fig.update_yaxes(autorange="reversed", title_text="token i", row=1, col=2)
    fig.update_xaxes(title_text="token j (last layer)", row=1, col=2)
    return slider_grid.StaticExplorer(fig, views, "depth", narrow)
