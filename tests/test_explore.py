"""qklab.explore: the explorers' pure functions, figures, titles, widgets and static (plotly) grids.

The data functions are checked against independent numpy computations (softmax, the composite
norm residual) and against facts that do not depend on the implementation: uniform attention
collapses tokens in one layer, tiny logits put every key in the sparsemax support, huge logits
leave one key, pure attention stacks lose rank with depth and skip connections stop it.
"""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from qklab import explore as E
from qklab.explore import common, depth, scale, slider_grid, spectrum
from qklab.spectrum import random_qk
from qklab.theory import gaussian_tokens, random_walk_tokens

SMALL = dict(d=8, T=8, seed=3)


def np_softmax_causal(S: np.ndarray) -> np.ndarray:
    T = S.shape[-1]
    z = np.where(np.tril(np.ones((T, T), bool)), S, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_residual(X: np.ndarray) -> float:
    """Dong et al.'s relative residual with the composite norm sqrt(||.||_1 ||.||_inf)."""

    def norm(M):
        return math.sqrt(np.abs(M).sum(axis=0).max() * np.abs(M).sum(axis=1).max())

    return norm(X - X.mean(axis=0, keepdims=True)) / norm(X)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- spectrum (chapter 7) -------------------------------------------------------------------------

def test_spectrum_view_pattern_matches_numpy():
    v = E.spectrum_view(0.07, 0.04, scale=1.5, n_samples=50, **SMALL)
    d, T, seed = SMALL["d"], SMALL["T"], SMALL["seed"]
    W = 1.5 * random_qk(d, 0.07, 0.04, seed=seed, exact=True).double().numpy()
    X = random_walk_tokens(16, T, d, seed=seed + 2).numpy()
    np.testing.assert_allclose(v.pattern, np_softmax_causal(X[0] @ W @ X[0].T / math.sqrt(d)), rtol=1e-5, atol=1e-7)
    assert v.pattern.shape == (T, T) and v.profile.shape == (T,) and v.snr.shape == (T,)
    assert np.all(np.triu(v.pattern, 1) == 0)
    assert v.kappa == pytest.approx(0.07 / math.hypot(0.07, 0.04))
    assert 0 <= v.entropy <= math.log(T) and 0 <= v.share <= 1
    assert v.support == pytest.approx(v.profile.sum())
    np.testing.assert_allclose(v.residual_in, np.mean([np_residual(x) for x in X]), rtol=1e-6)


def test_spectrum_view_profile_limits():
    """Tiny logits: sparsemax keeps every key and softmax is uniform. Huge logits: one key."""
    tiny = E.spectrum_view(1.0, 1.0, scale=1e-9, n_samples=40, **SMALL)
    np.testing.assert_allclose(tiny.profile, 1.0)
    assert tiny.entropy == pytest.approx(math.log(8), abs=1e-4)
    huge = E.spectrum_view(1.0, 1.0, scale=1e6, n_samples=40, **SMALL)
    assert huge.support == pytest.approx(1.0)
    assert huge.entropy < 0.05


def test_spectrum_view_concentration_localizes():
    """Chapter 7's claim at d = T = 64: a concentrated spectrum puts the support in the last 8 keys."""
    conc = E.spectrum_view(1.0, 0.1, n_samples=200, seed=0)
    spread = E.spectrum_view(0.01, 0.1, n_samples=200, seed=0)
    assert conc.window == 8 and conc.share > 0.95
    assert spread.share < 0.6 and spread.kappa < 0.11


def test_spectrum_view_iid_tokens_and_zero_spectrum():
    v = E.spectrum_view(1.0, 0.0, tokens="iid", n_samples=100, d=32, T=32, seed=1)
    assert v.window == 1 and v.share > 0.95  # i.i.d.: the query's own key
    X = gaussian_tokens(16, 32, 32, seed=3).numpy()
    np.testing.assert_allclose(v.residual_in, np.mean([np_residual(x) for x in X]), rtol=1e-6)
    zero = E.spectrum_view(0.0, 0.0, n_samples=20, **SMALL)
    assert math.isnan(zero.kappa) and np.isnan(zero.snr).all()
    np.testing.assert_allclose(zero.profile, 1.0)  # all logits 0: every key in the support


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(mean=1.0, std=-1.0), ValueError),
        (dict(mean=float("nan"), std=1.0), ValueError),
        (dict(mean=1.0, std=1.0, scale=0.0), ValueError),
        (dict(mean=1.0, std=1.0, tokens="gaussian"), ValueError),
        (dict(mean="1", std=1.0), TypeError),
        (dict(mean=1.0, std=1.0, T=1), ValueError),
        (dict(mean=1.0, std=1.0, d=2.5), TypeError),
    ],
)
def test_spectrum_view_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        E.spectrum_view(**kwargs)


