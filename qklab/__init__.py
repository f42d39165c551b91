"""qklab: the companion package of the course "Attention localization: rank collapse, entropy
collapse and the QK eigenspectrum".

Modules, each named after the concept it implements (and the chapter that derives it):
`attention` (ch. 1), `metrics` (ch. 2), `collapse` (ch. 3, 5, 8), `spectrum` (ch. 6),
`theory` and `localization` (ch. 7), `model`, `regularizers`, `data`, `train`, `sweep`
(ch. 4, 9, 10), `runner` (grid points in worker processes or on Ray, resumable results files),
`reproduce` (ch. 10's LocAteR experiment), `cli` (the `qklab` command), `explore` (explorers),
`plotting` (figure style), `checks` (exercises), `exercises` and `grading` (learner notebooks),
`ledger` (claims ledger), `device` (CPU or GPU).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The top-level names load on first use, so that tools which need no tensors (the exercise
# grader, `qklab --help`) do not pay for importing torch.
_LAZY = {"attn_scores": "qklab.attention", "pattern": "qklab.attention", "sparsemax": "qklab.attention",
         "QK": "qklab.spectrum"}

__all__ = ["attn_scores", "pattern", "sparsemax", "QK", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qklab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
