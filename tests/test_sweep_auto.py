"""qklab.sweep mode="auto": never stacks on a CPU (measured: no gain there), stacks on a GPU."""

import torch

import qklab.sweep as qs
from qklab.data import RandomWalkTokens
from qklab.model import ModelConfig
from qklab.train import TrainConfig

MODEL = ModelConfig(d_model=8, seq_len=8)


def _cfgs(device: str) -> list[TrainConfig]:
    base = TrainConfig(steps=2, batch_size=2, log_every=2, eval_batches=1, device=device, progress=False)
    return qs.grid(base, seed=[0, 1])


def test_auto_does_not_stack_on_cpu_even_with_two_threads(monkeypatch):
    calls = []
    monkeypatch.setattr(qs, "_train_stacked", lambda *a, **k: calls.append(a) or [])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        hists = qs.sweep(MODEL, _cfgs("cpu"), RandomWalkTokens(6), mode="auto", progress=False)
    finally:
        torch.set_num_threads(before)
    assert calls == [] and [h.status for h in hists] == ["completed", "completed"]


def test_auto_stacks_on_a_gpu(monkeypatch):
    calls = []

    def fake_stacked(mcfg, cfgs, data, progress):
        calls.append(len(cfgs))
        return [None] * len(cfgs)

    monkeypatch.setattr(qs, "_train_stacked", fake_stacked)
    monkeypatch.setattr(qs, "pick_device", lambda d: torch.device("cuda"))  # as on a machine with a GPU
    qs.sweep(MODEL, _cfgs("cuda"), RandomWalkTokens(6), mode="auto", progress=False)
    assert calls == [2]
