"""After `make execute`: one line per chapter that failed to execute, and a non-zero exit.

`jcache project execute` runs every chapter into the execution cache that the book build reads. A
chapter that raised is not cached, and the build would execute it again and print its traceback
into the page, skipping every cell after the failure. `make book` calls this script between the
two steps instead, so that a failure stops the build with one line that names the chapter and the
check that failed, and nothing half-executed is published. The full traceback is written to
`_build/execution-errors/<chapter>.txt`.

Usage: python _ext/execution_report.py <cache folder>
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|KeyboardInterrupt)\b(:.*)?$")


def error_line(traceback: str) -> str:
    """The exception line of a cell's traceback ("AssertionError: quoted number ..."), without
    terminal colours; the last line of the text when none is recognised."""
    lines = [line.rstrip() for line in _ANSI.sub("", traceback or "").splitlines() if line.strip()]
    found = [line for line in lines if _ERROR_LINE.match(line)]
    return (found[-1] if found else (lines[-1] if lines else "no traceback recorded")).strip()


def main(cache_path: str) -> int:
    from jupyter_cache import get_cache

    cache = get_cache(cache_path)
    errors = Path("_build") / "execution-errors"
    failed = 0
    for record in cache.list_project_records():
        if cache.get_cached_project_nb(record.pk) is not None:
            continue
        failed += 1
        name = Path(record.uri).relative_to(Path.cwd()) if Path(record.uri).is_relative_to(Path.cwd()) else record.uri
        errors.mkdir(parents=True, exist_ok=True)
        full = errors / f"{Path(record.uri).stem}.txt"
        full.write_text(_ANSI.sub("", record.traceback or "no traceback recorded"), encoding="utf-8")
        line = error_line(record.traceback)
        print(f"make book: {name} failed to execute: {line[:400]}{' ...' if len(line) > 400 else ''} "
              f"(traceback: {full})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
