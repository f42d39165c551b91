"""The exercises of a chapter, and the learner notebooks (`exercises/`) generated from them.

Chapters are written once, with the solutions in place (CONTRIBUTING.md, "Exercises"). This
module reads a chapter's exercises (`exercises_of`: number, title, solution and check cells, in
the book's numbering "Exercise 7.1", "7.2", ...) and turns each `chapters/NN_slug.ipynb` into
`exercises/NN_slug.ipynb`:

- every block between `# BEGIN SOLUTION` (optionally `# BEGIN SOLUTION: hint`) and
  `# END SOLUTION` in a cell tagged `solution` becomes a neutral stub that names what to write,
  never how (`stub_block`): inside a function, `raise NotImplementedError("Exercise 7.1: write
  the body of my_sparsemax")`; at the top level, `name = ...  # your answer` for every name the
  block binds (so the check cell runs and says "no answer yet" instead of a NameError), and a
  stub function for every function it defines. A `solution` cell without markers becomes one
  `raise NotImplementedError(...)` line;
- the hint text never goes into the stub: the hints of an exercise go into a collapsed
  "Hint" dropdown cell above its first solution cell, opened only by a learner who asks;
- cells tagged `solution` or `check` get the tag `raises-exception` (an unsolved notebook still
  runs end to end under nbval and Jupyter Book);
- a Markdown cell tagged `answer` (a proof or a discussion of an exercise's answer, placed after
  its check) is replaced by a note saying where to read it once the check passes; a cell tagged
  `reveals-answer` (Markdown or code: text, a claim or a printout that states an answer, anywhere
  in the chapter) becomes a Markdown note saying the book shows it, with the cell's headings kept
  (a code cell may carry the tag only when no later cell needs a name it sets:
  `tests/test_exercises.py`);
- the markdown cells that only open or close a solution dropdown (`{solution-start}`,
  `{solution-end}`) are dropped, and so is every output; the `{exercise}` directive becomes an
  `{admonition}` titled "Exercise 7.1: <title>" (sphinx-exercise's directive is not one that
  jupyterlab-myst renders; `{admonition}` with `:class: dropdown` is);
- cross-references that only resolve inside the built book become text: `{numref}` and `{ref}`
  to chapters and exercises ("chapter 3", "Exercise 7.1"), `{cite}` to "Bao et al. (2024)"
  (from `references.bib`);
- a note saying where the notebook comes from follows the title cell;
- the notebook's metadata is what JupyterLab writes when a Python kernel starts
  (`LEARNER_KERNELSPEC`, `LEARNER_LANGUAGE_INFO`), so that opening it does not mark it modified.

The output is a pure function of the chapter (no times, no random ids), so `check` can compare
bytes: `python -m qklab.exercises build` writes, `python -m qklab.exercises check` exits with
status 1 and lists the stale files; `python -m qklab.exercises strip NB...` clears the outputs of
chapters before they are committed (`make strip`). Checking a learner's answers is
`qklab.grading` (`make check-exercise`); the checks themselves are `qklab.checks`.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
RAISES_TAG = "raises-exception"
ANSWER_TAG = "answer"  # a Markdown cell after a check that discusses its answer: left out of learner notebooks
#: A cell (Markdown or code) that states an exercise's answer, or whose output does, wherever it
#: stands (a later figure, a claim, the summary): left out of learner notebooks, headings kept.
REVEALS_TAG = "reveals-answer"
NOTE_CELL_ID = "qklab-learner-note"
HINT_SUFFIX = "-hint"
#: The Python of the environment the book is built and tested with (README: Python 3.11).
BOOK_PYTHON = "3.11.7"
#: What JupyterLab writes into a notebook's metadata when its kernel starts (ipykernel's spec and
#: language_info). A learner notebook carries the same, so that opening it does not mark it
#: modified (JupyterLab sets both on kernel start and marks the notebook dirty when they differ;
#: the chapters' "Python 3" display name and bare `{"name": "python"}` always differed). Only the
#: Python version can still differ, on a machine whose Python is not `BOOK_PYTHON`.
LEARNER_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LEARNER_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": BOOK_PYTHON,
}

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION(?:\s*:\s*(?P<hint>.*?))?\s*$")
_END = re.compile(r"^[ \t]*#\s*END SOLUTION\s*$")
# A markdown cell that is nothing but a solution-start / solution-end directive, fenced with
# backticks or colons (MyST colon_fence), with optional options such as `:class: dropdown`.
_DROPDOWN_ONLY = re.compile(
    r"\A\s*(?P<fence>`{3,}|:{3,})\{solution-(?:start|end)\}[^\n]*\n"
    r"(?:[ \t]*:[\w-]+:[^\n]*\n)*"
    r"\s*(?P=fence)\s*\Z"
)
# An exercise directive: its fence, the options (`:label: ex-x`) and the body up to the fence.
_EXERCISE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{exercise\}[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)"
    r"(?P<body>[\s\S]*?)^(?P=fence)[ \t]*$",
    re.MULTILINE,
)
_LABEL = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.MULTILINE)
_SOLUTION_START = re.compile(r"\{solution-start\}[ \t]+(\S+)")
_TITLE = re.compile(r"\*\*(?P<title>.+?)\*\*(?:\s*\((?P<difficulty>easy|medium|hard)\b)?", re.DOTALL)
_CHAPTER_LABEL = re.compile(r"^\((?P<label>ch-[\w-]+)\)=[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r"\{(?P<role>numref|ref|cite|cite:p|cite:t)\}`(?P<text>[^`]*)`")


class ExerciseMarkupError(ValueError):
    """A chapter's solution markers are malformed (unclosed, nested or stray)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: where its cells are and how the book numbers it."""

    label: str  # the `:label:` of its directive, e.g. "ex-pattern"
    number: str  # as the built book numbers it: "7.1"; "1" in an unnumbered chapter; "" for :nonumber:
    title: str  # the bold text opening the statement, e.g. "Implement the attention pattern"
    difficulty: str | None  # "easy", "medium", "hard" or None when the statement does not say
    solution_ids: tuple[str, ...]  # ids of its cells tagged `solution`, in order
    check_ids: tuple[str, ...]  # ids of its cells tagged `check`, in order

    @property
    def short(self) -> str:
        """ "Exercise 7.1", or "Exercise" for an unnumbered one (`:nonumber:`)."""
        return f"Exercise {self.number}" if self.number else "Exercise"

    @property
    def name(self) -> str:
        """ "Exercise 7.1 Implement the attention pattern" """
        return f"{self.short} {self.title}".rstrip()


