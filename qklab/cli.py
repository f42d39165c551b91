"""The `qklab` command: `qklab train`, `qklab sweep`, `qklab reproduce locater|controls` (chapters 4, 9, 10).

Every command writes JSON-lines results files with the model and train configs, seed, device and
versions, and prints where it wrote them. Bad input (unknown values, empty grids, a results file
that cannot be written, a data folder that does not exist or lacks the files) stops with one
clear message before any training. Nothing is downloaded unless `--download` is given.

    qklab train --steps 300 --lr 3e-3 --out runs/plain.jsonl
    qklab train --lr 3e-2 --sigma-reparam            # the chapter-4 fix at a too-high lr
    qklab sweep --reg-strengths 0,0.1,1 --seeds 0,1,2 --out runs/sweep.jsonl
    qklab reproduce locater --scale book --out results/locater-book.jsonl   # chapter 10's CPU sweep
    qklab reproduce locater --scale paper --wikitext-dir ~/data/wikitext-2-raw --backend ray
    qklab reproduce controls --out results/controls.jsonl   # chapter 10's size control and test split

`sweep` and `reproduce` run their grid points through `qklab.runner` (worker processes with one
thread each, one per core by default; `--backend inline` or `ray`), append one JSON line per
finished point to `--out` and skip, when run again, the points already there.

Not here: anything a notebook would call (use `qklab.train` / `qklab.sweep` directly).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]


def _finite(text: str) -> float:
    """A finite number (argparse names the option when this fails)."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _floats(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


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
    g.add_argument("--dropout", type=_finite, default=0.0)
    g.add_argument("--init", choices=["default", "mimetic"], default="default")
    g.add_argument("--sigma-reparam", action="store_true", help="sigma-Reparam on the query and key projections")


def _add_train_args(p: argparse.ArgumentParser, single: bool) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=300)
    g.add_argument("--batch-size", type=int, default=32)
    if single:
        g.add_argument("--lr", type=_finite, default=3e-3)
        g.add_argument("--seed", type=int, default=0)
        g.add_argument("--reg-strength", type=_finite, default=0.0)
    g.add_argument("--warmup", type=int, default=0)
    g.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    g.add_argument("--weight-decay", type=_finite, default=0.0)
    g.add_argument("--grad-clip", type=_finite, default=None)
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


def _add_run_args(p: argparse.ArgumentParser, default_out: str) -> None:
    g = p.add_argument_group("running the points (qklab.runner)")
    g.add_argument("--out", default=None, help=f"results file, JSON lines, one per point (default {default_out})")
    g.add_argument("--backend", choices=["process", "inline", "ray"], default="process",
                   help="process: worker processes, one thread each (default); inline: this process; "
                        "ray: one Ray task per point (pip install 'qklab[ray]')")
    g.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    if not any(act.dest == "no_progress" for act in p._actions):
        g.add_argument("--no-progress", action="store_true")


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
    s = sub.add_parser("sweep", help="a grid of learning rates x regulariser strengths x seeds, one model per point",
                       description="Train a grid of models (learning rates x regulariser strengths x seeds) in "
                                   "parallel worker processes. Each finished point is appended to --out at once; "
                                   "the same command again skips the points already there.")
    _add_model_args(s)
    _add_train_args(s, single=False)
    s.add_argument("--reg-strengths", type=_floats, default=[0.0, 0.1, 1.0], help="comma-separated (default 0,0.1,1)")
    s.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="comma-separated (default 0,1,2)")
    s.add_argument("--lrs", type=_floats, default=[3e-3], help="comma-separated learning rates (default 3e-3)")
    _add_run_args(s, "qklab-runs/sweep.jsonl")
    r = sub.add_parser("reproduce", help="reproduce an experiment of the course",
                       description="Reproduce chapter 10's LocAteR comparison as a grid of points run in parallel "
                                   "(see qklab.reproduce). Resumable: the same command again skips finished points.")
    r.add_argument("experiment", choices=["locater", "controls"],
                   help="locater: the strength sweep (--scale); controls: the size control, strengths chosen on "
                        "validation and reported on a test split (qklab.controls; fixed design, pydoc corpus)")
    r.add_argument("--scale", choices=["tiny", "book", "paper"], default="book",
                   help="tiny: seconds (a smoke test); book: chapter 10's CPU sweep; paper: the paper's size (GPU hours)")
    r.add_argument("--wikitext-dir", default=None,
                   help="folder with wiki.train.raw and wiki.valid.raw (without it: the offline pydoc corpus)")
    r.add_argument("--download", action="store_true", help="fetch WikiText-2 with the `datasets` library")
    r.add_argument("--strengths", type=_floats, default=None, help="LocAteR strengths rho to sweep (comma-separated)")
    r.add_argument("--steps", type=int, default=None, help="override the number of steps")
    r.add_argument("--seeds", type=_ints, default=None, help="comma-separated seeds")
    r.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    r.add_argument("--stages", type=int, default=None,
                   help="controls only: run the first N of its 4 stages (default all; the same command with more "
                        "stages continues)")
    _add_run_args(r, "qklab-runs/locater-<scale>.jsonl")
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

    spec = _data_spec(a)
    if spec["kind"] == "wikitext2":
        return qd.load_wikitext2(spec["path"], level=spec["level"])
    if spec["kind"] == "pydoc":
        return qd.pydoc_corpus()
    return qd.RandomWalkTokens(a.vocab_size) if spec["kind"] == "random-walk" else qd.InductionTask(a.vocab_size)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _summary(h) -> str:
    last = h.last
    return (f"{h.status}: step {last.get('step')}, val loss {last.get('val_loss', float('nan')):.4f} "
            f"(ppl {last.get('val_ppl', float('nan')):.2f}), attention entropy {last.get('entropy', float('nan')):.3f} nats")


