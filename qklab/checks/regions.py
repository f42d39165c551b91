"""Check for chapter 8's prediction exercise (`chapters/08_resolving_the_contradiction`, ex-predict-regions).

Before the (r, kappa) map is drawn, the reader predicts the region of six heads from the two
numbers of the chapter's Theory (the query's own key stands out by about `kappa r sqrt(d)` against
noise of size `r`). `check_region_predictions(predicted)` measures the six regions with
`qklab.collapse.collapse_map` and `collapse_regions` (the map's settings: `T = d = 64`, i.i.d.
tokens, no mask, 3 seeds of 16 sequences). A wrong list gets how many predictions are wrong, never
which (naming the heads let a few runs find every code by trial), the kind of mistake when it
concerns the whole list (one region for all, codes mixed up), the two numbers to reason with for
every head, and the rule of thumb; never a measured region.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers

import torch

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
    codes = []
    for i, v in enumerate(values):
        if v is ... or v is None:
            raise ExerciseCheckError(f"head {i + 1} has no prediction yet: replace ... by a code from 0 to 3.")
        code = _code(v)
        if code is None:
            raise ExerciseCheckError(f"head {i + 1}: a prediction is a region code, an integer from 0 to 3 "
                                     f"({', '.join(f'{c} {name}' for c, name in enumerate(REGIONS))}); got {v!r}.")
        codes.append(code)
    truth = measured_regions()
    n_wrong = sum(v != t for v, t in zip(codes, truth))
    if not n_wrong:
        print(f"\u2713 predicted: all {len(PREDICTION_HEADS)} regions match the measured map.")
        return
    # How many are wrong, never which: naming the wrong heads let a few runs find every code by trial.
    message = f"{n_wrong} of {len(PREDICTION_HEADS)} predictions differ from the measured map."
    kind = _kind_of_mistake(codes, truth)
    if kind:
        message += f"\nThis looks like {kind}."
    numbers = "\n".join(f"  head {i + 1}: r = {r:g}, kappa r sqrt(d) = {kappa * r * math.sqrt(_D):.1f}"
                        for i, (r, kappa) in enumerate(PREDICTION_HEADS))
    message += ("\nThe two numbers to reason with, for every head (the size of every logit, and how far the "
                f"query's own key stands out):\n{numbers}\nThe rule of thumb: {_RULE}")
    raise fail(message, name="predicted", specific_hint="", diagnosis=kind, fallback_hint="")


def _code(v: object) -> int | None:
    """`v` as a region code (0 to 3): a Python, numpy or one-element torch integer; None otherwise."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
            return None
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= int(v) <= 3:
        return None
    return int(v)


def _kind_of_mistake(codes: list[int], truth: tuple[int, ...]) -> str:
    """A mistake that concerns the whole list, recognised without pointing at a head ("" if none)."""
    if len(set(codes)) == 1:
        return ("every head in the same region: the six heads span logits from far below 1 to many units, "
                "and the map has more than one region across them")
    for perm in itertools.permutations(range(len(REGIONS))):
        if any(perm[c] != c for c in set(codes)) and all(perm[c] == t for c, t in zip(codes, truth)):
            return ("the right grouping of the heads with the region codes mixed up: check which code each region "
                    f"has ({', '.join(f'{c} {name}' for c, name in enumerate(REGIONS))})")
    return ""
