"""qklab.reproduce: the LocAteR grid, one point re-run against its record, the table's statistics."""

import math
from pathlib import Path

import pytest
import torch

from qklab import reproduce as rp
from qklab.data import char_corpus
from qklab.model import ModelConfig, Transformer
from qklab.regularizers import locater_penalty
from qklab.runner import point_key, run_points


def test_grid_is_paired_and_unique():
    points, note = rp.locater_points("tiny")
    assert "pydoc" in note and "offline" in note
    assert len({point_key(p) for p in points}) == len(points)
    by_seed = {}
    for p in points:
        by_seed.setdefault(p["tags"]["seed"], []).append(p)
    for seed, pts in by_seed.items():
        # every arm of a seed trains with that seed: same initialisation and batch order
        assert {p["args"]["train"]["seed"] for p in pts} == {seed}
        arms = {p["tags"]["arm"] for p in pts}
        assert {"plain", "LocAteR variance", "weight decay", "sigma-Reparam", "mimetic plain",
                "mimetic + LocAteR scale"} <= arms
        plain = next(p for p in pts if p["tags"]["arm"] == "plain")
        for p in pts:
            model = p["args"]["model"]
            if p["tags"]["arm"].startswith("mimetic"):
                assert model["init"] == "mimetic"
            elif p["tags"]["arm"] != "sigma-Reparam":
                assert model == plain["args"]["model"]
        scale = [p for p in pts if p["tags"]["arm"] == "mimetic + LocAteR scale"]
        assert all(p["args"]["train"]["locater_form"] == "scale" for p in scale)


def test_grid_overrides():
    points, _ = rp.locater_points("tiny", strengths=[0.5], seeds=[7], steps=2)
    var = [p for p in points if p["tags"]["arm"] == "LocAteR variance"]
    assert [p["args"]["train"]["reg_strength"] for p in var] == [0.5]
    assert {p["args"]["train"]["seed"] for p in points} == {7}
    assert {p["args"]["train"]["steps"] for p in points} == {2}


@pytest.mark.parametrize("kw, err, match", [
    (dict(scale="huge"), ValueError, "scale must be one of"),
    (dict(scale="tiny", strengths=[]), ValueError, "strengths"),
    (dict(scale="tiny", strengths=[0.0, 1.0]), ValueError, "positive"),
    (dict(scale="tiny", seeds=[1, 1]), ValueError, "distinct"),
    (dict(scale="tiny", steps=0), ValueError, "steps"),
])
def test_bad_input(kw, err, match):
    with pytest.raises(err, match=match):
        rp.locater_points(**kw)


def test_wikitext_dir_checked_before_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rp.locater_points("tiny", wikitext_dir=str(tmp_path / "nope"))
    (tmp_path / "wiki.train.raw").write_text("a b c\n")
    with pytest.raises(FileNotFoundError, match="wiki.valid.raw"):
        rp.locater_points("tiny", wikitext_dir=str(tmp_path))
    (tmp_path / "wiki.valid.raw").write_text("a b\n")
    points, note = rp.locater_points("tiny", wikitext_dir=str(tmp_path))
    assert "WikiText-2" in note and points[0]["args"]["data"]["kind"] == "wikitext2"