@dataclass(frozen=True)
class StaleFile:
    """A learner notebook that differs from what its chapter generates."""

    path: Path
    reason: str  # "missing", "differs" or "no chapter"


def source_of(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags_of(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def import_statements(cells: Sequence[Any]) -> list[ast.stmt]:
    """The top-level `import` and `from ... import` statements of the code cells, in order (a cell
    that is not Python, e.g. IPython magic, is skipped)."""
    out: list[ast.stmt] = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(source_of(cell))
        except SyntaxError:
            continue
        out += [stmt for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
    return out


def _literal(text: str) -> str:
    """A double-quoted Python string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def chapter_number(chapter_name: str) -> int | None:
    """The book's number of `NN_slug.ipynb`: NN, except chapter 0 ("How to use"), unnumbered."""
    match = re.match(r"(\d+)_", chapter_name)
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1))


# --- reading a chapter's exercises ---------------------------------------------------------------
def exercises_of(chapter: Any, chapter_name: str) -> list[Exercise]:
    """The exercises of a chapter notebook in order, numbered as the built book numbers them.

    A `solution` or `check` cell belongs to the last `{exercise}` directive above it; one above
    every directive makes an exercise of its own, named after its cell ("cell 4").
    """
    prefix = chapter_number(chapter_name)
    found: list[dict] = []
    for index, cell in enumerate(chapter.cells):
        src = source_of(cell)
        if cell.get("cell_type") == "markdown":
            for match in _EXERCISE.finditer(src):
                label = _LABEL.search(match.group("options"))
                title = _TITLE.search(match.group("body"))
                found.append({
                    "label": label.group(1) if label else f"cell {index + 1}",
                    "title": " ".join(title.group("title").split()) if title else "",
                    "difficulty": title.group("difficulty") if title else None,
                    "solution": [], "check": [],
                    "numbered": not re.search(r"^[ \t]*:nonumber:", match.group("options"), re.MULTILINE),
                })
            continue
        tags = tags_of(cell)
        for kind in (SOLUTION_TAG, CHECK_TAG):
            if kind in tags:
                if not found:
                    found.append({"label": f"cell {index + 1}", "title": "", "difficulty": None,
                                  "solution": [], "check": [], "numbered": True})
                found[-1][kind].append(cell.get("id") or f"cell-{index + 1}")
    out = []
    k = 0
    for item in found:
        k += item["numbered"]  # sphinx-exercise skips :nonumber: exercises when counting
        number = (f"{prefix}.{k}" if prefix is not None else str(k)) if item["numbered"] else ""
        out.append(Exercise(
            label=item["label"],
            number=number,
            title=item["title"],
            difficulty=item["difficulty"],
            solution_ids=tuple(item["solution"]),
            check_ids=tuple(item["check"]),
        ))
    return out


def solution_blocks(source: str, where: str = "") -> list[tuple[int, int, str, str | None]]:
    """The `(begin, end, indent, hint)` of each solution block: line indices of its markers."""
    blocks = []
    open_at: tuple[int, str, str | None] | None = None
    for number, line in enumerate(source.split("\n")):
        begin = _BEGIN.match(line)
        if begin:
            if open_at is not None:
                raise ExerciseMarkupError(
                    f"{where}: '# BEGIN SOLUTION' on line {number + 1} inside the block opened on "
                    f"line {open_at[0] + 1}; close it with '# END SOLUTION' first"
                )
            open_at = (number, begin.group("indent"), begin.group("hint") or None)
        elif _END.match(line):
            if open_at is None:
                raise ExerciseMarkupError(
                    f"{where}: '# END SOLUTION' on line {number + 1} without a '# BEGIN SOLUTION' before it"
                )
            blocks.append((open_at[0], number, open_at[1], open_at[2]))
            open_at = None
    if open_at is not None:
        raise ExerciseMarkupError(
            f"{where}: '# BEGIN SOLUTION' on line {open_at[0] + 1} is never closed with '# END SOLUTION'"
        )
    return blocks


def _bound_names(code: str) -> tuple[list[str], list[str], set[str]]:
    """Names bound by the module-level statements of `code`: (values, functions, set to `...`)."""
    values: list[str] = []
    functions: list[str] = []
    ellipsis: set[str] = set()

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Name):
            return [node.id]
        if isinstance(node, (ast.Tuple, ast.List)):
            return [n for elt in node.elts for n in targets(elt)]
        return []

    for stmt in ast.parse(code).body:
        names: list[str] = []
        if isinstance(stmt, ast.Assign):
            names = [n for t in stmt.targets for n in targets(t)]
            if isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
                ellipsis.update(names)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            names = targets(stmt.target)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if stmt.name not in functions:
                functions.append(stmt.name)
        values += [n for n in names if n not in values]
    return [n for n in values if n not in functions], functions, ellipsis


