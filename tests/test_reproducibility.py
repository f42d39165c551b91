"""qklab.reproducibility: the check of chapter 10's live re-run, and the tolerance it uses.

The last tests re-run the chapter's committed point for real, in fresh processes under PyTorch's
AVX2 and DEFAULT kernels (a few seconds each): the check must pass there, and must fail for a run
with another learning rate or another seed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from qklab.device import environment, machine
from qklab.reproduce import locater_points
from qklab.reproducibility import (MAX_TOLERANCE, METRICS, SAFETY, compare, measure_kernel_spread, same_machine,
                                   seed_spread, tolerance_from)
from qklab.runner import point_key, read_records

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "results" / "locater-book.jsonl"
TOLERANCE = ROOT / "results" / "rerun-tolerance.json"


def values(x: float) -> dict:
    return {k: x for k in METRICS}


SPREAD = values(0.1)


def test_machine_stamp_names_what_decides_the_last_bits():
    m = machine()
    assert set(m) >= {"cpu_model", "cpu_flags", "cpu_capability", "threads", "mkl", "onednn"}
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment("cpu")["machine"]["threads"] == torch.get_num_threads()


def test_same_machine_needs_every_stamp_to_agree():
    env = environment("cpu")
    assert same_machine(env, copy.deepcopy(env))
    for key in ("cpu_model", "cpu_flags", "cpu_capability", "threads", "mkl", "onednn"):
        other = copy.deepcopy(env)
        other["machine"][key] = "something else"
        assert not same_machine(env, other), key
    newer = copy.deepcopy(env)
    newer["torch"] = "9.9.9"
    assert not same_machine(env, newer)
    old_record = {k: v for k, v in env.items() if k != "machine"}  # written before the stamp existed
    assert not same_machine(old_record, env)
    gpu = {**copy.deepcopy(env), "device": "cuda"}
    assert not same_machine(gpu, gpu)


def test_bitwise_mode_rejects_one_ulp():
    env = environment("cpu")
    a = values(2.0)
    b = {**a, "entropy": float(torch.nextafter(torch.tensor(2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)))}
    assert compare(a, a, SPREAD, 0.1, env, env).passed
    check = compare(a, b, SPREAD, 0.1, env, env)
    assert check.mode == "bitwise" and not check.passed and "entropy" in check.message


def test_tolerance_mode_counts_in_seed_sd():
    a = values(2.0)
    inside = compare(a, {**a, "val_ppl": 2.0 + 0.099 * 0.1}, SPREAD, 0.1)
    outside = compare(a, {**a, "val_ppl": 2.0 - 0.101 * 0.1}, SPREAD, 0.1)
    assert inside.mode == "tolerance" and inside.passed
    assert not outside.passed and outside.worst == pytest.approx(0.101)
    assert "val_ppl" in outside.message and "does NOT reproduce" in outside.message


@pytest.mark.parametrize("bad, match", [
    (dict(now={**values(1.0), "entropy": float("nan")}), "re-run result has no finite 'entropy'"),
    (dict(now={k: 1.0 for k in METRICS if k != "qk_kappa"}), "no finite 'qk_kappa'"),
    (dict(spread={**SPREAD, "val_loss": 0.0}), "seed spread of 'val_loss' must be positive"),
    (dict(tolerance=MAX_TOLERANCE * 2), "tolerance must be in"),
    (dict(tolerance=0.0), "tolerance must be in"),
])
def test_compare_rejects_a_check_that_cannot_work(bad, match):
    args = dict(recorded=values(1.0), now=values(1.0), spread=SPREAD, tolerance=0.1) | bad
    with pytest.raises(ValueError, match=match):
        compare(**args)


def test_tolerance_from_takes_the_largest_move_and_refuses_a_useless_one():
    tags = {"seed": 0}
    spreads = {json.dumps(tags): values(1.0)}
    runs = [{"tags": tags, **values(1.0)}, {"tags": tags, **{**values(1.0), "entropy": 1.02}}]
    got = tolerance_from(runs, spreads)
    assert got["largest_move_sd"] == pytest.approx(0.02) and got["where"]["metric"] == "entropy"
    assert got["tolerance_sd"] == pytest.approx(SAFETY * 0.02)
    runs[1]["entropy"] = 1.5
    with pytest.raises(ValueError, match="could not tell seeds apart"):
        tolerance_from(runs, spreads)


def test_seed_spread_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_spread([values(1.0)])


# --- the chapter's point, for real --------------------------------------------------------------

@pytest.fixture(scope="module")
def chapter_point():
    tolerance = json.loads(TOLERANCE.read_text())
    points, _ = locater_points("book")
    found = read_records(SWEEP)
    chosen = next(p for p in points if p["tags"] == {**p["tags"], "regime": "normal", "arm": "LocAteR variance",
                                                     "rho": 1.0, "seed": 0})
    spread = seed_spread([found[point_key(p)]["result"] for p in points if {**p["tags"], "seed": 0} == chosen["tags"]])
    seed1 = next(p for p in points if p["tags"] == {**chosen["tags"], "seed": 1})
    return chosen, found[point_key(chosen)]["result"], found[point_key(seed1)]["result"], spread, tolerance


def test_committed_tolerance_follows_from_its_measurement(chapter_point):
    *_, tolerance = chapter_point
    again = tolerance_from(tolerance["runs"], tolerance["seed_spread"])
    assert again["tolerance_sd"] == pytest.approx(tolerance["tolerance_sd"])
    assert 0 < tolerance["tolerance_sd"] <= MAX_TOLERANCE
    assert len({run["capability"] for run in tolerance["runs"]}) >= 2  # at least two kernel sets were compared


def test_another_seed_fails_the_check(chapter_point):
    _, record, record_seed1, spread, tolerance = chapter_point
    assert not compare(record, record_seed1, spread, tolerance["tolerance_sd"]).passed


@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_the_chapter_check_passes_on_other_cpu_kernels(chapter_point, capability):
    chosen, record, _, spread, tolerance = chapter_point
    [run] = measure_kernel_spread([chosen], capabilities=(capability,), workers=1)
    if run["capability"] != capability.upper():
        pytest.skip(f"this CPU has no {capability} kernels")
    check = compare(record, run, spread, tolerance["tolerance_sd"], record["env"], run["env"])
    assert check.mode == "tolerance" and check.passed, check.message


def test_another_learning_rate_fails_the_check(chapter_point):
    chosen, record, _, spread, tolerance = chapter_point
    other = copy.deepcopy(chosen)
    other["args"]["train"]["lr"] *= 1.5
    [run] = measure_kernel_spread([other], capabilities=("avx2",), workers=1)
    check = compare(record, run, spread, tolerance["tolerance_sd"], record["env"], run["env"])
    assert not check.passed, check.message
