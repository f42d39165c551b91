"""The LocAteR reproduction as grid points (chapter 10, `qklab reproduce locater`).

What is here:

- `locater_points(scale, ...)`: the grid of a paired LocAteR sweep as points for
  `qklab.runner.run_points` (`{"fn": "qklab.reproduce:locater_point", "args": ..., "tags": ...}`),
  and a one-line note on the data used. Per learning rate and seed (a seed fixes the
  initialisation, the batch order and the dropout masks, the same for every arm: the
  comparisons are *paired*): plain training; LocAteR's variance form at several strengths `rho`;
  AdamW weight decay at two strengths; sigma-Reparam on `W_Q, W_K`; and, from a mimetic
  initialisation (a spectrum with mean `m_0 > 0`), plain training and LocAteR's
  scale-with-mean-held form (target mean `m_0`, the mean at initialisation).
- `locater_point(model, train, data, ...)`: trains one model and measures it on the whole
  validation split (loss, perplexity, attention entropy, where attention goes by distance from
  the query, the QK spectrum), with the logged validation curve. JSON-serialisable.
- `locater_table(records)`: the summary table the command prints (mean over seeds, and the
  paired difference from plain training with a 95% t-interval over seeds).
- `penalty_gradient_ratio(...)`: where the penalty's gradient is as large as the loss gradient,
  the centre of the strength grid.
- `SCALES`: "tiny" (unit tests, seconds), "book" (the committed CPU sweep of chapter 10,
  `results/locater-book.jsonl`), "paper" (the paper's size; WikiText-2 if given; GPU hours).

Not here: running points in parallel and writing results (`qklab.runner`), the command line
(`qklab.cli`), the model and training loop (`qklab.model`, `qklab.train`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from qklab.data import fingerprint
from qklab.device import pick_device
from qklab.model import ModelConfig, Transformer
from qklab.train import TrainConfig, initial_target_mean, penalty, train

__all__ = [
    "SCALES",
    "locater_points",
    "locater_point",
    "locater_table",
    "load_data",
    "full_validation",
    "penalty_gradient_ratio",
    "estimate_seconds",
    "completed_runs",
    "t_interval",
    "t_quantile",
    "summarise",
    "at_length",
    "paired",
    "runs_of",
    "verdict",
]

FN = "qklab.reproduce:locater_point"


@dataclasses.dataclass(frozen=True)
class Length:
    """A further training length of a sweep, with the grid run at it (normal learning rate: the
    variance form at `rho`, weight decay at `weight_decays`, sigma-Reparam, and from a mimetic start
    plain training and the scale form at `rho_scale`; the too-high rate only if `rho_high` is given)."""

    steps: int
    rho: tuple[float, ...]
    rho_scale: tuple[float, ...]
    weight_decays: tuple[float, ...]
    log_every: int
    rho_high: tuple[float, ...] | None = None
    weight_decays_high: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Scale:
    """One size of the sweep: model, training, the regimes (learning rates), the strength grids
    (`rho`: variance form; `rho_scale`: scale-with-mean-held form from a mimetic initialisation,
    run in the regimes named in `mimetic_regimes`), weight decays and seeds."""

    model: dict
    steps: int
    batch_size: int
    lrs: dict  # regime name -> learning rate
    rho: tuple[float, ...]
    rho_scale: tuple[float, ...]
    weight_decays: tuple[float, ...]
    seeds: tuple[int, ...]
    log_every: int
    eval_batches: int = 4
    schedule: str = "cosine"
    mean_weight: float = 10.0
    mimetic_regimes: tuple[str, ...] = ("normal",)
    rho_high: tuple[float, ...] | None = None  # variance-form grid of the other regimes (None: `rho`)
    weight_decays_high: tuple[float, ...] | None = None  # weight decays of the other regimes (None: the same)
    longer: tuple[Length, ...] = ()  # further training lengths, each with its own grid


# Strengths: the variance form's gradient at initialisation equals the loss gradient's at rho* ~ 2.5
# and the scale form's (mimetic start) at ~ 0.26 (chapter 10 recomputes both); the grids span four
# decades around the first and one around the second.
LONG_RHO = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0, 100.0)

SCALES: dict[str, Scale] = {
    # unit tests: a few steps of a very small model
    "tiny": Scale(model=ModelConfig.paper_locater(d_model=16, d_mlp=16, seq_len=16).to_dict(), steps=6,
                  batch_size=4, lrs={"normal": 3e-3}, rho=(1e-2, 1.0), rho_scale=(1e-1,),
                  weight_decays=(0.1,), seeds=(0, 1), log_every=3, eval_batches=1,
                  longer=(Length(steps=9, rho=(1.0,), rho_scale=(0.1,), weight_decays=(), log_every=3),)),
    # the committed CPU sweep of chapter 10 (results/locater-book.jsonl)
    # sized by measurement: 100 points of about 20 s each on a lightly loaded core (chapter 10's live re-run: 18 s),
    # so about 17 min on 2 idle cores; the committed run took 58 min on a machine shared with other work (1-minute
    # load average 12.5 on 2 cores). Cuts against the wish list: see chapter 10
    # Over training length (1500 and 3000 steps): the variance form every half decade from 1e-3 to 1 and the
    # near-uniform control at 100; the scale form from the mimetic start at four strengths; the too-high rate at
    # 1500 steps. At 300 steps, the half decades around that length's best strength (0.3, 3) and the same scale grid.
    "book": Scale(model=ModelConfig.paper_locater(seq_len=64).to_dict(), steps=300, batch_size=16,
                  lrs={"normal": 3e-3, "too high": 1e-2}, rho=(1e-4, 1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0, 100.0),
                  rho_scale=(0.1, 0.3, 1.0, 3.0), weight_decays=(0.1, 1.0), seeds=(0, 1, 2, 3, 4), log_every=50,
                  rho_high=(1e-4, 1e-2, 1.0, 100.0), weight_decays_high=(1.0,),
                  longer=(Length(steps=1500, rho=LONG_RHO, rho_scale=(0.1, 0.3, 1.0, 3.0), weight_decays=(0.1, 1.0),
                                 log_every=250, rho_high=(1e-3, 1e-2, 1e-1, 1.0, 100.0), weight_decays_high=(1.0,)),
                          Length(steps=3000, rho=LONG_RHO, rho_scale=(0.1, 0.3, 1.0, 3.0), weight_decays=(0.1, 1.0),
                                 log_every=500))),
    # the paper's size: context 512 as fairseq's language-model example, 4000 steps x 16 x 512 = 33M tokens (about
    # 16 passes over WikiText-2's 2.1M training words); GPU hours
    "paper": Scale(model=ModelConfig.paper_locater(seq_len=512).to_dict(), steps=4000, batch_size=16,
                   lrs={"normal": 3e-3, "too high": 1e-2}, rho=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
                   rho_scale=(1e-1, 1.0), weight_decays=(0.1, 1.0), seeds=(0, 1, 2, 3, 4), log_every=200,
                   mimetic_regimes=("normal", "too high")),
}


# --- data ----------------------------------------------------------------------------------------

def _data_spec(scale: str, wikitext_dir: str | None, download: bool) -> tuple[dict, str]:
    from qklab.data import WIKITEXT_FILES, find_wikitext2

    if wikitext_dir is not None:
        root = Path(wikitext_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"wikitext_dir {str(root)!r} does not exist or is not a directory")
        found = find_wikitext2(root)
        if found is None:
            missing = [f for f in (WIKITEXT_FILES["train"], WIKITEXT_FILES["val"])
                       if not (root / f).is_file() and not (root / "wikitext-2-raw" / f).is_file()]
            raise FileNotFoundError(f"wikitext_dir {str(root)!r} lacks {', '.join(missing)} (the raw WikiText-2 files)")
        level = "char" if scale != "paper" else "word"
        return {"kind": "wikitext2", "path": str(found.resolve()), "level": level}, f"WikiText-2 ({level} level) from {found}"
    if download:
        level = "char" if scale != "paper" else "word"
        return {"kind": "wikitext2", "path": None, "level": level, "download": True}, f"WikiText-2 ({level} level), downloaded"
    return {"kind": "pydoc"}, ("pydoc corpus (offline, character level); no WikiText-2 directory was given "
                               "(pass --wikitext-dir or --download)")


@functools.lru_cache(maxsize=4)
def _load(kind: str, path: str | None, level: str, download: bool, test_split: bool = False):
    from qklab import data as qd

    if kind == "pydoc":
        return qd.pydoc_corpus(test_split=test_split)
    if test_split:
        raise ValueError("a test split is made for the pydoc corpus only (WikiText-2's own test file is not read)")
    if kind == "wikitext2":
        return qd.load_wikitext2(path, level=level, download=download)
    raise ValueError(f"data kind must be 'pydoc' or 'wikitext2', got {kind!r}")


def load_data(spec: dict):
    """The corpus a point's `data` spec names (cached per process). `{"kind": "pydoc", "test_split": True}`
    holds out a test split (`qklab.data.pydoc_corpus`)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"data must be a dict with a 'kind' ('pydoc' or 'wikitext2'), got {spec!r}")
    return _load(spec["kind"], spec.get("path"), spec.get("level", "char"), bool(spec.get("download", False)),
                 bool(spec.get("test_split", False)))