# --- scale / temperature (chapters 1 and 5) -------------------------------------------------------

def test_scale_view_two_collapses():
    small = E.scale_view(1e-4, **SMALL)
    np.testing.assert_allclose(small.pattern, 1 / 8, atol=1e-4)  # uniform rows
    assert small.entropy == pytest.approx(1.0, abs=1e-6)
    assert small.residual < 1e-3  # uniform attention without a mask: one token, repeated
    big = E.scale_view(1e4, **SMALL)
    assert big.entropy < 1e-3
    assert np.allclose(big.pattern.max(axis=1), 1.0, atol=1e-6)  # one-hot rows
    X = gaussian_tokens(16, 8, 8, seed=SMALL["seed"] + 1).numpy()
    np.testing.assert_allclose(small.residual_in, np.mean([np_residual(x) for x in X]), rtol=1e-6)


def test_scale_view_curves_and_mask():
    v = E.scale_view(1.0, causal=True, sweep=(0.01, 1.0, 100.0), **SMALL)
    assert np.all(np.triu(v.pattern, 1) == 0)
    assert v.sweep.tolist() == [0.01, 1.0, 100.0]
    assert v.sweep_entropy[0] > v.sweep_entropy[1] > v.sweep_entropy[2]  # hotter is flatter
    assert v.sweep_entropy[1] == pytest.approx(v.entropy)  # the curve passes through the current point
    with pytest.raises(ValueError):
        E.scale_view(-1.0)
    with pytest.raises(ValueError):
        E.scale_view(1.0, sweep=())


# --- depth (chapter 3) ----------------------------------------------------------------------------

def test_depth_view_collapse_and_skip():
    v = E.depth_view(6, d=16, T=16, n_seq=5, seed=0)
    assert set(v.residuals) == {"attention", "skip", "mlp", "full"}
    assert all(r.shape == (7,) for r in v.residuals.values())
    X0 = gaussian_tokens(5, 16, 16, seed=1).numpy()
    np.testing.assert_allclose(v.residuals["attention"][0], np.median([np_residual(x) for x in X0]), rtol=1e-6)
    assert v.residuals["attention"][-1] < 1e-8  # pure attention: rank one within a few layers
    assert v.residuals["skip"][-1] > 0.05  # the skip connection keeps the tokens apart
    assert np.allclose(np.diag(v.cosine_attn), 1) and np.allclose(v.cosine_attn, 1, atol=1e-6)


def test_depth_view_matches_chapter_3_stacks():
    """The explorer runs qklab.collapse's networks: same weights, same residuals."""
    from qklab.collapse import depth_residuals

    v = E.depth_view(5, qk_gain=1.5, causal=True, d=8, T=8, n_seq=3, seed=2, max_depth=5)
    X = gaussian_tokens(3, 8, 8, seed=3)
    ref = depth_residuals(X, 5, "skip", causal=True, seed=2, qk_gain=1.5)  # (3, 6)
    np.testing.assert_allclose(v.residuals["skip"], ref.median(dim=0).values.numpy(), rtol=1e-10)


def test_depth_view_is_a_prefix_of_a_deeper_stack():
    short, deep = E.depth_view(2, **SMALL), E.depth_view(5, **SMALL)
    for block in short.residuals:
        np.testing.assert_allclose(short.residuals[block], deep.residuals[block][:3])
    with pytest.raises(ValueError):
        E.depth_view(0)
    with pytest.raises(TypeError):
        E.depth_view(2.0)
    with pytest.raises(ValueError):
        E.depth_view(2, qk_gain=-1.0)


