"""Checks for the exercises of chapter 0 (`chapters/00_how_to_use`): the exercise mechanics.

One exercise: predict the entropy (nats) of an attention row uniform over `T` keys,
`H = -sum_j (1/T) log(1/T) = log T`. The expected value is computed with
`qklab.metrics.attention_entropy` on a uniform pattern, not typed in.
"""

from __future__ import annotations

import math

import torch

from qklab.checks.core import check_value, exercise
from qklab.metrics import attention_entropy

__all__ = ["check_uniform_entropy"]


@exercise("ex-uniform-entropy", hint="a uniform row gives weight 1/T to each of the T keys; add up -p log p.")
def check_uniform_entropy(value: object, T: int = 8) -> None:
    """Check a predicted entropy (nats) of a row with weight 1/T on each of `T` keys.

    Raises `ExerciseCheckError` naming the mistake (bits instead of nats, `1/T` instead of the
    entropy) when the value matches one.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    uniform = torch.full((1, T), 1.0 / T, dtype=torch.float64)  # (T_q = 1, T_k = T)
    expected = float(attention_entropy(uniform))
    mistakes = {}
    if T > 1:
        mistakes["the entropy in bits (log base 2)"] = (
            expected / float(torch.log(torch.tensor(2.0, dtype=torch.float64))),
            "the book measures entropy in nats: use the natural logarithm.",
        )
        mistakes["the weight of one key, not the entropy"] = (
            1.0 / T,
            "the entropy adds -p log p over all T keys, each with p = 1/T.",
        )
        mistakes["the entropy in base 10 (log10)"] = (
            expected / math.log(10.0),
            "the book measures entropy in nats: use the natural logarithm (math.log).",
        )
        mistakes["the sum of -log p without the weights p"] = (
            T * expected,
            "each term of the entropy is -p log p: the weight p multiplies the logarithm.",
        )
    check_value(
        value,
        expected,
        name=f"uniform-row entropy (T = {T})",
        mistakes=mistakes,
    )
