"""Training and sweep performance of qklab on this machine's CPU, with spread, load and limits.

    python benchmarks/bench_train.py [--repeats 5] [--steps 150] [--sweep-steps 60] [--quick]

Every figure is the median of `--repeats` (at least 5) interleaved repetitions, with the
inter-quartile range and min-max; the load average is printed before and after, and a result is
marked UNRELIABLE when other processes loaded the machine by more than 0.5 per core: the
1-minute load average at the start, or the CPU time other processes took during the run (from
/proc/stat, this benchmark's own processes subtracted; the load average at the end counts them). Next to each figure stands its physical
limit: for work spread over N cores, N x the 1-thread throughput of one model.

1. Throughput (tokens/s) of one model, `qklab.train.train` (metrics at the start and the end)
   against a plain PyTorch reference of the same architecture written below, with 1 thread and
   with all cores (limit: N x its 1-thread throughput).
2. A sweep of 8 models (4 LocAteR strengths x 2 seeds) in one process: stacked (`qklab.sweep`,
   vmap) against one after another, with 1 thread and with all cores.
3. The same 8 models as a process-parallel sweep (`qklab.runner.run_points`, one worker per core,
   one thread each, start-up of the workers included) against the best single-process mode of
   [2]. Targets: 1.15x or more, and within 10% of the limit.
4. The spectrum statistics LocAteR needs by trace identities against `torch.linalg.eigvals`.

Not here: GPU figures (`benchmarks/gpu_check.sh`).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qklab.data import pydoc_corpus
from qklab.model import ModelConfig
from qklab.runner import _start_method, run_points
from qklab.spectrum import QK
from qklab.sweep import grid, sweep
from qklab.train import TrainConfig, train

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def reference_train(data, cfg: ModelConfig, steps: int, batch: int, lr: float, device: str = "cpu") -> None:
    torch.manual_seed(0)
    model = RefLM(data.vocab_size, cfg.d_model, cfg.n_heads, cfg.seq_len, cfg.n_layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = data.batch("train", batch, cfg.seq_len, g)
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()


# --- measuring ----------------------------------------------------------------------------------

def load_per_core() -> float:
    return os.getloadavg()[0] / CORES if hasattr(os, "getloadavg") else float("nan")


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process and its
    finished children). Their difference over a run is what other processes took meanwhile."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], object], threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def interleaved(cases: dict[str, tuple[Callable[[], object], int]], repeats: int) -> dict[str, list[float]]:
    """Wall times of every case, repetition by repetition (case A, B, C, A, B, C, ...), so that a
    change of load touches all cases alike."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, (fn, threads) in cases.items():
            times[name].append(timed(fn, threads))
    return times


def spread(xs: list[float]) -> tuple[float, float, float, float, float]:
    """Median, first and third quartiles, min and max."""
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[0], q[2], min(xs), max(xs)


def rate_line(label: str, work: float, ts: list[float], unit: str = "tokens/s", limit: float | None = None) -> str:
    """`work / time` as median [IQR] (min-max), with the limit and the median's share of it."""
    med, q1, q3, lo, hi = spread(ts)
    text = (f"    {label:38s} {work / med:9.0f} {unit}  IQR [{work / q3:.0f}, {work / q1:.0f}]"
            f"  min-max [{work / hi:.0f}, {work / lo:.0f}]")
    if limit is not None:
        text += f"   limit {limit:.0f} ({100 * work / med / limit:.0f}% of it)"
    return text


def ratio_line(label: str, slow: list[float], fast: list[float], target: str = "") -> str:
    """Speed-up `slow / fast`: the ratio of medians and, over the paired repetitions, its min-max."""
    pairs = [s / f for s, f in zip(slow, fast)]
    return (f"    {label:38s} {statistics.median(slow) / statistics.median(fast):5.2f}x"
            f"  (per repetition: median {statistics.median(pairs):.2f}x, min-max {min(pairs):.2f}-{max(pairs):.2f}x)"
            f"{'  target ' + target if target else ''}")