# --- figures --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make",
    [
        lambda: E.spectrum_explorer(0.1, 0.05, n_samples=20, **SMALL),
        lambda: E.scale_explorer(2.0, **SMALL),
        lambda: E.scale_explorer(2.0, knob="temperature", **SMALL),
        lambda: E.depth_explorer(3, **SMALL),
    ],
)
def test_figures_have_titles_and_labels(make):
    fig = make()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert fig.get_suptitle()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


# --- titles: rounded numbers and the text's symbols -----------------------------------------------

@pytest.mark.parametrize(
    "x, text",
    [(0.125893, "0.126"), (2.0, "2"), (0.0, "0"), (1e-3, "0.001"), (2.5e-4, "2.5e-04"), (1.234e-16, "1.2e-16"),
     (-0.5, "-0.5"), (12345.0, "1.2e+04"), (float("nan"), "undefined"), (64.0, "64")],
)
def test_fmt_rounds_for_a_reader(x, text):
    assert common.fmt(x) == text


def test_fmt_never_prints_a_small_number_as_zero():
    for x in np.logspace(-20, 0, 41):
        assert float(common.fmt(x)) == pytest.approx(x, rel=0.06), x  # it reads back as itself, 2+ digits


def _numbers(line: str) -> list[str]:
    import re

    return re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", line)


@pytest.mark.parametrize(
    "lines",
    [
        lambda: spectrum.spectrum_title(E.spectrum_view(0.0123456, 0.00512345, n_samples=20, **SMALL)),
        lambda: scale.scale_title(E.scale_view(1.2345678, **SMALL), "temperature"),
        lambda: scale.scale_title(E.scale_view(1.2345678, **SMALL), "scale"),
        lambda: depth.depth_title(E.depth_view(6, **SMALL)),
    ],
)
def test_titles_are_short_rounded_and_use_symbols(lines):
    lines = lines()
    for line in lines:
        assert len(line) <= 52, f"too long for a phone: {line!r}"
        for num in _numbers(line):  # at most 3 significant digits, or 2 in scientific notation
            mantissa = num.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
            assert len(mantissa) <= 3, f"unrounded number {num} in {line!r}"
        for word in ("kappa", "tau", "theta", "sqrt", "sigma"):
            assert word not in line.lower(), line
    assert not any("0.00" in n and float(n) == 0 for line in lines for n in _numbers(line))


def test_spectrum_title_gives_the_variance_and_the_symbols():
    v = E.spectrum_view(0.01, 0.005, n_samples=20, **SMALL)
    text = " ".join(spectrum.spectrum_title(v))
    assert "s = 0.005" in text and "s² = 2.5e-05" in text
    assert f"κ = {v.kappa:.3g}" in text and "√d κ = " in text


def test_depth_title_prints_tiny_residuals_in_scientific_notation():
    v = E.depth_view(3, **SMALL)  # pure attention at about 1e-6 after 3 layers
    text = " ".join(depth.depth_title(v))
    tiny = v.residuals["attention"][-1]
    assert 0 < tiny < 1e-3 and f"attention only {tiny:.1e}," in text


def test_depth_title_says_zero_for_rounding_noise():
    v = E.depth_view(12, **SMALL)  # pure attention collapses to float64 rounding (its digits vary by CPU)
    assert v.residuals["attention"][-1] < depth.ROUNDING
    assert "attention only ≈ 0," in " ".join(depth.depth_title(v))


# --- static explorers (plotly slider) -------------------------------------------------------------

def _visible_steps(ex: E.StaticExplorer) -> list[list[int]]:
    steps = ex.figure.layout.sliders[0].steps
    return [[i for i, shown in enumerate(step.args[0]["visible"]) if shown] for step in steps]


