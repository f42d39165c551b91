"""The book's precomputed explorers: a plotly figure with a slider, and how it is displayed.

Here: `slider_figure` (two panels, a heatmap and a line plot, one group of traces per slider step,
a multi-line title per step), its two layouts (`wide`: panels side by side, for a laptop's 690 px
text column and JupyterLab; `narrow`: panels stacked, for a phone, chosen in the browser when the
figure is narrower than 560 px), and `StaticExplorer`, which displays the figure

- in JupyterLab (and VS Code) through plotly's own MIME type `application/vnd.plotly.v1+json`,
  drawn by the plotly renderer that ships with the `plotly` package: no plotly.js needed in the
  page, no kernel needed to move the slider;
- in the built book as `text/html` (myst-nb's HTML builds prefer it): a `<div
  class="plotly-graph-div">` and a script that draws it once plotly.js has loaded (the book serves
  plotly.js from a local file, `_ext/qklab_book.py`, possibly with `defer`). Where plotly.js is
  missing (a front end that renders only the HTML), the script shows a note instead of a blank box.

Not here: what an explorer computes or shows (`qklab.explore.spectrum`, `.scale`, `.depth`).
Used by chapters 1, 3, 5 and 7 through those modules.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Any, Sequence

import numpy as np

NARROW_BELOW_PX = 560  # narrower figures stack their panels
PLOTLY_MIME = "application/vnd.plotly.v1+json"

FALLBACK_NOTE = (
    "This precomputed explorer needs plotly.js, which the built book and JupyterLab provide but this "
    "viewer does not. In a notebook, run the live widget (the next cell) instead."
)


def sqrt_viridis() -> list:
    """Viridis with its colours at `sqrt`-spaced stops: weights near 0.01-0.1 stay visible.

    The heatmap still holds the true weights (hover and colour bar read true values); only the
    colour map is stretched, as matplotlib's `PowerNorm(0.5)` does in the figure functions.
    """
    from plotly.colors import sample_colorscale

    stops = [(k / 10) ** 2 for k in range(11)]
    colors = sample_colorscale("Viridis", [k / 10 for k in range(11)])
    return [[p, c] for p, c in zip(stops, colors)]


def rounded(a: np.ndarray, digits: int = 4) -> np.ndarray:
    """Rounded float32 copy: plotly embeds numpy arrays as compact base64 typed arrays."""
    return np.round(np.asarray(a, dtype=np.float64), digits).astype(np.float32)


def grid(values: Sequence[Any], name: str) -> list:
    """`values` as a list of 1 to 40 slider values, or a ValueError naming `name`."""
    vals = list(values)
    if not 1 <= len(vals) <= 40:
        raise ValueError(f"{name} must hold between 1 and 40 slider values, got {len(vals)}")
    return vals


def start_index(values: Sequence[Any], start: Any, name: str) -> int:
    """Index of `start` in `values` (the step the slider opens at), or a ValueError naming `name`."""
    vals = list(values)
    if start not in vals:
        raise ValueError(f"{name}={start!r} must be one of the slider values {vals}")
    return vals.index(start)


# --- layouts ------------------------------------------------------------------------------------

_TITLE_LINE_PX = 16  # 12 px text, one title line
_TOP_PX = 44  # above the title lines: breathing room; below them: the panel titles


def _layouts(heat_col: int, title_lines: int, legend_items: int) -> tuple[dict, dict]:
    """Layout updates of the two arrangements (axis domains, panel titles, colour bar, size).

    `heat_col` (1 or 2) is the panel of the heatmap; the other one is the line plot. Returned as
    flat plotly `relayout` keys, so the browser can switch between them, plus the colour bar of
    the heatmap traces as `restyle` keys under `"colorbar"`.
    """
    top = _TOP_PX + _TITLE_LINE_PX * title_lines
    line_col = 3 - heat_col
    # wide: side by side; the heatmap keeps its colour bar just right of it
    if heat_col == 1:
        x_heat, x_line, bar_x = [0.0, 0.36], [0.56, 1.0], 0.375
    else:
        x_line, x_heat, bar_x = [0.0, 0.46], [0.6, 0.9], 0.915
    wide = {
        "height": top + 290 + (165 if legend_items else 135),
        "margin": dict(t=top, b=165 if legend_items else 135, l=60, r=20),
        f"xaxis{'' if heat_col == 1 else 2}.domain": x_heat,
        f"xaxis{'' if line_col == 1 else 2}.domain": x_line,
        "yaxis.domain": [0.0, 1.0],
        "yaxis2.domain": [0.0, 1.0],
        "colorbar": {"colorbar.x": bar_x, "colorbar.y": 0.5, "colorbar.len": 1.0},
    }
    # narrow: stacked, the first panel on top; the heatmap leaves room for its colour bar
    narrow = {
        "height": top + 520 + 150 + 21 * legend_items,  # a phone shows one legend entry a line
        "margin": dict(t=top, b=150 + 21 * legend_items, l=55, r=10),
        f"xaxis{'' if heat_col == 1 else 2}.domain": [0.0, 0.8],
        f"xaxis{'' if line_col == 1 else 2}.domain": [0.0, 1.0],
        "yaxis.domain": [0.58, 1.0],
        "yaxis2.domain": [0.0, 0.41],
        "colorbar": {"colorbar.x": 0.83, "colorbar.y": 0.79 if heat_col == 1 else 0.205, "colorbar.len": 0.42},
    }
    for lay, stacked in ((wide, False), (narrow, True)):
        lay["title.y"] = 1 - 24 / lay["height"]  # the first line 12 px below the top edge
        for k in (0, 1):  # the panel titles, left-aligned on their panel
            x = lay[f"xaxis{'' if k == 0 else 2}.domain"][0]
            y = lay[f"yaxis{'' if k == 0 else 2}.domain"][1] if stacked else 1.0
            lay[f"annotations[{k}].x"] = x
            lay[f"annotations[{k}].y"] = y
    return wide, narrow


def slider_figure(
    steps: list[tuple[str, str, list[tuple[Any, int]]]],
    titles: Sequence[str],
    param: str,
    heat_col: int = 1,
    active: int = 0,
    legend: bool = True,
) -> tuple[Any, dict]:
    """A two-panel plotly figure whose slider shows one group of traces per step.

    `steps`: (slider label, figure title with `<br>` line breaks, [(trace, panel 1 or 2), ...])
    per step; `titles`: the two panel titles (short: they must fit a panel on a phone); `param`:
    the slider's name; `heat_col`: the panel holding the heatmap; `active`: the step shown first.
    Returns the figure (wide layout) and the narrow layout's `relayout`/`restyle` updates.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if heat_col not in (1, 2):
        raise ValueError(f"heat_col must be 1 or 2, got {heat_col}")
    if not 0 <= active < len(steps):
        raise ValueError(f"active must index one of the {len(steps)} steps, got {active}")
    lines = max(t.count("<br>") + 1 for _, t, _ in steps)
    legend_items = len({t.name for t, _ in steps[active][2] if t.type != "heatmap"}) if legend else 0
    wide, narrow = _layouts(heat_col, lines, legend_items)
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles))
    owner: list[int] = []
    for k, (_, _, traces) in enumerate(steps):
        for trace, col in traces:
            trace.visible = k == active
            if trace.type == "heatmap":
                trace.colorbar.update(thickness=12, xanchor="left", yanchor="middle", title_side="top", outlinewidth=0)
            fig.add_trace(trace, row=1, col=col)
            owner.append(k)
    slider_steps = [
        dict(label=label, method="update", args=[{"visible": [o == k for o in owner]}, {"title.text": title}])
        for k, (label, title, _) in enumerate(steps)
    ]
    fig.update_annotations(xanchor="left", yanchor="bottom", font=dict(size=12), yshift=6)
    fig.update_layout(
        template="plotly_white",
        font=dict(size=12),
        title=dict(
            text=steps[active][1], font=dict(size=12), xref="paper", x=0.0, xanchor="left",
            yref="container", yanchor="top",
        ),
        sliders=[dict(
            active=active, currentvalue=dict(prefix=f"{param} = ", font=dict(size=12)), pad=dict(t=48, l=0, r=0),
            len=1.0, x=0.0, font=dict(size=11), steps=slider_steps,
        )],
        showlegend=legend,
        legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0.0, xanchor="left", font=dict(size=11)),
    )
    bar = wide.pop("colorbar")
    fig.update_layout({k: v for k, v in wide.items()})
    for trace in fig.data:
        if trace.type == "heatmap":
            trace.colorbar.update(x=bar["colorbar.x"], y=bar["colorbar.y"], len=bar["colorbar.len"])
    return fig, narrow