_GRID_OPTIONS = {"reg_strength": "reg-strengths", "lr": "lrs", "seed": "seeds"}  # sweep's axes


def _option_names(err: Exception, command: str = "train") -> str:
    """The error's message with the library's names of settings (`TrainConfig.weight_decay`,
    `resume`) replaced by the options a user typed (`--weight-decay`, `--resume`)."""
    def option(m: re.Match) -> str:
        name = _GRID_OPTIONS.get(m.group(1), m.group(1)) if command == "sweep" else m.group(1)
        return "--" + name.replace("_", "-")

    text = re.sub(r"TrainConfig\.(\w+)", option, str(err))
    return re.sub(r"^resume\b", "--resume", text)


def _cmd_train(a: argparse.Namespace) -> int:
    from qklab._validate import check_writable_file
    from qklab.train import TrainingDiverged, train

    a.out = out = _out_path(a.out, f"qklab-runs/train-{_stamp()}.jsonl")
    if a.checkpoint is not None:
        a.checkpoint = str(check_writable_file(a.checkpoint, "--checkpoint").resolve())
    if a.resume is not None and not Path(a.resume).expanduser().is_file():
        raise ValueError(f"--resume {a.resume!r} is not a file (give a checkpoint written with --checkpoint)")
    try:
        cfg = _train_config(a, lr=a.lr, seed=a.seed, reg_strength=a.reg_strength, out=out, checkpoint=a.checkpoint,
                            checkpoint_every=a.checkpoint_every)
        h = train(_model_config(a), cfg, _data(a), resume=a.resume)
    except TrainingDiverged as err:
        print(str(err), file=sys.stderr)
        print(f"results (up to the divergence): {out}", file=sys.stderr)
        return 3
    print(_summary(h))
    print(f"results: {out}")
    return 0


def _out_path(text: str | None, default: str) -> str:
    """The results file as an absolute path; a folder or an unwritable place fails here, naming --out."""
    from qklab._validate import check_writable_file

    path = Path(text if text is not None else default).expanduser()
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder; give a results file, e.g. {str(path / 'results.jsonl')!r}")
    return str(check_writable_file(path, "--out").resolve())


