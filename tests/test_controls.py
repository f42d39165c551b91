"""qklab.controls: the size control's design, the choice of strengths on validation, and the verdicts
on the test split, against hand computations on synthetic records."""

import math
import statistics

import pytest

from qklab import controls
from qklab.reproduce import t_interval


def _record(point: dict, val_ppl: float, test_ppl: float, test_entropy: float = 1.0, ok: bool = True) -> dict:
    result = {"status": "completed" if ok else "diverged", "val_ppl": val_ppl, "test_ppl": test_ppl,
              "test_entropy": test_entropy}
    return {"status": "ok", "result": result, "tags": point["tags"], "args": point["args"]}


def _select_records(best: dict[tuple[int, str, str], float], skip: set | None = None) -> list[dict]:
    """Selection records whose validation perplexity is lowest at `best[(steps, init, arm)]`."""
    out = []
    for p in controls.select_points("cpu"):
        t = p["tags"]
        init = t["init"]
        arm = t["arm"].removeprefix("mimetic + ")
        if (t["steps"], t["rho"], t["arm"]) in (skip or set()):
            continue
        target = best.get((t["steps"], init, arm))
        val = 5.0 + (0.0 if target is None else abs(math.log10(t["rho"]) - math.log10(target))) + 0.01 * t["seed"]
        out.append(_record(p, val, val + 0.1))
    return out


def test_grid_covers_every_length_with_both_forms_and_the_mimetic_start():
    pts = controls.select_points("cpu")
    tags = [p["tags"] for p in pts]
    for steps, grid in controls.GRIDS.items():
        for arm in ("LocAteR variance", "Frobenius"):
            assert {t["rho"] for t in tags if t["steps"] == steps and t["arm"] == arm} == set(grid)
        mimetic = {t["arm"] for t in tags if t["steps"] == steps and t["init"] == "mimetic"}
        assert bool(mimetic) == (steps in controls.MIMETIC_LENGTHS)
    assert {t["seed"] for t in tags} == set(controls.SELECT_SEEDS)
    # the points read the corpus with its test split, and the Frobenius arm asks for that penalty
    assert all(p["args"]["data"] == {"kind": "pydoc", "test_split": True} for p in pts)
    frob = next(p for p in pts if p["tags"]["arm"] == "Frobenius")
    assert frob["args"]["train"]["locater_form"] == "frobenius"
    assert next(p for p in pts if p["tags"]["arm"] == "mimetic plain")["args"]["model"]["init"] == "mimetic"


def test_strengths_are_chosen_on_validation_and_confirmed_on_fresh_seeds():
    best = {(300, "default", "LocAteR variance"): 0.3, (300, "default", "Frobenius"): 1.0,
            (300, "mimetic", "LocAteR variance"): 0.1, (300, "mimetic", "Frobenius"): 3.0,
            (1500, "default", "LocAteR variance"): 0.03, (1500, "default", "Frobenius"): 0.01,
            (1500, "mimetic", "LocAteR variance"): 0.003, (1500, "mimetic", "Frobenius"): 0.1,
            (3000, "default", "LocAteR variance"): 0.01, (3000, "default", "Frobenius"): 0.003}
    records = _select_records(best)
    chosen = controls.chosen_strengths(records)
    assert {k: v["rho"] for k, v in chosen.items()} == best
    assert chosen[(300, "mimetic", "Frobenius")]["at_edge"] and not chosen[(300, "default", "LocAteR variance")]["at_edge"]
    # the mean over the selection seeds, by hand, for one strength
    assert chosen[(1500, "default", "Frobenius")]["val_ppl"][0.1] == pytest.approx(
        statistics.mean(5.0 + 1.0 + 0.01 * s for s in controls.SELECT_SEEDS))

    fresh = controls.confirm_points(records, "cpu", ("fresh",))
    assert {p["tags"]["seed"] for p in fresh} == set(controls.CONFIRM_SEEDS)
    assert {p["tags"]["seed"] for p in fresh if p["tags"]["init"] == "mimetic"} == set(controls.CONFIRM_SEEDS)
    got = {(p["tags"]["steps"], p["tags"]["arm"]): p["tags"]["rho"] for p in fresh}
    assert got[(1500, "LocAteR variance")] == 0.03 and got[(1500, "mimetic + Frobenius")] == 0.1
    assert got[(300, "weight decay")] == controls.WEIGHT_DECAY and (300, "sigma-Reparam") in got
    longest = controls.confirm_points(records, "cpu", ("longest",))
    assert {p["tags"]["steps"] for p in longest} == {controls.LONGEST}
    assert {(p["tags"]["arm"], p["tags"]["rho"]) for p in longest} == {
        ("plain", 0.0), ("LocAteR variance", 0.01), ("Frobenius", 0.003), ("sigma-Reparam", 0.0)}


