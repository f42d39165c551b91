"""Tests of the learner-notebook generator `qklab.exercises` on small synthetic notebooks, and a
check that the committed `exercises/` matches `chapters/`."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from qklab import exercises as ex

ROOT = Path(__file__).resolve().parents[1]


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
        _cell("markdown", "# A chapter\n\nSome text.", "title"),
        _cell("markdown", "```{exercise}\n:label: ex-pattern\n\nWrite `pattern`.\n```", "ex"),
        _cell("markdown", "```{solution-start} ex-pattern\n:class: dropdown\n```", "start"),
        solution,
        _cell("markdown", "```{solution-end}\n```", "end"),
        _cell("code", "check_pattern(pattern)", "chk", tags=["check"]),
        _cell("code", "answer = 42", "whole", tags=["solution"]),
        _cell("markdown", ":::{solution-end}\n:::", "colon-end"),
        _cell("markdown", "A cell that mentions {solution-start} in running text stays.", "prose"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _by_id(nb, cid):
    (cell,) = [c for c in nb.cells if c.get("id") == cid]
    return cell


def test_blocks_replaced_at_their_indentation_with_hint_and_label():
    out = ex.learner_notebook(_chapter(), "01_demo.ipynb")
    lines = _by_id(out, "sol").source.split("\n")
    assert lines[0] == "def pattern(S):"
    assert lines[1] == '    """Row softmax."""'
    assert lines[2] == "    if S.ndim < 2:"
    assert lines[3] == (
        '        raise NotImplementedError("Exercise ex-pattern: subtract the row maximum first'
        ' — write your solution here")'
    )
    assert lines[4] == '    raise NotImplementedError("Exercise ex-pattern: write your solution here")'
    assert len(lines) == 5
    compile(_by_id(out, "sol").source, "<stub>", "exec")  # still valid Python


def test_cell_without_markers_is_replaced_whole():
    out = ex.learner_notebook(_chapter(), "01_demo.ipynb")
    assert _by_id(out, "whole").source == (
        'raise NotImplementedError("Exercise ex-pattern: write your solution here")'
    )


def test_unlabelled_exercise_is_named_by_cell_number():
    nb = new_notebook(cells=[_cell("code", "x = 1", "only", tags=["solution"])])
    out = ex.learner_notebook(nb, "x.ipynb")
    assert "Exercise cell 1:" in _by_id(out, "only").source


def test_tags_outputs_and_dropdown_cells():
    out = ex.learner_notebook(_chapter(), "01_demo.ipynb")
    ids = [c.id for c in out.cells]
    assert "start" not in ids and "end" not in ids and "colon-end" not in ids
    assert "prose" in ids and "ex" in ids
    assert ids[:2] == ["title", ex.NOTE_CELL_ID]
    assert _by_id(out, "sol").metadata["tags"] == ["solution", "raises-exception"]
    assert _by_id(out, "chk").metadata["tags"] == ["check", "raises-exception"]
    for cell in out.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_input_not_modified():
    nb = _chapter()
    before = nbformat.writes(nb)
    ex.learner_notebook(nb, "01_demo.ipynb")
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
        ex.stub_source(source, "ex-a", "demo.ipynb, cell 2")


def test_hint_with_quotes_is_a_valid_literal():
    line = ex.stub_line("", "ex-q", 'use "nats", not \\bits')
    namespace: dict = {}
    with pytest.raises(NotImplementedError, match='use "nats", not'):
        exec(line, namespace)


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
    # building from the same chapter in another folder gives the same bytes (no random ids)
    other = tmp_path / "other"
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
