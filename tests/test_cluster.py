"""qklab.cluster without a cluster: the checks that run before Ray is asked for anything."""

from __future__ import annotations

import json
import os
import time

import pytest

from qklab import cluster
from qklab.reproduce import locater_points
from qklab.runner import check_devices


def test_a_wrong_address_fails_fast_and_names_it():
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"no Ray cluster answers at RAY_ADDRESS='127\.0\.0\.1:1'"):
        cluster.check_reachable("127.0.0.1:1", timeout=2)
    with pytest.raises(ConnectionError, match="not-a-port"):
        cluster.check_reachable("127.0.0.1:not-a-port")
    assert time.perf_counter() - t0 < 10
    cluster.check_reachable("auto")  # left to Ray
    cluster.check_reachable(None)


def test_a_local_token_is_used_unless_the_user_chose(tmp_path, monkeypatch):
    token = tmp_path / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert cluster.use_local_token() is None and "RAY_AUTH_MODE" not in os.environ  # no token: nothing changes
    token.write_text("x" * 64)
    assert cluster.use_local_token() == str(token) and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert cluster.use_local_token() is None and os.environ["RAY_AUTH_MODE"] == "disabled"


def test_fingerprints_name_what_differs():
    points, _ = locater_points("tiny", device="cpu")
    here = cluster.node_fingerprint(points)
    assert set(here) == {"python", "torch", "qklab", "qklab_source", "data"}
    assert list(here["data"]) == [json.dumps({"kind": "pydoc"})] and len(next(iter(here["data"].values()))) == 16
    assert cluster.fingerprint_difference(here, json.loads(json.dumps(here))) == []
    there = {**here, "python": "3.10.0", "data": {k: "0" * 16 for k in here["data"]}}
    lines = cluster.fingerprint_difference(here, there)
    assert lines[0].startswith("python:") and '"kind": "pydoc"' in lines[1] and len(lines) == 2


def test_one_results_file_never_mixes_devices():
    point = {"fn": "f:g", "args": {"train": {"device": "auto"}}}
    on_gpu = [{"status": "ok", "device": "cuda:0"}]
    with pytest.raises(ValueError, match="ran on cuda, the remaining 1 would run on cpu"):
        check_devices(on_gpu, [point], lambda requested: "cpu")
    check_devices(on_gpu, [point], lambda requested: "cuda")
    check_devices([{"status": "error", "device": None}], [point], lambda requested: "cpu")
    check_devices([], [point], lambda requested: "cpu")
