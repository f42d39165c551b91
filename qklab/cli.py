"""The `qklab` command: `qklab train`, `qklab sweep`, `qklab reproduce locater` (chapters 4, 9, 10).

Every command writes JSON-lines results files that start with the model and train configs, seed,
device and versions (`qklab.train`), and prints where it wrote them. Nothing is downloaded unless
`--download` is given.

    qklab train --steps 300 --lr 3e-3 --out runs/plain.jsonl
    qklab train --lr 3e-2 --sigma-reparam            # the chapter-4 fix at a too-high lr
    qklab sweep --reg-strengths 0,0.1,1 --seeds 0,1,2 --out-dir runs/sweep
    qklab reproduce locater --scale book             # small, offline, minutes on a laptop CPU
    qklab reproduce locater --scale paper --wikitext-dir ~/data/wikitext-2-raw

Not here: anything a notebook would call (use `qklab.train` / `qklab.sweep` directly).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (defaults: the book's small model)")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--n-heads", type=int, default=1)
    g.add_argument("--d-head", type=int, default=None)
    g.add_argument("--n-layers", type=int, default=1)
    g.add_argument("--seq-len", type=int, default=64)
    g.add_argument("--d-mlp", type=int, default=None)
    g.add_argument("--norm", choices=["pre", "post", "none"], default="pre")
    g.add_argument("--no-residual", action="store_true")
    g.add_argument("--no-mlp", action="store_true")
    g.add_argument("--positional", choices=["learned", "sinusoidal", "none"], default="learned")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--init", choices=["default", "mimetic"], default="default")
    g.add_argument("--sigma-reparam", action="store_true", help="sigma-Reparam on the query and key projections")


def _add_train_args(p: argparse.ArgumentParser, single: bool) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=300)
    g.add_argument("--batch-size", type=int, default=32)
    if single:
        g.add_argument("--lr", type=float, default=3e-3)
        g.add_argument("--seed", type=int, default=0)
        g.add_argument("--reg-strength", type=float, default=0.0)
    g.add_argument("--warmup", type=int, default=0)
    g.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=None)
    g.add_argument("--regularizer", choices=["none", "locater", "qk_l2"], default="none" if single else "locater")
    g.add_argument("--locater-form", default="variance", help="variance (default), scale, symmetric")
    g.add_argument("--locater-over", choices=["d", "d_h"], default="d")
    g.add_argument("--log-every", type=int, default=50)
    g.add_argument("--eval-batches", type=int, default=4)
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    g.add_argument("--no-progress", action="store_true")
    d = p.add_argument_group("data")
    d.add_argument("--data", choices=["pydoc", "wikitext2", "random-walk", "induction"], default="pydoc")
    d.add_argument("--data-dir", default=None, help="directory with wiki.train.raw, wiki.valid.raw")
    d.add_argument("--level", choices=["char", "word"], default="char", help="WikiText-2 tokenisation")
    d.add_argument("--download", action="store_true", help="fetch WikiText-2 with the `datasets` library")
    d.add_argument("--vocab-size", type=int, default=32, help="vocabulary of the synthetic tasks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qklab", description="Train small transformers and watch their QK spectrum.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one model and write its results file")
    _add_model_args(t)
    _add_train_args(t, single=True)
    t.add_argument("--out", default=None, help="results file (JSON lines); default qklab-runs/train-<time>.jsonl")
    t.add_argument("--checkpoint", default=None, help="checkpoint file, written every --checkpoint-every steps and at the end")
    t.add_argument("--checkpoint-every", type=int, default=0)
    t.add_argument("--resume", default=None, help="continue from this checkpoint")
    s = sub.add_parser("sweep", help="a grid of regulariser strengths x seeds (x learning rates), trained together")
    _add_model_args(s)
    _add_train_args(s, single=False)
    s.add_argument("--reg-strengths", type=_floats, default=[0.0, 0.1, 1.0])
    s.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    s.add_argument("--lrs", type=_floats, default=[3e-3])
    s.add_argument("--mode", choices=["auto", "stacked", "sequential"], default="auto")
    s.add_argument("--out-dir", default=None, help="one results file per run; default qklab-runs/sweep-<time>/")
    r = sub.add_parser("reproduce", help="reproduce an experiment of the course")
    r.add_argument("experiment", choices=["locater"])
    r.add_argument("--scale", choices=["book", "paper"], default="book")
    r.add_argument("--wikitext-dir", default=None, help="local WikiText-2 raw files (paper scale)")
    r.add_argument("--download", action="store_true",
                   help="paper scale: fetch WikiText-2 with the `datasets` library if no local copy is found")
    r.add_argument("--strengths", type=_floats, default=None,
                   help="LocAteR strengths to sweep (default 0,0.1,1; chapter 10 suggests several decades)")
    r.add_argument("--steps", type=int, default=None, help="override the number of steps")
    r.add_argument("--seeds", type=_ints, default=None)
    r.add_argument("--device", default="auto")
    r.add_argument("--out-dir", default=None)
    r.add_argument("--no-progress", action="store_true")
    return parser


def _model_config(a: argparse.Namespace):
    from qklab.model import ModelConfig

    return ModelConfig(d_model=a.d_model, n_heads=a.n_heads, d_head=a.d_head, n_layers=a.n_layers, seq_len=a.seq_len,
                       d_mlp=a.d_mlp, norm=a.norm, residual=not a.no_residual, mlp=not a.no_mlp,
                       positional=a.positional, dropout=a.dropout, init=a.init, sigma_reparam=a.sigma_reparam)


def _train_config(a: argparse.Namespace, **extra: Any):
    from qklab.train import TrainConfig

    kw = dict(steps=a.steps, batch_size=a.batch_size, warmup=a.warmup, schedule=a.schedule,
              weight_decay=a.weight_decay, grad_clip=a.grad_clip, regularizer=a.regularizer,
              locater_form=a.locater_form, locater_over=a.locater_over, log_every=a.log_every,
              eval_batches=a.eval_batches, device=a.device, progress=not a.no_progress)
    kw.update(extra)
    return TrainConfig(**kw)


def _data(a: argparse.Namespace):
    from qklab import data as qd

    if a.data == "pydoc":
        return qd.pydoc_corpus()
    if a.data == "wikitext2":
        return qd.load_wikitext2(a.data_dir, level=a.level, download=a.download)
    if a.data == "random-walk":
        return qd.RandomWalkTokens(a.vocab_size)
    return qd.InductionTask(a.vocab_size)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _summary(h) -> str:
    last = h.last
    return (f"{h.status}: step {last.get('step')}, val loss {last.get('val_loss', float('nan')):.4f} "
            f"(ppl {last.get('val_ppl', float('nan')):.2f}), attention entropy {last.get('entropy', float('nan')):.3f} nats")


def _cmd_train(a: argparse.Namespace) -> int:
    from qklab.train import TrainingDiverged, train

    out = a.out or f"qklab-runs/train-{_stamp()}.jsonl"
    cfg = _train_config(a, lr=a.lr, seed=a.seed, reg_strength=a.reg_strength, out=out, checkpoint=a.checkpoint,
                        checkpoint_every=a.checkpoint_every)
    try:
        h = train(_model_config(a), cfg, _data(a), resume=a.resume)
    except TrainingDiverged as err:
        print(str(err), file=sys.stderr)
        print(f"results (up to the divergence): {out}", file=sys.stderr)
        return 3
    print(_summary(h))
    print(f"results: {out}")
    return 0


def _cmd_sweep(a: argparse.Namespace) -> int:
    from qklab.sweep import grid, sweep

    out_dir = Path(a.out_dir or f"qklab-runs/sweep-{_stamp()}")
    base = _train_config(a)
    cfgs = grid(base, lr=a.lrs, reg_strength=a.reg_strengths, seed=a.seeds)
    cfgs = [dataclasses.replace(c, out=str(out_dir / f"lr{c.lr:g}_lam{c.reg_strength:g}_seed{c.seed}.jsonl")) for c in cfgs]
    t0 = time.perf_counter()
    hists = sweep(_model_config(a), cfgs, _data(a), mode=a.mode, progress=not a.no_progress)
    print(f"{len(hists)} runs in {time.perf_counter() - t0:.1f} s")
    _table(hists, ["lr", "reg_strength"])
    print(f"results: {out_dir}/")
    return 0


def _table(hists: list, keys: list[str]) -> list[dict]:
    """Print final val loss and entropy per setting, mean and sd over seeds; return the rows."""
    groups: dict[tuple, list] = {}
    for h in hists:
        groups.setdefault(tuple(h.train_config[k] for k in keys) + (h.model_config["sigma_reparam"],
                                                                   h.train_config["regularizer"]), []).append(h)
    rows = []
    print(f"{'setting':48s} {'val loss':>16s} {'entropy':>14s} {'kappa':>7s} diverged")
    for key, hs in groups.items():
        ok = [h for h in hs if h.status == "completed"]
        vl = [h.last["val_loss"] for h in ok]
        en = [h.last["entropy"] for h in ok]
        ka = [h.last["qk_kappa"][0][0] for h in ok]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        label = ", ".join(f"{k}={v}" for k, v in zip(keys + ["sigma_reparam", "regularizer"], key))
        row = {"setting": label, "n": len(hs), "diverged": len(hs) - len(ok)}
        if ok:
            row.update(val_loss=statistics.mean(vl), val_loss_sd=sd(vl), entropy=statistics.mean(en), entropy_sd=sd(en),
                       kappa=statistics.mean(ka))
            print(f"{label:48s} {row['val_loss']:8.4f} ± {row['val_loss_sd']:.4f} {row['entropy']:6.3f} ± {row['entropy_sd']:.3f}"
                  f" {row['kappa']:7.3f} {row['diverged']}/{len(hs)}")
        else:
            print(f"{label:48s} {'-':>16s} {'-':>14s} {'-':>7s} {len(hs)}/{len(hs)}")
        rows.append(row)
    return rows


def _cmd_reproduce(a: argparse.Namespace) -> int:
    from qklab import data as qd
    from qklab.model import ModelConfig
    from qklab.sweep import grid, sweep
    from qklab.train import TrainConfig

    out_dir = Path(a.out_dir or f"qklab-runs/reproduce-locater-{a.scale}-{_stamp()}")
    if a.scale == "book":
        mcfg = ModelConfig(d_model=64, n_heads=1, n_layers=1, seq_len=64, norm="post")
        data, note = qd.pydoc_corpus(), "pydoc corpus (offline, character level)"
        steps, seeds, strengths = 300, [0, 1, 2], [0.0, 0.1, 1.0]
    else:
        # The paper's model (Bao et al. 2024): 1 layer, 1 head, post-LN, widths 128. Sequence
        # length, optimiser and schedule are our choices (they trained with fairseq).
        mcfg = ModelConfig(d_model=128, n_heads=1, n_layers=1, d_mlp=128, seq_len=128, norm="post")
        found = qd.find_wikitext2(a.wikitext_dir)
        if found is not None:
            data, note = qd.load_wikitext2(found, level="word"), f"WikiText-2 (word level) from {found}"
        elif a.download:
            data, note = qd.load_wikitext2(level="word", download=True), "WikiText-2 (word level), downloaded"
        else:
            data = qd.pydoc_corpus()
            note = ("pydoc corpus (offline, character level): no local WikiText-2 found "
                    "(pass --wikitext-dir, set QKLAB_WIKITEXT2 or add --download)")
        steps, seeds, strengths = 3000, [0, 1, 2], [0.0, 0.1, 1.0]
    steps = a.steps or steps
    seeds = a.seeds or seeds
    strengths = a.strengths or strengths
    print(f"reproduce locater, scale {a.scale}: data = {note}")
    base = TrainConfig(steps=steps, device=a.device, regularizer="locater", progress=not a.no_progress,
                       log_every=max(1, steps // 10))
    cfgs = grid(base, reg_strength=strengths, seed=seeds)
    cfgs = [dataclasses.replace(c, out=str(out_dir / f"lam{c.reg_strength:g}_seed{c.seed}.jsonl")) for c in cfgs]
    hists = sweep(mcfg, cfgs, data, progress=not a.no_progress)
    rows = _table(hists, ["reg_strength"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps({"scale": a.scale, "data": note, "model_config": mcfg.to_dict(),
                                                      "steps": steps, "seeds": seeds, "rows": rows}, indent=1))
    print(f"results: {out_dir}/ (summary.json and one file per run)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        return _cmd_reproduce(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"qklab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
