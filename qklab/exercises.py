"""Generate the learner notebooks (`exercises/`) from the chapters (`chapters/`).

Chapters are written once, with the solutions in place (CONTRIBUTING.md, "Exercises"). This module
turns each `chapters/NN_slug.ipynb` into `exercises/NN_slug.ipynb`:

- in a code cell tagged `solution`, every block between a `# BEGIN SOLUTION` line (optionally
  `# BEGIN SOLUTION: hint text`) and the next `# END SOLUTION` line becomes one line
  `raise NotImplementedError("Exercise <label>: <hint> — write your solution here")` at the
  indentation of the `BEGIN` line; a `solution` cell without markers is replaced whole;
- cells tagged `solution` or `check` get the tag `raises-exception` (Jupyter Book and nbval then
  accept that they fail until the reader has solved the exercise);
- markdown cells that only open or close a solution dropdown (`{solution-start}`,
  `{solution-end}`) are dropped; every output and execution count is cleared;
- a note saying where the notebook comes from follows the title cell.

The output is a pure function of the chapter (no times, no random ids), so `check` can compare
bytes: `python -m qklab.exercises build` writes, `python -m qklab.exercises check` exits with
status 1 and lists the stale files; `python -m qklab.exercises strip NB...` clears the outputs of
chapters before they are committed (`make strip`). Not in here: the checks themselves (`qklab.checks`).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
RAISES_TAG = "raises-exception"
NOTE_CELL_ID = "qklab-learner-note"

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION(?:\s*:\s*(?P<hint>.*?))?\s*$")
_END = re.compile(r"^[ \t]*#\s*END SOLUTION\s*$")
# A markdown cell that is nothing but a solution-start / solution-end directive, fenced with
# backticks or colons (MyST colon_fence), with optional options such as `:class: dropdown`.
_DROPDOWN_ONLY = re.compile(
    r"\A\s*(?P<fence>`{3,}|:{3,})\{solution-(?:start|end)\}[^\n]*\n"
    r"(?:[ \t]*:[\w-]+:[^\n]*\n)*"
    r"\s*(?P=fence)\s*\Z"
)
_EXERCISE_LABEL = re.compile(r"\{exercise(?:-start)?\}[\s\S]*?^[ \t]*:label:[ \t]*(\S+)", re.MULTILINE)
_SOLUTION_START = re.compile(r"\{solution-start\}[ \t]+(\S+)")


class ExerciseMarkupError(ValueError):
    """A chapter's solution markers are malformed (unclosed, nested or stray)."""


