"""Check a learner's answers in a learner notebook: `make check-exercise NB=exercises/NN_slug.ipynb`.

`grade(path)` runs a learner notebook (`exercises/NN_slug.ipynb`, made by `qklab.exercises` from
`chapters/NN_slug.ipynb`) and reports each exercise by its number and title: passed, not solved
yet (a stub or `...` is still there), wrong (with the check's message only, no traceback), an
error in the learner's code, or a check cell missing or changed. `python -m qklab.grading NB`
prints that summary and exits with 0 only when every exercise passed.

Where the checks run. The learner's cells run in a fresh Jupyter kernel; the check cells do not.
Each check cell is evaluated in the grading process, which never runs the learner's code: the
names the check cell calls are imported there, as the chapter imports them (before the kernel
runs any learner cell); the learner's names it passes are read from the kernel at that point of
the notebook (`qklab.kernel_answers`): a value is copied as plain data (numbers, strings,
tensors, numpy arrays, and lists, tuples, dicts of them), a function becomes a stand-in whose
every call runs the learner's function in the kernel and copies its result (and any change it
made to its arguments) back. An exercise passes only when its check returned without raising:
the verdict is the check's own result, not the absence of an error output in the kernel.

What that guarantees. Nothing a learner's cell does inside the kernel changes how the check
compares: exception handlers installed through IPython, a replaced `showtraceback`, input
transformers, patched `qklab.checks.*` modules or `torch.allclose`, a check function redefined in
the notebook, or an answer object whose comparisons lie (a tensor subclass arrives as a plain
tensor of its values). A kernel that does not answer (a cell that changed how cells run, a dead
kernel, a timeout) fails the exercise. Every check cell must be present and unchanged against
the chapter (a deleted, commented-out or edited check cell fails, naming the exercise).

What it does not guarantee. (1) What a check learns about *how* a function computes is watched
where the computation runs, in the kernel, around each call of the learner's function
(`qklab.kernel_answers.watch_where_it_runs`): the rules a statement sets ("do not form the d x d
matrix", "no eigen-solver", `qklab.checks.rules`) and the refusal of the package's answer (6.3
may not build `qklab.spectrum.QK`). A learner who patches the kernel (the watch's module,
torch's dispatch modes, `tracemalloc`) can fool those watches, but not the comparison of the
results. Likewise the check that a function leaves its arguments unchanged reads the arguments
back from the kernel after the call. (2) The learner's function can compute its answer
any way it likes, including by calling the package's reference implementation (`qklab` is
installed in the kernel): the grader checks what was computed, not how it was found. (3) The
grader trusts the course's files: the chapter the notebook is checked against and the package
on disk (`qklab/`, editable install). A cell that rewrites them changes the course itself (it
shows in `git status`); the modules imported before the kernel ran are not affected in the same
run. The kernel runs as the same user as the grader, with no isolation by the operating system:
code that attacks the grading process itself (signals, a debugger) is not stopped.

It is fast because it runs only the cells the exercises need (`needed_cells`): the learner's cells
(solutions and any cell the learner added), the check cells, and, for every name those use, the
earlier cells that set it, transitively; in practice the imports. A chapter's sweeps and figures,
and every cell after the last check, are skipped. That is sound by the course's convention: cells
after an exercise use the package's reference implementation, never the learner's function or
value, so the rest of the chapter cannot depend on the learner's answer, and a check calls a check
of the package on the learner's answer only. `tests/test_exercises.py` verifies the convention on
every chapter (`later_uses` is empty). What the learner's cells could still break is a name the
chapter uses later (`T = 8` in an answer cell): that is reported as a warning naming the name;
`--all` runs the whole notebook. A call of the learner's function costs a round trip to the
kernel (a few milliseconds).

Not in here: generating learner notebooks (`qklab.exercises`), the checks (`qklab.checks`),
moving answers between the kernel and the grading process (`qklab.kernel_answers`).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import concurrent.futures
import contextlib
import functools
import io
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Sequence

from qklab.exercises import (
    CHECK_TAG,
    SOLUTION_TAG,
    Exercise,
    book_index,
    exercises_of,
    import_statements,
    learner_notebook,
    solution_blocks,
    source_of,
    tags_of,
)

if TYPE_CHECKING:
    from qklab.kernel_answers import KernelAnswers

SKIP_TAGS = {"skip-execution", "nbval-skip"}  # live widget cells: never run headless
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOT_ANSWERED = re.compile(r"NotImplementedError|no answer yet|not answered", re.IGNORECASE)


@dataclass
class Outcome:
    """What happened to one exercise."""

    exercise: Exercise
    status: str  # "passed", "not solved yet", "wrong", "error", "check cell missing", "check cell changed"
    message: str = ""

    def line(self) -> str:
        name = self.exercise.name.replace("$", "").replace("\\", "")  # a terminal shows no TeX
        head = f"{name}: {self.status}"
        if not self.message:
            return head
        body = self.message.strip().replace("\n", "\n      ")
        return f"{head}: {body}"


@dataclass
class Report:
    """The outcome of every exercise of one learner notebook, and what else went wrong."""

    notebook: Path
    outcomes: list[Outcome]
    problems: list[str] = field(default_factory=list)  # failed cells that are not exercises
    warnings: list[str] = field(default_factory=list)
    cells_run: int = 0
    cells_total: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and all(o.status == "passed" for o in self.outcomes)

    def summary(self) -> str:
        lines = [f"Checking {self.notebook}: ran {self.cells_run} of its {self.cells_total} code cells "
                 "(your cells, the checks and the cells they need; no later cell uses your answers)."]
        lines += [f"  {o.line()}" for o in self.outcomes]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        n_ok = sum(o.status == "passed" for o in self.outcomes)
        lines.append(f"{n_ok} of {len(self.outcomes)} exercises passed ({self.seconds:.1f} s).")
        return "\n".join(lines)


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


class _Names(NamedTuple):
    """What a code cell does with names at the top level (the notebook's global scope)."""

    rebound: frozenset[str]  # bound anew: `x = ...`, `def x`, `import x`
    modified: frozenset[str]  # changed in place: `x[0] = 1`, `x.w = w`
    loaded: frozenset[str]  # read from the global namespace, also inside functions


@functools.lru_cache(maxsize=1024)
def _cell_names(source: str) -> _Names:
    """The names of a code cell; all empty if it does not parse."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ImportError, ValueError):
        return _Names(frozenset(), frozenset(), frozenset())
    rebound: set[str] = set()
    modified: set[str] = set()
    for node in _top_level_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            rebound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            rebound.add(node.id)
        elif isinstance(node, ast.alias):
            rebound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            base = node.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                modified.add(base.id)
    return _Names(frozenset(rebound), frozenset(modified), frozenset(_global_reads(ast.unparse(tree))))


def _code_names(source: str) -> tuple[set[str], set[str]]:
    """(names bound at the top level, names loaded anywhere) of a code cell; empty if unparsable.

    A name whose item or attribute is assigned (`X[0] = 1`, `model.w = w`) counts as bound too.
    """
    names = _cell_names(source)
    return set(names.rebound | names.modified), set(names.loaded)


def _top_level_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node of a cell that runs in its global scope: a `def` or `class` is yielded, but not
    its body (names assigned inside a function are its locals, not the notebook's)."""
    stack: list[ast.AST] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _global_reads(code: str) -> set[str]:
    """Names that `code` reads from the global namespace: at the top level, and inside functions,
    lambdas and comprehensions the names that are neither parameters nor local there."""
    import symtable

    def walk(table: symtable.SymbolTable, top: bool) -> set[str]:
        names = {sym.get_name() for sym in table.get_symbols()
                 if sym.is_referenced() and (top or sym.is_global())}
        for child in table.get_children():
            names |= walk(child, False)
        return names

    try:
        return walk(symtable.symtable(code, "<cell>", "exec"), True)
    except SyntaxError:
        return set()


def needed_cells(cells: Sequence[Any], required: Sequence[int]) -> list[int]:
    """The code cells to run for the cells `required` (indices into `cells`), in order: those and,
    for every name they use, the earlier cells that set it (the last one that binds it and any
    that modify it in place after), transitively. Cells tagged to skip are never included.

    This is how `make check-exercise` skips a chapter's sweeps and figures: a check cell calls a
    check from the package on the learner's function, so it needs the imports and the learner's
    cells, not the chapter's experiments.
    """
    empty = _Names(frozenset(), frozenset(), frozenset())
    names = [_cell_names(source_of(c)) if c.get("cell_type") == "code" else empty for c in cells]
    chosen: set[int] = set()
    todo = [i for i in required if not (SKIP_TAGS & set(tags_of(cells[i])))]
    while todo:
        i = todo.pop()
        if i in chosen:
            continue
        chosen.add(i)
        here = names[i]
        for name in here.loaded - here.rebound - here.modified:
            for j in range(i - 1, -1, -1):
                if name in names[j].rebound | names[j].modified and not (SKIP_TAGS & set(tags_of(cells[j]))):
                    todo.append(j)
                    if name in names[j].rebound:
                        break
    return sorted(chosen)


def solution_names(source: str) -> set[str]:
    """Names the solution blocks of a cell define: what the learner writes and the chapter must
    not use afterwards (the function whose body is a block, or the names a top-level block binds)."""
    lines = source.split("\n")
    names: set[str] = set()
    for begin, end, indent, _ in solution_blocks(source):
        if indent:
            for line in reversed(lines[:begin]):
                match = re.match(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)", line)
                if match and len(match.group(1)) < len(indent):
                    names.add(match.group(2))
                    break
        else:
            names |= _code_names("\n".join(lines[begin + 1:end]))[0]
    if not solution_blocks(source):
        names |= _code_names(source)[0]
    return names


def later_uses(chapter: Any, chapter_name: str) -> list[str]:
    """Cells of a chapter that use a name defined in an earlier exercise's solution block.

    Empty for a chapter that keeps the convention; the check cells of the exercise itself may
    use its names. A name bound again by a later cell (the chapter's own variable) stops counting.
    """
    exercises = exercises_of(chapter, chapter_name)
    defined: dict[str, str] = {}  # name -> label of the exercise whose solution defines it
    found = []
    for number, cell in enumerate(chapter.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        src = source_of(cell)
        if SOLUTION_TAG in tags_of(cell):
            label = next((e.label for e in exercises if cell.get("id") in e.solution_ids), f"cell {number}")
            defined.update({name: label for name in solution_names(src)})
            continue
        bound, loaded = _code_names(src)
        own = next((e.label for e in exercises if cell.get("id") in e.check_ids), None)
        # A cell that binds the name itself is taken to set it before using it.
        for name in sorted((loaded - bound) & set(defined)):
            if defined[name] != own:
                found.append(f"{chapter_name}, cell {number} uses `{name}` from the solution of {defined[name]}")
        for name in bound:
            defined.pop(name, None)
    return found


def code_cell_name(cells: Sequence[Any], index: int) -> str:
    """How a learner finds the cell `cells[index]`: "code cell N", N counting code cells only, from 1.

    Jupyter numbers no cell (the execution counts change with every run) and markdown cells are
    not counted: "code cell 3" is the third cell with code, whatever text lies between them.
    """
    return f"code cell {sum(1 for c in cells[: index + 1] if c.get('cell_type') == 'code')}"


def _match_check_cells(learner: Any, expected: Any, exercises: list[Exercise]):
    """Map each check cell id of the chapter to its index in the learner notebook, and the outcomes
    of exercises whose check cell is missing or changed."""
    by_id = {cell.get("id"): i for i, cell in enumerate(learner.cells)}
    expected_src = {cell.get("id"): source_of(cell) for cell in expected.cells}
    where: dict[str, int] = {}
    tampered: dict[str, Outcome] = {}
    for ex in exercises:
        for cid in ex.check_ids:
            want = expected_src.get(cid, "").strip()
            index = by_id.get(cid)
            if index is None or learner.cells[index].get("cell_type") != "code":
                # A cell copied or re-created in Jupyter gets a new id: accept the same source.
                index = next((i for i, c in enumerate(learner.cells)
                              if c.get("cell_type") == "code" and source_of(c).strip() == want), index)
            if index is None:
                tampered[ex.label] = Outcome(ex, "check cell missing", (
                    "its check cell was deleted. Put back the cell\n"
                    f"{want}\nunder your solution (or run `make exercises` for a fresh copy)."))
            elif learner.cells[index].get("cell_type") != "code" or source_of(learner.cells[index]).strip() != want:
                tampered[ex.label] = Outcome(ex, "check cell changed", (
                    f"its check cell ({code_cell_name(learner.cells, index)}) differs from the chapter's. "
                    f"It must read exactly\n{want}"))
            else:
                where[cid] = index
    return where, tampered


def _reimports(chapter: Any, upto: int, names: set[str]) -> str:
    """The chapter's import statements above cell `upto` that bind any of `names`."""
    return "\n".join(ast.unparse(stmt) for stmt in import_statements(chapter.cells[:upto])
                     if {(a.asname or a.name).split(".")[0] for a in stmt.names} & names)


def _error_of(cell: Any) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", ""), _plain(output.get("evalue", ""))
    return None


def default_attempts_file() -> Path:
    """Where `make check-exercise` counts failures between runs: `$XDG_CACHE_HOME/qklab/attempts.json`
    (`~/.cache/qklab/attempts.json` by default)."""
    import os

    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qklab" / "attempts.json"


@contextlib.contextmanager
def _command_line_hints(path: Path, hints: bool, attempts_file: Path | None) -> Iterator[None]:
    """The hint ladder of one grading run, in this process (where the checks run): failures counted
    in `attempts_file` between runs, `hints` shows every hint at once
    (`qklab.checks.feedback.configure_delivery`). Attempts counted in memory before the run are
    forgotten, so that only the file counts; afterwards the default delivery is back."""
    from qklab.checks.feedback import configure_delivery, reset_attempts

    reset_attempts()
    configure_delivery(attempts_file=attempts_file, key=str(path.resolve()), always=bool(hints),
                       rerun=f"make check-exercise NB={path} HINT=1")
    try:
        yield
    finally:
        configure_delivery()
        reset_attempts()


class _CheckCell(NamedTuple):
    """A check cell as the grading process evaluates it: its source and the names the chapter
    imports for it (imported here, before the kernel runs any learner cell)."""

    source: str
    imported: dict[str, Any]
    import_error: tuple[str, str] | None


def _prepare_check(chapter: Any, upto: int, source: str) -> _CheckCell:
    imported: dict[str, Any] = {"__builtins__": builtins, "__name__": "__check_cell__"}
    try:
        exec(compile(_reimports(chapter, upto, set(_cell_names(source).loaded)), "<the chapter's imports>", "exec"),
             imported)
    except Exception as err:  # noqa: BLE001 - reported on the exercise
        return _CheckCell(source, imported, (type(err).__name__, f"importing the check failed: {err}"))
    return _CheckCell(source, imported, None)


def _judge(check: _CheckCell, answers: KernelAnswers) -> tuple[str, str] | None:
    """Evaluate a check cell in this process on the learner's answers read from the kernel:
    None when the check returned, else the (exception name, message) it raised."""
    from qklab.kernel_answers import NoVerdict

    if check.import_error:
        return check.import_error
    namespace = dict(check.imported)
    try:
        # A builtin the check cell uses stays the builtin, even if the notebook rebinds its name.
        for name in sorted(_cell_names(check.source).loaded - set(namespace) - set(vars(builtins))):
            try:
                namespace[name] = answers.fetch(name)
            except NameError:
                pass  # the check cell raises NameError, as in the notebook
        with contextlib.redirect_stdout(io.StringIO()):  # a check's "passed" lines: the report says it
            exec(compile(check.source, "<check cell>", "exec"), namespace)
    except NoVerdict as err:
        return "NoVerdict", _plain(str(err))
    except Exception as err:  # noqa: BLE001 - the check's verdict, or an error of the learner's code
        return type(err).__name__, _plain(str(err))
    return None


def grade(path: Path, chapters_dir: Path | None = None, everything: bool = False,
          timeout: int = 600, kernel_name: str = "python3", hints: bool = False,
          attempts_file: Path | None | bool = True) -> Report:
    """Run the learner notebook `path` and check each exercise (see the module docstring).

    Hints: each run is a fresh kernel, so failures are counted between runs in `attempts_file`
    (True: `default_attempts_file()`; None or False: not counted) and the second failure of an
    exercise shows its hint; `hints=True` shows every failing exercise's hint at once. The checks
    run in this process: the hint ladder's attempts counted in memory here are reset.
    """
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    path = Path(path)
    if chapters_dir is None:
        beside = path.resolve().parent.parent / "chapters"
        chapters_dir = beside if beside.is_dir() else Path("chapters")
    chapters_dir = Path(chapters_dir)
    chapter_path = chapters_dir / path.name
    if not chapter_path.is_file():
        raise FileNotFoundError(f"{path}: no chapter {chapter_path} to check it against "
                                "(learner notebooks keep their chapter's file name)")
    learner = nbformat.read(str(path), as_version=4)
    chapter = nbformat.read(str(chapter_path), as_version=4)
    exercises = exercises_of(chapter, chapter_path.name)
    expected = learner_notebook(chapter, chapter_path.name, book_index(chapters_dir))
    check_at, tampered = _match_check_cells(learner, expected, exercises)

    code = [i for i, c in enumerate(learner.cells) if c.get("cell_type") == "code"]
    last = max(check_at.values(), default=-1)
    if everything:
        run = [i for i in code if not (SKIP_TAGS & set(tags_of(learner.cells[i])))]
    else:
        # The learner's cells (solutions, and any cell the learner added) and the check cells,
        # with the chapter cells they need; nothing after the last check.
        chapter_ids = {c.get("id") for c in chapter.cells}
        solution_ids = {cid for ex in exercises for cid in ex.solution_ids}
        mine = [i for i in code if i <= last and (learner.cells[i].get("id") in solution_ids
                                                   or learner.cells[i].get("id") not in chapter_ids)]
        run = needed_cells(learner.cells, sorted({*mine, *check_at.values()}))
    chapter_index = {c.get("id"): i for i, c in enumerate(chapter.cells)}
    report = Report(path, [], cells_run=len(run), cells_total=len(code))
    report.warnings += _rebinding_warnings(learner, chapter, exercises)

    def import_the_checks() -> dict[int, _CheckCell]:
        import qklab.kernel_answers  # noqa: F401  (torch: the longest import)

        return {i: _prepare_check(chapter, chapter_index.get(cid, len(chapter.cells)), source_of(learner.cells[i]))
                for cid, i in check_at.items()}

    if attempts_file is True:
        attempts_file = default_attempts_file()
    verdicts: dict[int, tuple[str, str] | None] = {}
    if run:  # (a notebook without exercises needs no kernel)
        # Every check is imported here before the kernel runs a learner cell: in a thread, while
        # the kernel starts and imports torch (two processes: on two cores at once).
        importing = concurrent.futures.ThreadPoolExecutor(1)
        checks_ready = importing.submit(import_the_checks)
        importing.shutdown(wait=False)
        client = NotebookClient(learner, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                                resources={"metadata": {"path": str(path.resolve().parent)}})
        with tempfile.TemporaryDirectory(prefix="qklab-grading-") as workdir, \
                client.setup_kernel(stderr=subprocess.DEVNULL):  # stderr: not the kernel's TCP warning
            client.execute_cell(nbformat.v4.new_code_cell("import torch"), 0)  # what every chapter imports first
            checks = checks_ready.result()
            with _command_line_hints(path, hints, attempts_file or None):
                verdicts = _run_and_judge(client, learner, run, checks, Path(workdir), report, timeout)

    failed_exercise_cells = set()
    for ex in exercises:
        if ex.label in tampered:
            report.outcomes.append(tampered[ex.label])
            continue
        sol_errors = [(learner.cells[i], _error_of(learner.cells[i])) for i, c in enumerate(learner.cells)
                      if c.get("id") in ex.solution_ids]
        check_errors = [verdicts.get(check_at[cid], ("NotRun", "the check cell did not run")) for cid in ex.check_ids]
        failed_exercise_cells |= {id(c) for c, _ in sol_errors}
        report.outcomes.append(_outcome(ex, [e for _, e in sol_errors if e], [e for e in check_errors if e]))
    expected_to_raise = {c.get("id") for c in chapter.cells if "raises-exception" in tags_of(c)}  # e.g. a failing check shown
    for i in run:
        cell = learner.cells[i]
        error = _error_of(cell)
        if error and id(cell) not in failed_exercise_cells and cell.get("id") not in expected_to_raise:
            report.problems.append(f"{code_cell_name(learner.cells, i)} (not an exercise) failed: {error[0]}: {error[1]}")
    report.seconds = time.perf_counter() - start
    return report


def _run_and_judge(client: Any, learner: Any, run: list[int], checks: dict[int, _CheckCell], workdir: Path,
                   report: Report, timeout: int) -> dict[int, tuple[str, str] | None]:
    """Run the cells `run` of the learner notebook in order: a check cell in this process on the
    answers read from the kernel at that point, any other cell in the kernel. The verdict of each
    check cell: None (passed) or the (exception name, message) it raised."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from qklab.kernel_answers import KernelAnswers

    at = 0
    stopped = ""  # why the kernel can run nothing more: it died, or is still busy after a timeout

    def execute(cell: Any) -> None:
        nonlocal stopped
        try:
            client.execute_cell(cell, at)
        except (DeadKernelError, CellTimeoutError) as err:
            what = "died" if isinstance(err, DeadKernelError) else f"ran past the time limit ({timeout} s)"
            stopped = f"the kernel {what} in {code_cell_name(learner.cells, at)}: the checks after it could not run"
            report.problems.append(stopped)
            raise

    answers = KernelAnswers(lambda code: execute(nbformat.v4.new_code_cell(code)), workdir)
    verdicts: dict[int, tuple[str, str] | None] = {}
    for at in run:
        if at in checks:
            verdicts[at] = ("NoVerdict", stopped) if stopped else _judge(checks[at], answers)
        elif not stopped:
            with contextlib.suppress(DeadKernelError, CellTimeoutError):  # said in `stopped`
                execute(learner.cells[at])
    return verdicts


def _outcome(ex: Exercise, solution_errors: list[tuple[str, str]], check_errors: list[tuple[str, str]]) -> Outcome:
    if not check_errors:
        return Outcome(ex, "passed")
    ename, evalue = check_errors[0]
    unsolved = any(e == "NotImplementedError" for e, _ in solution_errors)
    if ename == "NotImplementedError" or _NOT_ANSWERED.search(evalue) or (unsolved and ename == "NameError"):
        return Outcome(ex, "not solved yet")
    if ename == "ExerciseCheckError" or ename.endswith("CheckError"):
        return Outcome(ex, "wrong", evalue)
    if ename == "NoVerdict":  # qklab.kernel_answers: the kernel did not answer, or a watch is misplaced
        return Outcome(ex, "error", evalue)
    if solution_errors:
        e, v = solution_errors[0]
        return Outcome(ex, "error", f"your solution cell raised {e}: {v}")
    return Outcome(ex, "error", f"the check raised {ename}: {evalue} (run the cell in Jupyter to see where)")


def _rebinding_warnings(learner: Any, chapter: Any, exercises: list[Exercise]) -> list[str]:
    """Names that the learner's own cells set and that later cells of the chapter use.

    Those later cells are not run by the grader; in the notebook they would see the learner's
    value instead of the chapter's.
    """
    chapter_ids = {c.get("id") for c in chapter.cells}
    solution_ids = {cid for ex in exercises for cid in ex.solution_ids}
    check_ids = {cid for ex in exercises for cid in ex.check_ids}
    by_id = {c.get("id"): c for c in chapter.cells}
    out = []
    for i, cell in enumerate(learner.cells):
        cid = cell.get("id")
        if cell.get("cell_type") != "code" or (cid in chapter_ids and cid not in solution_ids):
            continue  # the chapter's own cell
        later: set[str] = set()
        for other in learner.cells[i + 1:]:
            if other.get("cell_type") == "code" and other.get("id") in chapter_ids - solution_ids - check_ids:
                later |= _code_names(source_of(other))[1]
        allowed = _code_names(source_of(by_id[cid]))[0] if cid in by_id else set()
        for name in sorted((_code_names(source_of(cell))[0] - allowed) & later):
            out.append(f"{code_cell_name(learner.cells, i)} sets `{name}`, which later cells of the chapter use (the check "
                       "does not run them): if your value differs from the chapter's, rename yours "
                       "(or run with --all / ALL=1).")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qklab.grading",
        description="Check the exercises of a learner notebook (exercises/NN_slug.ipynb).",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="learner notebooks to check")
    parser.add_argument("--chapters", type=Path, default=None,
                        help="folder of the chapters (default: ../chapters next to the notebook)")
    parser.add_argument("--all", action="store_true", dest="everything",
                        help="run every cell, not only up to the last check cell")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--hint", action="store_true", dest="hints",
                        help="show the hint of every failing exercise (without it, a second failure shows it)")
    args = parser.parse_args(argv)
    ok = True
    for path in args.notebooks:
        if not path.is_file():
            print(f"error: {path} does not exist (learner notebooks are in exercises/)", file=sys.stderr)
            return 2
        try:
            report = grade(path, args.chapters, everything=args.everything, timeout=args.timeout, hints=args.hints)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(report.summary())
        ok = ok and report.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
