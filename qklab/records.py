"""Points and their records: the part of running a grid that every backend shares.

What is here: `point_key(point)` (a point's identity, a hash of its `fn` and `args`),
`read_records(out)` (a JSON-lines results file by key), `resolve_fn` (a point's `fn` from its
"module:function" name), `execute(point, key)` / `execute_one_thread` (run one point here and make
its record, stamped with versions and machine), `make_record`, and `check_devices` (one results
file never mixes CPU and GPU numbers).

Not here: scheduling points on workers (`qklab.runner`) or on a Ray cluster (`qklab.cluster`);
both import this module, and it imports neither.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import json
import os
import platform
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["point_key", "read_records", "resolve_fn", "execute", "execute_one_thread", "make_record", "check_devices",
           "one_thread"]


def point_key(point: dict) -> str:
    """First 16 hex digits of sha256 of the canonical JSON of `{"fn": ..., "args": ...}`."""
    ident = {"fn": point["fn"], "args": point.get("args", {})}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_records(out: str | os.PathLike) -> dict[str, dict]:
    """The records of a results file by key (an absent file has none). When a key has several
    records (an error, then a success on a later run), the last "ok" one wins, else the last one.
    A record cut short (a writer killed mid-line) is ignored; any other unreadable line is an error."""
    path = Path(out)
    if not path.exists():
        return {}
    if not path.is_file():
        raise ValueError(f"results file {str(path)!r} is not a file")
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, dict] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if line.startswith('{"key": '):
                continue  # a record cut short by a kill; its point runs again
            raise ValueError(f"{path}: line {i + 1} is not JSON ({err.msg}); is this a qklab results file?") from err
        if not isinstance(rec, dict) or "key" not in rec or rec.get("status") not in ("ok", "error"):
            raise ValueError(f"{path}: line {i + 1} is not a qklab run record (no 'key'/'status'); "
                             "pass a new file or one written by run_points")
        old = found.get(rec["key"])
        if old is None or rec["status"] == "ok" or old["status"] != "ok":
            found[rec["key"]] = rec
    return found


def resolve_fn(fn: str) -> Callable[..., dict]:
    module, sep, name = fn.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"point fn must be 'package.module:function', got {fn!r}")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"point fn {fn!r}: cannot import module {module!r} ({err})") from err
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"point fn {fn!r}: module {module!r} has no {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"point fn {fn!r} is not callable")
    return obj


def versions() -> dict:
    import torch

    import qklab

    versions = {"python": platform.python_version(), "torch": torch.__version__, "qklab": qklab.__version__}
    with contextlib.suppress(ImportError):
        import numpy

        versions["numpy"] = numpy.__version__
    return versions


def machine_stamp() -> dict:
    from qklab.device import machine

    return machine()


def execute(point: dict, key: str) -> dict:
    """Run one point here and now; the record (an exception becomes `status: "error"`)."""
    t0 = time.perf_counter()
    result, error = None, None
    try:
        value = resolve_fn(point["fn"])(**point["args"])
        result = json.loads(json.dumps(value))  # what the file will hold (tuples become lists)
        if not isinstance(result, dict):
            raise TypeError(f"{point['fn']} returned {type(value).__name__}, not a dict")
    except Exception as err:  # noqa: BLE001: any failure of a point is recorded, the sweep goes on
        result, error = None, "".join(traceback.format_exception_only(type(err), err)).strip()
        error += "\n" + "".join(traceback.format_tb(err.__traceback__)[-3:])
    return make_record(point, key, "ok" if error is None else "error", result, error, time.perf_counter() - t0,
                   (result or {}).get("device") if isinstance(result, dict) else None)


def make_record(point: dict, key: str, status: str, result: dict | None, error: str | None, wall_s: float,
            device: str | None) -> dict:
    return {"key": key, "fn": point["fn"], "args": point["args"], "tags": point.get("tags", {}), "status": status,
            "result": result, "error": error, "wall_s": round(wall_s, 3), "host": socket.gethostname(),
            "device": device, "versions": versions(), "machine": machine_stamp(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def check_devices(finished: list[dict], todo: list[dict], resolve: Callable[[str], str]) -> None:
    """Refuse to finish a grid on another kind of device than its finished points ran on: `auto`
    picks CUDA where there is a GPU, and CPU and GPU numbers differ, so one results file must not
    mix them. `resolve` maps a point's requested device to the type it would run on now."""
    ran = {str(r.get("device")).split(":")[0] for r in finished if r.get("status") == "ok" and r.get("device")}
    will = {resolve(str((p.get("args", {}).get("train") or {}).get("device", "auto"))) for p in todo}
    if ran and will and ran != will:
        raise ValueError(f"the finished points of this grid ran on {', '.join(sorted(ran))}, the remaining "
                         f"{len(todo)} would run on {', '.join(sorted(will))}: one results file must not mix devices. "
                         "Finish it where it was started (or name that device with --device), or give a new file")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute_one_thread(point: dict, key: str) -> dict:
    """Run one point with one torch thread and return its record (the task of the Ray backend)."""
    with one_thread():
        return execute(point, key)
