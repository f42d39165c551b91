"""Many small runs at once: grids of (regulariser strength x seed x learning rate) (chapter 10).

What is here: `grid(base, **axes)` builds the list of `TrainConfig`s of a grid, and
`sweep(model_config, train_configs, data)` trains them all, returning one `History` per config
(in order). With `mode="stacked"` the models of a group train together in one process: their
weights are stacked along a leading "ensemble" dimension and one forward/backward pass runs all
of them (`torch.func.functional_call` under `torch.vmap`), with a hand-written AdamW that takes a
learning rate, weight decay and gradient clipping per member. Each member sees the same batches,
initialisation and updates as its sequential run (same numbers up to float rounding).
`mode="sequential"` calls `qklab.train.train` once per config.

Which is faster was measured with `benchmarks/bench_train.py` (8 runs of the book's model). On an
idle 2-core CPU stacking brought nothing: 0.97x, 0.98x and 0.81x against the same runs one after
another (an earlier 3-5x was measured while other jobs loaded the machine, which slows the
sequential runs more); it uses the explicit-softmax attention (no vmap rule for CPU SDPA) and a
Python-level AdamW. What uses a CPU's cores is one process per run with one thread each
(`qklab.runner`, `qklab sweep`). On a GPU, where one tiny model leaves the device mostly idle,
stacking is expected to pay (not yet measured: `benchmarks/gpu_check.sh` measures it). So
`mode="auto"` stacks a group of two or more configs, without checkpointing, on a GPU (or MPS)
and never on a CPU.

Members of one stacked group must share `steps`, `batch_size`, `log_every`, `eval_batches`,
`pattern_steps`, `betas`, `device` and `divergence_factor`; anything else (seed, lr, warm-up,
schedule, weight decay, gradient clipping, regulariser and its strength) may differ. Configs that
differ in the shared fields are put into separate groups. In a sweep a diverging member is
stopped and reported (`history.status == "diverged"`), never raised, so the other runs finish.

Not here: the single-run loop and its metrics (`qklab.train`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from qklab.device import environment, pick_device
from qklab.model import ModelConfig, Transformer
from qklab.train import (
    History,
    ResultsWriter,
    TrainConfig,
    divergence_message,
    evaluate,
    initial_target_mean,
    lr_at,
    penalty,
    resolve_model_config,
    train,
    _data_or_default,
)

__all__ = ["grid", "sweep"]

_SHARED = ("steps", "batch_size", "log_every", "eval_batches", "pattern_steps", "betas", "device", "divergence_factor")


def grid(base: TrainConfig | None = None, **axes: list) -> list[TrainConfig]:
    """All combinations of `axes` applied to `base`, e.g. `grid(base, reg_strength=[0, 0.1], seed=[0, 1])`
    (the last axis varies fastest)."""
    base = base if base is not None else TrainConfig()
    names = list(axes)
    for n in names:
        if n not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise ValueError(f"grid: {n!r} is not a TrainConfig field")
        if not isinstance(axes[n], (list, tuple)) or len(axes[n]) == 0:
            raise ValueError(f"grid: axis {n!r} must be a non-empty list")
    return [dataclasses.replace(base, **dict(zip(names, combo))) for combo in itertools.product(*(axes[n] for n in names))]


def sweep(
    model_config: ModelConfig,
    train_configs: list[TrainConfig],
    data: Any = None,
    mode: Literal["auto", "stacked", "sequential"] = "auto",
    progress: bool = True,
) -> list[History]:
    """Train every config of `train_configs` (with `model_config`), returning their histories in order."""
    if mode not in ("auto", "stacked", "sequential"):
        raise ValueError(f"mode must be 'auto', 'stacked' or 'sequential', got {mode!r}")
    if not train_configs:
        raise ValueError("train_configs is empty")
    data = _data_or_default(data)
    mcfg = resolve_model_config(model_config, data)
    cfgs = [dataclasses.replace(c, on_divergence="stop", progress=False) for c in train_configs]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(tuple(getattr(c, f) for f in _SHARED), []).append(i)
    out: list[History | None] = [None] * len(cfgs)
    for idx in groups.values():
        members = [cfgs[i] for i in idx]
        stack = mode == "stacked" or (mode == "auto" and len(members) > 1 and all(c.checkpoint is None for c in members)
                                      and pick_device(members[0].device).type != "cpu")
        if stack:
            hists = _train_stacked(mcfg, members, data, progress)
        else:
            hists = [train(mcfg, c, data) for c in members]
        for i, h in zip(idx, hists):
            out[i] = h
    return out  # type: ignore[return-value]


class _LossModule(nn.Module):
    """Wraps a model so that one `functional_call` computes the loss and every needed penalty."""

    def __init__(self, model: Transformer, kinds: list[TrainConfig]) -> None:
        super().__init__()
        self.model, self.kinds = model, kinds

    def forward(self, x: Tensor, y: Tensor, target_mean: Tensor) -> tuple[Tensor, Tensor]:
        """`x, y: (B, T)`, `target_mean: (n_kinds, L, H)` -> loss `()`, penalties `(n_kinds,)`."""
        logits = self.model(x)  # (B, T, V)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        pens = [penalty(self.model, k, target_mean[i]) for i, k in enumerate(self.kinds)]
        pen = torch.stack(pens) if pens else ce.new_zeros(0)  # (n_kinds,)
        return ce, pen


def _or(t: Tensor | None, default: Tensor) -> Tensor:
    return default if t is None else t


def _kind_key(c: TrainConfig) -> tuple:
    return (c.regularizer, c.locater_form, c.locater_over, c.locater_mean_weight)


def _train_stacked(mcfg: ModelConfig, cfgs: list[TrainConfig], data: Any, progress: bool) -> list[History]:
    from qklab._progress import progress_bar

    E, c0 = len(cfgs), cfgs[0]
    device = pick_device(c0.device)
    models = [Transformer(mcfg, seed=c.seed).to(device) for c in cfgs]
    template = models[0].set_attention_impl("math")  # vmap has no batching rule for CPU SDPA
    # the penalties needed, and each member's weight on each (its strength, or 0)
    kinds: list[TrainConfig] = []
    for c in cfgs:
        if c.regularizer != "none" and _kind_key(c) not in [_kind_key(k) for k in kinds]:
            kinds.append(c)
    weights = torch.tensor([[c.reg_strength if _kind_key(c) == _kind_key(k) else 0.0 for k in kinds] for c in cfgs],
                           device=device)  # (E, n_kinds)
    L, H = mcfg.n_layers, mcfg.n_heads
    zeros = torch.zeros(L, H, device=device)
    target_mean = torch.stack([torch.stack([_or(initial_target_mean(m, k), zeros) for k in kinds] or [zeros])
                               for m in models])  # (E, n_kinds or 1, L, H): the means LocAteR "scale" holds
    wrapper = _LossModule(template, kinds)
    names = [n for n, _ in template.named_parameters()]
    params = {f"model.{n}": torch.stack([dict(m.named_parameters())[n].detach() for m in models]).clone().requires_grad_()
              for n in names}  # each (E, *shape)
    buffers = {f"model.{n}": torch.stack([dict(m.named_buffers())[n] for m in models]).clone()
               for n, _ in template.named_buffers()}
    state = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}  # Adam moments
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    eval_set = data.eval_batches(c0.batch_size, mcfg.seq_len, c0.eval_batches)
    describe = data.describe() if hasattr(data, "describe") else {"name": type(data).__name__}
    env = environment(device)
    hists = [History(mcfg.to_dict(), c.to_dict(), describe, env) for c in cfgs]
    writers = [ResultsWriter(c.out) for c in cfgs]
    for c, w, h in zip(cfgs, writers, hists):
        w.write({"type": "config", "model_config": h.model_config, "train_config": h.train_config, "data": describe,
                 "seed": c.seed, "device": str(device), "env": env, "stacked": E})
    randomness = "different" if mcfg.dropout > 0 else "error"
    batched = torch.vmap(lambda p, b, x, y, t: functional_call(wrapper, (p, b), (x, y, t)), randomness=randomness)
    alive = [True] * E
    loss_sum, loss_n = [0.0] * E, [0] * E
    limit = c0.divergence_factor * math.log(max(2, mcfg.vocab_size))
    b1, b2 = c0.betas
    t0 = time.perf_counter()

    def unstack(e: int) -> Transformer:
        m = models[e]
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(params[f"model.{n}"][e])
            for n, b in m.named_buffers():
                b.copy_(buffers[f"model.{n}"][e])
        return m

    def log(step: int, grads: dict[str, Tensor] | None, pens: Tensor | None) -> None:
        for e in range(E):
            if not alive[e]:
                continue
            c, m = cfgs[e], unstack(e)
            keep = step in c.pattern_steps
            rec: dict[str, Any] = {"step": step, "tokens": step * c.batch_size * mcfg.seq_len, "lr": lr_at(c, max(step, 1)),
                                   "train_loss": loss_sum[e] / loss_n[e] if loss_n[e] else None}
            ev = evaluate(m, eval_set, c.locater_over, keep_pattern=keep, device=device)
            if keep:
                hists[e].patterns[step] = ev.pop("pattern")
            rec.update(ev)
            if grads is None:
                rec["grad_W_Q"] = rec["grad_W_K"] = None
            else:
                gq, gk = [], []
                for layer in range(L):
                    a = template.blocks[layer].attn
                    G = grads[f"model.blocks.{layer}.attn.W_qkv"][e][: 2 * H * a.d_head]
                    n = G.reshape(2, H, -1).norm(dim=-1)  # (2 H d_h, d) -> (2, H, d_h d) -> (2, H)
                    gq.append(n[0].tolist())
                    gk.append(n[1].tolist())
                rec["grad_W_Q"], rec["grad_W_K"] = gq, gk
            rec["penalty"] = None
            if pens is not None and c.regularizer != "none":
                rec["penalty"] = float(pens[e, [_kind_key(k) for k in kinds].index(_kind_key(c))])
            rec["elapsed_s"] = time.perf_counter() - t0
            loss_sum[e], loss_n[e] = 0.0, 0
            hists[e].records.append(rec)
            writers[e].write({"type": "log", **rec})

    log(0, None, None)
    bar = progress_bar(total=c0.steps, disable=not progress, desc=f"sweep x{E}", leave=False)
    for step in range(1, c0.steps + 1):
        xs, ys = zip(*(data.batch("train", c0.batch_size, mcfg.seq_len, g) for g in gens))
        x, y = torch.stack(xs).to(device), torch.stack(ys).to(device)  # (E, B, T)
        ce, pens = batched(params, buffers, x, y, target_mean)  # (E,), (E, n_kinds)
        ce_vals = ce.detach().tolist()
        for e, v in enumerate(ce_vals):
            if alive[e] and (not math.isfinite(v) or v > limit):
                reason = (f"the training loss became {v}" if not math.isfinite(v)
                          else f"the training loss {v:.3g} exceeded {limit:.3g} (= {c0.divergence_factor} log V)")
                msg = divergence_message(step, reason, cfgs[e], mcfg, hists[e].last)
                alive[e] = False
                hists[e].status, hists[e].message = "diverged", msg
                writers[e].write({"type": "end", "status": "diverged", "step": step, "message": msg})
        if not any(alive):
            break
        live = torch.tensor(alive, device=device)
        per_member = ce + (pens * weights).sum(-1) if kinds else ce  # (E,)
        total = torch.where(live, per_member, torch.zeros_like(per_member)).sum()
        grads = dict(zip(params, torch.autograd.grad(total, list(params.values()))))
        grads = {k: torch.where(live.view(-1, *([1] * (g.ndim - 1))), g, torch.zeros_like(g)) for k, g in grads.items()}
        clip = torch.tensor([c.grad_clip if c.grad_clip is not None else math.inf for c in cfgs], device=device)
        if torch.isfinite(clip).any():
            norm = torch.sqrt(sum(g.pow(2).reshape(E, -1).sum(1) for g in grads.values()))  # (E,)
            coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
            grads = {k: g * coef.view(-1, *([1] * (g.ndim - 1))) for k, g in grads.items()}
        is_log = step % c0.log_every == 0 or step == c0.steps
        lr = torch.tensor([lr_at(c, step) if a else 0.0 for c, a in zip(cfgs, alive)], device=device)  # (E,)
        wd = torch.tensor([c.weight_decay for c in cfgs], device=device)
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        with torch.no_grad():
            for k, p in params.items():
                g, (m1, m2) = grads[k], state[k]
                shape = (-1,) + (1,) * (p.ndim - 1)
                if p.ndim >= 3:  # a matrix of every member: decoupled weight decay (as AdamW)
                    p.mul_((1 - lr * wd).view(shape))
                m1.lerp_(g, 1 - b1)
                m2.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (m2.sqrt() / math.sqrt(bc2)).add_(1e-8)
                p.sub_((lr / bc1).view(shape) * m1 / denom)
        for e in range(E):
            if alive[e]:
                loss_sum[e] += ce_vals[e]
                loss_n[e] += 1
        if is_log:
            log(step, grads, pens.detach())
            bar.set_postfix(loss=f"{sum(ce_vals) / E:.3f}")
        bar.update(1)
    bar.close()
    template.set_attention_impl("sdpa")
    for e in range(E):
        hists[e].model = unstack(e)
        if alive[e]:
            hists[e].status = "completed"
            writers[e].write({"type": "end", "status": "completed", "step": c0.steps})
    return hists
