"""Training a `Transformer` and recording what its attention does (chapters 4, 9, 10).

What is here: `TrainConfig` (documented defaults), `train(model_config, train_config, data)`
returning a `History` (step, train loss, validation loss and perplexity, attention entropy per
head, QK spectrum mean / variance / scale / kappa per head, gradient norms of `W_Q` and `W_K`
per head (the Noci et al. signal), optional patterns at chosen steps), results written as they
come (JSON lines: config, seed, device, versions, then one line per logged step), checkpoints with
exact resume, and `TrainingDiverged`, raised with the history so far when the loss becomes NaN or
blows up. Many runs at once: `qklab.sweep`.

Not here: the model (`qklab.model`), penalties (`qklab.regularizers`), data (`qklab.data`).

Conventions: a step is one optimizer update; `step = 0` is logged before any update (the
initialisation). Everything is seeded with `TrainConfig.seed` through local generators (model
initialisation and batch sampling); with `dropout > 0` torch's global RNG is seeded too, since
dropout has no generator argument. On CPU two runs with the same seed give identical numbers.

Measured on this project's 2-core CPU (torch 2.13, pydoc corpus, `book_config()`: 1 layer,
1 head, d_model 64, seq 64, pre-LN; `TrainConfig` defaults: batch 32, AdamW betas 0.9/0.95, constant
lr, no warm-up, no clipping; 300 steps take about 10-12 s on an idle machine). Seed 0, values at
step 300 (entropy in nats, mean over queries; uniform causal attention is about 3.2 here):

    lr      plain: val loss / entropy / ||W_QK||_2      sigma-Reparam: val loss / entropy / ||W_QK||_2
    3e-3    1.96 / 1.74 / ~1   (the default; smooth)    (not needed)
    1e-2    2.25 / 1.25 / 6                            2.32 / 1.69 / 1.2
    3e-2    2.75 / 0.01 / 380  ENTROPY COLLAPSE         2.34 / 1.45 / 1.6
    1e-1    3.40 / 0.00 / 2260 (stuck at unigram loss)  2.67 / 2.73 / 0.3

At lr 3e-2 plain training of this model collapses within the first 25 steps (entropy 3.21 -> 0.04
-> 0.01, attention one-hot, the spectral norm of W_QK in the hundreds) and its loss stays well above
the stable runs for the rest of the run; with sigma-Reparam the same lr trains normally. (Chapter 4
itself trains another model, post-LN with d_model 32 and context 32, and compares lr 1e-1 with
1e-2 for 300 steps; chapter 10's model collapses at 1e-2.) The divergence check does not fire here:
the loss stays finite and below 3 log V; the collapse shows in the entropy, not as NaN.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from qklab._validate import check_writable_file
from qklab.device import environment, pick_device
from qklab.metrics import attention_entropy
from qklab.model import ModelConfig, Transformer
from qklab.regularizers import LOCATER_FORMS, locater_penalty, qk_weight_decay

__all__ = [
    "TrainConfig",
    "History",
    "TrainingDiverged",
    "train",
    "book_config",
    "evaluate",
    "REGULARIZERS",
]

REGULARIZERS = ("none", "locater", "qk_l2")


@dataclass
class TrainConfig:
    """How to train. Defaults suit the book's small CPU runs (a few hundred steps in seconds).

    Attributes:
        steps: optimizer updates. Default 300: enough for the pydoc character model to get
            well below the unigram loss in about 10 s on 2 CPU cores.
        batch_size: sequences per step. Default 32.
        lr: peak AdamW learning rate. Default 3e-3 (stable for the small default model).
        warmup: linear warm-up steps from 0 to `lr`. Default 0, so that chapter 4 sees the raw
            effect of a large learning rate; warm-up is one of the fixes it tries.
        schedule: "constant" (default: a step means the same thing all run long) or "cosine"
            (decays to `min_lr_ratio * lr` at the last step).
        min_lr_ratio: floor of the cosine schedule. Default 0.1.
        betas: AdamW betas. Default (0.9, 0.95), nanoGPT's.
        weight_decay: decoupled AdamW weight decay on all matrices (embeddings included; not on
            layer norms, biases or sigma-Reparam's gamma). Default 0.0; the naive baseline of chapter 10.
        grad_clip: clip the global gradient norm at this value; None (default) does not clip,
            so that instabilities show rather than being hidden.
        regularizer: "none" (default), "locater" or "qk_l2" (`||W_Q||^2 + ||W_K||^2`).
        reg_strength: the penalty's strength `rho` (`loss + rho * penalty`). Default 0.0.
        locater_form: LocAteR form (`qklab.regularizers.LOCATER_FORMS`), default "variance".
        locater_over: normaliser `n` of the spectrum statistics, "d" (default) or "d_h"; used for
            the penalty and for the logged statistics.
        locater_mean_weight: weight `mu` of the mean-holding term of the "scale" form.
        seed: seeds model initialisation and batch sampling. Default 0.
        log_every: log (evaluate, measure spectra and entropy) every this many steps. Default 50.
        eval_batches: validation batches per evaluation (fixed windows). Default 4.
        pattern_steps: steps at which to keep the attention patterns of one validation sequence.
        device: "auto" (CUDA, then MPS, then CPU), or a device name.
        progress: show a tqdm progress bar with loss and entropy. Default True.
        out: JSON-lines results file (appended on resume), or None.
        checkpoint: checkpoint file path, or None. Written every `checkpoint_every` steps (0: only
            at the end).
        checkpoint_every: see `checkpoint`.
        on_divergence: "raise" (default: `TrainingDiverged`) or "stop" (return the history,
            `history.status == "diverged"`), for sweeps.
        divergence_factor: a training loss above `divergence_factor * log(vocab_size)` (far worse
            than guessing uniformly) counts as divergence, as does a NaN or infinite loss. Default 3.
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    regularizer: Literal["none", "locater", "qk_l2"] = "none"
    reg_strength: float = 0.0
    locater_form: str = "variance"
    locater_over: Literal["d", "d_h"] = "d"
    locater_mean_weight: float = 1.0
    seed: int = 0
    log_every: int = 50
    eval_batches: int = 4
    pattern_steps: tuple[int, ...] = ()
    device: str = "auto"
    progress: bool = True
    out: str | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 0
    on_divergence: Literal["raise", "stop"] = "raise"
    divergence_factor: float = 3.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        for name in ("warmup", "checkpoint_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}")
        for name in ("weight_decay", "reg_strength", "locater_mean_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {v!r}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"TrainConfig.grad_clip must be a positive finite number or None, got {self.grad_clip}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"TrainConfig.regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.locater_form not in LOCATER_FORMS:
            raise ValueError(f"TrainConfig.locater_form must be one of {LOCATER_FORMS}, got {self.locater_form!r}")
        if self.locater_over not in ("d", "d_h"):
            raise ValueError(f"TrainConfig.locater_over must be 'd' or 'd_h', got {self.locater_over!r}")
        if self.on_divergence not in ("raise", "stop"):
            raise ValueError(f"TrainConfig.on_divergence must be 'raise' or 'stop', got {self.on_divergence!r}")
        if not (self.divergence_factor > 0 and math.isfinite(self.divergence_factor)):
            raise ValueError(f"TrainConfig.divergence_factor must be a positive finite number, got {self.divergence_factor}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.pattern_steps = tuple(int(s) for s in self.pattern_steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"], d["pattern_steps"] = list(self.betas), list(self.pattern_steps)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


def book_config(**overrides: Any) -> ModelConfig:
    """The small default model of the training chapters: 1 layer, 1 head, d_model 64, seq 64."""
    return ModelConfig(**{"d_model": 64, "n_heads": 1, "n_layers": 1, "seq_len": 64, **overrides})


@dataclass
class History:
    """What a run recorded. `records` holds one dict per logged step (keys below); per-head
    quantities are nested lists `[layer][head]`. `history["val_loss"]` is the column as a list.

    Keys: step, tokens, lr, train_loss (mean since the previous log), val_loss, val_ppl,
    entropy (mean over layers, heads, queries, nats), entropy_per_head, qk_mean, qk_variance
    (the bound `||W||_F^2/n - m^2`), qk_trace_variance (`tr(W^2)/n - m^2`, a measurement), qk_scale,
    qk_kappa, qk_spectral_norm, qk_antisym (`||(W - W^T)/2||_F^2`), grad_W_Q, grad_W_K (Frobenius
    norms of the gradients, per head; absent at step 0), penalty, elapsed_s.
    """

    model_config: dict
    train_config: dict
    data: dict
    env: dict
    records: list[dict] = field(default_factory=list)
    patterns: dict[int, list[Tensor]] = field(default_factory=dict)
    status: str = "running"
    message: str = ""
    model: Transformer | None = None

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def head_series(self, key: str, layer: int = 0, head: int = 0) -> list[float]:
        """One head's values of a per-head key over the logged steps (None where absent)."""
        return [r[key][layer][head] if r.get(key) is not None else None for r in self.records]


class TrainingDiverged(RuntimeError):
    """Training stopped because the loss became NaN/inf or blew up. Carries `history` (so far),
    `step` and `reason`, so a notebook can catch it and plot the collapse."""

    def __init__(self, message: str, history: History, step: int, reason: str) -> None:
        super().__init__(message)
        self.history, self.step, self.reason = history, step, reason


# --- pieces shared with qklab.sweep ------------------------------------------------------------

def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for update number `step` (1-based)."""
    if cfg.warmup > 0 and step <= cfg.warmup:
        return cfg.lr * step / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def param_groups(model: Transformer, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices (ndim >= 2), none on vectors and scalars (one group when
    `weight_decay` is 0, which saves a pass of the optimizer)."""
    if weight_decay == 0:
        return [{"params": list(model.parameters()), "weight_decay": 0.0}]
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def penalty(model: Transformer, cfg: TrainConfig, target_mean: Tensor | None) -> Tensor | None:
    """The regulariser's penalty (without the strength), or None for "none"."""
    if cfg.regularizer == "locater":
        return locater_penalty(model, cfg.locater_form, cfg.locater_over, target_mean, cfg.locater_mean_weight)
    if cfg.regularizer == "qk_l2":
        return qk_weight_decay(model)
    return None


def initial_target_mean(model: Transformer, cfg: TrainConfig) -> Tensor | None:
    """Per-head eigenvalue means at initialisation `(L, H)`: what LocAteR form "scale" holds."""
    if cfg.regularizer == "locater" and cfg.locater_form == "scale":
        with torch.no_grad():
            return model.qk().mean(cfg.locater_over).detach().clone()
    return None


def head_grad_norms(model: Transformer) -> tuple[list, list]:
    """Frobenius norms of the gradients of the raw query and key weights, `[layer][head]`."""
    gq, gk = [], []
    for b in model.blocks:
        a = b.attn
        g = a.W_qkv.grad
        if g is None:
            return [], []
        hd = a.n_heads * a.d_head
        G = g[: 2 * hd].view(2, a.n_heads, a.d_head * a.d_model)  # (2, H, d_h d): query rows, key rows
        n = G.norm(dim=-1)  # (2, H)
        gq.append(n[0].tolist())
        gk.append(n[1].tolist())
    return gq, gk


@torch.no_grad()
def evaluate(model: Transformer, batches: list[tuple[Tensor, Tensor]], over: str = "d",
             keep_pattern: bool = False, device: torch.device | None = None) -> dict[str, Any]:
    """Validation loss, perplexity, attention entropy per head and QK spectrum per head.

    Uses the exact attention path (`run_with_attention`); leaves the model in the mode it found.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    losses, ent = [], []
    first_pattern = None
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits, rec = model.run_with_attention(x)
        losses.append(float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)))
        per_layer = []
        for r in rec:
            A = r["pattern"]
            if torch.isfinite(A).all():
                per_layer.append(attention_entropy(A, reduce="per_head"))  # (H,)
            else:
                per_layer.append(torch.full((A.shape[1],), float("nan")))
        ent.append(torch.stack(per_layer))  # (L, H)
        if keep_pattern and first_pattern is None:
            first_pattern = [r["pattern"][0].cpu() for r in rec]  # per layer (H, T, T)
    model.train(was_training)
    val_loss = sum(losses) / len(losses)
    ent_lh = torch.stack(ent).mean(0)  # (L, H)
    stats = model.qk().stats(over)  # each (L, H)
    out = {
        "val_loss": val_loss,
        "val_ppl": math.exp(val_loss) if val_loss < 700 else float("inf"),
        "entropy": float(ent_lh.mean()),
        "entropy_per_head": ent_lh.tolist(),
        "qk_mean": stats["mean"].tolist(),
        "qk_variance": stats["variance"].tolist(),
        "qk_trace_variance": stats["trace_variance"].tolist(),
        "qk_scale": stats["scale"].tolist(),
        "qk_kappa": stats["kappa"].tolist(),
        "qk_spectral_norm": stats["spectral_norm"].tolist(),
        "qk_antisym": stats["antisymmetric_fro_sq"].tolist(),
    }
    if keep_pattern:
        out["pattern"] = first_pattern
    return out


_CHECKPOINT_KEYS = ("model_config", "model", "optimizer", "generator", "step", "loss_sum", "loss_n", "records",
                    "patterns", "target_mean")


def _load_checkpoint(path: str | os.PathLike, device: torch.device) -> dict:
    """A checkpoint written by `train`, or ValueError naming `resume` and what is wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"resume {str(p)!r} is not a file")
    try:
        ck = torch.load(p, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001: pickle, zip and torch errors alike mean "not a checkpoint"
        raise ValueError(f"resume {str(p)!r} is not a qklab checkpoint: torch.load failed ({type(err).__name__})") from err
    if not isinstance(ck, dict) or any(k not in ck for k in _CHECKPOINT_KEYS):
        raise ValueError(f"resume {str(p)!r} is not a qklab checkpoint (written by train with TrainConfig.checkpoint)")
    return ck


class ResultsWriter:
    """Appends JSON lines to `path` (no-op when `path` is None)."""

    def __init__(self, path: str | os.PathLike | None, appending: bool = False) -> None:
        """Raises ValueError before any training when `path` cannot be written, or when it already
        holds lines that are not a `train` results file (a sweep's results, say): a new run starts
        a new file; only a resumed run (`appending`) adds to one of its own."""
        self.path = check_writable_file(path, "TrainConfig.out") if path is not None else None
        if self.path is not None and self.path.is_file() and self.path.stat().st_size:
            with self.path.open(encoding="utf-8") as f:
                first = f.readline()
            try:
                kind = json.loads(first).get("type")
            except (json.JSONDecodeError, AttributeError):
                kind = None
            if kind != "config":
                raise ValueError(f"TrainConfig.out {str(self.path)!r} already holds lines that are not a qklab train "
                                 "results file (a sweep's or another program's); give a new file")
            if not appending:
                raise ValueError(f"TrainConfig.out {str(self.path)!r} already holds another training run; give a new "
                                 "file (a resumed run appends to its own)")

    def write(self, obj: dict) -> None:
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")


def divergence_message(step: int, reason: str, cfg: TrainConfig, model_cfg: ModelConfig, last: dict) -> str:
    ent = last.get("entropy")
    tips = [f"lower the learning rate (now {cfg.lr:g}; try {cfg.lr / 3:g})"]
    if not model_cfg.sigma_reparam:
        tips.append("enable sigma-Reparam (ModelConfig(sigma_reparam=True))")
    if cfg.warmup == 0:
        tips.append("add warm-up (TrainConfig(warmup=100))")
    if cfg.grad_clip is None:
        tips.append("clip gradients (TrainConfig(grad_clip=1.0))")
    where = f"; last logged attention entropy {ent:.3g} nats" if isinstance(ent, float) else ""
    return f"training diverged at step {step}: {reason}{where}. Try: " + "; ".join(tips) + "."


def _data_or_default(data: Any) -> Any:
    if data is None:
        from qklab.data import pydoc_corpus

        return pydoc_corpus()
    for attr in ("vocab_size", "batch", "eval_batches"):
        if not hasattr(data, attr):
            raise TypeError(f"data must provide vocab_size, batch() and eval_batches() (see qklab.data); missing {attr}")
    return data


def resolve_model_config(model_config: ModelConfig, data: Any) -> ModelConfig:
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
    if model_config.vocab_size is None:
        return dataclasses.replace(model_config, vocab_size=data.vocab_size)
    if model_config.vocab_size < data.vocab_size:
        raise ValueError(
            f"ModelConfig.vocab_size = {model_config.vocab_size} is smaller than the data's vocabulary "
            f"({data.vocab_size}); leave vocab_size=None to take it from the data"
        )
    return model_config


# --- the training loop --------------------------------------------------------------------------

def train(
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    data: Any = None,
    *,
    resume: str | os.PathLike | None = None,
    callback: Callable[[int, Transformer, float], None] | None = None,
) -> History:
    """Train a fresh `Transformer(model_config)` on `data` (default: the pydoc corpus).

    Args:
        model_config: the architecture (default `book_config()`); `vocab_size=None` takes it from `data`.
        train_config: how to train (default `TrainConfig()`).
        data: a `qklab.data` task or corpus.
        resume: a checkpoint written by an earlier call with the same configs; training continues
            from its step to `train_config.steps` and gives the same numbers as an uninterrupted run.
        callback: called as `callback(step, model, train_loss)` after every update (e.g. to take
            snapshots; it may modify the model).

    Returns:
        the `History`, with the trained model in `history.model`.

    Raises:
        TrainingDiverged: on a NaN/inf loss or a blow-up, when `on_divergence="raise"`.
    """
    from qklab._progress import progress_bar

    data = _data_or_default(data)
    mcfg = resolve_model_config(model_config if model_config is not None else book_config(), data)
    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(cfg).__name__}")
    device = pick_device(cfg.device)
    if mcfg.dropout > 0:
        torch.manual_seed(cfg.seed)
    model = Transformer(mcfg, seed=cfg.seed).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_set = data.eval_batches(cfg.batch_size, mcfg.seq_len, cfg.eval_batches)
    describe = data.describe() if hasattr(data, "describe") else {"name": type(data).__name__}
    hist = History(mcfg.to_dict(), cfg.to_dict(), describe, environment(device))
    target_mean = initial_target_mean(model, cfg)
    writer = ResultsWriter(cfg.out, appending=resume is not None)
    if cfg.checkpoint is not None:
        check_writable_file(cfg.checkpoint, "TrainConfig.checkpoint")
    start, loss_sum, loss_n = 0, 0.0, 0
    if resume is not None:
        ck = _load_checkpoint(resume, device)
        if ck["model_config"] != mcfg.to_dict():
            raise ValueError("resume: the checkpoint was written with a different ModelConfig")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        if ck.get("torch_rng") is not None:
            torch.set_rng_state(ck["torch_rng"])
        start, loss_sum, loss_n = ck["step"], ck["loss_sum"], ck["loss_n"]
        hist.records, hist.patterns = ck["records"], ck["patterns"]
        target_mean = ck["target_mean"]
    else:
        writer.write({"type": "config", "model_config": hist.model_config, "train_config": hist.train_config,
                      "data": hist.data, "seed": cfg.seed, "device": str(device), "env": hist.env})

    def save_checkpoint(step: int) -> None:
        if cfg.checkpoint is None:
            return
        Path(cfg.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_config": mcfg.to_dict(), "train_config": cfg.to_dict(), "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
                    "loss_sum": loss_sum, "loss_n": loss_n, "records": hist.records, "patterns": hist.patterns,
                    "target_mean": target_mean,
                    "torch_rng": torch.get_rng_state() if mcfg.dropout > 0 else None}, cfg.checkpoint)

    t0 = time.perf_counter()
    elapsed0 = hist.records[-1]["elapsed_s"] if hist.records else 0.0

    def log(step: int, pen: float | None, grads: tuple[list, list] | None) -> dict:
        nonlocal loss_sum, loss_n
        keep = step in cfg.pattern_steps
        rec: dict[str, Any] = {"step": step, "tokens": step * cfg.batch_size * mcfg.seq_len,
                               "lr": lr_at(cfg, max(step, 1)),
                               "train_loss": loss_sum / loss_n if loss_n else None}
        ev = evaluate(model, eval_set, cfg.locater_over, keep_pattern=keep, device=device)
        if keep:
            hist.patterns[step] = ev.pop("pattern")
        rec.update(ev)
        rec["grad_W_Q"], rec["grad_W_K"] = grads if grads is not None else (None, None)
        rec["penalty"] = pen
        rec["elapsed_s"] = elapsed0 + time.perf_counter() - t0
        loss_sum, loss_n = 0.0, 0
        hist.records.append(rec)
        writer.write({"type": "log", **rec})
        return rec

    if start == 0:
        log(0, None, None)
    bar = progress_bar(total=cfg.steps, initial=start, disable=not cfg.progress, desc="train", leave=False)
    limit = cfg.divergence_factor * math.log(max(2, mcfg.vocab_size))
    model.train()
    step = start
    try:
        for step in range(start + 1, cfg.steps + 1):
            lr = lr_at(cfg, step)
            for gr in opt.param_groups:
                gr["lr"] = lr
            x, y = data.batch("train", cfg.batch_size, mcfg.seq_len, gen)
            x, y = x.to(device), y.to(device)
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
            pen_t = penalty(model, cfg, target_mean)
            total = loss + cfg.reg_strength * pen_t if pen_t is not None else loss
            loss_val = loss.detach().item()
            if not math.isfinite(loss_val) or loss_val > limit:
                reason = (f"the training loss became {loss_val}" if not math.isfinite(loss_val)
                          else f"the training loss {loss_val:.3g} exceeded {limit:.3g} (= {cfg.divergence_factor} log V)")
                return _diverged(hist, cfg, mcfg, model, writer, step, reason, save_checkpoint)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            is_log = step % cfg.log_every == 0 or step == cfg.steps
            grads = head_grad_norms(model) if is_log else None
            opt.step()
            loss_sum += loss_val
            loss_n += 1
            if callback is not None:
                callback(step, model, loss_val)
            if is_log:
                rec = log(step, pen_t.detach().item() if pen_t is not None else None, grads)
                bar.set_postfix(loss=f"{loss_val:.3f}", val=f"{rec['val_loss']:.3f}", H=f"{rec['entropy']:.2f}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_checkpoint(step)
            bar.update(1)
    finally:
        bar.close()
    save_checkpoint(step)
    hist.status, hist.model = "completed", model
    writer.write({"type": "end", "status": "completed", "step": step})
    return hist


def _diverged(hist: History, cfg: TrainConfig, mcfg: ModelConfig, model: Transformer, writer: ResultsWriter,
              step: int, reason: str, save_checkpoint: Callable[[int], None]) -> History:
    msg = divergence_message(step, reason, cfg, mcfg, hist.last)
    hist.status, hist.message, hist.model = "diverged", msg, model
    writer.write({"type": "end", "status": "diverged", "step": step, "message": msg})
    if cfg.on_divergence == "raise":
        raise TrainingDiverged(msg, hist, step, reason)
    return hist
