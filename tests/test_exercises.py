"""Tests of the learner-notebook generator `qklab.exercises` and of the grader `qklab.grading`
(what `make check-exercise` runs), on small synthetic notebooks and on the real chapters: stubs
are neutral and run, check cells cannot be removed or edited unnoticed, later cells never use a
learner's answer, the committed `exercises/` matches `chapters/`, and no learner notebook shows
an exercise's answer before its check cell."""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from qklab import exercises as ex
from qklab import grading

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _cell(kind, source, cid, tags=None):
    cell = new_code_cell(source) if kind == "code" else new_markdown_cell(source)
    cell.id = cid
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _chapter() -> nbformat.NotebookNode:
    solution = _cell(
        "code",
        "def pattern(S):\n"
        '    """Row softmax."""\n'
        "    if S.ndim < 2:\n"
        "        # BEGIN SOLUTION: subtract the row maximum first\n"
        "        S = S[None]\n"
        "        # END SOLUTION\n"
        "    # BEGIN SOLUTION\n"
        "    E = S.exp()\n"
        "    return E / E.sum(-1, keepdim=True)\n"
        "    # END SOLUTION",
        "sol",
        tags=["solution"],
    )
    solution.outputs = [new_output("stream", name="stdout", text="ran\n")]
    solution.execution_count = 3
    cells = [
        _cell("markdown", "(ch-demo)=\n# A chapter\n\nSome text, see {cite}`bao2024selfattention`.", "title"),
        _cell("markdown", "```{exercise}\n:label: ex-pattern\n\n**Write the pattern** (medium, about 5 minutes).\n```", "ex"),
        _cell("markdown", "```{solution-start} ex-pattern\n:class: dropdown\n```", "start"),
        solution,
        _cell("markdown", "```{solution-end}\n```", "end"),
        _cell("code", "check_pattern(pattern)", "chk", tags=["check"]),
        _cell("markdown", "```{exercise}\n:label: ex-value\n\n**Predict a value** (easy).\n```", "ex2"),
        _cell("code", "d = 8\nanswer = ...  # your answer\n# BEGIN SOLUTION: think of d\nanswer = 2 * d\nextra, more = 1, 2\n# END SOLUTION",
              "val", tags=["solution"]),
        _cell("code", "answer = 42", "whole", tags=["solution"]),
        _cell("markdown", ":::{solution-end}\n:::", "colon-end"),
        _cell("markdown", "A cell that mentions {solution-start} in running text stays; see {ref}`ex-pattern` "
              "and {numref}`chapter %s <ch-demo>`.", "prose"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _by_id(nb, cid):
    (cell,) = [c for c in nb.cells if c.get("id") == cid]
    return cell


# --- the generator --------------------------------------------------------------------------------
def test_block_in_a_function_becomes_a_neutral_raise_naming_the_function():
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb")
    lines = _by_id(out, "sol").source.split("\n")
    assert lines[:3] == ["def pattern(S):", '    """Row softmax."""', "    if S.ndim < 2:"]
    assert lines[3] == '        raise NotImplementedError("Exercise 7.1: write the body of pattern")'
    assert lines[4] == '    raise NotImplementedError("Exercise 7.1: write the body of pattern")'
    assert len(lines) == 5
    assert "row maximum" not in _by_id(out, "sol").source  # the hint is not in the stub
    compile(_by_id(out, "sol").source, "<stub>", "exec")


def test_top_level_block_becomes_named_ellipsis_values():
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb")
    # `answer` is already set to ... above the block: not repeated; the other names are.
    assert _by_id(out, "val").source == (
        "d = 8\nanswer = ...  # your answer\nextra = ...  # your answer\nmore = ...  # your answer"
    )
    namespace: dict = {}
    exec(_by_id(out, "val").source, namespace)  # runs: the check cell sees `...`, not a NameError
    assert namespace["answer"] is Ellipsis and namespace["more"] is Ellipsis


@pytest.mark.parametrize(
    "block, stub",
    [
        ("x = 1", "x = ...  # your answer"),
        ("a = b = 2", "a = ...  # your answer\nb = ...  # your answer"),
        ("def f(x):\n    return x", 'def f(*args, **kwargs):\n    raise NotImplementedError("Exercise 2.1: write f")'),
        ("print(3)", 'raise NotImplementedError("Exercise 2.1: write your solution here")'),
    ],
)
def test_top_level_stubs(block, stub):
    source = f"# BEGIN SOLUTION: secret recipe\n{block}\n# END SOLUTION"
    assert ex.stub_source(source, "Exercise 2.1") == stub


def test_cell_without_markers_is_replaced_whole():
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb")
    assert _by_id(out, "whole").source == 'raise NotImplementedError("Exercise 7.2: write your solution here")'


def test_hints_go_into_a_collapsed_dropdown_above_the_solution():
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb")
    ids = [c.id for c in out.cells]
    assert ids.index("sol-hint") == ids.index("sol") - 1
    hint = _by_id(out, "sol-hint").source
    assert hint.startswith("```{dropdown} Hint for Exercise 7.1\n") and "subtract the row maximum first" in hint
    assert _by_id(out, "val-hint").source == "```{dropdown} Hint for Exercise 7.2\nthink of d\n```"


def test_exercises_are_numbered_within_the_chapter_as_the_book_does():
    found = ex.exercises_of(_chapter(), "07_demo.ipynb")
    assert [(e.label, e.number, e.title, e.difficulty) for e in found] == [
        ("ex-pattern", "7.1", "Write the pattern", "medium"),
        ("ex-value", "7.2", "Predict a value", "easy"),
    ]
    assert found[0].solution_ids == ("sol",) and found[0].check_ids == ("chk",)
    assert found[1].solution_ids == ("val", "whole") and found[1].check_ids == ()
    assert found[0].name == "Exercise 7.1 Write the pattern"
    # chapter 0 is not numbered in the book: its exercises are 1, 2, ...
    assert [e.number for e in ex.exercises_of(_chapter(), "00_demo.ipynb")] == ["1", "2"]
    # an exercise marked :nonumber: has no number and does not count
    nb = _chapter()
    nb.cells[1].source = nb.cells[1].source.replace(":label: ex-pattern\n", ":label: ex-pattern\n:nonumber:\n")
    found = ex.exercises_of(nb, "07_demo.ipynb")
    assert [e.number for e in found] == ["", "7.1"] and found[0].name == "Exercise Write the pattern"
    out = ex.learner_notebook(nb, "07_demo.ipynb")
    assert _by_id(out, "ex").source.startswith("```{admonition} Exercise\n:class: exercise\n\n")
    assert _by_id(out, "sol-hint").source.startswith("```{dropdown} Hint\n")


def test_markdown_renders_in_jupyterlab_myst():
    index = ex.BookIndex({"ch-demo": "chapter 7"}, {"ex-pattern": "Exercise 7.1"},
                         {"bao2024selfattention": "Bao et al. (2024)"})
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb", index)
    statement = _by_id(out, "ex").source
    assert statement.startswith("```{admonition} Exercise 7.1\n:class: exercise\n")
    assert "{exercise}" not in statement and ":label:" not in statement
    assert "**Write the pattern**" in statement
    assert "Bao et al. (2024)" in _by_id(out, "title").source
    assert _by_id(out, "prose").source.endswith("see Exercise 7.1 and chapter 7.")
    assert not any("{cite}" in c.source or "{numref}" in c.source for c in out.cells)


def test_bibliography_names():
    bib = ("@article{a1,\n  author = {Bao, Han and Hataya, Ryuichiro and Karakida, Ryo},\n  year = {2024}\n}\n"
           "@article{b2,\n  author = {Dong, Yihe and Loukas, Andreas},\n  year = {2021}\n}\n")
    assert ex._bib_names(bib) == {"a1": "Bao et al. (2024)", "b2": "Dong and Loukas (2021)"}


def test_tags_outputs_and_dropdown_cells():
    out = ex.learner_notebook(_chapter(), "07_demo.ipynb")
    ids = [c.id for c in out.cells]
    assert "start" not in ids and "end" not in ids and "colon-end" not in ids
    assert "prose" in ids and "ex" in ids
    assert ids[:2] == ["title", ex.NOTE_CELL_ID]
    assert _by_id(out, "sol").metadata["tags"] == ["solution", "raises-exception"]
    assert _by_id(out, "chk").metadata["tags"] == ["check", "raises-exception"]
    for cell in out.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_cells_that_reveal_an_answer_become_notes_that_keep_their_headings():
    """Issue 28: a cell tagged `reveals-answer` (text, a claim or a printout that states an answer,
    wherever it stands) is not in the learner notebook; its headings are, and a note says where to read it."""
    chapter = _chapter()
    chapter.cells += [
        _cell("markdown", "Scale the block by a and it is -a^2/2.\n\n### The next section", "says", tags=[ex.REVEALS_TAG]),
        _cell("code", "print(f'{48 - 12} zero eigenvalues')", "prints", tags=[ex.REVEALS_TAG, "hide-input"]),
    ]
    out = ex.learner_notebook(chapter, "07_demo.ipynb")
    says, prints = _by_id(out, "says"), _by_id(out, "prints")
    assert says.cell_type == prints.cell_type == "markdown"
    assert "-a^2/2" not in says.source and says.source.startswith("### The next section\n\n> ")
    assert "48 - 12" not in prints.source and "chapters/07_demo.ipynb" in prints.source
    chapter.cells.append(_cell("code", "check_pattern(pattern)", "chk2", tags=["check", ex.REVEALS_TAG]))
    with pytest.raises(ex.ExerciseMarkupError, match="cannot be tagged"):
        ex.learner_notebook(chapter, "07_demo.ipynb")


def _bound_and_read(source: str) -> tuple[set[str], set[str]]:
    """Names a cell binds anywhere (assignments, defs, imports, arguments) and names it reads."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: bind nothing we can tell
        return set(), set()
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, read


@pytest.mark.parametrize("chapter_path", CHAPTERS, ids=lambda p: p.stem)
def test_no_later_cell_needs_a_cell_the_learner_notebook_leaves_out(chapter_path):
    """A code cell tagged `reveals-answer` is not in the learner notebook: no later code cell may read
    a name it sets (before another cell sets it again), or the learner notebook would not run."""
    chapter = nbformat.read(str(chapter_path), as_version=4)
    cells = [c for c in chapter.cells if c.cell_type == "code"]
    problems = []
    for i, cell in enumerate(cells):
        if ex.REVEALS_TAG not in ex.tags_of(cell):
            continue
        live, _ = _bound_and_read(cell.source)
        for later in cells[i + 1:]:
            bound, read = _bound_and_read(later.source)
            problems += [f"cell {later.id} reads `{n}`, set by the left-out cell {cell.id}" for n in sorted((read - bound) & live)]
            live -= bound
    assert not problems, "\n".join(problems)


def test_input_not_modified():
    nb = _chapter()
    before = nbformat.writes(nb)
    ex.learner_notebook(nb, "07_demo.ipynb")
    assert nbformat.writes(nb) == before


@pytest.mark.parametrize(
    "source, problem",
    [
        ("# BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n# END SOLUTION", "without a '# BEGIN SOLUTION'"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "inside the block"),
    ],
)
def test_malformed_markers_raise(source, problem):
    with pytest.raises(ex.ExerciseMarkupError, match=problem):
        ex.stub_source(source, "Exercise 1.1", "demo.ipynb, cell 2")


def _write(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_build_is_idempotent_and_check_detects_staleness(tmp_path, capsys):
    chapters, learner = tmp_path / "chapters", tmp_path / "exercises"
    _write(chapters / "01_demo.ipynb", _chapter())
    args = ["--chapters", str(chapters), "--exercises", str(learner)]

    assert ex.main(["check", *args]) == 1  # missing
    assert "01_demo.ipynb: missing" in capsys.readouterr().err

    assert ex.main(["build", *args]) == 0
    first = (learner / "01_demo.ipynb").read_bytes()
    assert ex.main(["check", *args]) == 0
    assert ex.build(chapters, learner) == []  # second build writes nothing
    assert (learner / "01_demo.ipynb").read_bytes() == first
    other = tmp_path / "other"  # same bytes from another folder: no random ids
    ex.build(chapters, other)
    assert (other / "01_demo.ipynb").read_bytes() == first

    nb = _chapter()
    nb.cells[0].source = "# A chapter, edited"
    _write(chapters / "01_demo.ipynb", nb)
    assert ex.main(["check", *args]) == 1
    assert "01_demo.ipynb: differs" in capsys.readouterr().err

    ex.build(chapters, learner)
    (learner / "99_orphan.ipynb").write_text(first.decode("utf-8"))
    assert ex.main(["check", *args]) == 1
    assert "99_orphan.ipynb: no chapter" in capsys.readouterr().err
    ex.build(chapters, learner)
    assert not (learner / "99_orphan.ipynb").exists()
    assert ex.main(["check", *args]) == 0


def test_markup_error_exit_code(tmp_path, capsys):
    nb = new_notebook(cells=[_cell("code", "# BEGIN SOLUTION\nx = 1", "bad", tags=["solution"])])
    _write(tmp_path / "chapters" / "02_bad.ipynb", nb)
    code = ex.main(["build", "--chapters", str(tmp_path / "chapters"), "--exercises", str(tmp_path / "ex")])
    assert code == 2
    assert "02_bad.ipynb, cell 1" in capsys.readouterr().err


def test_committed_exercises_are_up_to_date():
    problems = ex.stale(ROOT / "chapters", ROOT / "exercises")
    assert not problems, "run `make exercises` and commit exercises/: " + ", ".join(
        f"{p.path.name} ({p.reason})" for p in problems
    )


def test_strip_clears_outputs_only(tmp_path):
    path = tmp_path / "03_x.ipynb"
    nb = _chapter()
    _write(path, nb)
    assert ex.main(["strip", str(path)]) == 0
    out = nbformat.read(str(path), as_version=4)
    assert [c.source for c in out.cells] == [c.source for c in nb.cells]
    assert all(c.outputs == [] and c.execution_count is None for c in out.cells if c.cell_type == "code")
    assert ex.strip([path]) == []  # already clean: not rewritten


# --- the course's convention: later cells never use the learner's answer ---------------------------
def test_later_uses_finds_a_cell_that_uses_a_solution():
    nb = _chapter()
    nb.cells.append(_cell("code", "print(pattern(S))", "uses"))
    nb.cells.append(_cell("code", "answer = 3\nprint(answer)", "rebinds"))  # its own variable: fine
    found = grading.later_uses(nb, "07_demo.ipynb")
    assert found == ["07_demo.ipynb, cell 12 uses `pattern` from the solution of ex-pattern"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_cell_uses_a_learner_answer(chapter):
    # This is what makes `make check-exercise` sound when it stops at the last check cell.
    assert grading.later_uses(nbformat.read(str(chapter), as_version=4), chapter.name) == []


# --- tamper-proof check cells -----------------------------------------------------------------------
def _learner():
    chapter = _chapter()
    return chapter, ex.learner_notebook(chapter, "07_demo.ipynb"), ex.exercises_of(chapter, "07_demo.ipynb")


def test_intact_check_cells_are_found_even_with_a_new_cell_id():
    chapter, learner, exercises = _learner()
    _by_id(learner, "chk").id = "pasted-copy"  # Jupyter gives a copied cell a new id
    where, tampered = grading._match_check_cells(learner, ex.learner_notebook(chapter, "07_demo.ipynb"), exercises)
    assert tampered == {} and set(where) == {"chk"}


@pytest.mark.parametrize(
    "change, status",
    [
        ("delete", "check cell missing"),
        ("# check_pattern(pattern)", "check cell changed"),
        ("check_pattern(lambda S: S.softmax(-1))", "check cell changed"),
        ("pass", "check cell changed"),
        ("markdown", "check cell changed"),
    ],
)
def test_deleted_commented_or_edited_check_cell_fails_naming_the_exercise(change, status):
    chapter, learner, exercises = _learner()
    cell = _by_id(learner, "chk")
    if change == "delete":
        learner.cells.remove(cell)
    elif change == "markdown":
        cell.cell_type = "markdown"
    else:
        cell.source = change
    _, tampered = grading._match_check_cells(learner, ex.learner_notebook(chapter, "07_demo.ipynb"), exercises)
    assert list(tampered) == ["ex-pattern"]
    assert tampered["ex-pattern"].status == status
    assert tampered["ex-pattern"].line().startswith(f"Exercise 7.1 Write the pattern: {status}")
    assert "check_pattern(pattern)" in tampered["ex-pattern"].message  # says what to put back


# --- grading a notebook in a kernel -----------------------------------------------------------------
def _gradable_chapter():
    cells = [
        _cell("markdown", "# Grading demo", "title"),
        _cell("code", "from qklab.checks.core import check_value\nimport math", "imports"),
        _cell("markdown", "```{exercise}\n:label: ex-a\n\n**First** (easy).\n```", "ex-a"),
        _cell("code", "a = ...\n# BEGIN SOLUTION\na = math.log(8)\n# END SOLUTION", "sol-a", tags=["solution"]),
        _cell("code", "check_value(a, math.log(8), name='a')", "chk-a", tags=["check"]),
        _cell("code", "sweep = 1 / 0  # a slow experiment the checks do not need", "sweep"),
        _cell("markdown", "```{exercise}\n:label: ex-b\n\n**Second** (easy).\n```", "ex-b"),
        _cell("code", "def half(x):\n    # BEGIN SOLUTION\n    return x / 2\n    # END SOLUTION", "sol-b", tags=["solution"]),
        _cell("code", "check_value(half(3.0), 1.5, name='half(3)')", "chk-b", tags=["check"]),
        _cell("markdown", "```{exercise}\n:label: ex-c\n\n**Third** (medium).\n```", "ex-c"),
        _cell("code", "c = ...\n# BEGIN SOLUTION\nc = 7.0\n# END SOLUTION", "sol-c", tags=["solution"]),
        _cell("code", "check_value(c, 7.0, name='c')", "chk-c", tags=["check"]),
        _cell("code", "raise RuntimeError('the rest of the chapter ran')", "after"),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


@pytest.mark.slow
def test_grade_reports_each_exercise_and_stops_after_the_last_check(tmp_path):
    chapter = _gradable_chapter()
    _write(tmp_path / "chapters" / "05_demo.ipynb", chapter)
    learner = ex.learner_notebook(chapter, "05_demo.ipynb")
    _by_id(learner, "sol-a").source = "a = math.log(8.0)"  # right, another way
    # wrong, and the learner also redefines the check to pass: the grader imports it again
    _by_id(learner, "sol-c").source = "c = 6.0\ndef check_value(*args, **kwargs):\n    pass"
    path = tmp_path / "exercises" / "05_demo.ipynb"
    _write(path, learner)

    report = grading.grade(path)
    lines = [o.line() for o in report.outcomes]
    assert lines[0] == "Exercise 5.1 First: passed"
    assert lines[1] == "Exercise 5.2 Second: not solved yet"  # the stub raised NotImplementedError
    assert lines[2].startswith("Exercise 5.3 Third: wrong: c: ")  # the check's message, no traceback
    assert report.problems == []  # neither the sweep nor the cell after the last check ran
    assert report.cells_run == 7 and report.cells_total == 9
    assert not report.passed
    assert "c = 6.0" not in report.summary() and "Traceback" not in report.summary()


@pytest.mark.slow
def test_grade_cli_passes_a_solved_notebook_and_warns_on_a_rebound_name(tmp_path, capsys):
    chapter = _gradable_chapter()
    chapter.cells.insert(1, _cell("code", "T = 5", "setup"))
    chapter.cells[-1].source = "print(T)"  # the chapter uses T after the exercises
    _write(tmp_path / "chapters" / "05_demo.ipynb", chapter)
    learner = nbformat.read(str(tmp_path / "chapters" / "05_demo.ipynb"), as_version=4)  # solutions in place
    _by_id(learner, "sol-b").source += "\nT = 6"
    _write(tmp_path / "exercises" / "05_demo.ipynb", learner)
    assert grading.main([str(tmp_path / "exercises" / "05_demo.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "Exercise 5.1 First: passed\n  Exercise 5.2 Second: passed\n  Exercise 5.3 Third: passed" in out
    assert "sets `T`, which later cells of the chapter use" in out
    assert "3 of 3 exercises passed" in out


def test_needed_cells_follow_names_back_and_skip_the_rest():
    cells = [
        _cell("code", "import math\nimport torch", "imports"),
        _cell("code", "X = torch.zeros(3)\nplot(X)", "x"),
        _cell("code", "X[0] = 1.0", "mutates"),
        _cell("code", "results = sweep(X)  # slow", "sweep"),
        _cell("code", "Y = results * 2", "y"),
        _cell("code", "scale = 2.0", "scale"),
        _cell("code", "scale = math.pi", "scale2"),
        _cell("code", "live(X)", "widget", tags=["skip-execution"]),
        _cell("code", "r = results[0]", "r"),
        _cell("code", "def f(v, r=1.0):\n    return sum(v * scale * r * k for k in range(2)) + X.sum()", "sol",
              tags=["solution"]),
        _cell("code", "check(f)", "chk", tags=["check"]),
    ]
    # f needs scale (the last binding, which needs math) and X (bound, then modified in place);
    # its parameter r and the comprehension's k are not the global r: the sweep is not needed.
    assert [cells[i].id for i in grading.needed_cells(cells, [9, 10])] == [
        "imports", "x", "mutates", "scale2", "sol", "chk"]


def test_grade_cli_errors_on_a_missing_notebook(tmp_path, capsys):
    assert grading.main([str(tmp_path / "nothing.ipynb")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the real learner notebooks: stubs run, nothing leaks ------------------------------------------
def _namespace_of_first_cell(chapter) -> dict:
    namespace: dict = {}
    first = next(c for c in chapter.cells if c.cell_type == "code")
    exec(compile(first.source, "<imports>", "exec"), namespace)
    return namespace


def _learner_of(chapter_path: Path):
    return nbformat.reads(ex.render(chapter_path), as_version=4)


@pytest.mark.parametrize("chapter_path", CHAPTERS, ids=lambda p: p.stem)
def test_every_stub_runs_and_its_check_says_not_answered(chapter_path):
    chapter = nbformat.read(str(chapter_path), as_version=4)
    learner = _learner_of(chapter_path)
    for exercise in ex.exercises_of(chapter, chapter_path.name):
        namespace = _namespace_of_first_cell(chapter)
        for cid in exercise.solution_ids:
            try:
                exec(compile(_by_id(learner, cid).source, cid, "exec"), namespace)
            except NotImplementedError:
                pass
            except Exception as err:  # noqa: BLE001 - the test reports which error
                pytest.fail(f"{exercise.name}: the stub cell raises {type(err).__name__}: {err}")
        for cid in exercise.check_ids:
            with pytest.raises(Exception) as caught:  # noqa: PT011 - which one is checked below
                exec(compile(_by_id(learner, cid).source, cid, "exec"), namespace)
            error = caught.value
            assert isinstance(error, NotImplementedError) or re.search(
                "no answer yet|not answered|NotImplementedError", str(error), re.IGNORECASE
            ), f"{exercise.name}: an unsolved check says {type(error).__name__}: {error}"


def _number_forms(value: float) -> set[str]:
    """How a reference number may be written: fixed and significant digits at several precisions."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return set()
    if float(value).is_integer():
        return {str(int(value))} if abs(value) >= 10 else set()  # small integers are everywhere
    forms = {f"{value:.{k}f}" for k in range(2, 7)} | {f"{value:.{k}g}" for k in range(3, 8)}
    return {f for f in forms if len(f.lstrip("-").replace(".", "").lstrip("0")) >= 2}


def _normal(text: str) -> str:
    return re.sub(r"(math|torch|np)\.|[\s()\\{}$]", "", text)


def _solution_lines_and_values(chapter, exercise):
    """The code lines of an exercise's solution blocks, and the values its top-level blocks bind."""
    lines, values, expressions = [], {}, []
    namespace = _namespace_of_first_cell(chapter)
    for cid in exercise.solution_ids:
        source = _by_id(chapter, cid).source
        src_lines = source.split("\n")
        blocks = ex.solution_blocks(source)
        for begin, end, indent, _ in blocks:
            lines += [l.strip() for l in src_lines[begin + 1:end] if l.strip() and not l.strip().startswith("#")]
            if not indent:
                for line in src_lines[begin + 1:end]:
                    rhs = line.split("#")[0].partition("=")[2]
                    if len(_normal(rhs)) >= 4:
                        expressions.append(_normal(rhs))
        if blocks and not any(indent for _, _, indent, _ in blocks):
            exec(compile(source, cid, "exec"), namespace)
            for begin, end, _, _ in blocks:
                names, _, _ = ex._bound_names("\n".join(src_lines[begin + 1:end]))
                values.update({n: namespace[n] for n in names if n in namespace})
    return lines, values, expressions


def _visible_until_check(learner, exercise) -> list[tuple[int, str]]:
    """(cell number, text) of every cell a learner sees above the exercise's check cell.

    Hint dropdowns are included: a hint may give a recipe, never the value or a line of code.
    """
    ids = [c.get("id") for c in learner.cells]
    at = [ids.index(cid) for cid in exercise.check_ids if cid in ids]
    last = max(at) if at else len(ids) - 1  # no check cell: the whole notebook
    return [(i + 1, c.source) for i, c in enumerate(learner.cells[: last + 1])]


def leaks(chapter_path: Path, learner) -> list[str]:
    chapter = nbformat.read(str(chapter_path), as_version=4)
    found = []
    for exercise in ex.exercises_of(chapter, chapter_path.name):
        lines, values, expressions = _solution_lines_and_values(chapter, exercise)
        visible = _visible_until_check(learner, exercise)
        for number, text in visible:
            for line in lines:
                if len(line) >= 12 and not line.startswith(("return ", "def ")) and line in text:
                    found.append(f"{exercise.name}: cell {number} shows the solution line `{line}`")
            for name, value in values.items():
                for form in _number_forms(value):
                    if re.search(rf"(?<![\d.]){re.escape(form)}(?![\d])", text):
                        found.append(f"{exercise.name}: cell {number} shows {form}, the value of `{name}`")
                        break
            for expression in expressions:
                if expression in _normal(text):
                    found.append(f"{exercise.name}: cell {number} shows the answer's formula `{expression}`")
    return found


@pytest.mark.parametrize("chapter_path", CHAPTERS, ids=lambda p: p.stem)
def test_generated_learner_notebook_does_not_leak_answers(chapter_path):
    problems = leaks(chapter_path, _learner_of(chapter_path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chapter_path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_learner_notebook_does_not_leak_answers(chapter_path):
    committed = ROOT / "exercises" / chapter_path.name
    problems = leaks(chapter_path, nbformat.read(str(committed), as_version=4))
    assert not problems, "\n".join(problems)


def test_leak_scan_finds_a_leaked_value_formula_and_line():
    chapter = _gradable_chapter()
    chapter.cells.insert(2, _cell("markdown", "The entropy is log 8 = 2.079 nats.", "leaky"))
    chapter.cells[4].source = "# a = math.log(8)\n" + chapter.cells[4].source
    path = Path("05_demo.ipynb")
    learner = ex.learner_notebook(chapter, path.name)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp) / path.name, chapter)
        found = leaks(Path(tmp) / path.name, learner)
    assert any("shows 2.079, the value of `a`" in f for f in found)
    assert any("shows the answer's formula `log8`" in f for f in found)
    assert any("solution line `a = math.log(8)`" in f for f in found)