def test_spectrum_static_grid_matches_the_pure_function():
    values = (0.0, 0.01, 0.08)
    ex = E.spectrum_static("std", values, mean=0.01, n_samples=30, **SMALL)
    assert [v.std for v in ex.views] == list(values)
    groups = _visible_steps(ex)
    assert groups == [[0, 1], [2, 3], [4, 5]]  # each step shows its own map and profile
    for k, v in enumerate(ex.views):
        ref = E.spectrum_view(0.01, values[k], n_samples=30, **SMALL)
        heat, prof = (ex.figure.data[i] for i in groups[k])
        np.testing.assert_allclose(np.array(heat.z), ref.pattern, atol=6e-4)
        np.testing.assert_allclose(np.array(prof.y), ref.profile, atol=6e-4)
    # the slider changes what is shown: the maps of two steps differ
    assert not np.allclose(np.array(ex.figure.data[0].z), np.array(ex.figure.data[4].z))
    # each step's title is that step's view, and the slider's labels are rounded
    assert [s.args[1]["title.text"] for s in ex.figure.layout.sliders[0].steps] == ["<br>".join(spectrum.spectrum_title(v)) for v in ex.views]
    assert [s.label for s in ex.figure.layout.sliders[0].steps] == ["0", "0.01", "0.08"]


def test_spectrum_static_can_slide_the_mean_through_zero():
    ex = E.spectrum_static("mean", (-0.05, 0.0, 0.05), start=0.0, std=0.01, n_samples=20, **SMALL)
    assert [v.mean for v in ex.views] == [-0.05, 0.0, 0.05]
    assert ex.figure.layout.sliders[0].active == 1
    assert ex.views[0].kappa == pytest.approx(-ex.views[2].kappa) and ex.views[1].kappa == 0


def test_static_explorer_displays_in_jupyterlab_and_in_the_book():
    """One MIME bundle: plotly's JSON (JupyterLab's plotly renderer) and HTML (the book)."""
    from myst_nb.core.render import get_mime_priority

    ex = E.scale_static((0.1, 10.0), **SMALL)
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "text/html", "text/plain"}
    spec = bundle["application/vnd.plotly.v1+json"]
    json.dumps(spec)  # JSON-serialisable as it is (notebook outputs are JSON)
    assert len(spec["data"]) == len(ex.figure.data) and spec["layout"]["sliders"][0]["active"] == ex.figure.layout.sliders[0].active
    assert spec["config"]["responsive"] is True
    # myst-nb's HTML builds pick text/html from this bundle, not plotly's JSON
    html_priority = get_mime_priority("html", [])
    chosen = next(m for m in html_priority if m in bundle)
    assert chosen == "text/html"


def test_static_html_is_offline_deferred_and_deterministic():
    ex = E.scale_static((0.1, 10.0), **SMALL)
    html = ex._repr_html_()
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html  # _ext/qklab_book.py looks for the class
    assert "<script src" not in html and "cdn" not in html.lower()  # plotly.js comes from the book
    assert "DOMContentLoaded" in html  # drawn after plotly.js loads, even with <script defer>
    assert ex.div_id in html and "qklab-explorer" in html and f'{ex.div_id}-fallback' in html
    assert E.scale_static((0.1, 10.0), **SMALL).div_id == ex.div_id  # same inputs, same ids
    assert "</script>" not in html.split("<script", 1)[1].split("</script>", 1)[0]  # no early close
    # The slider's steps travel inside the HTML as plotly JSON.
    spec = json.loads(ex.figure.to_json())
    assert len(spec["layout"]["sliders"][0]["steps"]) == 2
    assert json.dumps(spec["layout"]["sliders"][0]["steps"][1]["label"]) in html


@pytest.mark.parametrize("make", [
    lambda: E.spectrum_static("std", (0.0, 0.01), n_samples=20, **SMALL),
    lambda: E.scale_static((0.1, 10.0), **SMALL),
    lambda: E.depth_static((1, 3), **SMALL),
])
def test_layouts_keep_panels_titles_and_colour_bar_apart(make):
    """Wide: side by side, the colour bar between the heatmap and the other panel's axis. Narrow
    (a phone): stacked, nothing side by side but the heatmap and its colour bar."""
    ex = make()
    lay = ex.figure.layout
    heat = next(t for t in ex.figure.data if t.type == "heatmap")
    heat_axis = "xaxis" if heat.xaxis == "x" else "xaxis2"
    line_axis = "xaxis2" if heat_axis == "xaxis" else "xaxis"
    hx, lx = lay[heat_axis].domain, lay[line_axis].domain
    assert hx[1] < lx[0] or lx[1] < hx[0]  # wide: side by side
    bar = heat.colorbar.x
    assert hx[1] < bar < 1
    if hx[1] < lx[0]:  # colour bar between the panels: room for its ticks and the next y label
        assert lx[0] - bar > 0.15
    n = ex.narrow
    assert n["height"] > lay.height
    assert n["yaxis2.domain"][1] < n["yaxis.domain"][0]  # stacked
    assert n[f"{heat_axis}.domain"][1] < n["colorbar"]["colorbar.x"] < 0.9
    assert n["annotations[0].y"] == n["yaxis.domain"][1] and n["annotations[1].y"] == n["yaxis2.domain"][1]
    titles = [a.text for a in lay.annotations]
    assert all(len(t) <= 34 for t in titles), titles  # they fit a panel on a phone (checked in Chromium too)


