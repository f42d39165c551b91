"""qklab.train: history, exact resume, divergence handling, bad configs, determinism."""

import dataclasses
import json
import math

import pytest
import torch

from qklab.data import RandomWalkTokens, char_corpus
from qklab.model import ModelConfig
from qklab.train import History, TrainConfig, TrainingDiverged, train

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture(scope="module")
def corpus():
    return char_corpus(TEXT, "fox")


def tiny_model(**kw):
    return ModelConfig(**{"d_model": 16, "n_heads": 2, "n_layers": 1, "seq_len": 16, **kw})


def tiny_train(**kw):
    return TrainConfig(**{"steps": 12, "batch_size": 4, "log_every": 4, "eval_batches": 1, "progress": False,
                          "device": "cpu", "lr": 1e-2, **kw})


def test_history_fields(corpus):
    h = train(tiny_model(), tiny_train(pattern_steps=(4,)), corpus)
    assert isinstance(h, History) and h.status == "completed"
    assert h["step"] == [0, 4, 8, 12]
    assert h.records[0]["train_loss"] is None and h.records[0]["grad_W_Q"] is None
    last = h.last
    for key in ("val_loss", "val_ppl", "entropy", "qk_mean", "qk_variance", "qk_scale", "grad_W_Q", "grad_W_K"):
        assert key in last
    assert last["val_ppl"] == pytest.approx(math.exp(last["val_loss"]))
    assert len(last["qk_mean"]) == 1 and len(last["qk_mean"][0]) == 2  # [layer][head]
    assert len(last["grad_W_Q"][0]) == 2 and all(g > 0 for g in last["grad_W_Q"][0])
    assert h.patterns[4][0].shape == (2, 16, 16)
    assert h["val_loss"][-1] < h["val_loss"][0]
    assert h.model is not None and h.model.config.vocab_size == corpus.vocab_size


def test_deterministic_on_cpu(corpus):
    a = train(tiny_model(), tiny_train(), corpus)
    b = train(tiny_model(), tiny_train(), corpus)
    assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]


@pytest.mark.parametrize("extra", [{}, {"regularizer": "locater", "reg_strength": 0.1, "locater_form": "scale"}])
def test_resume_is_exact(corpus, tmp_path, extra):
    mcfg = tiny_model(sigma_reparam=True)
    full = train(mcfg, tiny_train(**extra), corpus)
    ck = tmp_path / "ck.pt"
    with pytest.raises(_Interrupt):  # a crash after step 6 (the checkpoint holds step 6)
        train(mcfg, tiny_train(checkpoint=str(ck), checkpoint_every=6, **extra), corpus,
              callback=lambda step, m, loss: _stop_at(step, 6))
    resumed = train(mcfg, tiny_train(**extra), corpus, resume=ck)
    assert resumed["step"] == full["step"]
    assert resumed["train_loss"] == full["train_loss"] and resumed["val_loss"] == full["val_loss"]
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)


class _Interrupt(Exception):
    pass


def _stop_at(step, at):
    if step == at + 1:
        raise _Interrupt


def test_resume_after_interrupt(corpus, tmp_path):
    mcfg = tiny_model()
    full = train(mcfg, tiny_train(), corpus)
    ck = tmp_path / "ck.pt"
    with pytest.raises(_Interrupt):
        train(mcfg, tiny_train(checkpoint=str(ck), checkpoint_every=4), corpus, callback=lambda s, m, l: _stop_at(s, 8))
    resumed = train(mcfg, tiny_train(), corpus, resume=ck)
    assert resumed["val_loss"] == full["val_loss"]
    assert resumed["train_loss"] == full["train_loss"]


def _inject_nan(step, model, loss):
    if step == 5:
        with torch.no_grad():
            model.blocks[0].attn.W_qkv[0, 0] = float("nan")


def test_nan_stops_with_message(corpus, tmp_path):
    out = tmp_path / "run.jsonl"
    with pytest.raises(TrainingDiverged, match="diverged at step 6.*nan.*learning rate.*sigma-Reparam.*warm-up") as err:
        train(tiny_model(), tiny_train(out=str(out)), corpus, callback=_inject_nan)
    assert err.value.step == 6 and err.value.history.status == "diverged"
    assert err.value.history["step"] == [0, 4]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["type"] == "config" and lines[-1]["status"] == "diverged"
    h = train(tiny_model(), tiny_train(on_divergence="stop"), corpus, callback=_inject_nan)
    assert h.status == "diverged" and "diverged" in h.message


def test_results_file(corpus, tmp_path):
    out = tmp_path / "sub" / "run.jsonl"
    train(tiny_model(), tiny_train(out=str(out), seed=3), corpus)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    head = lines[0]
    assert head["seed"] == 3 and head["device"] == "cpu" and "torch" in head["env"]
    assert head["model_config"]["d_model"] == 16 and head["data"]["name"] == "fox"
    assert [r["step"] for r in lines if r["type"] == "log"] == [0, 4, 8, 12]
    assert lines[-1] == {"type": "end", "status": "completed", "step": 12}


@pytest.mark.parametrize("kw,match", [(dict(lr=-1e-3), "lr"), (dict(steps=0), "steps"),
                                      (dict(regularizer="l1"), "regularizer"), (dict(locater_form="x"), "form"),
                                      (dict(locater_over="T"), "locater_over")])
def test_bad_train_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_vocab_mismatch_and_bad_data(corpus):
    with pytest.raises(ValueError, match="vocab"):
        train(tiny_model(vocab_size=3), tiny_train(), corpus)
    with pytest.raises(TypeError, match="data"):
        train(tiny_model(), tiny_train(), data=[1, 2, 3])


@pytest.mark.parametrize("reg", [("locater", "variance"), ("locater", "symmetric"), ("qk_l2", "variance")])
def test_regularizers_train_and_log_penalty(reg):
    task = RandomWalkTokens(vocab_size=8)
    h = train(tiny_model(), tiny_train(regularizer=reg[0], locater_form=reg[1], reg_strength=0.5, steps=8), task)
    assert h.last["penalty"] is not None and h.last["penalty"] >= 0


def test_stacked_sweep_matches_sequential(corpus):
    from qklab.sweep import grid, sweep

    cfgs = grid(tiny_train(steps=6, log_every=3, regularizer="locater", grad_clip=0.5), reg_strength=[0.0, 1.0],
                locater_form=["variance", "scale"])
    cfgs[3] = dataclasses.replace(cfgs[3], seed=1)
    cfgs[0] = dataclasses.replace(cfgs[0], lr=3e-3, weight_decay=0.1, warmup=3)
    mcfg = tiny_model(sigma_reparam=True)
    stacked = sweep(mcfg, cfgs, corpus, mode="stacked", progress=False)
    seq = sweep(mcfg, cfgs, corpus, mode="sequential")
    for a, b in zip(stacked, seq):
        assert a.status == b.status == "completed"
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a.last["qk_scale"][0] == pytest.approx(b.last["qk_scale"][0], rel=1e-3)
        assert a.last["penalty"] == pytest.approx(b.last["penalty"], rel=1e-3)


def test_sweep_reports_divergence_without_raising(corpus):
    from qklab.sweep import grid, sweep

    cfgs = grid(tiny_train(steps=6), lr=[1e-2, 1e3])
    hs = sweep(tiny_model(), cfgs, corpus, mode="stacked", progress=False)
    assert hs[0].status == "completed" and hs[1].status == "diverged"
    assert "learning rate" in hs[1].message
