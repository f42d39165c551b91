"""qklab.runner: keys, validation before any work, streaming, resume, errors, dead workers, Ctrl-C
and SIGTERM, a killed driver, workers that cannot start, and the same numbers whatever the backend,
the worker count or the way workers start (fork, forkserver, spawn).

The point functions below run in worker processes, which import this module by its name (forked
workers have it already; `forkserver` and `spawn` pass the parent's sys.path on); they talk to the
test through files in `tmp_path`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Callable

import pytest

from qklab import runner
from qklab.runner import point_key, read_records, run_points, train_point

HERE = __name__  # "test_runner" under pytest's rootdir-relative import


# --- point functions (run in workers) -----------------------------------------------------------

def square(x: int, log: str) -> dict:
    """Returns x^2; appends x to `log` so that the test can count the calls."""
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return {"y": x * x, "pid": os.getpid()}


def crash_if(x: int, bad: int) -> dict:
    if x == bad:
        raise ValueError(f"point {x} is broken on purpose")
    return {"y": x}


def records_seen(out: str, i: int) -> dict:
    """How many records the results file holds when this point starts."""
    return {"seen": len(read_records(out))}


def die_once(x: int, marker: str) -> dict:
    """SIGKILLs its own worker process the first time (marker absent), succeeds the second time."""
    if x == 1 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"y": x}


def always_die(x: int) -> dict:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"y": x}


def slow(x: int, log: str, seconds: float) -> dict:
    with open(log, "a") as f:
        f.write(f"start {x} {os.getpid()}\n")
    time.sleep(seconds)
    return {"y": x}


def torch_threads() -> dict:
    import torch

    return {"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}


def pt(name: str, **args) -> dict:
    return {"fn": f"{HERE}:{name}", "args": args}


def tiny_train_points() -> list[dict]:
    """Four tiny trainings (2 seeds x 2 LocAteR strengths), a few steps each."""
    model = {"d_model": 8, "seq_len": 8, "norm": "post"}
    return [{"fn": "qklab.runner:train_point",
             "args": {"model": model, "data": {"kind": "random-walk", "vocab_size": 6},
                      "train": {"steps": 6, "batch_size": 4, "log_every": 3, "eval_batches": 1, "device": "cpu",
                                "seed": seed, "lr": 1e-2, "regularizer": "locater", "reg_strength": lam}},
             "tags": {"seed": seed, "lam": lam}}
            for seed in (0, 1) for lam in (0.0, 1.0)]


# --- keys and records ---------------------------------------------------------------------------

def test_point_key_is_the_hash_of_fn_and_args():
    p = {"fn": "m:f", "args": {"b": 1, "a": [1.5, "x"]}, "tags": {"label": "one"}}
    expected = hashlib.sha256(b'{"args":{"a":[1.5,"x"],"b":1},"fn":"m:f"}').hexdigest()[:16]
    assert point_key(p) == expected
    assert point_key({**p, "tags": {"label": "other"}}) == expected  # tags are not identity
    assert point_key({"fn": "m:f", "args": {"a": [1.5, "x"], "b": 2}}) != expected


def test_read_records_prefers_ok_and_skips_a_cut_line(tmp_path):
    out = tmp_path / "r.jsonl"
    lines = [{"key": "a", "status": "error"}, {"key": "a", "status": "ok", "n": 1}, {"key": "a", "status": "error"},
             {"key": "b", "status": "error", "n": 2}]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"key": "c", "sta')
    recs = read_records(out)
    assert recs["a"]["n"] == 1 and recs["b"]["n"] == 2 and "c" not in recs
    (tmp_path / "other.jsonl").write_text('{"type": "config"}\n')
    with pytest.raises(ValueError, match="not a qklab run record"):
        read_records(tmp_path / "other.jsonl")


# --- validation before any work -----------------------------------------------------------------

@pytest.mark.parametrize("points, kwargs, message", [
    ([], {}, "points is empty"),
    ([{"fn": "qklab.nope:f", "args": {}}], {}, "cannot import module 'qklab.nope'"),
    ([{"fn": "qklab.runner:nope", "args": {}}], {}, "has no 'nope'"),
    ([{"fn": "no_colon", "args": {}}], {}, "package.module:function"),
    ([{"fn": "qklab.runner:point_key", "args": {"x": float("nan")}}], {}, "not JSON-serialisable"),
    ([{"fn": "qklab.runner:point_key", "args": {}, "tag": {}}], {}, "unknown fields"),
    (None, {"backend": "dask"}, "backend must be one of"),
    (None, {"workers": 0}, "workers must be a positive int"),
])
def test_bad_input_fails_before_any_work(tmp_path, points, kwargs, message):
    log = tmp_path / "calls.txt"
    good = pt("square", x=1, log=str(log))
    with pytest.raises((ValueError, TypeError), match=message):
        run_points([] if points == [] else [good] + (points or []), tmp_path / "r.jsonl", progress=False,
                   **{"backend": "inline", **kwargs})
    assert not log.exists()  # the good point did not run either


def test_duplicate_points_and_bad_outputs(tmp_path):
    log = str(tmp_path / "calls.txt")
    a = pt("square", x=1, log=log)
    with pytest.raises(ValueError, match="points 0 and 1 are the same point"):
        run_points([a, {**a, "tags": {"again": True}}], tmp_path / "r.jsonl", backend="inline", progress=False)
    with pytest.raises(ValueError, match="is a directory"):
        run_points([a], tmp_path, backend="inline", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cannot write the results file"):
        run_points([a], tmp_path / "file" / "r.jsonl", backend="inline", progress=False)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("not json\nat all\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        run_points([a], foreign, backend="inline", progress=False)
    assert not Path(log).exists()


def test_train_point_checks_its_args_before_any_work(tmp_path):
    ok = tiny_train_points()[0]
    bad = {**ok, "args": {**ok["args"], "train": {**ok["args"]["train"], "lr": -1.0}}}
    with pytest.raises(ValueError, match=r"point 1 \(qklab.runner:train_point\).*lr"):
        run_points([ok, bad], tmp_path / "r.jsonl", backend="inline", progress=False)
    bad_model = {**ok, "args": {**ok["args"], "model": {"d_modle": 8}}}
    with pytest.raises(ValueError, match="d_modle"):
        run_points([bad_model], tmp_path / "r.jsonl", backend="inline", progress=False)
    assert read_records(tmp_path / "r.jsonl") == {}


# --- same numbers whatever the mode -------------------------------------------------------------

def test_same_records_inline_one_worker_two_workers(tmp_path):
    """Bit-identical results: every backend runs a point with one torch thread, seeded by its args."""
    points = tiny_train_points()
    runs = {name: run_points(points, tmp_path / f"{name}.jsonl", progress=False, **kw)
            for name, kw in {"inline": {"backend": "inline"}, "w1": {"workers": 1}, "w2": {"workers": 2}}.items()}
    for name, recs in runs.items():
        assert [r["status"] for r in recs] == ["ok"] * 4, (name, [r["error"] for r in recs])
        assert [r["tags"] for r in recs] == [p["tags"] for p in points]
    for i in range(4):
        assert runs["w1"][i]["result"] == runs["inline"][i]["result"]
        assert runs["w2"][i]["result"] == runs["inline"][i]["result"]
    # and equal to training directly in this process (one thread), not only to each other
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = train_point(**points[3]["args"])
    finally:
        torch.set_num_threads(before)
    assert json.loads(json.dumps(direct)) == runs["w2"][3]["result"]
    histories = {json.dumps(r["result"]["history"]) for r in runs["inline"]}
    assert len(histories) == 4  # the points differ from each other (the check above can fail)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_same_records_and_one_thread_whatever_the_start_method(tmp_path, monkeypatch, method):
    monkeypatch.setattr(runner, "_start_method", lambda: method)
    points = tiny_train_points()
    inline = run_points(points, tmp_path / "inline.jsonl", backend="inline", progress=False)
    recs = run_points(points, tmp_path / f"{method}.jsonl", workers=2, progress=False)
    assert [r["status"] for r in recs] == ["ok"] * 4, [r["error"] for r in recs]
    assert [r["result"] for r in recs] == [r["result"] for r in inline]
    rec, = run_points([pt("torch_threads")], tmp_path / "threads.jsonl", workers=1, progress=False)
    assert rec["result"] == {"threads": 1, "omp": "1"}


def test_workers_fork_only_where_it_is_safe(monkeypatch):
    """A fresh process that trained with qklab's progress bars runs no second thread, so its workers
    fork (with a CPU build of torch); a thread of the program's own, or a torch built with CUDA,
    makes them come from a forkserver."""
    script = textwrap.dedent("""
        import threading
        from qklab import runner
        from qklab.data import RandomWalkTokens
        from qklab.model import ModelConfig
        from qklab.train import TrainConfig, train

        train(ModelConfig(d_model=8, seq_len=8), TrainConfig(steps=3, batch_size=2, eval_batches=1), RandomWalkTokens(6))
        print(threading.active_count(), runner._start_method())
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        print(runner._start_method())
    """)
    import torch

    cpu_build = torch.version.cuda is None and getattr(torch.version, "hip", None) is None
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "fork" if cpu_build else "forkserver", "forkserver"]

    monkeypatch.setattr(torch.version, "cuda", "12.8")  # a forked child of a CUDA build may not reach its GPU
    assert runner._start_method() == "forkserver"


# --- streaming, resume, errors ------------------------------------------------------------------

def test_records_stream_to_the_file_as_points_finish(tmp_path):
    out = tmp_path / "r.jsonl"
    recs = run_points([pt("records_seen", out=str(out), i=i) for i in range(3)], out, workers=1, progress=False)
    assert [r["result"]["seen"] for r in recs] == [0, 1, 2]
    recs = run_points([pt("records_seen", out=str(out), i=i) for i in range(3, 5)], out, backend="inline",
                      progress=False)
    assert [r["result"]["seen"] for r in recs] == [3, 4]


def test_rerun_skips_finished_points_by_key(tmp_path):
    out, log = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    first = run_points([pt("square", x=x, log=str(log)) for x in (1, 2)], out, workers=1, progress=False)
    points = [{**pt("square", x=x, log=str(log)), "tags": {"x": x}} for x in (3, 2, 1, 4)]
    again = run_points(points, out, workers=1, progress=False)
    assert sorted(log.read_text().split()) == ["1", "2", "3", "4"]  # 1 and 2 ran once
    assert [r["result"]["y"] for r in again] == [9, 4, 1, 16]
    assert again[1]["finished_at"] == first[1]["finished_at"] and again[1]["result"] == first[1]["result"]
    assert [r["tags"] for r in again] == [{"x": 3}, {"x": 2}, {"x": 1}, {"x": 4}]
    assert len(out.read_text().splitlines()) == 4
    keys = [json.loads(x)["key"] for x in out.read_text().splitlines()]
    assert sorted(keys) == sorted(point_key(p) for p in points)


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_crashing_point_is_recorded_and_the_others_finish(tmp_path, backend):
    out = tmp_path / "r.jsonl"
    recs = run_points([pt("crash_if", x=x, bad=2) for x in range(4)], out, backend=backend, workers=2,
                      progress=False)
    assert [r["status"] for r in recs] == ["ok", "ok", "error", "ok"]
    assert "ValueError: point 2 is broken on purpose" in recs[2]["error"] and recs[2]["result"] is None
    assert [r["result"]["y"] for r in recs if r["status"] == "ok"] == [0, 1, 3]
    for r in recs:
        assert set(r) == {"key", "fn", "args", "tags", "status", "result", "error", "wall_s", "host", "device",
                          "versions", "machine", "finished_at"}
        assert "torch" in r["versions"] and r["wall_s"] >= 0
    # an errored point runs again next time (the file keeps both records)
    recs = run_points([pt("crash_if", x=x, bad=9) for x in range(4)], out, backend=backend, workers=1, progress=False)
    assert len(out.read_text().splitlines()) == 8 and [r["status"] for r in recs] == ["ok"] * 4
    recs = run_points([pt("crash_if", x=x, bad=2) for x in range(4)], out, backend=backend, workers=1, progress=False)
    assert [r["status"] for r in recs] == ["ok", "ok", "error", "ok"]  # bad=2 again: point 2 tried and failed again


def test_a_worker_killed_mid_run_is_replaced_and_its_point_retried(tmp_path):
    out, marker = tmp_path / "r.jsonl", tmp_path / "killed"
    recs = run_points([pt("die_once", x=x, marker=str(marker)) for x in range(4)], out, workers=2, progress=False)
    assert marker.exists()  # a worker was SIGKILLed
    assert [r["status"] for r in recs] == ["ok"] * 4 and [r["result"]["y"] for r in recs] == [0, 1, 2, 3]


def test_a_point_that_kills_its_worker_twice_is_an_error(tmp_path):
    out = tmp_path / "r.jsonl"
    recs = run_points([pt("always_die", x=x) for x in range(3)], out, workers=2, progress=False)
    assert [r["status"] for r in recs] == ["ok", "error", "ok"]
    assert "died twice" in recs[1]["error"] and "-9" in recs[1]["error"]


def _alive(pid: int, wait_s: float = 5.0) -> bool:
    """Whether `pid` still runs after up to `wait_s` seconds (a zombie counts as gone)."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return True


