"""Which code the book shows: the rule that tags every code cell of chapters/*.ipynb.

A textbook page shows the code that teaches (the function being explained, the short call that
draws a figure) and folds the rest (issue 18). The rule, for a code cell that carries none of the
tags below yet:

- a cell whose every statement is a `claim(...)` call: `remove-input` (the page shows only the
  verdict lines it prints);
- any other cell that calls `claim(`: `hide-input` (folded behind "Show code cell source": its
  outputs stay in view, a `claim(` call never is);
- a short cell (at most `SHORT_LINES` lines of code) or one that only defines functions and
  classes (at most `TEACHING_LINES` lines): `teach`, shown;
- everything else (experiment set-up, loops over runs, plotting boilerplate, imports): `hide-input`.

Cells tagged `solution` or `check` (exercises: the solution sits in its dropdown, the check is a
one-line call), `teach`, `hide-input`, `remove-input`, `remove-cell` or `hide-cell` are left as
they are: a writer who wants a cell in view tags it `teach`, one who wants it folded tags it
`hide-input`. A `teach` cell may not call `claim(` (the rule `check` enforces).

The learner notebooks (exercises/, `qklab.exercises`) copy these tags, which JupyterLab ignores:
there every cell keeps its code.

Usage: python _ext/code_cells.py [--check] [NOTEBOOK ...]   (default: chapters/*.ipynb)
`--check` changes nothing and exits 1 listing the cells that do not follow the rule. Without it,
each notebook is read, tagged and written back at once (only the `tags` of untagged code cells
change; nothing is executed).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT_LINES = 4
TEACHING_LINES = 30
TEACH, HIDE, REMOVE = "teach", "hide-input", "remove-input"
DECIDED = {"solution", "check", TEACH, HIDE, REMOVE, "remove-cell", "hide-cell"}
FOLDED = {HIDE, REMOVE, "remove-cell", "hide-cell"}
_CLAIM = re.compile(r"\bclaim\(")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_lines(src: str) -> int:
    return sum(1 for line in src.splitlines() if line.strip() and not line.strip().startswith("#"))


def decide(src: str) -> str:
    """The tag the rule gives a code cell with this source (see the module's docstring)."""
    try:
        body = ast.parse(src).body
    except SyntaxError:  # IPython magics and the like: fold
        return HIDE
    if _CLAIM.search(src):
        only_claims = body and all(
            isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
            and getattr(s.value.func, "id", getattr(s.value.func, "attr", "")) == "claim"
            for s in body
        )
        return REMOVE if only_claims else HIDE
    lines = _code_lines(src)
    if lines <= SHORT_LINES:
        return TEACH
    defs_only = body and all(
        isinstance(s, (ast.FunctionDef, ast.ClassDef)) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        for s in body
    )
    if defs_only and lines <= TEACHING_LINES:
        return TEACH
    return HIDE


def problems(nb: dict) -> list[str]:
    """Code cells of a notebook that break the rule: undecided, or `teach` with a claim call."""
    found = []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        src = _source(cell)
        if not tags & DECIDED:
            found.append(f"cell {number} ({cell.get('id')}): no display tag (rule says {decide(src)})")
        elif _CLAIM.search(src) and not tags & FOLDED and "solution" not in tags:
            found.append(f"cell {number} ({cell.get('id')}): calls claim( in view")
    return found


def tag(path: Path) -> int:
    """Tag the undecided code cells of one notebook in place; the number of cells changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    changed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        src = _source(cell)
        if _CLAIM.search(src) and TEACH in tags:
            tags.remove(TEACH)
        if not set(tags) & DECIDED:
            tags.append(decide(src))
            changed += 1
        if not tags:
            del cell["metadata"]["tags"]
    if changed:
        out = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        path.write_text(out, encoding="utf-8")
    return changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    bad = 0
    for path in paths:
        if check:
            found = problems(json.loads(path.read_text(encoding="utf-8")))
            bad += len(found)
            for line in found:
                print(f"{path.name}: {line}")
        else:
            n = tag(path)
            if n:
                print(f"{path.name}: tagged {n} code cells")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
