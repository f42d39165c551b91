"""Grid points as Ray tasks on a cluster: the `"ray"` backend of `qklab.runner.run_points`.

What is here, in the order a run meets it:

- connecting: `$RAY_ADDRESS` must answer within seconds (a wrong address is an error that names
  it, not a bar stuck at 0%); where a Ray token exists on this machine (`~/.ray/auth_token`, which
  any earlier local `ray.init()` writes and which makes `ray start --head` require tokens), the
  driver authenticates with it (`RAY_AUTH_MODE=token`) unless the user set `RAY_AUTH_MODE`;
- `node_fingerprint(points)`: what must be the same on every machine for a point's key to mean
  the same computation (Python, torch and qklab versions, a hash of qklab's source, and a
  fingerprint of each data set the points train on, as loaded there). It is computed on every
  node before the first task, and a node that differs stops the run with what differs;
- the device: points that ask for CUDA need a GPU in the cluster; each task takes one GPU when the
  cluster has GPUs (`auto` then means CUDA everywhere, so CPU and GPU results never mix in one run);
- the task loop: one task per point, retried once by Ray when its worker dies; the driver writes
  each record as its task finishes.

Not here: the points, keys and results file (`qklab.records`, `qklab.runner`), what a point computes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["node_fingerprint", "fingerprint_difference", "check_reachable", "use_local_token", "run_on_ray"]


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Raise ConnectionError naming `address` when nothing listens there (`host:port`; `auto`,
    `local`, `ray://` addresses and None are left to Ray)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConnectionError(f"no Ray cluster answers at RAY_ADDRESS={address!r} ({err}); start one with "
                              "`ray start --head`, or give the address it printed") from err


def use_local_token() -> str | None:
    """Authenticate with this machine's Ray token when one exists and `RAY_AUTH_MODE` is unset;
    returns the token file used (None: nothing changed)."""
    if os.environ.get("RAY_AUTH_MODE") or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token")).expanduser()
    if not path.is_file():
        return None
    os.environ["RAY_AUTH_MODE"] = "token"
    return str(path)


def _source_hash() -> str:
    import qklab

    root = Path(qklab.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def node_fingerprint(points: list[dict]) -> dict[str, Any]:
    """What this machine would compute the points with: versions, qklab's source hash, and for each
    distinct data spec of the points (through their function's `data_fingerprint`, where it has
    one) a fingerprint of the data as loaded here."""
    import torch

    import qklab
    from qklab.records import resolve_fn

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "qklab": qklab.__version__, "qklab_source": _source_hash(), "data": {}}
    for point in points:
        spec = json.dumps(point.get("args", {}).get("data"), sort_keys=True)
        fingerprint = getattr(resolve_fn(point["fn"]), "data_fingerprint", None)
        if spec not in out["data"] and callable(fingerprint):
            out["data"][spec] = fingerprint(**point["args"])
    return out


def fingerprint_difference(here: dict, there: dict) -> list[str]:
    """The entries in which two fingerprints (of `node_fingerprint`) differ, as readable lines."""
    lines = [f"{k}: {here.get(k)!r} here, {there.get(k)!r} there" for k in ("python", "torch", "qklab", "qklab_source")
             if here.get(k) != there.get(k)]
    for spec in sorted(set(here["data"]) | set(there["data"])):
        a, b = here["data"].get(spec), there["data"].get(spec)
        if a != b:
            lines.append(f"data {spec}: fingerprint {a} here, {b} there")
    return lines


def _check_nodes(ray: Any, points: list[dict]) -> int:
    """Run `node_fingerprint` on every alive node; raise ValueError when one differs from here.
    Returns the number of nodes checked."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = node_fingerprint(points)
    probe = ray.remote(num_cpus=0, max_retries=0)(node_fingerprint)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(points):
            n.get("NodeManagerAddress", n["NodeID"]) for n in nodes}
    for ref, where in refs.items():
        differs = fingerprint_difference(here, ray.get(ref))
        if differs:
            raise ValueError(f"Ray node {where} would not compute the same points as this machine: "
                             + "; ".join(differs) + ". Install the same checkout (and data) on every node.")
    return len(nodes)


def _device_types(points: list[dict]) -> set[str]:
    found = set()
    for point in points:
        device = (point.get("args", {}).get("train") or {}).get("device", "auto")
        found.add(str(device).split(":")[0])
    return found


def run_on_ray(points: list[dict], keys: list[str], todo: list[int], sink: Any) -> None:
    """Run `points[i]` for `i` in `todo` as Ray tasks and write each record to `sink` as it finishes."""
    address = os.environ.get("RAY_ADDRESS")
    if "ray" not in sys.modules:  # Ray reads its authentication mode when it is imported
        check_reachable(address)
        if address:
            use_local_token()
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend 'ray' needs Ray: pip install 'qklab[ray]'") from err
    from qklab.records import check_devices, execute_one_thread, make_record, read_records

    started = not ray.is_initialized()
    if started:  # the cluster of $RAY_ADDRESS or of `ray start` on this machine, else a local one
        check_reachable(address)
        ray.init(address=address, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if "cuda" in _device_types([points[i] for i in todo]) and gpus < 1:
            raise ValueError("the points ask for device 'cuda' but the Ray cluster has no GPU")
        _check_nodes(ray, [points[i] for i in todo])
        done = read_records(sink.path)
        check_devices([done[keys[i]] for i in range(len(points)) if keys[i] in done], [points[i] for i in todo],
                      lambda requested: "cpu" if requested == "cpu" or gpus < 1 else "cuda")
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus >= 1 else 0, max_retries=1)(execute_one_thread)
        pending = {task.remote(points[i], keys[i]): i for i in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except Exception as err:  # noqa: BLE001: Ray gave up on the task (worker or node lost twice)
                        rec = make_record(points[i], keys[i], "error", None, f"Ray could not finish this point: {err}",
                                          0.0, None)
                    sink.write(rec)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()
