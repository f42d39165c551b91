"""Matplotlib settings for figures that are read in the book, on a laptop and on a phone, and in a notebook.

The book's column is about 690 px wide on a laptop and 358 px on a 390 px phone; a figure wider
than the column is shrunk to fit, and its text with it. `use_book_style()`:

- draws figures as SVG (crisp at any screen density) with their text kept as text
  (`svg.fonttype: none`), on a white background that stays white in the book's dark mode;
- caps a figure's width at `MAX_WIDTH_IN` inches (a wider `figsize` is scaled down, aspect kept,
  by a `figure.hooks` entry) and draws every text at `MIN_FONT_PT` points or more, so that on a
  phone, where a figure of that width is shown at 358 px, its smallest text is still about 11
  CSS px tall (tests/browser/test_reading.py measures it);
- keeps legends off the data where a chapter asks for it: `legend_below(ax)` puts a legend under
  its axes.

Multi-panel figures should stack their panels (one column) rather than sit side by side: a
phone shows the figure at 358 px whatever its layout.

Not here: the explorers' figures (`qklab.explore`), which size themselves.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["BOOK_RC", "MAX_WIDTH_IN", "MIN_FONT_PT", "fit_width", "legend_below", "raise_small_text", "use_book_style"]

#: The widest figure in inches (shown at 96 px per inch on a laptop, shrunk to 358 px on a phone).
MAX_WIDTH_IN = 4.6
#: The smallest text in points (10.5 pt in a 4.6 in figure is 11.3 CSS px at a phone's 358 px).
MIN_FONT_PT = 10.5

BOOK_RC: dict[str, object] = {
    "figure.figsize": (4.6, 3.2),
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
    "svg.fonttype": "none",
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "figure.titlesize": 11,
    "legend.frameon": False,
    # 1, 10, 100 instead of 1e+00 on log axes of a few decades; no offset text ("1e-3" above an axis)
    "axes.formatter.useoffset": False,
    "axes.formatter.limits": (-4, 5),
    "figure.hooks": ["qklab.plotting:fit_width"],
}


def fit_width(fig) -> None:
    """The book's limits on a new figure (a `figure.hooks` entry, so every figure gets them).

    A figure wider than `MAX_WIDTH_IN` is scaled down to it, keeping its aspect; and when it is
    drawn, every text smaller than `MIN_FONT_PT` (a `fontsize=8` legend, tick labels set with
    `fontsize=9`) is raised to it, so that no text is too small to read on a phone, and titles and
    axis labels wrap instead of running out of the figure.
    """
    width, height = fig.get_size_inches()
    if width > MAX_WIDTH_IN:
        fig.set_size_inches(MAX_WIDTH_IN, height * MAX_WIDTH_IN / width, forward=False)
    draw = fig.draw

    def draw_legibly(renderer):
        raise_small_text(fig)
        wrap_titles(fig)
        return draw(renderer)

    fig.draw = draw_legibly


def wrap_titles(fig) -> None:
    """Let titles and axis labels wrap onto a second line rather than run out of a narrow figure
    (constrained layout makes room for the extra line)."""
    for ax in fig.axes:
        for text in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label):
            text.set_wrap(True)
    if fig._suptitle is not None:
        fig._suptitle.set_wrap(True)


def raise_small_text(fig, minimum: float = MIN_FONT_PT) -> int:
    """Raise every text of `fig` smaller than `minimum` points to it; the number raised."""
    from matplotlib.text import Text

    raised = 0
    for ax in fig.axes:
        for axis, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            if any(t.get_fontsize() < minimum for t in labels):
                ax.tick_params(axis=axis, labelsize=minimum)
                raised += 1
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < minimum:
            text.set_fontsize(minimum)
            raised += 1
    return raised


def legend_below(ax, ncols: int = 1, **kwargs):
    """A legend under the axes `ax` (below its x-axis label), off the data."""
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=ncols, **kwargs)


def use_book_style() -> None:
    """Apply `BOOK_RC` to matplotlib and show figures as SVG (call once, in a chapter's first code cell)."""
    mpl.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover - outside Jupyter
        return
    if get_ipython() is not None:
        # The whole figure, at its set size: constrained layout makes room for labels and legends,
        # and a "tight" box would widen a figure with an outside legend and shrink its text on a phone.
        set_matplotlib_formats("svg", bbox_inches=None)
