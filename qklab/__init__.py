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

__version__ = "0.1.0"

from qklab.attention import attn_scores, pattern, sparsemax
from qklab.spectrum import QK

__all__ = ["attn_scores", "pattern", "sparsemax", "QK", "__version__"]
