"""The README's cluster recipe, as a user who has used Ray before meets it: `ray start --head` on a
machine whose ~/.ray/auth_token exists (any earlier local `ray.init()` writes it) turns on token
authentication, and `qklab reproduce --backend ray` with RAY_ADDRESS must still connect; a wrong
RAY_ADDRESS fails in seconds and names the address. In a loopback-only network namespace
(`loopback.py`). Its own module: `ray stop` ends every Ray process of the machine, so no other Ray
instance may be running (test_ray.py's ends with its module)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'qklab[ray]'); the ray backend is untested")

from loopback import loopback_only  # noqa: E402,F401  (a fixture)
from qklab.runner import read_records  # noqa: E402

BIN = Path(sys.executable).parent


def test_the_readme_recipe_works_after_an_earlier_local_ray(tmp_path, loopback_only):
    """`ray start --head` on a machine with ~/.ray/auth_token (written here first if missing) turns on
    token authentication; `qklab reproduce --backend ray` with RAY_ADDRESS must still connect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    if not (Path.home() / ".ray" / "auth_token").is_file():  # what an earlier local ray.init() leaves
        subprocess.run([sys.executable, "-c", "import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()"],
                       check=True, capture_output=True, env=env, timeout=180)
    assert (Path.home() / ".ray" / "auth_token").is_file()
    port = "6391"
    started = subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1",
                              "--include-dashboard=false"], capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        out = tmp_path / "r.jsonl"
        run = subprocess.run([str(BIN / "qklab"), "reproduce", "locater", "--scale", "tiny", "--seeds", "0",
                              "--strengths", "1", "--device", "cpu", "--backend", "ray", "--no-progress", "--out", str(out)],
                             capture_output=True, text=True, env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=300)
        assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-3000:]
        assert len(read_records(out)) == len(out.read_text().splitlines()) > 0
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_wrong_address_fails_within_seconds_naming_it(tmp_path, loopback_only):
    t0 = time.perf_counter()
    run = subprocess.run([str(BIN / "qklab"), "reproduce", "locater", "--scale", "tiny", "--backend", "ray",
                          "--no-progress", "--out", str(tmp_path / "r.jsonl")],
                         capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}, timeout=120)
    assert run.returncode == 2 and "no Ray cluster answers at RAY_ADDRESS='127.0.0.1:1'" in run.stderr, run.stderr
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "r.jsonl").exists()
