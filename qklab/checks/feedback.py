"""How a failed exercise check talks to the reader: the error, the hint ladder, "how far off".

- `ExerciseCheckError`: in IPython and Jupyter (and so in nbval's report and the built book) it
  shows as its message only (`_render_traceback_`), not as a traceback that would print the
  check's source (its hints, the formulas of its mistakes); when the reader's own function raised,
  the frames of the reader's code follow the message.
- The hint ladder: the first failure of an exercise's check says what is wrong and how to ask for
  a hint; the next failure of the same exercise in the session adds the hint (the recognised
  mistake's, or the exercise's recipe); `hint("ex-label")` prints the last hint and the recipe at
  any time. `exercise(label, hint=recipe)` ties a check to its exercise. From the command line
  (`make check-exercise`, a fresh kernel each run) `configure_delivery` counts failures in a file
  between runs, and `HINT=1` shows the hint at once.
- `describe_ratio`: "too large by a factor of about 2" -- how far a value is from the right one, in kind,
  never the right value.

Used by the engine (`qklab.checks.core`, which re-exports these names) and by every check module.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import math
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ExerciseCheckError", "exercise", "hint", "reset_attempts", "describe_ratio", "current_exercise", "fail",
           "configure_delivery"]

_CHECKS_DIR = str(Path(__file__).resolve().parent)
_RED, _RESET = "\x1b[1;31m", "\x1b[0m"


class ExerciseCheckError(AssertionError):
    """An exercise answer differs from the reference; the message says how (never the right value).

    In IPython and Jupyter only the message is shown (no traceback into the check's source);
    when the reader's own function raised, the frames of the reader's code follow it (kept as
    text, `reader_frames`, not as the reader's exception, whose traceback runs through the check).
    Attributes for tests and tools: `label` (the exercise, or None), `case` (the failing `Case`,
    or None: the input, which the message describes anyway). The error holds nothing of the
    reference's output, and the one that leaves a check (`exercise`) has no `__cause__`, no
    `__context__` and no frame of the check's engine in its traceback: `sys.last_value`,
    `sys.last_traceback` and `%debug` after a failed check reach the reader's values only.
    """

    def __init__(self, message: str = "", *, label: str | None = None, case: Any = None,
                 reader_frames: tuple[str, ...] = ()):
        super().__init__(message)
        self.label = label
        self.case = case
        self.reader_frames = tuple(reader_frames)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the message, then the reader's own frames if any."""
        message = str(self)
        first, *rest = message.split("\n") or [""]
        return [f"{_RED}{type(self).__name__}{_RESET}: {first}", *rest, *self.reader_frames]


def _reader_frames(cause: BaseException) -> tuple[str, ...]:
    """Where the reader's own code raised `cause`, as the lines `_render_traceback_` shows (the
    frames outside `qklab.checks`, then the error), or nothing when the error came from the checks."""
    if cause.__traceback__ is None:
        return ()
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if not f.filename.startswith(_CHECKS_DIR)]
    if not frames:
        return ()
    lines = ["", f"Where {type(cause).__name__} was raised (your code first):"]
    lines += "".join(traceback.format_list(frames)).rstrip("\n").split("\n")
    lines += "".join(traceback.format_exception_only(type(cause), cause)).rstrip("\n").split("\n")
    return tuple(lines)


def _detached(err: ExerciseCheckError) -> ExerciseCheckError:
    """A copy of `err` to raise outside the `except` block that caught it: the same message, label,
    case and reader frames, with no cause, no context and a traceback that starts where it is raised."""
    clean = ExerciseCheckError(str(err), label=err.label, case=err.case, reader_frames=err.reader_frames)
    clean.__suppress_context__ = True
    return clean


# --- exercises, attempts and hints ----------------------------------------------------------------

@dataclass
class _Exercise:
    recipe: str = ""
    attempts: int = 0
    last_hint: str = ""
    last_diagnosis: str = ""


_EXERCISES: dict[str, _Exercise] = {}
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("qklab_exercise", default=None)


def current_exercise() -> str | None:
    """The label of the exercise whose check is running, or None."""
    return _CURRENT.get()


def exercise(label: str, *, hint: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a check: its failures count as attempts at exercise `label`; `hint` is the recipe.

    The recipe is shown by `hint(label)`, and after a second failure when no mistake is recognised.
    """
    _EXERCISES.setdefault(label, _Exercise()).recipe = hint

    def decorate(check: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(check)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # noqa: F841  (pytest: show the message, not this frame)
            token = _CURRENT.set(label)
            failure = None
            try:
                return check(*args, **kwargs)
            except ExerciseCheckError as err:
                # Raised below, outside this block: the error the reader gets carries no context and
                # no traceback into the engine, whose frames hold the reference's output.
                failure = _detached(err)
            finally:
                _CURRENT.reset(token)
            raise failure

        wrapped.exercise_label = label  # type: ignore[attr-defined]
        return wrapped

    return decorate


def reset_attempts() -> None:
    """Forget every attempt and last hint (tests use it; a learner never needs it)."""
    for ex in _EXERCISES.values():
        ex.attempts, ex.last_hint, ex.last_diagnosis = 0, "", ""


def _register_all_checks() -> None:
    import qklab.checks as package

    for info in pkgutil.iter_modules(package.__path__):
        with contextlib.suppress(Exception):
            importlib.import_module(f"qklab.checks.{info.name}")


def hint(label: str) -> None:
    """Print the hint of exercise `label` (e.g. "ex-pattern"): the last failure's hint and the recipe."""
    if label not in _EXERCISES:
        _register_all_checks()
    ex = _EXERCISES.get(label)
    if ex is None:
        known = ", ".join(sorted(_EXERCISES)) or "none"
        print(f"There is no exercise labelled {label!r}. Known labels: {known}.")
        return
    lines = [f"Hints for {label}:"]
    if ex.last_hint:
        about = f" (it looked like {ex.last_diagnosis})" if ex.last_diagnosis else ""
        lines.append(f"- on your last answer{about}: {ex.last_hint}")
    if ex.recipe and ex.recipe != ex.last_hint:
        lines.append(f"- the recipe: {ex.recipe}")
    if len(lines) == 1:
        lines.append("- run the check cell first; this exercise has no written recipe.")
    print("\n".join(lines))


@dataclass
class _Delivery:
    """Where hints go when the checks run outside an interactive session (`make check-exercise`).

    Each `make check-exercise` run is a fresh kernel, so an attempt counted in memory is forgotten
    between runs: with `attempts_file` set, failures are counted in that JSON file (by notebook and
    exercise), so the second failure of an exercise, in a later run, shows its hint. `always`
    shows the hint on the first failure (`make check-exercise ... HINT=1`). `rerun` is the command
    the message offers for a hint.
    """

    attempts_file: Path | None = None
    key: str = ""
    always: bool = False
    rerun: str = ""


_DELIVERY = _Delivery()


def configure_delivery(*, attempts_file: str | Path | None = None, key: str = "", always: bool = False,
                       rerun: str = "") -> None:
    """Set how hints reach a learner who checks from the command line (see `_Delivery`); the grader
    (`qklab.grading`) calls it in the kernel before the learner's cells run."""
    global _DELIVERY
    _DELIVERY = _Delivery(Path(attempts_file) if attempts_file else None, key, always, rerun)


def _recorded_attempts(label: str, add: int) -> int:
    """Failures of `label` recorded in the attempts file before this one, after adding `add`."""
    import json

    path = _DELIVERY.attempts_file
    if path is None:
        return 0
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(_DELIVERY.key, {})
    before = int(entry.get(label, 0))
    entry[label] = before + add
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    return before


def fail(message: str, *, name: str, specific_hint: str, diagnosis: str, fallback_hint: str,
         case: Any = None, cause: BaseException | None = None) -> ExerciseCheckError:
    """Count the attempt and build the error: the hint only from the second failure on (in this
    session, or recorded between `make check-exercise` runs), or at once when asked for."""
    label = _CURRENT.get() or name
    ex = _EXERCISES.setdefault(label, _Exercise())
    if fallback_hint and not ex.recipe:
        ex.recipe = fallback_hint
    ex.attempts += 1
    earlier = _recorded_attempts(label, 1) if _CURRENT.get() else 0
    ex.last_hint = specific_hint or fallback_hint or ex.recipe
    ex.last_diagnosis = diagnosis
    if ex.last_hint:
        if ex.attempts + earlier == 1 and not _DELIVERY.always:
            if _DELIVERY.rerun:
                message += (f"\nFor a hint, run `{_DELIVERY.rerun}`, or check again after your next try "
                            "(a second failure of this exercise shows it).")
            else:
                message += f'\nFor a hint, run this check again after your next try, or call qklab.checks.hint("{label}").'
        else:
            message += f"\nHint: {ex.last_hint}"
            if ex.recipe and ex.recipe != ex.last_hint:
                if _DELIVERY.rerun:  # at the command line there is no notebook to call hint() in
                    message += f"\nThe whole recipe: {ex.recipe}"
                else:
                    message += f'\nThe whole recipe: qklab.checks.hint("{label}").'
    frames = _reader_frames(cause) if cause is not None else ()
    return ExerciseCheckError(message, label=_CURRENT.get(), case=case, reader_frames=frames)


# --- how far off: in kind, never the value ------------------------------------------------------

_NAMED_FACTORS: dict[str, float] = {
    "sqrt(2)": math.sqrt(2.0), "sqrt(3)": math.sqrt(3.0), "1/ln 2, bits instead of nats?": 1 / math.log(2.0),
    "e": math.e, "pi": math.pi,
}


def describe_ratio(got: float, expected: float, *, scale: float = 0.0, factors: dict[str, float] | None = None,
                   name_factor: bool = True) -> str:
    """Say how `got` compares with `expected` in words ("too large by a factor of about 2"), without `expected`.

    Coarse on purpose: the words never let the reader recover the right value to the precision a
    check asks for. `scale` is the size below which a number counts as zero; `factors` adds named
    factors (e.g. `{"sqrt(d_h)": 2.0}`) to the ones recognised (within 0.5 %) when `name_factor`
    (off for single entries of an output, where a match would be a coincidence).
    """
    if got == expected:
        return "equal"
    if not (math.isfinite(got) and math.isfinite(expected)):
        return "different"
    if abs(expected) <= scale:
        return "too large" if got > expected else "too small"
    if abs(got) <= scale:
        return "too small in size (the right value is not zero)"
    if (got > 0) != (expected > 0):
        return f"of the wrong sign (the right value is {'positive' if expected > 0 else 'negative'})"
    if expected < 0:  # both negative: "too large" would read as "too far to the right"
        word = "too large in size (more negative)" if abs(got) > abs(expected) else "too small in size (closer to 0)"
    else:
        word = "too large" if abs(got) > abs(expected) else "too small"
    small, big = sorted((abs(got), abs(expected)))
    if small == 0.0 or big / small == math.inf:
        return f"{word} by orders of magnitude"
    f = big / small
    if f < 1.01:
        size = "by less than 1 %"
    elif f < 1.1:
        size = "by 1 to 10 %"
    elif f < 1.5:
        size = "by 10 to 50 %"
    elif f < 2.5:
        size = "by a factor of about 2"
    elif f < 4.0:
        size = "by a factor of 3 to 4"
    elif f < 7.0:
        size = "by a factor of 4 to 7"
    elif f < 15.0:
        size = "by a factor of about 10"
    elif f < 70.0:
        size = "by a factor of tens"
    elif f < 700.0:
        size = "by a factor of hundreds"
    else:
        size = f"by a factor of about 10^{round(math.log10(f))}"
    named = {**_NAMED_FACTORS, **(factors or {})} if name_factor else {}
    close = [k for k, v in named.items() if abs(f / v - 1) < 0.005]
    if close:
        size += f" (a factor close to {close[0]})"
    return f"{word} {size}"