# --- display: JupyterLab (plotly MIME type) and the book (HTML) ------------------------------------

_DRAW_JS = """
(function () {
  var id = %(id)s, spec = %(spec)s, narrowBelow = %(narrow_below)d;
  function draw() {
    var gd = document.getElementById(id);
    if (!gd) return;
    if (typeof window.Plotly === "undefined") {
      gd.style.display = "none";
      document.getElementById(id + "-fallback").style.display = "block";
      return;
    }
    var heat = [];
    spec.data.forEach(function (t, i) { if (t.type === "heatmap") heat.push(i); });
    var wide = spec.wide, narrow = spec.narrow, mode = null;
    function fit() {
      var want = gd.offsetWidth < narrowBelow ? "narrow" : "wide";
      if (want === mode) return;
      mode = want;
      var lay = Object.assign({}, want === "narrow" ? narrow : wide);
      var bar = lay.colorbar; delete lay.colorbar;
      if (heat.length) window.Plotly.restyle(gd, bar, heat);
      window.Plotly.relayout(gd, lay);
    }
    window.Plotly.newPlot(gd, spec.data, spec.layout, spec.config).then(function () {
      fit();
      window.addEventListener("resize", fit);
      keys(gd);
    });
  }
  // Plotly's sliders take the mouse only: each gets a native range input (keyboard, touch, screen
  // readers: a label, the step's value as aria-valuetext), and the two stay in step both ways.
  function keys(gd) {
    var box = document.getElementById(id + "-keys");
    if (!box) return;
    var inputs = [];
    (gd.layout.sliders || []).forEach(function (slider, i) {
      var row = document.createElement("div"), label = document.createElement("label");
      var input = document.createElement("input"), shown = document.createElement("output");
      input.type = "range"; input.min = 0; input.max = slider.steps.length - 1; input.step = 1;
      input.id = id + "-key-" + i;
      label.htmlFor = input.id;
      label.textContent = (slider.currentvalue && slider.currentvalue.prefix || "value = ").replace(/\s*=\s*$/, "");
      shown.htmlFor = input.id;
      function show(k) {
        input.value = k;
        input.setAttribute("aria-valuetext", slider.steps[k].label);
        shown.textContent = slider.steps[k].label;
      }
      input.addEventListener("input", function () {
        var k = Number(input.value), step = gd.layout.sliders[i].steps[k], args = step.args || [];
        var done = step.method === "restyle" ? window.Plotly.restyle(gd, args[0], args[1])
          : step.method === "relayout" ? window.Plotly.relayout(gd, args[0])
          : window.Plotly.update(gd, args[0] || {}, args[1] || {});
        var active = {}; active["sliders[" + i + "].active"] = k;
        Promise.resolve(done).then(function () { return window.Plotly.relayout(gd, active); });
        show(k);
      });
      show(slider.active || 0);
      row.appendChild(label); row.appendChild(input); row.appendChild(shown);
      box.appendChild(row);
      inputs.push(show);
    });
    gd.on("plotly_sliderchange", function () {
      gd.layout.sliders.forEach(function (s, i) { if (inputs[i]) inputs[i](s.active || 0); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
"""


