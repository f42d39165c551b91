"""A recorded point re-run elsewhere: how far its numbers may move, and the check (chapter 10).

Chapter 10 plots a results file written by an earlier run and re-runs one of its points live, to
show that the file is what the code computes. The same code, seed, data, thread count and CPU
kernels give the same numbers to the last bit. Other kernels (another CPU, or PyTorch's
`ATEN_CPU_CAPABILITY=avx2` / `default` on this one) sum in another order, and a few hundred steps
of training amplify those last bits into differences of about 1e-3. So:

- where `same_machine(record, now)` holds, the check demands bitwise equality;
- elsewhere it allows each number to move by `tolerance` seed standard deviations, where the seed
  standard deviation is that of the same grid point over the sweep's seeds, and `tolerance` comes
  from a measurement: `measure_kernel_spread` re-runs the points of the checked arm under every
  CPU capability this machine has, and the tolerance is `SAFETY` times the largest move seen,
  which must stay small against the seed spread (`MAX_TOLERANCE`), or another seed could pass.

How far the last bits travel depends on the point: for some arms (plain training) one change of
kernels moves a number by a sizeable fraction of the seed spread, and no re-run check there could
be tighter than a comparison with another seed. The measurement records those arms too.

`python -m qklab.reproducibility` takes that measurement and writes
`results/rerun-tolerance.json`, which chapter 10 reads.

Not here: the sweep and its points (`qklab.reproduce`), version stamps (`qklab.device`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS",
    "SAFETY",
    "MAX_TOLERANCE",
    "same_machine",
    "seed_spread",
    "Comparison",
    "compare",
    "measure_kernel_spread",
    "largest_move",
    "tolerance_from",
]

METRICS = ("val_loss", "val_ppl", "entropy", "qk_kappa", "qk_mean", "recent_mass")
SAFETY = 2.0  # the tolerance is this many times the largest cross-kernel move measured
# In seed standard deviations. Two seeds differ by about sqrt(2) sd in each number, so another seed
# passes one comparison at 0.25 sd with probability about 0.14, and all of several nearly
# independent ones (loss, entropy, kappa, locality) with probability below 1e-3.
MAX_TOLERANCE = 0.25
CAPABILITIES = ("default", "avx2", "avx512")  # PyTorch's names, lowest first

# What must agree for two CPU runs to agree bitwise: the stamps of qklab.device.environment().
_SAME_VERSIONS = ("python", "torch", "numpy", "qklab")
_SAME_MACHINE = ("cpu_model", "cpu_flags", "cpu_capability", "threads", "mkl", "onednn")


def same_machine(recorded: dict, now: dict) -> bool:
    """True when two `environment()` stamps promise bitwise-equal CPU results: the same versions,
    CPU model and features, the same kernels (`cpu_capability`), threads, MKL and oneDNN. A stamp
    without a `machine` part (records written before it existed) never matches."""
    if recorded.get("device", "cpu") != "cpu" or now.get("device", "cpu") != "cpu":
        return False
    a, b = recorded.get("machine"), now.get("machine")
    if not a or not b:
        return False
    return (all(recorded.get(k) == now.get(k) for k in _SAME_VERSIONS)
            and all(a.get(k) is not None and a.get(k) == b.get(k) for k in _SAME_MACHINE))


def seed_spread(results: list[dict]) -> dict[str, float]:
    """The sample standard deviation of each of `METRICS` over the records of one grid point at
    several seeds (the `result` dicts of `qklab.reproduce.locater_point`)."""
    if len(results) < 2:
        raise ValueError(f"a seed spread needs at least 2 seeds, got {len(results)}")
    return {k: statistics.stdev(float(r[k]) for r in results) for k in METRICS}


@dataclass
class Comparison:
    """A re-run against its record: per metric, the recorded and the new value and the move in
    seed standard deviations; `mode` is "bitwise" or "tolerance"; `passed` the verdict."""

    mode: str
    tolerance: float  # in seed standard deviations (0 in bitwise mode)
    rows: list[dict] = field(default_factory=list)
    passed: bool = True

    @property
    def worst(self) -> float:
        """The largest move, in seed standard deviations."""
        return max((r["moved_sd"] for r in self.rows), default=0.0)

    @property
    def message(self) -> str:
        worst = max(self.rows, key=lambda r: r["moved_sd"])
        if self.mode == "bitwise":
            rule = "this machine matches the record's (CPU, kernels, threads, versions), so every number must be equal"
        else:
            rule = f"allowed: {self.tolerance:g} seed standard deviations on another machine or kernel set"
        return (f"{'reproduces' if self.passed else 'does NOT reproduce'}: largest move {worst['metric']} "
                f"{worst['moved_sd']:.3g} seed sd (recorded {worst['recorded']:.9g}, now {worst['now']:.9g}); {rule}")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("number", "recorded", "now", "moved (seed sd)"))
        body = "".join(f"<tr><td>{r['metric']}</td><td>{r['recorded']:.6g}</td><td>{r['now']:.6g}</td>"
                       f"<td>{r['moved_sd']:.2g}</td></tr>" for r in self.rows)
        return f"<div class='qklab-table'><table><tr>{head}</tr>{body}</table></div><p>{self.message}</p>"


def compare(recorded: dict, now: dict, spread: dict[str, float], tolerance: float,
            recorded_env: dict | None = None, now_env: dict | None = None) -> Comparison:
    """Compare a re-run's numbers `now` with its record `recorded` (both `locater_point` results).

    Bitwise when `same_machine(recorded_env, now_env)`; otherwise every metric may move by
    `tolerance` times its seed standard deviation `spread[metric]`. Raises ValueError for a
    missing metric, a non-finite value or a non-positive spread (a check that cannot fail).
    """
    if not 0 < tolerance <= MAX_TOLERANCE:
        raise ValueError(f"tolerance must be in (0, {MAX_TOLERANCE}] seed standard deviations, got {tolerance!r}")
    bitwise = recorded_env is not None and now_env is not None and same_machine(recorded_env, now_env)
    out = Comparison("bitwise" if bitwise else "tolerance", 0.0 if bitwise else tolerance)
    for k in METRICS:
        for name, values in (("recorded", recorded), ("re-run", now)):
            if k not in values or not math.isfinite(float(values[k])):
                raise ValueError(f"the {name} result has no finite {k!r}: {values.get(k)!r}")
        if not spread.get(k, 0) > 0:
            raise ValueError(f"the seed spread of {k!r} must be positive, got {spread.get(k)!r}")
        a, b = float(recorded[k]), float(now[k])
        moved = abs(b - a) / spread[k]
        out.rows.append({"metric": k, "recorded": a, "now": b, "moved_sd": moved})
        out.passed &= (a == b) if bitwise else moved <= tolerance
    return out


# --- the measurement -------------------------------------------------------------------------------

def _run_in_fresh_process(point: dict, capability: str | None) -> dict:
    """`locater_point(**point["args"])` in a new Python with one thread and, if given,
    `ATEN_CPU_CAPABILITY=capability` (PyTorch reads it once, at start-up)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    done = subprocess.run([sys.executable, "-m", "qklab.reproducibility", "_point"], input=json.dumps(point),
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"re-running a point under ATEN_CPU_CAPABILITY={capability} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _point_main() -> None:
    import torch

    from qklab.device import environment
    from qklab.reproduce import locater_point

    torch.set_num_threads(1)
    point = json.loads(sys.stdin.read())
    result = locater_point(**point["args"])
    print(json.dumps({**{k: result[k] for k in METRICS}, "env": environment("cpu")}))


def measure_kernel_spread(points: list[dict], capabilities: tuple[str, ...] = CAPABILITIES,
                          workers: int = 2) -> list[dict]:
    """Re-run every point under every capability in `capabilities` (in fresh one-thread processes,
    `workers` at a time); one row per run: the point's tags, the capability PyTorch actually used
    (a CPU without AVX-512 runs `avx512` as its best) and the numbers."""
    jobs = [(p, c) for p in points for c in capabilities]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # threads only wait on processes
        runs = list(pool.map(lambda job: _run_in_fresh_process(*job), jobs))
    return [{"tags": p["tags"], "capability": run["env"]["machine"]["cpu_capability"], **run}
            for (p, _), run in zip(jobs, runs)]


def largest_move(runs: list[dict], spreads: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The largest move of any metric between two runs of the same point (`measure_kernel_spread`
    rows), in units of that point's seed spread (`spreads[json.dumps(tags, sort_keys=True)]`), and
    where it was."""
    by_point: dict[str, list[dict]] = {}
    for run in runs:
        by_point.setdefault(json.dumps(run["tags"], sort_keys=True), []).append(run)
    largest, where = 0.0, None
    for key, group in by_point.items():
        for k in METRICS:
            values = [float(r[k]) for r in group]
            moved = (max(values) - min(values)) / spreads[key][k]
            if moved > largest:
                largest, where = moved, {"point": json.loads(key), "metric": k}
    return {"largest_move_sd": largest, "where": where}


def tolerance_from(runs: list[dict], spreads: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The tolerance (seed sd): `SAFETY` times `largest_move(runs, spreads)`. Raises ValueError when
    it exceeds `MAX_TOLERANCE` (training there amplifies the last bits too much for a re-run to be
    checked more tightly than against another seed)."""
    found = largest_move(runs, spreads)
    tolerance = SAFETY * found["largest_move_sd"]
    if not tolerance <= MAX_TOLERANCE:
        raise ValueError(f"{SAFETY:g} x the largest cross-kernel move ({found['largest_move_sd']:.3g} seed sd at "
                         f"{found['where']}) is {tolerance:.3g} seed sd, above {MAX_TOLERANCE}: "
                         "a re-run check could not tell seeds apart")
    return {**found, "safety": SAFETY, "tolerance_sd": tolerance}


def _measure_main(argv: list[str]) -> None:
    from qklab.device import environment
    from qklab.reproduce import locater_points
    from qklab.runner import point_key, read_records

    parser = argparse.ArgumentParser(prog="python -m qklab.reproducibility",
                                     description="Measure how far chapter 10's re-run point moves between CPU kernels "
                                                 "and write the tolerance its check uses.")
    parser.add_argument("--results", default="results/locater-book.jsonl", help="the committed sweep")
    parser.add_argument("--out", default="results/rerun-tolerance.json")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds of each measured arm (comma-separated)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    points, _ = locater_points("book")
    found = read_records(args.results)

    def measured(arms: list[tuple[str, str, float]]) -> tuple[list[dict], dict[str, dict[str, float]]]:
        chosen, spreads = [], {}
        for regime, arm, rho in arms:
            same = [p for p in points if (p["tags"]["regime"], p["tags"]["arm"], p["tags"]["rho"]) == (regime, arm, rho)]
            spread = seed_spread([found[point_key(p)]["result"] for p in same])
            for p in same:
                if p["tags"]["seed"] in seeds:
                    chosen.append(p)
                    spreads[json.dumps(p["tags"], sort_keys=True)] = spread
        return measure_kernel_spread(chosen), spreads

    start = time.perf_counter()
    # the tolerance: the arm of chapter 10's re-run point (normal learning rate, variance form, rho = 1)
    runs, spreads = measured([("normal", "LocAteR variance", 1.0)])
    # for the record, arms where training amplifies the last bits more: plain training at both rates
    others = {}
    for regime in ("normal", "too high"):
        other_runs, other_spreads = measured([(regime, "plain", 0.0)])
        others[f"plain, {regime} learning rate"] = {"runs": other_runs, "seed_spread": other_spreads,
                                                    **largest_move(other_runs, other_spreads)}
    out = {"what": "chapter 10's re-run tolerance: grid points re-run under each CPU capability, one thread",
           "measured_on": environment("cpu"), "wall_s": round(time.perf_counter() - start, 1),
           "seed_spread": spreads, "runs": runs, **tolerance_from(runs, spreads), "other_arms": others}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(runs)} runs in {out['wall_s']:.0f} s; largest move {out['largest_move_sd']:.3g} seed sd "
          f"({out['where']}); tolerance {out['tolerance_sd']:.3g} seed sd -> {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_point"]:
        _point_main()
    else:
        _measure_main(sys.argv[1:])
