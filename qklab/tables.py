"""Tables that a chapter shows: HTML in the book and in JupyterLab, aligned text elsewhere.

`show_table(columns, rows)` displays a `Table`: in the book, a real `<table>` inside a
`<div class="qklab-table">` (`_static/qklab.css`: numbers right-aligned and never broken, the box
scrolls sideways on a phone and shows that it does); as text (`repr`, a terminal, nbval), the
same rows in aligned columns. Cells are shown as given: format numbers before (`f"{x:.3f}"`).
"""

from __future__ import annotations

import html
from typing import Any, Sequence

__all__ = ["Table", "show_table"]


class Table:
    """A table of strings: a header row, body rows, an optional caption under it."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        self.columns = [str(c) for c in columns]
        self.rows = [[str(v) for v in row] for row in rows]
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row has {len(row)} cells, the header {len(self.columns)}: {row}")
        self.caption = caption

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self.rows)
        caption = f"<p><small>{html.escape(self.caption)}</small></p>" if self.caption else ""
        return f"<div class='qklab-table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{caption}"

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(r[k]) for r in self.rows)) if self.rows else len(c) for k, c in enumerate(self.columns)]
        line = lambda cells: "  ".join(v.rjust(w) if k else v.ljust(w) for k, (v, w) in enumerate(zip(cells, widths)))  # noqa: E731
        text = "\n".join([line(self.columns)] + [line(r) for r in self.rows])
        return text + (f"\n{self.caption}" if self.caption else "")


def show_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
    """Display a `Table` (HTML under IPython, text otherwise).

    Returns None, so that a cell ending with this call does not show the table a second time as
    its value.
    """
    table = Table(columns, rows, caption)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(repr(table))
        return
    if get_ipython() is None:
        print(repr(table))
    else:
        display(table)
