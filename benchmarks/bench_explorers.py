"""Redraw time of the live explorers (chapters 1, 3 and 7) against the 0.25 s target, on this CPU.

    python benchmarks/bench_explorers.py [--moves 30] [--threads 2] [--seed 0]

For each live explorer, built with the arguments its chapter's cell uses, the script makes
`--moves` slider moves as a learner would (each move sets one control to another of its stops,
drawn at random with `--seed`) and times each one from setting the control's value to the PNG
being ready to send (`LiveExplorer`: the view recomputed, the figure's artists updated, the figure
rendered to PNG). It prints the median and the maximum, and the median as a share of the target
(`0.25 s`; at most 1.00 passes). For reference it times the same moves drawn the way the
explorers drew before issue 21 (a new figure per move, laid out and saved as the notebook's inline
backend saves it) in the same run, interleaved, and prints the ratio.

What it does not time: the round trip through the browser (a widget message to the kernel and an
image back, a few milliseconds on loopback), and the kernel's start. The 1-minute load average is
printed before and after: a result taken with a load above 0.5 per core is marked UNRELIABLE.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from qklab.explore import depth, scale, spectrum  # noqa: E402

TARGET_S = 0.25


def explorers() -> dict[str, tuple[Callable[[], Any], Callable[..., Any]]]:
    """Name -> (make the live widget as its chapter does, draw a new figure for given control values)."""

    def spectrum_old(mean: float, std: float, scale_: float, tokens: str) -> Any:
        return spectrum.spectrum_explorer(mean, std, scale_, tokens, d=64, T=64)

    return {
        "chapter 7, spectrum": (
            lambda: spectrum.spectrum_widget(mean=0.01, std=0.001, d=64, T=64),
            lambda mean, std, scale, tokens: spectrum_old(mean, std, scale, tokens),
        ),
        "chapter 3, depth": (
            lambda: depth.depth_widget(depth=6),
            lambda depth_, qk_gain, causal: depth.depth_explorer(depth_, qk_gain, causal),
        ),
        "chapter 1, temperature": (
            lambda: scale.scale_widget(scale=1.0, knob="temperature", causal=True, d=16, T=12),
            lambda value, causal: scale.scale_explorer(1 / value, causal, "temperature", d=16, T=12),
        ),
    }


def _options(widget: Any) -> list:
    """The values a control can take: a selection slider's stops, an int slider's range, a switch's two states."""
    if hasattr(widget, "options"):
        return [v for _, v in widget.options] if isinstance(widget.options[0], tuple) else list(widget.options)
    if type(widget).__name__ == "Checkbox":
        return [False, True]
    return list(range(widget.min, widget.max + 1))


def moves(live: Any, n: int, rng: random.Random) -> list[tuple[str, Any]]:
    """`n` moves (control name, new value), each to another stop of one control drawn at random."""
    out, state = [], live.values()
    names = list(live.controls)
    for _ in range(n):
        name = rng.choice(names)
        choices = [v for v in _options(live.controls[name]) if v != state[name]]
        value = rng.choice(choices)
        state[name] = value
        out.append((name, value))
    return out


def old_redraw(draw: Callable[..., Any], values: dict) -> float:
    """One move drawn as before issue 21: a new figure, saved as the inline backend saves it."""
    start = time.perf_counter()
    fig = draw(*values.values())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cores = os.cpu_count() or 1
    load0 = os.getloadavg()[0]
    print(f"{cores} cores, torch threads {args.threads}, {args.moves} moves per explorer, load average {load0:.2f} at the start")
    rows = []
    for name, (make, draw_old) in explorers().items():
        live = make()
        rng = random.Random(args.seed)
        new_t, old_t = [], []
        for control, value in moves(live, args.moves, rng):
            start = time.perf_counter()
            live.controls[control].value = value  # the observer redraws synchronously
            new_t.append(time.perf_counter() - start)
            old_t.append(old_redraw(draw_old, live.values()))
        rows.append((name, statistics.median(new_t), max(new_t), statistics.median(old_t), max(old_t)))
    load1 = os.getloadavg()[0]
    print()
    print(f"| explorer | median redraw | max | median / {TARGET_S} s target | before (new figure per move): median | max | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, med, mx, omed, omx in rows:
        verdict = "pass" if med <= TARGET_S else "FAIL"
        print(f"| {name} | {med:.3f} s | {mx:.3f} s | {med / TARGET_S:.2f} ({verdict}) | {omed:.3f} s | {omx:.3f} s | {omed / med:.1f}x |")
    print()
    reliable = max(load0, load1) - 1 <= 0.5 * cores  # this benchmark itself adds about 1 to the load
    print(f"load average {load1:.2f} at the end" + ("" if reliable else "  UNRELIABLE: other processes loaded the machine; run again when idle"))


if __name__ == "__main__":
    main()
