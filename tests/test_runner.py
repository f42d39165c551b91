"""qklab.runner: keys, validation before any work, streaming, resume, errors, dead workers, Ctrl-C,
and the same numbers whatever the backend or worker count.

The point functions below run in worker processes, which import this module by its name
(`spawn` passes the parent's sys.path on); they talk to the test through files in `tmp_path`.
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
from pathlib import Path

import pytest

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


def test_workers_use_one_torch_thread(tmp_path):
    rec, = run_points([pt("torch_threads")], tmp_path / "r.jsonl", workers=1, progress=False)
    assert rec["result"] == {"threads": 1, "omp": "1"}


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
                          "versions", "finished_at"}
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


def test_ctrl_c_keeps_finished_points_and_rerun_completes(tmp_path):
    """SIGINT to the parent of a running sweep (as Ctrl-C does); then the same command again."""
    out, log = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    script = textwrap.dedent(f"""
        from qklab.runner import run_points
        pts = [{{"fn": "{HERE}:slow", "args": {{"x": x, "log": {str(log)!r}, "seconds": 0.5 + 1.5 * (x == 3)}}}}
               for x in range(4)]
        recs = run_points(pts, {str(out)!r}, workers=1, progress=False)
        print("done", [r["result"]["y"] for r in recs])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while "start 3" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # point 3 is running (it takes 2 s)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    recs = read_records(out)
    assert sorted(r["result"]["y"] for r in recs.values()) == [0, 1, 2]
    worker = int(log.read_text().split()[-1])
    assert not _alive(worker)  # the interrupted worker was stopped, not orphaned
    rerun = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "done [0, 1, 2, 3]" in rerun.stdout
    starts = [line.split()[1] for line in log.read_text().splitlines()]
    assert starts == ["0", "1", "2", "3", "3"]  # only the interrupted point ran again


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

    def remote(self, **options):
        self.options = options
        fake = self

        def wrap(fn):
            class Task:
                def remote(self, point, key):
                    ref = object()
                    fake.tasks[ref] = (fn, point, key)
                    return ref
            return Task()
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[-1:], refs[:-1]

    def get(self, ref):
        fn, point, key = self.tasks[ref]
        if point["args"].get("x") in self.lost:
            raise RuntimeError("WorkerCrashedError: the worker died (twice)")
        return fn(point, key)

    def cancel(self, ref, force=False):
        pass


@pytest.mark.parametrize("gpus", [0.0, 4.0])
def test_ray_driver_writes_records_and_records_lost_tasks(tmp_path, monkeypatch, gpus):
    fake = FakeRay(gpus=gpus, lost={2})
    monkeypatch.setitem(sys.modules, "ray", fake)
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