# --- the benchmark ------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150, help="steps of the throughput runs [1]")
    ap.add_argument("--sweep-steps", type=int, default=60, help="steps of each of the 8 sweep models [2, 3]")
    ap.add_argument("--sections", default="1,2,3,4", help="which figures, e.g. 2,3 ([3] needs [2])")
    ap.add_argument("--one-thread-only", action="store_true",
                    help="leave out the multi-thread modes of [2] (on a loaded machine they crawl: see the report)")
    ap.add_argument("--quick", action="store_true", help="a smoke test of the script (figures meaningless)")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # lines appear as measured, also through a pipe
    sections = {int(x) for x in a.sections.split(",") if x.strip()}
    if not sections <= {1, 2, 3, 4} or (3 in sections and 2 not in sections):
        ap.error(f"--sections must list some of 1, 2, 3, 4 ([3] needs [2]), got {a.sections!r}")
    if a.quick:
        a.repeats, a.steps, a.sweep_steps = 2, 10, 5
    elif a.repeats < 5:
        ap.error("--repeats must be at least 5 (medians and quartiles of fewer mean little)")
    load0 = load_per_core()
    busy0, mine0, wall0 = *cpu_seconds(), time.perf_counter()
    print(f"torch {torch.__version__}, {CORES} cores; load average {os.getloadavg()[0]:.2f} "
          f"({load0:.2f} per core) at the start")
    data = pydoc_corpus()
    mcfg = ModelConfig(vocab_size=data.vocab_size, d_model=64, n_heads=1, n_layers=1, seq_len=64)
    B = 32

    # [1] one model: qklab against the plain reference, 1 thread and all cores
    if 1 in sections:
        section_one(a, data, mcfg, B)
    if 2 in sections:
        section_sweeps(a, data, mcfg, B, with_processes=3 in sections)
    if 4 in sections:
        section_spectrum(a)
    report_load(load0, busy0, mine0, wall0)


def section_one(a: argparse.Namespace, data, mcfg: ModelConfig, B: int) -> None:
    steps = a.steps
    tokens = steps * B * mcfg.seq_len
    cfg1 = TrainConfig(steps=steps, batch_size=B, log_every=steps, progress=False, device="cpu")
    qk = lambda: train(mcfg, cfg1, data)  # noqa: E731
    ref = lambda: reference_train(data, mcfg, steps, B, 3e-3)  # noqa: E731
    timed(lambda: (train(mcfg, TrainConfig(steps=5, batch_size=B, progress=False, device="cpu"), data),
                   reference_train(data, mcfg, 5, B, 3e-3)), 1)  # warm-up
    t1 = interleaved({"ref1": (ref, 1), "qk1": (qk, 1), "refN": (ref, CORES), "qkN": (qk, CORES)}, a.repeats)
    one = tokens / statistics.median(t1["qk1"])
    print(f"\n[1] one model: 1 layer, 1 head, d_model 64, seq 64, batch 32, {steps} steps; "
          f"median of {a.repeats} interleaved repetitions")
    print(rate_line("reference (plain PyTorch), 1 thread", tokens, t1["ref1"]))
    print(rate_line("qklab, 1 thread", tokens, t1["qk1"]))
    print(ratio_line("ratio qklab / reference, 1 thread", t1["ref1"], t1["qk1"], ">= 1.0"))
    print(rate_line(f"reference, {CORES} threads", tokens, t1["refN"], limit=CORES * tokens / statistics.median(t1["ref1"])))
    print(rate_line(f"qklab, {CORES} threads", tokens, t1["qkN"], limit=CORES * one))
    print(ratio_line(f"ratio qklab / reference, {CORES} threads", t1["refN"], t1["qkN"], ">= 1.0"))



