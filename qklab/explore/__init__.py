"""Explorers: turn a knob (spectrum mean, spread, scale, temperature, depth) and watch attention change.

Each explorer comes in four layers, so that tests, notebooks and the static website all share the
same computation:

- a *pure data function* (`spectrum_view`, `scale_view`, `depth_view`): parameters in, a frozen
  dataclass of numpy arrays and numbers out, seeded, no plotting;
- a *figure function* (`spectrum_explorer`, `scale_explorer`, `depth_explorer`): parameters in, a
  matplotlib `Figure` out (it calls the data function);
- a *live widget* (`spectrum_widget`, `scale_widget`, `depth_widget`): a `LiveExplorer`, controls
  whose stops are exact values (0 and the chapters' values among them) that redraw one figure in
  place on every change (about 0.1 s on 2 cores; `benchmarks/bench_explorers.py`) and show it as
  an image output with a display id, so a saved notebook keeps the last figure; needs a running
  kernel, and says so above itself (a reopened notebook shows that figure, and "Error displaying
  widget" for the controls, until the cell runs again);
- a *static explorer* (`spectrum_static`, `scale_static`, `depth_static`): the data function on a
  small grid of one parameter, drawn as a plotly figure with a slider (a `StaticExplorer`;
  chapter 7's `spectrum_static_grid` has two sliders, the mean and the variance). It
  works with no kernel and no network, in JupyterLab (plotly's MIME type) and in the built book
  (HTML; the book serves plotly.js from a local file).

Modules: `spectrum` (chapter 7: attention map, sparsemax support profile, entropy and residual
for a spectrum of chosen mean and spread), `scale` (chapters 1 and 5: logit scale or temperature
θ, entropy and rank residual), `depth` (chapter 3: token residual per layer of chapter 3's random
stacks), `slider_grid` (the plotly slider figure and its display), `common` (input checks, number
formatting, slider grids, `LiveExplorer`). Every public name is importable from `qklab.explore`. Not here: the
science itself (`qklab.attention`, `qklab.metrics`, `qklab.theory`, `qklab.collapse`); this
package only wires those into figures.
"""

from qklab.explore.depth import DepthView, depth_explorer, depth_static, depth_view, depth_widget
from qklab.explore.scale import ScaleView, scale_explorer, scale_static, scale_view, scale_widget
from qklab.explore.common import LiveExplorer
from qklab.explore.slider_grid import StaticExplorer
from qklab.explore.spectrum import SpectrumView, spectrum_explorer, spectrum_static, spectrum_static_grid, spectrum_view, spectrum_widget

__all__ = [
    "SpectrumView",
    "spectrum_view",
    "spectrum_explorer",
    "spectrum_widget",
    "spectrum_static",
    "spectrum_static_grid",
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
    "LiveExplorer",
]