def _wikitext_spec(data_dir: str | None, level: str, download: bool) -> dict:
    """The `data` spec of WikiText-2 points. A directory the user gave must exist and hold the files."""
    from qklab.data import WIKITEXT_FILES, find_wikitext2

    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data-dir {str(root)!r} does not exist (or is not a folder)")
        found = find_wikitext2(root)
        if found is None or not (found == root or found == root / "wikitext-2-raw"):
            missing = [f for f in (WIKITEXT_FILES["train"], WIKITEXT_FILES["val"]) if not (root / f).is_file()]
            raise FileNotFoundError(f"--data-dir {str(root)!r} lacks the WikiText-2 raw file(s) {', '.join(missing)}")
    else:
        found = find_wikitext2(None)
        if found is None and download:
            from qklab.data import load_wikitext2

            load_wikitext2(level=level, download=True)  # once here, not in every worker
            found = find_wikitext2(None)
        if found is None:
            raise FileNotFoundError("no WikiText-2 raw files found in $QKLAB_WIKITEXT2 or ~/.cache/qklab/wikitext-2-raw; "
                                    "pass --data-dir, or add --download")
    return {"kind": "wikitext2", "path": str(found.resolve()), "level": level}


def _data_spec(a: argparse.Namespace) -> dict:
    if a.data == "wikitext2":
        return _wikitext_spec(a.data_dir, a.level, a.download)
    if a.data_dir is not None:
        raise ValueError(f"--data-dir is for --data wikitext2, not --data {a.data}")
    if a.data == "pydoc":
        return {"kind": "pydoc"}
    if a.vocab_size < 2:
        raise ValueError(f"--vocab-size must be at least 2, got {a.vocab_size}")
    return {"kind": a.data, "vocab_size": a.vocab_size}


def _run_options(a: argparse.Namespace) -> dict:
    if a.workers is not None and a.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {a.workers}")
    if a.workers is not None and a.backend != "process":
        print(f"note: --workers applies to --backend process; {a.backend} ignores it", file=sys.stderr)
    return {"workers": a.workers, "backend": a.backend, "progress": not a.no_progress}


def _announce(points: list[dict], out: str, opts: dict) -> None:
    from qklab.runner import point_key, read_records

    have = read_records(out) if Path(out).is_file() else {}
    done = sum(have.get(point_key(p), {}).get("status") == "ok" for p in points)
    how = {"process": f"{opts['workers'] or 'one per core'} worker process(es)", "inline": "this process",
           "ray": "Ray tasks"}[opts["backend"]]
    print(f"{len(points)} points, {done} already finished in {out}; running {len(points) - done} in {how}")


def _cmd_sweep(a: argparse.Namespace) -> int:
    from qklab.runner import run_points

    for name in ("reg_strengths", "seeds", "lrs"):
        if not getattr(a, name):
            raise ValueError(f"--{name.replace('_', '-')} is empty: the grid needs at least one value")
        if len(set(getattr(a, name))) != len(getattr(a, name)):
            raise ValueError(f"--{name.replace('_', '-')} repeats a value: {getattr(a, name)}")
    _check_device(a.device, a.backend)
    a.out = out = _out_path(a.out, "qklab-runs/sweep.jsonl")
    opts = _run_options(a)
    model = _model_config(a).to_dict()
    data = _data_spec(a)
    points = []
    for lr in a.lrs:
        for lam in a.reg_strengths:
            for seed in a.seeds:
                cfg = _train_config(a, lr=lr, reg_strength=lam, seed=seed, progress=False, on_divergence="stop")
                points.append({"fn": "qklab.runner:train_point", "args": {"model": model, "train": cfg.to_dict(),
                                                                          "data": data},
                               "tags": {"lr": lr, "reg_strength": lam, "seed": seed}})
    swept = ("lr", "reg_strength", "seed")
    grid = {"command": "sweep", "model": model, "data": data,
            "train": {k: v for k, v in points[0]["args"]["train"].items() if k not in swept}}
    _announce(points, out, opts)
    t0 = time.perf_counter()
    records = run_points(points, out, grid=grid, **opts)
    print(f"{len(records)} points in {time.perf_counter() - t0:.1f} s")
    print(_table(records, ["lr", "reg_strength"]))
    print(f"results: {out} (one JSON line per point; the same command again skips finished points)")
    return 1 if any(r["status"] == "error" for r in records) else 0