def test_a_strength_with_a_missing_seed_is_not_chosen_and_an_unfinished_grid_stops_confirmation():
    best = {(1500, "default", "LocAteR variance"): 0.03}
    records = [r for r in _select_records(best) if not (r["tags"]["steps"] == 1500 and r["tags"]["rho"] == 0.03
                                                       and r["tags"]["arm"] == "LocAteR variance" and r["tags"]["seed"] == 2)]
    pick = controls.chosen_strengths(records)[(1500, "default", "LocAteR variance")]
    assert pick["rho"] != 0.03 and math.isnan(pick["val_ppl"][0.03]) and not pick["complete"]
    with pytest.raises(ValueError, match="has not finished"):
        controls.confirm_points(records, "cpu", ("fresh",))


def test_verdicts_match_a_hand_computation():
    best = {(300, "default", "LocAteR variance"): 0.3, (300, "default", "Frobenius"): 1.0,
            (300, "mimetic", "LocAteR variance"): 0.1, (300, "mimetic", "Frobenius"): 0.1}
    records = [r for r in _select_records(best) if r["tags"]["steps"] in controls.CONFIRM_LENGTHS]
    fresh = controls.confirm_points(records, "cpu", ("fresh",))
    gain = {"plain": 0.0, "LocAteR variance": -0.5, "Frobenius": -0.45, "sigma-Reparam": -0.48, "weight decay": 0.1,
            "mimetic plain": 0.0, "mimetic + LocAteR variance": -1.0, "mimetic + Frobenius": -0.2}
    for p in fresh:
        t = p["tags"]
        if t["steps"] != 300:
            continue
        noise = 0.03 * ((t["seed"] * 7 + len(t["arm"])) % 5 - 2)
        records.append(_record(p, 9.0, 9.0 + gain[t["arm"]] + noise, 1.0 - gain[t["arm"]]))
    rows = controls.verdicts(records)
    families = {r["family"] for r in rows}
    assert families == {"gain", "spread", "mimetic"}
    k_gain = sum(r["family"] == "gain" for r in rows)
    assert k_gain == 3  # one length has confirm records: against plain, sigma-Reparam, weight decay
    row = next(r for r in rows if r["family"] == "gain" and r["against"] == "plain")
    by_seed = {r["tags"]["seed"]: r["result"]["test_ppl"] for r in records
               if r["tags"].get("stage") == "confirm" and r["tags"]["steps"] == 300 and r["tags"]["init"] == "default"
               and r["tags"]["arm"] == "LocAteR variance"}
    base = {r["tags"]["seed"]: r["result"]["test_ppl"] for r in records
            if r["tags"].get("stage") == "confirm" and r["tags"]["steps"] == 300 and r["tags"]["arm"] == "plain"}
    diffs = [by_seed[s] - base[s] for s in sorted(by_seed)]
    assert row["d"] == pytest.approx(diffs) and row["seeds"] == list(controls.CONFIRM_SEEDS)
    assert (row["mean"], row["lo"], row["hi"]) == pytest.approx(t_interval(diffs, 1 - 0.05 / k_gain))
    assert row["ci95"] == pytest.approx(t_interval(diffs, 0.95)[1:])
    assert row["median"] == pytest.approx(statistics.median(diffs))
    assert row["word"] == "lower" and row["claim"] == "as predicted" and row["seed_kind"] == "fresh seeds"
    spread = {r["init"]: r for r in rows if r["family"] == "spread"}
    assert spread["mimetic"]["word"] == "lower"  # -1.0 against -0.2
    assert spread["mimetic"]["seeds"] == list(controls.CONFIRM_SEEDS)
    assert spread["default"]["rho"] == 0.3 and spread["default"]["against_rho"] == 1.0
    wd = next(r for r in rows if r["family"] == "gain" and r["against"] == "weight decay")
    assert wd["word"] == "lower" and "claim" not in wd


def test_control_findings_keeps_every_row():
    from qklab.findings import control_findings

    best = {(300, "default", "LocAteR variance"): 0.3, (300, "default", "Frobenius"): 1.0,
            (300, "mimetic", "LocAteR variance"): 0.1, (300, "mimetic", "Frobenius"): 0.1,
            (1500, "default", "LocAteR variance"): 0.03, (1500, "default", "Frobenius"): 0.01,
            (1500, "mimetic", "LocAteR variance"): 0.003, (1500, "mimetic", "Frobenius"): 0.1}
    records = [r for r in _select_records(best) if r["tags"]["steps"] in controls.CONFIRM_LENGTHS]
    for i, p in enumerate(controls.confirm_points(records, "cpu", ("fresh",))):
        records.append(_record(p, 9.0, 9.0 + 0.01 * (i % 7), 1.0))
    rows = controls.verdicts(records)
    found = control_findings(records)
    assert len(found) == len(rows)  # the two mimetic-family rows of a length are both kept
    assert {(v["arm"], v["against"]) for v in found.values() if v["family"] == "mimetic"} == {
        ("mimetic + LocAteR variance", "mimetic plain"), ("mimetic + Frobenius", "mimetic plain")}