class StaticExplorer:
    """A precomputed explorer: a plotly figure with a slider, displayable in JupyterLab and in the book.

    `figure`: the plotly figure (wide layout); `views`: the data of every slider step (the
    explorer's view dataclasses, in slider order); `narrow`: the phone layout's updates;
    `div_id`: a stable id (same inputs, same id); `html`: the fragment the book embeds.
    Displaying it gives a MIME bundle with plotly's JSON (JupyterLab draws it with plotly's
    renderer), the HTML (the book) and a text line.
    """

    def __init__(self, figure: Any, views: list, name: str, narrow: dict) -> None:
        import plotly.io as pio

        self.figure = figure
        self.views = views
        self.name = name
        self.narrow = narrow
        self.config = {"displaylogo": False, "displayModeBar": False, "responsive": True}
        fig_json = pio.to_json(figure, validate=False, remove_uids=True)
        self._plotly = json.loads(fig_json)
        self._plotly["config"] = dict(self.config)
        digest = hashlib.sha1(fig_json.encode()).hexdigest()[:10]
        self.div_id = f"qklab-{name}-{digest}"
        self.html = self._html(fig_json)

    def _html(self, fig_json: str) -> str:
        spec = json.loads(fig_json)
        wide_keys = {k: v for k, v in self.narrow.items() if k != "colorbar"}
        wide = {k: _layout_value(spec["layout"], k) for k in wide_keys}
        bars = [t.get("colorbar", {}) for t in spec["data"] if t.get("type") == "heatmap"]
        wide["colorbar"] = {f"colorbar.{k}": bars[0].get(k) for k in ("x", "y", "len")} if bars else {}
        payload = {"data": spec["data"], "layout": spec["layout"], "config": self.config, "wide": wide, "narrow": self.narrow}
        script = _DRAW_JS % {
            "id": json.dumps(self.div_id),
            "spec": json.dumps(payload, separators=(",", ":")).replace("</", "<\\/"),
            "narrow_below": NARROW_BELOW_PX,
        }
        return (
            f'<div class="qklab-explorer" data-explorer="{self.name}">'
            f'<div id="{self.div_id}" class="plotly-graph-div" style="width:100%"></div>'
            f'<div id="{self.div_id}-keys" class="qklab-explorer-keys"></div>'
            f'<p id="{self.div_id}-fallback" style="display:none">{html.escape(FALLBACK_NOTE)}</p>'
            f'<script type="text/javascript">{script}</script></div>'
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {PLOTLY_MIME: self._plotly, "text/html": self.html, "text/plain": repr(self)}

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<StaticExplorer {self.div_id}: {len(self.views)} slider steps>"


def _layout_value(layout: dict, key: str) -> Any:
    """The value at a plotly `relayout` key (`"xaxis2.domain"`, `"annotations[1].x"`) in a layout dict."""
    node: Any = layout
    for part in key.split("."):
        if "[" in part:
            name, idx = part[:-1].split("[")
            node = node[name][int(idx)]
        else:
            node = node.get(part)
    return node
