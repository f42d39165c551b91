"""On a CUDA GPU: pick_device, the model's forward and backward equal to the CPU's within float
tolerance, a stacked sweep on the GPU equal to its sequential runs, and a runner point on the GPU.
Marked `cuda` and skipped without CUDA (`benchmarks/gpu_check.sh` runs them on a GPU)."""

import pytest
import torch

from qklab.data import RandomWalkTokens
from qklab.device import pick_device
from qklab.model import ModelConfig, Transformer
from qklab.runner import run_points
from qklab.sweep import grid, sweep
from qklab.train import TrainConfig

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")]


@pytest.fixture(autouse=True)
def _exact_float32():
    """float32 matmuls in full precision (no TF32), so that CPU and GPU differ only by rounding order."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_pick_device_finds_the_gpu():
    assert pick_device("auto").type == "cuda"
    assert pick_device("cuda").type == "cuda"
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        pick_device("gpu0")


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_forward_and_backward_on_cuda_equal_cpu(norm):
    cfg = ModelConfig(vocab_size=11, d_model=32, n_heads=2, n_layers=2, seq_len=16, norm=norm)
    cpu = Transformer(cfg, seed=3)
    gpu = Transformer(cfg, seed=3).cuda()
    x = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(0))  # (B, T)
    y = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(1))
    lc, lg = cpu(x), gpu(x.cuda())  # (B, T, V)
    torch.testing.assert_close(lg.cpu(), lc, rtol=1e-4, atol=1e-5)
    cpu.loss(x, y).backward()
    gpu.loss(x.cuda(), y.cuda()).backward()
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        torch.testing.assert_close(pg.grad.cpu(), pc.grad, rtol=1e-3, atol=1e-6, msg=f"gradient of {name}")


def test_stacked_sweep_on_cuda_equals_its_sequential_runs():
    cfgs = grid(TrainConfig(steps=8, batch_size=4, log_every=4, eval_batches=1, device="cuda", progress=False,
                            regularizer="locater"), reg_strength=[0.0, 1.0], seed=[0, 1])
    model, data = ModelConfig(d_model=16, seq_len=16), RandomWalkTokens(8)
    stacked = sweep(model, cfgs, data, mode="stacked", progress=False)
    auto = sweep(model, cfgs[:2], data, mode="auto", progress=False)  # on a GPU, auto stacks
    seq = sweep(model, cfgs, data, mode="sequential")
    for hs, hq in zip(stacked, seq):
        assert hs.env["device"].startswith("cuda")
        for a, b in zip(hs.records, hq.records):
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    for ha, hs in zip(auto, stacked[:2]):  # a group of 2 batches differently from a group of 4: rounding only
        assert ha.records[-1]["val_loss"] == pytest.approx(hs.records[-1]["val_loss"], rel=1e-4, abs=1e-5)


def test_a_runner_point_runs_on_the_gpu(tmp_path):
    point = {"fn": "qklab.runner:train_point",
             "args": {"model": {"d_model": 16, "seq_len": 16}, "data": {"kind": "random-walk", "vocab_size": 8},
                      "train": {"steps": 4, "batch_size": 4, "log_every": 2, "eval_batches": 1, "device": "auto"}}}
    rec, = run_points([point], tmp_path / "r.jsonl", workers=1, progress=False)
    assert rec["status"] == "ok", rec["error"]
    assert rec["device"].startswith("cuda")