def test_temperature_static_is_the_scale_grid_inverted():
    ex = E.scale_static((0.5, 4.0), knob="temperature", causal=True, **SMALL)
    assert [v.scale for v in ex.views] == [2.0, 0.25]
    assert [s.label for s in ex.figure.layout.sliders[0].steps] == ["0.5", "4"]
    ref = E.scale_view(0.25, causal=True, **SMALL)
    heat = ex.figure.data[_visible_steps(ex)[1][0]]
    np.testing.assert_allclose(np.array(heat.z), ref.pattern, atol=6e-5)
    assert 'data-explorer="temperature"' in ex.html
    assert "temperature θ" in ex.figure.layout.sliders[0].currentvalue.prefix
    with pytest.raises(ValueError):
        E.scale_static((1.0,), knob="tau")


def test_scale_static_opens_near_one():
    assert E.scale_static((0.03, 0.3, 3.0, 30.0), **SMALL).figure.layout.sliders[0].active == 2  # 3 is closer to 1 than 0.3
    assert E.scale_static((0.1, 1.0, 10.0), **SMALL).figure.layout.sliders[0].active == 1


def test_depth_static_steps_and_start():
    ex = E.depth_static((1, 3), **SMALL)
    assert [v.depth for v in ex.views] == [1, 3]
    groups = _visible_steps(ex)
    assert len(groups) == 2 and all(len(g) == 5 for g in groups)  # four curves and a heatmap
    assert len(ex.figure.data[groups[1][0]].y) == 4  # layers 0..3
    chapter = E.depth_static((1, 2, 3, 4, 6, 8, 12), d=8, T=8, n_seq=2)
    active = chapter.figure.layout.sliders[0].active
    assert chapter.views[active].depth >= 3  # not depth 1: the curves have parted ways
    shown = [ex_ for ex_ in _visible_steps(chapter)[active]]
    assert all(chapter.figure.data[i].visible for i in shown)
    assert chapter.figure.layout.title.text == chapter.figure.layout.sliders[0].steps[active].args[1]["title.text"]
    assert E.depth_static((1, 2, 5), start=5, **SMALL).figure.layout.sliders[0].active == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: E.spectrum_static("variance", (1.0,)),
        lambda: E.spectrum_static("std", (1.0,), std=2.0),
        lambda: E.spectrum_static("std", ()),
        lambda: E.spectrum_static("std", (0.0, 0.1), start=0.05),
        lambda: E.scale_static((1.0,), scale=2.0),
        lambda: E.scale_static((1.0, 2.0), start=3.0),
        lambda: E.depth_static((1,), depth=2),
        lambda: E.depth_static((1, 2), start=3),
    ],
)
def test_static_rejects_bad_grids(call):
    with pytest.raises(ValueError):
        call()


# --- widgets --------------------------------------------------------------------------------------

