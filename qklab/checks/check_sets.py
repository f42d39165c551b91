"""The checks of a topic as a chapter's notebook holds them (`checks.check_power_step(f)`), and nothing
that solves an exercise.

A chapter that calls its checks through one name (`checks.check_...`) imports a `CheckSet` from here,
`from qklab.checks.check_sets import training as checks`, rather than the check module itself: a
check module also holds the references its checks compare with (`power_step_reference`), and a
learner notebook made from the chapter would hand them over above the exercises they solve. A
`CheckSet` holds the check functions of its module and the inputs an exercise hands out
(`zero_count_heads`), nothing else. Where the chapter goes on to use a reference after the
exercise's check, the cell after the check adds it:
`checks = checks.with_references(causal_max_entropy)`.

`tests/test_learner_notebooks_hide_answers.py` verifies that nothing a learner notebook imports
above an exercise passes that exercise's check. What is not here: the checks themselves
(`qklab.checks.<topic>`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from qklab.checks import localization as _localization
from qklab.checks import spectrum as _spectrum
from qklab.checks import training as _training

__all__ = ["CheckSet", "training", "spectrum", "localization"]


class CheckSet:
    """Named check functions (and exercise inputs), as attributes: `checks.check_sparsemax(f)`."""

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        for key, value in members.items():
            if not key.isidentifier() or key.startswith("_"):
                raise ValueError(f"{name}: {key!r} is not a public attribute name")
        self.__dict__.update(members)
        object.__setattr__(self, "_name", name)

    @classmethod
    def of(cls, module: ModuleType, *, inputs: Iterable[str] = ()) -> CheckSet:
        """The exercise checks of `module` (its `check_*` functions tied to an exercise) and the
        named `inputs` (data an exercise hands out)."""
        members = {n: v for n, v in vars(module).items() if n.startswith("check_") and hasattr(v, "exercise_label")}
        if not members:
            raise ValueError(f"{module.__name__} has no exercise check")
        for n in inputs:
            if not hasattr(module, n):
                raise ValueError(f"{module.__name__} has no {n!r} to hand out")
            members[n] = getattr(module, n)
        return cls(module.__name__, members)

    def with_references(self, *functions: Callable[..., Any]) -> CheckSet:
        """This set and `functions` (references the chapter uses once their exercise's check has
        run), each under its own name."""
        added = {}
        for fn in functions:
            name = getattr(fn, "__name__", None)
            if not callable(fn) or not name or name == "<lambda>":
                raise TypeError(f"with_references takes named functions, got {fn!r}")
            added[name] = fn
        members = {k: v for k, v in vars(self).items() if k != "_name"}
        return CheckSet(self._name, {**members, **added})

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a CheckSet is read-only: make a new one with with_references()")

    def __getattr__(self, key: str) -> Any:  # only called for a missing attribute
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(f"the checks of {self._name} have no {key!r}: a notebook's `checks` holds the check "
                             "functions, and a reference only after the check of the exercise it solves")

    def __dir__(self) -> list[str]:
        return sorted(k for k in vars(self) if k != "_name")

    def __repr__(self) -> str:
        return f"<checks of {self._name}: {', '.join(dir(self))}>"


#: Chapters 4, 9 and 10.
training = CheckSet.of(_training)
#: Chapter 6; the two heads of Exercise 6.1 are its input, used by the chapter after the check.
spectrum = CheckSet.of(_spectrum, inputs=("zero_count_heads", "ZERO_COUNT_HEADS"))
#: Chapter 7.
localization = CheckSet.of(_localization)