# --- the grid ------------------------------------------------------------------------------------

def locater_points(scale: str, *, wikitext_dir: str | None = None, download: bool = False,
                   strengths: list[float] | None = None, seeds: list[int] | None = None, steps: int | None = None,
                   device: str = "auto") -> tuple[list[dict], str]:
    """The paired grid of `scale` as points, and a one-line note on the data.

    Raises ValueError / FileNotFoundError before any work on bad input (an unknown scale, empty or
    non-positive strengths, duplicate seeds, a `wikitext_dir` that does not exist or lacks
    `wiki.train.raw` / `wiki.valid.raw`). Without `wikitext_dir` and `download` the data is the
    offline pydoc corpus, and the note says so.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    sc = SCALES[scale]
    if strengths is not None:
        strengths = [float(s) for s in strengths]
        if not strengths or any(not (s > 0 and math.isfinite(s)) for s in strengths):
            raise ValueError(f"strengths must be a non-empty list of positive numbers (plain training is always "
                             f"included), got {strengths}")
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    data, note = _data_spec(scale, wikitext_dir, download)
    steps_override = steps is not None
    rho = tuple(strengths) if strengths is not None else sc.rho
    rho_high = tuple(strengths) if strengths is not None else (sc.rho_high or sc.rho)
    steps = steps or sc.steps
    base = TrainConfig(steps=steps, batch_size=sc.batch_size, log_every=min(sc.log_every, steps),
                       eval_batches=sc.eval_batches, schedule=sc.schedule, device=device, progress=False,
                       on_divergence="stop").to_dict()
    mimetic = {**sc.model, "init": "mimetic"}
    points = []

    def add(model: dict, arm: str, regime: str, lr: float, seed: int, rho_: float = 0.0, length: dict | None = None,
            **train_kw: Any) -> None:
        tr = {**base, **(length or {}), "lr": lr, "seed": seed, **train_kw}
        points.append({"fn": FN, "args": {"model": model, "train": tr, "data": data},
                       "tags": {"scale": scale, "regime": regime, "arm": arm, "rho": rho_, "lr": lr, "seed": seed,
                                "steps": tr["steps"]}})

    # seed-major order: a sweep stopped early leaves whole seeds (every arm, both regimes)
    for seed in (seeds or sc.seeds):
        for regime, lr in sc.lrs.items():
            add(sc.model, "plain", regime, lr, seed)
            first = regime == next(iter(sc.lrs))
            for r in (rho if first else rho_high):
                add(sc.model, "LocAteR variance", regime, lr, seed, r, regularizer="locater",
                    locater_form="variance", reg_strength=r)
            for wd in (sc.weight_decays if first else (sc.weight_decays_high or sc.weight_decays)):
                add(sc.model, "weight decay", regime, lr, seed, wd, weight_decay=wd)
            add({**sc.model, "sigma_reparam": True}, "sigma-Reparam", regime, lr, seed)
            if regime in sc.mimetic_regimes:
                add(mimetic, "mimetic plain", regime, lr, seed)
                for r in sc.rho_scale:
                    add(mimetic, "mimetic + LocAteR scale", regime, lr, seed, r, regularizer="locater",
                        locater_form="scale", reg_strength=r, locater_mean_weight=sc.mean_weight)
    if steps_override:
        return points, note
    # the longer runs, seed-major too, after every point of the first length
    normal, high = list(sc.lrs.items())[0], list(sc.lrs.items())[1:]
    for seed in (seeds or sc.seeds):
        for ln in sc.longer:
            at = {"steps": ln.steps, "log_every": ln.log_every}
            for (regime, lr), rhos, wds in ((normal, ln.rho, ln.weight_decays),
                                           *((h, ln.rho_high, ln.weight_decays_high) for h in high if ln.rho_high)):
                add(sc.model, "plain", regime, lr, seed, length=at)
                for r in (tuple(strengths) if strengths is not None else rhos):
                    add(sc.model, "LocAteR variance", regime, lr, seed, r, length=at, regularizer="locater",
                        locater_form="variance", reg_strength=r)
                for wd in wds:
                    add(sc.model, "weight decay", regime, lr, seed, wd, length=at, weight_decay=wd)
                add({**sc.model, "sigma_reparam": True}, "sigma-Reparam", regime, lr, seed, length=at)
                if regime in sc.mimetic_regimes:
                    add(mimetic, "mimetic plain", regime, lr, seed, length=at)
                    for r in ln.rho_scale:
                        add(mimetic, "mimetic + LocAteR scale", regime, lr, seed, r, length=at, regularizer="locater",
                            locater_form="scale", reg_strength=r, locater_mean_weight=sc.mean_weight)
    return points, note


# --- one point -----------------------------------------------------------------------------------

@torch.no_grad()
def full_validation(model: Transformer, data, batch_size: int = 32, window: int = 8, split: str = "val",
                    per_window: bool = False) -> dict[str, Any]:
    """Loss, entropy and where attention goes, on every non-overlapping window of a split (default
    the validation split; `split="test"` for a held-out test split).

    Returns `val_loss` (nats per token), `val_ppl`, `val_tokens` (tokens scored), `entropy`
    (mean over queries, windows and heads of layer 0), `profile` (attention of the *last* query
    of each window by distance `k = 0..T-1` from it, averaged over windows: chapter 7's profile),
    `recent_mass` (its mass on the last `window` keys; `window / T` when uniform) and `self_mass`;
    with `per_window`, also `window_loss`: each window's mean loss (nats per token, 6 decimals),
    so that a reader can bootstrap over windows. The keys are the same whatever the split.
    """
    was = model.training
    model.eval()
    T = model.config.seq_len
    dev = next(model.parameters()).device
    win = data.windows(split, T)  # (n, T + 1)
    n = win.shape[0]
    loss_sum, ent_sum, tokens = 0.0, 0.0, 0
    window_loss: list[float] = []
    profile = torch.zeros(T, dtype=torch.float64)
    for i in range(0, n, batch_size):
        w = win[i : i + batch_size].to(dev)
        x, y = w[:, :-1], w[:, 1:]
        logits, rec = model.run_with_attention(x)
        flat_logits, flat_y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)  # (B T, V), (B T,)
        loss_sum += float(F.cross_entropy(flat_logits, flat_y, reduction="sum"))
        if per_window:
            losses = F.cross_entropy(flat_logits, flat_y, reduction="none").view(y.shape)  # (B, T)
            window_loss += [round(float(v), 6) for v in losses.double().mean(-1)]
        tokens += y.numel()
        A = rec[0]["pattern"].double()  # (B, H, T, T)
        ent = -(A * torch.log(A.clamp_min(1e-300))).sum(-1)  # (B, H, T)
        ent_sum += float(ent.mean(dim=(1, 2)).sum())
        profile += A[:, :, -1, :].mean(1).flip(-1).sum(0).cpu()  # (T,): distance 0 first
    model.train(was)
    profile /= n
    val_loss = loss_sum / tokens
    out = {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 700.0)), "val_tokens": tokens,
           "entropy": ent_sum / n, "profile": profile.tolist(), "recent_mass": float(profile[:window].sum()),
           "recent_window": window, "self_mass": float(profile[0])}
    if per_window:
        out["window_loss"] = window_loss
    return out


@torch.no_grad()
def _spectrum(model: Transformer, over: str = "d") -> dict[str, float]:
    qk = model.qk(0)
    st = qk.stats(over)
    W = qk.matrix[0].detach().double()
    fro = float(torch.linalg.matrix_norm(W))
    anti = float(torch.linalg.matrix_norm((W - W.T) / 2))
    return {"qk_mean": float(st["mean"][0]), "qk_variance": float(st["variance"][0]),
            "qk_scale": float(st["scale"][0]), "qk_kappa": float(st["kappa"][0]),
            "qk_spectral_norm": float(st["spectral_norm"][0]), "qk_antisym_share": (anti / fro) ** 2 if fro > 0 else 0.0}


def locater_point(model: dict, train: dict, data: dict, full_eval_batch: int = 32) -> dict[str, Any]:
    """Train one model (`ModelConfig` and `TrainConfig` dicts, a `data` spec) and measure it.

    Returns the final measurements on the whole validation split (`full_validation`; with a test
    split in the data spec, the same on the test split as `test_loss`, `test_ppl`, `test_entropy`,
    ..., and both splits' per-window losses `window_loss`, `test_window_loss`), the QK
    spectrum of layer 0 head 0 (`qk_mean`, `qk_variance`, `qk_scale`, `qk_kappa`,
    `qk_spectral_norm`, `qk_antisym_share` = `||W_anti||_F^2 / ||W||_F^2`), the logged curve
    (`curve`: step, validation loss on the logged batches, entropy), `status`, `train_s` and the
    number of torch threads. Deterministic on CPU for a given point (same code, one thread).
    """
    ds = load_data(data)
    mcfg = ModelConfig.from_dict(model)
    if mcfg.vocab_size is None:
        mcfg = dataclasses.replace(mcfg, vocab_size=ds.vocab_size)
    tcfg = TrainConfig.from_dict({**train, "out": None, "checkpoint": None, "progress": False})
    t0 = time.perf_counter()
    hist = train_fn(mcfg, tcfg, ds)
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = {"status": hist.status, "train_s": train_s, "threads": torch.get_num_threads(),
                           "device": str(pick_device(tcfg.device)), "env": hist.env,
                           "vocab_size": ds.vocab_size, "data": ds.describe(),
                           "curve": {k: hist[k] for k in ("step", "val_loss", "entropy", "train_loss")}}
    if hist.status != "completed":
        out["message"] = hist.message
        return out
    held_out = getattr(ds, "test", None) is not None
    out.update(full_validation(hist.model, ds, full_eval_batch, per_window=held_out))
    if held_out:  # the test split: the same measurements under "test_*" keys
        test = full_validation(hist.model, ds, full_eval_batch, split="test", per_window=True)
        out.update({"test_" + k.removeprefix("val_"): v for k, v in test.items()})
    out.update(_spectrum(hist.model, tcfg.locater_over))
    return out


train_fn = train  # the training loop (a module attribute, so tests can count calls)


def _validate_locater_point(model: dict, train: dict, data: dict, full_eval_batch: int = 32) -> None:
    """What `qklab.runner` checks for every point before any worker starts: the configs, the
    device's name (whether it is present is checked where the point runs), the data spec."""
    ModelConfig.from_dict(model)
    tcfg = TrainConfig.from_dict({**train, "out": None, "checkpoint": None, "progress": False})
    if tcfg.device != "auto":
        try:
            torch.device(tcfg.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {tcfg.device!r}") from err
    if not isinstance(data, dict) or data.get("kind") not in ("pydoc", "wikitext2"):
        raise ValueError(f"data must be a dict with kind 'pydoc' or 'wikitext2', got {data!r}")
    if data["kind"] == "wikitext2" and data.get("path") and not Path(data["path"]).is_dir():
        raise FileNotFoundError(f"the WikiText-2 folder {data['path']!r} does not exist")
    if isinstance(full_eval_batch, bool) or not isinstance(full_eval_batch, int) or full_eval_batch < 1:
        raise ValueError(f"full_eval_batch must be a positive int, got {full_eval_batch!r}")


locater_point.validate = _validate_locater_point  # type: ignore[attr-defined]
locater_point.data_fingerprint = lambda data, **_: fingerprint(load_data(data))  # type: ignore[attr-defined]


def estimate_seconds(points: list[dict], probe_steps: int = 10) -> list[float]:
    """Seconds each of `points` (one grid: one model size, one corpus) takes here with one thread,
    from a short timing of the first: after an untimed warm-up run (the first run of a process pays
    for imports and caches, which made the longer probe look no slower than the shorter and priced
    every step at 0), training it for 2 and for `2 + probe_steps` steps gives the
    cost of a step and of everything else (start-up, two logged evaluations), and one full
    validation is timed on the result. Each point is then priced by its own steps and log interval."""
    args = points[0]["args"]
    ds = load_data(args["data"])
    mcfg = ModelConfig.from_dict(args["model"])
    if mcfg.vocab_size is None:
        mcfg = dataclasses.replace(mcfg, vocab_size=ds.vocab_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        took = []
        for n in (2, 2, 2 + probe_steps):  # the first run is a warm-up (imports, allocator, caches): not timed
            tcfg = TrainConfig.from_dict({**args["train"], "steps": n, "log_every": n, "out": None, "checkpoint": None,
                                          "progress": False, "pattern_steps": []})
            t0 = time.perf_counter()
            hist = train_fn(mcfg, tcfg, ds)
            took.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full_validation(hist.model, ds, args.get("full_eval_batch", 32))
        validation = (time.perf_counter() - t0) * (2 if getattr(ds, "test", None) is not None else 1)  # + the test split
    finally:
        torch.set_num_threads(threads)
    took = took[1:]
    # a noisy machine can make the longer probe no slower than the shorter: then charge every step alike
    per_step = (took[1] - took[0]) / probe_steps if took[1] > took[0] else took[1] / (2 + probe_steps)
    fixed = max(took[0] - 2 * per_step, 0.0)  # start-up and the two logged evaluations

    def cost(point: dict) -> float:
        steps = int(point["args"]["train"]["steps"])
        evaluations = steps // max(1, int(point["args"]["train"].get("log_every", steps))) + 1
        return fixed * evaluations / 2 + per_step * steps + validation

    return [cost(p) for p in points]


# --- strength scale ------------------------------------------------------------------------------

def penalty_gradient_ratio(model_config: ModelConfig, data, form: str = "variance", seed: int = 0,
                           batch_size: int = 16, batches: int = 4, model: Transformer | None = None,
                           target_mean: torch.Tensor | None = None, mean_weight: float = 1.0) -> dict[str, float]:
    """Gradient norms w.r.t. `(W_Q, W_K)`: of the loss and of the LocAteR penalty.

    `rho_star = |grad loss| / |grad penalty|` is the strength at which the two pull equally hard:
    far below it the penalty changes nothing, far above it the penalty wins. Averaged over
    `batches` training batches (seed `seed`, dropout off). By default at initialisation (a fresh
    model of `model_config`); pass a trained `model` (and, for form "scale", its `target_mean`,
    the means at initialisation) to measure later in training; `mean_weight` is the scale form's `mu`.
    """
    cfg = dataclasses.replace(model_config, vocab_size=model_config.vocab_size or data.vocab_size, dropout=0.0,
                              attention_dropout=0.0)
    tc = TrainConfig(regularizer="locater", locater_form=form, locater_mean_weight=mean_weight)
    if model is None:
        model = Transformer(cfg, seed=seed)
        target = initial_target_mean(model, tc)
    else:
        target = target_mean
        if form == "scale" and target is None:
            raise ValueError("form 'scale' on a given model needs target_mean (the means at initialisation)")
    was = model.training
    model.eval()  # no dropout
    g = torch.Generator().manual_seed(seed)
    W = model.blocks[0].attn.W_qkv
    hd = cfg.n_heads * cfg.head_dim
    loss_norms = []
    for _ in range(batches):
        x, y = data.batch("train", batch_size, cfg.seq_len, g)
        loss = model.loss(x, y)
        (gl,) = torch.autograd.grad(loss, W)
        loss_norms.append(float(gl[: 2 * hd].norm()))
    pen = penalty(model, tc, target)
    (gp,) = torch.autograd.grad(pen, W)
    model.train(was)
    gl_n, gp_n = statistics.mean(loss_norms), float(gp[: 2 * hd].norm())
    return {"grad_loss": gl_n, "grad_penalty": gp_n, "rho_star": gl_n / gp_n if gp_n > 0 else math.inf,
            "penalty": float(pen.detach())}


# --- the table -----------------------------------------------------------------------------------

def _t_cdf(t: float, df: int) -> float:
    """Student-t cumulative distribution at `t >= 0` by Simpson's rule on the density (no scipy)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = lambda u: c * (1 + u * u / df) ** (-(df + 1) / 2)  # noqa: E731
    n = 2000  # even
    h = t / n
    s = f(0.0) + f(t) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return 0.5 + s * h / 3


def t_quantile(p: float, df: int) -> float:
    """The `p`-quantile (`p > 1/2`) of Student's t with `df` degrees of freedom, by bisection."""
    if not (0.5 < p < 1) or df < 1:
        raise ValueError(f"need 1/2 < p < 1 and df >= 1, got p = {p}, df = {df}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_interval(x: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of the mean of `x` (n >= 2): `(mean, low, high)`."""
    n = len(x)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    m, sd = statistics.mean(x), statistics.stdev(x)
    h = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return m, m - h, m + h


def _arm_key(tags: dict) -> tuple:
    return (tags.get("steps"), tags["regime"], tags["arm"], tags["rho"])


def at_length(records: list[dict], steps: int | None) -> list[dict]:
    """The records of one training length (`tags["steps"]`); all of them when `steps` is None."""
    return records if steps is None else [r for r in records if r["tags"].get("steps") == steps]


def _one_length(records: list[dict], what: str) -> None:
    lengths = {r["tags"].get("steps") for r in records}
    if len(lengths) > 1:
        raise ValueError(f"{what}: the records hold several training lengths {sorted(lengths)}; pass steps=")


def _completed(record: dict) -> bool:
    return record.get("status") == "ok" and (record.get("result") or {}).get("status") == "completed"


def completed_runs(records: list[dict]) -> dict[tuple, dict[int, dict]]:
    """The results of the completed runs, `{(steps, regime, arm, rho): {seed: result}}`."""
    by: dict[tuple, dict[int, dict]] = {}
    for r in records:
        if _completed(r):
            by.setdefault(_arm_key(r["tags"]), {})[r["tags"]["seed"]] = r["result"]
    return by


def summarise(records: list[dict], level: float = 0.95) -> list[dict]:
    """One row per (training length, regime, arm, strength): means over seeds and paired
    differences from the plain arm of the same length and initialisation (default init for most
    arms, mimetic for the mimetic arms)."""
    by = completed_runs(records)
    failed: dict[tuple, int] = {}
    for r in records:
        if not _completed(r):
            failed[_arm_key(r["tags"])] = failed.get(_arm_key(r["tags"]), 0) + 1
    rows = []
    keys = sorted(set(by) | set(failed),
                  key=lambda k: (k[0] or 0, k[1] != "normal", k[1], _ARM_ORDER.get(k[2], 9), k[3]))
    for key in keys:
        steps, regime, arm, rho = key
        runs = by.get(key, {})
        base_arm = "mimetic plain" if arm.startswith("mimetic") else "plain"
        base = by.get((steps, regime, base_arm, 0.0), {})
        row: dict[str, Any] = {"steps": steps, "regime": regime, "arm": arm, "rho": rho, "n": len(runs),
                               "failed": failed.get(key, 0)}
        for m in ("val_ppl", "entropy", "qk_kappa", "qk_scale", "recent_mass"):
            vals = [v[m] for v in runs.values()]
            row[m] = statistics.mean(vals) if vals else math.nan
        paired = sorted(set(runs) & set(base))
        row["n_paired"] = len(paired)
        for m, name in (("val_ppl", "d_ppl"), ("entropy", "d_entropy")):
            diffs = [runs[s][m] - base[s][m] for s in paired]
            if arm != base_arm and len(diffs) >= 2:
                row[name], row[name + "_lo"], row[name + "_hi"] = t_interval(diffs, level)
            else:
                row[name] = row[name + "_lo"] = row[name + "_hi"] = math.nan
        rows.append(row)
    return rows


def runs_of(records: list[dict], regime: str, arm: str, rho: float, steps: int | None = None) -> dict[int, dict]:
    """The completed runs of one arm, `{seed: result}`, at training length `steps` (None: the records
    must hold one length)."""
    records = at_length(records, steps)
    _one_length(records, "runs_of")
    return {seed: res for key, by_seed in completed_runs(records).items() if key[1:] == (regime, arm, rho)
            for seed, res in by_seed.items()}


def paired(records: list[dict], regime: str, arm: str, rho: float, base_arm: str, metric: str,
           base_rho: float = 0.0, steps: int | None = None) -> dict[int, float]:
    """Per seed, `metric` of (regime, arm, rho) minus that of (regime, base_arm, base_rho) with the same
    seed, at training length `steps` (None: the records must hold one length)."""
    records = at_length(records, steps)
    _one_length(records, "paired")
    runs = {key[1:]: by_seed for key, by_seed in completed_runs(records).items()}  # one length: drop it
    a, b = runs.get((regime, arm, rho), {}), runs.get((regime, base_arm, base_rho), {})
    return {s: a[s][metric] - b[s][metric] for s in sorted(set(a) & set(b))}


def verdict(records: list[dict], regime: str, arm: str = "LocAteR variance", base_arm: str = "plain",
            level: float = 0.95, steps: int | None = None) -> dict[str, Any]:
    """Chapter 10's verdict rule for the claim "some strength lowers the validation perplexity and
    raises the attention entropy" (committed while the 300-step sweep was running).

    For each strength `rho` of `arm` in `regime`: paired differences from `base_arm` over seeds,
    two-sided t-intervals at the Bonferroni-adjusted level `1 - (1 - level) / k` (`k` strengths, so
    that picking the best strength afterwards is paid for). A strength is "as predicted" when the
    perplexity interval lies below 0 and the entropy interval above 0; "against" when either lies
    entirely on the wrong side; "unclear" otherwise. The regime: "reproduced" if some strength is as
    predicted, "not reproduced" if every strength is against, else "inconclusive". `steps` picks one
    training length (None: the records must hold one).
    """
    records = at_length(records, steps)
    _one_length(records, "verdict")
    strengths = sorted({r["tags"]["rho"] for r in records
                        if r["tags"]["regime"] == regime and r["tags"]["arm"] == arm})
    if not strengths:
        raise ValueError(f"no records of arm {arm!r} in regime {regime!r}")
    adj = 1 - (1 - level) / len(strengths)
    per = {}
    for rho in strengths:
        dp = list(paired(records, regime, arm, rho, base_arm, "val_ppl").values())
        de = list(paired(records, regime, arm, rho, base_arm, "entropy").values())
        if len(dp) < 2:
            per[rho] = {"n": len(dp), "class": "unclear"}
            continue
        p, e = t_interval(dp, adj), t_interval(de, adj)
        cls = ("as predicted" if p[2] < 0 and e[1] > 0 else "against" if p[1] > 0 or e[2] < 0 else "unclear")
        per[rho] = {"n": len(dp), "d_ppl": p, "d_entropy": e, "class": cls}
    classes = [v["class"] for v in per.values()]
    overall = ("reproduced" if "as predicted" in classes else
               "not reproduced" if all(c == "against" for c in classes) else "inconclusive")
    return {"regime": regime, "arm": arm, "steps": steps, "level": adj, "per_strength": per, "verdict": overall}


_ARM_ORDER = {"plain": 0, "LocAteR variance": 1, "weight decay": 2, "sigma-Reparam": 3, "mimetic plain": 4,
              "mimetic + LocAteR scale": 5}


def locater_table(records: list[dict]) -> str:
    """The summary table: per training length, regime and arm, means over seeds and paired differences
    (95% t-intervals)."""
    rows = summarise(records)
    if not rows:
        return "no records"
    head = (f"{'steps':>5s} {'regime':9s} {'arm':24s} {'strength':>8s} {'n':>2s} {'val ppl':>8s} {'entropy':>7s} {'kappa':>6s} "
            f"{'recent':>6s}  {'d ppl [95% CI]':>24s}  {'d entropy [95% CI]':>24s}")
    lines = [head, "-" * len(head)]

    def ci(r: dict, k: str) -> str:
        if math.isnan(r[k]):
            return f"{'-':>24s}"
        return f"{r[k]:+7.3f} [{r[k + '_lo']:+7.3f}, {r[k + '_hi']:+7.3f}]"

    for r in rows:
        rho = f"{r['rho']:.0e}" if r["rho"] else "-"
        fail = f"  ({r['failed']} failed)" if r["failed"] else ""
        lines.append(f"{r['steps'] or '-':>5} {r['regime']:9s} {r['arm']:24s} {rho:>8s} {r['n']:2d} {r['val_ppl']:8.3f} {r['entropy']:7.3f} "
                     f"{r['qk_kappa']:6.3f} {r['recent_mass']:6.3f}  {ci(r, 'd_ppl')}  {ci(r, 'd_entropy')}{fail}")
    lines.append("strength: rho for LocAteR, the coefficient for weight decay. d ppl, d entropy: paired difference "
                 "from plain training with the same seed (mimetic arms: from mimetic plain); 95% Student-t interval "
                 "over seeds. recent: attention of the last query on its 8 nearest keys.")
    return "\n".join(lines)
