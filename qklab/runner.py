"""Running many independent grid points, resumably, on every core or a cluster (chapter 10, `qklab sweep`).

What is here: a *point* is a JSON-serialisable dict `{"fn": "package.module:function", "args": {...},
"tags": {...}}` (tags are labels for tables, not part of the point's identity); `point_key(point)`
names it by a hash of `fn` and `args`; `run_points(points, out)` runs every point not yet in the
JSON-lines results file `out` and appends one record per point as soon as it finishes;
`read_records(out)` reads them back by key; `train_point(model, train, data)` trains one model
(the `fn` of `qklab sweep`'s points).

Backends:

- `"process"` (default): worker processes, one torch thread each, as many as there are cores unless
  `workers` says otherwise. On Linux they are forked from this process when that is safe (no other
  thread runs here, and torch is a CPU-only build): a fork starts in milliseconds and inherits torch,
  already imported, and the data already loaded, as PyTorch's DataLoader workers do. Otherwise
  they come from a `forkserver` (one clean process that imports torch once, then forks each
  worker), or from `spawn` where there is no fork at all. Under `forkserver` and `spawn` a worker
  imports the main script again, so a script that calls `run_points` must do so under
  `if __name__ == "__main__":`; a worker that cannot start is an error that says so. A worker that
  dies while running a point (killed, out of memory) is replaced; its point is tried once more and
  then recorded as an error. The other points go on. Workers end when this process ends, even
  when it is killed.
- `"inline"`: this process, one torch thread (for debugging and notebooks).
- `"ray"`: one Ray task per point on the cluster `ray.init()` connects to (`pip install qklab[ray]`),
  one GPU per task when the cluster has GPUs. Ray places and retries tasks; the driver (this
  process) writes the records as tasks finish. Before the first task every node is checked to
  run the same code on the same data (`qklab.cluster`).

Every backend gives the same numbers for a point: each point runs with one torch thread (on CPU)
and everything in it is seeded by its `args`. Ctrl-C stops the workers; what finished is on disk
and running the same points again skips it; SIGTERM does the same as Ctrl-C (it raises
`SweepTerminated`, a KeyboardInterrupt). A point whose record says `"error"` is run again on the
next call (a fixed bug or a killed worker should not need the file edited); one with `"ok"` is not.

Not here: what a point computes (`qklab.train`, `qklab.reproduce`), stacking many models in one
process (`qklab.sweep`, the lever on a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from qklab.records import check_devices, execute, make_record, one_thread, point_key, read_records, resolve_fn

__all__ = ["point_key", "run_points", "check_run", "grid_difference", "read_records", "train_point", "BACKENDS",
           "SweepTerminated"]

BACKENDS = ("process", "inline", "ray")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --- points ------------------------------------------------------------------------------------
# (keys, records and running one point: qklab.records, shared with the Ray backend in qklab.cluster)

def _validate(points: Any, out: str | os.PathLike, workers: int | None, backend: str) -> tuple[list[dict], list[str], Path]:
    """Everything that can be checked before any work; raises ValueError/TypeError naming the problem."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None (one per core), got {workers!r}")
    if not isinstance(points, (list, tuple)):
        raise TypeError(f"points must be a list of dicts, got {type(points).__name__}")
    if not points:
        raise ValueError("points is empty: nothing to run (check the grid's axes)")
    clean, keys, seen = [], [], {}
    for i, p in enumerate(points):
        if not isinstance(p, dict) or not isinstance(p.get("fn"), str):
            raise TypeError(f"point {i} must be a dict with a string 'fn', got {p!r:.200}")
        extra = set(p) - {"fn", "args", "tags"}
        if extra:
            raise ValueError(f"point {i} has unknown fields {sorted(extra)} (allowed: fn, args, tags)")
        args, tags = p.get("args", {}), p.get("tags", {})
        if not isinstance(args, dict) or not isinstance(tags, dict):
            raise TypeError(f"point {i}: 'args' and 'tags' must be dicts")
        try:
            q = json.loads(json.dumps({"fn": p["fn"], "args": args, "tags": tags}, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise TypeError(f"point {i} is not JSON-serialisable ({err})") from err
        key = point_key(q)
        if key in seen:
            raise ValueError(f"points {seen[key]} and {i} are the same point (fn and args equal, key {key}); "
                             "a grid must not repeat a point")
        seen[key] = i
        fn = resolve_fn(q["fn"])
        check = getattr(fn, "validate", None)  # a point function may check its args before any work
        if callable(check):
            try:
                check(**q["args"])
            except (TypeError, ValueError, FileNotFoundError) as err:
                raise type(err)(f"point {i} ({q['fn']}): {err}") from err
        clean.append(q)
        keys.append(key)
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"out {str(path)!r} is a directory; give a results file such as {str(path / 'results.jsonl')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write the results file {str(path)!r}: {err.strerror or err}") from err
    read_records(path)  # a file that is not ours fails here, before any work
    return clean, keys, path


class SweepTerminated(KeyboardInterrupt):
    """Raised in `run_points` when its process gets SIGTERM: the same clean-up as Ctrl-C (workers
    stopped, finished points kept), and a type of its own so that a CLI can exit with 143."""


class _Sink:
    """Appends records to the results file (one line each, flushed and synced) and ticks the bar."""

    def __init__(self, path: Path, total: int, done: int, progress: bool, grid: dict | None = None) -> None:
        from qklab._progress import progress_bar

        self.path, self.errors, self.grid = path, 0, grid
        self.bar = progress_bar(total=total, initial=done, disable=not progress, desc="points", unit="pt", dynamic_ncols=True)

    def write(self, rec: dict) -> None:
        if self.grid is not None:
            rec = {**rec, "grid": self.grid}
        line = (json.dumps(rec) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the last line was cut short: start on a line of our own
            os.write(fd, line)  # one system call: a Ctrl-C cannot split the line
            os.fsync(fd)
        finally:
            os.close(fd)
        self.errors += rec["status"] == "error"
        if self.errors:
            self.bar.set_postfix(errors=self.errors)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- run_points ---------------------------------------------------------------------------------

def run_points(points: list[dict], out: str | os.PathLike, *, workers: int | None = None, backend: str = "process",
               progress: bool = True, grid: dict | None = None) -> list[dict]:
    """Run every point of `points` that has no "ok" record in `out`, appending a record per point as it finishes.

    Args:
        points: `{"fn": "module:function", "args": {...}, "tags": {...}}` dicts; `fn(**args)` returns a
            JSON-serialisable dict. Validated before any work (non-empty, unique keys, `fn`
            importable, its `validate(**args)` if it has one, `out` writable).
        out: the JSON-lines results file (created with its folder; appended to).
        workers: worker processes (backend "process"); None: one per core. Ignored by "inline";
            for "ray" the cluster's resources decide.
        backend: "process", "inline" or "ray" (see the module docstring).
        progress: a tqdm bar with points done / total and the time left.
        grid: what makes these points one grid (the command and its settings other than the swept
            axes, e.g. `{"command": "reproduce locater", "scale": "book", "device": "auto"}`),
            stored in every record. When `out` already holds records of another grid, nothing runs:
            ValueError says what differs (records written without a grid are accepted).

    Returns:
        the records of all `points` (old and new), in the order of `points`; each record's `tags`
        are the point's current tags.
    """
    clean, keys, path = check_run(points, out, workers=workers, backend=backend, grid=grid)
    grid = json.loads(json.dumps(grid)) if grid is not None else None  # as the file holds it
    old = read_records(path)
    todo = [i for i, k in enumerate(keys) if old.get(k, {}).get("status") != "ok"]
    if todo and backend != "ray":  # the Ray backend checks against the cluster's devices (qklab.cluster)
        check_devices([old[k] for k in keys if k in old], [clean[i] for i in todo], _local_device_type)
    method = _start_method() if backend == "process" else ""  # before the bar exists (see _start_method)
    sink = _Sink(path, len(clean), len(clean) - len(todo), progress, grid)
    try:
        with _sigterm_interrupts():
            if todo:
                if backend == "inline":
                    _run_inline(clean, keys, todo, sink)
                elif backend == "process":
                    _run_processes(clean, keys, todo, sink, workers or _cores(), method)
                else:
                    from qklab.cluster import run_on_ray

                    run_on_ray(clean, keys, todo, sink)
    finally:
        sink.close()
    records = read_records(path)
    missing = [keys[i] for i in range(len(keys)) if keys[i] not in records]
    if missing:  # cannot happen unless the file was changed under us
        raise RuntimeError(f"results file {path} lacks the records of {len(missing)} points, e.g. {missing[0]}")
    return [{**records[k], "tags": p.get("tags", {})} for k, p in zip(keys, clean)]


def check_run(points: list[dict], out: str | os.PathLike, *, workers: int | None = None, backend: str = "process",
              grid: dict | None = None) -> tuple[list[dict], list[str], Path]:
    """Everything `run_points` checks before any work, for a caller that wants to fail before
    doing anything else: the points (each through its function's `validate`), the workers and
    backend, that `out` can be written and holds qklab records, and that they are of `grid`.
    Returns the points as the file will hold them, their keys and the results path."""
    clean, keys, path = _validate(points, out, workers, backend)
    if grid is not None:
        grid = json.loads(json.dumps(grid))
        for rec in read_records(path).values():
            if rec.get("grid") is not None and rec["grid"] != grid:
                raise ValueError(f"results file {str(path)!r} was written by another grid "
                                 f"({grid_difference(rec['grid'], grid)}); give a new file, or the same settings to "
                                 "resume it")
    return clean, keys, path


def _local_device_type(requested: str) -> str:
    from qklab.device import pick_device

    return pick_device(requested).type


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def grid_difference(recorded: dict, now: dict) -> str:
    """'steps: 300 in the file, 1500 now; ...': the settings in which two grids differ."""
    a, b = _flat(recorded), _flat(now)
    diffs = [f"{k}: {a.get(k, '(unset)')!r} in the file, {b.get(k, '(unset)')!r} now"
             for k in sorted(set(a) | set(b)) if a.get(k, "(unset)") != b.get(k, "(unset)")]
    return "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a sweep runs in the main thread, SIGTERM raises SweepTerminated (unless the program
    handles SIGTERM itself): the workers are stopped and what finished stays on disk."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SweepTerminated("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_inline(points: list[dict], keys: list[str], todo: list[int], sink: _Sink) -> None:
    with one_thread():
        for i in todo:
            sink.write(execute(points[i], keys[i]))


# --- the process backend ------------------------------------------------------------------------

_READY = "ready"  # a worker's first message: it started, torch is imported
# What every worker needs, imported once: by this process before it forks, or by the forkserver.
# torch._dynamo is there because torch.optim's first optimiser imports it (1-3 s).
_PRELOAD = ["torch", "torch._dynamo", "qklab.runner", "qklab.train"]


def _start_method() -> str:
    """How workers start here: "fork" on Linux when no other thread runs in this process (a fork
    copies only the calling thread: a lock another thread held would stay held in the child) and
    torch is a CPU-only build (in a build with CUDA or ROCm, even `torch.cuda.is_available()` in
    this process makes the GPU unusable in a forked child); else "forkserver" (POSIX), else "spawn"."""
    import multiprocessing as mp

    import torch

    methods = mp.get_all_start_methods()
    gpu_build = torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1 and not gpu_build:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _die_with_driver(driver: int | None) -> None:
    """End this worker when the driver (the process running `run_points`) dies, even by SIGKILL.

    Forked from the driver (`driver` is its pid): the kernel's parent-death signal (Linux). From a
    forkserver or spawned: a thread that waits on multiprocessing's parent sentinel, which becomes
    ready when the driver is gone (the forkserver itself lives as long as its children do)."""
    if driver is not None:
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != driver:  # it died before the line above
            os._exit(1)
        return
    import multiprocessing as mp
    from multiprocessing.connection import wait

    sentinel = getattr(mp.parent_process(), "sentinel", None)
    if sentinel is not None:
        threading.Thread(target=lambda: (wait([sentinel]), os._exit(1)), daemon=True, name="qklab-driver-watch").start()


def _worker_main(conn: Any, driver: int | None) -> None:
    """A worker process: one torch thread; says it is ready, then runs the points it is sent until
    told to stop (None) or the driver goes away. `driver`: the driver's pid when forked from it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fork inherits the driver's handler
    _die_with_driver(driver)
    os.environ.update({k: "1" for k in _THREAD_ENV})  # for whatever a point starts
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        conn.send(_READY)
        while True:
            job = conn.recv()
            if job is None:
                return
            point, key = job
            conn.send(execute(point, key))


@contextlib.contextmanager
def _child_env() -> Iterator[None]:
    """Spawned children (and a forkserver) inherit os.environ: one OpenMP/MKL thread before they import torch."""
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: "1" for k in _THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_processes(points: list[dict], keys: list[str], todo: list[int], sink: _Sink, workers: int,
                   method: str) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context(method)
    if method == "fork":
        for name in _PRELOAD:  # shared by every fork, copy-on-write
            importlib.import_module(name)
    elif method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)  # used when the server starts (once per process)
    driver = os.getpid() if method == "fork" else None
    queue = list(todo)  # point indices not yet handed out
    tries = {i: 0 for i in todo}
    busy: dict[Any, tuple[Any, int]] = {}  # process -> (its connection, the point it runs)
    idle: list[tuple[Any, Any]] = []
    started: set[Any] = set()  # processes that said they were ready
    failed_starts = 0

    def start() -> tuple[Any, Any]:
        conn, child = ctx.Pipe()
        with _child_env():
            proc = ctx.Process(target=_worker_main, args=(child, driver), daemon=True, name="qklab-worker")
            proc.start()
        child.close()
        return proc, conn

    def hand_out(proc: Any, conn: Any) -> None:
        i = queue.pop(0)
        tries[i] += 1
        busy[proc] = (conn, i)
        with contextlib.suppress(OSError):  # a worker that died while idle: handled below as a dead worker
            conn.send((points[i], keys[i]))

    pool = [start() for _ in range(min(workers, len(todo)))]
    try:
        for proc, conn in pool:
            hand_out(proc, conn)
        while busy:
            by_sentinel = {proc.sentinel: proc for proc in busy}
            got = set(wait([c for c, _ in busy.values()] + list(by_sentinel)))
            for proc in list(busy):
                conn, i = busy[proc]
                msg = None
                if conn in got:
                    with contextlib.suppress(EOFError, OSError):
                        msg = conn.recv()
                    if msg == _READY:
                        started.add(proc)
                        continue
                    if msg is not None:
                        del busy[proc]
                        sink.write(msg)
                        idle.append((proc, conn))
                        continue
                if conn not in got and proc.sentinel not in got:
                    continue
                # the pipe closed without a record: the worker died
                proc.join(timeout=5)
                del busy[proc]
                conn.close()
                if proc not in started:  # it died starting up: not the point's fault
                    tries[i] -= 1
                    failed_starts += 1
                    if (failed_starts >= 2 and not started) or failed_starts > 2 + workers:
                        raise RuntimeError(
                            f"worker processes could not start (start method {method!r}; the last exited with code "
                            f"{proc.exitcode} before it was ready; its error is printed above). Under 'forkserver' "
                            "and 'spawn' every worker imports the main script again, so a script must call "
                            "run_points under `if __name__ == \"__main__\":`. backend='inline' runs the points in "
                            "this process.")
                    queue.insert(0, i)
                elif tries[i] < 2:
                    queue.insert(0, i)  # try once more in a fresh worker
                else:
                    sink.write(make_record(points[i], keys[i], "error", None,
                                       f"the worker process running this point died twice (exit code {proc.exitcode}; "
                                       "a negative code is the signal that killed it, e.g. -9 SIGKILL: out of memory?)",
                                       0.0, None))
                if queue:
                    idle.append(start())
            while idle and queue:
                hand_out(*idle.pop())
    finally:
        for proc, conn in [*idle, *((p, c) for p, (c, _) in busy.items())]:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        for proc, conn in [*idle, *((p, c) for p, (c, _) in busy.items())]:
            if proc in busy:
                proc.kill()  # interrupted: its point is unfinished and will run again next time
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()


# --- train_point: the fn of `qklab sweep` -------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _load_data(spec_json: str) -> Any:
    from qklab import data as qd

    spec = json.loads(spec_json)
    kind = spec.pop("kind", "pydoc")
    if kind == "pydoc":
        return qd.pydoc_corpus(**spec)
    if kind == "wikitext2":
        return qd.load_wikitext2(spec.get("path"), level=spec.get("level", "char"))
    if kind == "random-walk":
        return qd.RandomWalkTokens(**spec)
    if kind == "induction":
        return qd.InductionTask(**spec)
    raise ValueError(f"data kind must be 'pydoc', 'wikitext2', 'random-walk' or 'induction', got {kind!r}")


def _configs(model: dict, train: dict, data: dict) -> tuple[Any, Any, Any]:
    from qklab.model import ModelConfig
    from qklab.train import TrainConfig

    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict such as {{'kind': 'pydoc'}}, got {data!r}")
    mcfg = ModelConfig.from_dict(model)
    cfg = TrainConfig.from_dict({**train, "progress": False, "on_divergence": "stop", "out": None})
    if cfg.checkpoint is not None:
        raise ValueError("train_point: checkpoints are not supported in a sweep point (a point is the unit of resumption)")
    return mcfg, cfg, _load_data(json.dumps(data, sort_keys=True))


def train_point(model: dict, train: dict, data: dict) -> dict:
    """Train one model; its final metrics and logged history (`qklab sweep`'s points).

    Args:
        model: `ModelConfig` fields (e.g. `{"d_model": 64, "norm": "post"}`).
        train: `TrainConfig` fields; `progress`, `out` and `on_divergence` are set here (no bar,
            no file of its own, a divergence is a result: `status == "diverged"`).
        data: `{"kind": "pydoc"}` (default corpus), `{"kind": "wikitext2", "path": ..., "level":
            "char" | "word"}`, `{"kind": "random-walk", "vocab_size": 32}` or `{"kind": "induction",
            "vocab_size": 32}`.

    Returns:
        `{"status", "message", "final", "history", "model_config", "train_config", "data", "device"}`:
        `final` is the last logged record, `history` every logged record (`qklab.train.History`
        keys, without the wall-clock `elapsed_s`, so that equal runs give equal results).
    """
    from qklab.train import train as train_model

    mcfg, cfg, dataset = _configs(model, train, data)
    hist = train_model(mcfg, cfg, dataset)
    records = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in hist.records]
    return {"status": hist.status, "message": hist.message, "final": records[-1] if records else {},
            "history": records, "model_config": hist.model_config, "train_config": hist.train_config,
            "data": hist.data, "device": hist.env.get("device", "cpu")}


def _validate_train_point(model: dict, train: dict, data: dict) -> None:
    _configs(model, train, data)


def _train_point_data(data: dict, **_: Any) -> str:
    from qklab.data import fingerprint

    return fingerprint(_load_data(json.dumps(data, sort_keys=True)))


train_point.validate = _validate_train_point  # type: ignore[attr-defined]
train_point.data_fingerprint = _train_point_data  # type: ignore[attr-defined]
