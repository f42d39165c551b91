"""Check for chapter 11's exercise on induction (`chapters/11_where_next`, ex-induction-score).

What is here: `check_induction_score(fn)`. `fn(pattern, tokens)` must return, per pattern `(..., T, T)`,
the mean over the queries `i >= T // 2` whose token occurred before of the attention on the keys
right after those earlier occurrences, as `qklab.metrics.induction_score`. The cases are hand-built:
a perfect induction head (1), uniform causal rows (an exact fraction), a previous-token head, tokens
repeated within the first half, a query of the second half with a new token, `InductionTask`'s own
layout, and a batch of sequences and heads. Recognised mistakes: the occurrence itself instead of
the key after it, two keys after it, the second half started one query late, the first half's
queries counted, the most recent occurrence only, and new tokens counted as 0.

What is not here: the reference (`qklab.metrics.induction_score`), the engine (`qklab.checks.core`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qklab.checks.core import Case, Mistake, check_function, exercise, gaussian
from qklab.metrics import induction_score

__all__ = ["check_induction_score", "INDUCTION_CASES", "INDUCTION_MISTAKES"]


def _causal_softmax(shape: tuple[int, ...], seed: int) -> Tensor:
    T = shape[-1]
    return torch.softmax(gaussian(shape, seed, 2.0).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf")), dim=-1)


def _uniform_causal(T: int) -> Tensor:
    L = torch.ones(T, T, dtype=torch.float64).tril()
    return L / L.sum(-1, keepdim=True)


def _one_hot_rows(T: int, keys: list[int]) -> Tensor:
    A = torch.zeros(T, T, dtype=torch.float64)
    A[torch.arange(T), torch.tensor(keys)] = 1.0
    return A


REPEAT = torch.tensor([5, 2, 7, 1, 5, 2, 7, 1])  # T/2 tokens, then the same again
FIRST_HALF_REPEATS = torch.tensor([3, 1, 0, 3, 3, 1, 0, 3])  # token 3 twice in the first half, the second time at T/2 - 1
NEW_AT_MIDDLE = torch.tensor([4, 0, 6, 2, 1, 5, 4, 0, 6, 2])  # T = 10: the query at T/2 = 5 holds a new token
TASK_LAYOUT = torch.tensor([6, 3, 0, 2, 7, 6, 3, 0, 2])  # InductionTask's layout for T = 9: 5 fresh tokens, then 4 repeated

INDUCTION_CASES: tuple[Case, ...] = (
    Case("a perfect induction head on [5, 2, 7, 1, 5, 2, 7, 1] (each repeat looks at the key after the first occurrence)",
         (_one_hot_rows(8, [0, 0, 1, 2, 1, 2, 3, 4]), REPEAT)),
    Case("uniform causal rows on [5, 2, 7, 1, 5, 2, 7, 1]", (_uniform_causal(8), REPEAT)),
    Case("a previous-token head (row i on key i - 1) on [5, 2, 7, 1, 5, 2, 7, 1]",
         (_one_hot_rows(8, [0, 0, 1, 2, 3, 4, 5, 6]), REPEAT)),
    Case("random causal rows on [3, 1, 0, 3, 3, 1, 0, 3] (token 3 repeated within the first half)",
         (_causal_softmax((8, 8), 1), FIRST_HALF_REPEATS)),
    Case("random causal rows on [4, 0, 6, 2, 1, 5, 4, 0, 6, 2] (the query at position 5 holds a new token)",
         (_causal_softmax((10, 10), 2), NEW_AT_MIDDLE)),
    Case("random causal rows on InductionTask's layout for T = 9, [6, 3, 0, 2, 7, 6, 3, 0, 2]",
         (_causal_softmax((9, 9), 3), TASK_LAYOUT)),
    Case("a batch of 2 sequences x 3 heads, tokens of shape (2, 1, 8) shared by the heads",
         (_causal_softmax((2, 3, 8, 8), 4), torch.stack([FIRST_HALF_REPEATS, REPEAT])[:, None])),
)


def _variant(*, shift: int = 1, start: Callable[[int], int] = lambda T: T // 2, last_only: bool = False,
             new_as_zero: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    """The score with one thing changed: the target `j + shift`, the first counted query, the most
    recent occurrence only, or second-half queries with a new token averaged in as 0."""
    def fn(A: Tensor, tokens: Tensor) -> Tensor:
        T = A.shape[-1]
        seen = (tokens.unsqueeze(-1) == tokens.unsqueeze(-2)) & torch.ones(T, T, dtype=torch.bool).tril(-1)
        if last_only:  # keep the largest j only
            j = torch.arange(T)
            latest = torch.where(seen, j, -1).amax(dim=-1, keepdim=True)
            seen = seen & (j == latest)
        targets = torch.zeros_like(seen)
        if shift > 0:
            targets[..., shift:] = seen[..., :-shift]
        else:
            targets = seen
        counted = torch.ones_like(seen[..., 0]) if new_as_zero else seen.any(dim=-1)
        counted = counted.clone()
        counted[..., : start(T)] = False
        mass = (A * targets).sum(dim=-1)
        return (mass * counted).sum(dim=-1) / counted.sum(dim=-1)
    return fn


INDUCTION_MISTAKES: tuple[Mistake, ...] = (
    Mistake("the occurrence itself instead of the key after it", _variant(shift=0),
            "an induction head looks at what came *after* the token last time: the key j + 1, not j."),
    Mistake("two keys after the occurrence (j + 2) instead of the next one", _variant(shift=2),
            "the target is the key right after the earlier occurrence, j + 1: check the shift of your index."),
    Mistake("the second half started one query late (i > T/2 instead of i >= T/2)", _variant(start=lambda T: T // 2 + 1),
            "positions count from 0: the second half starts at i = T // 2, and that query counts too."),
    Mistake("the first half's queries counted too", _variant(start=lambda T: 0),
            "keep only the queries i >= T // 2: a repeat within the first half is chance, not the task's copy."),
    Mistake("only the most recent earlier occurrence", _variant(last_only=True),
            "a token seen twice before has two targets, the keys after each occurrence: add the attention on both."),
    Mistake("second-half queries with a new token counted as 0", _variant(new_as_zero=True),
            "a query whose token has not occurred before has no induction target: leave it out of the mean."),
)


@exercise(
    "ex-induction-score",
    hint="same[i, j] = tokens[i] == tokens[j] and j < i; the targets of query i are the keys j + 1 for those j "
         "(shift same one step along the key axis); mass_i = sum of pattern[i, targets]; average mass_i over the "
         "queries i >= T // 2 that have at least one target.",
)
def check_induction_score(fn: Callable[[Tensor, Tensor], Tensor], *, quiet: bool = False) -> None:
    """Check `fn(pattern, tokens)`, the induction score per pattern (chapter 11, ex-induction-score)."""
    check_function(
        fn,
        induction_score,
        INDUCTION_CASES,
        name="induction_score",
        mistakes=INDUCTION_MISTAKES,
        axis_names=("pattern",),
        atol=1e-9,
        rtol=1e-7,
        quiet=quiet,
    )
