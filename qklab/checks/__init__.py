"""Automatic checks for the book's exercises.

`qklab.checks.core` is the engine: it compares a reader's function (or number) with the
package's reference on several cases and, on failure, says what differs (never the right value)
and which typical mistake it looks like. Hints come on request: a second failure of the same
exercise adds one, and `qklab.checks.hint("ex-label")` prints the hint and the recipe. One module
per topic holds the checks of its chapters, e.g. `qklab.checks.attention` for chapter 1.
"""

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value, exercise, hint, reset_attempts

__all__ = ["Case", "ExerciseCheckError", "Mistake", "check_function", "check_value", "exercise", "hint", "reset_attempts"]
