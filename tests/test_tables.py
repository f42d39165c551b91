"""qklab.tables: a table shown as HTML (escaped, in the book's scroll box) and as aligned text."""

import pytest

from qklab.tables import Table, show_table


def test_html_is_a_table_in_the_scroll_box_and_escaped():
    t = Table(["name", "x < 1"], [["a & b", "0.5"]], caption="mean over 3 seeds")
    h = t._repr_html_()
    assert h.startswith("<div class='qklab-table'><table><thead><tr><th>name</th><th>x &lt; 1</th></tr>")
    assert "<td>a &amp; b</td><td>0.5</td>" in h and "mean over 3 seeds" in h


def test_text_is_aligned():
    t = Table(["setting", "loss"], [["plain", "2.221"], ["sigmaReparam", "12.7"]])
    assert repr(t).splitlines() == ["setting        loss", "plain         2.221", "sigmaReparam   12.7"]


def test_rows_must_match_the_header(capsys):
    with pytest.raises(ValueError, match="2 cells, the header 3"):
        Table(["a", "b", "c"], [["1", "2"]])
    # no IPython here: printed as text; None returned (a cell ending with the call shows it once)
    assert show_table(["a"], [["1"]]) is None
    assert capsys.readouterr().out == "a\n1\n"
