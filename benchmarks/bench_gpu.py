"""GPU figures of qklab (NOT YET RUN ON A GPU: written without access to one; see gpu_check.sh).

    python benchmarks/bench_gpu.py [--repeats 5] [--steps 200] [--sweep-steps 100] [--models 16]

1. Throughput (tokens/s) of one model on the GPU, `qklab.train.train` against the plain PyTorch
   reference of `bench_train.py`: the book's model (d_model 64, seq 64, batch 32) and the paper's
   LocAteR model (`ModelConfig.paper_locater`, seq 512, batch 16).
2. `--models` tiny models (the book's) stacked in one pass (`qklab.sweep`, vmap) against the same
   models one after another on the GPU. Goal: 8x or more for 16 models.

Medians, IQR and min-max of `--repeats` interleaved repetitions, as in `bench_train.py`; the GPU is
synchronised by every step's `loss.item()`. float32 matmuls in full precision (no TF32).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from bench_train import interleaved, rate_line, ratio_line, reference_train
from qklab.data import pydoc_corpus
from qklab.model import ModelConfig
from qklab.sweep import grid, sweep
from qklab.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sweep-steps", type=int, default=100)
    ap.add_argument("--models", type=int, default=16)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: torch sees no CUDA GPU (install a CUDA build of torch: README, 'Using a GPU')")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0)}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    data = pydoc_corpus()

    print(f"\n[1] one model on the GPU, {a.steps} steps; median of {a.repeats} interleaved repetitions")
    for name, mcfg, B in (("book model", ModelConfig(vocab_size=data.vocab_size, d_model=64, n_heads=1, n_layers=1,
                                                          seq_len=64), 32),
                          ("paper model", ModelConfig.paper_locater(vocab_size=data.vocab_size, seq_len=512), 16)):
        tokens = a.steps * B * mcfg.seq_len
        cfg = TrainConfig(steps=a.steps, batch_size=B, log_every=a.steps, progress=False, device="cuda")
        warm = TrainConfig(steps=5, batch_size=B, log_every=5, progress=False, device="cuda")
        train(mcfg, warm, data), reference_train(data, mcfg, 5, B, 3e-3, device="cuda")
        t = interleaved({"ref": (lambda: reference_train(data, mcfg, a.steps, B, 3e-3, device="cuda"), threads),
                         "qk": (lambda: train(mcfg, cfg, data), threads)}, a.repeats)
        print(f"  {name}: d_model {mcfg.d_model}, seq {mcfg.seq_len}, batch {B}")
        print(rate_line("reference (plain PyTorch)", tokens, t["ref"]))
        print(rate_line("qklab", tokens, t["qk"]))
        print(ratio_line("ratio qklab / reference", t["ref"], t["qk"], ">= 1.0"))

    E, S = a.models, a.sweep_steps
    mcfg = ModelConfig(vocab_size=data.vocab_size, d_model=64, n_heads=1, n_layers=1, seq_len=64)
    strengths = [0.0, 0.01, 0.1, 1.0]
    seeds = list(range(max(1, E // len(strengths))))
    cfgs = grid(TrainConfig(steps=S, batch_size=32, log_every=S, progress=False, device="cuda", regularizer="locater"),
                reg_strength=strengths, seed=seeds)[:E]
    tokens = len(cfgs) * S * 32 * mcfg.seq_len
    sweep(mcfg, cfgs[:2], data, mode="stacked", progress=False)  # warm-up
    t = interleaved({"seq": (lambda: sweep(mcfg, cfgs, data, mode="sequential"), threads),
                     "stack": (lambda: sweep(mcfg, cfgs, data, mode="stacked", progress=False), threads)}, a.repeats)
    print(f"\n[2] {len(cfgs)} book models (LocAteR strengths x seeds), {S} steps each, on the GPU")
    print(rate_line("one after another", tokens, t["seq"]))
    print(rate_line("stacked (vmap)", tokens, t["stack"]))
    print(ratio_line("stacked / one after another", t["seq"], t["stack"], ">= 8x (goal)"))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
