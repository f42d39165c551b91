"""The deciding controls of chapter 10 (`qklab reproduce controls`): what LocAteR's gain is made of.

The question: does penalising the *spread* of the QK spectrum (LocAteR's variance form,
`||W_QK||_F^2/d - m^2`) do anything that penalising its *size* (the Frobenius control,
`||W_QK||_F^2/d`) does not? From the default initialisation the mean `m` stays near 0 and the two
penalties nearly coincide; from a mimetic initialisation (`W_QK` near `alpha I`, mean `m_0 > 0`)
they differ: the variance form keeps the mean, the Frobenius form shrinks it too.

The design, in three stages written to one results file (resumable, like every sweep):

1. **select** (seeds `SELECT_SEEDS`, validation split only): at every length of `GRIDS`, plain
   training, the variance form and the Frobenius form at the same strengths, sigma-Reparam on
   `W_Q, W_K` and AdamW weight decay 0.1; at the lengths of `MIMETIC_LENGTHS` the same two forms
   and plain training from the mimetic initialisation.
2. **choose** (`chosen_strengths`): per length, initialisation and form, the strength with the
   lowest mean *validation* perplexity over the selection seeds. The test split plays no part.
3. **confirm**: at the lengths of `CONFIRM_LENGTHS`, fresh seeds `CONFIRM_SEEDS` for every arm at
   its chosen strength (and the baselines); at `LONGEST` steps, seeds `SELECT_SEEDS` for plain
   training, each form at the strength chosen at the longest selection length, and sigma-Reparam.

Every number of the verdict (`verdicts`) is measured on the *test* split (the second half of
the held-out block of the pydoc corpus, `qklab.data.pydoc_corpus(test_split=True)`), from the
confirm seeds where a length has them, else from the selection seeds (the split is then held
out, the seeds are not: the table says which). Two families of comparisons, each corrected for
its own size (Bonferroni), and each comparison also shown at 95% on its own:

- "gain": the variance form at its chosen strength against plain training, sigma-Reparam and
  weight decay 0.1, at every length (test perplexity; entropy as well against plain training);
- "spread": the variance form against the Frobenius form, each at its chosen strength, at every
  length from the default initialisation and at `MIMETIC_LENGTHS` from the mimetic one.

Not here: what a point computes (`qklab.reproduce.locater_point`), running points (`qklab.runner`).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from qklab.model import ModelConfig
from qklab.reproduce import FN, completed_runs, t_interval
from qklab.train import TrainConfig

__all__ = [
    "GRIDS",
    "SELECT_SEEDS",
    "CONFIRM_SEEDS",
    "CONFIRM_LENGTHS",
    "MIMETIC_LENGTHS",
    "LONGEST",
    "FORMS",
    "DATA",
    "select_points",
    "chosen_strengths",
    "confirm_points",
    "comparisons",
    "verdicts",
]

# the strengths of each length: half decades around the best strength of the first sweep at that length
# (results/locater-book.jsonl: 0.3-1 at 300 steps, 0.01-0.03 at 1,500, 0.01 at 3,000)
GRIDS: dict[int, tuple[float, ...]] = {300: (0.03, 0.1, 0.3, 1.0, 3.0), 1500: (0.003, 0.01, 0.03, 0.1),
                                       3000: (0.003, 0.01, 0.03)}
MIMETIC_LENGTHS = (300, 1500)
CONFIRM_LENGTHS = (300, 1500)
LONGEST = 6000
SELECT_SEEDS = (0, 1, 2, 3, 4)
CONFIRM_SEEDS = tuple(range(5, 15))
FORMS = {"LocAteR variance": "variance", "Frobenius": "frobenius"}  # arm name -> penalty form
LR = 3e-3  # the normal rate of chapter 10
WEIGHT_DECAY = 0.1
DATA = {"kind": "pydoc", "test_split": True}
LOG_EVERY = {300: 50, 1500: 250, 3000: 500, 6000: 1000}


def _model(init: str) -> dict:
    model = ModelConfig.paper_locater(seq_len=64).to_dict()
    return model if init == "default" else {**model, "init": init}


def _point(arm: str, init: str, steps: int, seed: int, stage: str, rho: float = 0.0, device: str = "auto",
           **train_kw: Any) -> dict:
    """One grid point: the book's model and batch size, the normal rate, cosine schedule."""
    train = TrainConfig(steps=steps, batch_size=16, log_every=LOG_EVERY.get(steps, max(1, steps // 6)), lr=LR,
                        seed=seed, schedule="cosine", device=device, progress=False, on_divergence="stop",
                        **train_kw).to_dict()
    model = _model(init)
    if arm == "sigma-Reparam":
        model = {**model, "sigma_reparam": True}
    name = arm if init == "default" else ("mimetic plain" if arm == "plain" else f"mimetic + {arm}")
    return {"fn": FN, "args": {"model": model, "train": train, "data": DATA},
            "tags": {"experiment": "controls", "stage": stage, "regime": "normal", "init": init, "arm": name,
                     "rho": rho, "lr": LR, "seed": seed, "steps": steps}}


def _arms(init: str, steps: int, seed: int, stage: str, strengths: dict[str, tuple[float, ...]], baselines: bool,
          device: str) -> list[dict]:
    points = [_point("plain", init, steps, seed, stage, device=device)]
    for arm, form in FORMS.items():
        for rho in strengths[arm]:
            points.append(_point(arm, init, steps, seed, stage, rho, device, regularizer="locater",
                                 locater_form=form, reg_strength=rho))
    if baselines:
        points.append(_point("sigma-Reparam", init, steps, seed, stage, device=device))
        points.append(_point("weight decay", init, steps, seed, stage, WEIGHT_DECAY, device, weight_decay=WEIGHT_DECAY))
    return points


def select_points(device: str = "auto", lengths: tuple[int, ...] | None = None) -> list[dict]:
    """Stage 1: the strength grids on the selection seeds (seed-major within each length, shortest
    first), at `lengths` (default: every length of `GRIDS`)."""
    points = []
    for steps, grid in GRIDS.items():
        if lengths is not None and steps not in lengths:
            continue
        every = {arm: grid for arm in FORMS}
        for seed in SELECT_SEEDS:
            points += _arms("default", steps, seed, "select", every, True, device)
            if steps in MIMETIC_LENGTHS:
                points += _arms("mimetic", steps, seed, "select", every, False, device)
    return points


def _by_arm(records: list[dict], stage: str | None = None) -> dict[tuple, dict[int, dict]]:
    """Completed runs of the controls by (steps, init, arm, rho), then seed."""
    mine = [r for r in records if r["tags"].get("experiment") == "controls"
            and (stage is None or r["tags"].get("stage") == stage)]
    out: dict[tuple, dict[int, dict]] = {}
    for key, runs in completed_runs(mine).items():
        steps, _regime, arm, rho = key
        init = "mimetic" if arm.startswith("mimetic") else "default"
        out[(steps, init, arm, rho)] = runs
    return out


def _arm_name(arm: str, init: str) -> str:
    return arm if init == "default" else f"mimetic + {arm}"


def chosen_strengths(records: list[dict]) -> dict[tuple[int, str, str], dict[str, Any]]:
    """Stage 2: per (steps, init, form arm), the strength with the lowest mean validation perplexity
    over the selection seeds, and that mean for every strength of the grid (`val_ppl`). A strength
    with a seed missing or failed is not eligible (its mean is reported as nan). Keys are present only
    for grids whose every strength has a record."""
    by = _by_arm(records, "select")
    chosen = {}
    for steps, grid in GRIDS.items():
        for init in ("default", "mimetic") if steps in MIMETIC_LENGTHS else ("default",):
            for arm in FORMS:
                means = {}
                for rho in grid:
                    runs = by.get((steps, init, _arm_name(arm, init), rho), {})
                    ok = all(s in runs for s in SELECT_SEEDS)
                    means[rho] = statistics.mean(runs[s]["val_ppl"] for s in SELECT_SEEDS) if ok else math.nan
                finite = {r: v for r, v in means.items() if math.isfinite(v)}
                if finite:
                    best = min(finite, key=finite.get)
                    edge = best in (grid[0], grid[-1])
                    chosen[(steps, init, arm)] = {"rho": best, "val_ppl": means, "at_edge": edge,
                                                  "complete": len(finite) == len(grid)}
    return chosen


def confirm_points(records: list[dict], device: str = "auto", which: tuple[str, ...] = ("fresh", "longest")
                   ) -> list[dict]:
    """Stage 3 from the selection records: "fresh" seeds at the chosen strengths (`CONFIRM_LENGTHS`),
    and the "longest" length. Raises ValueError when a grid the confirmation needs has not finished."""
    chosen = chosen_strengths(records)
    points = []

    def rho_of(steps: int, init: str, arm: str) -> tuple[float]:
        pick = chosen.get((steps, init, arm))
        if pick is None or not pick["complete"]:
            raise ValueError(f"the selection grid of {arm} ({init} init) at {steps} steps has not finished")
        return (pick["rho"],)

    for steps in CONFIRM_LENGTHS if "fresh" in which else ():
        for seed in CONFIRM_SEEDS:
            points += _arms("default", steps, seed, "confirm", {a: rho_of(steps, "default", a) for a in FORMS}, True, device)
            if steps in MIMETIC_LENGTHS:
                points += _arms("mimetic", steps, seed, "confirm", {a: rho_of(steps, "mimetic", a) for a in FORMS},
                                False, device)
    longest_grid = max(GRIDS)
    for seed in SELECT_SEEDS if "longest" in which else ():
        points += _arms("default", LONGEST, seed, "confirm", {a: rho_of(longest_grid, "default", a) for a in FORMS},
                        False, device)
        points.append(_point("sigma-Reparam", "default", LONGEST, seed, "confirm", device=device))
    return points


# --- the verdicts --------------------------------------------------------------------------------

def _report_runs(by_stage: dict[str, dict], steps: int, init: str, arm: str, rho: float) -> tuple[dict[int, dict], str]:
    """The runs a verdict reads at one length (`by_stage`: `_by_arm` of each stage): the confirm seeds where that
    length has them, else the selection seeds."""
    stage = "confirm" if steps in CONFIRM_LENGTHS or steps == LONGEST else "select"
    runs = by_stage[stage].get((steps, init, arm, rho), {})
    return runs, ("fresh seeds" if stage == "confirm" and steps in CONFIRM_LENGTHS else "selection seeds")


def comparisons(records: list[dict]) -> list[dict[str, Any]]:
    """Every comparison of the two families, at every length that has its records: `family`, `steps`,
    `init`, `arm` (with `rho`), `against` (with `against_rho`), `seeds`, and the paired test-split
    differences `d` (perplexity) and `d_entropy` per seed."""
    chosen = chosen_strengths(records)
    by_stage = {stage: _by_arm(records, stage) for stage in ("select", "confirm")}  # once, not per comparison
    lengths = sorted(set(GRIDS) | {LONGEST})
    out = []

    def pick(steps: int, init: str, arm: str) -> float | None:
        base = max(GRIDS) if steps == LONGEST else steps
        got = chosen.get((base, init, arm))
        return got["rho"] if got else None

    def add(family: str, steps: int, init: str, arm: tuple[str, float], against: tuple[str, float]) -> None:
        a, seeds_a = _report_runs(by_stage, steps, init, *arm)
        b, _ = _report_runs(by_stage, steps, init, *against)
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            return
        out.append({"family": family, "steps": steps, "init": init, "arm": arm[0], "rho": arm[1],
                    "against": against[0], "against_rho": against[1], "seeds": seeds, "seed_kind": seeds_a,
                    "d": [a[s]["test_ppl"] - b[s]["test_ppl"] for s in seeds],
                    "d_entropy": [a[s]["test_entropy"] - b[s]["test_entropy"] for s in seeds]})

    for steps in lengths:
        rho_v, rho_f = pick(steps, "default", "LocAteR variance"), pick(steps, "default", "Frobenius")
        if rho_v is None:
            continue
        variance = ("LocAteR variance", rho_v)
        for against in (("plain", 0.0), ("sigma-Reparam", 0.0), ("weight decay", WEIGHT_DECAY)):
            add("gain", steps, "default", variance, against)
        if rho_f is not None:
            add("spread", steps, "default", variance, ("Frobenius", rho_f))
        if steps in MIMETIC_LENGTHS:
            mv, mf = pick(steps, "mimetic", "LocAteR variance"), pick(steps, "mimetic", "Frobenius")
            if mv is not None and mf is not None:
                add("spread", steps, "mimetic", ("mimetic + LocAteR variance", mv), ("mimetic + Frobenius", mf))
                add("mimetic", steps, "mimetic", ("mimetic + LocAteR variance", mv), ("mimetic plain", 0.0))
                add("mimetic", steps, "mimetic", ("mimetic + Frobenius", mf), ("mimetic plain", 0.0))
    return out


def verdicts(records: list[dict], level: float = 0.95) -> list[dict[str, Any]]:
    """`comparisons` with their intervals and words. Within a family of `k` comparisons each interval
    is a two-sided Student-t interval over seeds at level `1 - (1 - level) / k` (Bonferroni: the
    family's chance of any false "below 0" or "above 0" is at most `1 - level`); `ci95` is the
    same interval at `level` alone, and `median` the median paired difference (robust to one seed).

    Words (`word`), from the corrected perplexity interval: "lower" (below 0), "higher" (above 0),
    "no difference shown" (contains 0). For the gain family against plain training the paper's
    claim needs both lower perplexity and higher entropy: `claim` is "as predicted" when the
    corrected perplexity interval is below 0 and the corrected entropy interval above 0,
    "against" when either lies wholly on the wrong side, else "unclear".
    """
    rows = comparisons(records)
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r["family"]] = sizes.get(r["family"], 0) + 1
    for r in rows:
        k = sizes[r["family"]]
        adj = 1 - (1 - level) / k
        r["k"], r["level"] = k, adj
        r["mean"], r["lo"], r["hi"] = t_interval(r["d"], adj)
        r["ci95"] = t_interval(r["d"], level)[1:]
        r["median"] = statistics.median(r["d"])
        r["word"] = "lower" if r["hi"] < 0 else "higher" if r["lo"] > 0 else "no difference shown"
        e = t_interval(r["d_entropy"], adj)
        r["entropy_mean"], r["entropy_lo"], r["entropy_hi"] = e
        if r["family"] == "gain" and r["against"] == "plain":
            r["claim"] = ("as predicted" if r["hi"] < 0 and e[1] > 0 else
                          "against" if r["lo"] > 0 or e[2] < 0 else "unclear")
    return rows