def _enclosing_function(lines: list[str], begin: int, indent: str) -> str | None:
    for line in reversed(lines[:begin]):
        match = re.match(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)", line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def stub_block(lines: list[str], begin: int, end: int, indent: str, who: str) -> list[str]:
    """The neutral lines that replace the solution block `lines[begin..end]` (markers included).

    Inside a function: `raise NotImplementedError("<who>: write the body of f")`. At the top level:
    `name = ...  # your answer` for each name the block binds (unless a line above the block
    already sets it to `...`) and a stub for each function it defines; a block that binds nothing
    becomes `raise NotImplementedError("<who>: write your solution here")`.
    """
    if indent:
        func = _enclosing_function(lines, begin, indent)
        what = f"write the body of {func}" if func else "write your solution here"
        return [f"{indent}raise NotImplementedError({_literal(f'{who}: {what}')})"]
    try:
        values, functions, _ = _bound_names(textwrap.dedent("\n".join(lines[begin + 1:end])))
        outside = [line for i, line in enumerate(lines[:begin]) if not _BEGIN.match(line)]
        _, _, declared = _bound_names("\n".join(outside))
    except SyntaxError:  # IPython syntax or a fragment: say what to do, name nothing
        values, functions, declared = [], [], set()
    out = [f"{name} = ...  # your answer" for name in values if name not in declared]
    for name in functions:
        out += [f"def {name}(*args, **kwargs):",
                f"    raise NotImplementedError({_literal(f'{who}: write {name}')})"]
    if not out and not (set(values) & declared):
        out = [f"raise NotImplementedError({_literal(f'{who}: write your solution here')})"]
    return out


