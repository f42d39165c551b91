"""Training performance of qklab, printed as ratios measured in one run on one machine.

    python benchmarks/bench_train.py [--threads 2] [--steps 200] [--repeats 3] [--quick]

1. Throughput (tokens/s) of `qklab.train.train` with metrics logged every 50 steps against a
   plain PyTorch reference of the same architecture written below (fused QKV projection,
   `scaled_dot_product_attention`, same data sampler and AdamW); target ratio >= 1.0. The cost of
   logging is qklab with logging every 50 steps against qklab logging only at the start and end
   (target below 5%).
2. A sweep of 8 small models trained together (`qklab.sweep`, stacked) against the same 8 one
   after another; target speedup >= 2x on 2 CPU cores.
3. The spectrum statistics LocAteR needs (mean, bounded variance, trace variance, scale) by trace
   identities against `torch.linalg.eigvals` of `W_Q W_K^T`, at d_model 128 and 512.

Timings are the best of `--repeats` interleaved repetitions (the least disturbed by other load);
the script prints the load average, since a busy machine distorts thread-parallel timings.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from qklab.data import pydoc_corpus
from qklab.model import ModelConfig
from qklab.spectrum import QK
from qklab.sweep import grid, sweep
from qklab.train import TrainConfig, train


class RefBlock(nn.Module):
    """Pre-LN block: fused QKV, SDPA, GELU MLP (the architecture of qklab's default)."""

    def __init__(self, d: int, h: int, d_mlp: int) -> None:
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)  # each (B, T, d)
        q, k, v = (t.view(B, T, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d_h)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d_h)
        x = x + self.proj(z.transpose(1, 2).reshape(B, T, d))  # (B, T, d)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefLM(nn.Module):
    def __init__(self, V: int, d: int, h: int, T: int, layers: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(RefBlock(d, h, 4 * d) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos.weight[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return F.linear(self.ln(x), self.tok.weight)  # tied output layer


def reference_train(data, cfg: ModelConfig, steps: int, batch: int, lr: float) -> float:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = RefLM(data.vocab_size, cfg.d_model, cfg.n_heads, cfg.seq_len, cfg.n_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = data.batch("train", batch, cfg.seq_len, g)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return time.perf_counter() - t0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def spectrum_bench(d: int, reps: int) -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(0)
    W_Q = torch.randn(d, d, generator=g) / math.sqrt(d)
    W_K = torch.randn(d, d, generator=g) / math.sqrt(d)

    def by_traces():
        qk = QK(W_Q, W_K)
        m = qk.mean("d")
        return m, qk.variance("d", "bound"), qk.variance("d", "trace"), qk.scale("d")

    def by_eig():
        lam = torch.linalg.eigvals(W_Q @ W_K.T)  # (d,) complex
        m = lam.mean()
        return m, (lam - m).abs().pow(2).mean(), (lam * lam).mean().real - m.real**2, lam.abs().pow(2).mean().sqrt()

    by_traces(), by_eig()  # warm-up
    t_tr = min(timed(by_traces) for _ in range(reps))
    t_eig = min(timed(by_eig) for _ in range(max(3, reps // 5)))
    return t_tr, t_eig, t_eig / t_tr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep-steps", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke test)")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.repeats, a.sweep_steps = 60, 1, 20
    torch.set_num_threads(a.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.1f}")
    data = pydoc_corpus()
    mcfg = ModelConfig(vocab_size=data.vocab_size, d_model=64, n_heads=1, n_layers=1, seq_len=64)
    B, steps = 32, a.steps
    tokens = steps * B * mcfg.seq_len

    def run_qklab(log_every: int) -> float:
        cfg = TrainConfig(steps=steps, batch_size=B, log_every=log_every, progress=False, device="cpu")
        return timed(lambda: train(mcfg, cfg, data))

    run_qklab(steps), reference_train(data, mcfg, 20, B, 3e-3)  # warm-up
    t_ref, t_log, t_nolog = [], [], []
    for _ in range(a.repeats):
        t_ref.append(reference_train(data, mcfg, steps, B, 3e-3))
        t_log.append(run_qklab(50))
        t_nolog.append(run_qklab(steps))
    r, q, q0 = min(t_ref), min(t_log), min(t_nolog)
    print(f"\n[1] throughput, 1 layer, 1 head, d_model 64, seq 64, batch 32, {steps} steps (best of {a.repeats})")
    print(f"    reference (plain PyTorch)        {tokens / r:10.0f} tokens/s")
    print(f"    qklab, metrics every 50 steps    {tokens / q:10.0f} tokens/s   ratio qklab/reference = {r / q:.2f}  (target >= 1.0)")
    print(f"    qklab, metrics at start and end {tokens / q0:10.0f} tokens/s   ratio = {r / q0:.2f}")
    print(f"    cost of logging every 50 steps   {100 * (q - q0) / q0:+.1f}%  (target < 5%)")

    cfgs = grid(TrainConfig(steps=a.sweep_steps, batch_size=B, log_every=50, progress=False, device="cpu",
                            regularizer="locater"), reg_strength=[0.0, 0.01, 0.1, 1.0], seed=[0, 1])
    sweep(mcfg, cfgs[:2], data, mode="stacked", progress=False)  # warm-up
    t_st, t_seq = [], []
    for _ in range(max(1, a.repeats - 1)):
        t_st.append(timed(lambda: sweep(mcfg, cfgs, data, mode="stacked", progress=False)))
        t_seq.append(timed(lambda: sweep(mcfg, cfgs, data, mode="sequential")))
    s, sq = min(t_st), min(t_seq)
    print(f"\n[2] sweep of 8 models (4 LocAteR strengths x 2 seeds), {a.sweep_steps} steps each")
    print(f"    stacked (vmap, one process)  {s:7.1f} s")
    print(f"    sequential                    {sq:7.1f} s   speedup = {sq / s:.2f}x  (target >= 2x)")

    print("\n[3] spectrum statistics (mean, variance, trace variance, scale) of W_Q W_K^T, d_h = d")
    for d in (128, 512):
        t_tr, t_eig, sp = spectrum_bench(d, reps=50 if d == 128 else 20)
        print(f"    d = {d:3d}: trace identities {1e3 * t_tr:8.3f} ms, torch.linalg.eigvals {1e3 * t_eig:8.2f} ms,"
              f" speedup = {sp:6.1f}x")


if __name__ == "__main__":
    main()