def _spy(monkeypatch, module, name):
    """Record the arguments of every call of `module.name` (still calling it)."""
    calls = []
    real = getattr(module, name)

    def wrapper(*a, **k):
        calls.append((a, k))
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_widgets_redraw_on_change(monkeypatch):
    """Each control change recomputes the view with the new value and redraws the figure (new PNG)."""
    pytest.importorskip("ipywidgets")
    calls = _spy(monkeypatch, spectrum, "spectrum_view")
    w = E.spectrum_widget(mean=0.01, std=0.001, n_samples=20, **SMALL)
    assert calls[-1][0][:4] == (0.01, 0.001, 1.0, "random_walk")  # drawn once on creation
    png = w.png
    assert png.startswith(b"\x89PNG")
    w.controls["std"].value = 1.0
    assert calls[-1][0][1] == 1.0 and w.png != png
    s_calls = _spy(monkeypatch, scale, "scale_view")
    s = E.scale_widget(**SMALL)
    s.controls["causal"].value = True
    assert s_calls[-1][1]["causal"] is True
    t = E.scale_widget(scale=0.5, knob="temperature", **SMALL)  # the slider shows theta = 2
    assert t.controls["value"].value == 2.0
    t.controls["value"].value = 10.0
    assert s_calls[-1][0][0] == pytest.approx(0.1)
    d_calls = _spy(monkeypatch, depth, "depth_view")
    dw = E.depth_widget(depth=4, **SMALL)
    dw.controls["depth"].value = 9
    assert d_calls[-1][0][0] == 9


def test_one_two_five_and_signed_grid():
    assert common.one_two_five(1e-3, 0.1) == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]
    assert common.one_two_five(0.01, 100)[0] == 0.01 and common.one_two_five(0.01, 100)[-1] == 100
    g = common.signed_grid(1e-4, 2.0)
    assert g == [-x for x in reversed(g)] and 0.0 in g and g == sorted(g)
    assert common.with_value([0.0, 1.0], 0.5) == [0.0, 0.5, 1.0] and common.with_value([0.0, 1.0], 1.0) == [0.0, 1.0]
    assert common.nearest([0.0, 1e-3, 1e-2], 3e-3) == 1e-3 and common.nearest([0.0, 1e-3], 0.0) == 0.0
    with pytest.raises(ValueError):
        common.one_two_five(1.0, 0.1)


def test_spectrum_sliders_reach_the_chapters_values():
    """Zero and negative means, s = 0 (kappa = 1) and the values chapter 7 names are slider stops."""
    means = spectrum.mean_stops()
    for m in (0.0, 0.01, -0.01, 0.001, 1e-4, 0.1, 1.0, -1.0):
        assert m in means, m
    stops = spectrum.spread_stops()
    sds, variances = [sd for sd, _ in stops], [var for _, var in stops]
    assert stops[0] == (0.0, 0.0)
    assert all(var == pytest.approx(sd**2, rel=1e-12) for sd, var in stops)  # the two units of one stop
    for sd in (0.001, 0.01, 0.02, 0.1, 1.0, 10.0):
        assert sd in sds, sd
    for var in (1e-8, 1e-6, 1e-4, 0.01, 1.0, 100.0):
        assert any(v == pytest.approx(var, rel=1e-12) for v in variances), var
    assert sds == sorted(sds) and len(set(sds)) == len(sds)


def test_spectrum_widget_controls_variance_zero_and_presets(monkeypatch):
    pytest.importorskip("ipywidgets")
    calls = _spy(monkeypatch, spectrum, "spectrum_view")
    w = E.spectrum_widget(mean=0.01, std=0.001, n_samples=20, **SMALL)
    mean, spread, knob = w.controls["mean"], w.controls["std"], w.knob
    assert type(mean).__name__ == "SelectionSlider" and mean.value == 0.01
    # the spread is shown as the variance by default; the switch relabels it as the sd, same stop
    assert knob.value == "variance" and spread.description == "variance s²" and spread.label == "1.0e-06"
    n = len(calls)
    knob.value = "sd"
    assert spread.value == 0.001 and spread.label == "0.001" and spread.description == "sd s"
    assert len(calls) == n  # relabelled only: the title gives both s and s², nothing to recompute
    # s = 0 is a stop: kappa = 1, no clamping
    spread.value = 0.0
    assert calls[-1][0][1] == 0.0
    assert "s = 0, s² = 0, κ = 1\n" in w.figure.get_suptitle()
    # zero and negative means
    mean.value = 0.0
    assert calls[-1][0][0] == 0.0
    mean.value = -0.5
    assert calls[-1][0][0] == -0.5
    # the chapter's cases: one click sets mean and spread and redraws once
    labels = [b.description for b in w.buttons]
    assert any("U shape" in label for label in labels) and any("κ = 1" in label for label in labels)
    for button, (_, values) in zip(w.buttons, spectrum.SPECTRUM_PRESETS):
        n = len(calls)
        button.click()
        assert len(calls) == n + 1
        assert calls[-1][0][:2] == (values["mean"], values["std"])
        assert w.values()["mean"] == values["mean"] and w.values()["std"] == values["std"]
    # a start value off the grid is added to it, not clamped
    odd = E.spectrum_widget(mean=0.0123, std=0.0031, n_samples=10, **SMALL)
    assert odd.values()["mean"] == 0.0123 and odd.values()["std"] == 0.0031


