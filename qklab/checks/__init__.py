"""Automatic checks for the book's exercises.

`qklab.checks.core` is the engine: it compares a reader's function (or number) with the
package's reference on several cases and, on failure, says what differs and gives one hint,
recognising typical mistakes by name. One module per topic holds the checks of its chapters,
e.g. `qklab.checks.attention` for chapter 1.
"""

from qklab.checks.core import Case, ExerciseCheckError, Mistake, check_function, check_value

__all__ = ["Case", "ExerciseCheckError", "Mistake", "check_function", "check_value"]