def section_sweeps(a: argparse.Namespace, data, mcfg: ModelConfig, B: int, with_processes: bool) -> None:
    """[2] 8 models in one process (stacked or one after another), [3] in worker processes."""
    S = a.sweep_steps
    cfgs = grid(TrainConfig(steps=S, batch_size=B, log_every=S, progress=False, device="cpu", regularizer="locater"),
                reg_strength=[0.0, 0.01, 0.1, 1.0], seed=[0, 1])
    sweep_tokens = len(cfgs) * S * B * mcfg.seq_len
    model_dict = mcfg.to_dict()
    tmp = tempfile.mkdtemp(prefix="qklab-bench-")
    run_id = iter(range(10**6))

    def processes() -> None:
        points = [{"fn": "qklab.runner:train_point",
                   "args": {"model": model_dict, "train": c.to_dict(), "data": {"kind": "pydoc"}}} for c in cfgs]
        recs = run_points(points, os.path.join(tmp, f"run{next(run_id)}.jsonl"), workers=CORES, progress=False)
        assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]

    sweep(mcfg, cfgs[:2], data, mode="stacked", progress=False)  # warm-up
    cases = {"seq1": (lambda: sweep(mcfg, cfgs, data, mode="sequential"), 1),
             "stack1": (lambda: sweep(mcfg, cfgs, data, mode="stacked", progress=False), 1),
             "seqN": (lambda: sweep(mcfg, cfgs, data, mode="sequential"), CORES),
             "stackN": (lambda: sweep(mcfg, cfgs, data, mode="stacked", progress=False), CORES)}
    if a.one_thread_only:
        del cases["seqN"], cases["stackN"]
    if with_processes:
        cases["proc"] = (processes, 1)
    t2 = interleaved(cases, a.repeats)
    one = sweep_tokens / statistics.median(t2["seq1"])  # the 1-thread throughput of one model, these runs
    limit = CORES * one  # tokens/s: every core training one model at its 1-thread rate
    print(f"\n[2] 8 models (4 LocAteR strengths x 2 seeds), {S} steps each, one process; limit on {CORES} cores "
          f"= {CORES} x {one:.0f} = {limit:.0f} tokens/s")
    names = {"seq1": "one after another, 1 thread", "stack1": "stacked (vmap), 1 thread",
             "seqN": f"one after another, {CORES} threads", "stackN": f"stacked (vmap), {CORES} threads"}
    names = {k: v for k, v in names.items() if k in t2}
    for k, label in names.items():
        print(rate_line(label, sweep_tokens, t2[k], limit=limit if k.endswith("N") else one))
    print(ratio_line("stacked / one after another, 1 thread", t2["seq1"], t2["stack1"]))
    if "stackN" in t2:
        print(ratio_line(f"stacked / one after another, {CORES} thr.", t2["seqN"], t2["stackN"]))
    else:
        print(f"    ({CORES}-thread modes left out: --one-thread-only)")
    if not with_processes:
        return
    best = min(names, key=lambda k: statistics.median(t2[k]))
    print(f"\n[3] the same 8 models in {CORES} worker processes (qklab.runner, one thread each, start-up included; "
          f"workers started by {_start_method()!r} here)")
    print(rate_line(f"{CORES} processes", sweep_tokens, t2["proc"], limit=limit))
    print(f"    {'first repetition alone':38s} {sweep_tokens / t2['proc'][0]:9.0f} tokens/s  "
          "(the first run_points call of this process)")
    print(ratio_line(f"processes / best one-process ({best})", t2[best], t2["proc"], ">= 1.15x"))
    share = sweep_tokens / statistics.median(t2["proc"]) / limit
    print(f"    share of the limit: {100 * share:.0f}%  (target >= 90%)")



def section_spectrum(a: argparse.Namespace) -> None:
    print("\n[4] spectrum statistics (mean, variance, trace variance, scale) of W_Q W_K^T, d_h = d, 1 thread")
    for d in (128, 512):
        g = torch.Generator().manual_seed(0)
        W_Q, W_K = torch.randn(d, d, generator=g) / math.sqrt(d), torch.randn(d, d, generator=g) / math.sqrt(d)

        def by_traces():
            q = QK(W_Q, W_K)
            return q.mean("d"), q.variance("d", "bound"), q.variance("d", "trace"), q.scale("d")

        def by_eig():
            lam = torch.linalg.eigvals(W_Q @ W_K.T)  # (d,) complex
            m = lam.mean()
            return m, (lam - m).abs().pow(2).mean(), (lam * lam).mean().real - m.real**2, lam.abs().pow(2).mean().sqrt()

        by_traces(), by_eig()
        reps = 20 if a.quick else 50
        t = interleaved({"tr": (lambda: [by_traces() for _ in range(reps)], 1), "eig": (lambda: by_eig(), 1)},
                        a.repeats)
        tr = [x / reps for x in t["tr"]]
        print(f"    d = {d:3d}: trace identities {1e3 * statistics.median(tr):8.3f} ms, eigvals "
              f"{1e3 * statistics.median(t['eig']):8.2f} ms; " + ratio_line("speed-up", t["eig"], tr).strip())



def report_load(load0: float, busy0: float, mine0: float, wall0: float) -> None:
    load1 = load_per_core()
    busy1, mine1, wall1 = *cpu_seconds(), time.perf_counter()
    others = ((busy1 - busy0) - (mine1 - mine0)) / (wall1 - wall0) / CORES
    print(f"\nload average {os.getloadavg()[0]:.2f} ({load1:.2f} per core) at the end (this benchmark's own "
          f"processes count in it); other processes used {others:.2f} cores per core on average during the run")
    worst = max(load0, others)
    if worst > 0.5:
        print(f"UNRELIABLE: other processes loaded the machine ({worst:.2f} per core > 0.5): they shared the cores, so "
              "the timings above, the multi-thread and multi-process ones most of all, do not show this code "
              "on an idle machine. Run again on an idle machine.")
    else:
        print("reliable: the load stayed at or below 0.5 per core")


if __name__ == "__main__":
    main()