@dataclass(frozen=True)
class StaleFile:
    """A learner notebook that differs from what its chapter generates."""

    path: Path
    reason: str  # "missing", "differs" or "no chapter"


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _literal(text: str) -> str:
    """A double-quoted Python string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def stub_line(indent: str, who: str, hint: str | None) -> str:
    """The line that replaces a solution block: `raise NotImplementedError(...)` at `indent`."""
    parts = [f"Exercise {who}:"]
    if hint:
        parts.append(f"{hint} —")
    parts.append("write your solution here")
    return f"{indent}raise NotImplementedError({_literal(' '.join(parts))})"


def stub_source(source: str, who: str, where: str = "") -> str:
    """Replace every `# BEGIN SOLUTION` ... `# END SOLUTION` block of `source` by a stub line.

    A source without markers is replaced whole by an unindented stub. `who` names the exercise
    in the stub's message; `where` names the cell in error messages.
    """
    lines = source.split("\n")
    if not any(_BEGIN.match(line) or _END.match(line) for line in lines):
        return stub_line("", who, None)
    out: list[str] = []
    open_at: int | None = None
    for number, line in enumerate(lines, start=1):
        begin = _BEGIN.match(line)
        if begin:
            if open_at is not None:
                raise ExerciseMarkupError(
                    f"{where}: '# BEGIN SOLUTION' on line {number} inside the block opened on "
                    f"line {open_at}; close it with '# END SOLUTION' first"
                )
            open_at = number
            out.append(stub_line(begin.group("indent"), who, begin.group("hint") or None))
        elif _END.match(line):
            if open_at is None:
                raise ExerciseMarkupError(
                    f"{where}: '# END SOLUTION' on line {number} without a '# BEGIN SOLUTION' before it"
                )
            open_at = None
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise ExerciseMarkupError(
            f"{where}: '# BEGIN SOLUTION' on line {open_at} is never closed with '# END SOLUTION'"
        )
    return "\n".join(out)


def is_dropdown_only(cell: Any) -> bool:
    """True for a markdown cell holding only a `{solution-start}` or `{solution-end}` directive."""
    return cell.get("cell_type") == "markdown" and bool(_DROPDOWN_ONLY.match(_source(cell)))


def _note_cell(chapter_name: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_markdown_cell(
        f"> **Learner notebook**, generated from `chapters/{chapter_name}` by `make exercises`: "
        "edit the chapter, not this file. Replace each `raise NotImplementedError(...)` with your "
        "code and run the check cell below it; `make check-exercise "
        f"NB=exercises/{chapter_name}` checks the whole notebook."
    )
    cell.id = NOTE_CELL_ID
    return cell


def learner_notebook(chapter: Any, chapter_name: str) -> Any:
    """The learner version of a chapter notebook (a new object; `chapter` is not modified)."""
    nb = copy.deepcopy(chapter)
    cells = []
    label: str | None = None
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "markdown":
            # The exercise a solution belongs to: the label its solution-start names, else the
            # label of the last exercise directive above it.
            found = _SOLUTION_START.search(_source(cell)) or _EXERCISE_LABEL.search(_source(cell))
            if found:
                label = found.group(1)
            if is_dropdown_only(cell):
                continue
        tags = _tags(cell)
        if cell.get("cell_type") == "code":
            if SOLUTION_TAG in tags:
                who = label or f"cell {index + 1}"
                where = f"{chapter_name}, cell {index + 1}"
                cell["source"] = stub_source(_source(cell), who, where)
            if (SOLUTION_TAG in tags or CHECK_TAG in tags) and RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
            cell["outputs"] = []
            cell["execution_count"] = None
        if tags:
            cell.setdefault("metadata", {})["tags"] = tags
        # Execution timings and similar are not part of a learner notebook.
        cell.get("metadata", {}).pop("execution", None)
        cells.append(cell)
    note_at = 1 if cells and cells[0].get("cell_type") == "markdown" and _source(cells[0]).lstrip().startswith("#") else 0
    cells.insert(note_at, _note_cell(chapter_name))
    nb.cells = cells
    return nb


def render(chapter_path: Path) -> str:
    """The exact text of the learner notebook for `chapter_path`."""
    import nbformat

    chapter = nbformat.read(str(chapter_path), as_version=4)
    nb = learner_notebook(chapter, chapter_path.name)
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _chapters(chapters_dir: Path) -> list[Path]:
    return sorted(p for p in chapters_dir.glob("*.ipynb") if p.is_file())


def build(chapters_dir: Path, exercises_dir: Path) -> list[Path]:
    """Write every learner notebook whose text changed; delete those whose chapter is gone.

    Returns the paths written or deleted.
    """
    exercises_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    expected = set()
    for chapter in _chapters(chapters_dir):
        target = exercises_dir / chapter.name
        expected.add(target.name)
        text = render(chapter)
        if not target.exists() or target.read_bytes() != text.encode("utf-8"):
            target.write_bytes(text.encode("utf-8"))
            changed.append(target)
    for orphan in sorted(exercises_dir.glob("*.ipynb")):
        if orphan.name not in expected:
            orphan.unlink()
            changed.append(orphan)
    return changed


def stale(chapters_dir: Path, exercises_dir: Path) -> list[StaleFile]:
    """Learner notebooks that `build` would write or delete."""
    out = []
    expected = set()
    for chapter in _chapters(chapters_dir):
        target = exercises_dir / chapter.name
        expected.add(target.name)
        if not target.exists():
            out.append(StaleFile(target, "missing"))
        elif target.read_bytes() != render(chapter).encode("utf-8"):
            out.append(StaleFile(target, "differs"))
    if exercises_dir.is_dir():
        for orphan in sorted(exercises_dir.glob("*.ipynb")):
            if orphan.name not in expected:
                out.append(StaleFile(orphan, "no chapter"))
    return out


def strip(paths: Sequence[Path]) -> list[Path]:
    """Clear outputs, execution counts and execution timings of notebooks; return those changed."""
    import nbformat

    changed = []
    for path in paths:
        before = Path(path).read_text(encoding="utf-8")
        nb = nbformat.reads(before, as_version=4)
        for cell in nb.cells:
            cell.get("metadata", {}).pop("execution", None)
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
        after = nbformat.writes(nb)
        after = after if after.endswith("\n") else after + "\n"
        if after != before:
            Path(path).write_text(after, encoding="utf-8")
            changed.append(Path(path))
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qklab.exercises",
        description="Generate the learner notebooks (exercises/) from the chapters (chapters/).",
    )
    parser.add_argument("command", choices=["build", "check", "strip"],
                        help="build: write exercises/; check: exit 1 if exercises/ is stale; "
                        "strip: clear the outputs of the notebooks given")
    parser.add_argument("notebooks", nargs="*", type=Path, help="strip only: the notebooks to clear")
    parser.add_argument("--chapters", type=Path, default=Path("chapters"), help="default: chapters")
    parser.add_argument("--exercises", type=Path, default=Path("exercises"), help="default: exercises")
    args = parser.parse_args(argv)
    if args.command == "strip":
        for path in strip(args.notebooks):
            print(f"cleared outputs of {path}")
        return 0
    if args.notebooks:
        parser.error(f"'{args.command}' takes no notebook paths")
    try:
        if args.command == "build":
            changed = build(args.chapters, args.exercises)
            for path in changed:
                print(f"wrote {path}" if path.exists() else f"deleted {path}")
            print(f"{len(changed)} learner notebook(s) changed")
            return 0
        problems = stale(args.chapters, args.exercises)
    except ExerciseMarkupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if problems:
        print("Stale learner notebooks (run `make exercises` and commit exercises/):", file=sys.stderr)
        for item in problems:
            print(f"  {item.path}: {item.reason}", file=sys.stderr)
        return 1
    print(f"exercises/ is up to date with {args.chapters}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