def _driver(tmp_path: Path, seconds: list[float], workers: int, thread: bool = False) -> tuple[list[str], dict, Path, Path]:
    """A script file that runs `slow` points (one per entry of `seconds`) through run_points, and
    prints "done" with their results; with `thread`, it first starts a thread of its own (so that
    workers come from a forkserver, not a fork). Returns (command, environment, results, log)."""
    out, log = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""
        import threading
        from qklab.runner import run_points

        if __name__ == "__main__":
            if {thread}:
                threading.Thread(target=threading.Event().wait, daemon=True).start()
            pts = [{{"fn": "{HERE}:slow", "args": {{"x": x, "log": {str(log)!r}, "seconds": s}}}}
                   for x, s in enumerate({seconds!r})]
            recs = run_points(pts, {str(out)!r}, workers={workers}, progress=False)
            print("done", [r["result"]["y"] for r in recs])
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    return [sys.executable, str(script)], env, out, log


def _starts(log: Path) -> list[str]:
    return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


def sigint_as_at_a_terminal() -> None:
    """`preexec_fn` of a driver that a test will Ctrl-C: SIGINT at its default. Run in a background
    job, this test inherits an ignored SIGINT from the shell, and so would the driver."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the driver did not get there in time"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, raised", [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "SweepTerminated")])
def test_ctrl_c_or_sigterm_keeps_finished_points_and_rerun_completes(tmp_path, sig, raised):
    """SIGINT (as Ctrl-C sends) or SIGTERM (as `kill` and job schedulers send) to the parent of a
    running sweep; then the same command again."""
    cmd, env, out, log = _driver(tmp_path, [0.5, 0.5, 0.5, 2.0], workers=1)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_at_a_terminal)
    _wait_for(proc, lambda: "3" in _starts(log))
    proc.send_signal(sig)  # point 3 is running (it takes 2 s)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and raised in err, err
    recs = read_records(out)
    assert sorted(r["result"]["y"] for r in recs.values()) == [0, 1, 2]
    worker = int(log.read_text().split()[-1])
    assert not _alive(worker)  # the interrupted worker was stopped, not orphaned
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "done [0, 1, 2, 3]" in rerun.stdout
    assert _starts(log) == ["0", "1", "2", "3", "3"]  # only the interrupted point ran again


@pytest.mark.parametrize("thread", [False, True], ids=["fork", "forkserver"])
def test_workers_die_with_a_killed_driver(tmp_path, thread):
    """SIGKILL to the driver (no clean-up can run): its workers, forked from it or from a forkserver,
    do not go on training for nobody."""
    cmd, env, out, log = _driver(tmp_path, [60.0, 60.0], workers=2, thread=thread)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, lambda: len(_starts(log)) == 2)
    workers = [int(line.split()[2]) for line in log.read_text().splitlines()]
    proc.kill()
    proc.communicate(timeout=30)
    assert not any(_alive(w) for w in workers)


def test_a_script_without_the_main_guard(tmp_path):
    """Workers from a forkserver (or spawn) import the main script again: unguarded, every one of
    them fails to start. That is one clear error, at once, with no record written; forked workers
    import nothing again, so without the thread the same script just runs."""
    cmd, env, out, log = _driver(tmp_path, [0.1, 0.1, 0.1], workers=2, thread=True)
    script = Path(cmd[1])
    unguarded = script.read_text().replace('if __name__ == "__main__":', "if True:")
    script.write_text(unguarded)
    t0 = time.time()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "worker processes could not start" in run.stderr, run.stderr
    assert 'if __name__ == "__main__":' in run.stderr.split("could not start")[-1]
    assert time.time() - t0 < 120 and read_records(out) == {} and not log.exists()
    script.write_text(unguarded.replace("if True:\n        threading", "if False:\n        threading"))
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "done [0, 1, 2]" in run.stdout, run.stderr


# --- the ray backend's driver, against a stand-in for Ray (the real one: tests/test_ray.py) --------

class FakeRay:
    """Just enough of Ray's API for qklab.runner's driver: tasks run when `get` asks for them, and
    `wait` hands them back last-submitted first (so records arrive out of order)."""

    def __init__(self, gpus: float = 0.0, lost: set | None = None) -> None:
        self.initialised, self.gpus, self.lost, self.tasks, self.options, self.shut = False, gpus, lost or set(), {}, None, False

    def is_initialized(self):
        return self.initialised

    def init(self, **kwargs):
        self.initialised = True

    def shutdown(self):
        self.initialised, self.shut = False, True

    def cluster_resources(self):
        return {"CPU": 2.0, **({"GPU": self.gpus} if self.gpus else {})}

    def nodes(self):
        return [{"NodeID": "n1", "Alive": True, "NodeManagerAddress": "127.0.0.1"}]

    def remote(self, **options):
        self.options = options
        fake = self

        def wrap(fn):
            class Task:
                def options(self, **_):
                    return self

                def remote(self, *args):
                    ref = object()
                    fake.tasks[ref] = (fn, args)
                    return ref
            return Task()
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[-1:], refs[:-1]

    def get(self, ref):
        fn, args = self.tasks[ref]
        if len(args) == 2 and args[0]["args"].get("x") in self.lost:
            raise RuntimeError("WorkerCrashedError: the worker died (twice)")
        return fn(*args)

    def cancel(self, ref, force=False):
        pass


@pytest.mark.parametrize("gpus", [0.0, 4.0])
def test_ray_driver_writes_records_and_records_lost_tasks(tmp_path, monkeypatch, gpus):
    fake = FakeRay(gpus=gpus, lost={2})
    monkeypatch.setitem(sys.modules, "ray", fake)
    strategies = types.ModuleType("ray.util.scheduling_strategies")
    strategies.NodeAffinitySchedulingStrategy = lambda node_id, soft: node_id
    monkeypatch.setitem(sys.modules, "ray.util", types.ModuleType("ray.util"))
    monkeypatch.setitem(sys.modules, "ray.util.scheduling_strategies", strategies)
    out, log = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    points = [pt("square", x=x, log=str(log)) for x in range(4)]
    recs = run_points(points, out, backend="ray", progress=False)
    assert fake.options == {"num_cpus": 1, "num_gpus": 1 if gpus else 0, "max_retries": 1}
    assert fake.shut  # it started Ray, so it stops it
    assert [r["status"] for r in recs] == ["ok", "ok", "error", "ok"]
    assert "Ray could not finish this point" in recs[2]["error"] and "WorkerCrashedError" in recs[2]["error"]
    assert [r["result"]["y"] for r in recs if r["result"]] == [0, 1, 9]
    assert [json.loads(x)["args"]["x"] for x in out.read_text().splitlines()] == [3, 2, 1, 0]  # as they finished
    fake.lost = set()
    recs = run_points(points, out, backend="ray", progress=False)  # only the lost point runs again
    assert [r["status"] for r in recs] == ["ok"] * 4 and sorted(log.read_text().split()) == ["0", "1", "2", "3"]
