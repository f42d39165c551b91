"""The checks of the training chapters 4, 9 and 10, under one name (`qklab.checks.training`).

The chapters import `from qklab.checks import training as checks`; the checks themselves live in
modules named after their concepts, and this module only gathers their public names:

- chapter 4: `qklab.checks.entropy_bounds` (`check_causal_max_entropy`, `check_entropy_bound`)
  and `qklab.checks.power_iteration` (`check_power_step`);
- chapter 9: `qklab.checks.head_stats` (`check_head_stats`, `check_mimetic_kappa`);
- chapter 10: `qklab.checks.penalty_statistics` (`check_unsafe_value`, `check_symmetric_penalty`).

Chapter 11's check is `qklab.checks.induction`.

`tests/test_checks_training.py` feeds every typical wrong answer of these modules back in.
"""

from __future__ import annotations

from qklab.checks.entropy_bounds import (
    BOUND_MISTAKES,
    causal_max_entropy,
    check_causal_max_entropy,
    check_entropy_bound,
    entropy_bound_reference,
)
from qklab.checks.head_stats import (
    HEAD_STATS_MISTAKES,
    MIMETIC_MISTAKES,
    check_head_stats,
    check_mimetic_kappa,
    head_stats_reference,
    mimetic_kappa_reference,
)
from qklab.checks.penalty_statistics import (
    SYMMETRIC_MISTAKES,
    UNSAFE_EXAMPLE,
    check_symmetric_penalty,
    check_unsafe_value,
    symmetric_penalty_reference,
    unsafe_example_matrix,
)
from qklab.checks.power_iteration import POWER_MISTAKES, check_power_step, power_step_reference

__all__ = [
    "causal_max_entropy",
    "check_causal_max_entropy",
    "power_step_reference",
    "POWER_MISTAKES",
    "check_power_step",
    "entropy_bound_reference",
    "BOUND_MISTAKES",
    "check_entropy_bound",
    "head_stats_reference",
    "HEAD_STATS_MISTAKES",
    "check_head_stats",
    "mimetic_kappa_reference",
    "MIMETIC_MISTAKES",
    "check_mimetic_kappa",
    "UNSAFE_EXAMPLE",
    "unsafe_example_matrix",
    "check_unsafe_value",
    "symmetric_penalty_reference",
    "SYMMETRIC_MISTAKES",
    "check_symmetric_penalty",
]