def _table(records: list[dict], keys: list[str]) -> str:
    """Final val loss, entropy and kappa per setting: mean and sd over seeds; diverged and failed counts."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r["tags"][k] for k in keys), []).append(r)
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    lines = [f"{'setting':32s} {'val loss':>17s} {'entropy':>15s} {'kappa':>7s}  diverged  failed"]
    for key, rs in groups.items():
        label = ", ".join(f"{k}={v:g}" for k, v in zip(keys, key))
        ok = [r["result"]["final"] for r in rs if r["status"] == "ok" and r["result"]["status"] == "completed"]
        diverged = sum(r["status"] == "ok" and r["result"]["status"] != "completed" for r in rs)
        failed = sum(r["status"] == "error" for r in rs)
        if ok:
            vl, en = [f["val_loss"] for f in ok], [f["entropy"] for f in ok]
            ka = [f["qk_kappa"][0][0] for f in ok]
            lines.append(f"{label:32s} {statistics.mean(vl):8.4f} ± {sd(vl):.4f} {statistics.mean(en):7.3f} ± "
                         f"{sd(en):.3f} {statistics.mean(ka):7.3f}  {diverged:>4d}/{len(rs):<3d} {failed:>4d}/{len(rs)}")
        else:
            lines.append(f"{label:32s} {'-':>17s} {'-':>15s} {'-':>7s}  {diverged:>4d}/{len(rs):<3d} {failed:>4d}/{len(rs)}")
    for r in records:
        if r["status"] == "error":
            first = r["error"].splitlines()[0] if r["error"] else "?"
            where = ", ".join(f"{k}={r['tags'].get(k)}" for k in [*keys, "seed"])
            lines.append(f"failed: {where}: {first}")
    return "\n".join(lines)


def _check_device(device: str, backend: str) -> None:
    """A device name that torch knows; unless the points run on a Ray cluster (whose workers may
    have a GPU that this machine lacks), one that is present here."""
    from qklab.device import pick_device

    if backend == "ray":
        from qklab.cluster import check_reachable

        check_reachable(os.environ.get("RAY_ADDRESS"))  # in seconds, before anything is written
        if device not in ("auto", None):
            try:
                import torch

                torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}") from err
        return
    try:
        pick_device(device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from err


def _estimate(points: list[dict], out: str, opts: dict) -> str:
    """'about 3 min with 2 workers (from a short timing of one point here)' for the points not yet in `out`."""
    from qklab.reproduce import estimate_seconds
    from qklab.runner import point_key, read_records

    have = read_records(out) if Path(out).is_file() else {}
    todo = [p for p in points if have.get(point_key(p), {}).get("status") != "ok"]
    if not todo:
        return "nothing left to run"
    costs = estimate_seconds(todo)
    per = sum(costs) / len(costs)
    workers = opts["workers"] or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if opts["backend"] == "ray":
        return (f"about {sum(costs) / 3600:.1f} h of one core's time for {len(todo)} points on a machine like this one "
                "(Ray decides how many run at once)")
    parallel = 1 if opts["backend"] == "inline" else min(workers, len(todo))
    total = sum(costs) / parallel
    when = f"{total / 60:.0f} min" if total < 5400 else f"{total / 3600:.1f} h"
    return (f"about {when} for {len(todo)} points with {parallel} worker(s) ({per:.0f} s a point on average, "
            "from a short timing of one point here)")


def _cmd_controls(a: argparse.Namespace) -> int:
    from qklab import controls
    from qklab.runner import check_run, run_points

    given = [f"--{n.replace('_', '-')}" for n in ("strengths", "seeds", "steps", "wikitext_dir")
             if getattr(a, n) is not None] + (["--download"] if a.download else [])
    if given:
        raise ValueError(f"reproduce controls has a fixed design (qklab.controls); it takes no {', '.join(given)}")
    _check_device(a.device, a.backend)
    a.out = out = _out_path(a.out, "qklab-runs/controls.jsonl")
    opts = _run_options(a)
    grid = {"command": "reproduce controls", "device": a.device, "data": controls.DATA}
    # shortest lengths first, so that a stopped run leaves whole comparisons: the grids at 300 and 1,500
    # steps, their fresh seeds, the grid at 3,000 steps, then the longest runs
    first = tuple(n for n in controls.GRIDS if n in controls.CONFIRM_LENGTHS)
    later = tuple(n for n in controls.GRIDS if n not in first)
    t0 = time.perf_counter()
    records: list[dict] = []
    stages = (("strength grids at " + ", ".join(map(str, first)) + " steps (chosen on validation)",
               lambda: controls.select_points(a.device, first)),
              ("the chosen strengths on fresh seeds", lambda: controls.confirm_points(records, a.device, ("fresh",))),
              ("strength grids at " + ", ".join(map(str, later)) + " steps", lambda: controls.select_points(a.device, later)),
              (f"the longest runs ({controls.LONGEST} steps)", lambda: controls.confirm_points(records, a.device, ("longest",))))
    if a.stages is not None and not 1 <= a.stages <= len(stages):
        raise ValueError(f"--stages must be from 1 to {len(stages)}, got {a.stages}")
    for i, (what, make) in enumerate(stages[: a.stages], 1):
        points = make()
        check_run(points, out, workers=opts["workers"], backend=opts["backend"], grid=grid)
        print(f"reproduce controls, stage {i} of {len(stages)}: {what}")
        _announce(points, out, opts)
        print(f"estimated time: {_estimate(points, out, opts)}")
        records += run_points(points, out, grid=grid, **opts)
    print(f"{len(records)} points in {time.perf_counter() - t0:.1f} s")
    for v in controls.verdicts(records):
        print(f"{v['family']:7s} {v['steps']:>5} {v['init']:8s} {v['arm']} ({v['rho']:g}) - {v['against']} "
              f"({v['against_rho']:g}): test ppl {v['mean']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}] over {len(v['seeds'])} "
              f"{v['seed_kind']}: {v['word']}")
    errors = [r for r in records if r["status"] == "error"]
    for r in errors:
        print(f"failed: {r['tags']}: {(r['error'] or '?').splitlines()[0]}", file=sys.stderr)
    print(f"results: {out} (one JSON line per point; the same command again skips finished points)")
    return 1 if errors else 0


def _cmd_reproduce(a: argparse.Namespace) -> int:
    from qklab.reproduce import locater_points, locater_table

    if a.experiment == "controls":
        return _cmd_controls(a)
    if a.stages is not None:
        raise ValueError("--stages applies to reproduce controls only")
    from qklab.runner import check_run, run_points

    for name in ("strengths", "seeds"):
        values = getattr(a, name)
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"--{name} repeats a value: {values}")
        if values is not None and not values:
            raise ValueError(f"--{name} is empty: the grid needs at least one value")
    if a.seeds is not None and any(s < 0 for s in a.seeds):
        raise ValueError(f"--seeds must be integers >= 0, got {a.seeds}")
    if a.strengths is not None and any(s <= 0 for s in a.strengths):
        raise ValueError(f"--strengths must be positive (plain training is always included), got {a.strengths}")
    if a.steps is not None and a.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {a.steps}")
    _check_device(a.device, a.backend)
    a.out = out = _out_path(a.out, f"qklab-runs/locater-{a.scale}.jsonl")
    opts = _run_options(a)
    points, note = locater_points(a.scale, wikitext_dir=a.wikitext_dir, download=a.download, strengths=a.strengths,
                                  seeds=a.seeds, steps=a.steps, device=a.device)
    grid = {"command": "reproduce locater", "scale": a.scale, "steps": a.steps, "device": a.device,
            "data": points[0]["args"]["data"]}
    check_run(points, out, workers=opts["workers"], backend=opts["backend"], grid=grid)
    print(f"reproduce locater, scale {a.scale}: data = {note}")
    _announce(points, out, opts)
    print(f"estimated time: {_estimate(points, out, opts)}")
    t0 = time.perf_counter()
    records = run_points(points, out, grid=grid, **opts)
    print(f"{len(records)} points in {time.perf_counter() - t0:.1f} s")
    print(locater_table(records))
    errors = [r for r in records if r["status"] == "error"]
    for r in errors:
        print(f"failed: {r['tags']}: {(r['error'] or '?').splitlines()[0]}", file=sys.stderr)
    print(f"results: {out} (one JSON line per point; the same command again skips finished points)")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        return _cmd_reproduce(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, ConnectionError) as err:
        print(f"qklab {args.command}: error: {_option_names(err, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM during a sweep (qklab.runner.SweepTerminated)
        from qklab.runner import SweepTerminated

        out = getattr(args, "out", None)
        how = "stopped by SIGTERM" if isinstance(err, SweepTerminated) else "interrupted"
        print(f"\nqklab {args.command}: {how}. Finished points are in the results file"
              f"{' ' + out if out else ''}; run the same command again to continue.", file=sys.stderr)
        return 143 if isinstance(err, SweepTerminated) else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
