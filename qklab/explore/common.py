"""What every explorer shares: input checks, number formatting for titles, and the live widgets' parts.

Here: `finite` and `tokens_arg` (bad input becomes an error naming the argument), `fmt` (numbers
as a reader reads them: `0.126`, `1.0e-03`, never `0.125893` or `0.00`), the slider grids of the
live widgets (`one_two_five`, `signed_grid`, `with_value`, `nearest`: values a drag lands on
exactly, 0 and the chapters' values included), and the live widgets themselves (`LiveExplorer`:
controls that redraw one matplotlib figure in place and show it as a saved image output;
`log_slider`, `grid_slider`, `rerun_note`). Not here: any
explorer's computation or figure (`qklab.explore.spectrum`, `.scale`, `.depth`) or the plotly
slider figures of the book (`qklab.explore.slider_grid`). Used by chapters 1, 3, 5 and 7 through
those modules.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

TokenModel = Literal["random_walk", "iid"]
TOKEN_LABEL = {"random_walk": "random-walk tokens", "iid": "i.i.d. Gaussian tokens"}

RERUN_NOTE = (
    "Live explorer: it needs a running Python kernel. If you see 'Error displaying widget: model "
    "not found' below, the notebook was reopened without running this cell: the figure below it is "
    "the last one drawn; run this cell again to get the controls back."
)


def finite(value: object, name: str, positive: bool = False, nonneg: bool = False) -> float:
    """`value` as a float, or a TypeError/ValueError naming `name` (not a number, NaN/inf, sign)."""
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


def tokens_arg(tokens: object) -> str:
    """`tokens` if it names a token model of `qklab.theory` ('random_walk' or 'iid'), else a ValueError."""
    if tokens not in TOKEN_LABEL:
        raise ValueError(f"tokens must be 'random_walk' or 'iid', got {tokens!r}")
    return str(tokens)


def fmt(x: float, sig: int = 3) -> str:
    """A number for a title: `sig` significant digits, scientific notation outside [0.001, 10^4).

    `fmt(0.125893) == "0.126"`, `fmt(0.001) == "0.001"`, `fmt(2.5e-4) == "2.5e-04"`, `fmt(2.0) == "2"`, `fmt(0) == "0"`,
    `fmt(nan) == "undefined"` (e.g. kappa of the zero spectrum). Small numbers keep two digits in
    scientific notation, so that a residual of 1e-3 never reads "0.00".
    """
    x = float(x)
    if math.isnan(x):
        return "undefined"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{sig}g}"
    return f"{x:.1e}"


# --- slider grids: values a drag lands on exactly ------------------------------------------------

def one_two_five(lo: float, hi: float) -> list[float]:
    """The values 1, 2, 5 times a power of ten from `lo` to `hi` (both > 0), ends included if on the series.

    `one_two_five(1e-3, 0.1) == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]`. Values are rounded
    to 3 significant digits, so that `0.01` is `0.01` and not `0.010000000000000002`.
    """
    lo, hi = finite(lo, "lo", positive=True), finite(hi, "hi", positive=True)
    if lo > hi:
        raise ValueError(f"lo must be <= hi, got {lo} > {hi}")
    out = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for c in (1, 2, 5):
            x = float(f"{c * 10.0 ** k:.3g}")
            if lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9):
                out.append(x)
    return out


def signed_grid(lo: float, hi: float) -> list[float]:
    """A symmetric log grid through 0: `-hi .. -lo, 0, lo .. hi` on the 1-2-5 series (`one_two_five`)."""
    pos = one_two_five(lo, hi)
    return [-x for x in reversed(pos)] + [0.0] + pos


def with_value(values: Sequence[float], x: float) -> list[float]:
    """`values` (sorted) with `x` added where it belongs if it is not already one of them."""
    vals = sorted(float(v) for v in values)
    x = float(x)
    if not any(math.isclose(v, x, rel_tol=1e-12, abs_tol=0.0) or v == x for v in vals):
        vals.append(x)
        vals.sort()
    return vals


def nearest(values: Sequence[float], x: float) -> float:
    """The value of `values` nearest to `x`, on a log scale for positive values (0 goes to 0 if present)."""
    vals = list(values)
    if not vals:
        raise ValueError("values must not be empty")

    def dist(v: float) -> float:
        if v > 0 and x > 0:
            return abs(math.log(v / x))
        return abs(v - x) * 1e6 + (0 if v == x else 1.0)

    return min(vals, key=dist)


# --- live widgets (need a kernel) ------------------------------------------------------------------

def rerun_note() -> None:
    """Display, above a live widget, a note that survives reopening the notebook (plain HTML, not a widget)."""
    from IPython.display import display

    html = f'<p style="font-size: 0.85em; color: #555; margin: 0.2em 0">{RERUN_NOTE}</p>'
    display({"text/html": html, "text/plain": RERUN_NOTE}, raw=True)


def log_slider(value: float, lo: float, hi: float, description: str):
    """A slider on a log scale from `lo` to `hi` (both > 0), starting at `value` (clipped into range)."""
    import ipywidgets

    value = min(max(value, lo), hi)
    return ipywidgets.FloatLogSlider(
        value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
        description=description, continuous_update=False, readout_format=".3",
        style={"description_width": "initial"}, layout={"width": "min(100%, 480px)"},
    )


def grid_slider(values: Sequence[float], value: float, description: str):
    """A slider over the given values only (sorted; `value` added if missing): every stop is exact.

    Its readout is the value as `fmt` writes it; dragging lands on one of the values, so 0 and the
    chapters' values (0.01, 1e-4, ...) are reached exactly, as is every value between two stops
    that the grid holds.
    """
    import ipywidgets

    vals = with_value(values, value)
    return ipywidgets.SelectionSlider(
        options=[(fmt(v), v) for v in vals], value=float(value), description=description,
        continuous_update=False, style={"description_width": "initial"}, layout={"width": "min(100%, 480px)"},
    )


class LiveExplorer:
    """Controls (ipywidgets) that redraw one matplotlib figure in place, shown as a saved image.

    `controls`: name -> widget (its `value` is passed to `update` under that name); `figure`: a
    `matplotlib.figure.Figure` made once; `update(**values)`: changes the figure's artists (image
    data, line data, titles) for the controls' values, and returns nothing. `presets`: optional
    (label, {name: value}) buttons that set several controls at once (one redraw); the dict may
    be a function returning it, read when the button is pressed. `rows`: the widgets to show, in
    order (default: the controls); widgets that are not controls (a switch that rewrites a
    slider) handle their own changes, under `held()`.

    Displaying it shows the re-run note, the controls, and the figure as a PNG `display_data`
    output with a display id: every redraw replaces that output's image (`update_display_data`),
    so the notebook, once saved, holds the last figure drawn, and a notebook reopened without a
    kernel still shows it (the controls then read "Error displaying widget", as the note says).
    `redraw()` returns the PNG bytes; `last_redraw_s` is how long the last redraw took (control
    change to PNG, as `benchmarks/bench_explorers.py` measures it).
    """

    def __init__(
        self,
        controls: dict[str, Any],
        figure: Any,
        update: Callable[..., None],
        presets: Sequence[tuple[str, Any]] = (),
        rows: Sequence[Any] | None = None,
        dpi: float = 100,
    ) -> None:
        import ipywidgets
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.controls = dict(controls)
        self.figure = figure
        if not isinstance(figure.canvas, FigureCanvasAgg):
            FigureCanvasAgg(figure)
        self._update = update
        figure.set_facecolor("white")
        figure.set_dpi(dpi)
        self.dpi = dpi
        self.handle: Any = None
        self.png = b""
        self.last_redraw_s = float("nan")
        self._hold = False
        self.buttons = []
        for label, values in presets:
            if not callable(values):
                unknown = set(values) - set(self.controls)
                if unknown:
                    raise ValueError(f"preset {label!r} sets unknown controls {sorted(unknown)}")
            button = ipywidgets.Button(description=label, layout={"width": "auto"})
            button.on_click(lambda _b, v=values: self.set(**(v() if callable(v) else v)))
            self.buttons.append(button)
        for w in self.controls.values():
            w.observe(lambda _change: self._changed(), names="value")
        rows = list(self.controls.values()) if rows is None else list(rows)
        if self.buttons:
            rows.append(ipywidgets.HBox([ipywidgets.Label("the chapter's cases:"), *self.buttons], layout={"flex_flow": "row wrap"}))
        self.box = ipywidgets.VBox(rows)
        self.redraw()

    def values(self) -> dict[str, Any]:
        """The controls' current values, by name."""
        return {k: w.value for k, w in self.controls.items()}

    def set(self, **values: Any) -> None:
        """Set several controls at once, then redraw once."""
        with self.held():
            for k, v in values.items():
                self.controls[k].value = v
        self._changed()

    def held(self) -> Any:
        """A context in which control changes do not redraw (redraw once after it, yourself)."""
        import contextlib

        @contextlib.contextmanager
        def hold():
            old, self._hold = self._hold, True
            try:
                yield
            finally:
                self._hold = old

        return hold()

    def _changed(self) -> None:
        if not self._hold:
            self.redraw()

    def redraw(self) -> bytes:
        """Update the figure for the current values, render it to PNG, and show it (if displayed)."""
        start = time.perf_counter()
        with one_thread():
            self._update(**self.values())
        self.png = render_png(self.figure)
        if self.handle is not None:
            self.handle.update(self._bundle(), raw=True, metadata=self._metadata())
        self.last_redraw_s = time.perf_counter() - start
        return self.png

    def _bundle(self) -> dict:
        import base64

        title = self.figure.get_suptitle() or "explorer figure"
        return {"image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": title}

    def _metadata(self) -> dict:
        w, h = self.figure.get_size_inches()
        return {"image/png": {"width": int(round(w * self.dpi)), "height": int(round(h * self.dpi))}}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        rerun_note()
        display(self.box)
        self.handle = display(self._bundle(), raw=True, metadata=self._metadata(), display_id=True)

    def __repr__(self) -> str:
        return f"<LiveExplorer: {', '.join(self.controls)}>"


def render_png(fig: Any) -> bytes:
    """`fig` drawn once by Agg at its own dpi and encoded as a PNG (fast zlib level 1).

    `Figure.savefig` draws the figure twice and compresses harder; this is the same image in
    about two thirds of the time, which matters at every slider move.
    """
    import io

    import PIL.Image
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    image = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=1)
    return buf.getvalue()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run PyTorch on one thread inside the block, then restore the thread count.

    An explorer's tensors are small (64 x 64): one thread computes them as fast as two, and when
    the cores are shared (the browser, the Jupyter server, another kernel) two threads wait on
    each other, which measured 5-10 times slower on this project's 2-core machine.
    """
    import torch

    n = torch.get_num_threads()
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def freeze_layout(fig: Any) -> None:
    """Lay `fig` out once (its layout engine) and keep that layout: redraws then skip the layout pass."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    fig.set_layout_engine("none")
