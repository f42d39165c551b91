"""Matplotlib settings for figures that are read in the book's text column and in a notebook.

The book's column is about 690 px wide; a figure drawn wider is shrunk to fit and its text with
it. `use_book_style()` draws figures at 100 dpi, at most 6.6 inches (660 px) wide by default,
with 10 pt text, so tick labels and legends stay legible (at least about 9 px as shown) on a
laptop. Multi-panel figures should fit this width: stack panels, or split a figure in two,
rather than widen it.

Not here: the explorers' figures (`qklab.explore`), which size themselves.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["BOOK_RC", "MAX_WIDTH_IN", "use_book_style"]

#: widest figure (inches at 100 dpi) that the book's text column shows at full size
MAX_WIDTH_IN = 6.6

BOOK_RC: dict[str, object] = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.frameon": False,
}


def use_book_style() -> None:
    """Apply `BOOK_RC` to matplotlib (call once, in a chapter's first code cell)."""
    mpl.rcParams.update(BOOK_RC)