def test_profile_axis_shows_the_zero_mean_u_shape():
    """Chapter 7's m = 0, s = 1 profile: ends near 0.1, middle near 0.01. On a linear 0-1.05 axis
    the difference is under a tenth of the axis; on the explorer's square-root axis over a fifth."""
    v = E.spectrum_view(0.0, 1.0, n_samples=400, d=64, T=64, seed=0)
    ends = (v.profile[0] + v.profile[-1]) / 2
    middle = np.median(v.profile[16:48])
    assert 0.05 < ends < 0.3 and middle < 0.03  # the U
    height = float(spectrum.profile_axis(1.05))
    assert (ends - middle) / 1.05 < 0.1  # a linear axis: flat-looking
    assert (float(spectrum.profile_axis(ends)) - float(spectrum.profile_axis(middle))) / height > 0.15
    fig = E.spectrum_explorer(0.0, 1.0, n_samples=40, **SMALL)
    prof = fig.axes[1]
    assert prof.get_yscale() == "function" and prof.get_ylim() == (0, 1.05)
    assert "sqrt" in prof.get_ylabel()


def test_live_explorer_shows_the_figure_as_a_saved_image_output():
    """The figure is a display_data output with a display id, updated on each redraw: a saved
    notebook holds the last figure drawn (seen again after reopening without a kernel)."""
    pytest.importorskip("ipywidgets")
    w = E.scale_widget(**SMALL)
    updates = []

    class Handle:
        def update(self, obj, raw=False, metadata=None):
            updates.append((obj, raw, metadata))

    w.handle = Handle()
    w.controls["value"].value = 10.0
    (bundle, raw, metadata), = updates
    assert raw and set(bundle) == {"image/png", "text/plain"}
    import base64

    assert base64.b64decode(bundle["image/png"]) == w.png
    assert "logits × 10" in bundle["text/plain"]  # a reader of the text output sees the setting
    assert metadata["image/png"]["width"] == 660


def test_widget_display_shows_note_controls_and_figure(monkeypatch):
    pytest.importorskip("ipywidgets")
    import IPython.display

    shown = []

    def fake_display(*objs, raw=False, metadata=None, display_id=None, **kw):
        shown.append((objs, display_id))
        return "handle" if display_id else None

    monkeypatch.setattr(IPython.display, "display", fake_display)
    w = E.depth_widget(depth=2, **SMALL)
    w._ipython_display_()
    (note, _), (box, _), (figure, display_id) = shown
    assert "run this cell again" in note[0]["text/plain"] and "last one drawn" in note[0]["text/plain"]
    assert box[0] is w.box and display_id is True and "image/png" in figure[0]
    assert w.handle == "handle"


def test_depth_figure_fits_a_900_px_window_and_depth_moves_reuse_the_stack():
    pytest.importorskip("ipywidgets")
    w = E.depth_widget(depth=6, **SMALL)
    width, height = w.figure.get_size_inches() * w.dpi
    assert width <= 660 and height <= 500  # with the note and three controls (about 150 px) under 900 px
    before = depth._depth_run.cache_info()
    for L in (1, 12, 3):
        w.controls["depth"].value = L
    after = depth._depth_run.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 3


