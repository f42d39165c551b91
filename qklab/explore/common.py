"""What every explorer shares: input checks, number formatting for titles, and the live widgets' parts.

Here: `finite` and `tokens_arg` (bad input becomes an error naming the argument), `fmt` (numbers
as a reader reads them: `0.126`, `1.0e-03`, never `0.125893` or `0.00`), and the pieces of the
live widgets (`log_slider`, `linear_slider`, `rerun_note`, `interactive`). Not here: any
explorer's computation or figure (`qklab.explore.spectrum`, `.scale`, `.depth`) or the plotly
slider figures of the book (`qklab.explore.slider_grid`). Used by chapters 1, 3, 5 and 7 through
those modules.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import numpy as np

TokenModel = Literal["random_walk", "iid"]
TOKEN_LABEL = {"random_walk": "random-walk tokens", "iid": "i.i.d. Gaussian tokens"}

RERUN_NOTE = (
    "Live explorer: it needs a running Python kernel. If you see 'Error displaying widget: model "
    "not found' below, the notebook was reopened without running this cell: run this cell again."
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


# --- live widgets (need a kernel) ------------------------------------------------------------------

def rerun_note() -> None:
    """Display, above a live widget, a note that survives reopening the notebook (plain HTML, not a widget)."""
    from IPython.display import display

    html = f'<p style="font-size: 0.85em; color: #555; margin: 0.2em 0">{RERUN_NOTE}</p>'
    display({"text/html": html, "text/plain": RERUN_NOTE}, raw=True)


def interactive(draw: Callable[..., None], **controls: Any):
    """`ipywidgets.interactive(draw, **controls)`, after the re-run note."""
    import ipywidgets

    rerun_note()
    return ipywidgets.interactive(draw, **controls)


def log_slider(value: float, lo: float, hi: float, description: str):
    """A slider on a log scale from `lo` to `hi` (both > 0), starting at `value` (clipped into range)."""
    import ipywidgets

    value = min(max(value, lo), hi)
    return ipywidgets.FloatLogSlider(
        value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
        description=description, continuous_update=False, readout_format=".3",
        style={"description_width": "initial"},
    )


def linear_slider(value: float, lo: float, hi: float, step: float, description: str):
    """A slider on a linear scale from `lo` to `hi` (which may include 0 and negative values)."""
    import ipywidgets

    value = min(max(value, lo), hi)
    return ipywidgets.FloatSlider(
        value=value, min=lo, max=hi, step=step, description=description, continuous_update=False,
        readout_format=".3", style={"description_width": "initial"},
    )
