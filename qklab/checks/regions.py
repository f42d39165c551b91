"""Check for chapter 8's prediction exercise (`chapters/08_resolving_the_contradiction`, ex-predict-regions).

Before the (r, kappa) map is drawn, the reader predicts the region of six heads from the two
numbers of the chapter's Theory (the query's own key stands out by about `kappa r sqrt(d)` against
noise of size `r`). `check_region_predictions(predicted)` measures the six regions with
`qklab.collapse.collapse_map` and `collapse_regions` (the map's settings: `T = d = 64`, i.i.d.
tokens, no mask, 3 seeds of 16 sequences) and, for each wrong prediction, names the head and the
two numbers to reason with and the rule of thumb, never the measured region.
"""

from __future__ import annotations

import functools
import math
import numbers

from qklab.checks.feedback import ExerciseCheckError, exercise, fail
from qklab.collapse import REGIONS, collapse_map, collapse_regions

__all__ = ["PREDICTION_HEADS", "measured_regions", "check_region_predictions"]

#: The six heads of the exercise, as (r, kappa), in the order the reader lists the predictions.
PREDICTION_HEADS: tuple[tuple[float, float], ...] = ((0.05, 1.0), (0.5, 1.0), (3.0, 1.0), (0.1, 0.0), (1.5, 0.0), (20.0, 0.0))
_D = _T = 64

_RULE = ("logits far below 1 give nearly uniform rows; a margin of many units gives one-hot rows; in between the rows "
         "are broad, and local only when the query's own key is what stands out.")


@functools.cache
def measured_regions() -> tuple[int, ...]:
    """The region code (`qklab.collapse.REGIONS`) of each head of `PREDICTION_HEADS`, measured on the
    seed-averaged map as chapter 8 draws it."""
    codes = []
    for r, kappa in PREDICTION_HEADS:
        M = collapse_map([r], [kappa], _D, _T, "iid", seeds=range(3), n=16)  # each: (seeds, 1, 1)
        H, R, L = (M[k].mean(dim=0) for k in ("entropy", "residual", "localization"))
        codes.append(int(collapse_regions(H, R, L).item()))
    return tuple(codes)


@exercise("ex-predict-regions", hint="for each head compute r (the size of every logit) and kappa r sqrt(d) "
          "(how far the query's own key stands out; sqrt(d) = 8 here). Logits far below 1: uniform rows. A margin of "
          "many units: one-hot rows. In between: broad rows, local only if kappa r sqrt(d) is what stands out.")
def check_region_predictions(predicted: object) -> None:
    """Chapter 8, ex-predict-regions: `predicted` holds six region codes (0-3), one per head of
    `PREDICTION_HEADS`, in that order."""
    if predicted is ... or predicted is None:
        raise ExerciseCheckError("predicted: no answer yet. Replace the `...` with the list of six codes (0 to 3).")
    if isinstance(predicted, dict):
        raise ExerciseCheckError("predicted should be a list of six codes, in the order of the table, not a dict.")
    try:
        values = list(predicted)  # type: ignore[arg-type]
    except TypeError:
        raise ExerciseCheckError(f"predicted should be a list of six codes (0 to 3), got {type(predicted).__name__}.") from None
    if len(values) != len(PREDICTION_HEADS):
        raise ExerciseCheckError(f"predicted should hold {len(PREDICTION_HEADS)} codes, one per head of the table; "
                                 f"it holds {len(values)}.")
    for i, v in enumerate(values):
        if v is ... or v is None:
            raise ExerciseCheckError(f"head {i + 1} has no prediction yet: replace ... by a code from 0 to 3.")
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= int(v) <= 3:
            raise ExerciseCheckError(f"head {i + 1}: a prediction is a region code, an integer from 0 to 3 "
                                     f"({', '.join(f'{c} {name}' for c, name in enumerate(REGIONS))}); got {v!r}.")
    truth = measured_regions()
    wrong = [i for i, (v, t) in enumerate(zip(values, truth)) if int(v) != t]
    if not wrong:
        print(f"\u2713 predicted: all {len(PREDICTION_HEADS)} regions match the measured map.")
        return
    lines = []
    for i in wrong:
        r, kappa = PREDICTION_HEADS[i]
        lines.append(f"  head {i + 1} (r = {r:g}, kappa = {kappa:g}): you predicted {int(values[i])} ({REGIONS[int(values[i])]}); "
                     f"the map disagrees. Every logit has size about r = {r:g}; the query's own key stands out by about "
                     f"kappa r sqrt(d) = {kappa * r * math.sqrt(_D):.1f}.")
    raise fail(f"{len(wrong)} of {len(PREDICTION_HEADS)} predictions differ from the measured map:\n" + "\n".join(lines)
               + "\nThe rule of thumb: " + _RULE,
               name="predicted", specific_hint="", diagnosis="", fallback_hint="")
