"""The book shows the code that teaches and folds the rest (issue 18; rule in _ext/code_cells.py).

Every code cell of chapters/*.ipynb carries a display decision (`teach`, `hide-input`,
`remove-input`, `remove-cell`, or is an exercise's `solution`/`check` cell), and no cell left in
view calls `claim(` (a claim shows its verdict line, not its call). A new cell without a tag
fails here: run `python _ext/code_cells.py` to tag it by the rule, or tag it by hand.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("code_cells", ROOT / "_ext" / "code_cells.py")
code_cells = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(code_cells)

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_code_cell_has_a_display_decision(path):
    found = code_cells.problems(json.loads(path.read_text(encoding="utf-8")))
    assert not found, f"{path.name} (run python _ext/code_cells.py):\n  " + "\n  ".join(found)


def test_rule():
    assert code_cells.decide('claim("x", kind="quoted")\nclaim("y", kind="quoted")') == "remove-input"
    assert code_cells.decide('x = f()\nclaim("x", kind="quoted", holds=x > 0)') == "hide-input"
    assert code_cells.decide("plot_pattern(A)") == "teach"
    assert code_cells.decide("def f(x):\n" + "    x = x + 1\n" * 10 + "    return x\n") == "teach"
    assert code_cells.decide("\n".join(f"a{i} = {i}" for i in range(12))) == "hide-input"