def stub_source(source: str, who: str, where: str = "") -> str:
    """`source` with every solution block replaced by its neutral stub (`stub_block`).

    A source without markers is replaced whole by an unindented `raise NotImplementedError`.
    `who` names the exercise in the stub's message ("Exercise 7.1"); `where` names the cell in
    error messages. Hints (`# BEGIN SOLUTION: hint`) are left out: see `solution_hints`.
    """
    blocks = solution_blocks(source, where)
    if not blocks:
        return f"raise NotImplementedError({_literal(f'{who}: write your solution here')})"
    lines = source.split("\n")
    out: list[str] = []
    start = 0
    for begin, end, indent, _hint in blocks:
        out += lines[start:begin]
        out += stub_block(lines, begin, end, indent, who)
        start = end + 1
    out += lines[start:]
    return "\n".join(out)


def solution_hints(source: str, where: str = "") -> list[str]:
    """The hint texts of the `# BEGIN SOLUTION: hint` lines of `source`, in order."""
    return [hint for _, _, _, hint in solution_blocks(source, where) if hint]


# --- markdown for JupyterLab (jupyterlab-myst) ----------------------------------------------------
def _escape_markdown(text: str) -> str:
    """Escape Markdown punctuation outside `code spans` so a code comment reads as written."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else re.sub(r"([\\*_<>\[\]$#|~])", r"\\\1", p) for p in parts)


def hint_cell_source(exercise: Exercise, hints: Sequence[str]) -> str:
    body = "\n\n".join(_escape_markdown(h) for h in hints)
    title = f"Hint for {exercise.short}" if exercise.number else "Hint"
    return f"```{{dropdown}} {title}\n{body}\n```"


def answer_note(exercise: Exercise | None, chapter_name: str) -> str:
    """What a learner notebook shows instead of a cell tagged `answer` (a proof or a discussion of
    an exercise's answer, after its check): where to read it once the check passes."""
    which = exercise.short if exercise else "the exercise above"
    return (f"> *The book discusses the answer to {which} here. It is left out of this notebook so that it "
            f"does not give the answer away: read it in the book (or in `chapters/{chapter_name}`) once your "
            "check passes.*")


def reveals_note(cell: Any, chapter_name: str) -> str:
    """What a learner notebook shows instead of a cell tagged `reveals-answer`: the cell's Markdown
    headings (so that the notebook keeps its sections), then a note saying where to read it."""
    headings = [line for line in source_of(cell).split("\n")
                if cell.get("cell_type") == "markdown" and re.match(r"#{1,6}\s", line)]
    what = "text" if cell.get("cell_type") == "markdown" else "a computation"
    note = (f"> *The book has {what} here that gives away the answer to an exercise of this chapter. It is left "
            f"out of this notebook: read it in the book (or in `chapters/{chapter_name}`) once your checks pass.*")
    return "\n\n".join([*headings, note])


def _exercise_admonition(match: re.Match, exercise: Exercise | None) -> str:
    fence = match.group("fence")
    # The statement opens with its bold title, as in the book, whose box says "Exercise 7.1".
    title = exercise.short if exercise else "Exercise"
    options = "".join(line + "\n" for line in match.group("options").splitlines()
                      if not line.strip().startswith((":label:", ":nonumber:")))
    return f"{fence}{{admonition}} {title}\n:class: exercise\n{options}{match.group('body')}{fence}"


def _bib_names(bib_text: str) -> dict[str, str]:
    """`{key: "Bao et al. (2024)"}` from a BibTeX file (first author's surname and the year)."""
    out = {}
    for entry in re.finditer(r"@\w+\{(?P<key>[^,\s]+),(?P<body>.*?)\n\}", bib_text, re.DOTALL):
        author = re.search(r"author\s*=\s*\{(.*?)\}\s*,?\s*\n", entry.group("body"), re.DOTALL)
        year = re.search(r"year\s*=\s*\{?(\d{4})", entry.group("body"))
        if not author:
            continue
        people = [p.strip() for p in re.split(r"\s+and\s+", " ".join(author.group(1).split()))]
        surname = lambda p: p.split(",")[0].strip() if "," in p else p.split()[-1]  # noqa: E731
        names = surname(people[0]) + (" et al." if len(people) > 2 else
                                      f" and {surname(people[1])}" if len(people) == 2 else "")
        out[entry.group("key")] = f"{names} ({year.group(1)})" if year else names
    return out


@dataclass(frozen=True)
class BookIndex:
    """What a learner notebook needs to know of the rest of the book to write references as text."""

    chapters: dict[str, str]  # chapter label -> "chapter 3" / "How to use this book"
    exercises: dict[str, str]  # exercise label -> "Exercise 7.1"
    citations: dict[str, str]  # BibTeX key -> "Bao et al. (2024)"


def book_index(chapters_dir: Path) -> BookIndex:
    """Read every chapter's label and exercises, and `references.bib` next to `chapters_dir`."""
    import nbformat

    chapters, exercises = {}, {}
    for path in _chapters(chapters_dir):
        nb = nbformat.read(str(path), as_version=4)
        number = chapter_number(path.name)
        for cell in nb.cells[:1]:
            match = _CHAPTER_LABEL.search(source_of(cell))
            title = re.search(r"^#\s+(.+)$", source_of(cell), re.MULTILINE)
            if match:
                chapters[match.group("label")] = (
                    f"chapter {number}" if number is not None else (title.group(1).strip() if title else path.stem))
        for exercise in exercises_of(nb, path.name):
            exercises[exercise.label] = exercise.short if exercise.number else exercise.title
    bib = chapters_dir.parent / "references.bib"
    citations = _bib_names(bib.read_text(encoding="utf-8")) if bib.is_file() else {}
    return BookIndex(chapters, exercises, citations)


def plain_references(text: str, index: BookIndex) -> str:
    """Write `{numref}`, `{ref}` and `{cite}` roles as the text the built book shows."""

    def replace(match: re.Match) -> str:
        role, text_ = match.group("role"), match.group("text")
        if role.startswith("cite"):
            keys = [k.strip() for k in text_.split(",")]
            return "; ".join(index.citations.get(k, k) for k in keys)
        explicit = re.fullmatch(r"(?P<title>.*?)\s*<(?P<label>[^>]+)>", text_, re.DOTALL)
        label = explicit.group("label") if explicit else text_.strip()
        target = index.chapters.get(label) or index.exercises.get(label)
        if explicit:
            number = re.search(r"[\d.]+$", target or "")
            return explicit.group("title").replace("%s", number.group(0) if number else "?")
        return target or label

    return _ROLE.sub(replace, text)


# --- the learner notebook -------------------------------------------------------------------------
def is_dropdown_only(cell: Any) -> bool:
    """True for a markdown cell holding only a `{solution-start}` or `{solution-end}` directive."""
    return cell.get("cell_type") == "markdown" and bool(_DROPDOWN_ONLY.match(source_of(cell)))


def _note_cell(chapter_name: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_markdown_cell(
        f"> **Learner notebook**, generated from `chapters/{chapter_name}` by `make exercises`: "
        "edit the chapter, not this file. Replace each `...` and each "
        "`raise NotImplementedError(...)` with your code and run the check cell below it "
        "(a *Hint* dropdown above an exercise opens a hint). "
        f"`make check-exercise NB=exercises/{chapter_name}` checks the whole notebook "
        "and lists each exercise as passed, not solved yet, or wrong."
    )
    cell.id = NOTE_CELL_ID
    return cell


def learner_notebook(chapter: Any, chapter_name: str, index: BookIndex | None = None) -> Any:
    """The learner version of a chapter notebook (a new object; `chapter` is not modified).

    `index` (from `book_index`) turns references to other chapters into text; without it they
    are left as roles.
    """
    import nbformat

    nb = copy.deepcopy(chapter)
    exercises = exercises_of(chapter, chapter_name)
    by_cell = {cid: ex for ex in exercises for cid in (*ex.solution_ids, *ex.check_ids)}
    by_label = {ex.label: ex for ex in exercises}

    def admonition(match: re.Match) -> str:
        label = _LABEL.search(match.group("options"))
        return _exercise_admonition(match, by_label.get(label.group(1)) if label else None)

    check_at = {cid: ex for ex in exercises for cid in ex.check_ids}
    answered: Exercise | None = None  # the exercise whose check came last
    cells = []
    for number, cell in enumerate(nb.cells, start=1):
        if is_dropdown_only(cell):
            continue
        tags = tags_of(cell)
        answered = check_at.get(cell.get("id"), answered)
        if REVEALS_TAG in tags:
            if SOLUTION_TAG in tags or CHECK_TAG in tags:
                raise ExerciseMarkupError(f"{chapter_name}, cell {number}: a solution or check cell cannot be "
                                          f"tagged '{REVEALS_TAG}'")
            note = nbformat.v4.new_markdown_cell(reveals_note(cell, chapter_name))
            note.id = cell.get("id")
            cells.append(note)
            continue
        if cell.get("cell_type") == "markdown" and ANSWER_TAG in tags:
            cell["source"] = answer_note(answered, chapter_name)
        elif cell.get("cell_type") == "markdown":
            src = source_of(cell)
            src = _EXERCISE.sub(admonition, src)
            cell["source"] = plain_references(src, index) if index else src
        elif cell.get("cell_type") == "code":
            exercise = by_cell.get(cell.get("id"))
            who = exercise.short if exercise else f"cell {number}"
            if SOLUTION_TAG in tags:
                where = f"{chapter_name}, cell {number}"
                hints = solution_hints(source_of(cell), where) if exercise else []
                if hints and exercise and cell.get("id") == exercise.solution_ids[0]:
                    all_hints = [h for sid in exercise.solution_ids
                                 for c in chapter.cells if c.get("id") == sid
                                 for h in solution_hints(source_of(c))]
                    hint = nbformat.v4.new_markdown_cell(hint_cell_source(exercise, all_hints))
                    hint.id = f"{cell.get('id')}{HINT_SUFFIX}"[:64]
                    cells.append(hint)
                cell["source"] = stub_source(source_of(cell), who, where)
            if (SOLUTION_TAG in tags or CHECK_TAG in tags) and RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
            cell["outputs"] = []
            cell["execution_count"] = None
        if tags:
            cell.setdefault("metadata", {})["tags"] = tags
        # Execution timings and similar are not part of a learner notebook.
        cell.get("metadata", {}).pop("execution", None)
        cells.append(cell)
    note_at = 1 if cells and cells[0].get("cell_type") == "markdown" and "#" in source_of(cells[0]) else 0
    cells.insert(note_at, _note_cell(chapter_name))
    nb.cells = cells
    nb.metadata["kernelspec"] = copy.deepcopy(LEARNER_KERNELSPEC)
    nb.metadata["language_info"] = copy.deepcopy(LEARNER_LANGUAGE_INFO)
    return nb


def render(chapter_path: Path, index: BookIndex | None = None) -> str:
    """The exact text of the learner notebook for `chapter_path`."""
    import nbformat

    chapter = nbformat.read(str(chapter_path), as_version=4)
    if index is None:
        index = book_index(chapter_path.parent)
    nb = learner_notebook(chapter, chapter_path.name, index)
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
    index = book_index(chapters_dir)
    changed = []
    expected = set()
    for chapter in _chapters(chapters_dir):
        target = exercises_dir / chapter.name
        expected.add(target.name)
        text = render(chapter, index)
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
    index = book_index(chapters_dir)
    out = []
    expected = set()
    for chapter in _chapters(chapters_dir):
        target = exercises_dir / chapter.name
        expected.add(target.name)
        if not target.exists():
            out.append(StaleFile(target, "missing"))
        elif target.read_bytes() != render(chapter, index).encode("utf-8"):
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
