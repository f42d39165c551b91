"""What the mutation harness works with: a wrong answer (`Mutant`) and an exercise as the harness
sees it (`Spec`).

They live apart from the harness (`qklab.checks.mutants`) and from the exercises' specs
(`qklab.checks.mutant_specs`) so that both can import them and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from qklab.checks.core import Case

__all__ = ["Mutant", "Spec"]


@dataclass(frozen=True)
class Mutant:
    """A wrong (or rule-breaking) answer derived from the reference."""

    name: str
    answer: Any  # a function for function exercises, a tuple of values for value exercises
    rule: bool = False  # right values, but against a rule of the statement: must be rejected
    reason: str = ""  # why it is equivalent to the reference, when it is so by construction


@dataclass
class Spec:
    """One exercise, as the harness sees it.

    `check(answer)` runs the exercise's check (a function, or a tuple of values passed as
    positional arguments). For function exercises, `probes()` gives valid inputs, `sizes(args)`
    the exercise's `(d, n)`, `core_ndim` the number of non-batch axes of each positional argument
    (None: not a batched tensor), `pack`/`unpack` turn a structured output (a tuple) into one
    tensor and back, `agree(a, b, case)` says whether two outputs are the same answer (default:
    close, same shape, integers stay integers). For value exercises, `value_at(k)` gives the
    answer with the exercise's size off by `k` (off-by-one mutants), and `value_rtol` the tolerance of a
    prediction that the check accepts (a mutant within it is equivalent, not wrong). `dtype`,
    `float32_passes` and `numpy_inputs` state the statement's dtype and input-type rules (the
    harness's "dtype" and "input type" classes).
    """

    label: str
    number: str
    check: Callable[[Any], None]
    reference: Any
    probes: Callable[[], list[Case]] | None = None
    sizes: Callable[..., tuple[float, float]] | None = None
    core_ndim: tuple[int | None, ...] = ()
    pack: Callable[[Any], Tensor] | None = None
    unpack: Callable[[Tensor], Any] | None = None
    agree: Callable[[Any, Any, Case], bool] | None = None
    rtol: float = 1e-6
    atol: float = 1e-9
    extra: Callable[[], list[Mutant]] = lambda: []
    value_at: Callable[[int], tuple] | None = None
    value_sizes: tuple[float, float] = (1.0, 1.0)
    reasons: dict[str, str] = field(default_factory=dict)  # why a mutant is equivalent, by name
    batched: bool = True  # the statement allows leading batch axes
    value_rtol: float = 0.0  # a prediction checked within this relative tolerance: a mutant inside it is the same prediction
    dtype: Any = None  # the dtype the statement asks for (torch.float64): the right numbers in another dtype must be rejected
    float32_passes: bool = True  # without `dtype`, the statement allows any float dtype: the reference in float32 must pass
    numpy_inputs: bool = False  # the statement allows numpy arrays as inputs: an answer that fails on them must be rejected

    @property
    def is_function(self) -> bool:
        return callable(self.reference)