def test_widget_callbacks_draw_without_error():
    """The widgets draw for their start values and for zero and negative means and s = 0."""
    pytest.importorskip("ipywidgets")
    widgets = [
        E.spectrum_widget(n_samples=20, **SMALL),
        E.spectrum_widget(mean=0.0, std=1.0, n_samples=20, **SMALL),
        E.spectrum_widget(mean=-0.3, std=0.0, n_samples=20, **SMALL),
        E.scale_widget(knob="temperature", **SMALL),
        E.depth_widget(depth=3, **SMALL),
    ]
    for w in widgets:
        png = w.redraw()
        assert png.startswith(b"\x89PNG")
        assert w.figure.get_size_inches()[0] <= 6.6 + 1e-9  # the book's column
        assert not plt.get_fignums()  # not registered with pyplot: no second copy shown by the inline backend


# --- the website's chapter 7 explorer: mean and variance on a grid --------------------------------

def test_spectrum_static_grid_sliders_combine_mean_and_variance():
    means, variances = (0.0, 0.01), (0.0, 1e-4, 1.0)
    ex = E.spectrum_static_grid(means, variances, start=(0.01, 1e-4), n_samples=20, **SMALL)
    var_slider, mean_slider = ex.figure.layout.sliders
    assert var_slider.active == 1 and mean_slider.active == 1
    assert "variance" in var_slider.currentvalue.prefix and "mean" in mean_slider.currentvalue.prefix
    assert [s.label for s in var_slider.steps] == ["0", "1.0e-04", "1"]
    # the variance slider shows one group (map, profile, measurements) per variance
    groups = _visible_steps(ex)
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    # the first drawing is mean 0.01; the mean slider restyles every group to its mean
    for i, m in enumerate(means):
        data, traces = mean_slider.steps[i].args
        assert list(traces) == list(range(9)) and mean_slider.steps[i].method == "restyle"
        for j, var in enumerate(variances):
            ref = E.spectrum_view(m, math.sqrt(var), n_samples=20, **SMALL)
            np.testing.assert_allclose(np.array(data["z"][3 * j]) / 1000, ref.pattern, atol=6e-4)
            np.testing.assert_allclose(data["customdata"][3 * j + 1], ref.profile, atol=6e-4)
            np.testing.assert_allclose(data["y"][3 * j + 1], np.sqrt(ref.profile), atol=1e-3)
            assert data["text"][3 * j + 2] == [spectrum.grid_stats(ref)]
    shown = E.spectrum_view(0.01, 0.01, n_samples=20, **SMALL)
    np.testing.assert_allclose(np.array(ex.figure.data[3].z) / 1000, shown.pattern, atol=6e-4)
    assert ex.figure.data[5].text == (spectrum.grid_stats(shown),)
    assert "s = 0.01" in spectrum.grid_stats(shown) and "κ = 0.707" in spectrum.grid_stats(shown)
    assert len(ex.views) == 6


def test_spectrum_static_grid_rejects_bad_grids():
    with pytest.raises(ValueError):
        E.spectrum_static_grid((0.0,), (-1.0,), start=(0.0, -1.0))
    with pytest.raises(ValueError):
        E.spectrum_static_grid((0.0,), (0.0,), start=(0.5, 0.0))
    with pytest.raises(ValueError):
        E.spectrum_static_grid((0.0,), (0.0,), start=(0.0, 0.0), std=1.0)


def test_spectrum_static_grid_layout_has_room_for_two_sliders():
    ex = E.spectrum_static_grid((0.0, 0.01), (0.0, 1.0), start=(0.0, 0.0), n_samples=10, **SMALL)
    one = E.spectrum_static("std", (0.0, 1.0), mean=0.0, n_samples=10, **SMALL)
    extra = spectrum._SLIDER_PX
    lay, lay1 = ex.figure.layout, one.figure.layout

    def plot_height(lay, height, margin):
        return height - margin["t"] - margin["b"]

    assert lay.margin.b == lay1.margin.b + extra  # the second slider below the first
    assert plot_height(lay, lay.height, lay.margin) == plot_height(lay1, lay1.height, lay1.margin)  # panels as tall
    assert ex.narrow["margin"]["b"] == one.narrow["margin"]["b"] + extra
    assert plot_height(None, ex.narrow["height"], ex.narrow["margin"]) == plot_height(None, one.narrow["height"], one.narrow["margin"])
    assert ex.figure.layout.sliders[1].pad.t == ex.figure.layout.sliders[0].pad.t + extra
