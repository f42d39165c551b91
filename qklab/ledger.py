"""The claims ledger: each chapter records the claims it tests and what it measured.

A chapter calls `claim(...)` right where it computes a number. Every claim has a *kind*:

- `"prediction"`: what a paper, another paper or the course's own derivation says should happen.
  Its `expected` is written from that source *before* measuring, never fitted to the measurement.
  A prediction may fail: the call never raises, the outcome is recorded and shown, and the
  chapter's prose must read right either way (state both outcomes, or refer to the verdict shown).
- `"quoted"`: a band guarding a number that the prose quotes, so that prose and code cannot drift.
  It is asserted: if the number leaves its band the build fails, and the prose must be rewritten.
  A band is not evidence for anything; it is a guard.

The call shows a one-line verdict in the notebook (HTML under IPython, plain text elsewhere) and
writes the record to `_build/claims/<chapter>.json` in the book's root (found by walking up to
`_toc.yml`; `QKLAB_LEDGER_DIR` overrides; outside the book, e.g. on Colab, nothing is written).
The appendix page "Claims ledger" is rendered from those files by the book's Sphinx extension
`_ext/claims_ledger.py` after every chapter has executed, so it is never typed by hand.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Claim", "claim", "ledger_dir", "load_claims", "claims_in_code", "claims_not_run", "KINDS", "SOURCES"]

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

KINDS = ("prediction", "quoted")


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
    kind: str = "quoted"


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


class _Verdict:
    """What `claim` shows in a notebook: one line, HTML under IPython and text elsewhere."""

    def __init__(self, record: Claim) -> None:
        self.record = record

    def __str__(self) -> str:
        c = self.record
        outcome = "holds" if c.holds else "does NOT hold"
        return f"{c.kind.capitalize()} ({c.source}) {outcome}: measured {c.measured}, expected {c.expected}  [{c.id}]"

    def _repr_html_(self) -> str:
        c = self.record
        mark, colour = ("✔", "#1a7f37") if c.holds else ("✘", "#b3261e")
        outcome = "holds" if c.holds else "does not hold"
        label = "Prediction" if c.kind == "prediction" else "Quoted number"
        return (
            f'<p class="qklab-verdict qklab-{c.kind} qklab-{"holds" if c.holds else "fails"}">'
            f'<span style="color:{colour};font-weight:bold">{mark} {label} {outcome}</span> '
            f"({html.escape(c.source)}): measured <code>{html.escape(c.measured)}</code>, "
            f"expected {html.escape(c.expected)} <small>[{html.escape(c.id)}]</small></p>"
        )

    def __repr__(self) -> str:
        return str(self)


def _show(verdict: _Verdict) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(verdict)
        return
    if get_ipython() is None:
        print(verdict)
    else:
        display(verdict)


def claim(
    claim_id: str,
    *,
    kind: Literal["prediction", "quoted"],
    chapter: str,
    statement: str,
    source: str,
    measured: float | str,
    expected: str,
    holds: bool,
) -> None:
    """Record a claim and the measurement that tests it, and show its verdict.

    Args:
        claim_id: short unique slug, e.g. `"uniform-attention-one-layer"`.
        kind: `"prediction"` (expected outcome written from its source before measuring; may
            fail, never raises) or `"quoted"` (a band guarding a number the prose quotes; raises
            `AssertionError` when the number leaves the band). See the module docstring.
        chapter: the file stem of the chapter (or appendix notebook) that computes it, e.g. `"03_rank_collapse"`.
        statement: the claim in one sentence, attributed honestly.
        source: one of `SOURCES` ("course" for the course's own derivation or measurement).
        measured: the number (formatted to 4 significant digits) or a short text.
        expected: what would confirm it, e.g. `"< 1e-6"` or `"between 0.9 and 1"`.
        holds: the verdict, computed in the notebook from `measured`.

    Returns:
        None: the verdict is displayed (so a cell ending in `claim(...)` shows no bare `True`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    holds = bool(holds)
    text = f"{measured:.4g}" if isinstance(measured, (int, float)) else str(measured)
    record = Claim(claim_id, chapter, statement, source, text, expected, holds, kind)
    folder = ledger_dir()
    if folder is not None:
        fresh = chapter not in _reset_this_process  # a re-executed chapter starts a clean record
        _reset_this_process.add(chapter)
        _store(folder, chapter, claim_id, asdict(record), fresh)
    _show(_Verdict(record))
    if kind == "quoted" and not holds:
        raise AssertionError(
            f"quoted number {claim_id!r} left its band: measured {text}, expected {expected}. "
            f"The prose that quotes it must be rewritten. {statement}"
        )


def _store(folder: Path, chapter: str, claim_id: str, record: dict, fresh: bool) -> None:
    """Add one claim to `<folder>/<chapter>.json`. A chapter and its learner notebook may run at the
    same time (nbval with two workers), so the read-modify-write holds a lock, and the file is
    replaced in one step: a reader never sees it half written."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    with open(folder / f".{chapter}.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        except ImportError:  # Windows: no lock; the replace below is still atomic
            pass
        records = {} if fresh or not path.exists() else json.loads(path.read_text())
        records[claim_id] = record
        tmp = folder / f".{chapter}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        os.replace(tmp, path)


def load_claims(folder: Path) -> list[Claim]:
    """All claims recorded under `folder`, ordered by chapter then id."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows.extend(Claim(**r) for r in json.loads(path.read_text()).values())
    return sorted(rows, key=lambda c: (c.chapter, c.id))


_CLAIM_CALL = re.compile(r"""\bclaim\(\s*(f?)(["'])(.+?)\2""")


def claims_in_code(chapters: Path) -> dict[str, list[str]]:
    """The claim ids each chapter's code cells name, read from `chapters/*.ipynb` without running
    them: `{chapter: [id, ...]}`. An f-string id (`f"zero-eigenvalues-{name}"`) is kept as written,
    braces included; `claims_not_run` reads it as a pattern."""
    found = {}
    for path in sorted(Path(chapters).glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        ids = [("{f}" if f else "") + text for f, _, text in _CLAIM_CALL.findall(code)]
        if ids:
            found[path.stem] = list(dict.fromkeys(ids))
    return found


def claims_not_run(in_code: dict[str, list[str]], recorded: list[Claim]) -> list[tuple[str, str]]:
    """`(chapter, id)` of every claim in the code (`claims_in_code`) that no record matches: the
    claims that did not run because their cell, or one before it, failed. An f-string id matches
    any recorded id of the same chapter with the same text outside its braces."""
    done: dict[str, set[str]] = {}
    for c in recorded:
        done.setdefault(c.chapter, set()).add(c.id)
    missing = []
    for chapter, ids in in_code.items():
        for written in ids:
            if written.startswith("{f}"):
                parts = re.split(r"\{[^}]*\}", written[3:])
                pattern = re.compile(".+".join(map(re.escape, parts)) + r"\Z")
                ran = any(pattern.match(i) for i in done.get(chapter, ()))
            else:
                ran = written in done.get(chapter, ())
            if not ran:
                missing.append((chapter, written.removeprefix("{f}")))
    return missing