def test_one_point_rerun_matches_its_record(tmp_path):
    """What chapter 10 does with the committed sweep: run a point through the runner, re-run it
    directly, compare. Same code, seed and one thread: the numbers are identical."""
    points, _ = rp.locater_points("tiny", seeds=[0], steps=4)
    pair = [p for p in points if p["tags"]["arm"] in ("plain", "LocAteR variance")][:2]
    out = tmp_path / "r.jsonl"
    records = run_points(pair, out, backend="inline", progress=False)
    assert [r["status"] for r in records] == ["ok", "ok"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runner's workers
    try:
        again = rp.locater_point(**pair[1]["args"])
    finally:
        torch.set_num_threads(threads)
    rec = records[1]["result"]
    for k in ("val_loss", "entropy", "qk_kappa", "recent_mass"):
        assert again[k] == pytest.approx(rec[k], rel=1e-6, abs=1e-9), k
    assert again["curve"]["val_loss"] == pytest.approx(rec["curve"]["val_loss"], rel=1e-6)
    # and the regulariser did something: the LocAteR arm differs from plain
    assert records[0]["result"]["qk_variance"] != rec["qk_variance"]


def test_full_validation_against_direct_computation():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    data = char_corpus(text, val_fraction=0.5)
    cfg = ModelConfig.paper_locater(vocab_size=data.vocab_size, d_model=16, d_mlp=16, seq_len=8, dropout=0.0)
    model = Transformer(cfg, seed=0)
    res = rp.full_validation(model, data, batch_size=5)
    T, n = 8, (data.val.numel() - 1) // 8
    x = torch.stack([data.val[i * T : i * T + T] for i in range(n)])
    y = torch.stack([data.val[i * T + 1 : i * T + T + 1] for i in range(n)])
    with torch.no_grad():
        loss = model.loss(x, y).item()
    assert res["val_tokens"] == n * T
    assert res["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert "window_loss" not in res
    windows = rp.full_validation(model, data, batch_size=5, per_window=True)["window_loss"]
    with torch.no_grad():
        direct = [model.loss(x[i : i + 1], y[i : i + 1]).item() for i in range(n)]
    assert windows == pytest.approx(direct, abs=2e-6)  # 6 decimals kept
    assert sum(windows) / n == pytest.approx(res["val_loss"], rel=1e-5)
    assert sum(res["profile"]) == pytest.approx(1.0, abs=1e-6)  # float32 softmax rows
    # a head with W_QK = 0 attends uniformly: the last query puts 1/T on each key
    with torch.no_grad():
        model.blocks[0].attn.W_qkv[: 2 * 16].zero_()
    flat = rp.full_validation(model, data)
    assert flat["profile"] == pytest.approx([1 / T] * T, abs=1e-7)
    assert flat["recent_mass"] == pytest.approx(1.0)  # window 8 = T: everything
    mean_entropy = sum(math.log(i + 1) for i in range(T)) / T
    assert flat["entropy"] == pytest.approx(mean_entropy, rel=1e-6)


def test_t_interval_against_tabulated_quantiles():
    # Student-t 97.5% quantiles from the standard tables
    for df, q in ((1, 12.706), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert rp.t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)
    m, lo, hi = rp.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (m, lo, hi) == pytest.approx((3.0, 3.0 - half, 3.0 + half), abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        rp.t_interval([1.0])


def _rec(regime, arm, rho, seed, ppl, ent, status="ok"):
    res = {"status": "completed", "val_ppl": ppl, "entropy": ent, "qk_kappa": 0.1, "qk_scale": 0.8, "recent_mass": 0.5}
    return {"status": status, "tags": {"regime": regime, "arm": arm, "rho": rho, "seed": seed}, "result": res}


def test_table_pairs_by_seed():
    recs = [_rec("normal", "plain", 0.0, s, 10.0 + s, 1.0) for s in range(3)]
    recs += [_rec("normal", "LocAteR variance", 1.0, s, 10.0 + s - 0.5, 1.2 + 0.1 * s) for s in range(3)]
    recs += [_rec("normal", "LocAteR variance", 10.0, 0, 9.0, 1.0, status="error")]
    rows = {(r["arm"], r["rho"]): r for r in rp.summarise(recs)}
    r = rows[("LocAteR variance", 1.0)]
    assert r["n_paired"] == 3
    assert (r["d_ppl"], r["d_ppl_lo"], r["d_ppl_hi"]) == pytest.approx((-0.5, -0.5, -0.5))  # the same gain in every seed
    assert r["d_entropy"] == pytest.approx(0.3)
    assert rows[("LocAteR variance", 10.0)]["failed"] == 1
    text = rp.locater_table(recs)
    assert "LocAteR variance" in text and "(1 failed)" in text


def test_penalty_gradient_ratio():
    text = "abcdefghij" * 200
    data = char_corpus(text)
    cfg = ModelConfig.paper_locater(vocab_size=data.vocab_size, d_model=16, d_mlp=16, seq_len=8)
    res = rp.penalty_gradient_ratio(cfg, data, batches=2)
    assert res["rho_star"] == pytest.approx(res["grad_loss"] / res["grad_penalty"])
    model = Transformer(cfg.__class__(**{**cfg.to_dict(), "dropout": 0.0, "attention_dropout": 0.0}), seed=0)
    assert res["penalty"] == pytest.approx(float(locater_penalty(model).detach()), rel=1e-6)
    # the penalty's gradient w.r.t. (W_Q, W_K), computed here by hand: for the variance form
    # P = ||W||_F^2/d - (tr W / d)^2 with W = W_Q W_K^T, dP/dW = 2 W / d - 2 (tr W) I / d^2
    Wq, Wk = model.W_Q[0, 0].detach(), model.W_K[0, 0].detach()
    W, d = Wq @ Wk.T, 16
    G = 2 * W / d - 2 * torch.trace(W) * torch.eye(d) / d**2
    by_hand = torch.sqrt((G @ Wk).pow(2).sum() + (G.T @ Wq).pow(2).sum())
    assert res["grad_penalty"] == pytest.approx(float(by_hand), rel=1e-4)


def test_verdict_rule():
    recs = [_rec("normal", "plain", 0.0, s, 10.0 + s, 1.0) for s in range(5)]
    # strength 1: better in ppl and entropy in every seed (small noise); strength 10: worse ppl
    recs += [_rec("normal", "LocAteR variance", 1.0, s, 10.0 + s - 0.5 + 0.01 * s, 1.3 + 0.01 * s) for s in range(5)]
    recs += [_rec("normal", "LocAteR variance", 10.0, s, 10.0 + s + 2.0 + 0.01 * s, 1.5) for s in range(5)]
    v = rp.verdict(recs, "normal")
    assert v["per_strength"][1.0]["class"] == "as predicted"
    assert v["per_strength"][10.0]["class"] == "against"
    assert v["verdict"] == "reproduced" and v["level"] == pytest.approx(0.975)
    only_bad = [r for r in recs if r["tags"]["rho"] != 1.0]
    assert rp.verdict(only_bad, "normal")["verdict"] == "not reproduced"
    noisy = [r for r in recs if r["tags"]["rho"] != 10.0]
    for i, r in enumerate(r for r in noisy if r["tags"]["arm"] != "plain"):
        r["result"]["val_ppl"] += 3.0 * (-1) ** i  # differences of both signs: no conclusion
    assert rp.verdict(noisy, "normal")["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="no records"):
        rp.verdict(recs, "too high")


def test_the_gpu_check_extrapolates_to_the_paper_scale_steps():
    script = (Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh").read_text()
    assert 'SCALES["paper"].steps' in script and "20,000" not in script and "20000" not in script


def test_longer_lengths_are_their_own_points_and_priced_by_their_steps():
    from qklab.reproduce import estimate_seconds, locater_points

    points, _ = locater_points("tiny", device="cpu")
    by_steps = {}
    for p in points:
        assert p["tags"]["steps"] == p["args"]["train"]["steps"]
        by_steps.setdefault(p["tags"]["steps"], []).append(p)
    assert sorted(by_steps) == [6, 9]
    assert {p["tags"]["arm"] for p in by_steps[9]} == {"plain", "LocAteR variance", "sigma-Reparam", "mimetic plain",
                                                        "mimetic + LocAteR scale"}
    only, _ = locater_points("tiny", device="cpu", steps=4)  # --steps: one length, the one asked for
    assert {p["tags"]["steps"] for p in only} == {4}
    short, long = estimate_seconds([by_steps[6][0], by_steps[9][0]], probe_steps=2)
    assert 0 < short < long
