"""`qklab.kernel_answers`: how the grader reads a learner's answers from the kernel, without a kernel.

The kernel is played by a namespace in this process: `run_code` executes the grader's one-line
requests there, so every byte still crosses as in grading (files, the plain-data pickle), and the
tests run in milliseconds. What the grading process receives must be plain data whatever the
"kernel" sends.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import pickle
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from qklab import grading
from qklab.checks.core import Case, check_function
from qklab.checks.feedback import ExerciseCheckError
from qklab.checks.rules import obeying_rules
from qklab.exercises import exercises_of, source_of
from qklab.kernel_answers import (
    KernelAnswers,
    KernelFunction,
    KernelUnreachable,
    MisplacedWatch,
    Opaque,
    decode,
    dumps,
    encode,
    loads,
)


@pytest.fixture
def kernel(tmp_path):
    """(namespace of the pretend kernel, KernelAnswers reading it)."""
    namespace: dict = {"torch": torch, "np": np, "math": math}

    def run_code(code: str) -> None:
        exec(code, namespace)

    return namespace, KernelAnswers(run_code, tmp_path)


def _define(namespace: dict, source: str) -> None:
    exec(source, namespace)


@pytest.mark.parametrize("value", [
    3, -2**70, 2.5, float("nan"), True, None, Ellipsis, 1 - 2j, "text", b"\x00\x01", torch.float32,
    [1, (2.0, "x")], {"a": 1, 2: [3]}, {1, 2}, frozenset({3}),
    torch.arange(6, dtype=torch.float64).reshape(2, 3), torch.zeros(0, 4), torch.tensor(7), torch.tensor([True, False]),
    torch.randn(3, 3, generator=torch.Generator().manual_seed(0)).T, torch.tensor([1 + 1j], dtype=torch.complex64).conj(),
    torch.tensor([-0.0, math.inf], dtype=torch.bfloat16),
    np.arange(6.0).reshape(3, 2), np.float32(1.5), np.int64(-4), np.array([1j]), np.zeros((2, 0), dtype=np.int8),
], ids=repr)
def test_plain_values_arrive_equal_and_of_the_same_type(value):
    got = decode(loads(dumps(encode(value))), function=None)
    assert type(got) is type(value)
    if isinstance(value, torch.Tensor):
        want = value.resolve_conj()
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got.reshape(-1).view(torch.uint8), want.contiguous().reshape(-1).view(torch.uint8))  # bit for bit
    elif isinstance(value, np.ndarray):
        assert got.dtype == value.dtype and np.array_equal(got, value)
        assert got.flags.writeable
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value


def test_the_unpickler_refuses_every_class_and_function():
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    for payload in (pickle.dumps(Evil()), pickle.dumps(torch.zeros(2)), pickle.dumps(np.zeros(2)), pickle.dumps(object())):
        with pytest.raises(pickle.UnpicklingError, match="is not plain data"):
            loads(payload)
    with pytest.raises(ValueError, match="not a tensor dtype"):
        decode(("tensor", "qint8", (1,), b"\x00"), function=None)
    with pytest.raises(ValueError, match="not a value node"):
        decode(["list", ()], function=None)


def test_a_tensor_subclass_arrives_as_a_plain_tensor_of_its_values(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "class Liar(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func is torch.allclose:\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"
        "answer = torch.zeros(3, dtype=torch.float64).as_subclass(Liar)"))
    got = answers.fetch("answer")
    assert type(got) is torch.Tensor
    assert not torch.allclose(got, torch.ones(3, dtype=torch.float64))


def test_other_objects_arrive_as_stand_ins_that_keep_their_type_name(kernel):
    namespace, answers = kernel
    _define(namespace, "class Widget:\n    pass\nanswer = [Widget(), 1]")
    got = answers.fetch("answer")
    assert isinstance(got[0], Opaque) and type(got[0]).__name__ == "Widget" and got[1] == 1
    assert "Widget from your notebook" in repr(got[0])
    with pytest.raises(NameError, match="name 'missing' is not defined"):
        answers.fetch("missing")


def test_a_function_is_called_in_the_kernel_and_looks_like_itself(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "calls = []\n"
        "def scale(x: torch.Tensor, k: float = 2.0, *, shift=0):\n"
        "    '''Scale x.'''\n"
        "    calls.append(type(x).__name__)\n"
        "    return x * k + shift"))
    fn = answers.fetch("scale")
    assert isinstance(fn, KernelFunction) and callable(fn)
    assert fn.__name__ == "scale" and fn.__doc__ == "Scale x."
    assert [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()] == [
        ("x", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("k", inspect.Parameter.POSITIONAL_OR_KEYWORD, Ellipsis),
        ("shift", inspect.Parameter.KEYWORD_ONLY, Ellipsis)]
    x = torch.arange(3, dtype=torch.float64)
    assert torch.equal(fn(x, 3.0, shift=1), torch.tensor([1.0, 4.0, 7.0], dtype=torch.float64))
    assert namespace["calls"] == ["Tensor"]  # it ran there


def test_a_change_to_an_argument_in_the_kernel_is_made_to_the_callers_argument(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "def halve_in_place(X, rows):\n"
        "    X.mul_(0.5)\n"
        "    rows.append(len(rows))\n"
        "    return X.sum()\n"
        "def pure(X, rows):\n"
        "    return X.sum()"))
    X, rows = torch.ones(2, 2), [7]
    answers.fetch("halve_in_place")(X, rows)
    assert torch.equal(X, torch.full((2, 2), 0.5)) and rows == [7, 1]
    Y = torch.ones(2)
    before = Y.data_ptr()
    answers.fetch("pure")(Y, [])
    assert torch.equal(Y, torch.ones(2)) and Y.data_ptr() == before
    # and so the engine names the modified argument, as it does in the notebook
    with pytest.raises(ExerciseCheckError, match="modified its arguments `X`, `rows` in place"):
        check_function(answers.fetch("halve_in_place"), lambda X, rows: X.sum(),
                       [Case("ones", (torch.ones(2, 2), [1]))], name="halve", quiet=True)


def test_the_learners_exception_is_raised_again_by_type_name_and_message(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "class ShapeError(ValueError):\n"
        "    pass\n"
        "def bad(kind):\n"
        "    if kind == 'own':\n"
        "        raise ShapeError('rows and columns swapped')\n"
        "    if kind == 'key':\n"
        "        return {}['missing']\n"
        "    raise NotImplementedError('Exercise 1.1: write bad')"))
    bad = answers.fetch("bad")
    with pytest.raises(ValueError, match="rows and columns swapped") as caught:
        bad("own")
    assert type(caught.value).__name__ == "ShapeError"
    assert any("in bad" in note for note in caught.value.__notes__)  # where, in the learner's code
    with pytest.raises(KeyError) as caught:
        bad("key")
    assert type(caught.value) is KeyError and str(caught.value) == "'missing'"
    with pytest.raises(NotImplementedError, match="write bad"):
        bad("stub")


def test_the_rule_watch_runs_in_the_kernel_around_the_computation(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "def forms_w(W_Q, W_K):\n"
        "    W = W_Q @ W_K.T\n"
        "    return W.diagonal().sum()\n"
        "def traces(W_Q, W_K):\n"
        "    return (W_Q * W_K).sum()"))
    W_Q, W_K = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    watched = obeying_rules(answers.fetch("forms_w"), name="trace")
    assert isinstance(watched, KernelFunction)
    with pytest.raises(ExerciseCheckError, match=r"d x d"):  # the memory rule's refusal, whatever its wording
        watched(W_Q, W_K)
    ok = obeying_rules(answers.fetch("traces"), name="trace")(W_Q, W_K)
    assert torch.allclose(ok, (W_Q @ W_K.T).trace())


def test_a_kernel_that_does_not_answer_is_an_error_not_a_pass(tmp_path):
    silent = KernelAnswers(lambda code: None, tmp_path)  # an input transformer that empties every cell
    with pytest.raises(KernelUnreachable, match="did not answer"):
        silent.fetch("answer")

    def forged(code: str) -> None:  # a kernel that answers with a pickled class instead of plain data
        (tmp_path / "1.reply").write_bytes(pickle.dumps(("value", torch.zeros(1))))

    with pytest.raises(KernelUnreachable, match="not plain data"):
        KernelAnswers(forged, tmp_path).fetch("answer")

    def crashed(code: str) -> None:
        raise RuntimeError("Kernel died")

    with pytest.raises(KernelUnreachable, match="Kernel died"):
        KernelAnswers(crashed, tmp_path).fetch("answer")


# --- every check of the course, through the boundary ---------------------------------------------------

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("chapter_path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_solution_passes_its_check_across_the_boundary(chapter_path, tmp_path):
    """Each check cell, evaluated as the grader does (`grading._judge`), on the chapter's own
    solutions run in a pretend kernel: every argument a check passes and every value a solution
    returns crosses as plain data, and the verdict is "passed"."""
    chapter = nbformat.read(str(chapter_path), as_version=4)
    exercises = exercises_of(chapter, chapter_path.name)
    index = {c.get("id"): i for i, c in enumerate(chapter.cells)}
    checks = sorted(index[cid] for ex in exercises for cid in ex.check_ids)
    if not checks:
        pytest.skip("no check cell")
    namespace: dict = {}
    answers = KernelAnswers(lambda code: exec(code, namespace), tmp_path)
    cells = grading.needed_cells(chapter.cells, sorted(checks + [index[s] for ex in exercises for s in ex.solution_ids]))
    with contextlib.redirect_stdout(io.StringIO()):
        for i in cells:
            source = source_of(chapter.cells[i])
            if i in checks:
                verdict = grading._judge(grading._prepare_check(chapter, i, source), answers)
                assert verdict is None, f"{chapter_path.name}, check `{source.strip()}`: {verdict}"
            else:
                exec(compile(source, f"cell {i}", "exec"), namespace)


def test_an_exception_whose_builtin_base_wants_other_arguments_keeps_its_name(kernel):
    namespace, answers = kernel
    _define(namespace, (
        "class Decoding(UnicodeDecodeError):\n"
        "    pass\n"
        "def decode_it():\n"
        "    raise Decoding('utf-8', b'\\xff', 0, 1, 'bad byte')"))
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
        answers.fetch("decode_it")()
    assert type(caught.value).__name__ == "Decoding" and "bad byte" in str(caught.value)


def test_a_check_cell_uses_the_chapters_imports_and_the_builtins_not_the_notebooks(kernel):
    """What a check cell calls is imported in the grading process as the chapter imports it; a
    builtin stays the builtin; only the learner's names come from the kernel."""
    from nbformat.v4 import new_code_cell, new_notebook

    namespace, answers = kernel
    chapter = new_notebook(cells=[new_code_cell("from qklab.checks.core import check_value")])
    check = grading._prepare_check(chapter, 1, "check_value(float(a), 2.0, name='a')")
    _define(namespace, "a = 3.0\n"
                       "check_value = lambda *args, **kwargs: None  # the learner's own 'check'\n"
                       "float = lambda x: 2.0  # and a float that always gives the answer")
    verdict = grading._judge(check, answers)
    assert verdict is not None and verdict[0] == "ExerciseCheckError" and "your answer 3 is too large" in verdict[1]
    _define(namespace, "a = 2.0")
    assert grading._judge(check, answers) is None
    del namespace["a"]
    assert grading._judge(check, answers) == ("NameError", "name 'a' is not defined")


def test_a_torch_watch_left_in_the_grading_process_is_a_loud_defect_not_a_pass(kernel):
    """A watch that observes torch in the grading process, around a function that runs in the
    kernel, would see nothing and let a forbidden computation pass: the call refuses to run."""
    from torch.overrides import TorchFunctionMode

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return func(*args, **(kwargs or {}))

    namespace, answers = kernel
    _define(namespace, "def forms_w(W_Q, W_K):\n    return (W_Q @ W_K.T).trace()")
    fn, W = answers.fetch("forms_w"), torch.ones(4, 2)
    with Watch(), pytest.raises(MisplacedWatch, match="watch_where_it_runs"):
        fn(W, W)
    assert float(fn(W, W)) == 8.0  # without the misplaced watch, it runs
