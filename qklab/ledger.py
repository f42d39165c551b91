"""The claims ledger: each chapter records the claims it tests and what it measured.

A chapter calls `claim(...)` right where it computes a number. The call prints a one-line
verdict, asserts the claim when `must_hold=True` (so a regression fails the build), and writes
the record to `_build/claims/<chapter>.json` in the book's root (found by walking up to
`_toc.yml`; `QKLAB_LEDGER_DIR` overrides; outside the book, e.g. on Colab, nothing is written).
The appendix page "Claims ledger" is rendered from those files by the book's Sphinx extension
`_ext/claims_ledger.py` after every chapter has executed, so it is never typed by hand.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Claim", "claim", "ledger_dir", "load_claims"]

SOURCES = (
    "Bao et al. 2024",
    "Dong et al. 2021",
    "Noci et al. 2022",
    "Zhai et al. 2023",
    "Trockman and Kolter 2023",
    "Martins and Astudillo 2016",
    "Vaswani et al. 2017",
    "course",
)


@dataclass(frozen=True)
class Claim:
    """One row of the ledger."""

    id: str
    chapter: str
    statement: str
    source: str
    measured: str
    expected: str
    holds: bool


def ledger_dir(start: Path | None = None) -> Path | None:
    """Where claims are written: `$QKLAB_LEDGER_DIR`, else `<book root>/_build/claims`, else None."""
    if os.environ.get("QKLAB_LEDGER_DIR"):
        return Path(os.environ["QKLAB_LEDGER_DIR"])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder / "_build" / "claims"
    return None


_reset_this_process: set[str] = set()


def claim(
    claim_id: str,
    *,
    chapter: str,
    statement: str,
    source: str,
    measured: float | str,
    expected: str,
    holds: bool,
    must_hold: bool = True,
) -> bool:
    """Record a claim and the measurement that tests it; assert it if `must_hold`.

    Args:
        claim_id: short unique slug, e.g. `"uniform-attention-one-layer"`.
        chapter: the chapter's file stem, e.g. `"03_rank_collapse"`.
        statement: the claim in one sentence, attributed honestly.
        source: one of `SOURCES` ("course" for the course's own derivation).
        measured: the number (formatted to 4 significant digits) or a short text.
        expected: what would confirm it, e.g. `"< 1e-6"` or `"between 0.9 and 1"`.
        holds: the verdict, computed in the notebook from `measured`.
        must_hold: raise `AssertionError` when the claim does not hold. Use `False` only for a
            reproduction that may honestly fail; the ledger then shows it as not reproduced.

    Returns:
        `holds`.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    holds = bool(holds)
    text = f"{measured:.4g}" if isinstance(measured, (int, float)) else str(measured)
    record = Claim(claim_id, chapter, statement, source, text, expected, holds)
    folder = ledger_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{chapter}.json"
        fresh = chapter not in _reset_this_process  # a re-executed chapter starts a clean record
        _reset_this_process.add(chapter)
        records = {} if fresh or not path.exists() else json.loads(path.read_text())
        records[claim_id] = asdict(record)
        path.write_text(json.dumps(records, indent=1, sort_keys=True))
    verdict = "holds" if holds else "does NOT hold"
    print(f"[claim {claim_id}] {verdict}: measured {text}, expected {expected}")
    if must_hold and not holds:
        raise AssertionError(f"claim {claim_id!r} does not hold: measured {text}, expected {expected}. {statement}")
    return holds


def load_claims(folder: Path) -> list[Claim]:
    """All claims recorded under `folder`, ordered by chapter then id."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows.extend(Claim(**r) for r in json.loads(path.read_text()).values())
    return sorted(rows, key=lambda c: (c.chapter, c.id))
